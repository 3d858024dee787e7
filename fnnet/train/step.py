"""One training step, end to end, and the execution policy that runs it.

The step is the whole data flow of one batch::

    x -> model.forward(params, state, x, ctx) -> loss(y, t) -> model.backward(...) -> grads
      -> optimizer.update(grads, opt_state, params) -> new params, new opt_state

How it runs is chosen here, not in the layers: the batch may be split into shards of rows that go
through the whole model on their own threads (layers that couple the samples of a batch sum their
statistics through ``ctx.batch_sum``), and BLAS runs with a fixed thread count. An unsharded step
with a thread to spare offers it to the layers as ``ctx.spawn`` (independent work, such as the
seq2seq decoder's weight products while the encoder's scan runs, goes there).
:func:`choose_policy` picks both from the model and the batch shape alone, so the same model and
batch shape give the same bits on any machine.

>>> import numpy as np, fnnet
>>> from fnnet.train import init_train_state, make_train_step
>>> model = fnnet.serial(fnnet.Affine(8), fnnet.ReLU(), fnnet.Affine(3))
>>> opt = fnnet.sgd(0.1)
>>> state = init_train_state(model, opt, fnnet.key(0), (4,))
>>> train_step = make_train_step(model, fnnet.softmax_cross_entropy, opt)
>>> x, t = np.ones((6, 4), np.float32), np.zeros(6, np.int64)
>>> state, metrics = train_step(state, x, t, fnnet.key(1))
>>> int(state.step), metrics.loss > 0
(1, True)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import numpy as np

from fnnet._validate import check_finite_nonneg, check_positive_int, is_real
from fnnet.layers.base import Ctx, Layer, run_now
from fnnet.losses import softmax_cross_entropy
from fnnet.optim import GradientTransformation, apply_updates, l2_penalty
from fnnet.random import Key, fold_in, key as make_key
from fnnet.runtime import prepare_training
from fnnet.train.parallel import ShardGroup, blas_limit, default_threads, shard_slices, spawn
from fnnet.tree import tree_global_norm, tree_leaves, tree_map
from fnnet.typing import Array, Shape, Tree

__all__ = [
    "LossFn",
    "TrainStep",
    "TrainState",
    "StepMetrics",
    "NonFiniteLossError",
    "ExecutionPolicy",
    "SHARD_MIN_VOLUME",
    "choose_policy",
    "init_train_state",
    "make_train_step",
    "all_finite",
    "join_rows",
    "grad_entry_norms",
]

LossFn = Callable[[Array, Any], tuple[float, Array]]
"""``loss(y, t) -> (value, dvalue/dy)``, e.g. :func:`fnnet.losses.softmax_cross_entropy`.

A loss may also take a keyword-only ``grad``: evaluation then calls it with ``grad=False`` and
expects ``(value, None)`` (or any second value), the same value without computing the gradient
(:func:`fnnet.losses.loss_value`); the built-in losses do.

>>> import numpy as np
>>> from fnnet.train import LossFn
>>> def half_squared(y: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
...     d = y - t.reshape(y.shape)
...     return float(0.5 * (d * d).sum() / len(y)), d / len(y)       # gradient of y's shape (N, 1)
>>> loss: LossFn = half_squared
>>> loss(np.array([[1.0], [3.0]]), np.array([0.0, 1.0]))[0]
1.25
"""

TrainStep = Callable[..., tuple["TrainState", "StepMetrics"]]
"""``train_step(state, x, t, key=None, update_scale=1.0) -> (new_state, metrics)``, as
:func:`make_train_step` builds it.

>>> import numpy as np, fnnet
>>> from fnnet.train import TrainStep, init_train_state, make_train_step
>>> model, opt = fnnet.Affine(2), fnnet.optim.sgd(0.1)
>>> step: TrainStep = make_train_step(model, fnnet.softmax_cross_entropy, opt)
>>> state, metrics = step(init_train_state(model, opt, fnnet.key(0), (3,)), np.ones((4, 3), np.float32),
...                       np.array([0, 1, 0, 1]))
>>> int(state.step), round(metrics.loss, 4)
(1, 0.8448)
"""

SHARD_MIN_VOLUME = 1_000_000
"""A batch is split in two shards when each shard keeps at least this many numbers per training
pass (the forward caches of its rows): then the NumPy work a thread does without the
interpreter lock outweighs the cost of running and joining shards. See ``bench/policy.py``.

>>> import numpy as np, fnnet
>>> from fnnet.train.step import SHARD_MIN_VOLUME, choose_policy
>>> wide = fnnet.serial(fnnet.Affine(4096), fnnet.ReLU(), fnnet.Affine(10))   # 8202 cached numbers per row
>>> p, _ = wide.init(fnnet.key(0), (10,))
>>> x = np.zeros((256, 10), np.float32)
>>> 8202 * 128 >= SHARD_MIN_VOLUME, choose_policy(wide, p, None, x).shards
(True, 2)
"""


class TrainState(NamedTuple):
    """Everything that changes during training (a tree: checkpoint it with :func:`fnnet.save`).

    Attributes:
        params: the model's parameters.
        opt_state: the optimizer's state.
        model_state: explicit non-trainable state (BatchNorm statistics), ``model.init_state``.
        step: number of training steps taken (0-d int64 array).
        epoch: number of completed epochs (0-d int64 array).

    >>> import numpy as np, fnnet
    >>> model, opt = fnnet.Affine(10), fnnet.optim.momentum(0.1)
    >>> state = fnnet.init_train_state(model, opt, fnnet.key(0), (784,))
    >>> state.params.w.shape, int(state.step), int(state.epoch), state.model_state
    ((784, 10), 0, 0, None)
    """

    params: Tree
    opt_state: Tree
    model_state: Tree
    step: Array
    epoch: Array


class StepMetrics(NamedTuple):
    """What one training step reports.

    Attributes:
        loss: the batch loss (with the weight-decay penalty, if any).
        grad_norms: with ``make_train_step(..., grad_norms=True)``, the L2 norm of the gradient of
            each top-level entry of the params tree (see :func:`grad_entry_norms`); else ``()``.

    >>> import numpy as np, fnnet
    >>> from fnnet.train import init_train_state, make_train_step
    >>> model, opt = fnnet.serial(fnnet.Affine(3), fnnet.ReLU(), fnnet.Affine(2)), fnnet.optim.sgd(0.1)
    >>> step = make_train_step(model, fnnet.softmax_cross_entropy, opt, grad_norms=True)
    >>> _, metrics = step(init_train_state(model, opt, fnnet.key(0), (4,)), np.ones((2, 4), np.float32),
    ...                   np.array([0, 1]))
    >>> isinstance(metrics.loss, float), len(metrics.grad_norms)   # one norm per layer of the serial
    (True, 3)
    """

    loss: float
    grad_norms: tuple[float, ...] = ()


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss, parameter or optimizer state.

    Attributes:
        step: the training step that failed (counted from 0 over the whole run).
        epoch: the epoch that step was in, counted from 0 like ``TrainState.epoch``.
        loss: the non-finite loss value (``nan``, ``inf`` or ``-inf``) when the loss was what
            failed; None when the loss was finite but the updated parameters or optimizer state
            were not.
        state: the last good :class:`TrainState`: its parameters and optimizer state are finite
            and so was its loss (``fit``); resume from it, e.g. with a smaller learning rate.
        good_step: ``int(state.step)``.
        history: the history up to the failure (``fit`` only).

    >>> import numpy as np, fnnet
    >>> from fnnet.train import NonFiniteLossError, init_train_state, make_train_step
    >>> model, opt = fnnet.Affine(1), fnnet.optim.sgd(0.1)
    >>> step = make_train_step(model, lambda y, t: (float("nan"), np.zeros_like(y)), opt)
    >>> state = init_train_state(model, opt, fnnet.key(0), (2,))
    >>> try:
    ...     step(state, np.ones((3, 2), np.float32), np.zeros(3))
    ... except NonFiniteLossError as err:
    ...     print(err.step, err.epoch, err.loss, err.good_step, err.state is state)
    0 0 nan 0 True
    """

    def __init__(
        self,
        message: str,
        step: int,
        state: TrainState,
        history: Any = None,
        *,
        loss_finite: bool = True,
        loss: float | None = None,
        epoch: int | None = None,
    ):
        super().__init__(message)
        self.step = step
        self.epoch = int(state.epoch) if epoch is None else epoch
        self.loss = loss
        self.loss_finite = loss_finite  # False: the loss of ``state`` itself was not finite
        self.state = state
        self.good_step = int(state.step)
        self.history = history


def init_train_state(model: Layer, optimizer: GradientTransformation, key: Key, in_shape: Shape) -> TrainState:
    """Initialise params (from ``key``), optimizer state and model state for inputs ``(N, *in_shape)``.

    >>> import fnnet
    >>> from fnnet.train import init_train_state
    >>> s = init_train_state(fnnet.Affine(2), fnnet.sgd(0.1), fnnet.key(0), (3,))
    >>> s.params.w.shape, int(s.step)
    ((3, 2), 0)
    """
    params, _ = model.init(key, in_shape)
    return TrainState(params, optimizer.init(params), model.init_state(in_shape), counter(0), counter(0))


def counter(n: int) -> Array:
    """A 0-d int64 array holding ``n`` (the step and epoch counters)."""
    return np.array(n, dtype=np.int64)


def all_finite(tree: Tree) -> bool:
    """True if every floating point leaf of ``tree`` holds only finite numbers.

    Leaves are arrays, NumPy scalars (an optimizer's arithmetic on a 0-d leaf gives one) and
    Python floats; other leaves (ints, strings) are not checked.

    >>> import numpy as np
    >>> from fnnet.train import all_finite
    >>> all_finite((np.ones(3), np.array([1.0, np.inf])))
    False
    >>> all_finite({"count": np.float32(np.nan)}), all_finite([0.5, 2])
    (False, True)
    """
    leaves: list[Any] = []
    for a in tree_leaves(tree):
        if isinstance(a, (np.ndarray, np.generic)):
            if a.dtype.kind in "fc":
                leaves.append(a)
        elif isinstance(a, float) and not math.isfinite(a):
            return False
    with np.errstate(over="ignore", invalid="ignore"):
        # sum of squares by BLAS dot products: cheaper than a mask, and NaN or inf anywhere make it
        # non-finite; only then (or when large finite values overflow it) is the full check needed
        if math.isfinite(sum([float(np.vdot(a, a).real) for a in leaves])):
            return True
        return all(bool(np.isfinite(a).all()) for a in leaves)


def grad_entry_norms(grads: Tree) -> tuple[float, ...]:
    """The L2 norm (in float64) of each top-level entry of a gradient tree: one per layer of a
    :func:`fnnet.layers.serial` (0.0 for a layer without parameters), one per field of a single
    layer's params record, one per value of a dict (keys sorted), or one for a bare array.

    >>> import numpy as np
    >>> from fnnet.train import grad_entry_norms
    >>> grad_entry_norms((np.array([3.0, 4.0]), None, {"b": np.ones(4)}))
    (5.0, 0.0, 2.0)
    """
    if isinstance(grads, dict):
        entries: list[Any] = [grads[k] for k in sorted(grads, key=str)]
    elif isinstance(grads, (tuple, list)):
        entries = list(grads)
    else:
        entries = [grads]
    return tuple(tree_global_norm(e) for e in entries)


def join_rows(parts: list[Array]) -> Array:
    """Concatenate arrays along axis 0, keeping a channels-last memory order of 4-D parts.

    >>> import numpy as np
    >>> from fnnet.train.step import join_rows
    >>> join_rows([np.zeros((2, 3)), np.ones((1, 3))]).shape          # (N1 + N2, ...)
    (3, 3)
    """
    if len(parts) == 1:
        return parts[0]
    if parts[0].ndim == 4 and all(p.transpose(0, 2, 3, 1).flags.c_contiguous for p in parts):
        return np.concatenate([p.transpose(0, 2, 3, 1) for p in parts]).transpose(0, 3, 1, 2)
    return np.concatenate(parts)


@attrs.frozen
class ExecutionPolicy:
    """How a training step runs: ``shards`` of the batch, BLAS with ``blas_threads`` threads.

    Both change the arithmetic (which rows are summed together; GEMM blocking), so both come from
    the model, the batch shape and explicit settings only.

    >>> import numpy as np, fnnet
    >>> from fnnet.train import choose_policy
    >>> model = fnnet.Affine(2)
    >>> params, _ = model.init(fnnet.key(0), (3,))
    >>> choose_policy(model, params, None, np.zeros((100, 3), np.float32))    # a batch (N, 3)
    ExecutionPolicy(shards=1, blas_threads=1)
    """

    shards: int
    blas_threads: int


def choose_policy(model: Layer, params: Tree, state: Tree, x: Array) -> ExecutionPolicy:
    """The default policy for training ``model`` on batches shaped like ``x``.

    Splits the batch in two shards when each would keep at least :data:`SHARD_MIN_VOLUME` numbers
    in its forward caches (measured by one training pass over two rows of ``x``, with whatever
    BLAS thread count the caller runs); BLAS always runs single-threaded, which is never slower
    on a busy machine and never changes with its cores.

    The probe starts from ``model.init_state(x.shape[1:])``, not from ``state`` (kept in the
    signature): a state's values cannot change the cache sizes, and the state a stateful
    recurrent layer carries has one row per sample of the whole batch, not of the probe's two.

    >>> import numpy as np, fnnet
    >>> from fnnet.train import choose_policy
    >>> net = fnnet.models.two_layer_net()
    >>> p, _ = net.init(fnnet.key(0), (784,))
    >>> choose_policy(net, p, net.init_state((784,)), np.zeros((100, 784), np.float32))
    ExecutionPolicy(shards=1, blas_threads=1)
    """
    if len(x) < 4:
        return ExecutionPolicy(1, 1)
    probe = x[:2]
    # the BLAS thread count cannot change the cache sizes: the probe runs under the caller's (a
    # limit of its own would clash with a step or a fit holding another count)
    with np.errstate(all="ignore"):
        _, _, cache = model.forward(params, model.init_state(tuple(x.shape[1:])), probe, Ctx(True, make_key(0)))
    per_row = sum(leaf.size for leaf in tree_leaves(cache) if isinstance(leaf, np.ndarray) and leaf.ndim) / 2
    shards = 2 if per_row * (len(x) // 2) >= SHARD_MIN_VOLUME else 1
    return ExecutionPolicy(shards, 1)


def _check_dy(y: Array, dy: Any) -> None:
    """The loss's gradient must be an array of the outputs' shape and dtype: a float64 gradient of
    float32 outputs would silently turn the gradients and the optimizer state into float64."""
    if not isinstance(dy, np.ndarray) or dy.shape != y.shape or dy.dtype != y.dtype:
        got = f"{dy.shape} {dy.dtype}" if isinstance(dy, np.ndarray) else type(dy).__name__
        raise ValueError(
            f"train_step: the loss must return its gradient in the outputs' shape {y.shape} and dtype {y.dtype}, got {got}"
        )


def make_train_step(
    model: Layer,
    loss: LossFn = softmax_cross_entropy,
    optimizer: GradientTransformation | None = None,
    *,
    weight_decay: float = 0.0,
    decay_mask: Any = None,
    shards: int | None = None,
    threads: int | None = None,
    blas_threads: int | None = None,
    grad_norms: bool = False,
) -> TrainStep:
    """Build the pure training step ``train_step(state, x, t, key, update_scale=1.0) -> (new_state, metrics)``.

    Args:
        model: any layer or pipeline.
        loss: ``loss(y, t) -> (value, dy)``.
        optimizer: a gradient transformation (required).
        weight_decay: the book's coupled L2 coefficient λ: adds ``0.5·λ·ΣW²`` to the loss and
            ``λ·W`` to the gradient of every leaf selected by ``decay_mask`` (default: weights with
            ndim >= 2, not biases or BatchNorm scale/shift).
        shards: run each batch as this many contiguous shards of rows, each through the whole
            model on its own thread; the loss is computed once on the joined outputs and the
            shards' gradients are summed in order. Default: :func:`choose_policy`. Results agree
            across shard counts to rounding, and bit for bit for the same count.
        threads: at most this many shards compute at once (speed only; default
            :func:`fnnet.train.parallel.default_threads`). Unsharded with ``threads > 1``, the
            step's context spawns work onto a second thread (:attr:`fnnet.layers.Ctx.spawn`).
        blas_threads: BLAS threads inside the step (default 1; changes GEMM rounding).
        grad_norms: also report, in ``metrics.grad_norms``, the norm of the gradient (the one the
            optimizer receives, weight decay included) of each top-level params entry.

    Building a step calls :func:`fnnet.runtime.prepare_training` (once per process): glibc keeps
    freed memory for reuse, so the steps' large arrays do not fault in fresh pages every time
    (``FNNET_KEEP_HEAP=0`` opts out; results are the same either way).

    Returns:
        ``train_step(state, x, t, key, update_scale=1.0)`` for a batch ``x`` of shape
        ``(N, *in_shape)``, ``N >= 1``, and targets ``t``; shard ``i`` draws its random numbers
        from ``fold_in(key, i)`` (the whole batch from ``key`` when unsharded). ``key=None`` suits
        a model that draws no random numbers; a :class:`fnnet.layers.Dropout` then raises
        ``ValueError`` naming the layer. The optimizer's updates are multiplied by
        ``update_scale`` (a finite number >= 0, else ``ValueError``), used by
        :class:`fnnet.train.ReduceOnPlateau`: the same
        as multiplying the learning rate for SGD, AdaGrad, RMSprop and Adam, whose update is the
        rate times a function of the gradients; for the book's Momentum and Nesterov, whose
        velocity carries the rate, it scales the whole step, the velocity's past included. Raises
        :class:`NonFiniteLossError` when the loss, or the updated parameters or optimizer state,
        are not finite; its ``state`` is the step's input state.

    >>> import numpy as np, fnnet
    >>> from fnnet.train import init_train_state, make_train_step
    >>> model, opt = fnnet.serial(fnnet.Affine(4), fnnet.ReLU(), fnnet.Affine(3)), fnnet.optim.adam(0.01)
    >>> train_step = make_train_step(model, fnnet.softmax_cross_entropy, opt)
    >>> state = init_train_state(model, opt, fnnet.key(0), (5,))
    >>> x, t = np.ones((8, 5), np.float32), np.arange(8) % 3           # (N, 5) inputs, (N,) labels
    >>> for s in range(3):
    ...     state, metrics = train_step(state, x, t, fnnet.fold_in(fnnet.key(1), s))
    >>> int(state.step), state.params[0].w.shape
    (3, (5, 4))
    """
    if optimizer is None:
        raise ValueError("make_train_step: an optimizer is required, e.g. fnnet.optim.sgd(0.1)")
    weight_decay = check_finite_nonneg("make_train_step", "weight_decay", weight_decay)
    fixed_shards = None if shards is None else check_positive_int("make_train_step", "shards", shards)
    n_threads = default_threads() if threads is None else check_positive_int("make_train_step", "threads", threads)
    fixed_blas = None if blas_threads is None else check_positive_int("make_train_step", "blas_threads", blas_threads)
    prepare_training()
    update = optimizer.update
    blas_n = fixed_blas if fixed_blas is not None else 1  # choose_policy's count, known in advance
    policies: dict[tuple[int, ...], ExecutionPolicy] = {}

    def policy_for(state: TrainState, x: Array) -> ExecutionPolicy:
        p = policies.get(x.shape)
        if p is None:
            auto = choose_policy(model, state.params, state.model_state, x) if fixed_shards is None else None
            p = ExecutionPolicy(fixed_shards if fixed_shards is not None else auto.shards if auto else 1, blas_n)
            policies[x.shape] = p
        return p

    def fail(state: TrainState, what: str, loss: float | None) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"non-finite {what} at step {int(state.step)} (epoch {int(state.epoch) + 1}); "
            "lower the learning rate or check the data",
            int(state.step),
            state,
            loss_finite=loss is None,
            loss=loss,
        )

    def train_step(
        state: TrainState, x: Array, t: Any, key: Key | None = None, update_scale: float = 1.0
    ) -> tuple[TrainState, StepMetrics]:
        if not isinstance(x, np.ndarray):
            raise ValueError(f"train_step: x must be a NumPy array, got {type(x).__name__}")
        if not x.shape or not x.shape[0]:
            raise ValueError(f"train_step: x must be a batch (N, ...) with N >= 1, got shape {x.shape}")
        if key is not None and not isinstance(key, Key):
            raise ValueError(f"train_step: key must be a fnnet.Key or None, got {type(key).__name__}")
        params = state.params
        with blas_limit(blas_n), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            policy = policy_for(state, x)
            penalty, dpen = l2_penalty(params, weight_decay, decay_mask) if weight_decay else (0.0, None)
            rows = shard_slices(len(x), policy.shards)
            if len(rows) <= 1:
                ctx = Ctx(True, key, spawn=spawn if n_threads > 1 else run_now)
                y, new_model_state, cache = model.forward(params, state.model_state, x, ctx)
                value, dy = loss(y, t)
                _check_dy(y, dy)
                value += penalty
                if not math.isfinite(value):
                    raise fail(state, f"loss {value}", float(value))
                _, grads = model.backward(params, cache, dy, False)
            else:
                group = ShardGroup(len(rows), n_threads)

                def forward(s: int) -> tuple[Array, Any, Any]:
                    ctx = Ctx(True, None if key is None else fold_in(key, s), batch_sum=group.batch_sum(s))
                    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                        return model.forward(params, state.model_state, x[rows[s]], ctx)

                outs = group.run(forward)
                y = join_rows([o[0] for o in outs])
                value, dy = loss(y, t)
                _check_dy(y, dy)
                value += penalty
                if not math.isfinite(value):
                    raise fail(state, f"loss {value}", float(value))

                def backward(s: int) -> Any:
                    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                        return model.backward(params, outs[s][2], dy[rows[s]], False)[1]

                shard_grads = group.run(backward)
                grads = shard_grads[0]
                for g in shard_grads[1:]:
                    grads = tree_map(operator.add, grads, g)
                new_model_state = _same_state(outs)
            if dpen is not None:
                grads = tree_map(operator.add, grads, dpen)
            norms = grad_entry_norms(grads) if grad_norms else ()
            updates, opt_state = update(grads, state.opt_state, params)
            if update_scale != 1.0:
                # a Python float keeps float32 updates float32
                scale = float(update_scale) if is_real(update_scale) else math.nan
                if not (math.isfinite(scale) and scale >= 0):
                    raise ValueError(f"train_step: update_scale must be a finite number >= 0, got {update_scale!r}")
                updates = tree_map(lambda u: u * scale, updates)
            new_params = apply_updates(params, updates)
            if not all_finite((new_params, opt_state, new_model_state)):
                raise fail(state, "parameters or optimizer state after the update", None)
        new = TrainState(new_params, opt_state, new_model_state, counter(int(state.step) + 1), state.epoch)
        return new, StepMetrics(float(value), norms)

    return train_step


def _same_state(outs: list[tuple[Array, Any, Any]]) -> Any:
    """The model state every shard returned, which must agree (it comes from batch sums)."""
    first = outs[0][1]
    leaves = tree_leaves(first)
    for o in outs[1:]:
        other = tree_leaves(o[1])
        if len(other) != len(leaves) or any(not _equal(a, b) for a, b in zip(leaves, other)):
            raise ValueError(
                "make_train_step: the model's state differs between shards: a stateful layer keeps "
                "per-batch state without summing it through ctx.batch_sum; use shards=1"
            )
    return first


def _equal(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN (a NaN statistic is reported as non-finite, not as differing)."""
    if np.array_equal(a, b):
        return True
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype.kind in "fc" and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
