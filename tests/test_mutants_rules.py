"""Regression tests from a mutation-testing pass: boundaries of the stopping rules, the key of a
wide fold_in, R² with several outputs and the read-only unshuffled batches, which plausible
one-token changes left untested."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fnnet.datasets import batches
from fnnet.metrics import r2
from fnnet.random import fold_in, key
from fnnet.train import EarlyStopping, History, ReduceOnPlateau, StopDecision


def _history(values: list[float], name: str = "val_loss") -> History:
    return History(epochs=tuple({name: v, "loss": 1.0} for v in values))


def test_an_equal_value_is_not_an_improvement() -> None:
    # improving means beating the best by MORE than min_delta: a tie (or a gain of exactly
    # min_delta) keeps the earlier best epoch and keeps counting towards patience
    assert EarlyStopping(patience=2).decide(_history([1.0, 1.0, 1.0])) == StopDecision(True, 1)
    assert EarlyStopping("val_acc", patience=2).decide(_history([0.5, 0.5, 0.5], "val_acc")) == StopDecision(True, 1)
    assert EarlyStopping(patience=2, min_delta=0.25).decide(_history([1.0, 0.75, 0.875])) == StopDecision(True, 1)
    assert ReduceOnPlateau(factor=0.5, patience=2).scale(_history([1.0, 1.0, 1.0])) == 0.5


def test_plateau_waits_for_a_first_number_before_counting() -> None:
    # NaN epochs before any finite value are not a plateau: there is no best to fail to beat yet
    rule = ReduceOnPlateau(factor=0.5, patience=2)
    assert rule.scale(_history([math.nan, math.nan, 1.0])) == 1.0
    assert rule.scale(_history([math.nan, math.nan, 1.0, 1.5, 1.5])) == 0.5


def test_fold_in_records_data_from_2_to_the_32_as_wide() -> None:
    # the path is the random stream: data below 2**32 is (1, d), from 2**32 on (2, words, d)
    assert fold_in(key(3), 2**32 - 1).path == (1, 2**32 - 1)
    assert fold_in(key(3), 2**32).path == (2, 2, 2**32)
    assert fold_in(key(3), 2**64).path == (2, 3, 2**64)


def test_r2_centres_each_output_on_its_own_mean() -> None:
    t = np.array([[0.0, 100.0], [2.0, 102.0], [4.0, 104.0]])
    assert r2(np.broadcast_to(t.mean(axis=0), t.shape), t) == 0.0  # predicting each output's mean
    y = t + np.array([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    assert r2(y, t) == 1.0 - 2.0 / 16.0


def test_unshuffled_batches_are_read_only_views_of_the_data() -> None:
    x, t = np.arange(20.0).reshape(10, 2), np.arange(10)
    got = list(batches(None, x, t, 4, shuffle=False))
    assert [len(xb) for xb, _ in got] == [4, 4, 2]
    for xb, tb in got:
        assert np.shares_memory(xb, x) and np.shares_memory(tb, t)  # nothing copied
        assert not xb.flags.writeable and not tb.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            xb[0, 0] = -1.0
    assert x.flags.writeable and x[0, 0] == 0.0  # the caller's arrays are left as they were
