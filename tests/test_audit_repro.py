"""Reproducibility audit: resuming from a checkpoint with every random and stateful part at once,
results that do not depend on threads, and what a checkpointed history carries."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fnnet
from fnnet import checkpoint
from fnnet.layers import Affine, BatchNorm, Conv2D, Dropout, Flatten, Layer, ReLU, serial
from fnnet.optim import adam, momentum
from fnnet.train import EarlyStopping, FitResult, History, ReduceOnPlateau, TrainState, fit, init_train_state, predict
from fnnet.tree import tree_leaves
from fnnet.typing import Array
from _helpers import global_rng_untouched


def _model() -> Layer:
    return serial(Conv2D(3, 3, pad=1), BatchNorm(), ReLU(), Flatten(), Dropout(0.3), Affine(3))


def _data(n: int, seed: int) -> tuple[Array, Array]:
    g = fnnet.key(seed).generator()
    t = g.integers(0, 3, n)
    x = (g.standard_normal((n, 1, 5, 5)) + t[:, None, None, None] * 0.7).astype(np.float32)
    return x, t


TRAIN, VAL = _data(40, 1), _data(20, 2)
AUGMENT = fnnet.compose(fnnet.RandomCrop(1), fnnet.HorizontalFlip(), fnnet.RandomErasing(p=0.5))


def _run(epochs: int, **kw: Any) -> FitResult:
    """Dropout, BatchNorm in two shards, augmentation, a validation set, Adam; ``kw`` adds the rest."""
    args: dict[str, Any] = dict(key=fnnet.key(7), epochs=epochs, batch_size=10, drop_last=True, val=VAL,
                                shards=2, augment=AUGMENT, progress="quiet")  # fmt: skip
    args.update(kw)
    return fit(_model(), adam(0.02), TRAIN, **args)


def _same(a: Any, b: Any) -> bool:
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb))


def _untimed(h: History) -> list[dict[str, float]]:
    return [{k: v for k, v in e.items() if k != "time"} for e in h.epochs]


def _like() -> TrainState:
    return init_train_state(_model(), adam(0.02), fnnet.key(99), (1, 5, 5))


def _reload(tmp_path: Path, res: FitResult) -> tuple[TrainState, History]:
    path = tmp_path / "ck.npz"
    checkpoint.save(path, res.state, meta={"history": res.history.to_json()})
    state, meta = checkpoint.load(path, _like())
    return state, History.from_json(meta["history"])


def test_resume_with_dropout_augmentation_batchnorm_shards_and_plateau_is_bit_exact(tmp_path: Path) -> None:
    rule = ReduceOnPlateau(patience=1, factor=0.5)
    full = _run(5, plateau=rule, grad_norms=True, eval_sample=15)
    assert min(full.history.metric("lr_scale")) < 1.0  # the plateau rule acted
    for cut in (1, 3):
        state, hist = _reload(tmp_path, _run(cut, plateau=rule, grad_norms=True, eval_sample=15))
        rest = _run(5, plateau=rule, grad_norms=True, eval_sample=15, state=state, history=hist)
        assert _same(rest.state, full.state)
        assert rest.history.step_loss == full.history.step_loss
        assert rest.history.grad_norms == full.history.grad_norms
        assert _untimed(rest.history) == _untimed(full.history)


def test_resume_from_checkpoints_written_by_on_epoch_after_a_crash(tmp_path: Path) -> None:
    """The usual pattern: save in ``on_epoch``, the process dies, a new run loads the last file."""
    full = _run(4)
    path = tmp_path / "last.npz"

    def save_then_crash(state: TrainState, hist: History) -> None:
        checkpoint.save(path, state, meta={"history": hist.to_json()})
        if int(state.epoch) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(4, on_epoch=save_then_crash)
    state, meta = checkpoint.load(path, _like())
    rest = _run(4, state=state, history=History.from_json(meta["history"]))
    assert _same(rest.state, full.state) and rest.history.step_loss == full.history.step_loss


@pytest.mark.parametrize("restore_best", [False, True])
def test_resume_with_early_stopping_through_a_checkpoint(tmp_path: Path, restore_best: bool) -> None:
    rule = EarlyStopping(monitor="val_loss", patience=3, restore_best=restore_best)
    plateau = ReduceOnPlateau(monitor="val_acc", patience=1)
    full = _run(30, early_stopping=rule, plateau=plateau)
    assert full.stopped_epoch is not None
    best = rule.decide(full.history).best_epoch
    # with restore_best the resumed run must start at or before the best epoch to hold its state;
    # without it any epoch before the stop will do
    cuts = {1, best} if restore_best else {best, full.stopped_epoch - 1}
    assert 1 < best < full.stopped_epoch - 1
    for cut in sorted(cuts):
        state, hist = _reload(tmp_path, _run(cut, plateau=plateau))
        rest = _run(30, early_stopping=rule, plateau=plateau, state=state, history=hist)
        assert (rest.stopped_epoch, rest.best_epoch) == (full.stopped_epoch, full.best_epoch)
        assert _same(rest.state, full.state)
        assert _untimed(rest.history) == _untimed(full.history)


@pytest.mark.parametrize("threads", [1, 3])
def test_fit_with_every_random_part_does_not_depend_on_threads(threads: int) -> None:
    base = _run(2, threads=2)
    other = _run(2, threads=threads)
    assert _same(base.state, other.state) and base.history.step_loss == other.history.step_loss
    assert _untimed(base.history) == _untimed(other.history)


def test_fit_never_touches_the_global_rng() -> None:
    with global_rng_untouched():
        _run(1, plateau=ReduceOnPlateau(patience=1), eval_sample=10)


def test_the_default_policy_is_reproducible_and_resumes(tmp_path: Path) -> None:
    full = _run(3, shards=None)
    assert _same(full.state, _run(3, shards=None).state)
    state, hist = _reload(tmp_path, _run(1, shards=None))
    assert _same(_run(3, shards=None, state=state, history=hist).state, full.state)


def test_a_nan_figure_survives_the_checkpointed_history(tmp_path: Path) -> None:
    h = History((0.5, float("nan")), ({"loss": float("nan"), "val_loss": float("inf")},))
    path = tmp_path / "h.npz"
    checkpoint.save(path, {"w": np.zeros(1)}, meta={"history": h.to_json()})
    _, meta = checkpoint.load(path, {"w": np.zeros(1)})
    back = History.from_json(meta["history"])
    assert back.step_loss[0] == 0.5 and math.isnan(back.step_loss[1])
    assert math.isnan(back.epochs[0]["loss"]) and back.epochs[0]["val_loss"] == math.inf


def test_resume_with_a_momentum_state_and_a_short_last_batch(tmp_path: Path) -> None:
    """No drop_last: each epoch ends with a batch of 3 (its own policy, one shard)."""
    x, t = TRAIN[0][:33], TRAIN[1][:33]

    def run(epochs: int, **kw: Any) -> FitResult:
        return fit(_model(), momentum(0.05), (x, t), key=fnnet.key(3), epochs=epochs, batch_size=10, shards=2,
                   augment=AUGMENT, progress="quiet", **kw)  # fmt: skip

    full = run(3)
    part = run(2)
    path = tmp_path / "m.npz"
    checkpoint.save(path, part.state, meta={"history": part.history.to_json()})
    like = init_train_state(_model(), momentum(0.05), fnnet.key(0), (1, 5, 5))
    state, meta = checkpoint.load(path, like)
    rest = run(3, state=state, history=History.from_json(meta["history"]))
    assert _same(rest.state, full.state) and rest.history.step_loss == full.history.step_loss


def test_predict_does_not_depend_on_threads_with_batchnorm_state() -> None:
    res = _run(1)
    ys = [predict(_model(), res.state.params, VAL[0], state=res.state.model_state, batch_size=3, threads=n)
          for n in (1, 2, 4)]  # fmt: skip
    assert all(np.array_equal(y, ys[0]) for y in ys)


_CHILD = """
import os, sys
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
os.environ.pop("FNNET_NUM_THREADS", None)
sys.path.insert(0, sys.argv[2])
from fnnet import checkpoint
from test_audit_repro import _run
checkpoint.save(sys.argv[1], _run(2, shards=None, threads=None).state)
"""


def test_another_process_on_one_core_gets_the_same_bits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh process (other addresses, other allocations) limited to one core, with the default
    policy and thread count, trains to the bits of this one."""
    root = Path(__file__).resolve().parent.parent
    path = tmp_path / "child.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", _CHILD, str(path), str(root / "tests")], check=True, env=env, timeout=120)
    monkeypatch.setenv("FNNET_NUM_THREADS", "2")
    here = _run(2, shards=None, threads=None).state
    child, _ = checkpoint.load(path, _like())
    assert _same(child, here)


def test_a_history_without_its_state_is_refused() -> None:
    """An old history with a fresh state used to train nothing (its stop decision held at epoch 0)."""
    done = _run(2)
    with pytest.raises(ValueError, match=r"^fit: a history of 2 epochs was given without the state saved with it; "):
        _run(4, history=done.history, early_stopping=EarlyStopping(patience=1))
    # an empty history without a state is a fresh start; a shorter history with its state a resume
    assert _same(_run(2, history=History()).state, done.state)
    early = _run(1)
    assert _same(_run(2, history=History(), state=early.state).state, done.state)


def test_the_last_good_states_history_holds_only_the_epochs_it_completed() -> None:
    """A NaN loss at an epoch's first step: the last good state is from before the previous epoch's
    last step, so that epoch's figures are not its own; with them it could not resume."""
    calls = [0]

    def loss(y: Array, t: Array) -> tuple[float, Array]:
        calls[0] += 1
        value, grad = fnnet.softmax_cross_entropy(y, t)
        return (math.nan if calls[0] == 5 else value), grad

    with pytest.raises(fnnet.NonFiniteLossError) as info:
        _run(3, loss=loss, metrics={}, val=None, eval_train=False)
    err = info.value
    assert err.history is not None and int(err.state.step) == 3 and err.step == 4
    assert int(err.state.epoch) == 0 and err.history.epochs == () and len(err.history.step_loss) == 4
    res = _run(1, state=err.state, history=err.history, val=None)
    assert int(res.state.epoch) == 1 and len(res.history.epochs) == 1


def test_resumed_after_the_best_epoch_restore_best_has_no_state_to_restore(tmp_path: Path) -> None:
    """The documented limit: the best epoch's state is not in a later checkpoint, so the resumed run
    stops where the uninterrupted one did and returns its last state, with no best epoch."""
    rule = EarlyStopping(monitor="val_loss", patience=3)
    full = _run(30, early_stopping=rule)
    assert full.stopped_epoch is not None and full.best_epoch is not None
    state, hist = _reload(tmp_path, _run(full.best_epoch + 1))
    with pytest.warns(UserWarning, match="best_state was not given"):
        rest = _run(30, early_stopping=rule, state=state, history=hist)
    assert rest.stopped_epoch == full.stopped_epoch and rest.best_epoch is None
    assert _same(rest.state, _run(full.stopped_epoch).state)


def test_fit_without_shuffling_visits_the_samples_in_order() -> None:
    """shuffle=False: the run no longer depends on the shuffle stream (a model without randomness
    from one starting state gives the same bits under two keys); shuffled runs do depend on it."""
    model = fnnet.serial(fnnet.Affine(4), fnnet.Tanh(), fnnet.Affine(3))
    g = fnnet.key(3).generator()
    x, t = g.standard_normal((30, 5)).astype(np.float32), g.integers(0, 3, 30)
    opt = fnnet.optim.sgd(0.1)
    start = fnnet.init_train_state(model, opt, fnnet.key(9), (5,))

    def run(k: int, shuffle: bool) -> list[Any]:
        result = fnnet.fit(model, opt, (x, t), key=fnnet.key(k), epochs=2, batch_size=8, shuffle=shuffle,
                           state=start, eval_train=False, progress="quiet")  # fmt: skip
        return tree_leaves(result.state.params)

    assert all(np.array_equal(a, b) for a, b in zip(run(0, False), run(1, False)))
    assert not all(np.array_equal(a, b) for a, b in zip(run(0, True), run(1, True)))
    with pytest.raises(ValueError, match=r"^fit: shuffle must be True or False, got 'no'$"):
        fnnet.fit(model, opt, (x, t), key=fnnet.key(0), epochs=1, shuffle="no", progress="quiet")  # type: ignore[arg-type]
