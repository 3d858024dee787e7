"""Losses: analytic gradients vs central differences, labels vs one-hot, stability, validation."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from _helpers import rng

from fnnet.functions import log_softmax, softmax
from fnnet.losses import (
    CROSS_ENTROPY_DELTA,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber,
    mean_squared_error,
    softmax_cross_entropy,
    sum_squared_error,
)
from fnnet.metrics import accuracy
from fnnet.numerical import numerical_gradient
from fnnet.typing import Array

Loss = Callable[[Array, Array], tuple[float, Array]]

# Class-score shapes (..., K): one sample, a batch, a batch of sequences, a single class.
CLASS_SHAPES = [(5,), (4, 3), (2, 3, 4), (3, 1)]
# Any shapes for the elementwise losses (including a scalar).
ANY_SHAPES = [(), (6,), (4, 3), (2, 3, 2)]

GRAD_TOL = 1e-6
SEED = 20160924  # the first salt of every rng() draw in this module


def _labels(shape: tuple[int, ...], r: np.random.Generator) -> Array:
    return r.integers(0, shape[-1], size=shape[:-1])


def _one_hot(t: Array, k: int) -> Array:
    return np.eye(k)[t]


def _probabilities(shape: tuple[int, ...], r: np.random.Generator) -> Array:
    return softmax(r.standard_normal(shape))


@contextmanager
def _no_fp_trouble() -> Iterator[None]:
    """Turn overflow, division by zero and invalid operations into errors, and every warning too.

    Underflow is left alone: ``exp`` of a very negative number flushing to 0 is the intended,
    harmless outcome inside a stable log-softmax, and NumPy does not warn about it by default.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            yield


def _assert_grad_matches(loss: Loss, y: Array, t: Array) -> None:
    value, grad = loss(y, t)
    assert isinstance(value, float)
    assert grad.shape == y.shape and grad.dtype == y.dtype
    numeric = numerical_gradient(lambda yy: loss(yy, t)[0], y)
    scale = max(float(np.abs(numeric).max()), 1e-12)
    assert float(np.abs(grad - numeric).max()) / scale < GRAD_TOL


# --- gradients vs central differences (float64) ----------------------------------------------------


@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("targets", ["labels", "one-hot"])
def test_softmax_cross_entropy_gradient(shape: tuple[int, ...], targets: str) -> None:
    r = rng(SEED, 1, len(shape))
    x = 2 * r.standard_normal(shape)
    t = _labels(shape, r)
    _assert_grad_matches(softmax_cross_entropy, x, t if targets == "labels" else _one_hot(t, shape[-1]))


@pytest.mark.parametrize("shape", CLASS_SHAPES)
def test_softmax_cross_entropy_gradient_soft_targets(shape: tuple[int, ...]) -> None:
    r = rng(SEED, 2, len(shape))
    x = r.standard_normal(shape)
    _assert_grad_matches(softmax_cross_entropy, x, _probabilities(shape, r))
    # rows that do not sum to 1: the gradient is still exact
    _assert_grad_matches(softmax_cross_entropy, x, r.random(shape))


@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("targets", ["labels", "one-hot", "soft"])
def test_cross_entropy_gradient(shape: tuple[int, ...], targets: str) -> None:
    r = rng(SEED, 3, len(shape))
    # probabilities away from 0: central differences of log y are accurate only where h << y
    y = r.uniform(0.2, 1.0, shape)
    t = _labels(shape, r)
    tt = {"labels": t, "one-hot": _one_hot(t, shape[-1]), "soft": _probabilities(shape, r)}[targets]
    _assert_grad_matches(cross_entropy, y, tt)


@pytest.mark.parametrize("loss", [sum_squared_error, mean_squared_error])
@pytest.mark.parametrize("shape", ANY_SHAPES)
def test_squared_error_gradient(loss: Loss, shape: tuple[int, ...]) -> None:
    r = rng(SEED, 4, len(shape))
    _assert_grad_matches(loss, r.standard_normal(shape), r.standard_normal(shape))


@pytest.mark.parametrize("shape", ANY_SHAPES)
def test_binary_cross_entropy_gradient(shape: tuple[int, ...]) -> None:
    r = rng(SEED, 5, len(shape))
    z = 3 * r.standard_normal(shape)
    _assert_grad_matches(binary_cross_entropy_with_logits, z, r.random(shape))
    _assert_grad_matches(binary_cross_entropy_with_logits, z, r.integers(0, 2, size=shape))


# --- values against the defining formulas --------------------------------------------------------


@pytest.mark.parametrize("shape", [(6,), (4, 3), (2, 3, 2)])
def test_squared_error_values(shape: tuple[int, ...]) -> None:
    r = rng(SEED, 6, len(shape))
    y, t = r.standard_normal(shape), r.standard_normal(shape)
    sse, dsse = sum_squared_error(y, t)
    mse, dmse = mean_squared_error(y, t)
    assert sse == pytest.approx(0.5 * sum((a - b) ** 2 for a, b in zip(y.ravel(), t.ravel())))
    assert mse == pytest.approx(2 * sse / y.size)  # the mean has no factor 0.5
    np.testing.assert_allclose(dsse, y - t)
    np.testing.assert_allclose(dmse, 2 * (y - t) / y.size)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
def test_cross_entropy_is_the_books_formula(shape: tuple[int, ...]) -> None:
    r = rng(SEED, 7, len(shape))
    y, t = _probabilities(shape, r), _probabilities(shape, r)
    n = y.size // shape[-1]
    value, grad = cross_entropy(y, t)
    assert value == pytest.approx(-np.sum(t * np.log(y + CROSS_ENTROPY_DELTA)) / n)
    np.testing.assert_allclose(grad, -t / (y + CROSS_ENTROPY_DELTA) / n)


def test_cross_entropy_delta_guards_zero_probability() -> None:
    y = np.array([[0.0, 1.0], [0.5, 0.5]])
    with _no_fp_trouble():
        value, grad = cross_entropy(y, np.array([0, 1]))
    assert value == pytest.approx((-np.log(CROSS_ENTROPY_DELTA) - np.log(0.5 + CROSS_ENTROPY_DELTA)) / 2)
    assert np.isfinite(grad).all()
    assert grad[0, 0] == pytest.approx(-1 / CROSS_ENTROPY_DELTA / 2)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
def test_softmax_cross_entropy_matches_softmax_then_cross_entropy(shape: tuple[int, ...]) -> None:
    r = rng(SEED, 8, len(shape))
    x = r.standard_normal(shape)
    t = _labels(shape, r)
    n = x.size // shape[-1]
    value, grad = softmax_cross_entropy(x, t)
    # the unfused book version differs only by the log guard δ
    assert value == pytest.approx(cross_entropy(softmax(x), t)[0], rel=1e-5)
    np.testing.assert_allclose(grad, (softmax(x) - _one_hot(t, shape[-1])) / n, atol=1e-15)


@pytest.mark.parametrize("shape", [(), (7,), (3, 4)])
def test_binary_cross_entropy_values(shape: tuple[int, ...]) -> None:
    r = rng(SEED, 9, len(shape))
    z, t = 3 * r.standard_normal(shape), r.random(shape)
    value, grad = binary_cross_entropy_with_logits(z, t)
    s = 1 / (1 + np.exp(-z))
    n = max(z.size, 1)
    assert value == pytest.approx(-np.mean(t * np.log(s) + (1 - t) * np.log(1 - s)))
    np.testing.assert_allclose(grad, (s - t) / n)


def test_binary_cross_entropy_is_two_class_softmax_cross_entropy() -> None:
    r = rng(SEED, 10)
    z, t = 4 * r.standard_normal(8), r.integers(0, 2, size=8)
    # P(class 1) = σ(z) = softmax([0, z])[1]
    logits = np.stack([np.zeros_like(z), z], axis=-1)
    b_value, b_grad = binary_cross_entropy_with_logits(z, t)
    s_value, s_grad = softmax_cross_entropy(logits, t)
    assert b_value == pytest.approx(s_value)
    np.testing.assert_allclose(b_grad, s_grad[:, 1])


# --- labels and one-hot targets agree ------------------------------------------------------------


# one output column with a squared error: (N,) targets are values, not labels (see
# test_squared_errors_one_column), so those pairs are not generated
@pytest.mark.parametrize(
    "loss, shape",
    [
        (loss, shape)
        for loss in (softmax_cross_entropy, cross_entropy, sum_squared_error, mean_squared_error)
        for shape in CLASS_SHAPES
        if not (shape[-1] == 1 and loss in (sum_squared_error, mean_squared_error))
    ],
)
def test_labels_and_one_hot_agree(loss: Loss, shape: tuple[int, ...]) -> None:
    r = rng(SEED, 11, len(shape))
    y = _probabilities(shape, r)
    t = _labels(shape, r)
    v_lab, g_lab = loss(y, t)
    v_hot, g_hot = loss(y, _one_hot(t, shape[-1]))
    assert v_lab == pytest.approx(v_hot, rel=1e-12)
    np.testing.assert_allclose(g_lab, g_hot, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", [s for s in CLASS_SHAPES if s[-1] > 1])
def test_accuracy_counts_correct_rows(shape: tuple[int, ...]) -> None:
    r = rng(SEED, 12, len(shape))
    t = _labels(shape, r)
    k = shape[-1]
    y = _one_hot(t, k) + 0.1 * r.random(shape)  # argmax is t in every row
    rows = y.reshape(-1, k)  # a view: y is a fresh contiguous array
    n = rows.shape[0]
    wrong = n // 2 if k > 1 else 0
    for i in range(wrong):  # move the maximum of the first `wrong` rows to another class
        label = int(t.reshape(-1)[i])
        rows[i, (label + 1) % k] = 2.0
    assert accuracy(y, t) == pytest.approx((n - wrong) / n)
    assert accuracy(y, _one_hot(t, k)) == pytest.approx((n - wrong) / n)
    assert accuracy(y.astype(np.float32), t) == pytest.approx((n - wrong) / n)


# --- stability at extreme logits -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("magnitude", [1000.0, 1e4])
def test_softmax_cross_entropy_extreme_logits(dtype: type[np.floating], magnitude: float) -> None:
    x = np.array([[magnitude, -magnitude, 0.0], [-magnitude, -magnitude, magnitude]], dtype=dtype)
    t = np.array([1, 2])
    with _no_fp_trouble():
        value, grad = softmax_cross_entropy(x, t)
        v_hot, g_hot = softmax_cross_entropy(x, _one_hot(t, 3).astype(dtype))
    # row 0 is wrong by 2·magnitude, row 1 right with certainty: -log p = (2·magnitude + 0) / 2
    assert value == pytest.approx(magnitude, rel=1e-6)
    assert v_hot == pytest.approx(value, rel=1e-6)
    assert grad.dtype == dtype and np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(g_hot, grad, atol=1e-7)


def test_log_softmax_route_keeps_loss_finite_where_softmax_underflows() -> None:
    x = np.array([[0.0, -800.0]])
    assert softmax(x)[0, 1] == 0.0  # the unfused route would take log(0)
    with _no_fp_trouble():
        value, _ = softmax_cross_entropy(x, np.array([1]))
    assert value == pytest.approx(-float(log_softmax(x)[0, 1]))
    assert value == pytest.approx(800.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("magnitude", [1000.0, 1e4])
def test_binary_cross_entropy_extreme_logits(dtype: type[np.floating], magnitude: float) -> None:
    z = np.array([magnitude, -magnitude, magnitude, -magnitude], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    with _no_fp_trouble():
        value, grad = binary_cross_entropy_with_logits(z, t)
    # two certain and right (loss 0), two certain and wrong by |z| each
    assert value == pytest.approx(2 * magnitude / 4, rel=1e-6)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, [0.0, 0.0, 0.25, -0.25], atol=1e-7)


@pytest.mark.parametrize(
    "loss",
    [softmax_cross_entropy, cross_entropy, sum_squared_error, mean_squared_error, binary_cross_entropy_with_logits],
)
def test_float32_in_float32_out_and_inputs_untouched(loss: Loss) -> None:
    r = rng(SEED, 13)
    y = _probabilities((4, 3), r).astype(np.float32)
    t = r.integers(0, 2, size=(4, 3)) if loss is binary_cross_entropy_with_logits else _labels((4, 3), r)
    y_before, t_before = y.copy(), t.copy()
    value, grad = loss(y, t)
    assert isinstance(value, float) and np.isfinite(value)
    assert grad.dtype == np.float32 and grad.shape == y.shape
    assert grad is not y
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(t, t_before)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [softmax_cross_entropy, cross_entropy])
def test_class_losses_reject_bad_targets(loss: Loss) -> None:
    name = loss.__name__
    y = _probabilities((4, 5), rng(SEED, 14))
    with pytest.raises(ValueError, match=rf"{name}: expected t as integer labels of shape \(4,\) or one-hot "
                       r"targets of shape \(4, 5\).*got shape \(4, 3\)"):
        loss(y, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        loss(y, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=rf"{name}: labels must lie in \[0, 5\) for 5 classes, got values in \[0, 5\]"):
        loss(y, np.array([0, 1, 2, 5]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\).*\[-1, 2\]"):
        loss(y, np.array([0, -1, 2, 2]))
    with pytest.raises(ValueError, match=rf"{name}: expected integer labels of shape \(4,\), got dtype float64"):
        loss(y, np.array([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=rf"{name}: expected \w+ of a floating point dtype, got dtype int64"):
        loss(np.ones((4, 5), dtype=np.int64), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"rank >= 1 with classes on the last axis, got shape \(\)"):
        loss(np.array(0.5), np.array(0))
    with pytest.raises(ValueError, match=r"at least one sample and one class, got y of shape \(0, 5\)"):
        loss(np.zeros((0, 5)), np.zeros((0,), dtype=np.int64))


@pytest.mark.parametrize("loss", [sum_squared_error, mean_squared_error])
def test_squared_errors_reject_bad_targets(loss: Loss) -> None:
    name = loss.__name__
    y = np.zeros((4, 3))
    with pytest.raises(ValueError, match=rf"{name}: expected t of y's shape \(4, 3\) \(or integer labels of shape "
                       r"\(4,\)\), got shape \(3, 4\) dtype float64"):
        loss(y, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        loss(y, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=rf"{name}: expected y of a floating point dtype, got dtype int64"):
        loss(np.zeros((4, 3), dtype=np.int64), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        loss(np.zeros(3), np.array(1.0))  # no broadcasting of targets


def test_mean_squared_error_rejects_empty() -> None:
    with pytest.raises(ValueError, match=r"mean_squared_error: expected a non-empty y, got shape \(0, 3\)"):
        mean_squared_error(np.zeros((0, 3)), np.zeros((0, 3)))


def test_binary_cross_entropy_rejects_bad_targets() -> None:
    z = np.zeros((4, 1))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: expected t of z's shape \(4, 1\) "
                       r"with values in \[0, 1\], got shape \(3,\)"):
        binary_cross_entropy_with_logits(z, np.zeros(3))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\], got values in \[0, 2\]"):
        binary_cross_entropy_with_logits(z, np.array([[0], [1], [2], [1]]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\], got values in \[-0.5, 1.0\]"):
        binary_cross_entropy_with_logits(z, np.array([[0.0], [1.0], [-0.5], [1.0]]))
    with pytest.raises(ValueError, match=r"expected a non-empty z"):
        binary_cross_entropy_with_logits(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match=r"expected z of a floating point dtype, got dtype int64"):
        binary_cross_entropy_with_logits(np.zeros(4, dtype=np.int64), np.zeros(4))


def test_accuracy_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"accuracy: expected t as integer labels of shape \(4,\)"):
        accuracy(np.zeros((4, 3)), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"accuracy: labels must lie in \[0, 3\)"):
        accuracy(np.zeros((4, 3)), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"accuracy: expected numeric scores of rank >= 1"):
        accuracy(np.array(1.0), np.array(0))
    with pytest.raises(ValueError, match=r"accuracy: expected at least one sample"):
        accuracy(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))


# --- binary cross-entropy on probabilities, Huber, one output column ------------------------------


@pytest.mark.parametrize("shape", ANY_SHAPES)
def test_binary_cross_entropy_on_probabilities_gradient(shape: tuple[int, ...]) -> None:
    r = rng(SEED, 20, len(shape))
    p = r.uniform(0.1, 0.9, shape)  # central differences of log p are accurate only where h << p
    _assert_grad_matches(binary_cross_entropy, p, r.random(shape))
    _assert_grad_matches(binary_cross_entropy, p, r.integers(0, 2, size=shape))


def test_binary_cross_entropy_on_probabilities_is_the_books_formula_and_agrees_with_logits() -> None:
    r = rng(SEED, 21)
    z, t = 2 * r.standard_normal((7, 1)), r.integers(0, 2, size=(7, 1))
    p = 1 / (1 + np.exp(-z))
    d = CROSS_ENTROPY_DELTA
    value, grad = binary_cross_entropy(p, t)
    assert value == pytest.approx(-np.mean(t * np.log(p + d) + (1 - t) * np.log(1 - p + d)), rel=1e-12)
    # through the sigmoid's derivative p (1 - p) it is the logits form, up to the guard δ
    logit_value, logit_grad = binary_cross_entropy_with_logits(z, t)
    assert value == pytest.approx(logit_value, rel=1e-5)
    np.testing.assert_allclose(grad * p * (1 - p), logit_grad, rtol=1e-4, atol=1e-9)


def test_binary_cross_entropy_on_probabilities_is_finite_at_0_and_1() -> None:
    p = np.array([0.0, 1.0, 0.0, 1.0], dtype=np.float32)
    with _no_fp_trouble():
        value, grad = binary_cross_entropy(p, np.array([0, 1, 1, 0]))
    assert value == pytest.approx(-2 * np.log(CROSS_ENTROPY_DELTA) / 4, rel=1e-4)
    assert grad.dtype == np.float32 and np.isfinite(grad).all()


@pytest.mark.parametrize("shape", ANY_SHAPES)
@pytest.mark.parametrize("delta", [1.0, 0.3])
def test_huber_gradient(shape: tuple[int, ...], delta: float) -> None:
    r = rng(SEED, 22, len(shape))
    y, t = 2 * r.standard_normal(shape), r.standard_normal(shape)
    _assert_grad_matches(lambda yy, tt: huber(yy, tt, delta), y, t)


def test_huber_values_quadratic_near_and_linear_far() -> None:
    y, t = np.array([0.5, -3.0, 1.0]), np.zeros(3)
    value, grad = huber(y, t)
    assert value == pytest.approx((0.5 * 0.25 + (3.0 - 0.5) + 0.5) / 3)
    np.testing.assert_allclose(grad, [0.5 / 3, -1 / 3, 1 / 3])
    small = np.array([0.1, -0.2])
    assert huber(small, np.zeros(2), delta=1.0)[0] == pytest.approx(0.5 * mean_squared_error(small, np.zeros(2))[0])
    with pytest.raises(ValueError, match=r"huber: delta must be a finite number > 0, got -1"):
        huber(y, t, delta=-1)


@pytest.mark.parametrize("loss", [sum_squared_error, mean_squared_error, huber, binary_cross_entropy,
                                  binary_cross_entropy_with_logits])
def test_one_output_column_n_and_n1_targets_agree(loss: Loss) -> None:
    r = rng(SEED, 23)
    y = r.uniform(0.1, 0.9, (6, 1))
    t = r.integers(0, 2, size=6).astype(np.float64)
    v_col, g_col = loss(y, t)  # (N, 1) outputs, (N,) targets
    v_same, g_same = loss(y, t[:, None])
    v_flat, g_flat = loss(y[:, 0], t[:, None])  # (N,) outputs, (N, 1) targets
    assert v_col == v_same == pytest.approx(v_flat, rel=1e-15)
    assert g_col.shape == (6, 1) and g_flat.shape == (6,)  # the gradient has y's shape
    np.testing.assert_array_equal(g_col, g_same)
    np.testing.assert_allclose(g_col[:, 0], g_flat, rtol=1e-15)


def test_squared_errors_one_column_never_broadcast_to_n_by_n() -> None:
    y, t = np.zeros((4, 1)), np.arange(4.0)
    assert mean_squared_error(y, t)[0] == pytest.approx(np.mean(t**2))  # n = 4, not 16
    assert sum_squared_error(y, t)[0] == pytest.approx(0.5 * np.sum(t**2))
    with pytest.raises(ValueError, match=r"mean_squared_error: expected t of y's shape \(4, 1\)"):
        mean_squared_error(y, np.zeros(3))
