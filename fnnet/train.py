"""Training, end to end: one pure step and a seeded, resumable ``fit`` loop.

One step is the whole data flow of DESIGN.md::

    batch -> model.forward(params, x, ctx) -> loss(y, t) -> model.backward(...) -> grads
          -> optimizer.update(grads, opt_state, params) -> new params, new opt_state

``fit`` repeats it over keyed shuffles. The epoch and step counters live in the :class:`TrainState`,
so training N epochs equals training k, saving, loading and training N-k, bit for bit.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import numpy as np

from fnnet._progress import Progress
from fnnet.typing import Array, Shape, Tree
from fnnet.datasets import batches
from fnnet.layers.base import EVAL, Ctx, Layer, join_rows
from fnnet.layers.combinators import Serial
from fnnet.losses import accuracy, softmax_cross_entropy
from fnnet.optim import GradientTransformation, apply_updates, l2_penalty
from fnnet.parallel import Shards, default_threads, run_shards, shard_slices, single_threaded_blas
from fnnet.random import Key, fold_in, split
from fnnet.tree import tree_leaves, tree_map

__all__ = [
    "LossFn",
    "TrainState",
    "StepMetrics",
    "History",
    "FitResult",
    "NonFiniteLossError",
    "init_train_state",
    "make_train_step",
    "evaluate",
    "predict",
    "fit",
]

#: ``loss(y, t) -> (value, dvalue/dy)``, e.g. :func:`fnnet.losses.softmax_cross_entropy`.
LossFn = Callable[[Array, Any], tuple[float, Array]]

# Key streams: fit's key is split once into a shuffling stream and a per-step stream (Dropout).
_SHUFFLE, _STEP = 0, 1

#: Shards of a training batch by default, for models that gain from splitting (``splits_well``,
#: e.g. any with a convolution) and have no batch-coupled layer: a fixed number, so results do
#: not depend on the machine; threads only decide how many run at once.
DEFAULT_SHARDS = 2


class TrainState(NamedTuple):
    """Everything that changes during training (a tree: checkpoint it with :func:`fnnet.save`).

    Attributes:
        params: the model's parameters.
        opt_state: the optimizer's state.
        model_state: explicit non-trainable state (BatchNorm statistics), ``model.init_state``.
        step: number of steps taken (0-d int64 array).
        epoch: number of completed epochs (0-d int64 array).
    """

    params: Tree
    opt_state: Tree
    model_state: Tree
    step: Array
    epoch: Array


class StepMetrics(NamedTuple):
    """What one training step reports."""

    loss: float


class NonFiniteLossError(FloatingPointError):
    """Raised when the loss is NaN or infinite; ``state`` is the last good :class:`TrainState`."""

    def __init__(self, message: str, step: int, state: TrainState, history: History | None = None):
        super().__init__(message)
        self.step = step
        self.state = state
        self.history = history


def init_train_state(
    model: Layer, optimizer: GradientTransformation, key: Key, in_shape: Shape
) -> TrainState:
    """Initialise params (from ``key``), optimizer state and model state for inputs ``(N, *in_shape)``."""
    params, _ = model.init(key, in_shape)
    return TrainState(
        params, optimizer.init(params), model.init_state(in_shape), _counter(0), _counter(0)
    )


def _counter(n: int) -> Array:
    return np.array(n, dtype=np.int64)


def _positive(fn: str, name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{fn}: {name} must be a positive int, got {value!r}")
    return int(value)


def _shard_count(model: Layer, shards: int | None, fn: str) -> int:
    """The number of shards a training batch is split into (see :func:`make_train_step`)."""
    segmentable = not model.couples_batch or isinstance(model, Serial)
    if shards is None:
        return DEFAULT_SHARDS if model.splits_well and segmentable else 1
    n = _positive(fn, "shards", shards)
    if n > 1 and not segmentable:
        raise ValueError(
            f"{fn}: shards={n} splits the batch, but {model.name} has a layer whose training output depends on "
            "the whole batch (BatchNorm's batch statistics) and is not a serial pipeline whose other layers "
            "could run on shards; use shards=1"
        )
    return n


def _thread_count(threads: int | None, fn: str) -> int:
    return default_threads() if threads is None else _positive(fn, "threads", threads)


def make_train_step(
    model: Layer,
    loss: LossFn = softmax_cross_entropy,
    optimizer: GradientTransformation | None = None,
    *,
    weight_decay: float = 0.0,
    decay_mask: Any = None,
    shards: int | None = None,
    threads: int | None = None,
) -> Callable[[TrainState, Array, Any, Key | None], tuple[TrainState, StepMetrics]]:
    """Build the pure training step ``step(state, x, t, key) -> (new_state, metrics)``.

    Args:
        model: any layer or pipeline.
        loss: ``loss(y, t) -> (value, dy)``.
        optimizer: a gradient transformation (required).
        weight_decay: the book's coupled L2 coefficient λ: adds ``0.5·λ·ΣW²`` to the loss and
            ``λ·W`` to the gradient of every leaf selected by ``decay_mask`` (default: weights with
            ndim >= 2, not biases or BatchNorm scale/shift).
        shards: split each batch into this many contiguous shards of rows, whose forward and
            backward passes run on separate threads; the loss is computed once on the joined
            outputs (so any loss works) and the shards' gradients are summed in order. Default
            :data:`DEFAULT_SHARDS` (2) when the model gains from it (``model.splits_well``: it has
            a convolution), else 1: for fully connected networks each shard's weight gradient
            costs more than the split saves. In a ``serial`` pipeline, layers that need the whole
            batch (``couples_batch``, e.g. BatchNorm) run once on the joined shards, so their
            batch statistics are the full batch's; any other model with such a layer takes only
            1 shard (more raises ``ValueError``).
            With more than one shard, BLAS runs single-threaded inside the step and shard ``i``
            gets the key ``fold_in(key, i)``. The shard count is part of the arithmetic: results
            agree across shard counts to rounding, and bit for bit for the same count.
        threads: shards run at most this many at a time; results do not depend on it. Default
            :func:`fnnet.parallel.default_threads` (the cores, or ``$FNNET_NUM_THREADS``).
    Returns:
        ``step(state, x, t, key)`` for a batch ``x`` of shape ``(N, *in_shape)`` and targets ``t``;
        ``key`` drives Dropout (may be ``None`` for models without randomness). Raises
        :class:`NonFiniteLossError` (carrying the unchanged input state) on a NaN/inf loss.
    """
    if optimizer is None:
        raise ValueError("make_train_step: an optimizer is required, e.g. fnnet.optim.sgd(0.1)")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"make_train_step: weight_decay must be >= 0, got {weight_decay!r}")
    n_shards = _shard_count(model, shards, "make_train_step")
    n_threads = _thread_count(threads, "make_train_step")
    update = optimizer.update
    # a pipeline runs through Serial.forward_shards (batch-coupled layers see the whole batch);
    # any other model forward and backward per shard
    pipeline = model if n_shards > 1 and isinstance(model, Serial) else None

    def step(state: TrainState, x: Array, t: Any, key: Key | None = None) -> tuple[TrainState, StepMetrics]:
        params = state.params
        penalty, dpen = l2_penalty(params, weight_decay, decay_mask) if weight_decay else (0.0, None)
        parts = shard_slices(len(x), n_shards) if n_shards > 1 else []
        if len(parts) > 1 and pipeline is None and tree_leaves(state.model_state):
            raise ValueError(
                "make_train_step: the model carries state, which shards cannot update consistently; "
                "mark its stateful layers couples_batch = True or use shards=1"
            )
        if len(parts) > 1 and pipeline is not None:
            ctx = Ctx(True, key, state.model_state, False)
            runner = Shards(len(parts), n_threads)
            with single_threaded_blas():
                ys, pipe_cache = pipeline.forward_shards(params, [x[r] for r in parts], ctx, runner)
                y = join_rows(ys)
                value, dy = _loss(state, y, t, penalty)
                _, grads = pipeline.backward_shards(params, pipe_cache, [dy[r] for r in parts], runner)
            new_model_state = pipeline.new_state(pipe_cache)
        elif len(parts) <= 1:
            ctx = Ctx(True, key, state.model_state, False)  # input_grad=False: nobody needs dL/dx
            y, cache = model.forward(params, x, ctx)
            value, dy = _loss(state, y, t, penalty)
            _, grads = model.backward(params, cache, dy)
            new_model_state = model.new_state(cache)
        else:
            with single_threaded_blas():
                outs = run_shards(
                    lambda i: model.forward(
                        params, x[parts[i]], Ctx(True, None if key is None else fold_in(key, i), state.model_state, False)
                    ),
                    range(len(parts)),
                    n_threads,
                )
                y = join_rows([o[0] for o in outs])
                value, dy = _loss(state, y, t, penalty)
                shard_grads = run_shards(
                    lambda i: model.backward(params, outs[i][1], dy[parts[i]])[1], range(len(parts)), n_threads
                )
            grads = shard_grads[0]
            for g in shard_grads[1:]:
                grads = tree_map(operator.add, grads, g)
            new_model_state = model.new_state(outs[0][1])
        if dpen is not None:
            grads = tree_map(operator.add, grads, dpen)
        updates, opt_state = update(grads, state.opt_state, params)
        new = TrainState(
            apply_updates(params, updates), opt_state, new_model_state, _counter(int(state.step) + 1), state.epoch
        )
        return new, StepMetrics(value)

    def _loss(state: TrainState, y: Array, t: Any, penalty: float) -> tuple[float, Array]:
        value, dy = loss(y, t)
        value += penalty
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"non-finite loss {value} at step {int(state.step)} (epoch {int(state.epoch)}); "
                "lower the learning rate or check the data",
                int(state.step),
                state,
            )
        return value, dy

    return step


def _eval_batches(
    model: Layer, params: Tree, x: Array, state: Tree, batch_size: int, threads: int | None, fn: str
) -> list[tuple[slice, Array]]:
    """Evaluation-mode outputs of consecutive batches, spread over threads; ``[(rows, y), ...]``."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be a positive int, got {batch_size!r}")
    n_threads = _thread_count(threads, fn)
    ctx = EVAL if state is None else Ctx(False, None, state, True)
    rows = [slice(i, min(i + batch_size, len(x))) for i in range(0, len(x), batch_size)]
    with single_threaded_blas():
        ys = run_shards(lambda r: model.forward(params, x[r], ctx)[0], rows, n_threads)
    return list(zip(rows, ys))


def predict(
    model: Layer, params: Tree, x: Array, *, state: Tree = None, batch_size: int = 1000, threads: int | None = None
) -> Array:
    """Evaluation-mode outputs for ``x`` (``(N, *in_shape)``), computed in batches; shape ``(N, *out)``.

    Batches run on up to ``threads`` threads (default :func:`fnnet.parallel.default_threads`),
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
    progress: str = "auto",
    on_epoch: Callable[[TrainState, History], None] | None = None,
    shards: int | None = None,
    threads: int | None = None,
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
        progress: ``"auto"``, ``"bar"``, ``"lines"`` or ``"quiet"``.
        on_epoch: called with the state and history after each epoch (e.g. to checkpoint).
        shards, threads: how each batch is split across threads (see :func:`make_train_step`);
            ``threads`` also runs the evaluation batches in parallel. Only ``shards`` changes
            results.
    Returns:
        A :class:`FitResult` with the final state and the history. On a NaN/inf loss raises
        :class:`NonFiniteLossError` whose ``state``/``history`` are the last good ones.
    """
    x, t = train
    if len(x) != len(t):
        raise ValueError(f"fit: x has {len(x)} samples but t has {len(t)}")
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"fit: batch_size must be a positive int, got {batch_size!r}")
    init_key, shuffle_key, step_key, eval_key = split(key, 4)
    if state is None:
        state = init_train_state(model, optimizer, init_key, tuple(x.shape[1:]))
    hist = history if history is not None else History()
    step = make_train_step(
        model, loss, optimizer, weight_decay=weight_decay, decay_mask=decay_mask, shards=shards, threads=threads
    )
    steps_per_epoch = len(x) // batch_size if drop_last else math.ceil(len(x) / batch_size)
    bar = Progress(epochs, steps_per_epoch, progress)

    for epoch in range(int(state.epoch), epochs):
        t0 = time.perf_counter()
        losses: list[float] = []
        for i, (xb, tb) in enumerate(
            batches(fold_in(shuffle_key, epoch), x, t, batch_size, drop_last=drop_last)
        ):
            try:
                state, m = step(state, xb, tb, fold_in(step_key, int(state.step)))
            except NonFiniteLossError as e:
                hist = History(hist.step_loss + tuple(losses), hist.epochs)
                raise NonFiniteLossError(str(e), e.step, e.state, hist) from None
            losses.append(m.loss)
            bar.step(epoch, i, m.loss)
        state = state._replace(epoch=_counter(epoch + 1))
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
