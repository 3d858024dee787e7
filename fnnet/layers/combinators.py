"""Pipelines: ``serial`` composes layers into a layer; ``residual`` adds a skip connection;
``summary`` reports shapes and parameter counts from ``init`` alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import attrs

from fnnet._sharded import SegmentedCache, SegmentedSerial
from fnnet.typing import Array, Shape
from fnnet.layers.base import EVAL, Ctx, Layer
from fnnet.parallel import Shards
from fnnet.random import Key, fold_in, key as make_key, split
from fnnet.tree import tree_size

__all__ = ["Serial", "serial", "Residual", "residual", "summary", "Summary", "SummaryRow"]


class SerialCache(NamedTuple):
    caches: tuple[Any, ...]


def _where(i: int, layer: Layer) -> str:
    return f"layer {i} ({layer.name})"


def _check_layers(inst: object, attribute: "attrs.Attribute[Any]", value: tuple[Any, ...]) -> None:
    if not value:
        raise ValueError("serial: needs at least one layer")
    for i, layer in enumerate(value):
        if not isinstance(layer, Layer):
            raise ValueError(f"serial: argument {i} is not a Layer: {layer!r}")


def _as_tuple(layers: Any) -> tuple[Layer, ...]:
    return tuple(layers)


@attrs.frozen
class Serial(Layer):
    """Layers applied one after another; itself a layer.

    ``params`` and ``state`` are tuples with one entry per layer. Errors raised by a layer are
    re-raised as ``ValueError`` prefixed with ``layer i (Kind)``.
    """

    layers: tuple[Layer, ...] = attrs.field(converter=_as_tuple, validator=_check_layers)

    @property
    def uses_key(self) -> bool:  # type: ignore[override]
        """True if any of the layers draws random numbers."""
        return any(layer.uses_key for layer in self.layers)

    @property
    def couples_batch(self) -> bool:  # type: ignore[override]
        """True if any of the layers mixes samples of a batch in training."""
        return any(layer.couples_batch for layer in self.layers)

    @property
    def splits_well(self) -> bool:  # type: ignore[override]
        """True if any of the layers gains from splitting the batch across threads."""
        return any(layer.splits_well for layer in self.layers)

    def init(self, key: Key, in_shape: Shape) -> tuple[tuple[Any, ...], Shape]:
        params = []
        shape = tuple(in_shape)
        for i, (layer, k) in enumerate(zip(self.layers, split(key, len(self.layers)))):
            try:
                p, shape = layer.init(k, shape)
            except ValueError as e:
                raise ValueError(f"{_where(i, layer)}: {e}") from e
            params.append(p)
        return tuple(params), shape

    def init_state(self, in_shape: Shape) -> tuple[Any, ...]:
        states = []
        shape = tuple(in_shape)
        for layer in self.layers:
            states.append(layer.init_state(shape))
            shape = layer.init(make_key(0), shape)[1]  # setup-time only: shapes size later states
        return tuple(states)

    def _check_params(self, params: Any) -> None:
        if not isinstance(params, tuple) or len(params) != len(self.layers):
            got = f"{len(params)} entries" if isinstance(params, tuple) else type(params).__name__
            raise ValueError(f"Serial: expected params as a tuple of {len(self.layers)} entries, got {got}")

    def forward(self, params: tuple[Any, ...], x: Array, ctx: Ctx = EVAL) -> tuple[Array, SerialCache]:
        self._check_params(params)
        states = ctx.state
        if states is not None and (not isinstance(states, tuple) or len(states) != len(self.layers)):
            raise ValueError(f"Serial: expected ctx.state as a tuple of {len(self.layers)} entries")
        caches = []
        for i, layer in enumerate(self.layers):
            sub = Ctx(
                ctx.train,
                None if ctx.key is None or not layer.uses_key else fold_in(ctx.key, i),
                None if states is None else states[i],
                ctx.input_grad or i > 0,
            )
            try:
                x, c = layer.forward(params[i], x, sub)
            except ValueError as e:
                raise ValueError(f"{_where(i, layer)}: {e}") from e
            caches.append(c)
        return x, SerialCache(tuple(caches))

    def backward(self, params: tuple[Any, ...], cache: SerialCache, dout: Array) -> tuple[Array, tuple[Any, ...]]:
        self._check_params(params)
        grads: list[Any] = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            try:
                dout, grads[i] = layer.backward(params[i], cache.caches[i], dout)
            except ValueError as e:
                raise ValueError(f"{_where(i, layer)}: {e}") from e
        return dout, tuple(grads)

    def forward_shards(
        self, params: tuple[Any, ...], xs: Sequence[Array], ctx: Ctx, shards: Shards
    ) -> tuple[list[Array], SegmentedCache]:
        """The pipeline on a batch given as row shards: runs of layers that treat samples
        independently go through each shard on its own thread; a batch-coupled layer runs
        through its own ``forward_shards`` (see :mod:`fnnet._sharded`)."""
        self._check_params(params)
        if ctx.state is not None and (not isinstance(ctx.state, tuple) or len(ctx.state) != len(self.layers)):
            raise ValueError(f"Serial: expected ctx.state as a tuple of {len(self.layers)} entries")
        return SegmentedSerial(self).forward(params, xs, ctx, shards)

    def backward_shards(
        self, params: tuple[Any, ...], cache: Any, douts: Sequence[Array], shards: Shards
    ) -> tuple[list[Array], tuple[Any, ...]]:
        """Backward of :meth:`forward_shards`: ``(dxs, grads)`` with one ``dx`` per shard."""
        self._check_params(params)
        if not isinstance(cache, SegmentedCache):
            dxs, grads = super().backward_shards(params, cache, douts, shards)
            return dxs, grads
        return SegmentedSerial(self).backward(params, cache, douts, shards)

    def new_state(self, cache: SerialCache | SegmentedCache) -> tuple[Any, ...]:
        if isinstance(cache, SegmentedCache):
            return SegmentedSerial(self).new_state(cache)
        return tuple(layer.new_state(c) for layer, c in zip(self.layers, cache.caches))


def serial(*layers: Layer) -> Serial:
    """Compose ``layers`` into one layer: ``y = layers[-1](... layers[0](x))``."""
    return Serial(layers)


class ResidualCache(NamedTuple):
    inner: Any


@attrs.frozen
class Residual(Layer):
    """``y = f(x) + x`` for a layer ``f`` that keeps the shape; params and state are ``f``'s."""

    inner: Layer

    @property
    def uses_key(self) -> bool:  # type: ignore[override]
        """True if the inner layer draws random numbers."""
        return self.inner.uses_key

    @property
    def couples_batch(self) -> bool:  # type: ignore[override]
        """True if the inner layer mixes samples of a batch in training."""
        return self.inner.couples_batch

    @property
    def splits_well(self) -> bool:  # type: ignore[override]
        """True if the inner layer gains from splitting the batch across threads."""
        return self.inner.splits_well

    def init(self, key: Key, in_shape: Shape) -> tuple[Any, Shape]:
        p, out = self.inner.init(key, in_shape)
        if tuple(out) != tuple(in_shape):
            raise ValueError(f"Residual: inner layer maps {tuple(in_shape)} to {tuple(out)}; shapes must match")
        return p, out

    def init_state(self, in_shape: Shape) -> Any:
        return self.inner.init_state(in_shape)

    def forward(self, params: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, ResidualCache]:
        y, c = self.inner.forward(params, x, attrs.evolve(ctx, input_grad=True))
        return y + x, ResidualCache(c)

    def backward(self, params: Any, cache: ResidualCache, dout: Array) -> tuple[Array, Any]:
        dx, g = self.inner.backward(params, cache.inner, dout)
        return dx + dout, g

    def new_state(self, cache: ResidualCache) -> Any:
        return self.inner.new_state(cache.inner)


def residual(inner: Layer) -> Residual:
    """A skip connection around ``inner``: ``y = inner(x) + x``."""
    return Residual(inner)


@attrs.frozen
class SummaryRow:
    """One layer of a :class:`Summary`."""

    index: int
    kind: str
    out_shape: Shape
    params: int


@attrs.frozen
class Summary:
    """Per-layer output shapes and parameter counts; ``str()`` gives a table."""

    in_shape: Shape
    rows: tuple[SummaryRow, ...]

    @property
    def total_params(self) -> int:
        """Number of trainable scalars in the whole model."""
        return sum(r.params for r in self.rows)

    @property
    def out_shape(self) -> Shape:
        """The model's output shape (without the batch dimension)."""
        return self.rows[-1].out_shape if self.rows else self.in_shape

    def __str__(self) -> str:
        lines = [f"{'#':>3}  {'layer':<12} {'output shape':<20} {'params':>10}"]
        lines.append(f"{'':>3}  {'input':<12} {str(('N',) + self.in_shape):<20} {'':>10}")
        for r in self.rows:
            lines.append(f"{r.index:>3}  {r.kind:<12} {str(('N',) + r.out_shape):<20} {r.params:>10,}")
        lines.append(f"total params: {self.total_params:,}")
        return "\n".join(lines)


def summary(model: Layer, in_shape: Shape) -> Summary:
    """Shapes and parameter counts of ``model`` for inputs ``(N, *in_shape)``, from ``init`` alone.

    Uses a fixed key; no data is needed and nothing is returned but the summary.
    """
    k = make_key(0)
    layers = model.layers if isinstance(model, Serial) else (model,)
    rows = []
    shape = tuple(in_shape)
    for i, (layer, lk) in enumerate(zip(layers, split(k, len(layers)))):
        try:
            p, shape = layer.init(lk, shape)
        except ValueError as e:
            raise ValueError(f"{_where(i, layer)}: {e}") from e
        rows.append(SummaryRow(i, layer.name, tuple(int(s) for s in shape), tree_size(p)))
    return Summary(tuple(in_shape), tuple(rows))

