"""Ctrl-C during fit, evaluate, predict and random_search: what is kept, and a process that stays healthy.

The interrupts are raised deterministically (from on_epoch, a layer on a chosen call in a chosen
shard, the loss, a metric, an objective); one subprocess test sends real SIGINTs at many moments.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import ShapeKeeping, assert_bit_identical, outcome

import fnnet
from fnnet import Affine, BatchNorm, ReLU, serial
from fnnet.hparam import SearchInterrupted, TrialResult, Uniform, random_search
from fnnet.datasets import batches
from fnnet.layers.base import Ctx
from fnnet.train import EarlyStopping, FitResult, History, TrainingInterrupted, TrainState, evaluate, fit, predict
from fnnet.train import parallel
from fnnet.train._progress import Progress
from fnnet.typing import Array

ROOT = Path(__file__).resolve().parents[1]


class _CtrlC(ShapeKeeping):
    """Passes its input through; raises KeyboardInterrupt in training on shard ``shard``'s
    ``at``-th forward (1-based), or in its backward with ``backward=True``."""

    def __init__(self, at: int | None = None, shard: int = 0, backward: bool = False):
        self.at, self.shard, self.backward_too = at, shard, backward
        self.calls = [0, 0]

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = fnnet.EVAL) -> tuple[Array, None, int]:
        # a training key's path ends (..., 1, shard, 1, this layer's index in the serial)
        s = int(ctx.key.path[-3]) if ctx.train and ctx.key is not None else -1
        if s == self.shard:
            self.calls[s] += 1
            if self.calls[s] == self.at and not self.backward_too:
                raise KeyboardInterrupt
        return x, None, s

    def backward(self, params: None, cache: int, dout: Array, input_grad: bool = True) -> tuple[Array, None]:
        if cache == self.shard and self.calls[cache] == self.at and self.backward_too:
            raise KeyboardInterrupt
        return dout, None


def _data() -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    g = fnnet.key(5).generator()
    x = g.normal(size=(136, 6)).astype(np.float32)
    t = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return (x[:96], t[:96]), (x[96:], t[96:])


TRAIN, VAL = _data()
RULE = EarlyStopping(patience=3, restore_best=True)


def _run(layer: _CtrlC, **kw: Any) -> FitResult:
    """A BatchNorm model in two shards on two threads: 3 steps an epoch, 5 epochs, early stopping
    (validation losses 0.53, 0.33, 0.50, 0.30, 0.27)."""
    model = serial(Affine(16), layer, BatchNorm(), ReLU(), Affine(3))
    options: dict[str, Any] = dict(key=fnnet.key(1), epochs=5, batch_size=32, val=VAL, early_stopping=RULE,
                                   shards=2, threads=2, progress="quiet")  # fmt: skip
    options.update(kw)
    return fit(model, fnnet.optim.adam(0.2), TRAIN, **options)


def _figures(h: History) -> list[dict[str, float]]:
    return [{k: v for k, v in e.items() if k != "time"} for e in h.epochs]


_FULL: list[FitResult] = []


def _full() -> FitResult:
    if not _FULL:
        _FULL.append(_run(_CtrlC()))
    return _FULL[0]


def _on_epoch_at(n: int) -> Any:
    def on_epoch(state: TrainState, h: History) -> None:
        if int(state.epoch) == n:
            raise KeyboardInterrupt

    return on_epoch


def _loss_at(n: int) -> Any:
    calls = [0]

    def loss(y: Array, t: Array) -> tuple[float, Array]:
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return fnnet.softmax_cross_entropy(y, t)

    return loss


def _metric_at(n: int) -> Any:
    calls = [0]

    def acc(y: Array, t: Array) -> float:
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return fnnet.accuracy(y, t)

    return {"acc": acc}


class _Bar(Progress):
    """A quiet progress display interrupted when it is to show step ``at`` (1-based)."""

    def __init__(self, at: int):
        super().__init__(5, 3, "quiet")
        self.at, self.calls = at, 0

    def batch(self, epoch: int, i: int, loss: float) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt


# where: (layer, fit options, steps done when interrupted, epochs in the kept history)
CASES: dict[str, tuple[_CtrlC, dict[str, Any], int, int]] = {
    "on_epoch of the best epoch": (_CtrlC(), {"on_epoch": _on_epoch_at(2)}, 6, 2),  # before the rule saw it
    "on_epoch": (_CtrlC(), {"on_epoch": _on_epoch_at(3)}, 9, 3),  # after a worse epoch than the best, 2
    "worker shard forward": (_CtrlC(at=5, shard=1), {}, 4, 1),
    "main shard forward": (_CtrlC(at=8, shard=0), {}, 7, 2),
    "main shard backward": (_CtrlC(at=3, shard=0, backward=True), {}, 2, 0),
    "loss in a step": (_CtrlC(), {"loss": _loss_at(7), "metrics": {"acc": fnnet.accuracy}}, 4, 1),  # calls: 3 steps + 2 evaluations an epoch
    "metric in evaluation": (_CtrlC(), {"metrics": _metric_at(3)}, 6, 1),  # train_acc, val_acc, then epoch 2
    "progress output": (_CtrlC(), {"progress": _Bar(11)}, 11, 3),  # the step is taken, then shown
}


@pytest.mark.parametrize("where", list(CASES))
def test_an_interrupted_fit_keeps_its_training_and_resumes_to_the_uninterrupted_bits(where: str) -> None:
    full = _full()
    before = parallel.blas_threads()
    layer, options, steps, epochs = CASES[where]
    with pytest.raises(TrainingInterrupted) as caught:
        _run(layer, **options)
    err = caught.value
    assert isinstance(err, KeyboardInterrupt) and "\n" not in str(err) and "epoch_state" in str(err)
    assert (int(err.state.step), int(err.epoch_state.epoch), len(err.history.epochs)) == (steps, epochs, epochs)
    # the kept losses are those of the uninterrupted run, up to each kept state
    assert err.step_loss == full.history.step_loss[:steps]
    assert err.history.step_loss == full.history.step_loss[: int(err.epoch_state.step)]
    assert _figures(err.history) == _figures(full.history)[:epochs]
    if epochs:  # the state to restore so far: passed on, the resumed run restores the same one
        assert err.best_state is not None and int(err.best_state.epoch) == RULE.decide(err.history).best_epoch
    # the process is healthy: the pool's threads, the cross-shard sums and BLAS's count are as before
    assert parallel.blas_threads() == before and parallel._get_blas().users == 0
    options = {k: v for k, v in options.items() if k not in ("on_epoch", "progress")}
    rest = _run(_CtrlC(), state=err.epoch_state, history=err.history, best_state=err.best_state, **options)
    assert_bit_identical(rest.state, full.state)
    assert_bit_identical(rest.last_state, full.last_state)
    assert (rest.best_epoch, rest.stopped_epoch) == (full.best_epoch, full.stopped_epoch)
    assert rest.history.step_loss == full.history.step_loss and _figures(rest.history) == _figures(full.history)


def test_the_kept_step_state_is_the_one_training_step_by_step_reaches() -> None:
    with pytest.raises(TrainingInterrupted) as caught:
        _run(_CtrlC(at=5, shard=1))
    err = caught.value  # after 4 steps, one into epoch 2
    one = _run(_CtrlC(), epochs=1)
    assert_bit_identical(err.epoch_state, one.last_state)
    assert err.best_state is not None and int(err.best_state.epoch) == 1
    # epoch 2's first batch and step 3's key, as fit draws them from its key
    _, shuffle_key, step_key, _, _ = fnnet.split(fnnet.key(1), 5)
    xb, tb = next(iter(batches(fnnet.fold_in(shuffle_key, 1), *TRAIN, 32)))
    model = serial(Affine(16), _CtrlC(), BatchNorm(), ReLU(), Affine(3))
    step = fnnet.make_train_step(model, fnnet.softmax_cross_entropy, fnnet.optim.adam(0.2), shards=2, threads=2)
    state, metrics = step(err.epoch_state, xb, tb, fnnet.fold_in(step_key, 3))
    assert_bit_identical(err.state, state)
    assert err.step_loss[-1] == metrics.loss


def test_an_interrupt_of_a_keyboard_interrupt_subclass_stays_of_that_class() -> None:
    class Terminated(KeyboardInterrupt):
        pass

    def on_epoch(state: TrainState, h: History) -> None:
        raise Terminated

    with pytest.raises(Terminated) as caught:
        _run(_CtrlC(), on_epoch=on_epoch, epochs=1, early_stopping=None)
    assert isinstance(caught.value, TrainingInterrupted) and int(caught.value.epoch_state.epoch) == 1
    assert caught.value.best_state is None  # no restore_best: nothing to pass


class _Gate(ShapeKeeping):
    """For predict/evaluate in 10-row batches on two threads (batches 0-9 on the caller's thread,
    10-19 on a pool thread): the caller is interrupted in its batch ``at`` once the pool's thread
    is in batch 10, which then takes a while; every batch seen is recorded."""

    def __init__(self, at: int):
        self.at, self.seen = at, list[int]()
        self.worker_in, self.interrupted = threading.Event(), threading.Event()

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = fnnet.EVAL) -> tuple[Array, None, None]:
        batch = int(round(float(x[0, 0]))) // 10
        self.seen.append(batch)
        if batch == self.at:
            assert self.worker_in.wait(10)
            self.interrupted.set()
            raise KeyboardInterrupt
        if batch == 10:
            self.worker_in.set()
            assert self.interrupted.wait(10)
            time.sleep(0.3)
        return x, None, None


@pytest.mark.parametrize("fn", ["predict", "evaluate"])
def test_an_interrupted_predict_or_evaluate_stops_its_threads_after_their_batch(fn: str) -> None:
    x = np.repeat(np.arange(200, dtype=np.float32)[:, None], 3, axis=1)
    t = np.zeros(200, np.int64)
    gate = _Gate(at=3)
    model = serial(gate, Affine(2))
    params, _ = model.init(fnnet.key(0), (3,))
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        if fn == "predict":
            predict(model, params, x, batch_size=10, threads=2)
        else:
            evaluate(model, params, x, t, batch_size=10, threads=2)
    # the pool's run stopped after the batch it was in (it had 10), and was waited for
    assert sorted(gate.seen) == [0, 1, 2, 3, 10] and time.perf_counter() - t0 < 5
    ok = serial(_Gate(at=-1), Affine(2))
    y = predict(ok, params, x[:100], batch_size=10, threads=2)
    assert_bit_identical(y, predict(ok, params, x[:100], batch_size=100, threads=1))


# --- random_search --------------------------------------------------------------------------------


SPACE = {"x": Uniform(0.0, 1.0)}


def _score(hparams: dict[str, Any], k: fnnet.Key) -> dict[str, float]:
    return {"val_acc": 1.0 - abs(hparams["x"] - 0.3) + float(k.generator().uniform()) * 1e-3}


def test_an_interrupted_search_keeps_its_finished_trials_and_runs_only_the_others() -> None:
    full = random_search(_score, SPACE, key=fnnet.key(0), n_trials=8)
    calls: list[float] = []

    def ctrl_c_in_trial_5(hparams: dict[str, Any], k: fnnet.Key) -> dict[str, float]:
        calls.append(hparams["x"])
        if len(calls) == 6:
            raise KeyboardInterrupt
        return _score(hparams, k)

    with pytest.raises(SearchInterrupted) as caught:
        random_search(ctrl_c_in_trial_5, SPACE, key=fnnet.key(0), n_trials=8)
    err = caught.value
    assert isinstance(err, KeyboardInterrupt) and "\n" not in str(err) and "done=err.trials" in str(err)
    assert [outcome(t) for t in err.trials] == [outcome(t) for t in full.trials[:5]]
    seen: list[int] = []
    rest = random_search(_score, SPACE, key=fnnet.key(0), n_trials=8, done=err.trials, on_trial=lambda t: seen.append(t.index))
    assert seen == [5, 6, 7] and [outcome(t) for t in rest.trials] == [outcome(t) for t in full.trials]
    assert rest.trials[:5] == err.trials  # kept as they are, times included


def test_an_interrupted_search_on_an_executor_keeps_the_trials_that_finished() -> None:
    full = random_search(_score, SPACE, key=fnnet.key(0), n_trials=8)

    def ctrl_c_at_the_third(t: TrialResult) -> None:
        if t.index == 2:
            raise KeyboardInterrupt

    with ThreadPoolExecutor(1) as ex, pytest.raises(SearchInterrupted) as caught:
        random_search(_score, SPACE, key=fnnet.key(0), n_trials=8, executor=ex, on_trial=ctrl_c_at_the_third)
    kept = caught.value.trials
    assert [t.index for t in kept] == [0, 1, 2]  # one worker: in order; the third reached on_trial, then Ctrl-C
    with ThreadPoolExecutor(2) as ex:
        rest = random_search(_score, SPACE, key=fnnet.key(0), n_trials=8, executor=ex, done=kept)
    assert [outcome(t) for t in rest.trials] == [outcome(t) for t in full.trials]


def test_done_trials_of_another_search_are_refused() -> None:
    other = random_search(_score, SPACE, key=fnnet.key(1), n_trials=3)
    with pytest.raises(ValueError, match="trial 0 has hyperparameters .* another search"):
        random_search(_score, SPACE, key=fnnet.key(0), n_trials=3, done=other.trials)
    with pytest.raises(ValueError, match="trial 2, beyond this search's 2 trials"):
        random_search(_score, SPACE, key=fnnet.key(1), n_trials=2, done=other.trials)
    with pytest.raises(ValueError, match="trial 1 twice"):
        random_search(_score, SPACE, key=fnnet.key(1), n_trials=3, done=[other.trials[1], other.trials[1]])


# --- real SIGINTs in a subprocess -------------------------------------------------------------------


_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import numpy as np, fnnet
    from fnnet.train import parallel

    main = threading.main_thread().ident
    # Ctrl-C while the main shard waits for its turn (two shards, one thread)
    group = parallel.ShardGroup(2, threads=1)
    group.permits.acquire()
    threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT)).start()
    threading.Timer(0.3, group.permits.release).start()
    try:
        group.run(lambda s: group.batch_sum(s)(np.ones(1)))
        raise AssertionError("not interrupted")
    except KeyboardInterrupt:
        pass  # and the other shard did not wait at the sum for ever

    g = fnnet.key(5).generator()
    x = g.normal(size=(512, 64)).astype(np.float32)
    t = (x[:, 0] > 0).astype(np.int64)

    def run(epochs, threads=2, **kw):
        model = fnnet.serial(fnnet.Affine(128), fnnet.BatchNorm(), fnnet.ReLU(), fnnet.Affine(2))
        return fnnet.fit(model, fnnet.optim.adam(0.01), (x, t), key=fnnet.key(1), epochs=epochs, batch_size=64,
                         val=(x[:128], t[:128]), shards=2, threads=threads, progress="quiet", **kw)

    def leaves(s):
        return [np.asarray(a).tobytes() for a in fnnet.tree_leaves(s)]

    before = parallel.blas_threads()
    full = run(3)
    kept = []
    for i in range(N):
        # Ctrl-C at moments spread over the first epochs of a long run, the shards computing
        # together or taking turns on one thread
        timer = threading.Timer(0.002 + 0.01 * i, signal.pthread_kill, (main, signal.SIGINT))
        try:
            timer.start()
            run(1000, threads=1 + i % 2)
            raise AssertionError("not interrupted")
        except fnnet.TrainingInterrupted as e:
            kept.append(e)
        except KeyboardInterrupt:
            pass  # landed before fit's loop
        timer.join()
        assert parallel.blas_threads() == before and parallel._get_blas().users == 0
    again = run(3)
    assert leaves(again.state) == leaves(full.state), "a fit after the interrupts gives other bits"
    e = max(kept, key=lambda e: int(e.epoch_state.epoch))
    k = int(e.epoch_state.epoch) + 1
    rest = run(k, state=e.epoch_state, history=e.history)
    assert leaves(rest.state) == leaves(run(k).state), "a resumed run gives other bits"
    print(len(kept), "interrupted", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_kill"), reason="POSIX signals")
def test_real_interrupts_of_a_sharded_fit_leave_a_process_that_trains_the_same_bits_and_exits() -> None:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", "N = 16\n" + _SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = int(proc.stdout.split()[0])
    assert kept >= 4, proc.stdout  # signals landed in fit's loop (most do; a loaded machine is slower to reach it)
    assert time.perf_counter() - t0 < 100
