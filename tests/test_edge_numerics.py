"""Edge numerics: activations and their gradients at ±inf and huge inputs in every float dtype, the
metrics on input with nothing to score, and ``check_grads`` on gradients that are exactly zero."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _helpers import FLOATS, FLOAT_WIDTH, strict_floats

import fnnet
from fnnet import functions as F
from fnnet.layers.activations import ELU, GELU, LeakyReLU, SiLU, Softplus
from fnnet.layers.base import EVAL, TRAIN, Ctx, Layer
from fnnet.losses import time_softmax_cross_entropy
from fnnet.metrics import accuracy, binary_accuracy, confusion_matrix, mae, r2, rmse, token_accuracy
from fnnet.numerical import _PROJECTION_KEY, ZERO_GRAD_FLOOR, GradCheck, _rel_error, check_grads
from fnnet.train import evaluate
from fnnet.tree import tree_astype
from fnnet.typing import Array, Shape

INF = np.inf


# --- activations at the infinities -----------------------------------------------------------------

# (name, f, f(-inf), f(inf)): the mathematical limits
LIMITS: list[tuple[str, Callable[[Array], Array], float, float]] = [
    ("step_function", F.step_function, 0.0, 1.0),
    ("sigmoid", F.sigmoid, 0.0, 1.0),
    ("expit", F.expit, 0.0, 1.0),
    ("relu", F.relu, 0.0, INF),
    ("tanh", F.tanh, -1.0, 1.0),
    ("identity", F.identity, -INF, INF),
    ("leaky_relu", F.leaky_relu, -INF, INF),
    ("elu", F.elu, -1.0, INF),
    ("elu(alpha=2)", lambda x: F.elu(x, 2.0), -2.0, INF),
    ("gelu", F.gelu, 0.0, INF),
    ("gelu(tanh)", lambda x: F.gelu(x, approximate=True), 0.0, INF),
    ("gelu_cdf", F.gelu_cdf, 0.0, 1.0),
    ("gelu_cdf(tanh)", lambda x: F.gelu_cdf(x, approximate=True), 0.0, 1.0),
    ("gelu_grad", F.gelu_grad, 0.0, 1.0),
    ("gelu_grad(tanh)", lambda x: F.gelu_grad(x, approximate=True), 0.0, 1.0),
    ("silu", F.silu, 0.0, INF),
    ("silu_grad", F.silu_grad, 0.0, 1.0),
    ("softplus", F.softplus, 0.0, INF),
    ("softplus_grad", F.softplus_grad, 0.0, 1.0),
    ("erf", F.erf, -1.0, 1.0),
    ("erfc", F.erfc, 2.0, 0.0),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "fn", "at_minus", "at_plus"), LIMITS, ids=[c[0] for c in LIMITS])
def test_activation_limits_at_the_infinities(
    name: str, fn: Callable[[Array], Array], at_minus: float, at_plus: float, dtype: Any
) -> None:
    big = float(np.finfo(dtype).max)
    x = np.array([-INF, INF, np.nan, -big, big, -1000.0, 1000.0], dtype)
    with strict_floats():
        y = fn(x)
    assert y.dtype == dtype, name
    assert y[0] == at_minus and y[1] == at_plus, (name, y.tolist())
    assert np.isnan(y[2]), name  # NaN stays NaN
    assert not np.isnan(y[3:]).any(), (name, y.tolist())


# (layer, y(-inf), y(inf), dy/dx(-inf), dy/dx(inf))
LAYER_LIMITS: list[tuple[Layer, float, float, float, float]] = [
    (fnnet.ReLU(), 0.0, INF, 0.0, 1.0),
    (fnnet.Sigmoid(), 0.0, 1.0, 0.0, 0.0),
    (fnnet.Tanh(), -1.0, 1.0, 0.0, 0.0),
    (LeakyReLU(0.1), -INF, INF, 0.1, 1.0),
    (ELU(2.0), -2.0, INF, 0.0, 1.0),
    (GELU(), 0.0, INF, 0.0, 1.0),
    (GELU(approximate=True), 0.0, INF, 0.0, 1.0),
    (SiLU(), 0.0, INF, 0.0, 1.0),
    (Softplus(), 0.0, INF, 0.0, 1.0),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("layer", "y_minus", "y_plus", "d_minus", "d_plus"), LAYER_LIMITS, ids=lambda v: repr(v) if isinstance(v, Layer) else "")
def test_activation_layers_at_the_infinities(
    layer: Layer, y_minus: float, y_plus: float, d_minus: float, d_plus: float, dtype: Any
) -> None:
    x = np.array([[-INF, INF, np.nan], [-1e4, 1e4, 0.5]], dtype)
    with strict_floats():
        y, _, cache = layer.forward(None, None, x)
        dx, _ = layer.backward(None, cache, np.ones_like(x))
        applied = layer.apply(None, x)
    np.testing.assert_array_equal(applied, y)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(y[0, :2], np.array([y_minus, y_plus], dtype))
    np.testing.assert_array_equal(dx[0, :2], np.array([d_minus, d_plus], dtype))
    assert np.isnan(y[0, 2]) and not np.isnan(y[1]).any() and not np.isnan(dx[1]).any()


def _old_formulas() -> dict[str, Callable[[Array], Array]]:
    """The plain formulas the functions compute on finite input (where they must not change)."""

    def silu_grad(x: Array) -> Array:
        s = F.expit(x)
        out: Array = s * (1 + x * (1 - s))
        return out

    def tanh_gate(x: Array) -> Array:
        xc = np.clip(x.astype(np.float32) if x.dtype == np.float16 else x, -100.0, 100.0)
        gate: Array = 0.5 + 0.5 * np.tanh(math.sqrt(2 / math.pi) * (xc + 0.044715 * xc * xc * xc))
        return gate.astype(x.dtype)

    def expit(x: Array) -> Array:
        e = np.exp(-np.abs(x))
        out: Array = np.where(x >= 0, 1, e) / (1 + e)
        return out

    return {
        "expit": expit,
        "gelu_cdf(tanh)": tanh_gate,
        "gelu": lambda x: x * F.gelu_cdf(x),
        "gelu(tanh)": lambda x: x * F.gelu_cdf(x, approximate=True),
        "silu": lambda x: x * F.expit(x),
        "silu_grad": silu_grad,
        "softplus": lambda x: np.logaddexp(0, x),
        "step_function": lambda x: (x > 0).astype(x.dtype),
    }




@st.composite
def _float_arrays(draw: st.DrawFn) -> Array:
    dtype = draw(st.sampled_from(FLOATS))
    finite_or_inf = st.floats(width=FLOAT_WIDTH[dtype], allow_nan=False)  # infinities included
    a: Array = draw(hnp.arrays(dtype, st.integers(1, 24), elements=finite_or_inf | st.sampled_from([-INF, INF])))
    return a


@settings(max_examples=80, deadline=None)
@given(x=_float_arrays())
def test_property_infinite_inputs_give_limits_and_finite_ones_the_formula(x: Array) -> None:
    finite = np.isfinite(x)
    formulas = _old_formulas()
    for name, fn, at_minus, at_plus in LIMITS:
        with strict_floats():
            y = fn(x)
        assert y.dtype == x.dtype and not np.isnan(y).any(), (name, x.tolist(), y.tolist())
        assert (y[x == -INF] == at_minus).all() and (y[x == INF] == at_plus).all(), (name, x.tolist(), y.tolist())
        if name in formulas:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                want = formulas[name](x[finite])
            np.testing.assert_array_equal(y[finite], want, err_msg=name)  # bit for bit, -0 == 0
    for layer in (GELU(), GELU(approximate=True), SiLU(), Softplus(), ELU(), LeakyReLU()):
        with strict_floats():
            y, _, cache = layer.forward(None, None, x)
            dx, _ = layer.backward(None, cache, np.ones_like(x))
        assert not np.isnan(y).any() and not np.isnan(dx).any(), (layer, x.tolist())
        assert ((dx == 0) | (dx == 1))[~finite].all() or isinstance(layer, LeakyReLU), (layer, x.tolist())


def test_nan_stays_nan_in_every_activation() -> None:
    x = np.array([np.nan, 1.0])
    for name, fn, _, _ in LIMITS:
        with strict_floats():
            y = fn(x)
        assert np.isnan(y[0]) and not np.isnan(y[1]), name


@pytest.mark.parametrize(
    ("name", "fn"),
    [("gelu", F.gelu), ("gelu_cdf", F.gelu_cdf), ("gelu_grad", F.gelu_grad), ("erfc", F.erfc)],
)
def test_float16_gelu_is_the_float64_value_rounded(name: str, fn: Callable[[Array], Array]) -> None:
    # computed in float16 the erf pieces lost digits: gelu(-2.1) was 6% off
    x = np.unique(np.linspace(-6, 6, 6001).astype(np.float16))
    got, want = fn(x), fn(x.astype(np.float64))
    assert got.dtype == np.float16
    normal = np.abs(want) >= np.finfo(np.float16).smallest_normal
    ulps = np.abs(got.astype(np.float64) - want) / np.spacing(want.astype(np.float16)).astype(np.float64)
    assert ulps[normal].max() <= 2.5, (name, x[normal][np.argmax(ulps[normal])])


# --- softmax and log_softmax with infinite entries -------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_of_infinite_entries_is_the_limit(dtype: Any) -> None:
    x = np.array(
        [
            [INF, 0.0, -INF],  # one +inf takes all the mass
            [INF, INF, 5.0],  # several share it
            [-INF, -INF, -INF],  # no finite entry: uniform, as any row of equal entries
            [-INF, 1.0, 1.0],  # -inf is probability 0
            [np.nan, INF, 0.0],  # NaN stays NaN
            [1.0, 2.0, 3.0],  # an ordinary row next to them is unaffected
        ],
        dtype,
    )
    with strict_floats():
        p, logp = F.softmax(x), F.log_softmax(x)
    assert p.dtype == logp.dtype == dtype
    want = np.array([[1, 0, 0], [0.5, 0.5, 0], [1 / 3] * 3, [0, 0.5, 0.5]])
    np.testing.assert_allclose(p[:4], want, rtol=1e-3)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(logp[:4], np.log(want), rtol=1e-3)
    assert np.isnan(p[4]).all() and np.isnan(logp[4]).all()
    np.testing.assert_array_equal(p[5], F.softmax(x[5]))
    np.testing.assert_array_equal(logp[5], F.log_softmax(x[5]))
    with strict_floats():  # the layer, and its backward through the one-hot row
        y, _, cache = fnnet.Softmax().forward(None, None, x[:4])
        dx, _ = fnnet.Softmax().backward(None, cache, np.ones_like(y))
    np.testing.assert_array_equal(y, p[:4])
    assert np.isfinite(dx).all()


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 5)), elements=st.sampled_from([-INF, INF, -3.0, 0.0, 2.5, 700.0])))
def test_property_softmax_rows_with_infinities_are_distributions(x: Array) -> None:
    with strict_floats():
        p, logp = F.softmax(x), F.log_softmax(x)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(logp, np.log(p), rtol=1e-12, atol=1e-300)
    top = x == x.max(axis=-1, keepdims=True)
    assert (p[~top & np.isinf(x.max(axis=-1, keepdims=True))] == 0).all()  # only the +inf entries get mass


# --- metrics with nothing to score -------------------------------------------------------------------


def test_token_accuracy_with_every_token_ignored_is_a_one_line_error() -> None:
    y = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"^token_accuracy: every target equals ignore_index=0, so there is no token to score$"):
        token_accuracy(y, np.zeros((2, 3), np.int64), ignore_index=0)
    # the loss of such a batch is a step that changes nothing, as documented
    value, grad = time_softmax_cross_entropy(y, np.zeros((2, 3), np.int64), ignore_index=0)
    assert value == 0.0 and not grad.any() and grad.shape == y.shape
    assert token_accuracy(y, np.array([[0, 0, 1], [0, 0, 0]]), ignore_index=0) == 0.0  # one token counted, predicted 0


EMPTY: list[tuple[str, Callable[[], object]]] = [
    ("accuracy", lambda: accuracy(np.zeros((0, 3)), np.zeros(0, np.int64))),
    ("token_accuracy", lambda: token_accuracy(np.zeros((0, 5, 3)), np.zeros((0, 5), np.int64))),
    ("token_accuracy", lambda: token_accuracy(np.zeros((2, 0, 3)), np.zeros((2, 0), np.int64), ignore_index=-1)),
    ("binary_accuracy", lambda: binary_accuracy(np.zeros(0), np.zeros(0))),
    ("confusion_matrix", lambda: confusion_matrix(np.zeros((0, 3)), np.zeros(0, np.int64))),
    ("confusion_matrix", lambda: confusion_matrix(np.zeros((0, 1)), np.zeros(0))),
    ("mae", lambda: mae(np.zeros(0), np.zeros(0))),
    ("rmse", lambda: rmse(np.zeros((0, 1)), np.zeros(0))),
    ("r2", lambda: r2(np.zeros((0, 2)), np.zeros((0, 2)))),
]


@pytest.mark.parametrize(("name", "call"), EMPTY, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EMPTY)])
def test_every_metric_on_empty_input_is_a_one_line_error(name: str, call: Callable[[], object]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" on the way
        with pytest.raises(ValueError, match=rf"^{name}: ") as info:
            call()
    assert "\n" not in str(info.value)


def test_r2_of_targets_without_spread_is_nan_as_documented() -> None:
    assert np.isnan(r2(np.array([1.0, 2.0]), np.array([3.0, 3.0])))


def test_evaluate_of_a_set_that_is_all_padding_names_evaluate() -> None:
    loss = functools.partial(time_softmax_cross_entropy, ignore_index=-1)
    x = np.zeros((4, 3, 5))
    t = np.full((4, 3), -1)
    no_metrics: dict[str, Any] = {}
    for metrics in (None, no_metrics):  # the loss alone would be 0.0: refused before any metric runs
        with pytest.raises(ValueError, match=r"^evaluate: every target equals the loss's ignore_index=-1, so the set has no token to score$"):
            evaluate(fnnet.Identity(), None, x, t, loss=loss, metrics=metrics)
    t[0, 0] = 2
    assert evaluate(fnnet.Identity(), None, x, t, loss=loss)["acc"] == 0.0  # argmax of zeros is class 0


# --- check_grads on a gradient that is exactly zero ---------------------------------------------------

CONV_BN = fnnet.serial(fnnet.Conv2D(4, 3, pad=1), fnnet.BatchNorm())
CONV_BN_SHAPE = (2, 5, 5)


@attrs.frozen
class _Tampered(Layer):
    """``inner`` with ``tamper(dx, grads)`` applied to what its backward returns (a wrong backward)."""

    inner: Layer
    tamper: Callable[[Array, Any], tuple[Array, Any]]

    def out_shape(self, in_shape: Shape) -> Shape:
        return self.inner.out_shape(in_shape)

    def init(self, key: fnnet.Key, in_shape: Shape) -> tuple[Any, Shape]:
        return self.inner.init(key, in_shape)

    def init_state(self, in_shape: Shape) -> Any:
        return self.inner.init_state(in_shape)

    def forward(self, params: Any, state: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any, Any]:
        return self.inner.forward(params, state, x, ctx)

    def backward(self, params: Any, cache: Any, dout: Array, input_grad: bool = True) -> tuple[Array, Any]:
        return self.tamper(*self.inner.backward(params, cache, dout, input_grad))


def _conv_bn_check(layer: Layer = CONV_BN) -> GradCheck:
    params = tree_astype(layer.init(fnnet.key(0), CONV_BN_SHAPE)[0], np.float64)
    state = tree_astype(layer.init_state(CONV_BN_SHAPE), np.float64)
    x = np.random.default_rng(3).standard_normal((6, *CONV_BN_SHAPE))
    return check_grads(layer, params, x, state=state, ctx=TRAIN)


def test_check_grads_passes_a_bias_whose_true_gradient_is_zero() -> None:
    # the conv bias in front of a training-mode BatchNorm is cancelled by the batch mean: analytic
    # and numerical gradients are both round-off noise, whose ratio was reported as an error of 1
    check = _conv_bn_check()
    assert set(check.errors) == {"0/w", "0/b", "1/gamma", "1/beta", "x"}
    assert check.max_error < 1e-6, str(check)


def _scaled(leaf: str, factor: float) -> Callable[[Array, Any], tuple[Array, Any]]:
    def tamper(dx: Array, grads: Any) -> tuple[Array, Any]:
        conv, bn = grads
        if leaf == "x":
            return dx * factor, grads
        if leaf == "0/w":
            return dx, (conv._replace(w=conv.w * factor), bn)
        return dx, (conv, bn._replace(gamma=bn.gamma * factor))

    return tamper


def _one_element(leaf: str, relative: float) -> Callable[[Array, Any], tuple[Array, Any]]:
    """Add ``relative`` times the leaf's largest gradient (the weight's, for the zero bias) to one element."""

    def tamper(dx: Array, grads: Any) -> tuple[Array, Any]:
        conv, bn = grads
        if leaf == "0/b":  # a gradient that should be 0 made 1e-5 of the weight gradient's size
            b = conv.b.copy()
            b[2] += relative * np.abs(conv.w).max()
            return dx, (conv._replace(b=b), bn)
        beta = bn.beta.copy()
        beta[1] += relative * np.abs(beta).max()
        return dx, (conv, bn._replace(beta=beta))

    return tamper


@pytest.mark.parametrize(
    ("tamper", "wrong", "least"),
    [
        (_scaled("0/w", 1.01), "0/w", 5e-3),
        (_scaled("1/gamma", 1.01), "1/gamma", 5e-3),
        (_scaled("x", 0.99), "x", 5e-3),
        (_one_element("1/beta", 1e-4), "1/beta", 5e-5),
        (_one_element("0/b", 1e-5), "0/b", 5e-3),
    ],
    ids=["w-times-1.01", "gamma-times-1.01", "dx-times-0.99", "one-beta-off-by-1e-4", "zero-bias-made-1e-5"],
)
def test_check_grads_still_reports_a_wrong_backward(
    tamper: Callable[[Array, Any], tuple[Array, Any]], wrong: str, least: float
) -> None:
    check = _conv_bn_check(_Tampered(CONV_BN, tamper))
    assert check.errors[wrong] > least, str(check)
    assert check.max_error == check.errors[wrong]
    assert all(e < 1e-6 for p, e in check.errors.items() if p != wrong), str(check)


class _WC(NamedTuple):
    w: Array
    c: Array


@attrs.frozen
class _Unused(Layer):
    """``y = x * w``; ``c`` does not enter, but backward claims ``dc = claim`` (0 would be right)."""

    claim: float

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def init(self, key: fnnet.Key, in_shape: Shape) -> tuple[_WC, Shape]:
        return _WC(key.generator().standard_normal(in_shape), np.zeros(2)), tuple(in_shape)

    def forward(self, params: _WC, state: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any, Array]:
        return x * params.w, state, x

    def backward(self, params: _WC, cache: Array, dout: Array, input_grad: bool = True) -> tuple[Array, _WC]:
        return dout * params.w, _WC((dout * cache).sum(axis=0), np.array([0.0, self.claim]))


@pytest.mark.parametrize("claim", [0.0, 1e-9, 1e-4])
def test_check_grads_measures_a_zero_gradient_against_a_thousandth_of_the_largest(claim: float) -> None:
    # documented: max|a - n| / max(max|a|, max|n|, 1e-3 * G, 1e-12), G the largest finite |n|
    layer = _Unused(claim)
    params, _ = layer.init(fnnet.key(1), (3,))
    x = np.random.default_rng(4).standard_normal((5, 3))
    check = check_grads(layer, params, x)
    r = _PROJECTION_KEY.generator().standard_normal(x.shape)
    g = max(np.abs((r * x).sum(axis=0)).max(), np.abs(r * params.w).max())  # the exact gradients
    assert ZERO_GRAD_FLOOR == 1e-3
    assert check.errors["c"] == pytest.approx(claim / (ZERO_GRAD_FLOOR * g), rel=1e-6)
    assert check.errors["w"] < 1e-9 and check.errors["x"] < 1e-9
    # the old measure, claim / max(claim, 0, 1e-12), called any claim above 1e-12 an error of 1
    assert _rel_error(np.array([0.0, claim]), np.zeros(2)) == (1.0 if claim else 0.0)
