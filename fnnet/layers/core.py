"""Affine and activation layers (the book's chapter 5), each backward rule beside its forward."""

from __future__ import annotations

import abc
import math
from typing import Any, NamedTuple

import attrs
import numpy as np

from fnnet import functions as F
from fnnet.typing import Array, Shape
from fnnet.initializers import Initializer, XavierNormal, Zeros
from fnnet._validate import as_int, positive_int
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, check_dtype, no_input_grad, param_arrays
from fnnet.random import Key, split

__all__ = [
    "AffineParams",
    "Affine",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "Identity",
    "Softmax",
    "Flatten",
]


class AffineParams(NamedTuple):
    """Parameters of :class:`Affine`: ``w`` of shape ``(in, out)``, ``b`` of shape ``(out,)``.

    >>> import fnnet
    >>> params, _ = fnnet.Affine(3).init(fnnet.key(0), (4,))
    >>> params.w.shape, params.b.shape, params.b.tolist()
    ((4, 3), (3,), [0.0, 0.0, 0.0])
    """

    w: Array
    b: Array


class AffineCache(NamedTuple):
    x2: Array  # the input flattened to (N, in)
    x_shape: tuple[int, ...]


@attrs.frozen
class Affine(Layer):
    """Fully connected layer ``y = x @ w + b``.

    Inputs of shape ``(N, d1, d2, ...)`` are flattened to ``(N, d1*d2*...)`` first, as in the book,
    so an Affine can follow a convolution directly; ``(N,)`` is one feature per sample (``in_shape``
    ``()``). Output shape ``(N, out)``.

    Attributes:
        out: the number of output units, a positive int.
        w_init, b_init: initialisers of ``w`` (Xavier normal by default) and ``b`` (zeros).

    >>> import numpy as np, fnnet
    >>> layer = fnnet.Affine(3)
    >>> params, out = layer.init(fnnet.key(0), (2, 2, 2))
    >>> params.w.shape, out
    ((8, 3), (3,))
    >>> x = np.ones((5, 2, 2, 2), np.float32)
    >>> y, _, cache = layer.forward(params, None, x)
    >>> dx, grads = layer.backward(params, cache, np.ones_like(y))
    >>> y.shape, dx.shape, grads.b.tolist()
    ((5, 3), (5, 2, 2, 2), [5.0, 5.0, 5.0])
    """

    out: int = attrs.field(converter=as_int, validator=positive_int)
    w_init: Initializer = attrs.field(factory=XavierNormal)
    b_init: Initializer = attrs.field(factory=Zeros)

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(out,)`` for any input shape."""
        return (self.out,)

    def init(self, key: Key, in_shape: Shape) -> tuple[AffineParams, Shape]:
        """``w`` ``(prod(in_shape), out)`` from ``w_init``, ``b`` ``(out,)`` from ``b_init``."""
        n_in = math.prod(in_shape)
        kw, kb = split(key)
        w = self.w_init(kw, (n_in, self.out), n_in, self.out)
        b = self.b_init(kb, (self.out,), n_in, self.out)
        return AffineParams(w, b), (self.out,)

    def forward(self, params: AffineParams, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, AffineCache]:
        """``y = x.reshape(N, -1) @ w + b``, shape ``(N, out)``."""
        w, b = param_arrays(self, params, "w", "b")
        if w.ndim != 2 or w.shape[1] != self.out or b.shape != (self.out,):
            raise ValueError(
                f"Affine: expected params w of shape (in, {self.out}) and b of shape ({self.out},), "
                f"got w {w.shape} and b {b.shape}"
            )
        if x.ndim < 1 or math.prod(x.shape[1:]) != w.shape[0]:  # (N,) is in_shape (): one feature
            raise ValueError(
                f"Affine: expected input (N, {w.shape[0]}) or (N, ...) with {w.shape[0]} features "
                f"per sample, got shape {x.shape}"
            )
        if x.dtype != w.dtype:
            check_dtype(self, x, w.dtype)
        x2 = x.reshape(x.shape[0], w.shape[0])  # not -1: a batch of 0 has no size to infer it from
        return x2 @ w + b, state, AffineCache(x2, x.shape)

    def backward(
        self, params: AffineParams, cache: AffineCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, AffineParams]:
        """``dw = x2.T @ dout``, ``db = sum(dout)``, ``dx = dout @ w.T`` in ``x``'s shape."""
        x2 = cache.x2
        if dout.shape != (x2.shape[0], params.w.shape[1]):
            check_dout(self, dout, (x2.shape[0], params.w.shape[1]))
        grads = AffineParams(x2.T @ dout, dout.sum(axis=0))
        if not input_grad:
            return no_input_grad(cache.x_shape, dout.dtype), grads
        dx = (dout @ params.w.T).reshape(cache.x_shape)
        return dx, grads


class _Elementwise(Layer):
    """Shared plumbing for parameter-free elementwise layers: no params, shape kept.

    A subclass writes ``forward`` and ``_dx(cache, dout)``, the input gradient; ``backward`` here
    checks ``dout`` against the cached array (the cache itself, or the first field of a cache
    record) and skips ``_dx`` when the input gradient is not wanted.
    """

    __slots__ = ()

    def backward(self, params: None, cache: Any, dout: Array, input_grad: bool = True) -> tuple[Array, None]:
        """``(dx, None)`` with ``dx = _dx(cache, dout)`` of ``dout``'s shape."""
        shape = (cache if isinstance(cache, np.ndarray) else cache[0]).shape
        if dout.shape != shape:
            check_dout(self, dout, shape)
        if not input_grad:
            return no_input_grad(shape, dout.dtype), None
        return self._dx(cache, dout), None

    @abc.abstractmethod
    def _dx(self, cache: Any, dout: Array) -> Array:
        """The input gradient, given the forward's cache and ``dout`` of the output's shape."""

    def out_shape(self, in_shape: Shape) -> Shape:
        """The input shape."""
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        """No parameters."""
        return None, tuple(in_shape)

    @staticmethod
    def _check(layer: Layer, x: Array) -> None:
        if x.dtype.kind != "f":
            raise ValueError(f"{type(layer).__name__}: expected a floating point input, got dtype {x.dtype}")


@attrs.frozen
class ReLU(_Elementwise):
    """``y = max(x, 0)``; any shape; ``dx = dout`` where ``x > 0``, else 0.

    >>> import numpy as np, fnnet
    >>> x = np.array([[-1.0, 0.0, 2.0]])
    >>> y, _, cache = fnnet.ReLU().forward(None, None, x)
    >>> y.tolist(), fnnet.ReLU().backward(None, cache, np.ones_like(x))[0].tolist()
    ([[0.0, 0.0, 2.0]], [[0.0, 0.0, 1.0]])
    """

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, Array]:
        self._check(self, x)
        y = np.maximum(x, 0)
        return y, state, y  # y > 0 exactly where x > 0, so y doubles as the mask source

    def _dx(self, cache: Array, dout: Array) -> Array:
        # a 0/1 mask written as floats in dout's memory order (cache may be channels-last), then
        # multiplied by dout in place: one array, and a product of two float arrays (a boolean
        # operand would be cast to float inside the multiplication loop)
        dx = np.greater(cache, 0, out=np.empty_like(dout))
        dx *= dout
        return dx


@attrs.frozen
class Sigmoid(_Elementwise):
    """``y = 1 / (1 + exp(-x))``; any shape; ``dx = dout * y * (1 - y)``.

    >>> import numpy as np, fnnet
    >>> x = np.array([[0.0, 2.0]])
    >>> y, _, cache = fnnet.Sigmoid().forward(None, None, x)
    >>> y.round(4).tolist(), fnnet.Sigmoid().backward(None, cache, np.ones_like(x))[0].round(4).tolist()
    ([[0.5, 0.8808]], [[0.25, 0.105]])
    """

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, Array]:
        self._check(self, x)
        y = F.sigmoid(x)
        return y, state, y

    def _dx(self, cache: Array, dout: Array) -> Array:
        dx: Array = dout * cache * (1 - cache)
        return dx


@attrs.frozen
class Tanh(_Elementwise):
    """``y = tanh(x)``; any shape; ``dx = dout * (1 - y²)``.

    >>> import numpy as np, fnnet
    >>> x = np.array([[0.0, 1.0]])
    >>> y, _, cache = fnnet.Tanh().forward(None, None, x)
    >>> y.round(4).tolist(), fnnet.Tanh().backward(None, cache, np.ones_like(x))[0].round(4).tolist()
    ([[0.0, 0.7616]], [[1.0, 0.42]])
    """

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, Array]:
        self._check(self, x)
        y = np.tanh(x)
        return y, state, y

    def _dx(self, cache: Array, dout: Array) -> Array:
        dx: Array = dout * (1 - cache * cache)
        return dx


@attrs.frozen
class Identity(_Elementwise):
    """``y = x`` (the output layer of a regression net); any shape; ``dx = dout``.

    Like every layer it takes floating point input: an integer or bool array is refused.

    >>> import numpy as np, fnnet
    >>> x = np.array([[-1.5, 2.0]])
    >>> fnnet.Identity().apply(None, x) is x, fnnet.Identity().out_shape((2,))
    (True, (2,))
    """

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, Array]:
        self._check(self, x)
        return x, state, x  # the cache is x itself (y is x): only its shape is read

    def _dx(self, cache: Array, dout: Array) -> Array:
        return dout


@attrs.frozen
class Softmax(_Elementwise):
    """Softmax over the last axis (for inference; train with a fused softmax cross-entropy loss).

    Backward is the Jacobian-vector product ``dx = y * (dout - sum(dout * y, axis=-1))``. Any
    shape ``(N, ..., K)``; each row of the output sums to 1.

    >>> import numpy as np, fnnet
    >>> x = np.log(np.array([[1.0, 1.0, 2.0], [1.0, 1.0, 1.0]]))
    >>> fnnet.Softmax().apply(None, x).round(4).tolist()
    [[0.25, 0.25, 0.5], [0.3333, 0.3333, 0.3333]]
    """

    def out_shape(self, in_shape: Shape) -> Shape:
        """The input shape, which must have the class axis: ``(..., K)``, not ``()``."""
        if len(in_shape) == 0:
            raise ValueError("Softmax: expected in_shape (..., K) with a class axis, got (); the batch axis is not one")
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        """No parameters."""
        return None, self.out_shape(in_shape)

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, Array]:
        self._check(self, x)
        if x.ndim < 2:  # softmax over the last axis of (N,) would mix the samples of the batch
            raise ValueError(f"Softmax: expected input (N, ..., K) of rank >= 2, got shape {x.shape}")
        y = F.softmax(x)
        return y, state, y

    def _dx(self, cache: Array, dout: Array) -> Array:
        y = cache
        dx: Array = y * (dout - (dout * y).sum(axis=-1, keepdims=True))
        return dx


@attrs.frozen
class Flatten(Layer):
    """Reshape ``(N, d1, d2, ...)`` to ``(N, d1*d2*...)``; backward reshapes ``dout`` back.

    Like every layer it takes floating point input: an integer or bool array is refused.

    >>> import numpy as np, fnnet
    >>> fnnet.Flatten().out_shape((3, 4, 4))
    (48,)
    >>> y, _, cache = fnnet.Flatten().forward(None, None, np.zeros((2, 3, 4, 4), np.float32))
    >>> y.shape, fnnet.Flatten().backward(None, cache, y)[0].shape
    ((2, 48), (2, 3, 4, 4))
    """

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(prod(in_shape),)``."""
        return (math.prod(in_shape),)

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        """No parameters."""
        return None, self.out_shape(in_shape)

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, tuple[int, ...]]:
        if x.ndim < 1:
            raise ValueError(f"Flatten: expected input of rank >= 1 (N, ...), got shape {x.shape}")
        _Elementwise._check(self, x)
        return x.reshape(x.shape[0], math.prod(x.shape[1:])), state, x.shape  # not -1: N may be 0

    def backward(self, params: None, cache: tuple[int, ...], dout: Array, input_grad: bool = True) -> tuple[Array, None]:
        expected = (cache[0], math.prod(cache[1:]))
        if dout.shape != expected:
            check_dout(self, dout, expected)
        if not input_grad:
            return no_input_grad(cache, dout.dtype), None
        return dout.reshape(cache), None
