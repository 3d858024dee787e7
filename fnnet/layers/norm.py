"""Batch normalisation (the book's section 6.3) with explicit running statistics.

Training normalises with the statistics of the batch; evaluation normalises with running
statistics accumulated during training. Those running statistics are *state*, not parameters: they
come in through ``ctx.state`` and go out through ``layer.new_state(cache)``, so no optimizer ever
sees them and nothing is mutated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import attrs
import numpy as np

from fnnet.typing import DEFAULT_DTYPE, Array, Shape
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, check_dtype, no_input_grad
from fnnet.parallel import Shards
from fnnet.random import Key

__all__ = ["BatchNorm", "BatchNormParams", "BatchNormState", "BatchNormCache", "DEFAULT_EPS"]

#: Added to the variance before the square root so that a feature with zero batch variance is
#: divided by sqrt(eps) instead of 0. The book uses ``10e-7`` (that is, 1e-6); so does fnnet.
DEFAULT_EPS = 1e-6


class BatchNormParams(NamedTuple):
    """Trainable parameters of :class:`BatchNorm`: scale ``gamma`` and shift ``beta``, shape ``(C,)``."""

    gamma: Array
    beta: Array


class BatchNormState(NamedTuple):
    """Running statistics of :class:`BatchNorm` (non-trainable state).

    Attributes:
        mean: running mean per feature/channel, shape ``(C,)``.
        var: running (biased) variance per feature/channel, shape ``(C,)``.
        count: 0-d int64 array, the number of training forward passes folded into the statistics;
            0 means they were never updated and evaluation refuses to use them.
    """

    mean: Array
    var: Array
    count: Array  # type: ignore[assignment]  # the field shadows tuple.count, which nobody needs here


class BatchNormCache(NamedTuple):
    """What :meth:`BatchNorm.backward` and :meth:`BatchNorm.new_state` need from the forward pass."""

    xc: Array | None  # training: the centred input x - mu (xhat = xc * inv_std is never stored)
    x: Array | None  # evaluation: the input (x - mean is rebuilt only if backward is called)
    mean: Array  # the mean used, broadcastable to x: (1, C) or (1, C, 1, 1)
    inv_std: Array  # 1 / sqrt(var + eps) used, same shape as mean
    train: bool
    input_grad: bool
    state: BatchNormState  # the updated state (training) or the input state (evaluation)


class BatchNormShardCache(NamedTuple):
    """What :meth:`BatchNorm.backward_shards` needs from :meth:`BatchNorm.forward_shards`."""

    xcs: tuple[Array, ...]  # each shard's centred input x - mu (mu of the whole batch)
    inv_std: Array  # 1 / sqrt(var + eps) of the whole batch, broadcastable to x
    m: int  # values per channel in the whole batch
    input_grad: bool
    state: BatchNormState  # the updated state


def _ordered_sum(parts: Sequence[Array]) -> Array:
    """``parts[0] + parts[1] + ...`` in that order (a fixed order: the same bits on any thread count)."""
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


def _channel_sum(a: Array, b: Array | None = None) -> Array:
    """Sum of ``a`` (or of ``a * b``) over every axis but the channel axis 1, shape ``(C,)``.

    einsum fuses the product into the reduction: no temporary of ``x``'s size, one pass.
    """
    sub = "nc" if a.ndim == 2 else "nchw"
    out: Array = np.einsum(f"{sub}->c", a) if b is None else np.einsum(f"{sub},{sub}->c", a, b)
    return out


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
    ``(N, C, H, W)`` per channel (statistics over N, H and W, one ``gamma``/``beta`` per channel).
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
    """

    couples_batch: ClassVar[bool] = True  # batch statistics: a train step never splits its batch

    momentum: float = attrs.field(default=0.9, validator=_momentum)
    eps: float = attrs.field(default=DEFAULT_EPS, validator=_eps)

    def _channels(self, in_shape: Shape) -> int:
        if len(in_shape) not in (1, 3):
            raise ValueError(
                f"{self.name}: expected input shape (D,) or (C, H, W) without the batch dimension, "
                f"got {tuple(in_shape)}"
            )
        return int(in_shape[0])

    def init(self, key: Key, in_shape: Shape) -> tuple[BatchNormParams, Shape]:
        """Parameters for inputs ``(N, D)`` or ``(N, C, H, W)``.

        Args:
            key: unused (gamma starts at ones, beta at zeros, as in the book).
            in_shape: ``(D,)`` or ``(C, H, W)``.
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
            in_shape: ``(D,)`` or ``(C, H, W)``.
            dtype: floating point dtype of ``mean`` and ``var`` (float32 by default).
        Returns:
            A :class:`BatchNormState` with ``mean``, ``var`` of shape ``(C,)`` and a 0-d int64 ``count``.
        """
        c = self._channels(in_shape)
        return BatchNormState(np.zeros(c, dtype), np.ones(c, dtype), np.zeros((), np.int64))

    def _check_input(self, params: BatchNormParams, x: Array) -> None:
        """Validate ``x`` against ``params`` (rank, channels, dtype)."""
        if x.ndim not in (2, 4):
            raise ValueError(
                f"{self.name}: expected input of rank 2 (N, D) or rank 4 (N, C, H, W), got shape {x.shape}"
            )
        c = params.gamma.shape[0]
        if x.shape[1] != c:
            what = "features" if x.ndim == 2 else "channels"
            expected = f"(N, {c})" if x.ndim == 2 else f"(N, {c}, H, W)"
            raise ValueError(f"{self.name}: expected input {expected} with {c} {what}, got shape {x.shape}")
        if x.dtype != params.gamma.dtype:
            check_dtype(self, x, params.gamma.dtype)

    def _check_state(self, state: Any, c: int) -> BatchNormState:
        if not isinstance(state, BatchNormState):
            raise ValueError(f"{self.name}: expected ctx.state to be a BatchNormState, got {type(state).__name__}")
        for name in ("mean", "var"):
            a = getattr(state, name)
            if not isinstance(a, np.ndarray) or a.shape != (c,) or a.dtype.kind != "f":
                got = f"shape {a.shape}, dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"{self.name}: expected state.{name} as a float array of shape ({c},), got {got}")
        count = np.asarray(state.count)
        if count.shape != () or count.dtype.kind not in "iu":
            raise ValueError(
                f"{self.name}: expected state.count as a 0-d integer array, got shape {count.shape}, "
                f"dtype {count.dtype}"
            )
        return state

    def forward(self, params: BatchNormParams, x: Array, ctx: Ctx = EVAL) -> tuple[Array, BatchNormCache]:
        """Normalise ``x`` with batch statistics (training) or running statistics (evaluation).

        Args:
            params: ``BatchNormParams(gamma, beta)``, each ``(C,)``.
            x: ``(N, C)`` or ``(N, C, H, W)``, the parameters' dtype.
            ctx: ``ctx.train`` selects the mode; ``ctx.state`` holds the running statistics. In
                training ``ctx.state`` may be ``None``: the statistics then start from
                :meth:`init_state` (in ``x``'s dtype). In evaluation it must hold statistics that
                were updated at least once.
        Returns:
            ``(y, cache)`` with ``y`` of ``x``'s shape; ``new_state(cache)`` gives the state after
            this pass.
        """
        self._check_input(params, x)
        c = params.gamma.shape[0]
        bshape = (1, c) if x.ndim == 2 else (1, c, 1, 1)  # per-channel arrays broadcast against x
        gamma = params.gamma.reshape(bshape)
        beta = params.beta.reshape(bshape)

        if ctx.train:
            m = self._values_per_channel(x.shape, x.size // c, c)
            state = (
                self.init_state((c,), dtype=x.dtype) if ctx.state is None else self._check_state(ctx.state, c)
            )
            mu = (_channel_sum(x) / m).reshape(bshape)
            xc = x - mu
            var = (_channel_sum(xc, xc) / m).reshape(bshape)  # biased, as in the book
            inv_std = 1.0 / np.sqrt(var + self.eps)
            y = xc * (gamma * inv_std)  # gamma * xhat with the scales folded: one pass, not two
            y += beta
            new_state = self._updated(state, mu, var)
            return y, BatchNormCache(xc, None, mu, inv_std, True, ctx.input_grad, new_state)

        if ctx.state is None:
            raise ValueError(
                f"{self.name}: evaluation needs running statistics but ctx.state is None, so they were "
                "never updated; train first (forward with Ctx(train=True, ...)), then evaluate with "
                "Ctx(state=model.new_state(cache)) (or a restored training state)"
            )
        state = self._check_state(ctx.state, c)
        if int(state.count) == 0:
            raise ValueError(
                f"{self.name}: the running statistics were never updated (state.count == 0), so "
                "evaluation would use meaningless initial values; train first (forward with "
                "Ctx(train=True, state=...)) and evaluate with the state from model.new_state(cache)"
            )
        mean = state.mean.astype(x.dtype, copy=False).reshape(bshape)
        inv_std = 1.0 / np.sqrt(state.var.astype(x.dtype, copy=False).reshape(bshape) + self.eps)
        # y = gamma * (x - mean) * inv_std + beta, folded into one scale and one shift per channel
        scale = gamma * inv_std
        y = x * scale
        y += beta - mean * scale
        return y, BatchNormCache(None, x, mean, inv_std, False, ctx.input_grad, state)

    def _values_per_channel(self, shape: tuple[int, ...], m: int, c: int) -> int:
        """``m``, checked: training needs at least two values per channel (shape: for the message)."""
        if m < 2:  # one value per channel: var = 0, y = beta and dx = 0, silently
            what = "feature" if len(shape) == 2 else "channel"
            raise ValueError(
                f"{self.name}: training needs more than one value per {what} to compute batch "
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

    def forward_shards(
        self, params: BatchNormParams, xs: Sequence[Array], ctx: Ctx, shards: Shards
    ) -> tuple[list[Array], Any]:
        """Training forward of a batch given as row shards, each shard's work on its own thread.

        Equal to :meth:`forward` on the joined batch up to rounding: the shards exchange only
        their per-channel sums (added in shard order), for the mean and then for the variance.

        Args:
            xs: the shards, each ``(n_i, C)`` or ``(n_i, C, H, W)``.
            shards: the runner (``shards.count == len(xs)``).
        Returns:
            ``(ys, cache)`` with one output per shard.
        """
        if not ctx.train:
            return super().forward_shards(params, xs, ctx, shards)
        for x in xs:
            self._check_input(params, x)
        c = params.gamma.shape[0]
        bshape = (1, c) if xs[0].ndim == 2 else (1, c, 1, 1)
        full_shape = (sum(len(x) for x in xs), *xs[0].shape[1:])
        m = self._values_per_channel(full_shape, sum(x.size for x in xs) // c, c)
        state = self.init_state((c,), dtype=xs[0].dtype) if ctx.state is None else self._check_state(ctx.state, c)
        mu = (_ordered_sum(shards.map(lambda s: _channel_sum(xs[s]))) / m).reshape(bshape)

        def centre(s: int) -> tuple[Array, Array]:
            xc = xs[s] - mu
            return xc, _channel_sum(xc, xc)

        centred = shards.map(centre)
        var = (_ordered_sum([q for _, q in centred]) / m).reshape(bshape)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        scale = params.gamma.reshape(bshape) * inv_std
        beta = params.beta.reshape(bshape)

        def output(s: int) -> Array:
            y = centred[s][0] * scale
            y += beta
            return y

        cache = BatchNormShardCache(tuple(xc for xc, _ in centred), inv_std, m, ctx.input_grad,
                                    self._updated(state, mu, var))
        return shards.map(output), cache

    def backward_shards(
        self, params: BatchNormParams, cache: Any, douts: Sequence[Array], shards: Shards
    ) -> tuple[list[Array], BatchNormParams]:
        """Backward of :meth:`forward_shards`: ``(dxs, BatchNormParams(dgamma, dbeta))``."""
        if not isinstance(cache, BatchNormShardCache):
            dxs, g = super().backward_shards(params, cache, douts, shards)
            return dxs, g
        for d, xc in zip(douts, cache.xcs):
            if d.shape != xc.shape:
                check_dout(self, d, xc.shape)
        c = params.gamma.shape[0]
        inv_std = cache.inv_std.reshape(c)
        sums = shards.map(lambda s: (_channel_sum(douts[s]), _channel_sum(douts[s], cache.xcs[s])))
        dbeta = _ordered_sum([b for b, _ in sums])
        dgamma = _ordered_sum([g for _, g in sums]) * inv_std
        grads = BatchNormParams(dgamma, dbeta)
        if not cache.input_grad:
            return [no_input_grad(xc.shape, d.dtype) for xc, d in zip(cache.xcs, douts)], grads
        bshape = cache.inv_std.shape
        scale = params.gamma.reshape(bshape) * cache.inv_std
        k_xc = (inv_std * dgamma / cache.m).reshape(bshape)
        k_0 = (dbeta / cache.m).reshape(bshape)

        def dx(s: int) -> Array:  # as in backward: scale * (dout - dbeta/M - xhat * dgamma/M)
            d: Array = cache.xcs[s] * k_xc
            np.subtract(douts[s], d, out=d)  # d is our own scratch
            d -= k_0
            d *= scale
            return d

        return shards.map(dx), grads

    def backward(
        self, params: BatchNormParams, cache: BatchNormCache, dout: Array
    ) -> tuple[Array, BatchNormParams]:
        """Gradients of batch normalisation.

        Args:
            params: as in :meth:`forward`.
            cache: from :meth:`forward`.
            dout: ``dL/dy``, the shape of ``y``.
        Returns:
            ``(dx, BatchNormParams(dgamma, dbeta))``; ``dx`` has ``x``'s shape.
        """
        if cache.train:
            assert cache.xc is not None
            xc = cache.xc
        else:
            assert cache.x is not None
            xc = cache.x - cache.mean
        if dout.shape != xc.shape:
            check_dout(self, dout, xc.shape)
        c = params.gamma.shape[0]
        bshape = cache.inv_std.shape
        inv_std = cache.inv_std.reshape(c)
        dbeta = _channel_sum(dout)
        dgamma = _channel_sum(dout, xc) * inv_std  # sum(dout * xhat), the scale taken out of the sum
        grads = BatchNormParams(dgamma, dbeta)
        if not cache.input_grad:
            return no_input_grad(xc.shape, dout.dtype), grads
        scale = params.gamma.reshape(bshape) * cache.inv_std
        if not cache.train:
            return dout * scale, grads  # mean and var are constants in evaluation
        # Training: mu and var depend on x. With dxhat = dout * gamma and M values per channel,
        #   dx = inv_std / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
        # and sum(dxhat) = gamma * dbeta, sum(dxhat * xhat) = gamma * dgamma, so
        #   dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M), xhat = xc * inv_std.
        m = xc.size // c
        dx = xc * (inv_std * dgamma / m).reshape(bshape)
        np.subtract(dout, dx, out=dx)  # dx is our own scratch
        dx -= (dbeta / m).reshape(bshape)
        dx *= scale
        return dx, grads

    def new_state(self, cache: BatchNormCache | BatchNormShardCache) -> BatchNormState:
        """The running statistics after the pass that produced ``cache``.

        Returns:
            The updated :class:`BatchNormState` after a training pass, the unchanged input state
            after an evaluation pass.
        """
        return cache.state
