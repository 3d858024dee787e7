"""Pipelines: ``serial`` composes layers into a layer; ``residual`` adds a skip connection;
``summary`` reports shapes and parameter counts from ``init`` alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import attrs

from fnnet.layers.base import EVAL, Ctx, Layer, kind
from fnnet.random import Key, key as make_key, split
from fnnet.tree import tree_size
from fnnet.typing import Array, Shape

__all__ = ["Serial", "serial", "Residual", "residual", "summary", "Summary", "SummaryRow"]


class SerialCache(NamedTuple):
    caches: tuple[Any, ...]


def _where(i: int, layer: Layer) -> str:
    return f"layer {i} ({kind(layer)})"


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

    ``params`` and ``state`` are tuples with one entry per layer (``state`` may be ``None`` for a
    pipeline without stateful layers). Errors raised by a layer are re-raised as ``ValueError``
    prefixed with ``layer i (Kind)``; layer ``i`` draws its random numbers from
    ``fold_in(key, i)``.

    >>> import numpy as np, fnnet
    >>> model = fnnet.serial(fnnet.Affine(4), fnnet.ReLU(), fnnet.Affine(2))
    >>> params, out = model.init(fnnet.key(0), (3,))
    >>> out, model.init_state((3,))
    ((2,), (None, None, None))
    >>> model.apply(params, np.ones((5, 3), np.float32)).shape
    (5, 2)
    """

    layers: tuple[Layer, ...] = attrs.field(converter=_as_tuple, validator=_check_layers)

    def out_shape(self, in_shape: Shape) -> Shape:
        """The last layer's output shape, passed through every layer's ``out_shape``."""
        shape = tuple(in_shape)
        for i, layer in enumerate(self.layers):
            shape = _at(i, layer, lambda: layer.out_shape(shape))
        return shape

    def init(self, key: Key, in_shape: Shape) -> tuple[tuple[Any, ...], Shape]:
        """Each layer's params from ``split(key, len(layers))[i]``; returns ``(params, out_shape)``."""
        params = []
        shape = tuple(in_shape)
        for i, (layer, k) in enumerate(zip(self.layers, split(key, len(self.layers)))):
            p, shape = _at(i, layer, lambda: layer.init(k, shape))
            params.append(p)
        return tuple(params), shape

    def init_state(self, in_shape: Shape) -> tuple[Any, ...]:
        """Each layer's initial state, the shapes passed along by ``out_shape`` (no weights drawn)."""
        states = []
        shape = tuple(in_shape)
        for i, layer in enumerate(self.layers):
            states.append(_at(i, layer, lambda: layer.init_state(shape)))
            shape = _at(i, layer, lambda: layer.out_shape(shape))
        return tuple(states)

    def _check(self, what: str, value: Any) -> None:
        if not isinstance(value, tuple) or len(value) != len(self.layers):
            got = f"{len(value)} entries" if isinstance(value, tuple) else type(value).__name__
            raise ValueError(f"Serial: expected {what} as a tuple of {len(self.layers)} entries, got {got}")

    def forward(
        self, params: tuple[Any, ...], state: tuple[Any, ...] | None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, tuple[Any, ...], SerialCache]:
        """Run the layers in order; returns ``(y, new_states, cache)``."""
        self._check("params", params)
        states = (None,) * len(self.layers) if state is None else state
        self._check("state", states)
        new_states, caches = [], []
        for i, layer in enumerate(self.layers):
            try:
                x, st, c = layer.forward(params[i], states[i], x, ctx.child(i))
            except ValueError as e:
                raise ValueError(f"{_where(i, layer)}: {e}") from e
            new_states.append(st)
            caches.append(c)
        return x, tuple(new_states), SerialCache(tuple(caches))

    def backward(
        self, params: tuple[Any, ...], cache: SerialCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, tuple[Any, ...]]:
        """Run the layers' backward in reverse; the first layer's ``dx`` only if ``input_grad``."""
        self._check("params", params)
        grads: list[Any] = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            try:
                dout, grads[i] = layer.backward(params[i], cache.caches[i], dout, input_grad or i > 0)
            except ValueError as e:
                raise ValueError(f"{_where(i, layer)}: {e}") from e
        return dout, tuple(grads)


def serial(*layers: Layer) -> Serial:
    """Compose ``layers`` into one layer: ``y = layers[-1](... layers[0](x))``.

    >>> import fnnet
    >>> fnnet.serial(fnnet.Flatten(), fnnet.Affine(10)).out_shape((1, 28, 28))
    (10,)
    """
    return Serial(layers)


class ResidualCache(NamedTuple):
    inner: Any


@attrs.frozen
class Residual(Layer):
    """``y = f(x) + x`` for a layer ``f`` that keeps the shape; params and state are ``f``'s.

    >>> import fnnet
    >>> fnnet.residual(fnnet.serial(fnnet.Affine(8), fnnet.ReLU())).out_shape((8,))
    (8,)
    """

    inner: Layer

    def out_shape(self, in_shape: Shape) -> Shape:
        """``in_shape``; raises if the inner layer changes it."""
        out = self.inner.out_shape(in_shape)
        if tuple(out) != tuple(in_shape):
            raise ValueError(f"Residual: inner layer maps {tuple(in_shape)} to {tuple(out)}; shapes must match")
        return tuple(out)

    def init(self, key: Key, in_shape: Shape) -> tuple[Any, Shape]:
        """The inner layer's params."""
        self.out_shape(in_shape)
        return self.inner.init(key, in_shape)

    def init_state(self, in_shape: Shape) -> Any:
        """The inner layer's initial state."""
        return self.inner.init_state(in_shape)

    def forward(self, params: Any, state: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any, ResidualCache]:
        """``inner(x) + x``; the inner layer's new state."""
        y, st, c = self.inner.forward(params, state, x, ctx)
        return y + x, st, ResidualCache(c)

    def backward(self, params: Any, cache: ResidualCache, dout: Array, input_grad: bool = True) -> tuple[Array, Any]:
        """``dx = dinner + dout`` (the skip passes ``dout`` through)."""
        dx, g = self.inner.backward(params, cache.inner, dout, input_grad)
        return (dx + dout if input_grad else dx), g


def residual(inner: Layer) -> Residual:
    """A skip connection around ``inner``: ``y = inner(x) + x``."""
    return Residual(inner)


T = TypeVar("T")


def _at(i: int, layer: Layer, fn: Callable[[], T]) -> T:
    """``fn()``, a ``ValueError`` re-raised prefixed with the layer's place."""
    try:
        return fn()
    except ValueError as e:
        raise ValueError(f"{_where(i, layer)}: {e}") from e


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

    >>> import fnnet
    >>> s = fnnet.summary(fnnet.serial(fnnet.Affine(50), fnnet.ReLU(), fnnet.Affine(10)), (784,))
    >>> s.total_params, s.out_shape
    (39760, (10,))
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
        rows.append(SummaryRow(i, kind(layer), tuple(int(s) for s in shape), tree_size(p)))
    return Summary(tuple(in_shape), tuple(rows))

