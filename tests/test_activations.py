"""LeakyReLU, ELU, GELU, SiLU, Softplus: gradients, values against direct formulas, erf against
``math.erf``, input_grad=False, dtypes, stability at ±1000 and refused hyperparameters."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from _helpers import assert_grads_ok, normal, rng

import fnnet
from fnnet import functions as F
from fnnet.layers.activations import ELU, GELU, LeakyReLU, SiLU, Softplus
from fnnet.layers.base import Layer
from fnnet.typing import Array, Shape

GRAD_TOL = 1e-6
PROJ_KEY = fnnet.key(777)
KINK_MARGIN = 0.1  # LeakyReLU and ELU(alpha != 1) have a kink at 0; inputs stay this far from it

SMOOTH: list[Layer] = [GELU(), GELU(approximate=True), SiLU(), Softplus(), ELU(1.0)]
KINKED: list[Layer] = [LeakyReLU(), LeakyReLU(0.3), LeakyReLU(-0.5), ELU(0.5), ELU(2.0), ELU(0.0)]
ALL: list[Layer] = SMOOTH + KINKED
SHAPES: list[Shape] = [(4,), (2, 3), (3, 2, 2)]


def _vec(fn: Callable[[float], float], x: Array) -> Array:
    """``fn`` applied to each element of ``x`` in Python floats (the reference)."""
    return np.array([fn(float(v)) for v in x.ravel()]).reshape(x.shape)


def _away_from_zero(shape: tuple[int, ...], seed: int) -> Array:
    r = rng(seed)
    x: Array = r.choice([-1.0, 1.0], size=shape) * r.uniform(KINK_MARGIN, 4.0, size=shape)
    return x


# --- gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", SMOOTH, ids=repr)
@pytest.mark.parametrize("in_shape", SHAPES)
def test_smooth_gradients(layer: Layer, in_shape: Shape) -> None:
    params, out_shape = layer.init(fnnet.key(0), in_shape)
    assert params is None and out_shape == in_shape
    # scale 3 reaches both pieces of the erf evaluation (|x / sqrt 2| beyond 1.5) and the tails
    assert_grads_ok(layer, params, 3 * normal((3, *in_shape), 0), tol=GRAD_TOL, key=PROJ_KEY)


@pytest.mark.parametrize("layer", KINKED, ids=repr)
@pytest.mark.parametrize("in_shape", SHAPES)
def test_kinked_gradients(layer: Layer, in_shape: Shape) -> None:
    assert_grads_ok(layer, None, _away_from_zero((3, *in_shape), 1), tol=GRAD_TOL, key=PROJ_KEY)


def _slope(layer: Layer, x: Array) -> Array:
    """``f'(x)`` from the layer's backward with ``dout = 1``."""
    y, _, cache = layer.forward(None, None, x)
    dx, grads = layer.backward(None, cache, np.ones_like(y))
    assert grads is None
    return dx


def test_backward_matches_the_derivative_formulas() -> None:
    x = np.array([[-3.0, -0.5, 0.25, 2.0]])
    np.testing.assert_array_equal(_slope(LeakyReLU(0.2), x), [[0.2, 0.2, 1.0, 1.0]])
    np.testing.assert_allclose(_slope(ELU(2.0), x), [[2 * math.exp(-3), 2 * math.exp(-0.5), 1, 1]], rtol=1e-15)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(_slope(Softplus(), x), s, rtol=1e-15)
    np.testing.assert_allclose(_slope(SiLU(), x), s + x * s * (1 - s), rtol=1e-14)
    phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    cdf = _vec(lambda v: 0.5 * math.erfc(-v / math.sqrt(2)), x)
    np.testing.assert_allclose(_slope(GELU(), x), cdf + x * phi, rtol=1e-14)


# --- values --------------------------------------------------------------------------------------

GRID = np.concatenate([np.linspace(-12.0, 12.0, 2401), 4 * normal((500,), 3)])


def test_erf_against_math_erf() -> None:
    z = np.concatenate([np.linspace(-8.0, 8.0, 16001), normal((2000,), 4), [0.0, 1e-300, -1e-8, 1.5, -1.5]])
    ref = _vec(math.erf, z)
    tiny = np.abs(ref) < 1e-300
    assert np.all(np.abs(F.erf(z) - ref) <= 1e-14 * np.abs(ref) + tiny * 1e-300)


def test_erfc_against_math_erfc() -> None:
    # up to z = 26, where erfc is about 1e-296 (below that float64 goes subnormal)
    z = np.concatenate([np.linspace(-8.0, 26.0, 20001), [0.0, 1.5, -1.5]])
    np.testing.assert_allclose(F.erfc(z), _vec(math.erfc, z), rtol=1e-13, atol=0)


def test_gelu_exact_against_math_erf() -> None:
    x = GRID
    ref = _vec(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))), x)
    # 1 + erf(x / sqrt 2) cancels for x << 0 in the reference itself, hence the |x| * eps term
    assert np.all(np.abs(F.gelu(x) - ref) <= 1e-14 * np.abs(ref) + 1e-15 * np.abs(x))
    np.testing.assert_array_equal(GELU().apply(None, x[None]), F.gelu(x)[None])
    # the gate is accurate relative to itself deep in the left tail (where erfc is needed); one
    # rounding of x / sqrt 2 moves exp(-x^2 / 2) by about x^2 * eps relative, in either computation
    xl = np.linspace(-36.0, 0.0, 3601)
    ref_cdf = _vec(lambda v: 0.5 * math.erfc(-v / math.sqrt(2)), xl)
    assert np.all(np.abs(F.gelu_cdf(xl) - ref_cdf) <= (1e-14 + 5e-16 * xl * xl) * ref_cdf)


def test_gelu_tanh_form_against_its_formula() -> None:
    x = GRID
    c = math.sqrt(2 / math.pi)
    ref = _vec(lambda v: 0.5 * v * (1 + math.tanh(c * (v + 0.044715 * v**3))), x)
    # 1 + tanh cancels for x << 0 in both computations, hence the |x| * eps term
    assert np.all(np.abs(F.gelu(x, approximate=True) - ref) <= 1e-14 * np.abs(ref) + 1e-15 * np.abs(x))
    np.testing.assert_array_equal(GELU(approximate=True).apply(None, x[None]), F.gelu(x, approximate=True)[None])
    # and the two forms differ, but by little
    diff = np.abs(F.gelu(x, approximate=True) - F.gelu(x))
    assert 1e-5 < diff.max() < 1e-3


@pytest.mark.parametrize(
    ("layer", "fn", "reference"),
    [
        (LeakyReLU(0.05), lambda x: F.leaky_relu(x, 0.05), lambda v: v if v > 0 else 0.05 * v),
        (ELU(1.5), lambda x: F.elu(x, 1.5), lambda v: v if v > 0 else 1.5 * math.expm1(v)),
        (SiLU(), F.silu, lambda v: v / (1 + math.exp(-v))),
        (Softplus(), F.softplus, lambda v: math.log1p(math.exp(v))),
    ],
    ids=lambda v: repr(v) if isinstance(v, Layer) else "",
)
def test_values_against_formulas(layer: Layer, fn: Callable[[Array], Array], reference: Callable[[float], float]) -> None:
    x = GRID
    ref = _vec(reference, x)
    np.testing.assert_allclose(fn(x), ref, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(layer.apply(None, x.reshape(1, -1)), ref.reshape(1, -1), rtol=1e-14, atol=1e-300)


def test_top_level_names() -> None:
    x = np.array([-1.0, 2.0])
    assert fnnet.gelu is F.gelu and fnnet.silu is F.silu and fnnet.softplus is F.softplus
    assert fnnet.elu is F.elu and fnnet.leaky_relu is F.leaky_relu
    assert fnnet.GELU is GELU and fnnet.layers.LeakyReLU is LeakyReLU
    np.testing.assert_array_equal(fnnet.leaky_relu(x), [-0.01, 2.0])


# --- contract details ----------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ALL, ids=repr)
def test_input_grad_false_gives_read_only_zeros(layer: Layer) -> None:
    x = normal((2, 3, 4), 5)
    y, _, cache = layer.forward(None, None, x)
    dx, grads = layer.backward(None, cache, normal(y.shape, 6), input_grad=False)
    assert grads is None and dx.shape == x.shape and dx.dtype == x.dtype
    assert not dx.flags.writeable and not dx.any()


@pytest.mark.parametrize("layer", ALL, ids=repr)
def test_float32_in_float32_out(layer: Layer) -> None:
    x64 = 3 * normal((4, 5), 7)
    x = x64.astype(np.float32)
    y, _, cache = layer.forward(None, None, x)
    dx, _ = layer.backward(None, cache, np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    y64, _, cache64 = layer.forward(None, None, x.astype(np.float64))
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, layer.backward(None, cache64, np.ones_like(y64))[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("layer", "at_minus", "slope_minus"),
    [
        (LeakyReLU(0.01), -10.0, 0.01),
        (ELU(2.0), -2.0, 0.0),
        (GELU(), 0.0, 0.0),
        (GELU(approximate=True), 0.0, 0.0),
        (SiLU(), 0.0, 0.0),
        (Softplus(), 0.0, 0.0),
    ],
    ids=lambda v: repr(v) if isinstance(v, Layer) else "",
)
def test_stable_at_plus_minus_1000(layer: Layer, at_minus: float, slope_minus: float, dtype: type) -> None:
    x: Array = np.array([[-1000.0, -100.0, 100.0, 1000.0]], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y, _, cache = layer.forward(None, None, x)
        dx, _ = layer.backward(None, cache, np.ones_like(y))
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    np.testing.assert_allclose(y[0, [0, 3]], [at_minus, 1000.0], rtol=1e-6)
    np.testing.assert_allclose(dx[0, [0, 3]], [slope_minus, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (lambda: LeakyReLU(float("nan")), r"^LeakyReLU: negative_slope must be a finite number, got nan$"),
        (lambda: LeakyReLU("0.1"), r"^LeakyReLU: negative_slope must be a finite number"),  # type: ignore[arg-type]
        (lambda: LeakyReLU(True), r"^LeakyReLU: negative_slope must be a finite number"),
        (lambda: ELU(-1.0), r"^ELU: alpha must be a finite number >= 0, got -1.0$"),
        (lambda: ELU(float("inf")), r"^ELU: alpha must be a finite number >= 0"),
        (lambda: GELU(approximate=1), r"^GELU: approximate must be True or False, got 1$"),  # type: ignore[arg-type]
        (lambda: GELU("tanh"), r"^GELU: approximate must be True or False, got 'tanh'$"),  # type: ignore[arg-type]
    ],
)
def test_bad_hyperparameters_refused(build: Callable[[], Layer], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        build()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("layer", [LeakyReLU(), ELU(), GELU(), SiLU(), Softplus()], ids=repr)
def test_integer_input_refused(layer: Layer) -> None:
    with pytest.raises(ValueError, match=rf"^{type(layer).__name__}: expected a floating point input, got dtype int"):
        layer.forward(None, None, np.ones((2, 3), dtype=np.int64))


@pytest.mark.parametrize("layer", ALL, ids=repr)
def test_wrong_dout_shape_named(layer: Layer) -> None:
    y, _, cache = layer.forward(None, None, normal((2, 3), 8))
    with pytest.raises(ValueError, match=rf"^{type(layer).__name__}\.backward: expected dout of shape \(2, 3\)"):
        layer.backward(None, cache, np.ones((3, 2)))


def test_a_net_with_the_new_activations_trains_in_summary() -> None:
    model = fnnet.serial(fnnet.Affine(4), GELU(), fnnet.Affine(4), SiLU(), fnnet.Affine(3), LeakyReLU(), fnnet.Affine(2))
    params, out_shape = model.init(fnnet.key(0), (5,))
    assert out_shape == (2,)
    assert "GELU" in str(fnnet.summary(model, (5,)))
    assert_grads_ok(model, fnnet.astype(params, np.float64), normal((3, 5), 9), tol=GRAD_TOL, key=PROJ_KEY)
