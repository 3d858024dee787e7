"""Batch normalisation (the book's section 6.3) with explicit running statistics.

Training normalises with the statistics of the batch; evaluation normalises with running
statistics accumulated during training. Those running statistics are *state*, not parameters:
``forward`` takes them and returns the updated ones, so no optimizer ever sees them and nothing is
mutated. The batch statistics are sums over the batch taken through ``ctx.batch_sum``, so a
training step that runs a batch as shards on several threads normalises it as one batch.

>>> import numpy as np, fnnet
>>> bn = fnnet.BatchNorm()
>>> params, _ = bn.init(fnnet.key(0), (3,))
>>> x = np.arange(12, dtype=np.float32).reshape(4, 3)
>>> y, state, cache = bn.forward(params, bn.init_state((3,)), x, fnnet.TRAIN)
>>> np.round(y.mean(axis=0), 6).tolist(), int(state.count)
([0.0, 0.0, 0.0], 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import numpy as np

from fnnet.typing import DEFAULT_DTYPE, Array, Shape
from fnnet._validate import as_int, positive_int
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, check_dtype, no_input_grad, param_arrays
from fnnet.random import Key

__all__ = [
    "BatchNorm",
    "BatchNormParams",
    "BatchNormState",
    "BatchNormCache",
    "DEFAULT_EPS",
    "LayerNorm",
    "LayerNormParams",
    "GroupNorm",
    "GroupNormParams",
    "SampleNormCache",
]

DEFAULT_EPS = 1e-6
"""Added to the variance before the square root so that a feature with zero batch variance is
divided by sqrt(eps) instead of 0. The book uses ``10e-7`` (that is, 1e-6); so does fnnet.

>>> import fnnet
>>> from fnnet.layers.norm import DEFAULT_EPS
>>> DEFAULT_EPS, fnnet.BatchNorm().eps == DEFAULT_EPS
(1e-06, True)
"""


class BatchNormParams(NamedTuple):
    """Trainable parameters of :class:`BatchNorm`: scale ``gamma`` and shift ``beta``, shape ``(C,)``.

    >>> import fnnet
    >>> params, _ = fnnet.BatchNorm().init(fnnet.key(0), (3, 4, 4))
    >>> params.gamma.tolist(), params.beta.tolist(), params.gamma.dtype
    ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], dtype('float32'))
    """

    gamma: Array
    beta: Array


class BatchNormState(NamedTuple):
    """Running statistics of :class:`BatchNorm` (non-trainable state).

    Attributes:
        mean: running mean per feature/channel, shape ``(C,)``.
        var: running (biased) variance per feature/channel, shape ``(C,)``.
        count: 0-d int64 array, the number of training forward passes folded into the statistics;
            0 means they were never updated and evaluation refuses to use them.

    >>> import numpy as np, fnnet
    >>> bn = fnnet.BatchNorm(momentum=0.5)
    >>> params, _ = bn.init(fnnet.key(0), (2,))
    >>> state = bn.init_state((2,))
    >>> state.mean.tolist(), state.var.tolist(), int(state.count)
    ([0.0, 0.0], [1.0, 1.0], 0)
    >>> x = np.array([[0.0, 1.0], [2.0, 5.0]], np.float32)
    >>> _, state, _ = bn.forward(params, state, x, fnnet.TRAIN)
    >>> state.mean.tolist(), state.var.tolist(), int(state.count)
    ([0.5, 1.5], [1.0, 2.5], 1)
    """

    mean: Array
    var: Array
    count: Array  # type: ignore[assignment]  # the field shadows tuple.count, which nobody needs here


class BatchNormCache(NamedTuple):
    """What :meth:`BatchNorm.backward` needs from the forward pass.

    >>> import numpy as np, fnnet
    >>> bn = fnnet.BatchNorm()
    >>> params, _ = bn.init(fnnet.key(0), (3,))
    >>> _, _, cache = bn.forward(params, None, np.ones((4, 3), np.float32), fnnet.TRAIN)
    >>> cache.xc.shape, cache.inv_std.shape, cache.m
    ((4, 3), (1, 3), 4)
    """

    xc: Array  # the centred input x - mu (xhat = xc * inv_std is never stored), or x itself when mean is set
    mean: Array | None  # the mean to subtract from xc (broadcastable to x), or None if xc is centred
    inv_std: Array  # 1 / sqrt(var + eps) used, broadcastable to x: (1, C) or (1, C, 1, 1)
    m: int  # values per channel in the whole training batch; 0 in evaluation
    batch_sum: Callable[[Array], Array]  # the forward context's sum over the training batch


def _as_rows(a: Array) -> tuple[Array, int] | None:
    """``(rows, reps)``: ``a`` seen as a 2-D array whose rows repeat the channel pattern ``reps``
    times, when its memory allows it without a copy; else ``None``.

    A C-contiguous ``(N, D)`` array is its own rows (``reps`` 1); an ``(N, C, H, W)`` array with
    channels-last memory (a convolution's output) is the ``(N*H, W*C)`` matrix of its ``(N, H, W, C)``
    memory (``reps = W``). A per-channel vector tiled ``reps`` times then broadcasts along rows
    of ``W*C`` numbers instead of runs of ``C``, and ``rows.reshape(-1, C)`` is the ``(M, C)``
    matrix of every value of each channel.
    """
    if a.ndim == 2:
        return (a, 1) if a.flags.c_contiguous else None
    t = a.transpose(0, 2, 3, 1)
    if a.ndim == 4 and t.flags.c_contiguous:
        n, h, w, c = t.shape
        return t.reshape(n * h, w * c), w
    return None


def _col_sum(m: Array) -> Array:
    """Column sums of a 2-D ``m`` ``(M, C)`` as a matrix-vector product (one BLAS pass)."""
    out: Array = np.ones(m.shape[0], m.dtype) @ m
    return out


def _channel_sum(a: Array, b: Array | None = None) -> Array:
    """Sum of ``a`` (or of ``a * b``) over every axis but the channel axis 1, shape ``(C,)``.

    einsum fuses the product into the reduction: no temporary of ``x``'s size, one pass.
    """
    sub = {2: "nc", 3: "ncl", 4: "nchw"}[a.ndim]
    out: Array = np.einsum(f"{sub}->c", a) if b is None else np.einsum(f"{sub},{sub}->c", a, b)
    return out


def _channel_params(layer: Layer, params: Any) -> int:
    """The channel count ``C`` of per-channel ``gamma`` and ``beta`` (one shape ``(C,)``), or a
    ``ValueError`` naming ``layer``."""
    gamma, beta = param_arrays(layer, params, "gamma", "beta")
    if gamma.ndim != 1 or beta.shape != gamma.shape:
        raise ValueError(
            f"{type(layer).__name__}: expected params gamma and beta of one shape (C,), got gamma {gamma.shape} "
            f"and beta {beta.shape}"
        )
    return int(gamma.shape[0])


def _momentum(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        0.0 <= value < 1.0
    ):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a number in [0, 1), got {value!r}")


def _eps(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a positive finite number, got {value!r}")


@attrs.frozen
class BatchNorm(Layer):
    """Batch normalisation ``y = gamma * (x - mu) / sqrt(var + eps) + beta``.

    Inputs ``(N, D)`` are normalised per feature (statistics over the batch axis); inputs
    ``(N, C, H, W)`` per channel (statistics over N, H and W, one ``gamma``/``beta`` per channel),
    and so are 1-D signals ``(N, C, L)`` (statistics over N and L, as after a :class:`Conv1D`).
    The output has the input's shape.

    Differences from the book:

    - The book flattens a convolution output to ``(N, C*H*W)`` and normalises each of those
      ``C*H*W`` features separately, with ``C*H*W`` gammas and betas. fnnet uses the usual
      per-channel ("spatial") batch norm for 4-D inputs: one mean, variance, gamma and beta per
      channel, shared by every position. For a 2-D input both agree (the book's networks only use
      BatchNorm after Affine layers). The book's per-position behaviour on a conv output is
      ``Flatten`` followed by BatchNorm, whose output then stays flat, ``(N, C*H*W)``.
    - The running variance starts at ones (the book starts it at zeros); see :meth:`init_state`.
    - Evaluating with statistics that were never updated raises instead of silently using the
      initial values, and so does training with one value per feature/channel (a 2-D batch of
      one), where the book silently outputs ``beta`` and a zero input gradient.

    As in the book, the running statistics follow
    ``running = momentum * running + (1 - momentum) * batch`` with the biased batch variance.

    Attributes:
        momentum: weight of the old running statistics, in ``[0, 1)``.
        eps: added to the variance before the square root, ``> 0`` (default :data:`DEFAULT_EPS`).

    >>> import numpy as np, fnnet
    >>> bn = fnnet.BatchNorm()
    >>> params, out = bn.init(fnnet.key(0), (2, 3, 3))
    >>> x = fnnet.key(1).generator().normal(size=(4, 2, 3, 3)).astype(np.float32)
    >>> y, state, cache = bn.forward(params, None, x, fnnet.TRAIN)
    >>> y.shape, params.gamma.shape, bool(np.abs(y.mean(axis=(0, 2, 3))).max() < 1e-6)
    ((4, 2, 3, 3), (2,), True)
    >>> dx, grads = bn.backward(params, cache, np.ones_like(y))
    >>> dx.shape, grads.beta.tolist()
    ((4, 2, 3, 3), [36.0, 36.0])
    >>> bn.apply(params, x, state=state).shape  # evaluation, with the running statistics
    (4, 2, 3, 3)
    """

    momentum: float = attrs.field(default=0.9, validator=_momentum)
    eps: float = attrs.field(default=DEFAULT_EPS, validator=_eps)

    def _channels(self, in_shape: Shape) -> int:
        if len(in_shape) not in (1, 2, 3):
            raise ValueError(
                f"{type(self).__name__}: expected input shape (D,), (C, L) or (C, H, W) without the batch dimension, "
                f"got {tuple(in_shape)}"
            )
        return int(in_shape[0])

    def out_shape(self, in_shape: Shape) -> Shape:
        """The input shape, ``(D,)``, ``(C, L)`` or ``(C, H, W)``."""
        self._channels(in_shape)
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[BatchNormParams, Shape]:
        """Parameters for inputs ``(N, D)``, ``(N, C, L)`` or ``(N, C, H, W)``.

        Args:
            key: unused (gamma starts at ones, beta at zeros, as in the book).
            in_shape: ``(D,)``, ``(C, L)`` or ``(C, H, W)``.
        Returns:
            ``(BatchNormParams(gamma, beta), in_shape)`` with ``gamma``, ``beta`` of shape ``(C,)``
            (``C = D`` for 2-D inputs), float32.
        """
        c = self._channels(in_shape)
        return BatchNormParams(np.ones(c, DEFAULT_DTYPE), np.zeros(c, DEFAULT_DTYPE)), tuple(in_shape)

    def init_state(self, in_shape: Shape, *, dtype: Any = DEFAULT_DTYPE) -> BatchNormState:
        """Initial running statistics: mean zeros, variance ones, count 0.

        Zeros and ones are the statistics of a standardised input, so the running estimates start
        from "no correction" and, being an exponential average, are pulled towards the data at rate
        ``1 - momentum``. Starting the variance at ones (the book uses zeros) keeps an estimate that
        has seen few batches from dividing by ``sqrt(small + eps)``. With count 0 evaluation refuses
        these values anyway: they describe no data.

        Args:
            in_shape: ``(D,)``, ``(C, L)`` or ``(C, H, W)``.
            dtype: floating point dtype of ``mean`` and ``var`` (float32 by default).
        Returns:
            A :class:`BatchNormState` with ``mean``, ``var`` of shape ``(C,)`` and a 0-d int64 ``count``.
        """
        c = self._channels(in_shape)
        return BatchNormState(np.zeros(c, dtype), np.ones(c, dtype), np.zeros((), np.int64))

    def _check_input(self, params: BatchNormParams, x: Array) -> None:
        """Validate ``x`` against ``params`` (rank, channels, dtype)."""
        if x.ndim not in (2, 3, 4):
            raise ValueError(
                f"{type(self).__name__}: expected input of rank 2 (N, D), 3 (N, C, L) or 4 (N, C, H, W), got shape {x.shape}"
            )
        c = _channel_params(self, params)
        if x.shape[1] != c:
            what = "features" if x.ndim == 2 else "channels"
            expected = {2: f"(N, {c})", 3: f"(N, {c}, L)", 4: f"(N, {c}, H, W)"}[x.ndim]
            raise ValueError(f"{type(self).__name__}: expected input {expected} with {c} {what}, got shape {x.shape}")
        if x.dtype != params.gamma.dtype:
            check_dtype(self, x, params.gamma.dtype)

    def _check_state(self, state: Any, c: int) -> BatchNormState:
        if not isinstance(state, BatchNormState):
            raise ValueError(f"{type(self).__name__}: expected state to be a BatchNormState, got {type(state).__name__}")
        for name in ("mean", "var"):
            a = getattr(state, name)
            if not isinstance(a, np.ndarray) or a.shape != (c,) or a.dtype.kind != "f":
                got = f"shape {a.shape}, dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"{type(self).__name__}: expected state.{name} as a float array of shape ({c},), got {got}")
        count = np.asarray(state.count)
        if count.shape != () or count.dtype.kind not in "iu":
            raise ValueError(
                f"{type(self).__name__}: expected state.count as a 0-d integer array, got shape {count.shape}, "
                f"dtype {count.dtype}"
            )
        return state

    def forward(
        self, params: BatchNormParams, state: BatchNormState | None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, BatchNormState, BatchNormCache]:
        """Normalise ``x`` with batch statistics (training) or running statistics (evaluation).

        Args:
            params: ``BatchNormParams(gamma, beta)``, each ``(C,)``.
            state: the running statistics. In training ``None`` starts them from
                :meth:`init_state` (in ``x``'s dtype); evaluation needs statistics that were
                updated at least once.
            x: ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``, the parameters' dtype.
            ctx: ``ctx.train`` selects the mode; in training the batch's per-channel sums go
                through ``ctx.batch_sum``, so a batch run as shards is normalised as one.
        Returns:
            ``(y, new_state, cache)`` with ``y`` of ``x``'s shape; ``new_state`` has the running
            statistics updated with this batch's (training) or is ``state`` (evaluation).
        """
        self._check_input(params, x)
        if x.ndim == 3:  # (N, C, L) as (N, C, 1, L): a view, the cache keeps that shape
            y4, new_state, cache = self.forward(params, state, x[:, :, None, :], ctx)
            return y4[:, :, 0, :], new_state, cache
        c = params.gamma.shape[0]
        bshape = (1, c) if x.ndim == 2 else (1, c, 1, 1)  # per-channel arrays broadcast against x
        gamma = params.gamma.reshape(bshape)
        beta = params.beta.reshape(bshape)

        if ctx.train:
            state = self.init_state((c,), dtype=x.dtype) if state is None else self._check_state(state, c)
            rows = _as_rows(x)
            if rows is not None:
                return self._train_rows(params, state, x, rows, ctx)
            # one exchange for the sums and the count (float64: exact counts in any input dtype),
            # so the mean is the whole batch's even across shards
            totals = ctx.batch_sum(np.append(_channel_sum(x).astype(np.float64), x.size // c))
            m = self._values_per_channel(x.shape, int(totals[c]), c)
            mu = (totals[:c] / m).astype(x.dtype).reshape(bshape)
            xc = x - mu
            sq = ctx.batch_sum(_channel_sum(xc, xc).astype(np.float64))
            var = (sq / m).astype(x.dtype).reshape(bshape)  # biased, as in the book
            inv_std = 1.0 / np.sqrt(var + self.eps)
            y = xc * (gamma * inv_std)  # gamma * xhat with the scales folded: one pass, not two
            y += beta
            return y, self._updated(state, mu, var), BatchNormCache(xc, None, inv_std, m, ctx.batch_sum)

        if state is None:
            raise ValueError(
                f"{type(self).__name__}: evaluation needs running statistics but the state is None, so they were "
                "never updated; train first (forward with Ctx(train=True)) and evaluate with the state "
                "that pass returned (or a restored training state)"
            )
        state = self._check_state(state, c)
        if int(state.count) == 0:
            raise ValueError(
                f"{type(self).__name__}: the running statistics were never updated (state.count == 0), so "
                "evaluation would use meaningless initial values; train first (forward with "
                "Ctx(train=True)) and evaluate with the state that pass returned"
            )
        mean = state.mean.astype(x.dtype, copy=False).reshape(bshape)
        inv_std = 1.0 / np.sqrt(state.var.astype(x.dtype, copy=False).reshape(bshape) + self.eps)
        # y = gamma * (x - mean) * inv_std + beta, folded into one scale and one shift per channel
        scale = gamma * inv_std
        shift = beta - mean * scale
        rows = _as_rows(x)
        if rows is None:
            y = x * scale
            y += shift
        else:
            yr = rows[0] * np.tile(scale.reshape(c), rows[1])
            yr += np.tile(shift.reshape(c), rows[1])
            y = _like(yr, x)
        return y, state, BatchNormCache(x, mean, inv_std, 0, ctx.batch_sum)

    def _train_rows(
        self, params: BatchNormParams, state: BatchNormState, x: Array, rows: tuple[Array, int], ctx: Ctx
    ) -> tuple[Array, BatchNormState, BatchNormCache]:
        """Training :meth:`forward` on the rows view of ``x`` (see :func:`_as_rows`): the same
        statistics and output in fewer, longer passes. The centred input is formed once, in the
        output's memory, and the cache keeps ``x`` itself with the batch mean."""
        c = params.gamma.shape[0]
        xr, reps = rows
        bshape = (1, c) if x.ndim == 2 else (1, c, 1, 1)
        totals = ctx.batch_sum(np.append(_col_sum(xr.reshape(-1, c)).astype(np.float64), x.size // c))
        m = self._values_per_channel(x.shape, int(totals[c]), c)
        mu = (totals[:c] / m).astype(x.dtype)
        yr = xr - np.tile(mu, reps)  # x - mu, scaled and shifted into y below
        xc2 = yr.reshape(-1, c)
        sq = ctx.batch_sum(np.einsum("mc,mc->c", xc2, xc2).astype(np.float64))
        var = (sq / m).astype(x.dtype)  # biased, as in the book
        inv_std = 1.0 / np.sqrt(var + self.eps)
        yr *= np.tile(params.gamma * inv_std, reps)
        yr += np.tile(params.beta, reps)
        cache = BatchNormCache(x, mu.reshape(bshape), inv_std.reshape(bshape), m, ctx.batch_sum)
        return _like(yr, x), self._updated(state, mu, var), cache

    def _values_per_channel(self, shape: tuple[int, ...], m: int, c: int) -> int:
        """``m``, checked: training needs at least two values per channel (shape: for the message)."""
        if m < 2:  # one value per channel: var = 0, y = beta and dx = 0, silently
            what = "feature" if len(shape) == 2 else "channel"
            raise ValueError(
                f"{type(self).__name__}: training needs more than one value per {what} to compute batch "
                f"statistics, got input shape {shape}"
            )
        return m

    def _updated(self, state: BatchNormState, mu: Array, var: Array) -> BatchNormState:
        """Running statistics after a batch with mean ``mu`` and (biased) variance ``var``."""
        c = state.mean.shape[0]
        mom = self.momentum  # running = momentum * running + (1 - momentum) * batch; keeps its dtype
        return BatchNormState(
            (mom * state.mean + (1 - mom) * mu.reshape(c)).astype(state.mean.dtype, copy=False),
            (mom * state.var + (1 - mom) * var.reshape(c)).astype(state.var.dtype, copy=False),
            np.asarray(np.asarray(state.count) + 1, dtype=np.int64),
        )

    def backward(
        self, params: BatchNormParams, cache: BatchNormCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, BatchNormParams]:
        """Gradients of batch normalisation.

        Args:
            params: as in :meth:`forward`.
            cache: from :meth:`forward`.
            dout: ``dL/dy``, the shape of ``y``.
            input_grad: whether to compute ``dx``.
        Returns:
            ``(dx, BatchNormParams(dgamma, dbeta))``; ``dx`` has ``x``'s shape. For a batch run as
            shards, ``dgamma`` and ``dbeta`` are this shard's share (the shares sum to the whole).
        """
        if dout.ndim == 3 and cache.xc.ndim == 4 and cache.xc.shape[2] == 1:  # a forward of (N, C, L)
            dx4, grads = self.backward(params, cache, dout[:, :, None, :], input_grad)
            return dx4[:, :, 0, :], grads
        if dout.shape != cache.xc.shape:
            check_dout(self, dout, cache.xc.shape)
        xrows, drows = _as_rows(cache.xc), _as_rows(dout)
        if xrows is not None and drows is not None:
            return self._backward_rows(params, cache, dout, xrows, drows, input_grad)
        xc = cache.xc if cache.mean is None else cache.xc - cache.mean
        c = params.gamma.shape[0]
        bshape = cache.inv_std.shape
        inv_std = cache.inv_std.reshape(c)
        dbeta = _channel_sum(dout)
        dxc = _channel_sum(dout, xc)  # sum(dout * xhat) = dxc * inv_std, the scale kept out of the sum
        grads = BatchNormParams(dxc * inv_std, dbeta)
        if not input_grad:
            return no_input_grad(xc.shape, dout.dtype), grads
        scale = params.gamma.reshape(bshape) * cache.inv_std
        if cache.m == 0:
            return dout * scale, grads  # evaluation: mean and var are constants
        # Training: mu and var depend on x. With dxhat = dout * gamma and M values per channel,
        #   dx = inv_std / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
        # and sum(dxhat) = gamma * dbeta, sum(dxhat * xhat) = gamma * dgamma over the whole batch:
        #   dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M), xhat = xc * inv_std.
        totals = cache.batch_sum(np.concatenate([dbeta, dxc]).astype(np.float64))
        m = cache.m
        dx = xc * (inv_std * inv_std * (totals[c:] / m).astype(xc.dtype)).reshape(bshape)
        np.subtract(dout, dx, out=dx)  # dx is our own scratch
        dx -= (totals[:c] / m).astype(xc.dtype).reshape(bshape)
        dx *= scale
        return dx, grads

    def _backward_rows(
        self,
        params: BatchNormParams,
        cache: BatchNormCache,
        dout: Array,
        xrows: tuple[Array, int],
        drows: tuple[Array, int],
        input_grad: bool,
    ) -> tuple[Array, BatchNormParams]:
        """:meth:`backward` on the rows views of the cached input and ``dout`` (see :func:`_as_rows`)."""
        c = params.gamma.shape[0]
        (xr, reps), dr = xrows, drows[0]
        inv_std = cache.inv_std.reshape(c)
        d2 = dr.reshape(-1, c)
        dbeta = _col_sum(d2)
        dxc = np.einsum("mc,mc->c", d2, xr.reshape(-1, c))
        mean = np.zeros(c, xr.dtype) if cache.mean is None else cache.mean.reshape(c)
        if cache.mean is not None:  # sum(dout * (x - mean)) = sum(dout * x) - mean * sum(dout)
            dxc = (dxc.astype(np.float64) - mean * dbeta.astype(np.float64)).astype(xr.dtype)
        grads = BatchNormParams(dxc * inv_std, dbeta)
        if not input_grad:
            return no_input_grad(dout.shape, dout.dtype), grads
        scale = params.gamma * inv_std
        if cache.m == 0:
            return _like(dr * np.tile(scale, reps), dout), grads
        # as in backward, with whole-batch sums and xc = x - mean:
        #   dx = gamma * inv_std * (dout - dbeta / M - xc * inv_std**2 * dxc / M)
        #      = scale * (dout - (x * k + (dbeta / M - mean * k))),  k = inv_std**2 * dxc / M
        totals = cache.batch_sum(np.concatenate([dbeta, dxc]).astype(np.float64))
        m = cache.m
        k = inv_std.astype(np.float64) ** 2 * totals[c:] / m
        shift = totals[:c] / m - mean * k
        dxr = xr * np.tile(k.astype(xr.dtype), reps)
        dxr += np.tile(shift.astype(xr.dtype), reps)
        np.subtract(dr, dxr, out=dxr)  # dxr is our own scratch
        dxr *= np.tile(scale, reps)
        return _like(dxr, dout), grads


def _like(rows: Array, like: Array) -> Array:
    """``rows`` (from :func:`_as_rows` of an array shaped like ``like``, or a new array of that
    layout) seen with ``like``'s shape: ``(N, C, H, W)`` over channels-last memory, or ``(N, D)``."""
    if like.ndim == 2:
        return rows
    n, c, h, w = like.shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)


# --- per-sample normalisation: LayerNorm and GroupNorm ----------------------------------------------


class LayerNormParams(NamedTuple):
    """Trainable parameters of :class:`LayerNorm`: ``gamma`` and ``beta`` of the input's shape (no batch axis).

    >>> import fnnet
    >>> params, _ = fnnet.LayerNorm().init(fnnet.key(0), (2, 3))
    >>> params.gamma.shape, params.beta.shape
    ((2, 3), (2, 3))
    """

    gamma: Array
    beta: Array


class GroupNormParams(NamedTuple):
    """Trainable parameters of :class:`GroupNorm`: per-channel ``gamma`` and ``beta``, shape ``(C,)``.

    >>> import fnnet
    >>> params, _ = fnnet.GroupNorm(2).init(fnnet.key(0), (4, 3, 3))
    >>> params.gamma.shape, params.beta.shape
    ((4,), (4,))
    """

    gamma: Array
    beta: Array


class SampleNormCache(NamedTuple):
    """What the backward of :class:`LayerNorm` and :class:`GroupNorm` needs from the forward pass:
    ``xhat`` ``(N, G, M)`` (``G`` groups of ``M`` values per sample; ``G = 1`` for LayerNorm),
    ``inv_std`` ``(N, G, 1)`` and the input shape.

    >>> import numpy as np, fnnet
    >>> gn = fnnet.GroupNorm(2)
    >>> params, _ = gn.init(fnnet.key(0), (4, 3, 3))
    >>> _, _, cache = gn.forward(params, None, np.ones((5, 4, 3, 3), np.float32))
    >>> cache.xhat.shape, cache.inv_std.shape, cache.x_shape
    ((5, 2, 18), (5, 2, 1), (5, 4, 3, 3))
    """

    xhat: Array  # the normalised input, (N, G, M): G groups of M values per sample
    inv_std: Array  # 1 / sqrt(var + eps) per sample and group, (N, G, 1)
    x_shape: tuple[int, ...]


def _normalise_groups(x: Array, groups: int, eps: float) -> tuple[Array, Array]:
    """``(xhat, inv_std)``: each sample's values split into ``groups`` consecutive runs of ``M``
    (in C order), each run standardised with its own mean and biased variance.

    ``xhat`` is ``(N, G, M)`` and ``inv_std`` ``(N, G, 1)``, both in ``x``'s dtype.
    """
    n = x.shape[0]
    xg = x.reshape(n, groups, math.prod(x.shape[1:]) // groups)  # not -1: N may be 0
    m = xg.shape[2]
    xc = xg - xg.mean(axis=2, keepdims=True)  # a new array: x is never written
    var = np.einsum("ngm,ngm->ng", xc, xc)[:, :, None] / x.dtype.type(m)
    inv_std: Array = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xc *= inv_std
    return xc, inv_std


def _normalise_groups_backward(dxhat: Array, cache: SampleNormCache) -> Array:
    """``dL/dx`` from ``dL/dxhat`` (``(N, G, M)``, overwritten), for every sample and group at once.

    With ``M`` values per group, ``xhat = (x - mu) * inv_std`` over the group gives
        dx = inv_std / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
           = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
    the sums and means over the group's ``M`` values.
    """
    xhat = cache.xhat
    m = xhat.shape[2]
    k = dxhat.dtype.type(1.0 / m)
    mean_d = dxhat.sum(axis=2, keepdims=True) * k
    mean_dx = np.einsum("ngm,ngm->ng", dxhat, xhat)[:, :, None] * k
    dxhat -= mean_d
    dxhat -= xhat * mean_dx
    dxhat *= cache.inv_std
    return dxhat.reshape(cache.x_shape)


@attrs.frozen
class LayerNorm(Layer):
    """Layer normalisation: each sample standardised over all its values, then scaled and shifted.

    For one sample ``x`` of shape ``in_shape`` (``(D,)``, ``(C, H, W)`` or any other non-empty
    shape) with ``M = prod(in_shape)`` values::

        mu = mean(x),  var = mean((x - mu)**2)                  (biased, over all M values)
        y  = gamma * (x - mu) / sqrt(var + eps) + beta

    ``gamma`` and ``beta`` have shape ``in_shape``: an elementwise affine map over the normalised
    values (one scale and shift per feature, per (c, h, w) on images). The statistics are the
    sample's own, so training and evaluation compute the same thing, there is no state, and a
    sample's output does not depend on the rest of the batch. A sample with one value (``M = 1``)
    always gives ``beta``, with a zero input gradient (the true derivative).

    Attributes:
        eps: added to the variance before the square root, ``> 0`` (default ``1e-5``, the usual
            value for this layer; :class:`BatchNorm` follows the book with ``1e-6``).

    >>> import numpy as np, fnnet
    >>> ln = fnnet.LayerNorm()
    >>> params, out = ln.init(fnnet.key(0), (4,))
    >>> params.gamma.shape, out
    ((4,), (4,))
    >>> y = ln.apply(params, np.array([[1, 2, 3, 4], [10, 10, 20, 20]], np.float32))
    >>> np.round(y.astype(np.float64), 3).tolist()
    [[-1.342, -0.447, 0.447, 1.342], [-1.0, -1.0, 1.0, 1.0]]
    """

    eps: float = attrs.field(default=1e-5, validator=_eps)

    def out_shape(self, in_shape: Shape) -> Shape:
        """The input shape (any non-empty shape)."""
        if len(in_shape) == 0:
            raise ValueError(f"{type(self).__name__}: expected a non-empty in_shape such as (D,) or (C, H, W), got ()")
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[LayerNormParams, Shape]:
        """Parameters for inputs ``(N, *in_shape)``.

        Args:
            key: unused (gamma starts at ones, beta at zeros).
            in_shape: the shape of one sample, e.g. ``(D,)`` or ``(C, H, W)``.
        Returns:
            ``(LayerNormParams(gamma, beta), in_shape)``, both of shape ``in_shape``, float32.
        """
        shape = self.out_shape(in_shape)
        return LayerNormParams(np.ones(shape, DEFAULT_DTYPE), np.zeros(shape, DEFAULT_DTYPE)), shape

    def forward(
        self, params: LayerNormParams, state: None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, None, SampleNormCache]:
        """Normalise each sample of ``x`` (the same in training and evaluation).

        Args:
            params: ``LayerNormParams(gamma, beta)`` of shape ``in_shape``.
            state: ``None`` (passed through).
            x: ``(N, *in_shape)`` in the parameters' dtype; never modified.
            ctx: unused.
        Returns:
            ``(y, state, cache)`` with ``y`` of ``x``'s shape and dtype.
        """
        gamma, beta = param_arrays(self, params, "gamma", "beta")
        shape = gamma.shape
        if beta.shape != shape:
            raise ValueError(
                f"{type(self).__name__}: expected params gamma and beta of one shape, got gamma {shape} and beta {beta.shape}"
            )
        if x.shape[1:] != shape or x.ndim < 2:
            raise ValueError(
                f"{type(self).__name__}: expected input (N, {', '.join(map(str, shape))}) matching the "
                f"parameters' shape {shape}, got shape {x.shape}"
            )
        if x.dtype != params.gamma.dtype:
            check_dtype(self, x, params.gamma.dtype)
        xhat, inv_std = _normalise_groups(x, 1, self.eps)
        y = xhat.reshape(x.shape) * params.gamma
        y += params.beta
        return y, state, SampleNormCache(xhat, inv_std, x.shape)

    def backward(
        self, params: LayerNormParams, cache: SampleNormCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, LayerNormParams]:
        """Gradients of layer normalisation.

        Args:
            params: as in :meth:`forward`.
            cache: from :meth:`forward`.
            dout: ``dL/dy``, the shape of ``y``.
            input_grad: whether to compute ``dx``.
        Returns:
            ``(dx, LayerNormParams(dgamma, dbeta))``: ``dgamma = sum_n dout * xhat`` and
            ``dbeta = sum_n dout``, of shape ``in_shape``; ``dx`` has ``x``'s shape.
        """
        if dout.shape != cache.x_shape:
            check_dout(self, dout, cache.x_shape)
        xhat = cache.xhat.reshape(cache.x_shape)
        grads = LayerNormParams(np.einsum("n...,n...->...", dout, xhat), dout.sum(axis=0))
        if not input_grad:
            return no_input_grad(cache.x_shape, dout.dtype), grads
        dxhat = (dout * params.gamma).reshape(cache.xhat.shape)
        return _normalise_groups_backward(dxhat, cache), grads


@attrs.frozen
class GroupNorm(Layer):
    """Group normalisation: each sample's channels split into ``groups`` groups, each group
    standardised over its channels and positions, then a per-channel scale and shift.

    For inputs ``(N, C, H, W)`` (or ``(N, C, L)``, or ``(N, C)`` with ``H = W = 1``) and ``G = groups`` dividing
    ``C``, group ``g`` of sample ``n`` holds channels ``g*C/G`` to ``(g+1)*C/G - 1``, so its
    ``M = (C/G)*H*W`` values give::

        mu[n, g] = mean(x[n, group g]),  var[n, g] = mean((x[n, group g] - mu[n, g])**2)
        y[n, c, h, w] = gamma[c] * (x[n, c, h, w] - mu[n, g(c)]) / sqrt(var[n, g(c)] + eps) + beta[c]

    ``groups=1`` normalises each sample over all its values (as :class:`LayerNorm`, but with one
    scale and shift per channel instead of per value); ``groups=C`` is instance normalisation (each
    channel of each sample on its own). Training and evaluation compute the same thing, there is no
    state, and a sample's output does not depend on the rest of the batch.

    Attributes:
        groups: the number of groups, a positive int that must divide the channel count.
        eps: added to the variance before the square root, ``> 0`` (default ``1e-5``).

    >>> import numpy as np, fnnet
    >>> gn = fnnet.GroupNorm(2)
    >>> params, out = gn.init(fnnet.key(0), (4, 3, 3))
    >>> params.gamma.shape, out
    ((4,), (4, 3, 3))
    >>> x = np.random.default_rng(0).normal(5, 3, (2, 4, 3, 3)).astype(np.float32)
    >>> y = gn.apply(params, x).reshape(2, 2, -1)
    >>> np.abs(y.mean(axis=2)).max() < 1e-5, np.abs(y.std(axis=2) - 1).max() < 1e-3
    (np.True_, np.True_)
    """

    groups: int = attrs.field(converter=as_int, validator=positive_int)
    eps: float = attrs.field(default=1e-5, validator=_eps)

    def _channels(self, in_shape: Shape) -> int:
        if len(in_shape) not in (1, 2, 3):
            raise ValueError(
                f"{type(self).__name__}: expected input shape (C, H, W), (C, L) or (C,) without the batch dimension, "
                f"got {tuple(in_shape)}"
            )
        c = int(in_shape[0])
        if c % self.groups != 0:
            raise ValueError(
                f"{type(self).__name__}: groups={self.groups} must divide the number of channels, got {c} channels "
                f"(in_shape {tuple(in_shape)})"
            )
        return c

    def out_shape(self, in_shape: Shape) -> Shape:
        """The input shape, ``(C, H, W)``, ``(C, L)`` or ``(C,)``."""
        self._channels(in_shape)
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[GroupNormParams, Shape]:
        """Parameters for inputs ``(N, C, H, W)``, ``(N, C, L)`` or ``(N, C)``.

        Args:
            key: unused (gamma starts at ones, beta at zeros).
            in_shape: ``(C, H, W)``, ``(C, L)`` or ``(C,)`` with ``C`` divisible by ``groups``.
        Returns:
            ``(GroupNormParams(gamma, beta), in_shape)`` with ``gamma``, ``beta`` of shape ``(C,)``, float32.
        """
        c = self._channels(in_shape)
        return GroupNormParams(np.ones(c, DEFAULT_DTYPE), np.zeros(c, DEFAULT_DTYPE)), tuple(in_shape)

    def forward(
        self, params: GroupNormParams, state: None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, None, SampleNormCache]:
        """Normalise each group of each sample of ``x`` (the same in training and evaluation).

        Args:
            params: ``GroupNormParams(gamma, beta)``, each ``(C,)``.
            state: ``None`` (passed through).
            x: ``(N, C, H, W)``, ``(N, C, L)`` or ``(N, C)`` in the parameters' dtype; never modified.
            ctx: unused.
        Returns:
            ``(y, state, cache)`` with ``y`` of ``x``'s shape and dtype.
        """
        c = _channel_params(self, params)
        if x.ndim not in (2, 3, 4) or x.shape[1] != c:
            expected = f"(N, {c}, H, W), (N, {c}, L) or (N, {c})"
            raise ValueError(f"{type(self).__name__}: expected input {expected} with {c} channels, got shape {x.shape}")
        self._channels((c,))
        if x.dtype != params.gamma.dtype:
            check_dtype(self, x, params.gamma.dtype)
        bshape = (1, c) + (1,) * (x.ndim - 2)
        xhat, inv_std = _normalise_groups(x, self.groups, self.eps)
        y = xhat.reshape(x.shape) * params.gamma.reshape(bshape)
        y += params.beta.reshape(bshape)
        return y, state, SampleNormCache(xhat, inv_std, x.shape)

    def backward(
        self, params: GroupNormParams, cache: SampleNormCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, GroupNormParams]:
        """Gradients of group normalisation.

        Args:
            params: as in :meth:`forward`.
            cache: from :meth:`forward`.
            dout: ``dL/dy``, the shape of ``y``.
            input_grad: whether to compute ``dx``.
        Returns:
            ``(dx, GroupNormParams(dgamma, dbeta))`` with ``dgamma[c] = sum dout * xhat`` and
            ``dbeta[c] = sum dout`` over samples and positions; ``dx`` has ``x``'s shape.
        """
        if dout.shape != cache.x_shape:
            check_dout(self, dout, cache.x_shape)
        c = params.gamma.shape[0]
        xhat = cache.xhat.reshape(cache.x_shape)
        grads = GroupNormParams(_channel_sum(dout, xhat), _channel_sum(dout))
        if not input_grad:
            return no_input_grad(cache.x_shape, dout.dtype), grads
        dxhat = (dout * params.gamma.reshape((1, c) + (1,) * (dout.ndim - 2))).reshape(cache.xhat.shape)
        return _normalise_groups_backward(dxhat, cache), grads
