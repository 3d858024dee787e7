"""Convolution (the book's chapter 7): :class:`Conv2D` on ``(N, C, H, W)`` with weights
``(FN, C/groups, FH, FW)``, :class:`Conv1D` on ``(N, C, L)`` with weights ``(FN, C/groups, K)``.

The kernels (patch building and GEMMs) live in :mod:`fnnet.layers._patches`; ``Conv1D`` runs them
as a ``Conv2D`` of height 1.

>>> import numpy as np, fnnet
>>> conv = fnnet.Conv2D(4, 3, pad=1)
>>> conv.out_shape((1, 28, 28))
(4, 28, 28)
>>> params, _ = conv.init(fnnet.key(0), (1, 28, 28))
>>> conv.apply(params, np.zeros((2, 1, 28, 28), np.float32)).shape
(2, 4, 28, 28)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import attrs
import numpy as np

from fnnet._validate import as_int, nonneg_int, positive_int
from fnnet.initializers import HeNormal, Initializer, Zeros
from fnnet.layers._patches import (
    Pair, PatchGeometry, correlate, correlate_adjoint, depthwise_correlate, depthwise_weight_grad, geometry,
    is_k_major, nchw, nhwc, nonneg_pair, pair, patch_chunks, positive_pair,
)
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, check_dtype, check_rank, no_input_grad, param_arrays
from fnnet.random import Key, split
from fnnet.typing import Array, Shape

__all__ = ["ConvParams", "Conv2D", "Conv1D"]


# --- Conv2D -------------------------------------------------------------------------------------


class ConvParams(NamedTuple):
    """Parameters of :class:`Conv2D` and :class:`Conv1D`: ``w`` of shape ``(FN, C/groups, FH, FW)``
    (``(FN, C/groups, K)`` for ``Conv1D``), ``b`` of shape ``(FN,)``.

    >>> import fnnet
    >>> params, _ = fnnet.Conv2D(8, 3, groups=2).init(fnnet.key(0), (4, 6, 6))
    >>> params.w.shape, params.b.shape
    ((8, 2, 3, 3), (8,))
    >>> fnnet.Conv1D(8, 5).init(fnnet.key(0), (4, 20))[0].w.shape
    (8, 4, 5)
    """

    w: Array
    b: Array


class ConvCache(NamedTuple):
    x: Array  # the input (N, C, H, W) or (N, C, L), as given
    out_shape: tuple[int, ...]


@attrs.frozen
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in the book): ``(N, C, H, W) -> (N, FN, OH, OW)``.

    ``y[n, f, oh, ow] = b[f] + sum_{c,i,j} w[f, c, i, j] * x_pad[n, c, oh*sh + i, ow*sw + j]`` with
    ``OH = (H + 2*ph - FH) // sh + 1`` (likewise ``OW``) and zero padding.

    With ``groups = G`` (keyword only) the channels split into ``G`` groups, each convolved with
    its own ``FN/G`` filters: weights ``(FN, C/G, FH, FW)`` (PyTorch's layout) and filter ``f`` sees
    channels ``[k*C/G, (k+1)*C/G)`` with ``k = f // (FN/G)``. ``groups = C`` is a depthwise
    convolution. ``C`` and ``FN`` must both be multiples of ``G``.

    Attributes:
        out_channels: ``FN``, the number of filters.
        kernel: ``FH`` and ``FW``: an int or an ``(FH, FW)`` pair.
        stride, pad: an int or an ``(along H, along W)`` pair.
        w_init, b_init: initialisers (He normal and zeros by default); ``fan_in = C/G*FH*FW``.
        groups: ``G`` (1 by default: every filter sees every channel).

    >>> import numpy as np, fnnet
    >>> depthwise = fnnet.Conv2D(6, 3, pad=1, groups=6)
    >>> params, out = depthwise.init(fnnet.key(0), (6, 8, 8))
    >>> params.w.shape, out
    ((6, 1, 3, 3), (6, 8, 8))
    """

    out_channels: int = attrs.field(converter=as_int, validator=positive_int)
    kernel: Pair = attrs.field(converter=pair, validator=positive_pair)
    stride: Pair = attrs.field(default=(1, 1), converter=pair, validator=positive_pair)
    pad: Pair = attrs.field(default=(0, 0), converter=pair, validator=nonneg_pair)
    w_init: Initializer = attrs.field(factory=HeNormal)
    b_init: Initializer = attrs.field(factory=Zeros)
    groups: int = attrs.field(default=1, kw_only=True, converter=as_int, validator=positive_int)

    def __attrs_post_init__(self) -> None:
        _check_groups(self)

    def _geometry(self, h: int, w: int, kernel: Pair) -> PatchGeometry:
        if h + 2 * self.pad[0] < kernel[0] or w + 2 * self.pad[1] < kernel[1]:
            raise ValueError(
                f"{type(self).__name__}: kernel {kernel} does not fit input (H, W) = {(h, w)} with pad {self.pad}"
            )
        return geometry(h, w, kernel, self.stride, self.pad)

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(FN, OH, OW)`` for inputs ``(C, H, W)``."""
        if len(in_shape) != 3:
            raise ValueError(f"{type(self).__name__}: expected in_shape (C, H, W), got {tuple(in_shape)}")
        _check_channels(self, in_shape[0])
        g = self._geometry(in_shape[1], in_shape[2], self.kernel)
        return (self.out_channels, g.oh, g.ow)

    def init(self, key: Key, in_shape: Shape) -> tuple[ConvParams, Shape]:
        """He-initialised weights ``(FN, C/groups, FH, FW)`` and zero biases for inputs ``(N, C, H, W)``.

        Returns:
            ``(params, (FN, OH, OW))``.
        """
        out = self.out_shape(in_shape)
        return _init_params(self, key, in_shape[0], self.kernel), out

    def forward(
        self, params: ConvParams, state: None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, None, ConvCache]:
        """Convolve ``x`` with ``params.w`` and add ``params.b``.

        Args:
            params: :class:`ConvParams` with ``w`` ``(FN, C/groups, FH, FW)`` and ``b`` ``(FN,)``.
            state: ``None``.
            x: ``(N, C, H, W)`` of the parameters' dtype; never modified.
            ctx: unused (a convolution is the same in training and evaluation).
        Returns:
            ``(y, None, cache)`` with ``y`` of shape ``(N, FN, OH, OW)`` (channels-last strides).
        """
        w, b = param_arrays(self, params, "w", "b")
        fn = self.out_channels
        if w.ndim != 4 or w.shape[0] != fn or w.shape[2:] != self.kernel or b.shape != (fn,):
            raise ValueError(
                f"{type(self).__name__}: expected params w of shape ({_fn_c(self.groups)}, {self.kernel[0]}, "
                f"{self.kernel[1]}) and b of shape (FN,) with FN = {fn}, got w {w.shape} and b {b.shape}"
            )
        check_rank(self, x, 4, "input (N, C, H, W)")
        c = w.shape[1] * self.groups
        if x.shape[1] != c:
            raise ValueError(
                f"{type(self).__name__}: expected input with {c} channels (N, {c}, H, W), got shape {x.shape}"
            )
        if x.dtype != w.dtype:
            check_dtype(self, x, w.dtype)
        g = self._geometry(x.shape[2], x.shape[3], self.kernel)
        y = conv_forward(x, w, b, g, self.groups)
        return y, state, ConvCache(x, y.shape)

    def backward(
        self, params: ConvParams, cache: ConvCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, ConvParams]:
        """Gradients of the convolution.

        Args:
            params: as in :meth:`forward`.
            cache: from :meth:`forward`.
            dout: ``dL/dy``, shape ``(N, FN, OH, OW)``.
        Returns:
            ``(dx, ConvParams(dw, db))``: ``dx`` ``(N, C, H, W)`` (read-only zeros if
            ``input_grad=False``), ``dw`` ``(FN, C/groups, FH, FW)``, ``db`` ``(FN,)``.
        """
        if dout.shape != cache.out_shape:
            check_dout(self, dout, cache.out_shape)
        dx, dw, db = conv_backward(cache.x, params.w, dout, self.stride, self.pad, self.groups, input_grad)
        return (no_input_grad(cache.x.shape, dout.dtype) if dx is None else dx), ConvParams(dw, db)


# --- Conv1D -------------------------------------------------------------------------------------


@attrs.frozen
class Conv1D(Layer):
    """1-D convolution (cross-correlation): ``(N, C, L) -> (N, FN, OL)``, weights ``(FN, C/groups, K)``.

    ``y[n, f, o] = b[f] + sum_{c,i} w[f, c, i] * x_pad[n, c, o*stride + i]`` with
    ``OL = (L + 2*pad - K) // stride + 1`` and zero padding. It is :class:`Conv2D` on ``(N, C, 1, L)``
    with ``(1, K)`` kernels, run by the same kernels (outputs have channels-last strides too).

    Attributes:
        out_channels: ``FN``, the number of filters.
        kernel: ``K``, the kernel length (an int).
        stride, pad: ints.
        w_init, b_init: initialisers (He normal and zeros by default); ``fan_in = C/groups*K``.
        groups: as in :class:`Conv2D` (keyword only; 1 by default).

    >>> import numpy as np, fnnet
    >>> conv = fnnet.Conv1D(8, 5, stride=2, pad=2)
    >>> params, out = conv.init(fnnet.key(0), (3, 100))
    >>> params.w.shape, out
    ((8, 3, 5), (8, 50))
    >>> conv.apply(params, np.zeros((4, 3, 100), np.float32)).shape
    (4, 8, 50)
    """

    out_channels: int = attrs.field(converter=as_int, validator=positive_int)
    kernel: int = attrs.field(converter=as_int, validator=positive_int)
    stride: int = attrs.field(default=1, converter=as_int, validator=positive_int)
    pad: int = attrs.field(default=0, converter=as_int, validator=nonneg_int)
    w_init: Initializer = attrs.field(factory=HeNormal)
    b_init: Initializer = attrs.field(factory=Zeros)
    groups: int = attrs.field(default=1, kw_only=True, converter=as_int, validator=positive_int)

    def __attrs_post_init__(self) -> None:
        _check_groups(self)

    def _geometry(self, length: int) -> PatchGeometry:
        if length + 2 * self.pad < self.kernel:
            raise ValueError(
                f"{type(self).__name__}: kernel {self.kernel} does not fit input length L = {length} with pad {self.pad}"
            )
        return geometry(1, length, (1, self.kernel), (1, self.stride), (0, self.pad))

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(FN, OL)`` for inputs ``(C, L)``."""
        if len(in_shape) != 2:
            raise ValueError(f"{type(self).__name__}: expected in_shape (C, L), got {tuple(in_shape)}")
        _check_channels(self, in_shape[0])
        return (self.out_channels, self._geometry(in_shape[1]).ow)

    def init(self, key: Key, in_shape: Shape) -> tuple[ConvParams, Shape]:
        """He-initialised weights ``(FN, C/groups, K)`` and zero biases for inputs ``(N, C, L)``.

        Returns:
            ``(params, (FN, OL))``.
        """
        out = self.out_shape(in_shape)
        return _init_params(self, key, in_shape[0], (self.kernel,)), out

    def forward(
        self, params: ConvParams, state: None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, None, ConvCache]:
        """Convolve ``x`` with ``params.w`` and add ``params.b``.

        Args:
            params: :class:`ConvParams` with ``w`` ``(FN, C/groups, K)`` and ``b`` ``(FN,)``.
            state: ``None``.
            x: ``(N, C, L)`` of the parameters' dtype; never modified.
            ctx: unused.
        Returns:
            ``(y, None, cache)`` with ``y`` of shape ``(N, FN, OL)`` (channels-last strides).
        """
        w, b = param_arrays(self, params, "w", "b")
        fn = self.out_channels
        if w.ndim != 3 or w.shape[0] != fn or w.shape[2] != self.kernel or b.shape != (fn,):
            raise ValueError(
                f"{type(self).__name__}: expected params w of shape ({_fn_c(self.groups)}, {self.kernel}) and b of "
                f"shape (FN,) with FN = {fn}, got w {w.shape} and b {b.shape}"
            )
        check_rank(self, x, 3, "input (N, C, L)")
        c = w.shape[1] * self.groups
        if x.shape[1] != c:
            raise ValueError(f"{type(self).__name__}: expected input with {c} channels (N, {c}, L), got shape {x.shape}")
        if x.dtype != w.dtype:
            check_dtype(self, x, w.dtype)
        g = self._geometry(x.shape[2])
        y = conv_forward(x[:, :, None, :], w[:, :, None, :], b, g, self.groups)[:, :, 0, :]
        return y, state, ConvCache(x, y.shape)

    def backward(
        self, params: ConvParams, cache: ConvCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, ConvParams]:
        """Gradients of the convolution.

        Args:
            params: as in :meth:`forward`.
            cache: from :meth:`forward`.
            dout: ``dL/dy``, shape ``(N, FN, OL)``.
        Returns:
            ``(dx, ConvParams(dw, db))``: ``dx`` ``(N, C, L)`` (read-only zeros if
            ``input_grad=False``), ``dw`` ``(FN, C/groups, K)``, ``db`` ``(FN,)``.
        """
        if dout.shape != cache.out_shape:
            check_dout(self, dout, cache.out_shape)
        x, w = cache.x, params.w
        dx, dw, db = conv_backward(
            x[:, :, None, :], w[:, :, None, :], dout[:, :, None, :], (1, self.stride), (0, self.pad), self.groups,
            input_grad,
        )  # fmt: skip
        dw3 = dw.reshape(w.shape)
        return (no_input_grad(x.shape, dout.dtype) if dx is None else dx[:, :, 0, :]), ConvParams(dw3, db)


def _fn_c(groups: int) -> str:
    """The leading axes of a weight shape in an error message."""
    return "FN, C" if groups == 1 else f"FN, C/{groups}"


def _check_groups(layer: Conv2D | Conv1D) -> None:
    if layer.out_channels % layer.groups:
        raise ValueError(
            f"{type(layer).__name__}: out_channels {layer.out_channels} must be divisible by groups {layer.groups}"
        )


def _check_channels(layer: Conv2D | Conv1D, c: int) -> None:
    if c % layer.groups:
        raise ValueError(f"{type(layer).__name__}: input channels {c} must be divisible by groups {layer.groups}")


def _init_params(layer: Conv2D | Conv1D, key: Key, c: int, kernel: tuple[int, ...]) -> ConvParams:
    """Weights ``(FN, C/groups, *kernel)`` from ``layer.w_init`` and biases ``(FN,)`` from ``layer.b_init``.

    One input unit feeds ``FN/groups`` filters: ``fan_in = C/groups * taps``, ``fan_out = FN/groups * taps``.
    """
    fn, cg, taps = layer.out_channels, c // layer.groups, math.prod(kernel)
    fan_in, fan_out = cg * taps, fn // layer.groups * taps
    kw, kb = split(key)
    return ConvParams(layer.w_init(kw, (fn, cg, *kernel), fan_in, fan_out), layer.b_init(kb, (fn,), fan_in, fan_out))


# --- the kernels both layers call (NCHW; Conv1D passes (N, C, 1, L)) -----------------------------


def conv_forward(x: Array, w: Array, b: Array, g: PatchGeometry, groups: int) -> Array:
    """``y`` ``(N, FN, OH, OW)`` (channels-last strides) of ``x`` ``(N, C, H, W)`` and ``w``
    ``(FN, C/groups, FH, FW)``: group ``k`` maps channels ``[k*C/groups, (k+1)*C/groups)`` to filters
    ``[k*FN/groups, (k+1)*FN/groups)``."""
    fn = w.shape[0]
    if groups == 1:
        # columns (i, j, c) match the channels-last patches
        wmat = w.transpose(2, 3, 1, 0).reshape(-1, fn)
        out = correlate(nhwc(x), g, wmat, b)
    elif w.shape[1] == 1:  # depthwise: each channel feeds its own FN/C filters
        c = x.shape[1]
        wt = w.reshape(c, fn // c, g.fh, g.fw).transpose(2, 3, 0, 1)[:, :, :, None, :]  # (FH, FW, C, 1, FN/C)
        out = depthwise_correlate(nhwc(x)[..., None], g, wt).reshape(-1, fn)
        out_rows = out.reshape(-1, g.ow * fn)
        out_rows += np.tile(b, g.ow)  # our own fresh output
    else:
        cg, fg = w.shape[1], fn // groups
        src = nhwc(x)
        out = np.empty((x.shape[0] * g.oh * g.ow, fn), dtype=x.dtype)
        for k in range(groups):  # one patch GEMM per group, written into its block of columns
            wk = w[k * fg : (k + 1) * fg]
            wmat = wk.transpose(2, 3, 1, 0).reshape(-1, fg)
            correlate(src[..., k * cg : (k + 1) * cg], g, wmat, None, out=out[:, k * fg : (k + 1) * fg])
        out_rows = out.reshape(-1, g.ow * fn)
        out_rows += np.tile(b, g.ow)  # our own fresh output
    return nchw(out.reshape(x.shape[0], g.oh, g.ow, fn))


def conv_backward(
    x: Array, w: Array, dout: Array, stride: Pair, pad: Pair, groups: int, input_grad: bool
) -> tuple[Array | None, Array, Array]:
    """``(dx or None, dw, db)`` of :func:`conv_forward` for ``dout`` ``(N, FN, OH, OW)``."""
    if groups != 1:
        return _grouped_backward(x, w, dout, stride, pad, groups, input_grad)
    n, c, h, wd = x.shape
    fn, _, fh, fw = w.shape
    g = geometry(h, wd, (fh, fw), stride, pad)
    d2 = np.ascontiguousarray(nhwc(dout)).reshape(-1, fn)  # (N*OH*OW, FN); free for our own outputs
    # dw = patches^T @ dout, accumulated over chunks of the batch (patches are rebuilt, not kept)
    ones = is_k_major(c)  # the patches then end with a column of ones, whose row of dw is db
    dwmat = np.zeros((fh * fw * c + int(ones), fn), dtype=dout.dtype)
    for rows, col in patch_chunks(nhwc(x), g, ones):
        dwmat += col.T @ d2[rows]
    dw = np.ascontiguousarray(dwmat[: fh * fw * c].reshape(fh, fw, c, fn).transpose(3, 2, 0, 1))
    # db = column sums of dout, as a GEMV (BLAS) rather than a NumPy reduction
    db = dwmat[-1].copy() if ones else np.ones(d2.shape[0], d2.dtype) @ d2
    if not input_grad:
        return None, dw, db
    if stride != (1, 1):
        wmat = w.transpose(2, 3, 1, 0).reshape(-1, fn)  # rows (i, j, c), as in conv_forward
        return nchw(correlate_adjoint(d2.reshape(n, g.oh, g.ow, fn), g, wmat, h, wd)), dw, db
    gd = _input_grad_geometry(h, wd, fh, fw, stride, pad)
    wflip = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(-1, c)  # rows (i, j, f)
    dx = correlate(d2.reshape(n, g.oh, g.ow, fn), gd, wflip, None)
    return nchw(dx.reshape(n, h, wd, c)), dw, db


def _input_grad_geometry(h: int, wd: int, fh: int, fw: int, stride: Pair, pad: Pair) -> PatchGeometry:
    # dx[n, y, x, c] = sum_{f,i,j} dout_dilated_padded[n, y + i, x + j, f] * w[f, c, FH-1-i, FW-1-j]:
    # dout with (stride - 1) zeros between its pixels and FH-1-pad zeros around it (a negative
    # amount crops) correlated, stride 1, with the flipped kernel whose channel axes swap roles.
    return PatchGeometry(
        fh=fh, fw=fw, sh=1, sw=1, hb=h + fh - 1, wb=wd + fw - 1,
        offset=(fh - 1 - pad[0], fw - 1 - pad[1]), dilation=stride, oh=h, ow=wd,
    )  # fmt: skip


def _grouped_backward(
    x: Array, w: Array, dout: Array, stride: Pair, pad: Pair, groups: int, input_grad: bool
) -> tuple[Array | None, Array, Array]:
    """:func:`conv_backward` group by group: each group is an ungrouped convolution of its channels."""
    n, c, h, wd = x.shape
    fn, cg, fh, fw = w.shape
    fg = fn // groups
    g = geometry(h, wd, (fh, fw), stride, pad)
    src = nhwc(x)
    d2 = np.ascontiguousarray(nhwc(dout)).reshape(-1, fn)
    if cg == 1:
        return _depthwise_backward(x, w, d2, g, stride, pad, input_grad)
    dw = np.empty(w.shape, dtype=dout.dtype)
    for k in range(groups):
        d2k = d2[:, k * fg : (k + 1) * fg]
        dwmat = np.zeros((fh * fw * cg, fg), dtype=dout.dtype)
        for rows, col in patch_chunks(src[..., k * cg : (k + 1) * cg], g):
            dwmat += col.T @ d2k[rows]
        dw[k * fg : (k + 1) * fg] = dwmat.reshape(fh, fw, cg, fg).transpose(3, 2, 0, 1)
    db = np.ones(d2.shape[0], d2.dtype) @ d2
    if not input_grad:
        return None, dw, db
    gd = _input_grad_geometry(h, wd, fh, fw, stride, pad)
    dx = np.empty((n * h * wd, c), dtype=dout.dtype)
    for k in range(groups):
        wk = w[k * fg : (k + 1) * fg]
        wflip = wk[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(-1, cg)  # rows (i, j, f)
        d2k = d2[:, k * fg : (k + 1) * fg].reshape(n, g.oh, g.ow, fg)
        correlate(d2k, gd, wflip, None, out=dx[:, k * cg : (k + 1) * cg])
    return nchw(dx.reshape(n, h, wd, c)), dw, db


def _depthwise_backward(
    x: Array, w: Array, d2: Array, g: PatchGeometry, stride: Pair, pad: Pair, input_grad: bool
) -> tuple[Array | None, Array, Array]:
    """:func:`conv_backward` for ``groups == C``: one multiply-add pass per kernel tap."""
    n, c, h, wd = x.shape
    fn, _, fh, fw = w.shape
    m = fn // c
    d5 = d2.reshape(n, g.oh, g.ow, c, m)
    dwt = depthwise_weight_grad(nhwc(x), g, d5)  # (FH, FW, C, M)
    dw = np.ascontiguousarray(dwt.transpose(2, 3, 0, 1)).reshape(fn, 1, fh, fw)
    db = np.ones(d2.shape[0], d2.dtype) @ d2
    if not input_grad:
        return None, dw, db
    gd = _input_grad_geometry(h, wd, fh, fw, stride, pad)
    wflip = w.reshape(c, m, fh, fw)[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)[..., None]  # (FH, FW, C, M, 1)
    dx = depthwise_correlate(d5, gd, wflip)
    return nchw(dx.reshape(n, h, wd, c)), dw, db
