"""Convolution (the book's chapter 7), NCHW in and out, weights ``(FN, C, FH, FW)``.

The kernels (patch building and GEMMs) live in :mod:`fnnet.layers._patches`.

>>> import numpy as np, fnnet
>>> conv = fnnet.Conv2D(4, 3, pad=1)
>>> conv.out_shape((1, 28, 28))
(4, 28, 28)
>>> params, _ = conv.init(fnnet.key(0), (1, 28, 28))
>>> conv.apply(params, np.zeros((2, 1, 28, 28), np.float32)).shape
(2, 4, 28, 28)
"""

from __future__ import annotations

from typing import NamedTuple

import attrs
import numpy as np

from fnnet._validate import positive_int
from fnnet.initializers import HeNormal, Initializer, Zeros
from fnnet.layers._patches import (
    Pair, PatchGeometry, correlate, geometry, is_k_major, nchw, nhwc, nonneg_pair, pair, patch_chunks, positive_pair,
)
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, check_dtype, check_rank, no_input_grad
from fnnet.random import Key, split
from fnnet.typing import Array, Shape

__all__ = ["ConvParams", "Conv2D"]


# --- Conv2D -------------------------------------------------------------------------------------


class ConvParams(NamedTuple):
    """Parameters of :class:`Conv2D`: ``w`` of shape ``(FN, C, FH, FW)``, ``b`` of shape ``(FN,)``."""

    w: Array
    b: Array


class ConvCache(NamedTuple):
    x: Array  # the input (N, C, H, W), as given
    out_shape: tuple[int, ...]


@attrs.frozen
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in the book): ``(N, C, H, W) -> (N, FN, OH, OW)``.

    ``y[n, f, oh, ow] = b[f] + sum_{c,i,j} w[f, c, i, j] * x_pad[n, c, oh*sh + i, ow*sw + j]`` with
    ``OH = (H + 2*ph - FH) // sh + 1`` (likewise ``OW``) and zero padding.

    Attributes:
        out_channels: ``FN``, the number of filters.
        kernel: ``FH`` and ``FW``: an int or an ``(FH, FW)`` pair.
        stride, pad: an int or an ``(along H, along W)`` pair.
        w_init, b_init: initialisers (He normal and zeros by default); ``fan_in = C*FH*FW``.
    """

    out_channels: int = attrs.field(validator=positive_int)
    kernel: Pair = attrs.field(converter=pair, validator=positive_pair)
    stride: Pair = attrs.field(default=(1, 1), converter=pair, validator=positive_pair)
    pad: Pair = attrs.field(default=(0, 0), converter=pair, validator=nonneg_pair)
    w_init: Initializer = attrs.field(factory=HeNormal)
    b_init: Initializer = attrs.field(factory=Zeros)

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
        g = self._geometry(in_shape[1], in_shape[2], self.kernel)
        return (self.out_channels, g.oh, g.ow)

    def init(self, key: Key, in_shape: Shape) -> tuple[ConvParams, Shape]:
        """He-initialised weights ``(FN, C, FH, FW)`` and zero biases for inputs ``(N, C, H, W)``.

        Returns:
            ``(params, (FN, OH, OW))``.
        """
        out = self.out_shape(in_shape)
        c = in_shape[0]
        fh, fw = self.kernel
        kw, kb = split(key)
        weights = self.w_init(kw, (self.out_channels, c, fh, fw), c * fh * fw, self.out_channels * fh * fw)
        bias = self.b_init(kb, (self.out_channels,), c * fh * fw, self.out_channels * fh * fw)
        return ConvParams(weights, bias), out

    def forward(
        self, params: ConvParams, state: None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, None, ConvCache]:
        """Convolve ``x`` with ``params.w`` and add ``params.b``.

        Args:
            params: :class:`ConvParams` with ``w`` ``(FN, C, FH, FW)`` and ``b`` ``(FN,)``.
            state: ``None``.
            x: ``(N, C, H, W)`` of the parameters' dtype; never modified.
            ctx: unused (a convolution is the same in training and evaluation).
        Returns:
            ``(y, None, cache)`` with ``y`` of shape ``(N, FN, OH, OW)`` (channels-last strides).
        """
        w = params.w
        if w.ndim != 4 or w.shape[2:] != self.kernel or params.b.shape != (w.shape[0],):
            raise ValueError(
                f"{type(self).__name__}: expected params w of shape (FN, C, {self.kernel[0]}, {self.kernel[1]}) and b of "
                f"shape (FN,), got w {w.shape} and b {params.b.shape}"
            )
        check_rank(self, x, 4, "input (N, C, H, W)")
        if x.shape[1] != w.shape[1]:
            raise ValueError(
                f"{type(self).__name__}: expected input with {w.shape[1]} channels (N, {w.shape[1]}, H, W), got shape {x.shape}"
            )
        if x.dtype != w.dtype:
            check_dtype(self, x, w.dtype)
        fn = w.shape[0]
        g = self._geometry(x.shape[2], x.shape[3], self.kernel)
        # columns (i, j, c) match the channels-last patches
        wmat = w.transpose(2, 3, 1, 0).reshape(-1, fn)
        out = correlate(nhwc(x), g, wmat, params.b)
        y = nchw(out.reshape(x.shape[0], g.oh, g.ow, fn))
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
            ``input_grad=False``), ``dw`` ``(FN, C, FH, FW)``, ``db`` ``(FN,)``.
        """
        if dout.shape != cache.out_shape:
            check_dout(self, dout, cache.out_shape)
        x, w = cache.x, params.w
        n, c, h, wd = x.shape
        fn, _, fh, fw = w.shape
        g = geometry(h, wd, (fh, fw), self.stride, self.pad)
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
            return no_input_grad(x.shape, dout.dtype), ConvParams(dw, db)
        # dx[n, y, x, c] = sum_{f,i,j} dout_dilated_padded[n, y + i, x + j, f] * w[f, c, FH-1-i, FW-1-j]:
        # dout with (stride - 1) zeros between its pixels and FH-1-pad zeros around it (a negative
        # amount crops) correlated, stride 1, with the flipped kernel whose channel axes swap roles.
        gd = PatchGeometry(
            fh=fh, fw=fw, sh=1, sw=1, hb=h + fh - 1, wb=wd + fw - 1,
            offset=(fh - 1 - self.pad[0], fw - 1 - self.pad[1]), dilation=self.stride, oh=h, ow=wd,
        )  # fmt: skip
        wflip = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(-1, c)  # rows (i, j, f)
        dx = correlate(d2.reshape(n, g.oh, g.ow, fn), gd, wflip, None)
        return nchw(dx.reshape(n, h, wd, c)), ConvParams(dw, db)


