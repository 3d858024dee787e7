"""Affine and activation layers (the book's chapter 5), each backward rule beside its forward."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import attrs
import numpy as np

from fnnet import functions as F
from fnnet.typing import Array, Shape
from fnnet.initializers import Initializer, XavierNormal, Zeros
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, check_dtype, no_input_grad, positive_int
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
    "Mul",
    "Add",
]


class AffineParams(NamedTuple):
    """Parameters of :class:`Affine`: ``w`` of shape ``(in, out)``, ``b`` of shape ``(out,)``."""

    w: Array
    b: Array


class AffineCache(NamedTuple):
    x2: Array  # the input flattened to (N, in)
    x_shape: tuple[int, ...]
    input_grad: bool


@attrs.frozen
class Affine(Layer):
    """Fully connected layer ``y = x @ w + b``.

    Inputs of shape ``(N, d1, d2, ...)`` are flattened to ``(N, d1*d2*...)`` first, as in the book,
    so an Affine can follow a convolution directly. Output shape ``(N, out)``.
    """

    out: int = attrs.field(validator=positive_int)
    w_init: Initializer = attrs.field(factory=XavierNormal)
    b_init: Initializer = attrs.field(factory=Zeros)

    def init(self, key: Key, in_shape: Shape) -> tuple[AffineParams, Shape]:
        n_in = math.prod(in_shape)
        kw, kb = split(key)
        w = self.w_init(kw, (n_in, self.out), n_in, self.out)
        b = self.b_init(kb, (self.out,), n_in, self.out)
        return AffineParams(w, b), (self.out,)

    def forward(self, params: AffineParams, x: Array, ctx: Ctx = EVAL) -> tuple[Array, AffineCache]:
        w = params.w
        if x.ndim < 2 or math.prod(x.shape[1:]) != w.shape[0]:
            raise ValueError(
                f"Affine: expected input (N, {w.shape[0]}) or (N, ...) with {w.shape[0]} features "
                f"per sample, got shape {x.shape}"
            )
        if x.dtype != w.dtype:
            check_dtype(self, x, w.dtype)
        x2 = x.reshape(x.shape[0], -1)
        return x2 @ w + params.b, AffineCache(x2, x.shape, ctx.input_grad)

    def backward(self, params: AffineParams, cache: AffineCache, dout: Array) -> tuple[Array, AffineParams]:
        x2 = cache.x2
        if dout.shape != (x2.shape[0], params.w.shape[1]):
            check_dout(self, dout, (x2.shape[0], params.w.shape[1]))
        grads = AffineParams(x2.T @ dout, dout.sum(axis=0))
        if not cache.input_grad:
            return no_input_grad(cache.x_shape, dout.dtype), grads
        dx = (dout @ params.w.T).reshape(cache.x_shape)
        return dx, grads


class _Elementwise(Layer):
    """Shared plumbing for parameter-free elementwise layers: no params, shape kept."""

    __slots__ = ()

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        return None, tuple(in_shape)

    @staticmethod
    def _check(layer: Layer, x: Array) -> None:
        if x.dtype.kind != "f":
            raise ValueError(f"{layer.name}: expected a floating point input, got dtype {x.dtype}")


@attrs.frozen
class ReLU(_Elementwise):
    """``y = max(x, 0)``; any shape."""

    def forward(self, params: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Array]:
        self._check(self, x)
        y = np.maximum(x, 0)
        return y, y  # y > 0 exactly where x > 0, so y doubles as the mask source

    def backward(self, params: None, cache: Array, dout: Array) -> tuple[Array, None]:
        if dout.shape != cache.shape:
            check_dout(self, dout, cache.shape)
        # A multiply by a boolean mask is several times faster than np.where on large arrays; the
        # mask is made in dout's memory order (the comparison reads cache in any order cheaply,
        # while a product of two arrays of different orders runs several times slower).
        mask = np.greater(cache, 0, out=np.empty_like(dout, dtype=np.bool_))
        return dout * mask, None


@attrs.frozen
class Sigmoid(_Elementwise):
    """``y = 1 / (1 + exp(-x))``; any shape; ``dx = dout * y * (1 - y)``."""

    def forward(self, params: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Array]:
        self._check(self, x)
        y = F.sigmoid(x)
        return y, y

    def backward(self, params: None, cache: Array, dout: Array) -> tuple[Array, None]:
        if dout.shape != cache.shape:
            check_dout(self, dout, cache.shape)
        return dout * cache * (1 - cache), None


@attrs.frozen
class Tanh(_Elementwise):
    """``y = tanh(x)``; any shape; ``dx = dout * (1 - y²)``."""

    def forward(self, params: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Array]:
        self._check(self, x)
        y = np.tanh(x)
        return y, y

    def backward(self, params: None, cache: Array, dout: Array) -> tuple[Array, None]:
        if dout.shape != cache.shape:
            check_dout(self, dout, cache.shape)
        return dout * (1 - cache * cache), None


@attrs.frozen
class Identity(_Elementwise):
    """``y = x`` (the output layer of a regression net)."""

    def forward(self, params: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, tuple[int, ...]]:
        return x, x.shape

    def backward(self, params: None, cache: tuple[int, ...], dout: Array) -> tuple[Array, None]:
        if dout.shape != cache:
            check_dout(self, dout, cache)
        return dout, None


@attrs.frozen
class Softmax(_Elementwise):
    """Softmax over the last axis (for inference; train with a fused softmax cross-entropy loss).

    Backward is the Jacobian-vector product ``dx = y * (dout - sum(dout * y, axis=-1))``.
    """

    def forward(self, params: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Array]:
        self._check(self, x)
        y = F.softmax(x)
        return y, y

    def backward(self, params: None, cache: Array, dout: Array) -> tuple[Array, None]:
        if dout.shape != cache.shape:
            check_dout(self, dout, cache.shape)
        y = cache
        return y * (dout - (dout * y).sum(axis=-1, keepdims=True)), None


@attrs.frozen
class Flatten(Layer):
    """Reshape ``(N, d1, d2, ...)`` to ``(N, d1*d2*...)``."""

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        return None, (math.prod(in_shape),)

    def forward(self, params: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, tuple[int, ...]]:
        if x.ndim < 1:
            raise ValueError(f"Flatten: expected input of rank >= 1 (N, ...), got shape {x.shape}")
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, params: None, cache: tuple[int, ...], dout: Array) -> tuple[Array, None]:
        expected = (cache[0], math.prod(cache[1:]))
        if dout.shape != expected:
            check_dout(self, dout, expected)
        return dout.reshape(cache), None


# --- computational-graph nodes (the book's section 5.4): two inputs, one output -------------------


class _Pair(NamedTuple):
    x: Array
    y: Array


@attrs.frozen
class Mul:
    """Multiplication node ``out = x * y`` (broadcasting like NumPy).

    ``forward(x, y) -> (out, cache)``; ``backward(cache, dout) -> (dx, dy)`` with
    ``dx = dout * y`` and ``dy = dout * x`` (summed back to each input's shape).
    """

    def forward(self, x: Any, y: Any) -> tuple[Array, _Pair]:
        xa, ya = np.asarray(x), np.asarray(y)
        return xa * ya, _Pair(xa, ya)

    def backward(self, cache: _Pair, dout: Any) -> tuple[Array, Array]:
        d = np.asarray(dout)
        return _unbroadcast(d * cache.y, cache.x.shape), _unbroadcast(d * cache.x, cache.y.shape)


@attrs.frozen
class Add:
    """Addition node ``out = x + y``; ``backward`` passes ``dout`` to both inputs."""

    def forward(self, x: Any, y: Any) -> tuple[Array, tuple[tuple[int, ...], tuple[int, ...]]]:
        xa, ya = np.asarray(x), np.asarray(y)
        return xa + ya, (xa.shape, ya.shape)

    def backward(self, cache: tuple[tuple[int, ...], tuple[int, ...]], dout: Any) -> tuple[Array, Array]:
        d = np.asarray(dout)
        return _unbroadcast(d, cache[0]), _unbroadcast(d, cache[1])


def _unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``g`` over the axes that broadcasting added or stretched, back to ``shape``."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for ax, s in enumerate(shape):
        if s == 1 and g.shape[ax] != 1:
            g = g.sum(axis=ax, keepdims=True)
    return g
