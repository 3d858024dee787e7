"""Early stopping and reduce-on-plateau: pure functions of a History, and fit's use of them."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from _helpers import blob_task

import fnnet
from fnnet import checkpoint, models
from fnnet.optim import adam
from fnnet.train import EarlyStopping, FitResult, History, ReduceOnPlateau, StopDecision, TrainState, fit
from fnnet.tree import tree_leaves
from fnnet.typing import Array


def _history(values: list[float], name: str = "val_loss") -> History:
    return History(epochs=tuple({name: v, "loss": 1.0} for v in values))


def _same(a: TrainState, b: TrainState) -> bool:
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb))


# --- the decisions -------------------------------------------------------------------------------


def test_decide_counts_epochs_since_the_best() -> None:
    rule = EarlyStopping(patience=2)
    assert rule.decide(History()) == StopDecision(False, 0)
    assert rule.decide(_history([1.0, 0.8, 0.9])) == StopDecision(False, 2)
    assert rule.decide(_history([1.0, 0.8, 0.9, 0.85])) == StopDecision(True, 2)
    # min_delta: 0.79 is not better than 0.8 by more than 0.05
    assert EarlyStopping(patience=2, min_delta=0.05).decide(_history([1.0, 0.8, 0.79, 0.78])) == StopDecision(True, 2)
    # NaN never improves; the first finite value sets the best
    assert rule.decide(_history([math.nan, 0.5, math.nan])) == StopDecision(False, 2)


def test_mode_auto_maximises_accuracy_and_r2() -> None:
    up = [0.5, 0.7, 0.6, 0.65]
    assert EarlyStopping("val_acc", patience=2).decide(_history(up, "val_acc")) == StopDecision(True, 2)
    assert EarlyStopping("val_r2", patience=5).decide(_history(up, "val_r2")).best_epoch == 2
    assert EarlyStopping("val_rmse", patience=5).decide(_history(up, "val_rmse")).best_epoch == 1
    assert EarlyStopping("val_acc", patience=5, mode="min").decide(_history(up, "val_acc")).best_epoch == 1


def test_plateau_scale_multiplies_factor_per_plateau_down_to_min_scale() -> None:
    rule = ReduceOnPlateau(factor=0.5, patience=2)
    assert rule.scale(History()) == 1.0
    assert rule.scale(_history([1.0, 0.9, 0.95])) == 1.0
    assert rule.scale(_history([1.0, 0.9, 0.95, 0.92])) == 0.5  # two epochs without improvement
    assert rule.scale(_history([1.0, 0.9, 0.95, 0.92, 0.93, 0.94])) == 0.25  # the count starts again
    assert rule.scale(_history([1.0, 0.9, 0.95, 0.92, 0.8, 0.85])) == 0.5  # improved: no new plateau
    assert ReduceOnPlateau(factor=0.1, patience=1, min_scale=0.05).scale(_history([1, 2, 3, 4.0])) == 0.05


def test_rules_refuse_bad_settings_and_unknown_monitors() -> None:
    for bad in (dict(patience=0), dict(min_delta=-1.0), dict(mode="up"), dict(monitor="")):
        with pytest.raises(ValueError, match="EarlyStopping: "):
            EarlyStopping(**bad)
    for bad in (dict(factor=1.0), dict(min_scale=0.0), dict(patience=1.5)):
        with pytest.raises(ValueError, match="ReduceOnPlateau: "):
            ReduceOnPlateau(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"EarlyStopping: monitor 'val_acc' is not in the history's epochs \(they have loss, val_loss\)"):
        EarlyStopping("val_acc").decide(_history([1.0]))


values = st.lists(st.one_of(st.floats(-10, 10), st.just(math.nan)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(vals=values, patience=st.integers(1, 4), min_delta=st.sampled_from([0.0, 0.1]), factor=st.sampled_from([0.1, 0.5]))
def test_decisions_are_pure_functions_of_the_history(vals: list[float], patience: int, min_delta: float,
                                                     factor: float) -> None:  # fmt: skip
    h = _history(vals)
    before = copy.deepcopy(h.to_json())
    stop = EarlyStopping(patience=patience, min_delta=min_delta)
    plat = ReduceOnPlateau(factor=factor, patience=patience, min_delta=min_delta)
    d1, s1 = stop.decide(h), plat.scale(h)
    # a fresh, equal history and the same rule decide the same
    d2, s2 = EarlyStopping(patience=patience, min_delta=min_delta).decide(_history(list(vals))), plat.scale(h)
    assert d1 == d2 and (s1 == s2)
    assert h.to_json() == before or all(map(math.isnan, vals))  # nothing mutated (NaN != NaN in ==)
    assert [e["val_loss"] for e in h.epochs] == vals or any(map(math.isnan, vals))
    assert 0 <= d1.best_epoch <= len(vals) and (d1.best_epoch >= 1) == bool(vals)
    assert plat.min_scale <= s1 <= 1.0
    if d1.stop:
        assert len(vals) - d1.best_epoch >= patience


# --- fit with early stopping ----------------------------------------------------------------------


def _run(epochs: int, **kw: object) -> FitResult:
    train, val = blob_task()
    return fit(models.mlp((64, 64), 3), adam(0.01), train, key=fnnet.key(0), epochs=epochs, batch_size=20, val=val,
               eval_train=False, progress="quiet", **kw)  # type: ignore[arg-type]  # fmt: skip


def test_fit_stops_at_the_right_epoch_and_restores_the_best_bit_for_bit() -> None:
    rule = EarlyStopping(patience=3)
    res = _run(40, early_stopping=rule)
    h = res.history
    assert res.stopped_epoch is not None and res.stopped_epoch < 40
    assert len(h.epochs) == res.stopped_epoch
    # it stopped at the first epoch whose history says stop
    decisions = [rule.decide(History(epochs=h.epochs[:k])) for k in range(1, len(h.epochs) + 1)]
    assert [d.stop for d in decisions] == [False] * (len(h.epochs) - 1) + [True]
    best = decisions[-1].best_epoch
    assert res.best_epoch == best and res.stopped_epoch == best + 3
    val = h.metric("val_loss")
    assert val[best - 1] == min(val)
    # the restored state is that of a run of exactly best_epoch epochs
    short = _run(best)
    assert int(res.state.epoch) == best and _same(res.state, short.state)
    # without restore_best: the last epoch's state, and no best epoch
    last = _run(40, early_stopping=EarlyStopping(patience=3, restore_best=False))
    assert last.best_epoch is None and last.stopped_epoch == res.stopped_epoch
    assert _same(last.state, _run(res.stopped_epoch).state)


def test_fit_without_a_stop_runs_all_epochs_and_still_restores_the_best() -> None:
    res = _run(5, early_stopping=EarlyStopping(patience=30))
    assert res.stopped_epoch is None and len(res.history.epochs) == 5
    assert res.best_epoch is not None and _same(res.state, _run(res.best_epoch).state)


def test_fit_refuses_a_monitor_it_does_not_record() -> None:
    train, _ = blob_task()
    with pytest.raises(ValueError, match=r"^fit: early_stopping monitors 'val_loss', which this run does not record "
                       r"\(it records loss, train_loss, train_acc\); pass val=\(x, t\)"):
        fit(models.mlp((8,), 3), adam(0.01), train, key=fnnet.key(0), epochs=1,
            early_stopping=EarlyStopping(), progress="quiet")  # fmt: skip
    with pytest.raises(ValueError, match=r"^fit: plateau monitors 'val_rmse'"):
        _run(1, plateau=ReduceOnPlateau(monitor="val_rmse"))


def test_plateau_scales_updates_from_the_history_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    rule = ReduceOnPlateau(patience=1, factor=0.5)
    full = _run(8, plateau=rule)
    h = full.history
    scales = h.metric("lr_scale")
    assert scales == [rule.scale(History(epochs=h.epochs[:k])) for k in range(8)]
    assert scales[0] == 1.0 and scales[-1] < 1.0
    # resume from a checkpoint after 3 epochs: the same bits, the same scales
    part = _run(3, plateau=rule)
    path = tmp_path / "ck.npz"
    checkpoint.save(path, part.state, meta={"history": part.history.to_json()})
    like = fnnet.init_train_state(models.mlp((64, 64), 3), adam(0.01), fnnet.key(9), (12,))
    state, meta = checkpoint.load(path, like)
    rest = _run(8, plateau=rule, state=state, history=History.from_json(meta["history"]))
    assert _same(full.state, rest.state)
    assert rest.history.step_loss == h.step_loss and rest.history.metric("lr_scale") == scales


def test_resuming_with_early_stopping_matches_an_uninterrupted_run() -> None:
    rule = EarlyStopping(patience=3)
    full = _run(40, early_stopping=rule)
    assert full.stopped_epoch is not None and full.best_epoch is not None
    cut = full.best_epoch  # resume from the best epoch: its state is the starting one
    part = _run(cut)
    rest = _run(40, early_stopping=rule, state=part.state, history=part.history)
    assert rest.stopped_epoch == full.stopped_epoch and rest.best_epoch == full.best_epoch
    assert _same(rest.state, full.state)
    # a run that had already stopped trains no further
    again = _run(40, early_stopping=rule, state=rest.state, history=rest.history)
    assert again.stopped_epoch == int(rest.state.epoch) and again.history == rest.history
