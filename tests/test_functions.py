"""Activation functions and softmax: values, stability, batch shapes, dtypes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

import fnnet
from fnnet.typing import Array
from fnnet.functions import identity, log_softmax, relu, sigmoid, softmax, step_function, tanh

Fn = Callable[[Array], Array]
ALL = [step_function, sigmoid, relu, tanh, identity, softmax, log_softmax]
SHAPES = [(7,), (4, 5), (2, 3, 4)]


def _x(shape: tuple[int, ...], scale: float = 3.0, salt: int = 0) -> Array:
    return scale * np.random.default_rng([1605, salt, len(shape)]).standard_normal(shape)


@contextmanager
def _strict(under: str = "raise") -> Iterator[None]:
    """Every warning is an error and so is every floating point exception (underflow optional)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under=under):  # type: ignore[arg-type]
            yield


def _exact_softmax(row: Array) -> list[float]:
    """Softmax of a short row straight from the definition, in Python floats (moderate inputs)."""
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


# --- elementwise functions -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_step_function(shape: tuple[int, ...]) -> None:
    x = _x(shape)
    x.reshape(-1)[0] = 0.0  # the step is 0 at 0
    y = step_function(x)
    assert y.shape == x.shape
    for xi, yi in zip(x.ravel(), y.ravel()):
        assert yi == (1.0 if xi > 0 else 0.0)
    assert step_function(np.array([-2, 0, 3])).tolist() == [0, 0, 1]


def test_step_function_is_exported_under_its_own_name() -> None:
    """``step`` would read as a training step next to ``fnnet.train``; the activation is ``step_function``."""
    assert fnnet.step_function is step_function
    assert not hasattr(fnnet, "step") and not hasattr(fnnet.functions, "step")


@pytest.mark.parametrize("shape", SHAPES)
def test_sigmoid_matches_definition(shape: tuple[int, ...]) -> None:
    x = _x(shape)
    y = sigmoid(x)
    assert y.shape == x.shape
    for xi, yi in zip(x.ravel(), y.ravel()):
        assert yi == pytest.approx(1 / (1 + math.exp(-xi)), rel=1e-14)
    np.testing.assert_allclose(sigmoid(-x), 1 - y, atol=1e-15)  # σ(-x) = 1 - σ(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_saturates_without_warnings(dtype: type[np.floating]) -> None:
    x = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype)
    with _strict():
        y = sigmoid(x)
    assert y.dtype == dtype
    assert y[0] == 0.0 and y[-1] == 1.0 and y[2] == 0.5
    assert 0.0 <= y[1] < 1e-40 and y[3] == 1.0


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_tanh_identity(shape: tuple[int, ...]) -> None:
    x = _x(shape)
    for xi, ri, ti, ii in zip(x.ravel(), relu(x).ravel(), tanh(x).ravel(), identity(x).ravel()):
        assert ri == (xi if xi > 0 else 0.0)
        assert ti == pytest.approx(math.tanh(xi), rel=1e-14)
        assert ii == xi
    assert relu(x).shape == tanh(x).shape == identity(x).shape == x.shape


# --- softmax and log_softmax ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_rows_are_distributions(shape: tuple[int, ...]) -> None:
    x = _x(shape)
    y = softmax(x)
    assert y.shape == x.shape
    assert (y > 0).all() and (y < 1).all()
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-14)
    for row_x, row_y in zip(x.reshape(-1, shape[-1]), y.reshape(-1, shape[-1])):
        np.testing.assert_allclose(row_y, _exact_softmax(row_x), rtol=1e-13)


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_invariant_to_adding_a_constant(shape: tuple[int, ...]) -> None:
    x = _x(shape)
    per_row = _x(shape[:-1] + (1,), scale=100.0, salt=1)  # a different constant for every row
    np.testing.assert_allclose(softmax(x + per_row), softmax(x), rtol=1e-12)
    np.testing.assert_allclose(softmax(x + 1000.0), softmax(x), rtol=1e-12)
    np.testing.assert_allclose(log_softmax(x + per_row), log_softmax(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_functions_act_on_the_last_axis_only(shape: tuple[int, ...]) -> None:
    x = _x(shape)
    flat = x.reshape(-1, shape[-1])
    for fn in (softmax, log_softmax):
        y = fn(x).reshape(-1, shape[-1])
        for i, row in enumerate(flat):
            np.testing.assert_allclose(y[i], fn(row), rtol=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
def test_log_softmax_is_log_of_softmax(shape: tuple[int, ...]) -> None:
    x = _x(shape)
    np.testing.assert_allclose(log_softmax(x), np.log(softmax(x)), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_large_inputs_do_not_overflow(dtype: type[np.floating]) -> None:
    x = np.array([[1000.0, 999.0, -1000.0], [-1000.0, -1000.0, -1000.0]], dtype=dtype)
    with _strict(under="ignore"):  # exp(-2000) flushing to 0 is the intended outcome
        y = softmax(x)
        ly = log_softmax(x)
    assert y.dtype == ly.dtype == dtype
    e = math.exp(-1.0)
    np.testing.assert_allclose(y[0], [1 / (1 + e), e / (1 + e), 0.0], rtol=1e-6)
    np.testing.assert_allclose(y[1], [1 / 3] * 3, rtol=1e-6)
    assert y[0, 2] == 0.0  # softmax underflows here ...
    assert np.isfinite(ly).all()  # ... log_softmax does not
    assert ly[0, 2] == pytest.approx(-2000.0 - math.log(1 + e), rel=1e-6)
    np.testing.assert_allclose(ly[1], [-math.log(3)] * 3, rtol=1e-6)


# --- dtypes and purity ---------------------------------------------------------------------------


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(fn: Fn, dtype: type[np.floating]) -> None:
    x = _x((3, 4)).astype(dtype)
    before = x.copy()
    y = fn(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_float32_agrees_with_float64(fn: Fn) -> None:
    x = _x((3, 4))
    np.testing.assert_allclose(fn(x.astype(np.float32)), fn(x), rtol=1e-5, atol=1e-6)
