"""Convolution and pooling: im2col/col2im, forward against direct loops, gradients, errors, dtypes, purity."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, call_unchanged, rng
from hypothesis import given, settings, strategies as st

import fnnet
from fnnet.layers._patches import col2im, conv_output_size, im2col
from fnnet.layers.base import TRAIN, Layer, kind
from fnnet.layers.combinators import serial
from fnnet.layers.conv import Conv2D, ConvParams
from fnnet.layers.core import Affine, ReLU
from fnnet.layers.pool import AvgPool2D, MaxPool2D
from fnnet.tree import tree_astype, tree_leaves
from fnnet.typing import Array

GRAD_TOL = 1e-7  # float64 central differences of these piecewise-linear maps agree to ~1e-10
EXACT_TOL = 1e-12  # float64 round-off of sums of a few dozen products

Pair = tuple[int, int]

# (C, H, W, FN, kernel, stride, pad): odd sizes, stride 2, padding, rectangular kernels, channels
CONV_CASES: list[tuple[int, int, int, int, Pair, Pair, Pair]] = [
    (1, 7, 6, 3, (3, 3), (1, 1), (0, 0)),  # one channel (the transposed patch layout)
    (3, 7, 9, 4, (3, 2), (2, 1), (1, 2)),  # rectangular kernel, mixed stride and pad
    (2, 8, 8, 5, (3, 3), (2, 2), (1, 1)),  # stride 2 with padding
    (4, 5, 5, 2, (3, 3), (1, 1), (3, 3)),  # pad larger than the kernel - 1 (gradient crops)
    (2, 6, 7, 3, (1, 1), (3, 2), (0, 0)),  # 1x1 kernel, uneven strides, rows never read
    (3, 9, 7, 2, (5, 2), (2, 3), (2, 0)),  # odd sizes with strides that leave a remainder
    (1, 5, 8, 2, (2, 4), (1, 2), (1, 0)),  # one channel with stride and padding
    (2, 6, 5, 2, (3, 3), (2, 2), (3, 3)),  # stride 2 with pad > kernel - 1: dilated dout is cropped
]

# (window, stride, pad); stride None means the window
POOL_CASES: list[tuple[Pair, Pair | None, Pair]] = [
    ((2, 2), None, (0, 0)),  # the reshape-like tiling fast path (on even sizes)
    ((3, 3), (2, 2), (0, 0)),  # overlapping windows
    ((3, 2), (1, 2), (1, 1)),  # overlapping, rectangular, padded
    ((2, 3), (1, 1), (0, 0)),  # stride 1
    ((2, 2), (3, 3), (1, 0)),  # stride larger than the window: cells never read
    ((3, 3), None, (1, 1)),  # non-overlapping with padding
    ((1, 1), (2, 2), (0, 0)),  # a one-cell window: plain subsampling
]

POOL_SHAPES = [(2, 3, 6, 8), (2, 2, 7, 5)]  # even (exact tiling by 2x2) and odd sizes


def _pad(x: Array, pad: Pair, value: float = 0.0) -> Array:
    return np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=value)


# --- direct-loop references -----------------------------------------------------------------


def ref_im2col(x: Array, kernel: Pair, stride: Pair, pad: Pair) -> Array:
    n, c, h, w = x.shape
    fh, fw = kernel
    oh, ow = (h + 2 * pad[0] - fh) // stride[0] + 1, (w + 2 * pad[1] - fw) // stride[1] + 1
    xp = _pad(x, pad)
    col = np.zeros((n * oh * ow, c * fh * fw), x.dtype)
    for b, y, z, ch, i, j in itertools.product(range(n), range(oh), range(ow), range(c), range(fh), range(fw)):
        col[(b * oh + y) * ow + z, ch * fh * fw + i * fw + j] = xp[b, ch, y * stride[0] + i, z * stride[1] + j]
    return col


def ref_col2im(col: Array, x_shape: tuple[int, int, int, int], kernel: Pair, stride: Pair, pad: Pair) -> Array:
    n, c, h, w = x_shape
    fh, fw = kernel
    oh, ow = (h + 2 * pad[0] - fh) // stride[0] + 1, (w + 2 * pad[1] - fw) // stride[1] + 1
    xp = np.zeros((n, c, h + 2 * pad[0], w + 2 * pad[1]), col.dtype)
    for b, y, z, ch, i, j in itertools.product(range(n), range(oh), range(ow), range(c), range(fh), range(fw)):
        xp[b, ch, y * stride[0] + i, z * stride[1] + j] += col[(b * oh + y) * ow + z, ch * fh * fw + i * fw + j]
    return xp[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + w]


def ref_conv(x: Array, w: Array, b: Array, stride: Pair, pad: Pair) -> Array:
    n, c, h, wd = x.shape
    fn, _, fh, fw = w.shape
    oh, ow = (h + 2 * pad[0] - fh) // stride[0] + 1, (wd + 2 * pad[1] - fw) // stride[1] + 1
    xp = _pad(x, pad)
    y = np.zeros((n, fn, oh, ow), x.dtype)
    for bi, f, r, s in itertools.product(range(n), range(fn), range(oh), range(ow)):
        patch = xp[bi, :, r * stride[0] : r * stride[0] + fh, s * stride[1] : s * stride[1] + fw]
        y[bi, f, r, s] = np.sum(patch * w[f]) + b[f]
    return y


def ref_pool(x: Array, window: Pair, stride: Pair, pad: Pair, kind: str) -> Array:
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad[0] - window[0]) // stride[0] + 1, (w + 2 * pad[1] - window[1]) // stride[1] + 1
    xp = _pad(x, pad, -np.inf if kind == "max" else 0.0)
    y = np.zeros((n, c, oh, ow), x.dtype)
    for bi, ch, r, s in itertools.product(range(n), range(c), range(oh), range(ow)):
        win = xp[bi, ch, r * stride[0] : r * stride[0] + window[0], s * stride[1] : s * stride[1] + window[1]]
        y[bi, ch, r, s] = win.max() if kind == "max" else win.mean()
    return y


def ref_maxpool_grad(x: Array, dout: Array, window: Pair, stride: Pair, pad: Pair) -> Array:
    """Each window's ``dout`` goes to its first maximal cell in row-major order (``argmax``)."""
    n, c, h, w = x.shape
    xp = _pad(x, pad, -np.inf)
    dxp = np.zeros_like(xp)
    for bi, ch, r, s in itertools.product(range(n), range(c), range(dout.shape[2]), range(dout.shape[3])):
        win = xp[bi, ch, r * stride[0] : r * stride[0] + window[0], s * stride[1] : s * stride[1] + window[1]]
        i, j = np.unravel_index(np.argmax(win), win.shape)
        dxp[bi, ch, r * stride[0] + i, s * stride[1] + j] += dout[bi, ch, r, s]
    return dxp[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + w]


def _conv_problem(case: tuple[int, int, int, int, Pair, Pair, Pair], n: int = 3, seed: int = 0) -> tuple[Conv2D, ConvParams, Array]:
    c, h, w, fn, kernel, stride, pad = case
    layer = Conv2D(fn, kernel, stride=stride, pad=pad)
    params, _ = layer.init(fnnet.key(seed), (c, h, w))
    r = rng(seed + 1)
    params = ConvParams(params.w.astype(np.float64), r.standard_normal(fn))  # non-zero biases
    return layer, params, r.standard_normal((n, c, h, w))


# --- im2col / col2im -------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES)
def test_im2col_matches_direct_loop(case: tuple[int, int, int, int, Pair, Pair, Pair]) -> None:
    c, h, w, _, kernel, stride, pad = case
    x = rng(1).standard_normal((2, c, h, w))
    col = im2col(x, kernel[0], kernel[1], stride, pad)
    np.testing.assert_array_equal(col, ref_im2col(x, kernel, stride, pad))
    assert col.flags.c_contiguous and col.dtype == x.dtype


@pytest.mark.parametrize("case", CONV_CASES)
def test_col2im_matches_direct_loop_and_is_the_adjoint(case: tuple[int, int, int, int, Pair, Pair, Pair]) -> None:
    c, h, w, _, kernel, stride, pad = case
    r = rng(2)
    x = r.standard_normal((2, c, h, w))
    col = im2col(x, kernel[0], kernel[1], stride, pad)
    dcol = r.standard_normal(col.shape)
    back = col2im(dcol, x.shape, kernel[0], kernel[1], stride, pad)
    assert back.shape == x.shape
    np.testing.assert_allclose(back, ref_col2im(dcol, (2, c, h, w), kernel, stride, pad), rtol=0, atol=EXACT_TOL)
    # <im2col(x), c> = <x, col2im(c)>
    assert np.sum(col * dcol) == pytest.approx(np.sum(x * back), rel=1e-12)


def test_im2col_with_int_stride_and_pad_matches_the_book_shapes() -> None:
    x = rng(3).standard_normal((10, 3, 7, 7))
    assert im2col(x, 5, 5, stride=1, pad=0).shape == (90, 75)  # the book's example
    assert im2col(x, 5, 5, stride=2, pad=1).shape == (10 * 3 * 3, 75)
    assert conv_output_size(7, 5, 2, 1) == 3


def test_im2col_rejects_bad_arguments() -> None:
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="rank 4"):
        im2col(np.zeros((4, 4)), 2, 2)
    with pytest.raises(ValueError, match="stride"):
        im2col(x, 2, 2, stride=0)
    with pytest.raises(ValueError, match="does not fit"):
        im2col(x, 5, 5)
    with pytest.raises(ValueError, match="col2im"):
        col2im(np.zeros((3, 4)), (1, 1, 4, 4), 2, 2)


# --- forward against direct loops ---------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_matches_direct_loop(case: tuple[int, int, int, int, Pair, Pair, Pair], chunking: None) -> None:
    layer, params, x = _conv_problem(case)
    y, _, _ = layer.forward(params, None, x)
    _, out_shape = layer.init(fnnet.key(0), x.shape[1:])
    assert y.shape == (x.shape[0], *out_shape)
    np.testing.assert_allclose(y, ref_conv(x, params.w, params.b, case[5], case[6]), rtol=0, atol=EXACT_TOL)


@pytest.mark.parametrize("case", CONV_CASES[:3])
def test_conv_matches_the_books_im2col_formulation(case: tuple[int, int, int, int, Pair, Pair, Pair]) -> None:
    layer, params, x = _conv_problem(case)
    y, _, _ = layer.forward(params, None, x)
    fn = params.w.shape[0]
    col = im2col(x, params.w.shape[2], params.w.shape[3], case[5], case[6])
    book = (col @ params.w.reshape(fn, -1).T + params.b).reshape(x.shape[0], y.shape[2], y.shape[3], fn)
    np.testing.assert_allclose(y, book.transpose(0, 3, 1, 2), rtol=0, atol=EXACT_TOL)


@pytest.mark.parametrize("shape", POOL_SHAPES)
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_forward_matches_direct_loop(kind: str, case: tuple[Pair, Pair | None, Pair], shape: tuple[int, ...]) -> None:
    window, stride, pad = case
    layer: Layer = (MaxPool2D if kind == "max" else AvgPool2D)(window, stride, pad)
    x = rng(4).standard_normal(shape)
    y, _, _ = layer.forward(None, None, x)
    _, out_shape = layer.init(fnnet.key(0), shape[1:])
    assert y.shape == (shape[0], *out_shape)
    expected = ref_pool(x, window, stride or window, pad, kind)
    np.testing.assert_allclose(y, expected, rtol=0, atol=EXACT_TOL)


# --- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradients(case: tuple[int, int, int, int, Pair, Pair, Pair], chunking: None) -> None:
    layer, params, x = _conv_problem(case, n=2)
    result = fnnet.check_grads(layer, params, x)
    assert set(result.errors) == {"w", "b", "x"}
    assert result.max_error < GRAD_TOL, str(result)


@pytest.mark.parametrize("shape", POOL_SHAPES)
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_gradients(kind: str, case: tuple[Pair, Pair | None, Pair], shape: tuple[int, ...]) -> None:
    layer: Layer = (MaxPool2D if kind == "max" else AvgPool2D)(*case)
    x = rng(5).standard_normal(shape)  # continuous draws: no ties, so max is differentiable
    result = fnnet.check_grads(layer, None, x)
    assert result.max_error < GRAD_TOL, str(result)


@pytest.mark.parametrize("case", POOL_CASES)
def test_maxpool_gradient_goes_to_the_first_of_tied_maxima(case: tuple[Pair, Pair | None, Pair]) -> None:
    window, stride, pad = case
    layer = MaxPool2D(window, stride, pad)
    # few distinct values (as after a ReLU): many windows have tied maxima
    x = rng(6).integers(-1, 2, (2, 2, 7, 8)).astype(np.float64)
    y, _, cache = layer.forward(None, None, x, TRAIN)
    dout = rng(7).standard_normal(y.shape)
    dx, _ = layer.backward(None, cache, dout)
    np.testing.assert_allclose(dx, ref_maxpool_grad(x, dout, window, stride or window, pad), rtol=0, atol=EXACT_TOL)
    assert np.sum(dx) == pytest.approx(np.sum(dout))  # each window's gradient goes to exactly one cell


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dout_channels_last", [False, True])
def test_maxpool_tiled_backward_matches_the_reference_in_any_memory_order(
    channels_last: bool, dout_channels_last: bool
) -> None:
    # windows that tile the input, continuous values (no ties): the one-comparison fast path
    layer = MaxPool2D(2)
    xl = rng(13).standard_normal((3, 6, 8, 4))  # (N, H, W, C)
    x = xl.transpose(0, 3, 1, 2) if channels_last else np.ascontiguousarray(xl.transpose(0, 3, 1, 2))
    y, _, cache = layer.forward(None, None, x, TRAIN)
    d = rng(14).standard_normal((3, 3, 4, 4))  # (N, OH, OW, C)
    dout = d.transpose(0, 3, 1, 2) if dout_channels_last else np.ascontiguousarray(d.transpose(0, 3, 1, 2))
    dx, _ = layer.backward(None, cache, dout)
    np.testing.assert_array_equal(dx, ref_maxpool_grad(x, dout, (2, 2), (2, 2), (0, 0)))


def test_maxpool_tiled_backward_with_a_tie_and_a_nan_window() -> None:
    # one window without a hit (NaN) and one with two hits: the hit count alone would look untied
    x = rng(15).standard_normal((1, 1, 4, 4))
    x[0, 0, 0, 0] = np.nan  # its window's maximum is NaN: no cell equals it (0 hits)
    x[0, 0, 2, 2] = x[0, 0, 2, 3] = 5.0  # two tied maxima (2 hits): 4 hits for 4 windows in all
    layer = MaxPool2D(2)
    y, _, cache = layer.forward(None, None, x, TRAIN)
    dout = np.ones(y.shape)
    dx, _ = layer.backward(None, cache, dout)
    assert dx[0, 0, 2, 2] == 1.0 and dx[0, 0, 2, 3] == 0.0  # the first of the tied cells only
    assert np.sum(dx[0, 0, 2:, 2:]) == 1.0


def test_book_simple_convnet_pipeline_gradients() -> None:
    model = serial(Conv2D(3, 3, pad=1), ReLU(), MaxPool2D(2), Conv2D(2, (2, 3), stride=2), ReLU(), Affine(4))
    params, out_shape = model.init(fnnet.key(8), (2, 8, 8))
    assert out_shape == (4,)
    params = tree_astype(params, np.float64)
    x = rng(9).standard_normal((2, 2, 8, 8))
    result = fnnet.check_grads(model, params, x)
    assert result.max_error < 1e-6, str(result)


# --- input_grad=False ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer,in_shape",
    [(Conv2D(3, (3, 2), stride=2, pad=1), (2, 7, 6)), (MaxPool2D(2), (2, 6, 6)), (AvgPool2D(3, 1), (2, 5, 6))],
    ids=["conv", "maxpool", "avgpool"],
)
def test_input_grad_false_skips_dx(layer: Layer, in_shape: tuple[int, ...]) -> None:
    params, _ = layer.init(fnnet.key(10), in_shape)
    x = rng(11).standard_normal((2, *in_shape)).astype(np.float32)
    y, _, cache = layer.forward(params, None, x, TRAIN)
    dout = rng(12).standard_normal(y.shape).astype(np.float32)
    dx_on, g_on = layer.backward(params, cache, dout)
    dx_off, g_off = layer.backward(params, cache, dout, input_grad=False)
    assert dx_off.shape == x.shape and dx_off.dtype == x.dtype
    assert not dx_off.flags.writeable and not np.any(dx_off)
    assert np.any(dx_on)
    assert_bit_identical(g_off, g_on)


def test_serial_skips_the_first_conv_input_gradient() -> None:
    model = serial(Conv2D(2, 3), ReLU(), Conv2D(2, 3))
    params, _ = model.init(fnnet.key(13), (1, 7, 7))
    x = rng(14).standard_normal((2, 1, 7, 7)).astype(np.float32)
    y, _, cache = model.forward(params, None, x, TRAIN)
    dx_on, g_on = model.backward(params, cache, np.ones_like(y))
    dx, g = model.backward(params, cache, np.ones_like(y), input_grad=False)
    assert not dx.flags.writeable and not np.any(dx) and np.any(dx_on)
    assert_bit_identical(g, g_on)  # the first conv's dw needs the last conv's dx: only the first dx is skipped


# --- errors -------------------------------------------------------------------------------------


def _conv32(in_shape: tuple[int, int, int] = (3, 8, 8)) -> tuple[Conv2D, ConvParams]:
    layer = Conv2D(4, 3, pad=1)
    return layer, layer.init(fnnet.key(15), in_shape)[0]


def test_conv_forward_errors_name_the_layer_and_say_expected_and_got() -> None:
    layer, params = _conv32()
    with pytest.raises(ValueError, match=r"Conv2D: expected input \(N, C, H, W\) of rank 4, got shape \(2, 3, 8\)"):
        layer.forward(params, None, np.zeros((2, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D: expected input with 3 channels.*got shape \(2, 5, 8, 8\)"):
        layer.forward(params, None, np.zeros((2, 5, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D: expected input of dtype float32.*got float64"):
        layer.forward(params, None, np.zeros((2, 3, 8, 8)))
    small = Conv2D(2, 5)
    p, _ = small.init(fnnet.key(16), (1, 6, 6))
    with pytest.raises(ValueError, match=r"Conv2D: kernel \(5, 5\) does not fit input \(H, W\) = \(4, 6\)"):
        small.forward(p, None, np.zeros((1, 1, 4, 6), np.float32))


def test_conv_rejects_params_of_another_kernel() -> None:
    layer, params = _conv32()
    with pytest.raises(ValueError, match=r"Conv2D: expected params w of shape \(FN, C, 3, 3\).*got w \(4, 3, 5, 5\)"):
        layer.forward(Conv2D(4, 5).init(fnnet.key(29), (3, 8, 8))[0], None, np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"got w \(4, 3, 3, 3\) and b \(3,\)"):
        layer.forward(ConvParams(params.w, params.b[:3]), None, np.zeros((1, 3, 8, 8), np.float32))


def test_pipeline_errors_carry_the_layer_index() -> None:
    model = serial(Conv2D(2, 3), ReLU(), MaxPool2D(2))
    params, _ = model.init(fnnet.key(17), (1, 8, 8))
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2D\): Conv2D: expected input with 1 channels"):
        model.forward(params, None, np.zeros((1, 3, 8, 8), np.float32))


@pytest.mark.parametrize("layer", [Conv2D(2, 3), MaxPool2D(2), AvgPool2D(2)], ids=["conv", "maxpool", "avgpool"])
def test_backward_rejects_a_wrong_dout_shape(layer: Layer) -> None:
    params, _ = layer.init(fnnet.key(18), (1, 6, 6))
    y, _, cache = layer.forward(params, None, np.zeros((2, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match=rf"{kind(layer)}\.backward: expected dout of shape"):
        layer.backward(params, cache, np.zeros((2, *y.shape[1:-1], y.shape[-1] + 1), np.float32))


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_pool_forward_errors(cls: type[MaxPool2D] | type[AvgPool2D]) -> None:
    layer = cls(3)
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}: expected input \(N, C, H, W\) of rank 4, got shape \(2, 6\)"):
        layer.forward(None, None, np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match=rf"{name}: expected a floating point input, got dtype int64"):
        layer.forward(None, None, np.zeros((1, 1, 6, 6), np.int64))
    with pytest.raises(ValueError, match=rf"{name}: window \(3, 3\) does not fit input \(H, W\) = \(2, 6\)"):
        layer.forward(None, None, np.zeros((1, 1, 2, 6), np.float32))


@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: Conv2D(0, 3), "out_channels"),
        (lambda: Conv2D(True, 3), "out_channels"),
        (lambda: Conv2D(2, 0), "kernel"),
        (lambda: Conv2D(2, (3,)), "kernel"),
        (lambda: Conv2D(2, (3, 2.0)), "kernel"),
        (lambda: Conv2D(2, 3, stride=0), "stride"),
        (lambda: Conv2D(2, 3, stride=(1, -1)), "stride"),
        (lambda: Conv2D(2, 3, pad=-1), "pad"),
        (lambda: Conv2D(2, 3, pad=1.5), "pad"),
        (lambda: MaxPool2D(0), "window"),
        (lambda: MaxPool2D(2, stride=0), "stride"),
        (lambda: MaxPool2D(2, pad=-1), "pad"),
        (lambda: MaxPool2D(2, pad=2), "pad"),
        (lambda: AvgPool2D((2, 3), pad=(1, 3)), "pad"),
        (lambda: AvgPool2D("2"), "window"),
    ],
)
def test_bad_hyperparameters_fail_at_build(make: Any, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^(Conv2D|MaxPool2D|AvgPool2D): {field}"):
        make()


def test_hyperparameters_are_normalised_and_frozen() -> None:
    layer = Conv2D(4, (3, 2), stride=2, pad=(1, 0))
    assert (layer.kernel, layer.stride, layer.pad) == ((3, 2), (2, 2), (1, 0))
    assert MaxPool2D(3).stride is None and MaxPool2D(3, 1).stride == (1, 1) and MaxPool2D(3, (1, 2)).stride == (1, 2)
    # a stride of None moves the window by its own size
    assert MaxPool2D(3).out_shape((1, 9, 9)) == (1, 3, 3) and MaxPool2D(3, 1).out_shape((1, 9, 9)) == (1, 7, 7)
    with pytest.raises(AttributeError):
        layer.pad = (0, 0)  # type: ignore[misc]


@pytest.mark.parametrize(
    "layer,in_shape,match",
    [
        (Conv2D(2, 5), (1, 4, 9), r"Conv2D: kernel \(5, 5\) does not fit input \(H, W\) = \(4, 9\) with pad \(0, 0\)"),
        (Conv2D(2, (3, 7), pad=1), (1, 9, 4), r"Conv2D: kernel \(3, 7\) does not fit"),
        (Conv2D(2, 3), (9, 9), r"Conv2D: expected in_shape \(C, H, W\), got \(9, 9\)"),
        (MaxPool2D(4), (1, 3, 8), r"MaxPool2D: window \(4, 4\) does not fit"),
        (AvgPool2D(2), (8,), r"AvgPool2D: expected in_shape \(C, H, W\)"),
    ],
)
def test_init_rejects_inputs_the_kernel_does_not_fit(layer: Layer, in_shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        layer.init(fnnet.key(19), in_shape)


def test_conv_init_shapes_and_fans() -> None:
    layer = Conv2D(30, 5)
    params, out_shape = layer.init(fnnet.key(20), (1, 28, 28))
    assert out_shape == (30, 24, 24)  # the book's SimpleConvNet
    assert params.w.shape == (30, 1, 5, 5) and params.b.shape == (30,)
    assert params.w.dtype == np.float32 and not np.any(params.b)
    big = Conv2D(64, 3).init(fnnet.key(21), (64, 9, 9))[0].w
    assert np.std(big) == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.05)  # He: fan_in = C*FH*FW


# --- dtypes and purity --------------------------------------------------------------------------


def _float32_problems() -> list[tuple[Layer, tuple[int, int, int]]]:
    return [
        (Conv2D(4, 3, pad=1), (1, 9, 7)),
        (Conv2D(5, (2, 3), stride=2, pad=(0, 1)), (3, 9, 8)),
        (MaxPool2D(2), (3, 8, 6)),
        (MaxPool2D(3, 2, 1), (3, 7, 7)),
        (AvgPool2D(2), (3, 8, 6)),
        (AvgPool2D((2, 3), 1, (1, 1)), (3, 7, 7)),
    ]


@pytest.mark.parametrize("layer,in_shape", _float32_problems())
def test_float32_in_float32_out(layer: Layer, in_shape: tuple[int, int, int]) -> None:
    params, _ = layer.init(fnnet.key(22), in_shape)
    x = rng(23).standard_normal((3, *in_shape)).astype(np.float32)
    y, _, cache = layer.forward(params, None, x, TRAIN)
    assert y.dtype == np.float32
    assert all(a.dtype == np.float32 for a in tree_leaves(cache) if isinstance(a, np.ndarray))
    dx, grads = layer.backward(params, cache, np.ones_like(y))
    assert dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in tree_leaves(grads))
    # same values as float64 up to float32 round-off
    p64 = tree_astype(params, np.float64)
    y64, _, _ = layer.forward(p64, None, x.astype(np.float64))
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer,in_shape", _float32_problems())
@pytest.mark.parametrize("readonly", [False, True], ids=["snapshot", "readonly"])
def test_inputs_are_never_mutated_and_read_only_inputs_work(
    layer: Layer, in_shape: tuple[int, int, int], readonly: bool
) -> None:
    params, _ = layer.init(fnnet.key(24), in_shape)
    x = rng(25).standard_normal((2, *in_shape)).astype(np.float32)
    y, _, cache = call_unchanged(lambda p, xx: layer.forward(p, None, xx, TRAIN), params, x, readonly=readonly)
    dout = rng(26).standard_normal(y.shape).astype(np.float32)
    for _ in range(2):  # the cache is still good after a backward pass
        call_unchanged(layer.backward, params, cache, dout, readonly=readonly)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    h=st.integers(3, 7),
    w=st.integers(3, 7),
    k=st.integers(1, 3),
    s=st.integers(1, 2),
    p=st.integers(0, 1),
    seed=st.integers(0, 2**16),
)
def test_property_conv_is_pure_and_matches_the_loop(n: int, c: int, h: int, w: int, k: int, s: int, p: int, seed: int) -> None:
    layer = Conv2D(2, k, stride=s, pad=p)
    params, _ = layer.init(fnnet.key(seed), (c, h, w))
    r = rng(seed)
    x = r.standard_normal((n, c, h, w)).astype(np.float32)
    x_before = x.copy()
    y, _, cache = layer.forward(params, None, x, TRAIN)
    dout = r.standard_normal(y.shape).astype(np.float32)
    dout_before = dout.copy()
    dx, grads = layer.backward(params, cache, dout)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dout, dout_before)
    np.testing.assert_allclose(y, ref_conv(x, params.w, params.b, (s, s), (p, p)), rtol=1e-5, atol=1e-5)
    # the input gradient is the adjoint of the linear map x -> conv(x) - b
    lhs = float(np.sum((y - params.b[:, None, None]).astype(np.float64) * dout))
    rhs = float(np.sum(x.astype(np.float64) * dx))
    assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-4)


def test_channels_last_and_strided_inputs_give_the_same_results() -> None:
    layer, params, x = _conv_problem(CONV_CASES[1])
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # NCHW view of NHWC memory
    x_strided = np.repeat(x, 2, axis=3)[:, :, :, ::2]
    y, _, cache = layer.forward(params, None, x, TRAIN)
    dout = rng(27).standard_normal(y.shape)
    dx, g = layer.backward(params, cache, dout)
    for other in (x_cl, x_strided):
        y2, _, cache2 = layer.forward(params, None, other, TRAIN)
        np.testing.assert_allclose(y2, y, rtol=0, atol=EXACT_TOL)
        dx2, g2 = layer.backward(params, cache2, np.ascontiguousarray(dout))
        np.testing.assert_allclose(dx2, dx, rtol=0, atol=EXACT_TOL)
        np.testing.assert_allclose(g2.w, g.w, rtol=0, atol=EXACT_TOL)
    for pool in (MaxPool2D(2), MaxPool2D(3, 2, 1), AvgPool2D(2)):
        ya, _, ca = pool.forward(None, None, x, TRAIN)
        yb, _, cb = pool.forward(None, None, x_cl, TRAIN)
        np.testing.assert_array_equal(ya, yb)
        d = rng(28).standard_normal(ya.shape)
        np.testing.assert_array_equal(pool.backward(None, ca, d)[0], pool.backward(None, cb, d)[0])


def test_conv_outputs_are_channels_last_nchw_views() -> None:
    """The documented memory order: NCHW shape and indexing, channels-last strides."""
    layer, params, x = _conv_problem(CONV_CASES[2])
    y, _, _ = layer.forward(params, None, x)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous
    relu_y = np.maximum(y, 0)
    assert relu_y.transpose(0, 2, 3, 1).flags.c_contiguous  # elementwise ops keep the order
    pooled, _, _ = MaxPool2D(2).forward(None, None, relu_y)
    assert pooled.transpose(0, 2, 3, 1).flags.c_contiguous  # and so does pooling
