"""Convolution and pooling layers (the book's chapter 7), NCHW in and out, weights ``(FN, C, FH, FW)``.

The book's ``im2col`` / ``col2im`` are here as public functions with the book's row and column
order, so its trained weights work unchanged. The layers themselves compute the same functions
faster; three choices do most of the work:

- **Channels-last scratch.** Internally a batch is read as ``(N, H, W, C)``: a patch row then holds
  ``FW * C`` neighbouring numbers, and the GEMM ``(N*OH*OW, K) @ (K, FN)`` writes ``(N, OH, OW, FN)``
  memory that *is* the NCHW output seen through ``transpose(0, 3, 1, 2)``: no transpose copy.
  Outputs are therefore NCHW arrays with channels-last strides; every NumPy operation treats them
  as the NCHW arrays they are, and ReLU/pooling keep that memory order, so the next convolution
  reads them for free.
- **Chunks of the batch.** Patches are built for a few samples at a time into one scratch buffer
  that stays in cache and is multiplied at once, instead of one patch matrix for the whole batch
  (tens of MB, written and read back from memory, and fresh pages each call). ``backward``
  rebuilds the patches chunk by chunk instead of keeping them: cheaper than the memory traffic.
- **The input gradient as a correlation.** ``dx`` is the stride-1 correlation of ``dout`` (dilated
  by the stride and zero-padded) with the flipped, channel-swapped kernel: another patch GEMM
  instead of a scatter-add ``col2im``.

Pooling takes one strided view per window cell (``x[:, :, i::sh, j::sw]``), so ``max`` is a few
``np.maximum`` calls and its gradient goes, without fancy indexing, to the first maximal cell of
each window. Everything stays in the input's dtype; no input array is ever written to.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import attrs
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fnnet.typing import Array, Shape
from fnnet.initializers import HeNormal, Initializer, Zeros
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, check_dtype, check_rank, no_input_grad, positive_int
from fnnet.parallel import blas_threads
from fnnet.random import Key, split

__all__ = [
    "im2col",
    "col2im",
    "conv_output_size",
    "ConvParams",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
]

Pair = tuple[int, int]

#: Bytes of patch matrix built per chunk of samples. A few MB keeps the chunk in the L2/L3 cache
#: between the copy that builds it and the GEMM that reads it.
CHUNK_BYTES = 1 << 20


def conv_output_size(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    """Output length ``(size + 2*pad - kernel) // stride + 1`` of a convolution or pooling window.

    Raises:
        ValueError: if the kernel is larger than the padded input.
    """
    if size + 2 * pad < kernel:
        raise ValueError(f"kernel {kernel} does not fit an input of size {size} with pad {pad}")
    return (size + 2 * pad - kernel) // stride + 1


def _pair(value: Any) -> Any:
    """``3 -> (3, 3)``; a 2-sequence becomes a tuple; anything else is left for the validator."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(value)
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _positive_pair(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value)):
        raise ValueError(
            f"{type(inst).__name__}: {attribute.name} must be a positive int or a pair of positive ints, "
            f"got {value!r}"
        )


def _nonneg_pair(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) and v >= 0 for v in value)):
        raise ValueError(
            f"{type(inst).__name__}: {attribute.name} must be a non-negative int or a pair of them, got {value!r}"
        )


def _pair_arg(name: str, value: Any, minimum: int) -> Pair:
    p = _pair(value)
    if not (isinstance(p, tuple) and len(p) == 2 and all(_is_int(v) and v >= minimum for v in p)):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return (int(p[0]), int(p[1]))


# --- the book's im2col / col2im ------------------------------------------------------------------


def im2col(x: Array, fh: int, fw: int, stride: int | Pair = 1, pad: int | Pair = 0) -> Array:
    """Unfold every ``(C, FH, FW)`` patch of ``x`` into one row (the book's ``im2col``).

    Args:
        x: input ``(N, C, H, W)``; never modified.
        fh, fw: patch height and width.
        stride, pad: an int or an ``(along H, along W)`` pair; padding is with zeros.
    Returns:
        ``col`` of shape ``(N*OH*OW, C*FH*FW)``, a new contiguous array of ``x``'s dtype. Row
        ``(n*OH + oh)*OW + ow`` holds the patch at output pixel ``(oh, ow)`` of sample ``n``;
        column ``c*FH*FW + i*FW + j`` holds ``x_padded[n, c, oh*sh + i, ow*sw + j]``, so
        ``col @ w.reshape(FN, -1).T`` is the convolution with weights ``w`` of shape
        ``(FN, C, FH, FW)``.
    """
    if x.ndim != 4:
        raise ValueError(f"im2col: expected x of rank 4 (N, C, H, W), got shape {x.shape}")
    (sh, sw), (ph, pw) = _pair_arg("im2col: stride", stride, 1), _pair_arg("im2col: pad", pad, 0)
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, fh, sh, ph), conv_output_size(w, fw, sw, pw)
    xp = _padded(x, ph, pw, axes=(2, 3))
    # windows[n, c, oh, ow, i, j] = xp[n, c, oh*sh + i, ow*sw + j]
    windows = sliding_window_view(xp, (fh, fw), axis=(2, 3))[:, :, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw]
    col = np.empty((n, oh, ow, c, fh, fw), dtype=x.dtype)
    np.copyto(col, windows.transpose(0, 2, 3, 1, 4, 5))
    return col.reshape(n * oh * ow, c * fh * fw)


def col2im(
    col: Array, x_shape: tuple[int, ...], fh: int, fw: int, stride: int | Pair = 1, pad: int | Pair = 0
) -> Array:
    """Fold patch rows back onto an image, summing where patches overlap (the adjoint of ``im2col``).

    Args:
        col: ``(N*OH*OW, C*FH*FW)`` in :func:`im2col`'s order; never modified.
        x_shape: ``(N, C, H, W)``, the shape of the image ``im2col`` was applied to.
        fh, fw, stride, pad: as for :func:`im2col`.
    Returns:
        ``(N, C, H, W)`` of ``col``'s dtype: ``<im2col(x), col> == <x, col2im(col)>`` for every ``x``.
    """
    if len(x_shape) != 4:
        raise ValueError(f"col2im: expected x_shape (N, C, H, W), got {x_shape}")
    (sh, sw), (ph, pw) = _pair_arg("col2im: stride", stride, 1), _pair_arg("col2im: pad", pad, 0)
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, fh, sh, ph), conv_output_size(w, fw, sw, pw)
    if col.shape != (n * oh * ow, c * fh * fw):
        raise ValueError(f"col2im: expected col of shape {(n * oh * ow, c * fh * fw)} for x_shape {x_shape}, got {col.shape}")
    patches = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)  # (N, C, FH, FW, OH, OW)
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
    for i in range(fh):
        for j in range(fw):
            dxp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw] += patches[:, :, i, j]
    return dxp[:, :, ph : ph + h, pw : pw + w]


def _padded(x: Array, ph: int, pw: int, axes: tuple[int, int], fill: float = 0.0) -> Array:
    """``x`` inside a new buffer with ``ph``/``pw`` cells of ``fill`` around ``axes`` (``x`` if no pad)."""
    if ph == 0 and pw == 0:
        return x
    shape = list(x.shape)
    shape[axes[0]] += 2 * ph
    shape[axes[1]] += 2 * pw
    xp = np.full(shape, fill, dtype=x.dtype)
    index = [slice(None)] * x.ndim
    index[axes[0]] = slice(ph, ph + x.shape[axes[0]])
    index[axes[1]] = slice(pw, pw + x.shape[axes[1]])
    xp[tuple(index)] = x
    return xp


# --- channels-last patch GEMMs (the fast path behind Conv2D) --------------------------------------


def _nhwc(x: Array) -> Array:
    """The ``(N, H, W, C)`` view of an ``(N, C, H, W)`` array (no copy)."""
    return x.transpose(0, 2, 3, 1)


def _nchw(x: Array) -> Array:
    """The ``(N, C, H, W)`` view of an ``(N, H, W, C)`` array (no copy)."""
    return x.transpose(0, 3, 1, 2)


def _placement(n_src: int, n_buf: int, offset: int, step: int) -> tuple[slice, slice]:
    """Slices putting source index ``k`` at buffer index ``offset + step*k``, dropping what falls outside."""
    k_lo = max(0, -(offset // step))  # first k with offset + step*k >= 0
    k_hi = min(n_src, (n_buf - 1 - offset) // step + 1)  # one past the last k inside the buffer
    if k_hi <= k_lo:
        return slice(0, 0), slice(0, 0)
    start = offset + step * k_lo
    return slice(k_lo, k_hi), slice(start, start + step * (k_hi - k_lo - 1) + 1, step)


class _Patches(NamedTuple):
    """How to unfold a channels-last batch ``(N, H, W, C)`` into patch rows.

    The source is placed into a zero buffer ``(Hb, Wb)`` at ``offset`` with ``dilation`` (padding,
    and for the input gradient also the stride's zero-insertion), then patches ``(FH, FW)`` are
    taken with ``stride``. Columns are ordered ``(i, j, c)``, rows ``(n, oh, ow)``.
    """

    fh: int
    fw: int
    sh: int
    sw: int
    hb: int
    wb: int
    offset: Pair
    dilation: Pair
    oh: int
    ow: int


def _geometry(h: int, w: int, kernel: Pair, stride: Pair, pad: Pair) -> _Patches:
    fh, fw = kernel
    oh, ow = conv_output_size(h, fh, stride[0], pad[0]), conv_output_size(w, fw, stride[1], pad[1])
    return _Patches(fh, fw, stride[0], stride[1], h + 2 * pad[0], w + 2 * pad[1], pad, (1, 1), oh, ow)


def _k_major(c: int) -> bool:
    """Whether patches of ``c``-channel inputs are stored as ``(K, rows)``: with one channel that
    copies whole patch rows of OW numbers at a time (channels-last rows hold only FW numbers).
    Such short ``K`` also gets the bias as an extra column of ones, which costs the GEMM nothing
    and saves a pass over the output (and gives ``db`` with ``dw``)."""
    return c == 1


def _patch_chunks(src: Array, g: _Patches, ones: bool = False) -> Iterator[tuple[slice, Array]]:
    """Yield ``(rows, col)`` for chunks of the batch: ``col`` is ``(n*OH*OW, FH*FW*C)`` for the samples
    whose output rows are ``rows`` (with a last column of ones if ``ones``).

    ``col`` lives in one scratch buffer reused for every chunk (it is only valid until the next
    one); it may be stored transposed (``(K, n*OH*OW)`` memory, read through ``.T``), see
    :func:`_k_major`.
    """
    n_total, h, w, c = src.shape
    p = g.oh * g.ow
    k = g.fh * g.fw * c
    chunk = max(1, min(n_total, CHUNK_BYTES // max(1, p * k * src.dtype.itemsize)))
    direct = (g.hb, g.wb) == (h, w) and g.offset == (0, 0) and g.dilation == (1, 1) and src[0].flags.c_contiguous
    buf = None if direct else np.zeros((chunk, g.hb, g.wb, c), dtype=src.dtype)
    hs_src, hs_buf = _placement(h, g.hb, g.offset[0], g.dilation[0])
    ws_src, ws_buf = _placement(w, g.wb, g.offset[1], g.dilation[1])
    # window views are built once; each chunk slices them (patches[n, oh, ow, i, j, c])
    patches = _windows(src if buf is None else buf, g)
    k_major = _k_major(c)
    kk = k + 1 if ones else k
    scratch = np.empty((kk, chunk * p) if k_major else (chunk * p, kk), dtype=src.dtype)
    if k_major:
        scratch[k:] = 1
        dst = scratch[:k].reshape(g.fh, g.fw, c, chunk, g.oh, g.ow)
        patches = patches.transpose(3, 4, 5, 0, 1, 2)  # (i, j, c, n, oh, ow)
    else:
        scratch[:, k:] = 1
        dst = scratch[:, :k].reshape(chunk, g.oh, g.ow, g.fh, g.fw, c)
    for s in range(0, n_total, chunk):
        e = min(n_total, s + chunk)
        n = e - s
        if buf is not None:
            buf[:n, hs_buf, ws_buf] = src[s:e, hs_src, ws_src]
        if k_major:
            np.copyto(dst[:, :, :, :n], patches[:, :, :, : n] if buf is not None else patches[:, :, :, s:e])
            yield slice(s * p, e * p), scratch[:, : n * p].T
        else:
            np.copyto(dst[:n], patches[:n] if buf is not None else patches[s:e])
            yield slice(s * p, e * p), scratch[: n * p]


def _windows(xb: Array, g: _Patches) -> Array:
    """The view ``(n, OH, OW, FH, FW, C)`` of ``xb`` ``(n, Hb, Wb, C)``: ``[n, oh, ow, i, j, c] =
    xb[n, oh*sh + i, ow*sw + j, c]``."""
    windows = sliding_window_view(xb, (g.fh, g.fw), axis=(1, 2))  # (n, H', W', C, FH, FW)
    return windows[:, : g.sh * (g.oh - 1) + 1 : g.sh, : g.sw * (g.ow - 1) + 1 : g.sw].transpose(0, 1, 2, 4, 5, 3)


def _correlate(src: Array, g: _Patches, wmat: Array, b: Array | None) -> Array:
    """``(N*OH*OW, FN)`` rows ``patches(src) @ wmat (+ b)``, chunk by chunk.

    Args:
        src: ``(N, H, W, C)`` (any strides).
        wmat: ``(FH*FW*C, FN)`` in the patch column order ``(i, j, c)``.
    """
    fn = wmat.shape[1]
    out = np.empty((src.shape[0] * g.oh * g.ow, fn), dtype=src.dtype)
    k_major = _k_major(src.shape[3])
    if b is not None and k_major:
        wmat = np.concatenate([wmat, b[None, :]])  # the patches get a column of ones
    # one output row (OW pixels x FN) of biases: longer add loops than adding b to each pixel
    b_row = None if b is None or k_major else np.tile(b, g.ow)
    stage = None
    # A short-K GEMM mostly writes its output; writing fresh pages from several BLAS threads costs
    # several times more (they serialise on page faults) than copying them here from a staging
    # buffer. A single-threaded BLAS (as inside a sharded train step) writes them directly.
    staged = k_major and blas_threads() != 1
    for rows, col in _patch_chunks(src, g, ones=b is not None and k_major):
        o = out[rows]
        if staged:
            stage = np.empty_like(o) if stage is None else stage
            np.matmul(col, wmat, out=stage[: len(o)])
            np.copyto(o, stage[: len(o)])
        else:
            np.matmul(col, wmat, out=o)
        if b_row is not None:
            o_rows = o.reshape(-1, g.ow * fn)
            o_rows += b_row  # our own fresh output: adding in place touches nobody's array
    return out


# --- Conv2D -------------------------------------------------------------------------------------


class ConvParams(NamedTuple):
    """Parameters of :class:`Conv2D`: ``w`` of shape ``(FN, C, FH, FW)``, ``b`` of shape ``(FN,)``."""

    w: Array
    b: Array


class ConvCache(NamedTuple):
    x: Array  # the input (N, C, H, W), as given
    out_shape: tuple[int, ...]
    input_grad: bool


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

    splits_well: ClassVar[bool] = True  # each weight is used at every output pixel

    out_channels: int = attrs.field(validator=positive_int)
    kernel: Pair = attrs.field(converter=_pair, validator=_positive_pair)
    stride: Pair = attrs.field(default=(1, 1), converter=_pair, validator=_positive_pair)
    pad: Pair = attrs.field(default=(0, 0), converter=_pair, validator=_nonneg_pair)
    w_init: Initializer = attrs.field(factory=HeNormal)
    b_init: Initializer = attrs.field(factory=Zeros)

    def _geometry(self, h: int, w: int, kernel: Pair) -> _Patches:
        if h + 2 * self.pad[0] < kernel[0] or w + 2 * self.pad[1] < kernel[1]:
            raise ValueError(
                f"{self.name}: kernel {kernel} does not fit input (H, W) = {(h, w)} with pad {self.pad}"
            )
        return _geometry(h, w, kernel, self.stride, self.pad)

    def init(self, key: Key, in_shape: Shape) -> tuple[ConvParams, Shape]:
        """He-initialised weights ``(FN, C, FH, FW)`` and zero biases for inputs ``(N, C, H, W)``.

        Returns:
            ``(params, (FN, OH, OW))``.
        """
        if len(in_shape) != 3:
            raise ValueError(f"{self.name}: expected in_shape (C, H, W), got {tuple(in_shape)}")
        c, h, w = in_shape
        g = self._geometry(h, w, self.kernel)
        fh, fw = self.kernel
        kw, kb = split(key)
        weights = self.w_init(kw, (self.out_channels, c, fh, fw), c * fh * fw, self.out_channels * fh * fw)
        bias = self.b_init(kb, (self.out_channels,), c * fh * fw, self.out_channels * fh * fw)
        return ConvParams(weights, bias), (self.out_channels, g.oh, g.ow)

    def forward(self, params: ConvParams, x: Array, ctx: Ctx = EVAL) -> tuple[Array, ConvCache]:
        """Convolve ``x`` with ``params.w`` and add ``params.b``.

        Args:
            params: :class:`ConvParams` with ``w`` ``(FN, C, FH, FW)`` and ``b`` ``(FN,)``.
            x: ``(N, C, H, W)`` of the parameters' dtype; never modified.
            ctx: ``ctx.input_grad=False`` lets :meth:`backward` skip ``dx``.
        Returns:
            ``(y, cache)`` with ``y`` of shape ``(N, FN, OH, OW)`` (channels-last strides).
        """
        w = params.w
        if w.ndim != 4 or w.shape[2:] != self.kernel or params.b.shape != (w.shape[0],):
            raise ValueError(
                f"{self.name}: expected params w of shape (FN, C, {self.kernel[0]}, {self.kernel[1]}) and b of "
                f"shape (FN,), got w {w.shape} and b {params.b.shape}"
            )
        check_rank(self, x, 4, "input (N, C, H, W)")
        if x.shape[1] != w.shape[1]:
            raise ValueError(
                f"{self.name}: expected input with {w.shape[1]} channels (N, {w.shape[1]}, H, W), got shape {x.shape}"
            )
        if x.dtype != w.dtype:
            check_dtype(self, x, w.dtype)
        fn = w.shape[0]
        g = self._geometry(x.shape[2], x.shape[3], self.kernel)
        # columns (i, j, c) match the channels-last patches
        wmat = w.transpose(2, 3, 1, 0).reshape(-1, fn)
        out = _correlate(_nhwc(x), g, wmat, params.b)
        y = _nchw(out.reshape(x.shape[0], g.oh, g.ow, fn))
        return y, ConvCache(x, y.shape, ctx.input_grad)

    def backward(self, params: ConvParams, cache: ConvCache, dout: Array) -> tuple[Array, ConvParams]:
        """Gradients of the convolution.

        Args:
            params: as in :meth:`forward`.
            cache: from :meth:`forward`.
            dout: ``dL/dy``, shape ``(N, FN, OH, OW)``.
        Returns:
            ``(dx, ConvParams(dw, db))``: ``dx`` ``(N, C, H, W)`` (read-only zeros if the forward
            context said ``input_grad=False``), ``dw`` ``(FN, C, FH, FW)``, ``db`` ``(FN,)``.
        """
        if dout.shape != cache.out_shape:
            check_dout(self, dout, cache.out_shape)
        x, w = cache.x, params.w
        n, c, h, wd = x.shape
        fn, _, fh, fw = w.shape
        g = _geometry(h, wd, (fh, fw), self.stride, self.pad)
        d2 = np.ascontiguousarray(_nhwc(dout)).reshape(-1, fn)  # (N*OH*OW, FN); free for our own outputs
        # dw = patches^T @ dout, accumulated over chunks of the batch (patches are rebuilt, not kept)
        ones = _k_major(c)  # the patches then end with a column of ones, whose row of dw is db
        dwmat = np.zeros((fh * fw * c + int(ones), fn), dtype=dout.dtype)
        for rows, col in _patch_chunks(_nhwc(x), g, ones):
            dwmat += col.T @ d2[rows]
        dw = np.ascontiguousarray(dwmat[: fh * fw * c].reshape(fh, fw, c, fn).transpose(3, 2, 0, 1))
        # db = column sums of dout; BLAS is ~5x faster than d2.sum(axis=0) here
        db = dwmat[-1].copy() if ones else np.ones(d2.shape[0], d2.dtype) @ d2
        if not cache.input_grad:
            return no_input_grad(x.shape, dout.dtype), ConvParams(dw, db)
        # dx[n, y, x, c] = sum_{f,i,j} dout_dilated_padded[n, y + i, x + j, f] * w[f, c, FH-1-i, FW-1-j]:
        # dout with (stride - 1) zeros between its pixels and FH-1-pad zeros around it (a negative
        # amount crops) correlated, stride 1, with the flipped kernel whose channel axes swap roles.
        gd = _Patches(
            fh=fh, fw=fw, sh=1, sw=1, hb=h + fh - 1, wb=wd + fw - 1,
            offset=(fh - 1 - self.pad[0], fw - 1 - self.pad[1]), dilation=self.stride, oh=h, ow=wd,
        )  # fmt: skip
        wflip = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(-1, c)  # rows (i, j, f)
        dx = _correlate(d2.reshape(n, g.oh, g.ow, fn), gd, wflip, None)
        return _nchw(dx.reshape(n, h, wd, c)), ConvParams(dw, db)


# --- pooling ------------------------------------------------------------------------------------


class PoolCache(NamedTuple):
    x: Array  # the input (N, C, H, W), as given
    y: Array  # the output (N, C, OH, OW)
    input_grad: bool


def _channels_last(x: Array) -> bool:
    return bool(_nhwc(x).flags.c_contiguous) and not x.flags.c_contiguous


def _same_order(a: Array, like: Array) -> Array:
    """``a`` in ``like``'s memory order (channels-last or C order); copied only if the orders differ.

    Elementwise operations on arrays of different memory orders run many times slower.
    """
    if _channels_last(like):
        return a if _channels_last(a) else _nchw(np.ascontiguousarray(_nhwc(a)))
    return np.ascontiguousarray(a)


def _alloc(like: Array, shape: tuple[int, int, int, int], fill: float | None) -> Array:
    """A new ``(N, C, H, W)`` array with ``like``'s dtype and memory order, filled with ``fill``."""
    n, c, h, w = shape
    if _channels_last(like):
        buf = np.empty((n, h, w, c), like.dtype) if fill is None else np.full((n, h, w, c), fill, like.dtype)
        return _nchw(buf)
    return np.empty(shape, like.dtype) if fill is None else np.full(shape, fill, like.dtype)


@attrs.frozen
class _Pool2D(Layer):
    """Shared fields and shape logic of the pooling layers: windows ``(wh, ww)`` moved by ``stride``."""

    window: Pair = attrs.field(converter=_pair, validator=_positive_pair)
    stride: Pair | None = attrs.field(default=None, converter=attrs.converters.optional(_pair),
                                      validator=attrs.validators.optional(_positive_pair))
    pad: Pair = attrs.field(default=(0, 0), converter=_pair, validator=_nonneg_pair)

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
    def strides(self) -> Pair:
        """The effective stride (the window when ``stride`` is ``None``)."""
        return self.window if self.stride is None else self.stride

    def _out_hw(self, h: int, w: int) -> Pair:
        (wh, ww), (sh, sw), (ph, pw) = self.window, self.strides, self.pad
        if h + 2 * ph < wh or w + 2 * pw < ww:
            raise ValueError(f"{self.name}: window {self.window} does not fit input (H, W) = {(h, w)} with pad {self.pad}")
        return conv_output_size(h, wh, sh, ph), conv_output_size(w, ww, sw, pw)

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        """No parameters; ``(C, H, W) -> (C, OH, OW)``."""
        if len(in_shape) != 3:
            raise ValueError(f"{self.name}: expected in_shape (C, H, W), got {tuple(in_shape)}")
        c, h, w = in_shape
        return None, (c, *self._out_hw(h, w))

    def _check(self, x: Array) -> Pair:
        check_rank(self, x, 4, "input (N, C, H, W)")
        if x.dtype.kind != "f":
            raise ValueError(f"{self.name}: expected a floating point input, got dtype {x.dtype}")
        return self._out_hw(x.shape[2], x.shape[3])

    def _windows(self, oh: int, ow: int) -> Iterator[tuple[slice, slice]]:
        """For each offset ``(i, j)`` inside the window, in row-major order: the slices of the padded
        input that hold ``x_pad[:, :, oh*sh + i, ow*sw + j]`` for all output pixels."""
        (wh, ww), (sh, sw) = self.window, self.strides
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
        return self.strides == self.window and self.pad == (0, 0) and h % self.window[0] == 0 and w % self.window[1] == 0

    def _disjoint(self) -> bool:
        return self.strides[0] >= self.window[0] and self.strides[1] >= self.window[1]


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
    """

    def forward(self, params: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, PoolCache]:
        """Maximum over each window.

        Args:
            params: ``None``.
            x: ``(N, C, H, W)``, floating point; never modified.
        Returns:
            ``(y, cache)`` with ``y`` ``(N, C, OH, OW)`` in ``x``'s memory order.
        """
        y = self._fold(x, -np.inf, np.maximum)
        return y, PoolCache(x, y, ctx.input_grad)

    def backward(self, params: None, cache: PoolCache, dout: Array) -> tuple[Array, None]:
        """Route ``dout`` to the (first) maximal cell of each window.

        Returns:
            ``(dx, None)`` with ``dx`` of the input's shape.
        """
        x, y = cache.x, cache.y
        if dout.shape != y.shape:
            check_dout(self, dout, y.shape)
        if not cache.input_grad:
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
    """

    def forward(self, params: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, PoolCache]:
        """Mean over each window.

        Args:
            params: ``None``.
            x: ``(N, C, H, W)``, floating point; never modified.
        Returns:
            ``(y, cache)`` with ``y`` ``(N, C, OH, OW)`` in ``x``'s memory order.
        """
        y = self._fold(x, 0.0, np.add)
        y *= x.dtype.type(1.0 / math.prod(self.window))  # y is our own fresh array
        return y, PoolCache(x, y, ctx.input_grad)

    def backward(self, params: None, cache: PoolCache, dout: Array) -> tuple[Array, None]:
        """Spread ``dout / (wh*ww)`` evenly over each window.

        Returns:
            ``(dx, None)`` with ``dx`` of the input's shape.
        """
        x, y = cache.x, cache.y
        if dout.shape != y.shape:
            check_dout(self, dout, y.shape)
        if not cache.input_grad:
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


def _check_pool_pad(layer: _Pool2D) -> None:
    if layer.pad[0] >= layer.window[0] or layer.pad[1] >= layer.window[1]:
        raise ValueError(f"{layer.name}: pad {layer.pad} must be smaller than the window {layer.window}")
