"""Regression tests from a second mutation-testing pass over fnnet.hparam: LogUniform contains its
own low end, a failed trial ranks after every successful one (even one scoring 0), an infinite
metric fails its trial and MLPTrial rounds its validation size, which plausible one-token changes
left untested."""

from __future__ import annotations

import math

import pytest

import fnnet
from fnnet.hparam import Distribution, IntUniform, LogUniform, MLPTrial, SearchResult, TrialResult, Uniform, run_trial


def test_distributions_contain_both_ends() -> None:
    assert LogUniform(1e-3, 1e-1).contains(1e-3) and LogUniform(1e-3, 1e-1).contains(1e-1)
    assert Uniform(-1, 1).contains(-1.0) and IntUniform(2, 4).contains(2) and IntUniform(2, 4).contains(4)


def test_a_failed_trial_ranks_after_a_success_scoring_zero() -> None:
    space: dict[str, Distribution] = {"x": IntUniform(0, 0)}
    trials = (TrialResult(0, {"x": 0}, {}, "failed", "E: e"), TrialResult(1, {"x": 0}, {"val_acc": 0.0}, "ok"))
    res = SearchResult(trials, space, fnnet.key(0))
    assert [t.index for t in res.sorted()] == [1, 0]
    assert res.best.index == 1


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_non_finite_metric_fails_the_trial(bad: float) -> None:
    r = run_trial(lambda hparams, key: {"val_acc": 0.5, "loss": bad}, 3, {"x": 1}, fnnet.key(0))
    assert r.status == "failed" and r.error is not None and r.error.startswith("ValueError: objective returned non-finite metric loss=")


def test_mlp_trial_rounds_the_validation_size() -> None:
    # 0.2 * 499 = 99.8 validation samples: 100, not 99
    assert MLPTrial(n_train=499).n_val == 100
