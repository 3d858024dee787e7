"""Combinators: layers made of layers, themselves layers that nest.

- ``serial(*layers)``: one after another.
- ``concat(*branches, axis=0)``: the same input to every branch, outputs concatenated.
- ``add_branches(*branches)``: the same input to every branch, outputs summed.
- ``residual(inner, shortcut=None)``: ``inner(x) + shortcut(x)`` (``x`` itself by default).

The params and state of a combinator are tuples with one entry per sub-layer (``None`` for the
identity shortcut); sub-layer ``i`` draws its random numbers from ``ctx.child(i)``. An error
raised anywhere inside is re-raised as a :class:`PathError` naming the path to the layer that
raised, ``layer 3 / shortcut / layer 0 (Conv2D): Conv2D: ...``. ``summary`` reports shapes and
parameter counts of the whole tree from ``init`` alone.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

import attrs
import numpy as np

from fnnet._validate import as_int, is_int
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, kind
from fnnet.random import Key, key as make_key, split
from fnnet.tree import tree_size
from fnnet.typing import Array, Shape

__all__ = [
    "Serial",
    "serial",
    "Concat",
    "concat",
    "AddBranches",
    "add_branches",
    "Residual",
    "residual",
    "PathError",
    "summary",
    "Summary",
    "SummaryRow",
]

T = TypeVar("T")


# --- errors that name the path through the tree ---------------------------------------------------


class PathError(ValueError):
    """A ``ValueError`` raised inside a combinator, with the path to the layer that raised it.

    ``str(e)`` is ``"<step> / <step> / ... (<Kind>): <reason>"``: the steps from the outermost
    combinator down (``layer i`` in a serial pipeline, ``branch i`` of a fan-out, ``inner`` or
    ``shortcut`` of a residual block), the kind of the layer that raised, and its own message.

    Attributes:
        path: the steps, outermost first.
        kind: the kind (class name) of the layer that raised.
        reason: that layer's message.

    >>> import numpy as np, fnnet
    >>> model = fnnet.serial(fnnet.Affine(4), fnnet.residual(fnnet.serial(fnnet.ReLU(), fnnet.Affine(3))))
    >>> try:
    ...     model.out_shape((2,))
    ... except ValueError as e:
    ...     print(e)
    layer 1 (Residual): Residual: inner layer maps (4,) to (3,); with the identity shortcut they must match
    """

    def __init__(self, path: tuple[str, ...], kind: str, reason: str):
        self.path = path
        self.kind = kind
        self.reason = reason
        super().__init__(f"{' / '.join(path)} ({kind}): {reason}")

    def __reduce__(self) -> tuple[type[PathError], tuple[tuple[str, ...], str, str]]:
        # rebuilt from its three parts, so copy.copy and a process pool's result queue can copy it
        return (type(self), (self.path, self.kind, self.reason))


def _at(step: str, layer: Layer, fn: Callable[[], T]) -> T:
    """``fn()``, a ``ValueError`` re-raised as a :class:`PathError` one ``step`` longer."""
    try:
        return fn()
    except PathError as e:
        raise PathError((step, *e.path), e.kind, e.reason) from (e.__cause__ or e)
    except ValueError as e:
        raise PathError((step,), kind(layer), str(e)) from e


def _shape(s: Shape) -> str:
    return str(tuple(int(d) for d in s))


def _check_array(layer: Layer, x: Any) -> None:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{kind(layer)}.apply: expected x as a NumPy array, got {type(x).__name__}")


def _check_tuple(layer: Layer, what: str, value: Any, n: int) -> None:
    if not isinstance(value, tuple) or len(value) != n:
        got = f"{len(value)} entries" if isinstance(value, tuple) else type(value).__name__
        raise ValueError(f"{kind(layer)}: expected {what} as a tuple of {n} entries, got {got}")


def _check_cache(layer: Layer, cache: Any, cache_type: type[SerialCache] | type[FanOutCache], n: int) -> None:
    """A cache from another model's (or no) forward fails here in one line, not deep in a layer."""
    if isinstance(cache, cache_type) and len(cache.caches) == n and _same_layer(cache.owner, layer):
        return
    if not isinstance(cache, cache_type):
        got = type(cache).__name__
    elif len(cache.caches) != n:
        got = f"one of {len(cache.caches)} entries"
    else:
        got = f"the cache of another {kind(cache.owner)}'s forward ({_parts_text(cache.owner)})"
    raise ValueError(
        f"{kind(layer)}.backward: expected the cache of this layer's forward ({cache_type.__name__} of {n} "
        f"entries, {_parts_text(layer)}), got {got}"
    )


def _same_layer(a: Layer, b: Layer) -> bool:
    """``a`` is ``b``, or an equal record (a model rebuilt alike). Records that ``==`` cannot compare
    (a layer of one's own holding arrays) get the benefit of the doubt."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except ValueError:
        return True


def _parts_text(layer: Any) -> str:
    if isinstance(layer, Serial):
        return "layers " + ", ".join(kind(sub) for sub in layer.layers)
    parts: tuple[Layer | None, ...] = layer._parts
    return "parts " + ", ".join("identity" if sub is None else kind(sub) for sub in parts)


# --- serial ----------------------------------------------------------------------------------------


class SerialCache(NamedTuple):
    """The layers' caches, and the pipeline whose forward made them (``backward`` checks it)."""

    caches: tuple[Any, ...]
    owner: Serial


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
    pipeline without stateful layers). Errors raised by a layer are re-raised as a
    :class:`PathError` prefixed with ``layer i (Kind)``, or ``layer i / ... (Kind)`` deeper in a
    tree; layer ``i`` draws its random numbers from ``fold_in(key, i)``.

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
            shape = _at(f"layer {i}", layer, lambda: layer.out_shape(shape))
        return shape

    def init(self, key: Key, in_shape: Shape) -> tuple[tuple[Any, ...], Shape]:
        """Each layer's params from ``split(key, len(layers))[i]``; returns ``(params, out_shape)``."""
        params = []
        shape = tuple(in_shape)
        for i, (layer, k) in enumerate(zip(self.layers, split(key, len(self.layers)))):
            p, shape = _at(f"layer {i}", layer, lambda: layer.init(k, shape))
            params.append(p)
        return tuple(params), shape

    def init_state(self, in_shape: Shape) -> tuple[Any, ...]:
        """Each layer's initial state, the shapes passed along by ``out_shape`` (no weights drawn)."""
        states = []
        shape = tuple(in_shape)
        for i, layer in enumerate(self.layers):
            states.append(_at(f"layer {i}", layer, lambda: layer.init_state(shape)))
            shape = _at(f"layer {i}", layer, lambda: layer.out_shape(shape))
        return tuple(states)

    def forward(
        self, params: tuple[Any, ...], state: tuple[Any, ...] | None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, tuple[Any, ...], SerialCache]:
        """Run the layers in order; returns ``(y, new_states, cache)``."""
        n = len(self.layers)
        _check_tuple(self, "params", params, n)
        states = (None,) * n if state is None else state
        _check_tuple(self, "state", states, n)
        new_states, caches = [], []
        for i, layer in enumerate(self.layers):
            x, st, c = _at(f"layer {i}", layer, lambda: layer.forward(params[i], states[i], x, ctx.child(i)))
            new_states.append(st)
            caches.append(c)
        return x, tuple(new_states), SerialCache(tuple(caches), self)

    def apply(self, params: tuple[Any, ...], x: Array, *, state: tuple[Any, ...] | None = None, ctx: Ctx = EVAL) -> Array:
        """The output alone, ``forward(params, state, x, ctx)[0]`` bit for bit, each layer run by its
        own ``apply``: no layer's cache outlives the layer, so memory peaks at one layer's, not at
        the sum over the pipeline."""
        _check_array(self, x)
        n = len(self.layers)
        _check_tuple(self, "params", params, n)
        states = (None,) * n if state is None else state
        _check_tuple(self, "state", states, n)
        for i, layer in enumerate(self.layers):
            x = _at(f"layer {i}", layer, lambda: layer.apply(params[i], x, state=states[i], ctx=ctx.child(i)))
        return x

    def backward(
        self, params: tuple[Any, ...], cache: SerialCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, tuple[Any, ...]]:
        """Run the layers' backward in reverse; the first layer's ``dx`` only if ``input_grad``."""
        _check_tuple(self, "params", params, len(self.layers))
        _check_cache(self, cache, SerialCache, len(self.layers))
        grads: list[Any] = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            dout, grads[i] = _at(
                f"layer {i}", layer, lambda: layer.backward(params[i], cache.caches[i], dout, input_grad or i > 0)
            )
        return dout, tuple(grads)


def serial(*layers: Layer) -> Serial:
    """Compose ``layers`` into one layer: ``y = layers[-1](... layers[0](x))``.

    >>> import fnnet
    >>> fnnet.serial(fnnet.Flatten(), fnnet.Affine(10)).out_shape((1, 28, 28))
    (10,)
    """
    return Serial(layers)


# --- fan-out: one input to several branches -------------------------------------------------------


class FanOutCache(NamedTuple):
    """The branches' caches, the output shape (batch axis included), the branch sizes along the
    concatenation axis (``()`` for a sum) and the layer whose forward made them."""

    caches: tuple[Any, ...]
    y_shape: tuple[int, ...]
    sizes: tuple[int, ...]
    owner: _FanOut


class _FanOut(Layer):
    """Shared plumbing of the layers that feed one input to several parts and join their outputs.

    A subclass names its parts (``None`` is the identity), the step of part ``i`` in error paths,
    how output shapes join (raising on a mismatch) and how outputs join and ``dout`` splits.
    Part ``i`` gets ``params[i]``, ``state[i]``, ``split(key, n)[i]`` at init and ``ctx.child(i)``.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def _parts(self) -> tuple[Layer | None, ...]: ...

    @abc.abstractmethod
    def _step(self, i: int) -> str: ...

    @abc.abstractmethod
    def _join_shapes(self, in_shape: Shape, shapes: Sequence[Shape]) -> Shape:
        """The output shape given each part's; ``ValueError`` if they cannot be joined."""

    def _join(self, ys: Sequence[Array]) -> tuple[Array, tuple[int, ...]]:
        """The output from the parts' outputs (their shapes already checked), and the split sizes."""
        y = ys[0] + ys[1]
        for more in ys[2:]:
            y += more  # y is a fresh array of our own
        return y, ()

    def _split(self, dout: Array, sizes: tuple[int, ...]) -> Sequence[Array]:
        """Each part's share of ``dout``: all of it, for a sum."""
        return (dout,) * len(self._parts)

    def out_shape(self, in_shape: Shape) -> Shape:
        """The joined output shape; raises if the parts' shapes do not fit together."""
        shape = tuple(in_shape)
        outs = [
            shape if part is None else _at(self._step(i), part, lambda: part.out_shape(shape))
            for i, part in enumerate(self._parts)
        ]
        return self._join_shapes(shape, outs)

    def init(self, key: Key, in_shape: Shape) -> tuple[tuple[Any, ...], Shape]:
        """Part ``i``'s params from ``split(key, n)[i]`` (``None`` for the identity)."""
        shape = tuple(in_shape)
        params, outs = [], []
        for i, (part, k) in enumerate(zip(self._parts, split(key, len(self._parts)))):
            if part is None:
                p, out = None, shape
            else:
                p, out = _at(self._step(i), part, lambda: part.init(k, shape))
            params.append(p)
            outs.append(out)
        return tuple(params), self._join_shapes(shape, outs)

    def init_state(self, in_shape: Shape) -> tuple[Any, ...]:
        """Each part's initial state (no weights drawn)."""
        shape = tuple(in_shape)
        return tuple(
            None if part is None else _at(self._step(i), part, lambda: part.init_state(shape))
            for i, part in enumerate(self._parts)
        )

    def forward(
        self, params: tuple[Any, ...], state: tuple[Any, ...] | None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, tuple[Any, ...], FanOutCache]:
        """Every part on ``x``, outputs joined; returns ``(y, new_states, cache)``."""
        n = len(self._parts)
        _check_tuple(self, "params", params, n)
        states = (None,) * n if state is None else state
        _check_tuple(self, "state", states, n)
        ys, new_states, caches = [], [], []
        for i, part in enumerate(self._parts):
            if part is None:
                y, st, c = x, None, None
            else:
                y, st, c = _at(self._step(i), part, lambda: part.forward(params[i], states[i], x, ctx.child(i)))
            ys.append(y)
            new_states.append(st)
            caches.append(c)
        self._join_shapes(x.shape[1:], [y.shape[1:] for y in ys])
        if len(ys) == 1:
            return ys[0], tuple(new_states), FanOutCache(tuple(caches), ys[0].shape, (), self)
        y, sizes = self._join(ys)
        return y, tuple(new_states), FanOutCache(tuple(caches), y.shape, sizes, self)

    def apply(self, params: tuple[Any, ...], x: Array, *, state: tuple[Any, ...] | None = None, ctx: Ctx = EVAL) -> Array:
        """The output alone, ``forward(params, state, x, ctx)[0]`` bit for bit, each part run by its
        own ``apply`` (its caches dropped)."""
        _check_array(self, x)
        n = len(self._parts)
        _check_tuple(self, "params", params, n)
        states = (None,) * n if state is None else state
        _check_tuple(self, "state", states, n)
        ys = [
            x if part is None else _at(self._step(i), part, lambda: part.apply(params[i], x, state=states[i], ctx=ctx.child(i)))
            for i, part in enumerate(self._parts)
        ]
        self._join_shapes(x.shape[1:], [y.shape[1:] for y in ys])
        return ys[0] if len(ys) == 1 else self._join(ys)[0]

    def backward(
        self, params: tuple[Any, ...], cache: FanOutCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, tuple[Any, ...]]:
        """Each part's backward on its share of ``dout``; ``dx`` is the sum of the parts' ``dx``."""
        _check_tuple(self, "params", params, len(self._parts))
        _check_cache(self, cache, FanOutCache, len(self._parts))
        check_dout(self, dout, cache.y_shape)
        douts = (dout,) if len(self._parts) == 1 else self._split(dout, cache.sizes)
        grads: list[Any] = []
        dx: Array | None = None
        own = False  # whether dx is an array of our own, safe to add into
        for i, part in enumerate(self._parts):
            if part is None:
                grads.append(None)
                dx_i = douts[i]
            else:
                dx_i, g = _at(
                    self._step(i), part, lambda: part.backward(params[i], cache.caches[i], douts[i], input_grad)
                )
                grads.append(g)
            if dx is None:
                dx = dx_i
            elif input_grad and own:
                dx += dx_i
            elif input_grad:
                dx, own = dx + dx_i, True
        assert dx is not None  # the first part is always a layer
        return dx, tuple(grads)


def _check_branches(inst: object, attribute: "attrs.Attribute[Any]", value: tuple[Any, ...]) -> None:
    name = type(inst).__name__
    if not value:
        raise ValueError(f"{name}: needs at least one branch")
    for i, layer in enumerate(value):
        if not isinstance(layer, Layer):
            raise ValueError(f"{name}: branch {i} is not a Layer: {layer!r}")


def _check_axis(inst: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not is_int(value):
        raise ValueError(f"Concat: axis must be an int, got {value!r}")


@attrs.frozen
class Concat(_FanOut):
    """Every branch on the same input, outputs concatenated along ``axis``: a fan-out layer.

    ``axis`` counts the axes of one sample (the batch axis excluded): ``0``, the default, is the
    channel axis of ``(C, H, W)`` images or the feature axis of ``(D,)`` vectors; negative values
    count from the end. The branches' outputs must agree on every other axis. ``params`` and
    ``state`` are tuples with one entry per branch; branch ``i`` draws from ``ctx.child(i)``.
    Backward splits ``dout`` along ``axis`` and sums the branches' input gradients.

    Attributes:
        branches: the layers, each applied to the whole input.
        axis: the concatenation axis of a sample.

    >>> import numpy as np, fnnet
    >>> inception = fnnet.concat(fnnet.Conv2D(4, 1), fnnet.Conv2D(2, 3, pad=1), fnnet.MaxPool2D(3, 1, 1))
    >>> inception.out_shape((3, 8, 8))
    (9, 8, 8)
    >>> params, _ = inception.init(fnnet.key(0), (3, 8, 8))
    >>> len(params), inception.apply(params, np.ones((2, 3, 8, 8), np.float32)).shape
    (3, (2, 9, 8, 8))
    """

    branches: tuple[Layer, ...] = attrs.field(converter=_as_tuple, validator=_check_branches)
    axis: int = attrs.field(default=0, converter=as_int, validator=_check_axis)

    @property
    def _parts(self) -> tuple[Layer | None, ...]:
        return self.branches

    def _step(self, i: int) -> str:
        return f"branch {i}"

    def _join_shapes(self, in_shape: Shape, shapes: Sequence[Shape]) -> Shape:
        first = tuple(shapes[0])
        rank = len(first)
        if not -rank <= self.axis < rank:
            raise ValueError(f"Concat: axis {self.axis} is out of range for branch outputs of rank {rank}")
        a = self.axis % rank
        for i, s in enumerate(shapes[1:], 1):
            s = tuple(s)
            if len(s) != rank or s[:a] + s[a + 1 :] != first[:a] + first[a + 1 :]:
                raise ValueError(
                    f"Concat: branch {i} gives {_shape(s)} but branch 0 gives {_shape(first)}; "
                    f"they must agree on every axis but axis {self.axis}"
                )
        return first[:a] + (sum(int(s[a]) for s in shapes),) + first[a + 1 :]

    def _join(self, ys: Sequence[Array]) -> tuple[Array, tuple[int, ...]]:
        a = self.axis % (ys[0].ndim - 1) + 1
        return np.concatenate(ys, axis=a), tuple(y.shape[a] for y in ys)

    def _split(self, dout: Array, sizes: tuple[int, ...]) -> Sequence[Array]:
        a = self.axis % (dout.ndim - 1) + 1
        return np.split(dout, np.cumsum(sizes[:-1]), axis=a)  # views, never written into


def concat(*branches: Layer, axis: int = 0) -> Concat:
    """Fan one input out to ``branches`` and concatenate their outputs along ``axis`` (batch axis
    excluded; 0 is the channel axis of ``(C, H, W)``). See :class:`Concat`.

    >>> import fnnet
    >>> fnnet.concat(fnnet.Affine(3), fnnet.Affine(5)).out_shape((4,))
    (8,)
    """
    return Concat(branches, axis)


@attrs.frozen
class AddBranches(_FanOut):
    """Every branch on the same input, outputs summed elementwise: ``y = b0(x) + b1(x) + ...``.

    The branches' output shapes must be equal (no broadcasting). ``params`` and ``state`` are
    tuples with one entry per branch; branch ``i`` draws from ``ctx.child(i)``. Every branch gets
    the whole ``dout``; the input gradient is the sum of the branches'. (Not to be confused with
    :class:`fnnet.graph.Add`, the book's two-input node of a computational graph.)

    Attributes:
        branches: the layers, each applied to the whole input.

    >>> import numpy as np, fnnet
    >>> both = fnnet.add_branches(fnnet.Affine(3), fnnet.serial(fnnet.Affine(5), fnnet.Tanh(), fnnet.Affine(3)))
    >>> params, out = both.init(fnnet.key(0), (4,))
    >>> out, both.apply(params, np.ones((2, 4), np.float32)).shape
    ((3,), (2, 3))
    """

    branches: tuple[Layer, ...] = attrs.field(converter=_as_tuple, validator=_check_branches)

    @property
    def _parts(self) -> tuple[Layer | None, ...]:
        return self.branches

    def _step(self, i: int) -> str:
        return f"branch {i}"

    def _join_shapes(self, in_shape: Shape, shapes: Sequence[Shape]) -> Shape:
        first = tuple(shapes[0])
        for i, s in enumerate(shapes[1:], 1):
            if tuple(s) != first:
                raise ValueError(
                    f"AddBranches: branch {i} gives {_shape(s)} but branch 0 gives {_shape(first)}; shapes must match"
                )
        return first


def add_branches(*branches: Layer) -> AddBranches:
    """Fan one input out to ``branches`` and sum their outputs. See :class:`AddBranches`.

    >>> import fnnet
    >>> fnnet.add_branches(fnnet.Conv2D(8, 3, pad=1), fnnet.Conv2D(8, 1)).out_shape((3, 5, 5))
    (8, 5, 5)
    """
    return AddBranches(branches)


def _check_inner(inst: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, Layer):
        raise ValueError(f"Residual: inner must be a Layer, got {value!r}")


def _check_shortcut(inst: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and not isinstance(value, Layer):
        raise ValueError(f"Residual: shortcut must be a Layer or None (the identity), got {value!r}")


@attrs.frozen
class Residual(_FanOut):
    """A residual block ``y = inner(x) + shortcut(x)``, the shortcut the identity by default.

    A projection shortcut (e.g. ``serial(Conv2D(c, 1, stride=2), BatchNorm())``) lets the inner
    layer change the shape; otherwise it must keep it. ``params`` and ``state`` are pairs
    ``(inner's, shortcut's)`` (``None`` for the identity); ``inner`` draws from ``ctx.child(0)``,
    the shortcut from ``ctx.child(1)``. Error paths name the steps ``inner`` and ``shortcut``.

    Attributes:
        inner: the residual branch ``f``.
        shortcut: the skip branch, or ``None`` for the identity.

    >>> import fnnet
    >>> fnnet.residual(fnnet.serial(fnnet.Affine(8), fnnet.ReLU())).out_shape((8,))
    (8,)
    >>> down = fnnet.residual(fnnet.Conv2D(4, 3, stride=2, pad=1), shortcut=fnnet.Conv2D(4, 1, stride=2))
    >>> down.out_shape((2, 8, 8))
    (4, 4, 4)
    """

    inner: Layer = attrs.field(validator=_check_inner)
    shortcut: Layer | None = attrs.field(default=None, validator=_check_shortcut)

    @property
    def _parts(self) -> tuple[Layer | None, ...]:
        return (self.inner, self.shortcut)

    def _step(self, i: int) -> str:
        return "inner" if i == 0 else "shortcut"

    def _join_shapes(self, in_shape: Shape, shapes: Sequence[Shape]) -> Shape:
        inner, skip = tuple(shapes[0]), tuple(shapes[1])
        if inner != skip:
            if self.shortcut is None:
                raise ValueError(
                    f"Residual: inner layer maps {_shape(in_shape)} to {_shape(inner)}; "
                    "with the identity shortcut they must match"
                )
            raise ValueError(
                f"Residual: inner layer maps {_shape(in_shape)} to {_shape(inner)} but the shortcut to "
                f"{_shape(skip)}; shapes must match"
            )
        return inner


def residual(inner: Layer, shortcut: Layer | None = None) -> Residual:
    """A residual block: ``y = inner(x) + shortcut(x)``, ``y = inner(x) + x`` without a shortcut.

    See :class:`Residual`.

    >>> import fnnet
    >>> block = fnnet.residual(fnnet.Affine(3), shortcut=fnnet.Affine(3))
    >>> block.out_shape((5,))
    (3,)
    """
    return Residual(inner, shortcut)


# --- summary ----------------------------------------------------------------------------------------


@attrs.frozen
class SummaryRow:
    """One layer of a :class:`Summary`, with the rows of its sub-layers if it is a combinator.

    Attributes:
        index: its place in its parent (for a residual block's parts: 0 inner, 1 shortcut).
        kind: its kind (class name).
        out_shape: its output shape, without the batch axis.
        params: trainable scalars in it, its sub-layers included.
        path: the steps from the top, ``/``-joined: ``"3/inner/0"`` is layer 0 of the inner
            branch of layer 3 (``branch i`` steps are written ``i``).
        children: the rows of its sub-layers (empty for a plain layer).

    >>> import fnnet
    >>> block = fnnet.residual(fnnet.Affine(4), shortcut=fnnet.Identity())
    >>> s = fnnet.summary(fnnet.serial(fnnet.Affine(4), block), (3,))
    >>> [(depth, row.path, row.kind, row.params) for depth, row in s.walk()]
    [(0, '0', 'Affine', 16), (0, '1', 'Residual', 20),
     (1, '1/inner', 'Affine', 20), (1, '1/shortcut', 'Identity', 0)]
    >>> s.rows[1].children[0].out_shape
    (4,)
    """

    index: int
    kind: str
    out_shape: Shape
    params: int
    path: str = ""
    children: tuple[SummaryRow, ...] = ()

    def walk(self, depth: int = 0) -> Iterator[tuple[int, SummaryRow]]:
        """This row and every row below it, depth first, each with its depth (this one's ``depth``)."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


@attrs.frozen
class Summary:
    """Per-layer output shapes and parameter counts, as a tree; ``str()`` gives a table.

    ``rows`` are the top-level layers (those of a serial model, or the model itself); nested
    layers are their ``children``, all of them in :meth:`walk` order. Made by :func:`summary`.

    >>> import fnnet
    >>> s = fnnet.summary(fnnet.serial(fnnet.Conv2D(4, 3), fnnet.Flatten(), fnnet.Affine(2)), (1, 5, 5))
    >>> s.in_shape, s.out_shape, s.total_params
    ((1, 5, 5), (2,), 114)
    >>> print(s)
      #  layer         output shape             params
         input         ('N', 1, 5, 5)
      0  Conv2D        ('N', 4, 3, 3)               40
      1  Flatten       ('N', 36)                     0
      2  Affine        ('N', 2)                     74
    total params: 114
    """

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

    def walk(self) -> Iterator[tuple[int, SummaryRow]]:
        """Every row of the tree, depth first, with its depth (0 for the top-level rows)."""
        for r in self.rows:
            yield from r.walk()

    def __str__(self) -> str:
        labels = []
        for depth, r in self.walk():
            head = f"{r.index:>3}  " if depth == 0 else "     " + "  " * depth + f"{r.path}  "
            labels.append((head + r.kind, r))
        width = max([17] + [len(text) for text, _ in labels])
        shapes = [str(("N",) + r.out_shape) for _, r in labels]
        shape_width = max([20] + [len(s) for s in shapes])
        count_width = max([10] + [len(f"{r.params:,}") for _, r in labels])
        lines = [f"{'  #  layer':<{width}}  {'output shape':<{shape_width}} {'params':>{count_width}}"]
        lines.append(f"{'     input':<{width}}  {str(('N',) + self.in_shape)}")
        for (text, r), shape in zip(labels, shapes):
            lines.append(f"{text:<{width}}  {shape:<{shape_width}} {r.params:>{count_width},}")
        lines.append(f"total params: {self.total_params:,}")
        return "\n".join(lines)


def _row(layer: Layer, key: Key, in_shape: Shape, index: int, path: str) -> SummaryRow:
    """The summary row of ``layer`` for inputs ``in_shape``: weights drawn only for plain layers."""
    children: list[SummaryRow] = []
    if isinstance(layer, Serial):
        shape = tuple(in_shape)
        for i, (sub, k) in enumerate(zip(layer.layers, split(key, len(layer.layers)))):
            children.append(_at(f"layer {i}", sub, lambda: _row(sub, k, shape, i, f"{path}/{i}")))
            shape = children[-1].out_shape
        out = shape
    elif isinstance(layer, _FanOut):
        outs = []
        for i, (part, k) in enumerate(zip(layer._parts, split(key, len(layer._parts)))):
            if part is None:
                outs.append(tuple(in_shape))
                continue
            name = layer._step(i)
            step = name.removeprefix("branch ")
            children.append(_at(name, part, lambda: _row(part, k, in_shape, i, f"{path}/{step}")))
            outs.append(children[-1].out_shape)
        out = layer._join_shapes(in_shape, outs)
    else:
        p, out = layer.init(key, in_shape)
        return SummaryRow(index, kind(layer), tuple(int(s) for s in out), tree_size(p), path)
    return SummaryRow(index, kind(layer), tuple(out), sum(c.params for c in children), path, tuple(children))


def summary(model: Layer, in_shape: Shape) -> Summary:
    """Shapes and parameter counts of ``model`` for inputs ``(N, *in_shape)``, from ``init`` alone.

    Serial pipelines, fan-outs and residual blocks are shown as a tree (their rows' ``children``;
    indented, with their paths, in the table). Uses a fixed key; no data is needed.

    Raises:
        ValueError: ``in_shape`` is not a tuple of positive ints, or the model cannot take it (a
            :class:`PathError` naming the layer).

    >>> import fnnet
    >>> s = fnnet.summary(fnnet.serial(fnnet.Affine(50), fnnet.ReLU(), fnnet.Affine(10)), (784,))
    >>> s.total_params, s.out_shape
    (39760, (10,))
    >>> block = fnnet.serial(fnnet.Affine(4), fnnet.residual(fnnet.serial(fnnet.Affine(4), fnnet.ReLU())))
    >>> print(fnnet.summary(block, (3,)))
      #  layer                  output shape             params
         input                  ('N', 3)
      0  Affine                 ('N', 4)                     16
      1  Residual               ('N', 4)                     20
           1/inner  Serial      ('N', 4)                     20
             1/inner/0  Affine  ('N', 4)                     20
             1/inner/1  ReLU    ('N', 4)                      0
    total params: 36
    """
    if not isinstance(model, Layer):
        raise ValueError(f"summary: model must be a Layer, got {model!r}")
    if isinstance(in_shape, np.ndarray) and in_shape.ndim == 1:
        in_shape = tuple(in_shape.tolist())
    if not isinstance(in_shape, (tuple, list)) or not all(is_int(d) for d in in_shape):
        raise ValueError(f"summary: in_shape must be a tuple of ints (without the batch axis), got {in_shape!r}")
    in_shape = tuple(int(d) for d in in_shape)
    if any(d < 1 for d in in_shape):
        raise ValueError(f"summary: in_shape must be one sample's shape, sizes >= 1 without the batch axis, got {in_shape}")
    k = make_key(0)
    layers = model.layers if isinstance(model, Serial) else (model,)
    shape = in_shape
    rows = []
    for i, (layer, lk) in enumerate(zip(layers, split(k, len(layers)))):
        rows.append(_at(f"layer {i}", layer, lambda: _row(layer, lk, shape, i, str(i))))
        shape = rows[-1].out_shape
    return Summary(in_shape, tuple(rows))
