"""The layer contract: immutable records with pure ``init`` / ``forward`` / ``backward``.

Every layer is a frozen attrs record of hyperparameters. Its parameters are a separate immutable
record (a NamedTuple of arrays, or ``None`` when it has none):

- ``layer.init(key, in_shape) -> (params, out_shape)``; shapes exclude the batch dimension.
- ``layer.forward(params, x, ctx) -> (y, cache)``; ``ctx`` says train/eval, carries the random key
  and, for stateful layers (BatchNorm), their state. Evaluation is the default.
- ``layer.backward(params, cache, dout) -> (dx, grads)``; ``grads`` has the type of ``params``.
- ``layer.init_state(in_shape) -> state`` and ``layer.new_state(cache) -> state`` carry explicit
  non-trainable state (``None`` for stateless layers).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import numpy as np

from fnnet.typing import Array, Shape
from fnnet.parallel import Shards
from fnnet.random import Key

from fnnet._validate import nonneg_int, positive_int

__all__ = ["Ctx", "EVAL", "TRAIN", "Layer", "check_rank", "check_dout", "check_dtype", "join_rows"]


@attrs.frozen
class Ctx:
    """What a forward pass needs besides params and input.

    Attributes:
        train: training mode (batch statistics in BatchNorm, dropping in Dropout).
        key: the random key for layers that draw random numbers (Dropout); ``None`` if absent.
        state: explicit non-trainable state of the layer (BatchNorm running statistics); for a
            ``serial`` pipeline a tuple with one entry per layer.
        input_grad: whether ``backward`` must compute the input gradient ``dx``. A training step
            sets it to ``False`` so the first layer skips that work; ``dx`` is then a read-only
            array of zeros of the right shape.
    """

    train: bool = False
    key: Key | None = None
    state: Any = None
    input_grad: bool = True


#: The evaluation context (the default everywhere).
EVAL = Ctx()
#: A training context with no key and no state (enough for layers without randomness or state).
TRAIN = Ctx(train=True)


class Layer(abc.ABC):
    """Base class of every layer (and of pipelines, which are layers too)."""

    __slots__ = ()

    #: Whether ``forward`` draws random numbers from ``ctx.key``. Pipelines derive a per-layer key
    #: (``fold_in(ctx.key, i)``) only for layers that set this, keeping the step cheap.
    uses_key: ClassVar[bool] = False

    #: Whether, in training, one sample's output depends on the other samples of the batch
    #: (BatchNorm's batch statistics). A train step splits the batch into shards that run on
    #: separate cores only for layers that leave this False.
    couples_batch: ClassVar[bool] = False

    #: Whether splitting a training batch across threads pays for this layer: its work per
    #: sample far exceeds its parameter count (a convolution reuses each weight at every output
    #: pixel), so the weight gradient every shard computes and the sum of those are cheap next to
    #: the work shared out. For fully connected layers they are not (the gradient is as large as
    #: the work). A train step splits its batch by default when some layer says so.
    splits_well: ClassVar[bool] = False

    @property
    def name(self) -> str:
        """The layer's kind, used in error messages and summaries."""
        return type(self).__name__

    @abc.abstractmethod
    def init(self, key: Key, in_shape: Shape) -> tuple[Any, Shape]:
        """Create parameters for inputs of shape ``(N, *in_shape)``.

        Returns:
            ``(params, out_shape)`` where outputs have shape ``(N, *out_shape)``.
        """

    @abc.abstractmethod
    def forward(self, params: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any]:
        """Compute ``y = f(params, x)``; returns ``(y, cache)`` for :meth:`backward`."""

    @abc.abstractmethod
    def backward(self, params: Any, cache: Any, dout: Array) -> tuple[Array, Any]:
        """Given ``dL/dy`` of ``y``'s shape, return ``(dL/dx, dL/dparams)``."""

    def init_state(self, in_shape: Shape) -> Any:
        """Initial non-trainable state (``None`` for stateless layers)."""
        return None

    def new_state(self, cache: Any) -> Any:
        """The state after the forward pass that produced ``cache`` (``None`` if stateless)."""
        return None

    def forward_shards(self, params: Any, xs: Sequence[Array], ctx: Ctx, shards: Shards) -> tuple[list[Array], Any]:
        """Forward of one batch given as consecutive row shards ``xs`` (``shards.count`` of them).

        A sharded train step calls this for layers that set :attr:`couples_batch`; the result
        must be that of :meth:`forward` on the joined batch, split the same way. This default
        joins the shards and calls :meth:`forward`; a layer may instead do its per-shard work on
        ``shards.map`` (BatchNorm exchanges only its per-channel sums).

        Returns:
            ``(ys, cache)``: one output per shard and a cache for :meth:`backward_shards` and
            :meth:`new_state`.
        """
        y, cache = self.forward(params, join_rows(xs), ctx)
        return _split_like(y, xs), cache

    def backward_shards(
        self, params: Any, cache: Any, douts: Sequence[Array], shards: Shards
    ) -> tuple[list[Array], Any]:
        """Backward of :meth:`forward_shards`: ``(dxs, grads)`` with one ``dx`` per shard."""
        dx, grads = self.backward(params, cache, join_rows(douts))
        return _split_like(dx, douts), grads

    def apply(self, params: Any, x: Array, ctx: Ctx = EVAL) -> Array:
        """Forward pass returning only the output (inference convenience)."""
        return self.forward(params, x, ctx)[0]


def join_rows(parts: Sequence[Array]) -> Array:
    """Concatenate arrays along axis 0, keeping a channels-last memory order of 4-D parts."""
    if len(parts) == 1:
        return parts[0]
    if parts[0].ndim == 4 and all(p.transpose(0, 2, 3, 1).flags.c_contiguous for p in parts):
        return np.concatenate([p.transpose(0, 2, 3, 1) for p in parts]).transpose(0, 3, 1, 2)
    return np.concatenate(parts)


def _split_like(a: Array, parts: Sequence[Array]) -> list[Array]:
    """``a`` cut along axis 0 into pieces as long as ``parts`` (views)."""
    out, start = [], 0
    for p in parts:
        out.append(a[start : start + len(p)])
        start += len(p)
    return out


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("N" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def check_rank(layer: Layer, x: Array, rank: int, what: str = "input") -> None:
    """Raise ``ValueError`` naming ``layer`` unless ``x.ndim == rank``."""
    if x.ndim != rank:
        raise ValueError(f"{layer.name}: expected {what} of rank {rank}, got shape {_fmt(x.shape)}")


def check_dtype(layer: Layer, x: Array, dtype: np.dtype[Any]) -> None:
    """Raise ``ValueError`` naming ``layer`` unless ``x`` has the parameters' ``dtype``."""
    if x.dtype != dtype:
        raise ValueError(
            f"{layer.name}: expected input of dtype {dtype} (the parameters' dtype), got {x.dtype}; "
            f"cast the input with x.astype(np.{dtype}) or the params with fnnet.astype(params, ...)"
        )


def check_dout(layer: Layer, dout: Array, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` naming ``layer`` unless ``dout`` has the forward output's shape."""
    if dout.shape != shape:
        raise ValueError(f"{layer.name}.backward: expected dout of shape {_fmt(shape)}, got {_fmt(dout.shape)}")


def no_input_grad(x_shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
    """A read-only zero array standing in for an input gradient nobody asked for."""
    zero = np.zeros((), dtype=dtype)
    # A zero-strided view of one zero: costs no memory; built directly (np.broadcast_to is slower).
    out: Array = np.ndarray(x_shape, dtype=dtype, buffer=zero, strides=(0,) * len(x_shape))
    out.flags.writeable = False
    return out
