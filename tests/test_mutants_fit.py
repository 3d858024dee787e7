"""Regression tests from a third mutation-testing pass over fnnet.train.fit: an interrupted fit
holds a best_state only when the early-stopping rule restores the best epoch."""

from __future__ import annotations

from typing import Any

import pytest
from _helpers import blob_task

import fnnet
from fnnet.train import EarlyStopping, TrainingInterrupted, fit


def _stop_after_epoch_2(state: Any, history: Any) -> None:
    if len(history.epochs) == 2:
        raise KeyboardInterrupt


@pytest.mark.parametrize("restore_best", [False, True])
def test_an_interrupted_fit_keeps_a_best_state_only_with_restore_best(restore_best: bool) -> None:
    (x, t), val = blob_task()
    rule = EarlyStopping(monitor="val_loss", patience=5, restore_best=restore_best)
    with pytest.raises(TrainingInterrupted) as info:
        fit(fnnet.Affine(3), fnnet.sgd(0.1), (x, t), key=fnnet.key(0), epochs=4, batch_size=20, val=val,
            early_stopping=rule, on_epoch=_stop_after_epoch_2, progress="quiet", threads=1)
    err = info.value
    assert int(err.epoch_state.epoch) == 2
    if restore_best:
        assert err.best_state is not None and int(err.best_state.epoch) == rule.decide(err.history).best_epoch
        assert "best_state=err.best_state" in str(err)
    else:
        assert err.best_state is None and "best_state" not in str(err)
