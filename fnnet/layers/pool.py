"""Pooling layers (the book's section 7.4), NCHW in and out (``(N, C, L)`` for the 1-D pools, which
run the 2-D pools on ``(N, C, 1, L)``).

Pooling takes one strided view per window cell (``x[:, :, i::sh, j::sw]``), so ``max`` is a few
``np.maximum`` calls and its gradient goes, without fancy indexing, to the first maximal cell of
each window. Everything stays in the input's dtype; no input array is ever written to.

>>> import numpy as np, fnnet
>>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
>>> fnnet.MaxPool2D(2).apply(None, x)[0, 0].tolist()
[[5.0, 7.0], [13.0, 15.0]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar, NamedTuple

import attrs
import numpy as np

from fnnet._validate import as_int, nonneg_int, positive_int
from fnnet.layers._patches import Pair, conv_output_size, nchw, nhwc, nonneg_pair, pair, positive_pair
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, check_rank, no_input_grad
from fnnet.random import Key
from fnnet.typing import Array, Shape

__all__ = ["MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "MaxPool1D", "AvgPool1D"]


# --- pooling ------------------------------------------------------------------------------------


class PoolCache(NamedTuple):
    x: Array  # the input (N, C, H, W), as given
    y: Array  # the output (N, C, OH, OW)


def _channels_last(x: Array) -> bool:
    return bool(nhwc(x).flags.c_contiguous) and not x.flags.c_contiguous


def _same_order(a: Array, like: Array) -> Array:
    """``a`` in ``like``'s memory order (channels-last or C order); copied only if the orders differ.

    Elementwise operations on arrays of different memory orders run many times slower.
    """
    if _channels_last(like):
        return a if _channels_last(a) else nchw(np.ascontiguousarray(nhwc(a)))
    return np.ascontiguousarray(a)


def _alloc(like: Array, shape: tuple[int, int, int, int], fill: float | None) -> Array:
    """A new ``(N, C, H, W)`` array with ``like``'s dtype and memory order, filled with ``fill``."""
    n, c, h, w = shape
    if _channels_last(like):
        buf = np.empty((n, h, w, c), like.dtype) if fill is None else np.full((n, h, w, c), fill, like.dtype)
        return nchw(buf)
    return np.empty(shape, like.dtype) if fill is None else np.full(shape, fill, like.dtype)


@attrs.frozen
class _Pool2D(Layer):
    """Shared fields and shape logic of the pooling layers: windows ``(wh, ww)`` moved by ``stride``."""

    window: Pair = attrs.field(converter=pair, validator=positive_pair)
    stride: Pair | None = attrs.field(default=None, converter=attrs.converters.optional(pair),
                                      validator=attrs.validators.optional(positive_pair))
    pad: Pair = attrs.field(default=(0, 0), converter=pair, validator=nonneg_pair)

    def __attrs_post_init__(self) -> None:
        _check_pool_pad(self)

    def _padded(self, x: Array, fill: float) -> Array:
        """``x`` with ``pad`` cells of ``fill`` around H and W (``x`` itself when there is no pad)."""
        if self.pad == (0, 0):
            return x
        n, c, h, w = x.shape
        ph, pw = self.pad
        xp = _alloc(x, (n, c, h + 2 * ph, w + 2 * pw), fill)
        xp[:, :, ph : ph + h, pw : pw + w] = x
        return xp

    @property
    def _stride(self) -> Pair:
        """The stride in effect (the window when ``stride`` is ``None``)."""
        return self.window if self.stride is None else self.stride

    def _out_hw(self, h: int, w: int) -> Pair:
        (wh, ww), (sh, sw), (ph, pw) = self.window, self._stride, self.pad
        if h + 2 * ph < wh or w + 2 * pw < ww:
            raise ValueError(f"{type(self).__name__}: window {self.window} does not fit input (H, W) = {(h, w)} with pad {self.pad}")
        return conv_output_size(h, wh, sh, ph), conv_output_size(w, ww, sw, pw)

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(C, H, W) -> (C, OH, OW)``."""
        if len(in_shape) != 3:
            raise ValueError(f"{type(self).__name__}: expected in_shape (C, H, W), got {tuple(in_shape)}")
        c, h, w = in_shape
        return (c, *self._out_hw(h, w))

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        """No parameters."""
        return None, self.out_shape(in_shape)

    def _check(self, x: Array) -> Pair:
        check_rank(self, x, 4, "input (N, C, H, W)")
        if x.dtype.kind != "f":
            raise ValueError(f"{type(self).__name__}: expected a floating point input, got dtype {x.dtype}")
        return self._out_hw(x.shape[2], x.shape[3])

    def _windows(self, oh: int, ow: int) -> Iterator[tuple[slice, slice]]:
        """For each offset ``(i, j)`` inside the window, in row-major order: the slices of the padded
        input that hold ``x_pad[:, :, oh*sh + i, ow*sw + j]`` for all output pixels."""
        (wh, ww), (sh, sw) = self.window, self._stride
        for i in range(wh):
            for j in range(ww):
                yield slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)

    def _fold(self, x: Array, fill: float, op: np.ufunc) -> Array:
        """``op`` folded over the window cells: ``op(... op(x_pad[cell 0], x_pad[cell 1]) ...)`` for
        every output pixel, in a new array of ``x``'s memory order (padding cells hold ``fill``)."""
        oh, ow = self._check(x)
        xp = self._padded(x, fill)
        views = [xp[:, :, hs, ws] for hs, ws in self._windows(oh, ow)]
        y: Array = op(views[0], views[1]) if len(views) > 1 else views[0].copy(order="K")
        for v in views[2:]:
            op(y, v, out=y)  # y is our own fresh array
        return y

    def _tiles(self, h: int, w: int) -> bool:
        """Whether the windows cover the input exactly once (stride = window, no pad, no remainder)."""
        return self._stride == self.window and self.pad == (0, 0) and h % self.window[0] == 0 and w % self.window[1] == 0

    def _disjoint(self) -> bool:
        return self._stride[0] >= self.window[0] and self._stride[1] >= self.window[1]


@attrs.frozen
class MaxPool2D(_Pool2D):
    """Max pooling: ``y[n, c, oh, ow] = max_{i,j} x_pad[n, c, oh*sh + i, ow*sw + j]``.

    Padding cells are ``-inf`` (they never win); ``pad`` must be smaller than the window so every
    window sees the input. Where several cells tie for the maximum, the gradient goes to the first
    in row-major order (as ``argmax`` in the book).

    Attributes:
        window: ``(wh, ww)`` or an int.
        stride: an int or pair; ``None`` (the default) means the window (non-overlapping windows).
        pad: an int or pair.

    >>> import numpy as np, fnnet
    >>> pool = fnnet.MaxPool2D(2)
    >>> x = np.array([[[[1.0, 3.0], [2.0, 0.0]]]], np.float32)
    >>> y, _, cache = pool.forward(None, None, x)
    >>> dx, _ = pool.backward(None, cache, np.ones_like(y))
    >>> y.shape, y.ravel().tolist(), dx[0, 0].tolist()
    ((1, 1, 1, 1), [3.0], [[0.0, 1.0], [0.0, 0.0]])
    >>> fnnet.MaxPool2D(3, stride=2, pad=1).out_shape((8, 28, 28))
    (8, 14, 14)
    """

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, PoolCache]:
        """Maximum over each window.

        Args:
            params: ``None``.
            x: ``(N, C, H, W)``, floating point; never modified.
        Returns:
            ``(y, cache)`` with ``y`` ``(N, C, OH, OW)`` in ``x``'s memory order.
        """
        y = self._fold(x, -np.inf, np.maximum)
        return y, state, PoolCache(x, y)

    def backward(
        self, params: None, cache: PoolCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, None]:
        """Route ``dout`` to the (first) maximal cell of each window.

        Returns:
            ``(dx, None)`` with ``dx`` of the input's shape.
        """
        x, y = cache.x, cache.y
        if dout.shape != y.shape:
            check_dout(self, dout, y.shape)
        if not input_grad:
            return no_input_grad(x.shape, dout.dtype), None
        dout = _same_order(dout, y)
        n, c, h, w = x.shape
        (ph, pw), oh, ow = self.pad, y.shape[2], y.shape[3]
        if self._tiles(h, w):
            dx = self._untied_tiles_backward(x, y, dout)
            if dx is not None:
                return dx, None
        padded = (ph, pw) != (0, 0)
        xp = x
        if padded:
            xp = _alloc(x, (n, c, h + 2 * ph, w + 2 * pw), -np.inf)
            xp[:, :, ph : ph + h, pw : pw + w] = x
        tiles = self._tiles(h, w)
        dxp = _alloc(x, (n, c, h + 2 * ph, w + 2 * pw), None if tiles else 0.0)
        disjoint = self._disjoint()
        # free[k] is True while no earlier cell of window k has taken the gradient
        free: Array | None = None
        offsets = list(self._windows(oh, ow))
        for idx, (hs, ws) in enumerate(offsets):
            if idx == len(offsets) - 1 and free is not None:
                take = free
            else:
                take = xp[:, :, hs, ws] == y
                if free is None:
                    free = ~take
                else:
                    take &= free
                    free ^= take
            target = dxp[:, :, hs, ws]
            if tiles:
                np.multiply(dout, take, out=target, casting="unsafe")
            elif disjoint:
                np.copyto(target, dout, where=take)
            else:
                np.add(target, dout, out=target, where=take)
        if padded:
            return dxp[:, :, ph : ph + h, pw : pw + w], None
        return dxp, None

    def _untied_tiles_backward(self, x: Array, y: Array, dout: Array) -> Array | None:
        """``dx`` for windows that tile the input when no window has two maximal cells, else ``None``.

        Splitting ``H`` into ``(OH, wh)`` and ``W`` into ``(OW, ww)`` is a view in any memory order,
        so one full-size comparison against the broadcast maxima and one full-size product with the
        broadcast ``dout`` (in ``y``'s memory order) do the work of the per-cell loop. Without ties
        (typical before a ReLU, rare after one) every window has exactly one hit.
        """
        n, c, h, w = x.shape
        if y.size == 0:  # an empty batch: nothing to route (and no view of an empty buffer to write through)
            return None
        split = (n, c, y.shape[2], self.window[0], y.shape[3], self.window[1])
        hit = x.reshape(split) == y[:, :, :, None, :, None]
        if np.count_nonzero(hit) != y.size or np.isnan(y).any():  # ties (or NaN windows, no hit)
            return None
        dx = _alloc(x, (n, c, h, w), None)
        dx6 = dx.reshape(split)
        if not np.may_share_memory(dx6, dx):  # splitting axes never copies; the out= below needs a view
            raise AssertionError("MaxPool2D: reshape of the gradient buffer copied")
        np.multiply(dout[:, :, :, None, :, None], hit, out=dx6)
        return dx


@attrs.frozen
class AvgPool2D(_Pool2D):
    """Average pooling: ``y[n, c, oh, ow] = mean_{i,j} x_pad[n, c, oh*sh + i, ow*sw + j]``.

    Padding cells are zeros and count in the mean (the book's behaviour: the divisor is always
    ``wh*ww``); ``pad`` must be smaller than the window.

    Attributes:
        window: ``(wh, ww)`` or an int.
        stride: an int or pair; ``None`` (the default) means the window.
        pad: an int or pair.

    >>> import numpy as np, fnnet
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> fnnet.AvgPool2D(2).apply(None, x)[0, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    >>> fnnet.AvgPool2D(2, pad=1).apply(None, np.ones((1, 1, 2, 2), np.float32))[0, 0].tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, PoolCache]:
        """Mean over each window.

        Args:
            params: ``None``.
            x: ``(N, C, H, W)``, floating point; never modified.
        Returns:
            ``(y, cache)`` with ``y`` ``(N, C, OH, OW)`` in ``x``'s memory order.
        """
        y = self._fold(x, 0.0, np.add)
        y *= x.dtype.type(1.0 / math.prod(self.window))  # y is our own fresh array
        return y, state, PoolCache(x, y)

    def backward(
        self, params: None, cache: PoolCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, None]:
        """Spread ``dout / (wh*ww)`` evenly over each window.

        Returns:
            ``(dx, None)`` with ``dx`` of the input's shape.
        """
        x, y = cache.x, cache.y
        if dout.shape != y.shape:
            check_dout(self, dout, y.shape)
        if not input_grad:
            return no_input_grad(x.shape, dout.dtype), None
        n, c, h, w = x.shape
        (ph, pw), oh, ow = self.pad, y.shape[2], y.shape[3]
        share = _same_order(dout, y) * dout.dtype.type(1.0 / math.prod(self.window))
        tiles = self._tiles(h, w)
        dxp = _alloc(x, (n, c, h + 2 * ph, w + 2 * pw), None if tiles else 0.0)
        for hs, ws in self._windows(oh, ow):
            if tiles:
                dxp[:, :, hs, ws] = share
            else:
                dxp[:, :, hs, ws] += share
        if (ph, pw) != (0, 0):
            return dxp[:, :, ph : ph + h, pw : pw + w], None
        return dxp, None


# --- 1-D pooling ----------------------------------------------------------------------------------


@attrs.frozen
class _Pool1D(Layer):
    """A 2-D pool on ``(N, C, 1, L)`` with ``(1, window)`` windows, seen as a pool on ``(N, C, L)``."""

    _POOL2D: ClassVar[type[_Pool2D]]

    window: int = attrs.field(converter=as_int, validator=positive_int)
    stride: int | None = attrs.field(default=None, converter=attrs.converters.optional(as_int),
                                   validator=attrs.validators.optional(positive_int))
    pad: int = attrs.field(default=0, converter=as_int, validator=nonneg_int)

    def __attrs_post_init__(self) -> None:
        if self.pad >= self.window:
            raise ValueError(f"{type(self).__name__}: pad {self.pad} must be smaller than the window {self.window}")

    def _pool2d(self) -> _Pool2D:
        return self._POOL2D((1, self.window), None if self.stride is None else (1, self.stride), (0, self.pad))

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(C, L) -> (C, OL)``."""
        if len(in_shape) != 2:
            raise ValueError(f"{type(self).__name__}: expected in_shape (C, L), got {tuple(in_shape)}")
        c, length = in_shape
        if length + 2 * self.pad < self.window:
            raise ValueError(
                f"{type(self).__name__}: window {self.window} does not fit input length L = {length} with pad {self.pad}"
            )
        return (c, conv_output_size(length, self.window, self.window if self.stride is None else self.stride, self.pad))

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        """No parameters."""
        return None, self.out_shape(in_shape)

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, PoolCache]:
        """Pool each window of ``x`` ``(N, C, L)`` (floating point; never modified).

        Returns:
            ``(y, state, cache)`` with ``y`` ``(N, C, OL)`` in ``x``'s memory order.
        """
        check_rank(self, x, 3, "input (N, C, L)")
        if x.dtype.kind != "f":
            raise ValueError(f"{type(self).__name__}: expected a floating point input, got dtype {x.dtype}")
        self.out_shape(x.shape[1:])
        y, _, cache = self._pool2d().forward(None, None, x[:, :, None, :], ctx)
        return y[:, :, 0, :], state, cache

    def backward(self, params: None, cache: PoolCache, dout: Array, input_grad: bool = True) -> tuple[Array, None]:
        """``dx`` ``(N, C, L)`` for ``dout`` ``(N, C, OL)``: ``(dx, None)``."""
        n, c, _, ol = cache.y.shape
        if dout.shape != (n, c, ol):
            check_dout(self, dout, (n, c, ol))
        if not input_grad:
            return no_input_grad((n, c, cache.x.shape[3]), dout.dtype), None
        dx, _ = self._pool2d().backward(None, cache, dout[:, :, None, :])
        return dx[:, :, 0, :], None


@attrs.frozen
class MaxPool1D(_Pool1D):
    """Max pooling over lengths: ``y[n, c, o] = max_i x_pad[n, c, o*stride + i]``, ``(N, C, L) -> (N, C, OL)``.

    :class:`MaxPool2D` on ``(N, C, 1, L)`` with ``(1, window)`` windows: padding cells are ``-inf``,
    ``pad`` must be smaller than the window, and the gradient of tied maxima goes to the first.

    Attributes:
        window: the window length (an int).
        stride: an int; ``None`` (the default) means the window.
        pad: an int.

    >>> import numpy as np, fnnet
    >>> x = np.array([[[1.0, 3.0, 2.0, 0.0, 5.0]]], np.float32)
    >>> fnnet.MaxPool1D(2).apply(None, x).tolist()
    [[[3.0, 2.0]]]
    >>> fnnet.MaxPool1D(3, stride=2, pad=1).out_shape((16, 100))
    (16, 50)
    """

    _POOL2D = MaxPool2D


@attrs.frozen
class AvgPool1D(_Pool1D):
    """Average pooling over lengths: ``y[n, c, o] = mean_i x_pad[n, c, o*stride + i]``, ``(N, C, L) -> (N, C, OL)``.

    :class:`AvgPool2D` on ``(N, C, 1, L)`` with ``(1, window)`` windows: padding cells are zeros and
    count in the mean (the divisor is always ``window``).

    Attributes:
        window: the window length (an int).
        stride: an int; ``None`` (the default) means the window.
        pad: an int.

    >>> import numpy as np, fnnet
    >>> x = np.array([[[1.0, 3.0, 2.0, 0.0, 5.0]]], np.float32)
    >>> fnnet.AvgPool1D(2).apply(None, x).tolist()
    [[[2.0, 1.0]]]
    """

    _POOL2D = AvgPool2D


class GlobalPoolCache(NamedTuple):
    x_shape: tuple[int, int, int, int]  # the input's (N, C, H, W); the input itself is not needed


@attrs.frozen
class GlobalAvgPool2D(Layer):
    """Global average pooling: ``y[n, c] = mean_{h,w} x[n, c, h, w]``, ``(N, C, H, W) -> (N, C)``.

    Each channel's feature map becomes one number, so the output no longer depends on the image
    size (the usual head of a residual network: this layer, then ``Affine``). The gradient spreads
    evenly: ``dx[n, c, h, w] = dout[n, c] / (H*W)``. No parameters, no hyperparameters.

    >>> import numpy as np, fnnet
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    >>> fnnet.GlobalAvgPool2D().apply(None, x).tolist()
    [[1.5, 5.5]]
    >>> fnnet.GlobalAvgPool2D().out_shape((16, 7, 7))
    (16,)
    """

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(C, H, W) -> (C,)``."""
        if len(in_shape) != 3:
            raise ValueError(f"{type(self).__name__}: expected in_shape (C, H, W), got {tuple(in_shape)}")
        return (int(in_shape[0]),)

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        """No parameters."""
        return None, self.out_shape(in_shape)

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, GlobalPoolCache]:
        """Mean over ``H`` and ``W``.

        Args:
            params: ``None``.
            x: ``(N, C, H, W)``, floating point; never modified.
        Returns:
            ``(y, state, cache)`` with ``y`` ``(N, C)`` in ``x``'s dtype.
        """
        check_rank(self, x, 4, "input (N, C, H, W)")
        if x.dtype.kind != "f":
            raise ValueError(f"{type(self).__name__}: expected a floating point input, got dtype {x.dtype}")
        y: Array = x.mean(axis=(2, 3))
        n, c, h, w = x.shape
        return y, state, GlobalPoolCache((n, c, h, w))

    def backward(
        self, params: None, cache: GlobalPoolCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, None]:
        """Spread ``dout / (H*W)`` over each feature map.

        Returns:
            ``(dx, None)`` with ``dx`` of the input's shape.
        """
        n, c, h, w = cache.x_shape
        if dout.shape != (n, c):
            check_dout(self, dout, (n, c))
        if not input_grad:
            return no_input_grad(cache.x_shape, dout.dtype), None
        dx = np.empty(cache.x_shape, dout.dtype)
        dx[...] = (dout * dout.dtype.type(1.0 / (h * w)))[:, :, None, None]
        return dx, None


def _check_pool_pad(layer: _Pool2D) -> None:
    if layer.pad[0] >= layer.window[0] or layer.pad[1] >= layer.window[1]:
        raise ValueError(f"{type(layer).__name__}: pad {layer.pad} must be smaller than the window {layer.window}")
