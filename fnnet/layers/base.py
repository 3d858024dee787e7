"""The layer contract: immutable records whose pure functions are the layer's maths.

A layer is a frozen attrs record of hyperparameters; its parameters are a separate immutable
record (a NamedTuple of arrays, or ``None``), and so is its non-trainable state (BatchNorm's
running statistics; ``None`` for most layers). Shapes exclude the batch dimension.

- ``out_shape(in_shape)``: the output shape, without drawing any weights.
- ``init(key, in_shape) -> (params, out_shape)``: fresh parameters.
- ``init_state(in_shape) -> state``: the initial state (``None`` unless the layer has some).
- ``forward(params, state, x, ctx) -> (y, new_state, cache)``: the state goes in and comes out.
- ``backward(params, cache, dout, input_grad=True) -> (dx, grads)``: ``grads`` has the type of
  ``params``; with ``input_grad=False`` (the first layer of a training step) ``dx`` is skipped.
- ``apply(params, x, *, state=None, ctx=EVAL) -> y``: the output alone.

The layer knows nothing of threads. A layer whose training output couples the samples of a batch
(BatchNorm) sums its per-batch statistics through ``ctx.batch_sum``: the identity for one batch,
an ordered sum across shards when a training step splits the batch.

>>> import numpy as np, fnnet
>>> layer = fnnet.Affine(3)
>>> layer.out_shape((4,))
(3,)
>>> params, _ = layer.init(fnnet.key(0), (4,))
>>> y, state, cache = layer.forward(params, None, np.ones((2, 4), np.float32))
>>> dx, grads = layer.backward(params, cache, np.ones_like(y))
>>> dx.shape, grads.w.shape
((2, 4), (4, 3))
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from fnnet._validate import shape_text
from fnnet.random import Key, fold_in
from fnnet.typing import Array, Shape

__all__ = [
    "Ctx", "EVAL", "TRAIN", "Layer", "check_rank", "check_dout", "check_dtype", "param_arrays", "no_input_grad", "kind",
    "run_now",
]

R = TypeVar("R")


def _own_sum(a: Array) -> Array:
    """The unsharded batch sum: the batch's own partial sum is the whole sum."""
    return a


def run_now(fn: Callable[[], R]) -> Callable[[], R]:
    """The default ``Ctx.spawn``: runs ``fn`` at once; the returned join gives its result.

    >>> from fnnet.layers.base import run_now
    >>> join = run_now(lambda: 6 * 7)
    >>> join()
    42
    """
    result = fn()
    return lambda: result


class Ctx:
    """What a forward pass needs besides params, state and input (immutable).

    Attributes:
        train: training mode (batch statistics in BatchNorm, dropping in Dropout).
        key: the random key for layers that draw random numbers (Dropout), or ``None``.
        batch_sum: ``batch_sum(a) -> total``: given this batch's partial sum ``a`` of a per-sample
            quantity, the sum over the whole training batch. The identity unless a training step
            runs the batch as shards; then an ordered sum across them (the same bits on any
            thread count). Every shard must make the same calls in the same order.
        spawn: ``spawn(fn) -> join``: start the computation ``fn()`` (pure; it must not write to
            arrays that the caller goes on using) and return ``join``, which waits for it and
            returns its result (or raises its exception). :func:`run_now` (the default) runs it at
            once; a training step with a spare thread runs it there, beside the caller. Where it
            runs never changes the result. A layer keeps it in its cache to use it in ``backward``.

    >>> import fnnet
    >>> from fnnet.layers import Ctx
    >>> ctx = Ctx(train=True, key=fnnet.key(0))
    >>> ctx.child(2).key == fnnet.fold_in(fnnet.key(0), 2)
    True
    """

    __slots__ = ("train", "_key", "_tail", "batch_sum", "spawn")

    train: bool
    batch_sum: Callable[[Array], Array]
    spawn: Callable[[Callable[[], Any]], Callable[[], Any]]
    _key: Key | None
    _tail: tuple[int, ...]

    def __init__(
        self,
        train: bool = False,
        key: Key | None = None,
        *,
        batch_sum: Callable[[Array], Array] = _own_sum,
        spawn: Callable[[Callable[[], Any]], Callable[[], Any]] = run_now,
    ):
        if key is not None and not isinstance(key, Key):
            raise ValueError(f"Ctx: key must be a fnnet.Key or None, got {type(key).__name__}")
        if not callable(batch_sum):
            raise ValueError(f"Ctx: batch_sum must be callable (a partial sum to the batch's sum), got {type(batch_sum).__name__}")
        if not callable(spawn):
            raise ValueError(f"Ctx: spawn must be callable (fnnet.layers.base.run_now runs at once), got {type(spawn).__name__}")
        object.__setattr__(self, "train", bool(train))
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_tail", ())
        object.__setattr__(self, "batch_sum", batch_sum)
        object.__setattr__(self, "spawn", spawn)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Ctx is immutable")

    @property
    def key(self) -> Key | None:
        """This context's key: the root key folded with the child indices, derived when asked."""
        k = self._key
        if k is not None:
            for i in self._tail:
                k = fold_in(k, i)
        return k

    def child(self, i: int) -> Ctx:
        """The context of sub-layer ``i``: the same mode, ``batch_sum`` and ``spawn``, key ``fold_in(key, i)``.

        Cheap: the key is derived only if a layer reads it.
        """
        if self._key is None:
            return self
        new = object.__new__(Ctx)
        for name, value in (("train", self.train), ("_key", self._key), ("_tail", self._tail + (i,)),
                            ("batch_sum", self.batch_sum), ("spawn", self.spawn)):  # fmt: skip
            object.__setattr__(new, name, value)
        return new

    def __repr__(self) -> str:
        return f"Ctx(train={self.train}, key={self.key!r})"


EVAL = Ctx()
"""The evaluation context (the default everywhere): ``train=False``, no key.

>>> import numpy as np, fnnet
>>> fnnet.EVAL.train, fnnet.EVAL.key is None
(False, True)
>>> fnnet.Dropout(0.5).forward(None, None, np.ones((2, 3)), fnnet.EVAL)[0].tolist()
[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
"""
TRAIN = Ctx(train=True)
"""A training context with no key (enough for layers that draw no random numbers).

>>> import numpy as np, fnnet
>>> bn = fnnet.BatchNorm()
>>> params, _ = bn.init(fnnet.key(0), (2,))
>>> x = np.array([[0.0, 1.0], [2.0, 5.0]], np.float32)
>>> y, state, _ = bn.forward(params, None, x, fnnet.TRAIN)
>>> y.round(3).tolist(), int(state.count)
([[-1.0, -1.0], [1.0, 1.0]], 1)
"""


class Layer(abc.ABC):
    """Base class of every layer (and of pipelines, which are layers too).

    A subclass writes ``out_shape``, ``init``, ``forward`` and ``backward`` (and ``init_state`` if
    it carries state); ``apply`` comes for free. A parameter-free layer ``y = 2x``:

    >>> import attrs, numpy as np, fnnet
    >>> @attrs.frozen
    ... class Double(fnnet.Layer):
    ...     def out_shape(self, in_shape): return tuple(in_shape)
    ...     def init(self, key, in_shape): return None, tuple(in_shape)
    ...     def forward(self, params, state, x, ctx=fnnet.EVAL): return 2 * x, state, None
    ...     def backward(self, params, cache, dout, input_grad=True): return 2 * dout, None
    >>> model = fnnet.serial(Double(), fnnet.Affine(2))
    >>> params, out = model.init(fnnet.key(0), (3,))
    >>> out, model.apply(params, np.ones((4, 3), np.float32)).shape
    ((2,), (4, 2))
    >>> dx, grads = Double().backward(None, None, np.ones((1, 3)))
    >>> dx.tolist(), grads
    ([[2.0, 2.0, 2.0]], None)
    """

    __slots__ = ()

    @abc.abstractmethod
    def out_shape(self, in_shape: Shape) -> Shape:
        """The output shape for inputs ``(N, *in_shape)``, without drawing weights.

        Raises:
            ValueError: if the layer cannot take inputs of that shape.
        """

    @abc.abstractmethod
    def init(self, key: Key, in_shape: Shape) -> tuple[Any, Shape]:
        """Create parameters for inputs of shape ``(N, *in_shape)``.

        Returns:
            ``(params, out_shape)`` where outputs have shape ``(N, *out_shape)``.
        """

    def init_state(self, in_shape: Shape) -> Any:
        """The initial non-trainable state for inputs ``(N, *in_shape)`` (``None`` if stateless)."""
        return None

    @abc.abstractmethod
    def forward(self, params: Any, state: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any, Any]:
        """Compute ``y = f(params, state, x)``.

        Returns:
            ``(y, new_state, cache)``: the output, the state after this pass (``state`` itself for
            stateless layers and in evaluation) and what :meth:`backward` needs.
        """

    @abc.abstractmethod
    def backward(self, params: Any, cache: Any, dout: Array, input_grad: bool = True) -> tuple[Array, Any]:
        """Given ``dL/dy`` of ``y``'s shape, return ``(dL/dx, dL/dparams)``.

        With ``input_grad=False`` the input gradient is not computed and ``dx`` is a read-only
        zero array that takes no memory (see :func:`no_input_grad`).
        """

    def apply(self, params: Any, x: Array, *, state: Any = None, ctx: Ctx = EVAL) -> Array:
        """The output alone: ``forward(params, state, x, ctx)[0]`` (evaluation by default).

        ``x`` must be a NumPy array (a list is refused in one line: convert it with ``np.asarray``
        in the parameters' dtype)."""
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{kind(self)}.apply: expected x as a NumPy array, got {type(x).__name__}")
        return self.forward(params, state, x, ctx)[0]


def kind(layer: Layer) -> str:
    """The layer's kind, as error messages and summaries name it (its class name).

    >>> import fnnet
    >>> from fnnet.layers.base import kind
    >>> kind(fnnet.Conv2D(4, 3)), kind(fnnet.serial(fnnet.ReLU()))
    ('Conv2D', 'Serial')
    """
    return type(layer).__name__


def check_rank(layer: Layer, x: Array, rank: int, what: str = "input") -> None:
    """Raise ``ValueError`` naming ``layer`` unless ``x.ndim == rank``.

    >>> import numpy as np, fnnet
    >>> from fnnet.layers.base import check_rank
    >>> check_rank(fnnet.Conv2D(4, 3), np.zeros((2, 1, 5, 5)), 4)  # rank 4: passes silently
    >>> check_rank(fnnet.Conv2D(4, 3), np.zeros((2, 25)), 4, "input (N, C, H, W)")
    Traceback (most recent call last):
    ...
    ValueError: Conv2D: expected input (N, C, H, W) of rank 4, got shape (2, 25)
    """
    if x.ndim != rank:
        raise ValueError(f"{kind(layer)}: expected {what} of rank {rank}, got shape {shape_text(x.shape)}")


def check_dtype(layer: Layer, x: Array, dtype: np.dtype[Any]) -> None:
    """Raise ``ValueError`` naming ``layer`` unless ``x`` has the parameters' ``dtype``.

    >>> import numpy as np, fnnet
    >>> from fnnet.layers.base import check_dtype
    >>> check_dtype(fnnet.Affine(3), np.zeros((2, 4), np.float32), np.dtype(np.float32))  # passes
    >>> check_dtype(fnnet.Affine(3), np.zeros((2, 4)), np.dtype(np.float32))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Affine: expected input of dtype float32 (the parameters' dtype), got float64; cast ...
    """
    if x.dtype != dtype:
        raise ValueError(
            f"{kind(layer)}: expected input of dtype {dtype} (the parameters' dtype), got {x.dtype}; "
            f"cast the input with x.astype(np.{dtype}) or the params with fnnet.astype(params, ...)"
        )


def param_arrays(layer: Layer, params: Any, *names: str) -> tuple[Array, ...]:
    """``params``' arrays ``names`` (its fields, as ``init`` makes them), or ``ValueError`` naming ``layer``.

    Params of the wrong kind (``None``, another layer's record, a plain tuple) then fail with one
    line saying what was expected instead of an ``AttributeError`` deep inside ``forward``.

    >>> import numpy as np, fnnet
    >>> from fnnet.layers.base import param_arrays
    >>> params, _ = fnnet.Affine(3).init(fnnet.key(0), (4,))
    >>> [a.shape for a in param_arrays(fnnet.Affine(3), params, "w", "b")]
    [(4, 3), (3,)]
    >>> param_arrays(fnnet.Affine(3), None, "w", "b")
    Traceback (most recent call last):
    ...
    ValueError: Affine: expected params with arrays w, b (as Affine.init makes them), got NoneType
    """
    arrays: list[Array] = []
    for name in names:
        a = getattr(params, name, None)
        if not isinstance(a, np.ndarray):
            raise ValueError(
                f"{kind(layer)}: expected params with arrays {', '.join(names)} (as {kind(layer)}.init makes them), "
                f"got {type(params).__name__}"
            )
        arrays.append(a)
    return tuple(arrays)


def check_dout(layer: Layer, dout: Array, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` naming ``layer`` unless ``dout`` has the forward output's shape.

    >>> import numpy as np, fnnet
    >>> from fnnet.layers.base import check_dout
    >>> check_dout(fnnet.ReLU(), np.zeros((2, 3)), (2, 3))  # the right shape: passes silently
    >>> check_dout(fnnet.ReLU(), np.zeros((2, 3)), (2, 4))
    Traceback (most recent call last):
    ...
    ValueError: ReLU.backward: expected dout of shape (2, 4), got (2, 3)
    """
    if dout.shape != shape:
        raise ValueError(f"{kind(layer)}.backward: expected dout of shape {shape_text(shape)}, got {shape_text(dout.shape)}")


def no_input_grad(x_shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
    """A read-only zero array standing in for an input gradient nobody asked for.

    It has shape ``x_shape`` and dtype ``dtype`` but takes no memory (every stride is 0); layers
    return it from ``backward(..., input_grad=False)``.

    >>> import numpy as np, fnnet
    >>> from fnnet.layers.base import no_input_grad
    >>> dx = no_input_grad((2, 3), np.dtype(np.float32))
    >>> dx.shape, dx.strides, dx.flags.writeable, float(dx.sum())
    ((2, 3), (0, 0), False, 0.0)
    >>> layer = fnnet.Affine(2)
    >>> params, _ = layer.init(fnnet.key(0), (3,))
    >>> _, _, cache = layer.forward(params, None, np.ones((2, 3), np.float32))
    >>> dx, grads = layer.backward(params, cache, np.ones((2, 2), np.float32), input_grad=False)
    >>> dx.strides, grads.w.shape
    ((0, 0), (3, 2))
    """
    zero = np.zeros((), dtype=dtype)
    # a zero-strided view of one zero: no memory, and cheaper to build than np.broadcast_to
    out: Array = np.ndarray(x_shape, dtype=dtype, buffer=zero, strides=(0,) * len(x_shape))
    out.flags.writeable = False
    return out
