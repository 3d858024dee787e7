"""Training loops: a seeded, resumable ``fit``, and batched ``evaluate`` / ``predict``.

``fit`` repeats the training step (:mod:`fnnet.train.step`) over keyed shuffles. The epoch and step
counters live in the :class:`~fnnet.train.step.TrainState`, so training N epochs equals training k,
saving, loading and training N-k, bit for bit.

>>> import numpy as np, fnnet
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 2)).astype(np.float32)
>>> t = (x[:, 0] > 0).astype(np.int64)
>>> model = fnnet.serial(fnnet.Affine(8), fnnet.ReLU(), fnnet.Affine(2))
>>> result = fit(model, fnnet.sgd(0.5), (x, t), key=fnnet.key(0), epochs=20, batch_size=20, progress="quiet")
>>> result.history.epochs[-1]["train_acc"] > 0.9
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from fnnet._validate import check_positive_int, is_int
from fnnet.datasets import batches
from fnnet.layers.base import EVAL, Ctx, Layer
from fnnet.losses import softmax_cross_entropy
from fnnet.metrics import accuracy
from fnnet.optim import GradientTransformation
from fnnet.random import Key, fold_in, split
from fnnet.train._progress import Progress
from fnnet.train.parallel import blas_limit, default_threads, run_shards
from fnnet.train.step import (
    LossFn,
    NonFiniteLossError,
    TrainState,
    all_finite,
    counter,
    init_train_state,
    make_train_step,
)
from fnnet.typing import Array, Tree

__all__ = ["History", "FitResult", "evaluate", "predict", "fit"]


def _thread_count(threads: int | None, fn: str) -> int:
    return default_threads() if threads is None else check_positive_int(fn, "threads", threads)


def _eval_batches(
    model: Layer, params: Tree, x: Array, state: Tree, batch_size: int, threads: int | None, fn: str
) -> list[tuple[slice, Array]]:
    """Evaluation-mode outputs of consecutive batches, spread over threads; ``[(rows, y), ...]``."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be a positive int, got {batch_size!r}")
    n_threads = _thread_count(threads, fn)
    rows = [slice(i, min(i + batch_size, len(x))) for i in range(0, len(x), batch_size)]
    with blas_limit(1):
        ys = run_shards(lambda r: model.forward(params, state, x[r], EVAL)[0], rows, n_threads)
    return list(zip(rows, ys))


def predict(
    model: Layer, params: Tree, x: Array, *, state: Tree = None, batch_size: int = 1000, threads: int | None = None
) -> Array:
    """Evaluation-mode outputs for ``x`` (``(N, *in_shape)``), computed in batches; shape ``(N, *out)``.

    Batches run on up to ``threads`` threads (default :func:`fnnet.train.parallel.default_threads`),
    each with single-threaded BLAS; the result does not depend on ``threads``.
    """
    outs = [y for _, y in _eval_batches(model, params, x, state, batch_size, threads, "predict")]
    return np.concatenate(outs) if outs else np.zeros((0,))


def evaluate(
    model: Layer,
    params: Tree,
    x: Array,
    t: Array,
    *,
    state: Tree = None,
    loss: LossFn = softmax_cross_entropy,
    batch_size: int = 1000,
    threads: int | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` in evaluation mode on ``(x, t)``.

    Batches run as in :func:`predict`; the result does not depend on ``threads``.

    Returns:
        ``{"loss": ..., "acc": ...}``.
    """
    total, correct, n = 0.0, 0.0, len(x)
    if n == 0:
        raise ValueError("evaluate: empty data set")
    if len(t) != n:
        raise ValueError(f"evaluate: x has {n} samples but t has {len(t)}")
    for rows, y in _eval_batches(model, params, x, state, batch_size, threads, "evaluate"):
        tb = t[rows]
        total += loss(y, tb)[0] * len(tb)
        correct += accuracy(y, tb) * len(tb)
    return {"loss": total / n, "acc": correct / n}


@attrs.frozen
class History:
    """Training history: the loss of every step and the metrics of every epoch.

    ``epochs`` is a tuple of dicts such as ``{"train_acc": 0.93, "val_acc": 0.92, "time": 1.2}``.
    """

    step_loss: tuple[float, ...] = ()
    epochs: tuple[dict[str, float], ...] = ()

    def metric(self, name: str) -> list[float]:
        """One metric over the epochs, e.g. ``history.metric("test_acc")``."""
        return [e[name] for e in self.epochs if name in e]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"step_loss": list(self.step_loss), "epochs": [dict(e) for e in self.epochs]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> History:
        """Inverse of :meth:`to_json`."""
        return cls(tuple(float(v) for v in d["step_loss"]), tuple(dict(e) for e in d["epochs"]))


@attrs.frozen
class FitResult:
    """What :func:`fit` returns."""

    state: TrainState
    history: History


def _sample(key: Key, x: Array, t: Array, n: int | None) -> tuple[Array, Array]:
    if n is None or n >= len(x):
        return x, t
    idx = np.sort(key.generator().choice(len(x), n, replace=False))
    return x[idx], t[idx]


def fit(
    model: Layer,
    optimizer: GradientTransformation,
    train: tuple[Array, Array],
    *,
    key: Key,
    epochs: int,
    batch_size: int = 100,
    drop_last: bool = False,
    loss: LossFn = softmax_cross_entropy,
    state: TrainState | None = None,
    history: History | None = None,
    val: tuple[Array, Array] | None = None,
    test: tuple[Array, Array] | None = None,
    eval_train: bool = True,
    eval_sample: int | None = None,
    weight_decay: float = 0.0,
    decay_mask: Any = None,
    progress: str | Progress = "auto",
    on_epoch: Callable[[TrainState, History], None] | None = None,
    shards: int | None = None,
    threads: int | None = None,
    blas_threads: int | None = None,
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs of shuffled mini-batches.

    Args:
        model: any layer; optimizer: a gradient transformation.
        train: ``(x, t)`` with ``x`` of shape ``(N, *in_shape)`` and labels ``(N,)`` or one-hot.
        key: the one seed of the run. Params are initialised from ``split(key)[0]``; the shuffle of
            epoch ``e`` uses ``fold_in(shuffle_key, e)`` and step ``s`` uses ``fold_in(step_key, s)``.
        batch_size: samples per step; ``drop_last`` skips an epoch's final short batch (useful
            with BatchNorm, which cannot normalise a batch of one).
        epochs: total epochs to reach; when resuming from ``state`` (whose ``epoch`` counts the
            epochs already done), only the remaining ones run.
        state, history: resume from these (e.g. loaded with :func:`fnnet.load`).
        val, test: evaluated after every epoch (``val_acc``, ``test_acc``); ``eval_train`` adds
            ``train_acc``; ``eval_sample`` evaluates on a keyed random sample of that many items.
        weight_decay, decay_mask: the book's coupled L2 (see :func:`make_train_step`).
        progress: ``"auto"``, ``"bar"``, ``"lines"`` or ``"quiet"``, or a
            :class:`~fnnet.train._progress.Progress` of the caller's. Per-epoch figures measured on
            an ``eval_sample`` are labelled so, e.g. ``test_acc(sample 2000)``.
        on_epoch: called with the state and history after each epoch (e.g. to checkpoint).
        shards, threads, blas_threads: how each batch runs (see :func:`make_train_step`);
            ``threads`` also runs the evaluation batches in parallel and changes no result.
    Returns:
        A :class:`FitResult` with the final state and the history. On a NaN/inf loss, parameter or
        optimizer state raises :class:`NonFiniteLossError` whose ``state`` is the last state whose
        loss, parameters and optimizer state were all finite, and whose ``history`` ends there.
    """
    if not isinstance(key, Key):
        raise ValueError(f"fit: key must be a fnnet.Key (e.g. fnnet.key(0)), got {type(key).__name__}")
    if not (isinstance(train, tuple) and len(train) == 2):
        raise ValueError("fit: train must be a pair (x, t) of arrays")
    x, t = train
    if not isinstance(x, np.ndarray) or not isinstance(t, np.ndarray):
        raise ValueError(
            f"fit: x and t must be NumPy arrays, got {type(x).__name__} and {type(t).__name__}; "
            "convert with np.asarray(..., dtype=np.float32)"
        )
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"fit: x must hold at least one sample of shape (N, ...), got shape {x.shape}")
    if len(x) != len(t):
        raise ValueError(f"fit: x has {len(x)} samples but t has {len(t)}")
    if not is_int(epochs) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    batch_size = check_positive_int("fit", "batch_size", batch_size)
    init_key, shuffle_key, step_key, eval_key = split(key, 4)
    if state is None:
        state = init_train_state(model, optimizer, init_key, tuple(x.shape[1:]))
    for part in ("params", "opt_state", "model_state"):
        if not all_finite(getattr(state, part)):
            raise ValueError(
                f"fit: the starting state's {part} holds NaN or infinite values"
                + ("; a learning-rate schedule returned one?" if part == "opt_state" else "")
            )
    hist = history if history is not None else History()
    train_step = make_train_step(
        model,
        loss,
        optimizer,
        weight_decay=weight_decay,
        decay_mask=decay_mask,
        shards=shards,
        threads=threads,
        blas_threads=blas_threads,
    )
    batches_per_epoch = len(x) // batch_size if drop_last else math.ceil(len(x) / batch_size)
    if isinstance(progress, Progress):
        bar = progress
    else:
        named = [("train", (x, t) if eval_train else None), ("val", val), ("test", test)]
        labels = {
            f"{name}_acc": f"{name}_acc(sample {eval_sample})"
            for name, data in named
            if data is not None and eval_sample is not None and eval_sample < len(data[0])
        }
        bar = Progress(epochs, batches_per_epoch, progress, labels=labels)
    good = state  # the latest state whose loss, params and optimizer state were all finite

    with blas_limit(1 if blas_threads is None else blas_threads):
        for epoch in range(int(state.epoch), epochs):
            t0 = time.perf_counter()
            losses: list[float] = []
            for i, (xb, tb) in enumerate(batches(fold_in(shuffle_key, epoch), x, t, batch_size, drop_last=drop_last)):
                try:
                    new, m = train_step(state, xb, tb, fold_in(step_key, int(state.step)))
                except NonFiniteLossError as e:
                    bar.break_line()
                    last = e.state if e.loss_finite else good
                    hist = History(hist.step_loss + tuple(losses), hist.epochs)
                    raise NonFiniteLossError(
                        f"{e} (the error's state is the last good one, from step {int(last.step)})",
                        e.step,
                        last,
                        hist,
                    ) from None
                good, state = state, new
                losses.append(m.loss)
                bar.batch(epoch, i, m.loss)
            state = state._replace(epoch=counter(epoch + 1))
            metrics: dict[str, float] = {"loss": float(np.mean(losses)) if losses else float("nan")}
            ek = fold_in(eval_key, epoch)
            sets = [("train", (x, t) if eval_train else None), ("val", val), ("test", test)]
            for j, (name, data) in enumerate(sets):
                if data is not None:
                    xs, ts = _sample(fold_in(ek, j), data[0], data[1], eval_sample)
                    metrics[f"{name}_acc"] = evaluate(
                        model, state.params, xs, ts, state=state.model_state, loss=loss, threads=threads
                    )["acc"]
            metrics["time"] = time.perf_counter() - t0
            hist = History(hist.step_loss + tuple(losses), hist.epochs + (metrics,))
            bar.epoch(epoch, {k: v for k, v in metrics.items() if k != "time"})
            if on_epoch is not None:
                on_epoch(state, hist)
    return FitResult(state, hist)
