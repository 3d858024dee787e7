"""Conv1D, MaxPool1D, AvgPool1D and grouped (and depthwise) convolutions: loops, gradients, the
equivalence with the 2-D layers, errors, shapes without weights and the sharded training step."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import numpy as np
import pytest
from _helpers import assert_bit_identical, assert_grads_ok, call_unchanged, init64, rng

import fnnet
from fnnet.layers.base import TRAIN, Layer, kind
from fnnet.layers.combinators import serial
from fnnet.layers.conv import Conv1D, Conv2D, ConvParams
from fnnet.layers.core import Affine, Flatten, ReLU
from fnnet.layers.pool import AvgPool1D, AvgPool2D, MaxPool1D, MaxPool2D
from fnnet.optim import sgd
from fnnet.random import Key
from fnnet.train import init_train_state, make_train_step
from fnnet.tree import tree_leaves
from fnnet.typing import Array

GRAD_TOL = 1e-7  # float64 central differences of these piecewise-linear maps agree to ~1e-10
EXACT_TOL = 1e-12  # float64 round-off of sums of a few dozen products

# (C, L, FN, K, stride, pad, groups)
CONV1D_CASES = [
    (1, 9, 3, 3, 1, 0, 1),  # one channel (the transposed patch layout)
    (3, 11, 4, 5, 2, 2, 1),  # stride and padding
    (2, 7, 2, 2, 3, 0, 1),  # stride larger than the kernel, a remainder
    (4, 6, 3, 3, 2, 3, 1),  # pad larger than K - 1: the input gradient crops
    (4, 10, 6, 3, 2, 1, 2),  # two groups
    (3, 8, 6, 3, 1, 1, 3),  # depthwise with two filters per channel
]

# (C, H, W, FN, kernel, stride, pad, groups)
GROUPED_CASES = [
    (4, 6, 7, 6, (3, 3), (1, 1), (1, 1), 2),
    (6, 7, 5, 3, (3, 2), (2, 1), (1, 0), 3),  # one filter per group of two channels
    (4, 6, 6, 4, (3, 3), (2, 2), (1, 1), 4),  # depthwise
    (3, 5, 6, 6, (2, 3), (1, 2), (2, 1), 3),  # depthwise, two filters per channel, pad > kernel - 1
    (2, 5, 5, 4, (1, 1), (1, 1), (0, 0), 2),  # grouped 1x1
    (4, 5, 6, 4, (2, 3), (1, 2), (0, 0), 4),  # depthwise without padding: no copy of the input
    (3, 4, 4, 3, (2, 2), (1, 1), (1, 1), 3),  # depthwise "full" convolution: no copy of dout in dx
]


def ref_conv1d(x: Array, w: Array, b: Array, stride: int, pad: int, groups: int) -> Array:
    n, c, length = x.shape
    fn, cg, k = w.shape
    fg = fn // groups
    ol = (length + 2 * pad - k) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    y = np.zeros((n, fn, ol), x.dtype)
    for bi, f, o in itertools.product(range(n), range(fn), range(ol)):
        g0 = (f // fg) * cg
        y[bi, f, o] = np.sum(xp[bi, g0 : g0 + cg, o * stride : o * stride + k] * w[f]) + b[f]
    return y


def _conv1d_problem(case: tuple[int, ...], n: int = 3, seed: int = 0) -> tuple[Conv1D, ConvParams, Array]:
    c, length, fn, k, s, p, groups = case
    layer = Conv1D(fn, k, stride=s, pad=p, groups=groups)
    params, _ = init64(layer, (c, length), seed)
    r = rng(seed + 1)
    return layer, ConvParams(params.w, r.standard_normal(fn)), r.standard_normal((n, c, length))


def _grouped_problem(case: tuple[Any, ...], n: int = 2, seed: int = 0) -> tuple[Conv2D, ConvParams, Array]:
    c, h, w, fn, kernel, stride, pad, groups = case
    layer = Conv2D(fn, kernel, stride=stride, pad=pad, groups=groups)
    params, _ = init64(layer, (c, h, w), seed)
    r = rng(seed + 1)
    return layer, ConvParams(params.w, r.standard_normal(fn)), r.standard_normal((n, c, h, w))


def _as_2d(layer: Conv1D) -> Conv2D:
    return Conv2D(layer.out_channels, (1, layer.kernel), (1, layer.stride), (0, layer.pad), groups=layer.groups)


# --- Conv1D -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV1D_CASES)
def test_conv1d_forward_matches_direct_loop(case: tuple[int, ...], chunking: None) -> None:
    layer, params, x = _conv1d_problem(case)
    y, _, _ = layer.forward(params, None, x)
    assert y.shape == (x.shape[0], *layer.out_shape(x.shape[1:]))
    expected = ref_conv1d(x, params.w, params.b, layer.stride, layer.pad, layer.groups)
    np.testing.assert_allclose(y, expected, rtol=0, atol=EXACT_TOL)


@pytest.mark.parametrize("case", CONV1D_CASES)
def test_conv1d_is_conv2d_on_height_one(case: tuple[int, ...]) -> None:
    layer, params, x = _conv1d_problem(case)
    y, _, cache = layer.forward(params, None, x, TRAIN)
    dout = rng(3).standard_normal(y.shape)
    dx, grads = layer.backward(params, cache, dout)
    flat = _as_2d(layer)
    p2 = ConvParams(params.w[:, :, None, :], params.b)
    y2, _, cache2 = flat.forward(p2, None, x[:, :, None, :], TRAIN)
    dx2, grads2 = flat.backward(p2, cache2, dout[:, :, None, :])
    # the same kernels on the same numbers: the same bits
    np.testing.assert_array_equal(y, y2[:, :, 0])
    np.testing.assert_array_equal(dx, dx2[:, :, 0])
    np.testing.assert_array_equal(grads.w, grads2.w[:, :, 0])
    np.testing.assert_array_equal(grads.b, grads2.b)
    assert grads.w.shape == params.w.shape and grads.w.flags.c_contiguous


@pytest.mark.parametrize("case", CONV1D_CASES)
def test_conv1d_gradients(case: tuple[int, ...]) -> None:
    layer, params, x = _conv1d_problem(case, n=2)
    assert_grads_ok(layer, params, x, tol=GRAD_TOL)


def test_conv1d_init_shapes_and_fans() -> None:
    layer = Conv1D(32, 5)
    params, out_shape = layer.init(fnnet.key(1), (16, 256))
    assert out_shape == (32, 252)
    assert params.w.shape == (32, 16, 5) and params.b.shape == (32,)  # PyTorch's Conv1d layout
    assert params.w.dtype == np.float32 and not np.any(params.b)
    big = Conv1D(64, 9).init(fnnet.key(2), (64, 40))[0].w
    assert np.std(big) == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.05)  # He: fan_in = C*K
    grouped = Conv1D(64, 9, groups=4).init(fnnet.key(3), (64, 40))[0].w
    assert grouped.shape == (64, 16, 9)
    assert np.std(grouped) == pytest.approx(np.sqrt(2 / (16 * 9)), rel=0.05)  # fan_in = C/groups*K


# --- 1-D pooling --------------------------------------------------------------------------------

# (window, stride, pad)
POOL1D_CASES: list[tuple[int, int | None, int]] = [(2, None, 0), (3, 2, 1), (3, 1, 0), (2, 3, 1), (1, 2, 0), (4, None, 2)]


@pytest.mark.parametrize("case", POOL1D_CASES)
@pytest.mark.parametrize("cls", [MaxPool1D, AvgPool1D], ids=["max", "avg"])
def test_pool1d_forward_matches_direct_loop(cls: type[MaxPool1D] | type[AvgPool1D], case: tuple[int, int | None, int]) -> None:
    window, stride, pad = case
    layer = cls(window, stride, pad)
    x = rng(4).standard_normal((2, 3, 9))
    y, _, _ = layer.forward(None, None, x)
    s = stride or window
    ol = (9 + 2 * pad - window) // s + 1
    assert y.shape == (2, 3, ol) == (2, *layer.out_shape((3, 9)))
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)), constant_values=-np.inf if cls is MaxPool1D else 0.0)
    windows = np.stack([xp[:, :, o * s : o * s + window] for o in range(ol)], axis=2)
    expected = windows.max(axis=3) if cls is MaxPool1D else windows.mean(axis=3)
    np.testing.assert_allclose(y, expected, rtol=0, atol=EXACT_TOL)


@pytest.mark.parametrize("case", POOL1D_CASES)
@pytest.mark.parametrize("cls", [MaxPool1D, AvgPool1D], ids=["max", "avg"])
def test_pool1d_gradients(cls: type[MaxPool1D] | type[AvgPool1D], case: tuple[int, int | None, int]) -> None:
    x = rng(5).standard_normal((2, 3, 10))  # continuous draws: no ties
    assert_grads_ok(cls(*case), None, x, tol=GRAD_TOL)


@pytest.mark.parametrize("case", POOL1D_CASES)
@pytest.mark.parametrize("cls", [MaxPool1D, AvgPool1D], ids=["max", "avg"])
def test_pool1d_is_pool2d_on_height_one(cls: type[MaxPool1D] | type[AvgPool1D], case: tuple[int, int | None, int]) -> None:
    window, stride, pad = case
    layer = cls(window, stride, pad)
    flat = (MaxPool2D if cls is MaxPool1D else AvgPool2D)((1, window), None if stride is None else (1, stride), (0, pad))
    x = rng(6).integers(-1, 2, (2, 3, 11)).astype(np.float64)  # ties, as after a ReLU
    y, _, cache = layer.forward(None, None, x, TRAIN)
    y2, _, cache2 = flat.forward(None, None, x[:, :, None, :], TRAIN)
    dout = rng(7).standard_normal(y.shape)
    np.testing.assert_array_equal(y, y2[:, :, 0])
    np.testing.assert_array_equal(layer.backward(None, cache, dout)[0], flat.backward(None, cache2, dout[:, :, None])[0][:, :, 0])


def test_maxpool1d_gradient_goes_to_the_first_tied_maximum() -> None:
    x = np.array([[[1.0, 1.0, 0.0, 2.0, 2.0, 2.0]]])
    layer = MaxPool1D(3)
    y, _, cache = layer.forward(None, None, x, TRAIN)
    dx, _ = layer.backward(None, cache, np.array([[[5.0, 7.0]]]))
    assert y.tolist() == [[[1.0, 2.0]]]
    assert dx.tolist() == [[[5.0, 0.0, 0.0, 7.0, 0.0, 0.0]]]


# --- groups -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", GROUPED_CASES)
def test_grouped_conv_is_the_concatenation_of_per_group_convs(case: tuple[Any, ...], chunking: None) -> None:
    layer, params, x = _grouped_problem(case)
    groups = layer.groups
    y, _, cache = layer.forward(params, None, x, TRAIN)
    dout = rng(8).standard_normal(y.shape)
    dx, grads = layer.backward(params, cache, dout)
    fn, cg = params.w.shape[:2]
    fg = fn // groups
    plain = Conv2D(fg, layer.kernel, layer.stride, layer.pad)
    ys, dxs, dws, dbs = [], [], [], []
    for k in range(groups):
        pk = ConvParams(params.w[k * fg : (k + 1) * fg], params.b[k * fg : (k + 1) * fg])
        yk, _, ck = plain.forward(pk, None, x[:, k * cg : (k + 1) * cg], TRAIN)
        dxk, gk = plain.backward(pk, ck, dout[:, k * fg : (k + 1) * fg])
        ys.append(yk)
        dxs.append(dxk)
        dws.append(gk.w)
        dbs.append(gk.b)
    np.testing.assert_allclose(y, np.concatenate(ys, axis=1), rtol=0, atol=EXACT_TOL)
    np.testing.assert_allclose(dx, np.concatenate(dxs, axis=1), rtol=0, atol=EXACT_TOL)
    np.testing.assert_allclose(grads.w, np.concatenate(dws), rtol=0, atol=EXACT_TOL)
    np.testing.assert_allclose(grads.b, np.concatenate(dbs), rtol=0, atol=EXACT_TOL)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous  # channels-last strides, as ungrouped


@pytest.mark.parametrize("case", GROUPED_CASES)
def test_grouped_and_depthwise_gradients(case: tuple[Any, ...]) -> None:
    layer, params, x = _grouped_problem(case)
    assert_grads_ok(layer, params, x, tol=GRAD_TOL)


def test_depthwise_is_a_per_channel_correlation() -> None:
    c = 5
    layer = Conv2D(c, 3, pad=1, groups=c)
    params, out = init64(layer, (c, 6, 6))
    assert params.w.shape == (c, 1, 3, 3) and out == (c, 6, 6)
    x = rng(9).standard_normal((2, c, 6, 6))
    y = layer.apply(params, x)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = sum(xp[:, :, i : i + 6, j : j + 6] * params.w[None, :, 0, i, j, None, None] for i in range(3) for j in range(3))
    np.testing.assert_allclose(y, expected, rtol=0, atol=EXACT_TOL)


def test_groups_one_is_the_default_and_keeps_the_params() -> None:
    a, b = Conv2D(4, 3, pad=1), Conv2D(4, 3, pad=1, groups=1)
    assert a == b and a.groups == 1
    pa, pb = a.init(fnnet.key(4), (2, 5, 5))[0], b.init(fnnet.key(4), (2, 5, 5))[0]
    assert_bit_identical(pa, pb)
    assert pa.w.shape == (4, 2, 3, 3)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Conv2D(6, 3, groups=4), r"^Conv2D: out_channels 6 must be divisible by groups 4$"),
        (lambda: Conv2D(6, 3, groups=0), r"^Conv2D: groups must be a positive int, got 0$"),
        (lambda: Conv1D(6, 3, groups=4), r"^Conv1D: out_channels 6 must be divisible by groups 4$"),
        (lambda: Conv1D(6, 3, groups=True), r"^Conv1D: groups must be a positive int"),
        (lambda: Conv1D(0, 3), r"^Conv1D: out_channels must be a positive int"),
        (lambda: Conv1D(2, (3, 3)),  # type: ignore[arg-type]
         r"^Conv1D: kernel must be a positive int"),
        (lambda: Conv1D(2, 3, stride=0), r"^Conv1D: stride must be a positive int"),
        (lambda: Conv1D(2, 3, pad=-1), r"^Conv1D: pad must be a non-negative int"),
        (lambda: MaxPool1D(0), r"^MaxPool1D: window must be a positive int"),
        (lambda: MaxPool1D((2, 2)),  # type: ignore[arg-type]
         r"^MaxPool1D: window must be a positive int"),
        (lambda: MaxPool1D(2, stride=0), r"^MaxPool1D: stride must be a positive int"),
        (lambda: AvgPool1D(2, pad=2), r"^AvgPool1D: pad 2 must be smaller than the window 2$"),
        (lambda: AvgPool1D(2, pad=1.0),  # type: ignore[arg-type]
         r"^AvgPool1D: pad must be a non-negative int"),
    ],
)
def test_bad_hyperparameters_fail_at_build(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_groups_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Conv2D(4, 3, 1, 0, fnnet.initializers.HeNormal(), fnnet.initializers.Zeros(), 2)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "layer,in_shape,match",
    [
        (Conv2D(4, 3, groups=2), (3, 5, 5), r"^Conv2D: input channels 3 must be divisible by groups 2$"),
        (Conv1D(4, 3, groups=4), (6, 9), r"^Conv1D: input channels 6 must be divisible by groups 4$"),
        (Conv1D(2, 5), (1, 4), r"^Conv1D: kernel 5 does not fit input length L = 4 with pad 0$"),
        (Conv1D(2, 3), (1, 4, 4), r"^Conv1D: expected in_shape \(C, L\), got \(1, 4, 4\)$"),
        (MaxPool1D(4), (2, 3), r"^MaxPool1D: window 4 does not fit input length L = 3 with pad 0$"),
        (AvgPool1D(2), (8,), r"^AvgPool1D: expected in_shape \(C, L\), got \(8,\)$"),
    ],
)
def test_out_shape_and_init_reject_the_same_shapes_alike(layer: Layer, in_shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match) as by_out_shape:
        layer.out_shape(in_shape)
    with pytest.raises(ValueError) as by_init:
        layer.init(fnnet.key(0), in_shape)
    assert str(by_out_shape.value) == str(by_init.value)


def test_conv1d_forward_errors_name_the_layer() -> None:
    layer = Conv1D(4, 3, pad=1)
    params, _ = layer.init(fnnet.key(5), (3, 8))
    with pytest.raises(ValueError, match=r"^Conv1D: expected input \(N, C, L\) of rank 3, got shape \(2, 3, 8, 1\)$"):
        layer.forward(params, None, np.zeros((2, 3, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"^Conv1D: expected input with 3 channels \(N, 3, L\), got shape \(2, 5, 8\)$"):
        layer.forward(params, None, np.zeros((2, 5, 8), np.float32))
    with pytest.raises(ValueError, match=r"^Conv1D: expected input of dtype float32.*got float64"):
        layer.forward(params, None, np.zeros((2, 3, 8)))
    with pytest.raises(ValueError, match=r"^Conv1D: kernel 3 does not fit input length L = 0 with pad 1$"):
        layer.forward(params, None, np.zeros((2, 3, 0), np.float32))
    with pytest.raises(ValueError, match=r"^Conv1D: expected params w of shape \(FN, C, 3\).*got w \(4, 3, 1, 3\)"):
        layer.forward(ConvParams(params.w[:, :, None], params.b), None, np.zeros((2, 3, 8), np.float32))
    grouped = Conv1D(4, 3, groups=2)
    with pytest.raises(ValueError, match=r"^Conv1D: expected params w of shape \(FN, C/2, 3\).*got w \(3, 3, 3\)"):
        grouped.forward(ConvParams(params.w[:3], params.b[:3]), None, np.zeros((2, 6, 8), np.float32))
    y, _, cache = layer.forward(params, None, np.zeros((2, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"^Conv1D\.backward: expected dout of shape \(2, 4, 8\), got \(2, 4, 7\)$"):
        layer.backward(params, cache, np.zeros((2, 4, 7), np.float32))


def test_grouped_conv2d_forward_errors() -> None:
    layer = Conv2D(4, 3, groups=2)
    params, _ = layer.init(fnnet.key(6), (6, 5, 5))
    assert params.w.shape == (4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"^Conv2D: expected input with 6 channels \(N, 6, H, W\), got shape \(1, 3, 5, 5\)$"):
        layer.forward(params, None, np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"^Conv2D: expected params w of shape \(FN, C/2, 3, 3\)"):
        layer.forward(ConvParams(params.w[:3], params.b[:3]), None, np.zeros((1, 6, 5, 5), np.float32))


@pytest.mark.parametrize("cls", [MaxPool1D, AvgPool1D])
def test_pool1d_forward_and_backward_errors(cls: type[MaxPool1D] | type[AvgPool1D]) -> None:
    layer, name = cls(3), cls.__name__
    with pytest.raises(ValueError, match=rf"^{name}: expected input \(N, C, L\) of rank 3, got shape \(1, 1, 6, 6\)$"):
        layer.forward(None, None, np.zeros((1, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match=rf"^{name}: expected a floating point input, got dtype int64$"):
        layer.forward(None, None, np.zeros((1, 1, 6), np.int64))
    with pytest.raises(ValueError, match=rf"^{name}: window 3 does not fit input length L = 2 with pad 0$"):
        layer.forward(None, None, np.zeros((1, 1, 2), np.float32))
    _, _, cache = layer.forward(None, None, np.zeros((1, 2, 6), np.float32))
    with pytest.raises(ValueError, match=rf"^{name}\.backward: expected dout of shape \(1, 2, 2\), got \(1, 2, 1, 2\)$"):
        layer.backward(None, cache, np.zeros((1, 2, 1, 2), np.float32))


def test_pipeline_errors_carry_the_layer_index() -> None:
    model = serial(Conv1D(4, 3), ReLU(), MaxPool1D(2), Conv1D(4, 3, groups=4))
    with pytest.raises(ValueError, match=r"^layer 3 \(Conv1D\): Conv1D: kernel 3 does not fit input length L = 2"):
        model.out_shape((2, 7))


# --- shapes without weights, purity, sharding ------------------------------------------------------


@attrs.frozen
class NoDraw:
    """An initializer that fails the test if it is ever called."""

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        raise AssertionError(f"weights {shape} were drawn")


def test_out_shape_draws_no_weights() -> None:
    no = NoDraw()
    model = serial(
        Conv1D(8, 5, pad=2, w_init=no, b_init=no), ReLU(), MaxPool1D(2),
        Conv1D(8, 3, stride=2, w_init=no, b_init=no, groups=8), AvgPool1D(3, 1, 1), Flatten(),
    )  # fmt: skip
    assert model.out_shape((3, 40)) == (8 * 9,)  # 40 -> 40 -> 20 -> 9 -> 9
    assert serial(Conv2D(6, 3, pad=1, w_init=no, b_init=no, groups=3), MaxPool2D(2)).out_shape((3, 8, 8)) == (6, 4, 4)


LAYERS_1D: list[tuple[Layer, tuple[int, ...]]] = [
    (Conv1D(4, 3, stride=2, pad=1), (3, 9)),
    (Conv1D(4, 3, pad=1, groups=2), (4, 7)),
    (Conv2D(6, (3, 2), stride=(2, 1), pad=1, groups=3), (3, 7, 6)),
    (Conv2D(4, 3, pad=1, groups=4), (4, 6, 5)),
    (MaxPool1D(3, 2, 1), (3, 9)),
    (AvgPool1D(2), (3, 8)),
]


@pytest.mark.parametrize("layer,in_shape", LAYERS_1D, ids=[f"{kind(v)}{i}" for i, (v, _) in enumerate(LAYERS_1D)])
def test_float32_in_float32_out_and_inputs_never_mutated(layer: Layer, in_shape: tuple[int, ...]) -> None:
    params, _ = layer.init(fnnet.key(7), in_shape)
    x = rng(8).standard_normal((2, *in_shape)).astype(np.float32)
    y, _, cache = call_unchanged(lambda p, xx: layer.forward(p, None, xx, TRAIN), params, x, readonly=True)
    dout = rng(9).standard_normal(y.shape).astype(np.float32)
    dx, grads = call_unchanged(layer.backward, params, cache, dout, readonly=True)
    assert y.dtype == dx.dtype == np.float32 and all(g.dtype == np.float32 for g in tree_leaves(grads))
    y64 = layer.apply(fnnet.astype(params, np.float64), x.astype(np.float64))
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5)


def test_sharded_step_matches_unsharded_to_rounding() -> None:
    model = serial(Conv1D(4, 3, pad=1), ReLU(), MaxPool1D(2), Conv1D(4, 3, groups=2), AvgPool1D(2), Flatten(), Affine(5))
    g = fnnet.key(5).generator()
    x, t = g.standard_normal((7, 2, 12)), g.integers(0, 5, 7)
    state = fnnet.astype(init_train_state(model, sgd(0.1), fnnet.key(0), (2, 12)), np.float64)
    one, m1 = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    for shards in (2, 3):
        many, m2 = make_train_step(model, optimizer=sgd(0.1), shards=shards)(state, x, t, None)
        assert m2.loss == pytest.approx(m1.loss, rel=1e-12)
        for a, b in zip(tree_leaves(many), tree_leaves(one)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)
