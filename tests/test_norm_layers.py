"""LayerNorm, GroupNorm and GlobalAvgPool2D: gradients, values against direct formulas, the
relations between the norms, batch independence, validation and dtypes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _helpers import assert_grads_ok, normal, rng

import fnnet
from fnnet.layers.base import TRAIN, Layer
from fnnet.layers.norm import GroupNorm, GroupNormParams, LayerNorm, LayerNormParams
from fnnet.layers.pool import GlobalAvgPool2D
from fnnet.typing import Array, Shape

PROJ_KEY = fnnet.key(4242)
GRAD_TOL = 1e-6
EPS = 1e-5


def _inputs(in_shape: Shape, n: int = 4, seed: int = 1) -> Array:
    """float64 inputs with an offset and scale per sample, so per-sample statistics matter."""
    r = rng(seed)
    loc = r.uniform(-3, 3, (n,) + (1,) * len(in_shape))
    scale = r.uniform(0.5, 3, (n,) + (1,) * len(in_shape))
    x: Array = r.standard_normal((n, *in_shape)) * scale + loc
    return x


def _ln_params(in_shape: Shape, seed: int = 2) -> LayerNormParams:
    r = rng(seed)
    return LayerNormParams(r.uniform(0.5, 2.0, in_shape), r.normal(0, 1, in_shape))


def _gn_params(c: int, seed: int = 2) -> GroupNormParams:
    r = rng(seed)
    return GroupNormParams(r.uniform(0.5, 2.0, c), r.normal(0, 1, c))


def _standardise(x: Array, axes: tuple[int, ...]) -> Array:
    """The direct formula ``(x - mean) / sqrt(var + eps)`` over ``axes`` (biased variance)."""
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    out: Array = (x - mu) / np.sqrt(var + EPS)
    return out


def _per_channel(a: Array, ndim: int) -> Array:
    return a.reshape((1, -1) + (1,) * (ndim - 2))


# --- gradients (float64) -------------------------------------------------------------------------

LN_SHAPES: list[Shape] = [(4,), (7,), (2, 3, 3), (3, 2, 4)]
GN_CASES: list[tuple[int, Shape]] = [
    (1, (4, 3, 3)),
    (2, (4, 3, 3)),
    (4, (4, 3, 3)),  # groups = C: instance norm
    (3, (6, 2, 3)),
    (2, (6,)),
    (2, (4, 5)),  # a 1-D signal (C, L)
    (3, (3, 4)),
]


@pytest.mark.parametrize("in_shape", LN_SHAPES)
def test_layernorm_gradients(in_shape: Shape) -> None:
    check = assert_grads_ok(LayerNorm(), _ln_params(in_shape), _inputs(in_shape), key=PROJ_KEY, tol=GRAD_TOL)
    assert set(check.errors) == {"gamma", "beta", "x"}


@pytest.mark.parametrize(("groups", "in_shape"), GN_CASES)
def test_groupnorm_gradients(groups: int, in_shape: Shape) -> None:
    check = assert_grads_ok(
        GroupNorm(groups), _gn_params(in_shape[0]), _inputs(in_shape), key=PROJ_KEY, tol=GRAD_TOL
    )
    assert set(check.errors) == {"gamma", "beta", "x"}


@pytest.mark.parametrize("in_shape", [(3, 4, 5), (2, 1, 1), (1, 3, 2)])
def test_global_avg_pool_gradients(in_shape: Shape) -> None:
    check = assert_grads_ok(GlobalAvgPool2D(), None, _inputs(in_shape), key=PROJ_KEY, tol=GRAD_TOL)
    assert set(check.errors) == {"x"}


# --- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", LN_SHAPES)
def test_layernorm_matches_the_formula(in_shape: Shape) -> None:
    p, x = _ln_params(in_shape), _inputs(in_shape)
    axes = tuple(range(1, x.ndim))
    y = LayerNorm().apply(p, x)
    np.testing.assert_allclose(y, _standardise(x, axes) * p.gamma + p.beta, rtol=1e-12, atol=1e-12)
    # training mode computes the same thing (no batch statistics)
    np.testing.assert_array_equal(LayerNorm().apply(p, x, ctx=TRAIN), y)


@pytest.mark.parametrize(("groups", "in_shape"), GN_CASES)
def test_groupnorm_matches_the_formula(groups: int, in_shape: Shape) -> None:
    c = in_shape[0]
    p, x = _gn_params(c), _inputs(in_shape)
    n = x.shape[0]
    # (N, G, C/G, H, W): statistics over the last three axes
    xg = x.reshape(n, groups, c // groups, *in_shape[1:])
    xhat = _standardise(xg, tuple(range(2, xg.ndim))).reshape(x.shape)
    expected = xhat * _per_channel(p.gamma, x.ndim) + _per_channel(p.beta, x.ndim)
    np.testing.assert_allclose(GroupNorm(groups).apply(p, x), expected, rtol=1e-12, atol=1e-12)


def test_groupnorm_with_one_group_is_layernorm_with_per_channel_affine() -> None:
    in_shape = (4, 3, 2)
    pg, x = _gn_params(4), _inputs(in_shape)
    full = (slice(None), None, None)
    pl = LayerNormParams(np.broadcast_to(pg.gamma[full], in_shape).copy(), np.broadcast_to(pg.beta[full], in_shape).copy())
    yg, _, cg = GroupNorm(1).forward(pg, None, x)
    yl, _, cl = LayerNorm().forward(pl, None, x)
    np.testing.assert_array_equal(yg, yl)
    dout = normal(x.shape, 5)
    dxg, gg = GroupNorm(1).backward(pg, cg, dout)
    dxl, gl = LayerNorm().backward(pl, cl, dout)
    np.testing.assert_array_equal(dxg, dxl)
    # LayerNorm's per-value parameter gradients summed over positions are GroupNorm's per channel
    np.testing.assert_allclose(gl.gamma.sum(axis=(1, 2)), gg.gamma, rtol=1e-12)
    np.testing.assert_allclose(gl.beta.sum(axis=(1, 2)), gg.beta, rtol=1e-12)


def test_groupnorm_with_one_group_per_channel_is_instance_norm() -> None:
    in_shape = (3, 4, 5)
    p, x = _gn_params(3), _inputs(in_shape, n=2)
    # every channel of every sample gets its own offset, which instance norm removes
    x = x + rng(8).uniform(-5, 5, (2, 3, 1, 1))
    expected = _standardise(x, (2, 3)) * _per_channel(p.gamma, 4) + _per_channel(p.beta, 4)
    y = GroupNorm(3).apply(p, x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    xhat = (y - _per_channel(p.beta, 4)) / _per_channel(p.gamma, 4)
    np.testing.assert_allclose(xhat.mean(axis=(2, 3)), 0.0, atol=1e-12)


def test_groupnorm_groups_are_consecutive_channels() -> None:
    # channels 0-1 and 2-3 form the groups: shifting channel 2 and 3 together changes nothing,
    # shifting channel 0 alone changes channel 1's output
    x = _inputs((4, 2, 2))
    p = _gn_params(4)
    y = GroupNorm(2).apply(p, x)
    shifted = x.copy()
    shifted[:, 2:] += 7.0
    np.testing.assert_allclose(GroupNorm(2).apply(p, shifted), y, atol=1e-12)
    shifted = x.copy()
    shifted[:, 0] += 7.0
    assert not np.allclose(GroupNorm(2).apply(p, shifted)[:, 1], y[:, 1])


def test_global_avg_pool_values_and_spread() -> None:
    x = _inputs((3, 4, 5))
    pool = GlobalAvgPool2D()
    y, state, cache = pool.forward(None, None, x)
    assert state is None and y.shape == (4, 3)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)), rtol=1e-14)
    dout = normal(y.shape, 3)
    dx, grads = pool.backward(None, cache, dout)
    assert grads is None and dx.shape == x.shape and dx.flags.writeable
    np.testing.assert_allclose(dx, np.broadcast_to(dout[:, :, None, None] / 20, x.shape), rtol=1e-15)


# --- independence from the rest of the batch -----------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "params", "in_shape"),
    [
        (LayerNorm(), _ln_params((3, 2, 4)), (3, 2, 4)),
        (LayerNorm(), _ln_params((5,)), (5,)),
        (GroupNorm(2), _gn_params(4), (4, 3, 3)),
        (GroupNorm(4), _gn_params(4), (4, 3, 3)),
        (GlobalAvgPool2D(), None, (4, 3, 3)),
    ],
    ids=["LayerNorm-4d", "LayerNorm-2d", "GroupNorm-2", "GroupNorm-C", "GlobalAvgPool2D"],
)
def test_a_samples_output_does_not_depend_on_the_batch(layer: Layer, params: Any, in_shape: Shape) -> None:
    x = _inputs(in_shape, n=5)
    y, _, cache = layer.forward(params, None, x, TRAIN)
    dout = normal(y.shape, 6)
    dx, _ = layer.backward(params, cache, dout)
    for i in (0, 3):
        yi, _, ci = layer.forward(params, None, x[i : i + 1], TRAIN)
        np.testing.assert_allclose(yi[0], y[i], rtol=1e-14, atol=1e-14)
        dxi, _ = layer.backward(params, ci, dout[i : i + 1])
        np.testing.assert_allclose(dxi[0], dx[i], rtol=1e-13, atol=1e-14)
    # changing the other samples leaves sample 0 alone
    other = x.copy()
    other[1:] = other[1:] * 10 - 4
    np.testing.assert_allclose(layer.apply(params, other, ctx=TRAIN)[0], y[0], rtol=1e-14, atol=1e-14)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [0, -2, 2.0, True, "2", None])
def test_groupnorm_refuses_bad_groups(groups: Any) -> None:
    with pytest.raises(ValueError, match=r"^GroupNorm: groups must be a positive int, got ") as err:
        GroupNorm(groups)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("eps", [0, 0.0, -1e-5, float("inf"), float("nan"), True, "1e-5", None])
@pytest.mark.parametrize("make", [lambda eps: LayerNorm(eps=eps), lambda eps: GroupNorm(1, eps=eps)], ids=["LayerNorm", "GroupNorm"])
def test_norms_refuse_bad_eps(make: Any, eps: Any) -> None:
    with pytest.raises(ValueError, match=r"^(LayerNorm|GroupNorm): eps must be a positive finite number, got ") as err:
        make(eps)
    assert "\n" not in str(err.value)


def test_groupnorm_refuses_channels_not_divisible_by_groups() -> None:
    msg = r"^GroupNorm: groups=4 must divide the number of channels, got 6 channels \(in_shape \(6, 3, 3\)\)$"
    with pytest.raises(ValueError, match=msg):
        GroupNorm(4).out_shape((6, 3, 3))
    with pytest.raises(ValueError, match=msg):
        GroupNorm(4).init(fnnet.key(0), (6, 3, 3))
    # parameters made for another group count are refused when the shapes meet
    params = GroupNorm(3).init(fnnet.key(0), (6, 3, 3))[0]
    with pytest.raises(ValueError, match=r"^GroupNorm: groups=4 must divide the number of channels, got 6"):
        GroupNorm(4).forward(params, None, np.zeros((2, 6, 3, 3), np.float32))


def test_bad_in_shapes_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"^GroupNorm: expected input shape \(C, H, W\), \(C, L\) or \(C,\) .*got \(2, 3, 1, 1\)$"):
        GroupNorm(1).out_shape((2, 3, 1, 1))
    with pytest.raises(ValueError, match=r"^LayerNorm: expected a non-empty in_shape"):
        LayerNorm().out_shape(())
    with pytest.raises(ValueError, match=r"^GlobalAvgPool2D: expected in_shape \(C, H, W\), got \(8,\)$"):
        GlobalAvgPool2D().out_shape((8,))


def test_bad_inputs_name_the_layer_and_show_expected_and_got() -> None:
    ln = LayerNorm().init(fnnet.key(0), (3, 4))[0]
    with pytest.raises(ValueError, match=r"^LayerNorm: expected input \(N, 3, 4\) .*got shape \(2, 4, 3\)$"):
        LayerNorm().forward(ln, None, np.zeros((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"^LayerNorm: expected input of dtype float32 .*got float64"):
        LayerNorm().forward(ln, None, np.zeros((2, 3, 4)))
    gn = GroupNorm(2).init(fnnet.key(0), (4, 3, 3))[0]
    with pytest.raises(ValueError, match=r"^GroupNorm: expected input \(N, 4, H, W\), \(N, 4, L\) or \(N, 4\) with 4 channels, got shape \(2, 6, 3, 3\)$"):
        GroupNorm(2).forward(gn, None, np.zeros((2, 6, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"^GroupNorm: expected input .* got shape \(2, 4, 3, 1, 1\)$"):
        GroupNorm(2).forward(gn, None, np.zeros((2, 4, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"^GroupNorm: expected input of dtype float32 .*got float64"):
        GroupNorm(2).forward(gn, None, np.zeros((2, 4, 3, 3)))
    with pytest.raises(ValueError, match=r"^GlobalAvgPool2D: expected input \(N, C, H, W\) of rank 4, got shape \(2, 3\)$"):
        GlobalAvgPool2D().forward(None, None, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^GlobalAvgPool2D: expected a floating point input, got dtype int64$"):
        GlobalAvgPool2D().forward(None, None, np.zeros((2, 3, 2, 2), np.int64))


def test_bad_dout_is_refused_by_name() -> None:
    x = np.zeros((2, 4, 3, 3), np.float32)
    layers: list[Layer] = [LayerNorm(), GroupNorm(2), GlobalAvgPool2D()]
    for layer in layers:
        params = layer.init(fnnet.key(0), (4, 3, 3))[0]
        y, _, cache = layer.forward(params, None, x)
        with pytest.raises(ValueError, match=rf"^{type(layer).__name__}\.backward: expected dout of shape"):
            layer.backward(params, cache, np.zeros((3, *y.shape[1:]), np.float32))


# --- dtypes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", [LayerNorm(), GroupNorm(2), GroupNorm(1), GlobalAvgPool2D()], ids=lambda v: type(v).__name__)
def test_dtype_is_preserved(layer: Layer, dtype: Any) -> None:
    params = fnnet.astype(layer.init(fnnet.key(0), (4, 3, 3))[0], dtype)
    x = normal((2, 4, 3, 3), 1, dtype=dtype)
    y, _, cache = layer.forward(params, None, x, TRAIN)
    assert y.dtype == dtype
    dx, grads = layer.backward(params, cache, np.ones_like(y))
    assert dx.dtype == dtype
    assert all(g.dtype == dtype for g in fnnet.tree_leaves(grads))


def test_init_is_ones_and_zeros_in_float32_without_drawing() -> None:
    ln, out = LayerNorm().init(fnnet.key(0), (3, 2, 2))
    assert out == (3, 2, 2) and ln.gamma.shape == ln.beta.shape == (3, 2, 2)
    gn, out = GroupNorm(3).init(fnnet.key(0), (6, 2, 2))
    assert out == (6, 2, 2) and gn.gamma.shape == gn.beta.shape == (6,)
    for p in (ln, gn):
        assert p.gamma.dtype == p.beta.dtype == np.float32
        assert np.all(p.gamma == 1) and np.all(p.beta == 0)
    assert GlobalAvgPool2D().init(fnnet.key(0), (5, 4, 4)) == (None, (5,))
