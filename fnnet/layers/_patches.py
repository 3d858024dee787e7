"""The kernels behind the convolution and pooling layers: the book's ``im2col`` / ``col2im`` and the
channels-last patch GEMMs.

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
  instead of a scatter-add ``col2im``. With a stride the dilation would make most of that GEMM's
  numbers zeros, so strided convolutions multiply ``dout`` by the weights and add each kernel
  tap's slice onto the pixels it read (:func:`correlate_adjoint`).

A grouped convolution runs one patch GEMM per group, each writing its block of output columns. A
depthwise one (one channel per group) would make those GEMMs a single column wide: it runs instead as
one multiply-add pass per kernel tap over channels-last views, every channel at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import attrs
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fnnet._validate import as_int, is_int
from fnnet.typing import Array

__all__ = ["im2col", "col2im", "conv_output_size"]

Pair = tuple[int, int]

#: Bytes of patch matrix built per chunk of samples. A few MB keeps the chunk in the L2/L3 cache
#: between the copy that builds it and the GEMM that reads it.
CHUNK_BYTES = 1 << 20


def conv_output_size(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    """Output length ``(size + 2*pad - kernel) // stride + 1`` of a convolution or pooling window.

    Raises:
        ValueError: if the kernel is larger than the padded input.

    >>> from fnnet.layers import conv_output_size
    >>> conv_output_size(28, 5), conv_output_size(28, 3, stride=2, pad=1), conv_output_size(4, 2, 2)
    (24, 14, 2)
    """
    if size + 2 * pad < kernel:
        raise ValueError(f"kernel {kernel} does not fit an input of size {size} with pad {pad}")
    return (size + 2 * pad - kernel) // stride + 1


def pair(value: Any) -> Any:
    """``3 -> (3, 3)``; a 2-sequence becomes a tuple (NumPy integers as ints); anything else is left
    for the validator."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(as_int(v) for v in value)
    return value


def positive_pair(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and all(is_int(v) and v > 0 for v in value)):
        raise ValueError(
            f"{type(inst).__name__}: {attribute.name} must be a positive int or a pair of positive ints, "
            f"got {value!r}"
        )


def nonneg_pair(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and all(is_int(v) and v >= 0 for v in value)):
        raise ValueError(
            f"{type(inst).__name__}: {attribute.name} must be a non-negative int or a pair of them, got {value!r}"
        )


def pair_arg(name: str, value: Any, minimum: int) -> Pair:
    p = pair(value)
    if not (isinstance(p, tuple) and len(p) == 2 and all(is_int(v) and v >= minimum for v in p)):
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

    >>> import numpy as np, fnnet
    >>> from fnnet.layers import im2col
    >>> x = fnnet.key(0).generator().normal(size=(2, 3, 4, 4)).astype(np.float32)
    >>> col = im2col(x, 3, 3)
    >>> col.shape  # (N*OH*OW, C*FH*FW) = (2*2*2, 3*3*3)
    (8, 27)
    >>> bool((col[1, :3] == x[0, 0, 0, 1:4]).all())  # patch (oh, ow) = (0, 1), channel 0, row 0
    True
    >>> conv = fnnet.Conv2D(5, 3)
    >>> params, _ = conv.init(fnnet.key(1), (3, 4, 4))
    >>> y = (col @ params.w.reshape(5, -1).T + params.b).reshape(2, 2, 2, 5).transpose(0, 3, 1, 2)
    >>> y.shape, bool(np.allclose(y, conv.apply(params, x), atol=1e-5))
    ((2, 5, 2, 2), True)
    """
    if x.ndim != 4:
        raise ValueError(f"im2col: expected x of rank 4 (N, C, H, W), got shape {x.shape}")
    (sh, sw), (ph, pw) = pair_arg("im2col: stride", stride, 1), pair_arg("im2col: pad", pad, 0)
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, fh, sh, ph), conv_output_size(w, fw, sw, pw)
    xp = padded(x, ph, pw, axes=(2, 3))
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

    >>> import numpy as np
    >>> from fnnet.layers import col2im, im2col
    >>> x = np.ones((1, 1, 3, 3), np.float32)
    >>> col = im2col(x, 2, 2)
    >>> col.shape
    (4, 4)
    >>> col2im(col, x.shape, 2, 2)[0, 0].tolist()  # how many 2x2 patches cover each pixel
    [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    if len(x_shape) != 4:
        raise ValueError(f"col2im: expected x_shape (N, C, H, W), got {x_shape}")
    (sh, sw), (ph, pw) = pair_arg("col2im: stride", stride, 1), pair_arg("col2im: pad", pad, 0)
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


def padded(x: Array, ph: int, pw: int, axes: tuple[int, int], fill: float = 0.0) -> Array:
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


def nhwc(x: Array) -> Array:
    """The ``(N, H, W, C)`` view of an ``(N, C, H, W)`` array (no copy)."""
    return x.transpose(0, 2, 3, 1)


def nchw(x: Array) -> Array:
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


class PatchGeometry(NamedTuple):
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


def geometry(h: int, w: int, kernel: Pair, stride: Pair, pad: Pair) -> PatchGeometry:
    fh, fw = kernel
    oh, ow = conv_output_size(h, fh, stride[0], pad[0]), conv_output_size(w, fw, stride[1], pad[1])
    return PatchGeometry(fh, fw, stride[0], stride[1], h + 2 * pad[0], w + 2 * pad[1], pad, (1, 1), oh, ow)


def is_k_major(c: int) -> bool:
    """Whether patches of ``c``-channel inputs are stored as ``(K, rows)``: with one channel that
    copies whole patch rows of OW numbers at a time (channels-last rows hold only FW numbers).
    Such short ``K`` also gets the bias as an extra column of ones, which costs the GEMM nothing
    and saves a pass over the output (and gives ``db`` with ``dw``)."""
    return c == 1


def patch_chunks(src: Array, g: PatchGeometry, ones: bool = False) -> Iterator[tuple[slice, Array]]:
    """Yield ``(rows, col)`` for chunks of the batch: ``col`` is ``(n*OH*OW, FH*FW*C)`` for the samples
    whose output rows are ``rows`` (with a last column of ones if ``ones``).

    ``col`` lives in one scratch buffer reused for every chunk (it is only valid until the next
    one); it may be stored transposed (``(K, n*OH*OW)`` memory, read through ``.T``), see
    :func:`is_k_major`.
    """
    n_total, h, w, c = src.shape
    p = g.oh * g.ow
    k = g.fh * g.fw * c
    chunk = max(1, min(n_total, CHUNK_BYTES // max(1, p * k * src.dtype.itemsize)))
    direct = (g.hb, g.wb) == (h, w) and g.offset == (0, 0) and g.dilation == (1, 1) and n_total > 0 and src[0].flags.c_contiguous
    buf = None if direct else np.zeros((chunk, g.hb, g.wb, c), dtype=src.dtype)
    hs_src, hs_buf = _placement(h, g.hb, g.offset[0], g.dilation[0])
    ws_src, ws_buf = _placement(w, g.wb, g.offset[1], g.dilation[1])
    # window views are built once; each chunk slices them (patches[n, oh, ow, i, j, c])
    patches = _windows(src if buf is None else buf, g)
    k_major = is_k_major(c)
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


def _windows(xb: Array, g: PatchGeometry) -> Array:
    """The view ``(n, OH, OW, FH, FW, C)`` of ``xb`` ``(n, Hb, Wb, C)``: ``[n, oh, ow, i, j, c] =
    xb[n, oh*sh + i, ow*sw + j, c]``."""
    windows = sliding_window_view(xb, (g.fh, g.fw), axis=(1, 2))  # (n, H', W', C, FH, FW)
    return windows[:, : g.sh * (g.oh - 1) + 1 : g.sh, : g.sw * (g.ow - 1) + 1 : g.sw].transpose(0, 1, 2, 4, 5, 3)


def correlate(src: Array, g: PatchGeometry, wmat: Array, b: Array | None, out: Array | None = None) -> Array:
    """``(N*OH*OW, FN)`` rows ``patches(src) @ wmat (+ b)``, chunk by chunk.

    Args:
        src: ``(N, H, W, C)`` (any strides).
        wmat: ``(FH*FW*C, FN)`` in the patch column order ``(i, j, c)``.
        out: where to write the rows (a new array if ``None``): ``(N*OH*OW, FN)`` whose rows may be
            strided (a block of columns of a wider array), only with ``b`` ``None``.
    """
    fn = wmat.shape[1]
    if out is None:
        out = np.empty((src.shape[0] * g.oh * g.ow, fn), dtype=src.dtype)
    elif b is not None:
        raise AssertionError("correlate: a bias needs the output rows to itself")
    k_major = is_k_major(src.shape[3])
    if b is not None and k_major:
        wmat = np.concatenate([wmat, b[None, :]])  # the patches get a column of ones
    # one output row (OW pixels x FN) of biases: longer add loops than adding b to each pixel
    b_row = None if b is None or k_major else np.tile(b, g.ow)
    for rows, col in patch_chunks(src, g, ones=b is not None and k_major):
        o = out[rows]
        np.matmul(col, wmat, out=o)
        if b_row is not None:
            o_rows = o.reshape(-1, g.ow * fn)
            o_rows += b_row  # our own fresh output: adding in place touches nobody's array
    return out



def correlate_adjoint(d: Array, g: PatchGeometry, wmat: Array, h: int, w: int) -> Array:
    """The input gradient of :func:`correlate` (``g`` with no dilation): ``dx`` ``(N, H, W, C)`` with
    ``dx[n, oh*sh + i - ph, ow*sw + j - pw, c] += sum_f d[n, oh, ow, f] * wmat[(i, j, c), f]``, taps
    falling into the padding dropped.

    Chunk by chunk of samples, ``d @ wmat.T`` gives every patch's gradient ``(n*OH*OW, FH*FW*C)``;
    each kernel tap then adds its ``(n, OH, OW, C)`` slice onto the strided pixels it read. With a
    stride this does the forward's arithmetic, where the correlation of the zero-dilated ``d``
    would multiply ``sh*sw`` times as many numbers, most of them inserted zeros.

    Args:
        d: ``(N, OH, OW, FN)``, C-contiguous.
        wmat: ``(FH*FW*C, FN)`` in the patch column order ``(i, j, c)``.
        h, w: the input's height and width.
    """
    n_total, fn = d.shape[0], d.shape[3]
    c = wmat.shape[0] // (g.fh * g.fw)
    p = g.oh * g.ow
    dx = np.zeros((n_total, h, w, c), dtype=d.dtype)
    chunk = max(1, min(n_total, CHUNK_BYTES // max(1, p * wmat.shape[0] * d.dtype.itemsize)))
    wt = wmat.T
    scratch = np.empty((chunk * p, wmat.shape[0]), dtype=d.dtype)
    d2 = d.reshape(-1, fn)
    # for tap i: output rows oh with 0 <= oh*sh + i - ph < h, and the input rows they land on
    hs = [_placement(g.oh, h, i - g.offset[0], g.sh) for i in range(g.fh)]
    ws = [_placement(g.ow, w, j - g.offset[1], g.sw) for j in range(g.fw)]
    for s in range(0, n_total, chunk):
        e = min(n_total, s + chunk)
        col = scratch[: (e - s) * p]
        np.matmul(d2[s * p : e * p], wt, out=col)
        taps = col.reshape(e - s, g.oh, g.ow, g.fh, g.fw, c)
        out = dx[s:e]
        for i in range(g.fh):
            for j in range(g.fw):
                (oh_src, h_dst), (ow_src, w_dst) = hs[i], ws[j]
                out[:, h_dst, w_dst] += taps[:, oh_src, ow_src, i, j]
    return dx


# --- depthwise correlation (groups == channels): one multiply-add per kernel tap -----------------


def _placed_chunks(src: Array, g: PatchGeometry, sample_bytes: int) -> Iterator[tuple[slice, Array]]:
    """Yield ``(samples, xb)``: ``xb`` ``(n, Hb, Wb, ...)`` holds ``src[samples]`` (``(N, H, W, ...)``)
    placed as :class:`PatchGeometry` says. ``xb`` is one scratch buffer reused for every chunk (or a
    view of ``src`` when no placement is needed)."""
    n_total, h, w = src.shape[:3]
    chunk = max(1, min(n_total, CHUNK_BYTES // max(1, sample_bytes)))
    if (g.hb, g.wb) == (h, w) and g.offset == (0, 0) and g.dilation == (1, 1):
        for s in range(0, n_total, chunk):
            yield slice(s, min(n_total, s + chunk)), src[s : s + chunk]
        return
    buf = np.zeros((chunk, g.hb, g.wb, *src.shape[3:]), dtype=src.dtype)
    hs_src, hs_buf = _placement(h, g.hb, g.offset[0], g.dilation[0])
    ws_src, ws_buf = _placement(w, g.wb, g.offset[1], g.dilation[1])
    for s in range(0, n_total, chunk):
        e = min(n_total, s + chunk)
        buf[: e - s, hs_buf, ws_buf] = src[s:e, hs_src, ws_src]
        yield slice(s, e), buf[: e - s]


def _taps(xb: Array, g: PatchGeometry) -> Iterator[tuple[int, int, Array]]:
    """``(i, j, view)`` for every kernel tap: ``view[n, oh, ow, ...] = xb[n, oh*sh + i, ow*sw + j, ...]``."""
    for i in range(g.fh):
        for j in range(g.fw):
            yield i, j, xb[:, i : i + g.sh * (g.oh - 1) + 1 : g.sh, j : j + g.sw * (g.ow - 1) + 1 : g.sw]


def depthwise_correlate(src: Array, g: PatchGeometry, w: Array) -> Array:
    """Correlate every channel with its own kernels: ``(N, OH, OW, C, M)`` with
    ``out[n, oh, ow, c, m] = sum_{i,j,k} src_placed[n, oh*sh + i, ow*sw + j, c, k] * w[i, j, c, k, m]``.

    Args:
        src: ``(N, H, W, C, K)`` (any strides), with ``K == 1`` or ``M == 1``.
        w: ``(FH, FW, C, K, M)``.
    """
    n_total, c, k = src.shape[0], src.shape[3], src.shape[4]
    m = w.shape[4]
    out = np.empty((n_total, g.oh, g.ow, c, m), dtype=src.dtype)
    sample_bytes = (g.hb * g.wb * k + 2 * g.oh * g.ow * max(k, m)) * c * src.dtype.itemsize
    tmp: Array | None = None
    for rows, xb in _placed_chunks(src, g, sample_bytes):
        o = out[rows]
        if tmp is None:
            tmp = np.empty_like(o)  # the first chunk is the largest
        t = tmp[: len(o)]
        for tap, (i, j, xs) in enumerate(_taps(xb, g)):
            target = o if tap == 0 else t
            if k == 1:
                np.multiply(xs, w[i, j, :, 0, :], out=target)
            else:  # M == 1: sum over the K inputs of each channel
                np.einsum("nhwck,ck->nhwc", xs, w[i, j, :, :, 0], out=target[..., 0])
            if tap:
                o += t  # our own fresh output
    return out


def depthwise_weight_grad(src: Array, g: PatchGeometry, d: Array) -> Array:
    """``dw`` ``(FH, FW, C, M)`` of :func:`depthwise_correlate` with ``K == 1``: ``dw[i, j, c, m] =
    sum_{n,oh,ow} src_placed[n, oh*sh + i, ow*sw + j, c] * d[n, oh, ow, c, m]``.

    Args:
        src: ``(N, H, W, C)`` (any strides); d: ``(N, OH, OW, C, M)``.
    """
    c, m = d.shape[3], d.shape[4]
    dw = np.zeros((g.fh, g.fw, c, m), dtype=d.dtype)
    sample_bytes = (g.hb * g.wb + g.oh * g.ow * m) * c * src.dtype.itemsize
    for rows, xb in _placed_chunks(src, g, sample_bytes):
        dr = d[rows]
        for i, j, xs in _taps(xb, g):
            dw[i, j] += np.einsum("nhwc,nhwcm->cm", xs, dr)
    return dw
