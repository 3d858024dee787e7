"""A run resumed after its best epoch keeps the best model: fit(best_state=...), EarlyStopping.is_best
for on_epoch to know when to save it, FitResult.last_state to train on from a restored result."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, blob_task

import fnnet
from fnnet import checkpoint, models
from fnnet.layers import Affine, BatchNorm, Conv2D, Dropout, Flatten, Layer, ReLU, serial
from fnnet.optim import adam, sgd
from fnnet.train import EarlyStopping, FitResult, History, ReduceOnPlateau, TrainState, fit, init_train_state
from fnnet.tree import tree_astype, tree_map

TRAIN, VAL = blob_task()
RULE = EarlyStopping(patience=3)


def _run(epochs: int, **kw: Any) -> FitResult:
    """A small MLP on the blob task with Adam: its validation loss is best at epoch 4 and it stops at 7."""
    args: dict[str, Any] = dict(key=fnnet.key(0), epochs=epochs, batch_size=20, val=VAL, eval_train=False,
                                progress="quiet")  # fmt: skip
    args.update(kw)
    return fit(models.mlp((64, 64), 3), args.pop("optimizer", adam(0.01)), TRAIN, **args)


def _untimed(h: History) -> list[dict[str, float]]:
    return [{k: v for k, v in e.items() if k != "time"} for e in h.epochs]


def _same_result(a: FitResult, b: FitResult) -> None:
    assert (a.best_epoch, a.stopped_epoch) == (b.best_epoch, b.stopped_epoch)
    assert_bit_identical(a.state, b.state)
    assert_bit_identical(a.last_state, b.last_state)
    assert a.history.step_loss == b.history.step_loss and _untimed(a.history) == _untimed(b.history)


@contextlib.contextmanager
def _no_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- is_best and last_state --------------------------------------------------------------------------


def test_is_best_in_on_epoch_names_the_epochs_whose_state_restore_best_may_return() -> None:
    seen: list[int] = []
    full = _run(40, early_stopping=RULE, on_epoch=lambda s, h: seen.append(int(s.epoch)) if RULE.is_best(h) else None)
    assert full.best_epoch == 4 and full.stopped_epoch == 7  # the setting the other tests rely on
    val = full.history.metric("val_loss")
    assert seen == [k for k in range(1, 8) if val[k - 1] < min(val[: k - 1], default=math.inf)]
    assert seen[-1] == full.best_epoch
    # the last state is the stopped run's, bit for bit that of a run without early stopping
    assert int(full.last_state.epoch) == 7 and full.last_state is not full.state
    assert_bit_identical(full.last_state, _run(7).state)
    last = _run(40, early_stopping=EarlyStopping(patience=3, restore_best=False))
    assert last.last_state is last.state and last.best_epoch is None


# --- resuming after the best epoch -------------------------------------------------------------------


@pytest.mark.parametrize("cut", [5, 6])
def test_a_crash_after_the_best_epoch_resumes_to_the_uninterrupted_result(tmp_path: Path, cut: int) -> None:
    """on_epoch saves the checkpoint, then the best when is_best says so; the process dies after epoch
    ``cut`` (past the best, 4); a new run loads both files and returns the uninterrupted run's bits."""
    full = _run(40, early_stopping=RULE)
    last, best = tmp_path / "last.npz", tmp_path / "best.npz"

    def save_then_crash(state: TrainState, hist: History) -> None:
        checkpoint.save(last, state, meta={"history": hist.to_json()})
        if RULE.is_best(hist):
            checkpoint.save(best, state)
        if int(state.epoch) == cut:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(40, early_stopping=RULE, on_epoch=save_then_crash)
    like = full.state
    state, meta = checkpoint.load(last, like)
    best_state, _ = checkpoint.load(best, like)
    assert int(state.epoch) == cut and int(best_state.epoch) == 4
    with _no_warning():
        rest = _run(40, early_stopping=RULE, state=state, history=History.from_json(meta["history"]),
                    best_state=best_state)  # fmt: skip
    _same_result(rest, full)


def test_a_resumed_run_whose_later_epoch_beats_the_given_best_returns_the_later_one() -> None:
    rule = EarlyStopping(patience=4)
    full = _run(40, early_stopping=rule, optimizer=sgd(0.3))
    assert (full.best_epoch, full.stopped_epoch) == (3, 7)
    part = _run(2, early_stopping=rule, optimizer=sgd(0.3))  # its best is epoch 1: epoch 2 is worse
    assert part.best_epoch == 1 and int(part.last_state.epoch) == 2
    rest = _run(40, early_stopping=rule, optimizer=sgd(0.3), state=part.last_state, history=part.history,
                best_state=part.state)  # fmt: skip
    _same_result(rest, full)


def test_a_result_resumed_from_its_last_state_trains_on_as_one_run() -> None:
    """A run of fewer epochs continued with more: the best restored by the first is handed on."""
    full = _run(25, early_stopping=EarlyStopping(patience=30))
    part = _run(6, early_stopping=EarlyStopping(patience=30))
    assert part.best_epoch == 4 and full.stopped_epoch is None and len(full.history.epochs) == 25
    rest = _run(25, early_stopping=EarlyStopping(patience=30), state=part.last_state, history=part.history,
                best_state=part.state)  # fmt: skip
    _same_result(rest, full)


def test_resuming_at_the_best_epoch_needs_no_best_state_and_accepts_an_older_one() -> None:
    """A crash between saving the checkpoint (epoch 4, the best) and the best leaves the best file at
    an earlier best epoch: the starting state is the best, the older one is not used."""
    full = _run(40, early_stopping=RULE)
    at_best, older = _run(4), _run(3)
    with _no_warning():
        for given in (None, older.state, at_best.state):
            rest = _run(40, early_stopping=RULE, state=at_best.state, history=at_best.history, best_state=given)
            _same_result(rest, full)


def test_a_resume_past_the_best_without_best_state_warns_and_returns_the_last_state() -> None:
    full = _run(40, early_stopping=RULE)
    part = _run(5)
    with pytest.warns(UserWarning, match=r"^fit: the history's best epoch 4 lies before this run's start \(epoch 5\) "
                                         r"and best_state was not given"):  # fmt: skip
        rest = _run(40, early_stopping=RULE, state=part.state, history=part.history)
    assert rest.best_epoch is None and rest.stopped_epoch == full.stopped_epoch
    assert_bit_identical(rest.state, full.last_state)
    # without restore_best there is nothing to lose, and nothing to warn about
    with _no_warning():
        _run(40, early_stopping=EarlyStopping(patience=3, restore_best=False), state=part.state, history=part.history)


def _model() -> Layer:
    return serial(Conv2D(3, 3, pad=1), BatchNorm(), ReLU(), Flatten(), Dropout(0.3), Affine(3))


def _images(n: int, seed: int) -> tuple[Any, Any]:
    g = fnnet.key(seed).generator()
    t = g.integers(0, 3, n)
    return (g.standard_normal((n, 1, 5, 5)) + t[:, None, None, None] * 0.7).astype(np.float32), t


def test_resume_past_the_best_with_dropout_batchnorm_shards_augmentation_and_plateau(tmp_path: Path) -> None:
    train, val = _images(40, 1), _images(20, 2)
    rule, plateau = EarlyStopping(patience=3), ReduceOnPlateau(monitor="val_acc", patience=1)

    def run(epochs: int, **kw: Any) -> FitResult:
        return fit(_model(), adam(0.02), train, key=fnnet.key(7), epochs=epochs, batch_size=10, drop_last=True,
                   val=val, shards=2, augment=fnnet.compose(fnnet.RandomCrop(1), fnnet.HorizontalFlip()),
                   early_stopping=rule, plateau=plateau, progress="quiet", **kw)  # fmt: skip

    full = run(30)
    assert full.best_epoch is not None and full.stopped_epoch is not None
    part = run(full.best_epoch + 1)
    like = init_train_state(_model(), adam(0.02), fnnet.key(99), (1, 5, 5))
    checkpoint.save(tmp_path / "last.npz", part.last_state, meta={"history": part.history.to_json()})
    checkpoint.save(tmp_path / "best.npz", part.state)
    state, meta = checkpoint.load(tmp_path / "last.npz", like)
    best, _ = checkpoint.load(tmp_path / "best.npz", like)
    rest = run(30, state=state, history=History.from_json(meta["history"]), best_state=best)
    _same_result(rest, full)


# --- refusals -------------------------------------------------------------------------------------


def test_a_best_state_that_does_not_fit_the_run_is_a_one_line_error() -> None:
    part, best = _run(6), _run(4).state
    go = dict(early_stopping=RULE, state=part.state, history=part.history)
    other = fit(models.mlp((32,), 3), adam(0.01), TRAIN, key=fnnet.key(0), epochs=4, progress="quiet").state
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(best_state=other), r"fit: best_state does not match the starting state's model and optimizer: "
                                 r"structures differ at params: tuple 5 vs tuple 3"),  # fmt: skip
        (dict(best_state=tree_astype(best, np.float64)),
         r"fit: best_state does not match the starting state's model and optimizer: params/0/w is \(12, 64\) "
         r"float64 but the state's is \(12, 64\) float32"),  # fmt: skip
        (dict(best_state=best._replace(params=tree_map(lambda a: a * np.nan, best.params))),
         r"fit: best_state's params holds NaN or infinite values"),
        (dict(best_state=_run(3).state), r"fit: best_state is of epoch 3 but the history's best epoch by val_loss is 4; "
                                         r"pass the state saved after epoch 4"),  # fmt: skip
        (dict(best_state=_run(7).state), r"fit: best_state is of epoch 7, after the starting state's epoch 6"),
        (dict(best_state=best._replace(step=np.array(99, np.int64))),
         r"fit: best_state has taken 99 steps, more than the starting state's 18"),
        (dict(best_state=(best, {})), r"fit: best_state must be a fnnet.train.TrainState, got tuple"),
        (dict(best_state=best, early_stopping=EarlyStopping(patience=3, restore_best=False)),
         r"fit: best_state is used only with early_stopping=EarlyStopping\(restore_best=True\)"),
        (dict(best_state=best, early_stopping=None),
         r"fit: best_state is used only with early_stopping=EarlyStopping\(restore_best=True\)"),
        (dict(best_state=best, history=None),  # a state without its history: no best epoch to check against
         r"fit: best_state was given but the history has no best epoch \(no epochs, or val_loss NaN in every one\)"),
    ]
    for kw, words in cases:
        with pytest.raises(ValueError, match=rf"^{words}") as info:
            _run(40, **{**go, **kw})
        assert "\n" not in str(info.value)


def test_a_best_state_with_a_history_that_never_had_a_best_is_refused() -> None:
    bad_val = (VAL[0].copy(), VAL[1])
    bad_val[0][0] = np.nan  # every val_loss is NaN: no epoch is best
    part = _run(2, val=bad_val)
    with pytest.raises(ValueError, match=r"^fit: best_state was given but the history has no best epoch"):
        _run(40, val=bad_val, early_stopping=RULE, state=part.state, history=part.history, best_state=_run(1).state)
