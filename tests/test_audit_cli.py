"""The command line and the training loop as a user meets them: odd inputs, interrupts, resuming."""

from __future__ import annotations

import io
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _helpers import assert_bit_identical, call_unchanged

import fnnet
from fnnet import checkpoint, models
from fnnet.optim import adam
from fnnet.train import EarlyStopping, FitResult, History, ReduceOnPlateau, fit, init_train_state
from fnnet.train._progress import Progress
from fnnet.typing import Array

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _task() -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """60 training items of 3 blurred blobs in 12 dimensions and 200 validation items."""
    g = fnnet.key(7).generator()
    centers = g.standard_normal((3, 12))

    def blobs(n: int) -> tuple[Array, Array]:
        t = g.integers(0, 3, n)
        return (centers[t] + 1.5 * g.standard_normal((n, 12))).astype(np.float32), t

    return blobs(60), blobs(200)


def _run(epochs: int, **kw: object) -> FitResult:
    train, val = _task()
    kw.setdefault("val", val)
    return fit(models.mlp((64, 64), 3), adam(0.01), train, key=fnnet.key(0), epochs=epochs, batch_size=20,
               eval_train=False, progress="quiet", **kw)  # type: ignore[arg-type]  # fmt: skip


# --------------------------------------------------------------------------------------------
# fit: edge cases of its arguments and rules
# --------------------------------------------------------------------------------------------


def test_drop_last_with_a_batch_larger_than_the_data_is_refused_instead_of_training_nothing() -> None:
    (x, t), _ = _task()
    with pytest.raises(ValueError, match=r"^fit: batch_size 61 is larger than the 60 training samples and "
                                         r"drop_last=True drops that one short batch, so no step would run"):  # fmt: skip
        fit(models.mlp((8,), 3), adam(0.01), (x, t), key=fnnet.key(0), epochs=1, batch_size=61, drop_last=True,
            progress="quiet")  # fmt: skip
    res = fit(models.mlp((8,), 3), adam(0.01), (x, t), key=fnnet.key(0), epochs=1, batch_size=60, drop_last=True,
              progress="quiet")  # fmt: skip
    assert int(res.state.step) == 1 and math.isfinite(res.history.epochs[0]["loss"])


@pytest.mark.parametrize("cut", [1, 2])
def test_early_stopping_resumed_from_a_state_without_its_history_restores_the_true_best(cut: int) -> None:
    rule = EarlyStopping(patience=3)
    full = _run(40, early_stopping=rule)
    assert full.best_epoch is not None and full.best_epoch > cut + 1
    rest = _run(40, early_stopping=rule, state=_run(cut).state)  # no history: it decides from epochs cut+1, ...
    assert rest.best_epoch == full.best_epoch and rest.stopped_epoch == full.stopped_epoch
    assert int(rest.state.epoch) == full.best_epoch
    assert_bit_identical(rest.state, full.state)
    assert full.stopped_epoch is not None and len(rest.history.epochs) == full.stopped_epoch - cut


def test_a_validation_loss_that_is_always_nan_restores_no_epoch() -> None:
    _, (xv, tv) = _task()
    xv = xv.copy()
    xv[0] = np.nan  # one bad validation item: every val_loss is NaN
    res = _run(10, val=(xv, tv), early_stopping=EarlyStopping(patience=2), plateau=ReduceOnPlateau(patience=1))
    assert all(math.isnan(v) for v in res.history.metric("val_loss"))
    assert res.stopped_epoch == 3 and res.best_epoch is None
    assert_bit_identical(res.state, _run(3).state)  # the last state, not epoch 1's
    assert res.history.metric("lr_scale") == [1.0, 1.0, 1.0]


def test_a_validation_set_of_one_sample_drives_the_rules() -> None:
    _, (xv, tv) = _task()
    one = (xv[:1], tv[:1])
    res = _run(4, val=one, early_stopping=EarlyStopping(patience=1), plateau=ReduceOnPlateau(patience=1))
    assert len(res.history.epochs) == 4 or res.stopped_epoch is not None
    vals = res.history.metric("val_loss")
    assert all(math.isfinite(v) for v in vals) and res.history.metric("val_acc")[0] in (0.0, 1.0)
    assert res.best_epoch == 1 + int(np.argmin(vals))


def test_fit_writes_into_no_array_it_is_given() -> None:
    g = fnnet.key(1).generator()
    x = g.normal(size=(30, 1, 6, 6)).astype(np.float32)
    t = g.integers(0, 3, 30)
    model = fnnet.serial(fnnet.Conv2D(4, 3), fnnet.BatchNorm(), fnnet.ReLU(), fnnet.Flatten(), fnnet.Affine(3))
    start = init_train_state(model, adam(0.01), fnnet.key(0), (1, 6, 6))

    def run(x: Array, t: Array, xv: Array, tv: Array, state: object) -> FitResult:
        return fit(model, adam(0.01), (x, t), key=fnnet.key(2), epochs=2, batch_size=8, val=(xv, tv),
                   state=state, early_stopping=EarlyStopping(patience=1), progress="quiet",  # type: ignore[arg-type]
                   augment=fnnet.compose(fnnet.RandomCrop(pad=1), fnnet.HorizontalFlip()))  # fmt: skip

    frozen = call_unchanged(run, x, t, x[:5], t[:5], start, readonly=True)
    assert_bit_identical(frozen.state, call_unchanged(run, x, t, x[:5], t[:5], start).state)


def test_an_interrupted_fit_ends_its_progress_bar_line() -> None:
    (x, t), _ = _task()
    stream = io.StringIO()

    def augment_then_interrupt(key: fnnet.Key, xb: Array) -> Array:
        if stream.getvalue():  # the bar is drawn
            raise KeyboardInterrupt
        return xb

    bar = Progress(3, 3, "bar", stream=stream)
    with pytest.raises(KeyboardInterrupt):
        fit(models.mlp((8,), 3), adam(0.01), (x[:, None, :, None], t), key=fnnet.key(0), epochs=3, batch_size=20,
            progress=bar, augment=augment_then_interrupt)  # fmt: skip
    assert stream.getvalue().endswith("\n") and not bar.mid_line


# --------------------------------------------------------------------------------------------
# fit with a checkpoint per epoch, stopped by a signal at a random moment, then resumed
# --------------------------------------------------------------------------------------------

_CHILD = """
import sys
import numpy as np
import fnnet
from fnnet import checkpoint, models
from fnnet.optim import adam
from fnnet.train import fit

g = fnnet.key(5).generator()
x = g.normal(size=(64, 12)).astype(np.float32)
t = (x[:, 0] > 0).astype(np.int64)

def save(state, history):
    checkpoint.save(sys.argv[1], state, meta={"history": history.to_json()})
    print(int(state.epoch), flush=True)

fit(models.mlp((32, 32), 2, dropout=0.2), adam(0.01), (x, t), key=fnnet.key(3), epochs=100000, batch_size=16,
    progress="quiet", on_epoch=save)
"""


def _child_data() -> tuple[Array, Array]:
    g = fnnet.key(5).generator()
    x = g.normal(size=(64, 12)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _fit_child(k: int, **kw: object) -> FitResult:
    """What the child above trains, in this process, for ``k`` epochs."""
    return fit(models.mlp((32, 32), 2, dropout=0.2), adam(0.01), _child_data(), key=fnnet.key(3), epochs=k,
               batch_size=16, progress="quiet", **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_fit_leaves_the_last_checkpoint_readable_and_resuming_is_bit_exact(
    signum: int, tmp_path: Path
) -> None:
    script, ck = tmp_path / "child.py", tmp_path / "ck.npz"
    script.write_text(_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(ck)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    delay = random.uniform(0.0, 0.3)
    time.sleep(delay)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    where = f"signal {signum} {delay:.2f}s after the first checkpoint: exit {proc.returncode}, {err[-300:]!r}"
    assert first == "1\n" and proc.returncode != 0, where
    like = init_train_state(models.mlp((32, 32), 2, dropout=0.2), adam(0.01), fnnet.key(9), (12,))
    state, meta = checkpoint.load(ck, like)
    done = int(state.epoch)
    assert done >= 1, where
    hist = History.from_json(meta["history"])
    assert len(hist.epochs) == done, where
    full = _fit_child(done + 2)
    rest = _fit_child(done + 2, state=state, history=hist)
    assert_bit_identical(rest.state, full.state)
    assert rest.history.step_loss == full.history.step_loss, where

