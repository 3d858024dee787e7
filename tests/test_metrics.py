"""Metrics that fit the task: accuracy kinds, regression errors, confusion matrices, defaults, checks."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from _helpers import rng
from hypothesis import given, settings
from hypothesis import strategies as st

from fnnet import losses
from fnnet.metrics import (
    accuracy,
    binary_accuracy,
    check_metrics,
    confusion_matrix,
    default_metrics,
    mae,
    r2,
    rmse,
)
from fnnet.typing import Array

SEED = 1101


def test_accuracy_of_one_output_is_an_error_naming_binary_accuracy() -> None:
    with pytest.raises(ValueError, match=r"^accuracy: y of shape \(4, 1\) has one output per sample.*binary_accuracy"):
        accuracy(np.ones((4, 1)), np.array([0, 0, 0, 0]))


@pytest.mark.parametrize("y_shape", [(5,), (5, 1)])
@pytest.mark.parametrize("t_shape", [(5,), (5, 1)])
def test_binary_accuracy_logits_and_probabilities(y_shape: tuple[int, ...], t_shape: tuple[int, ...]) -> None:
    z = np.array([2.0, -1.0, 0.5, -0.1, 0.0]).reshape(y_shape)
    t = np.array([1, 0, 0, 1, 1]).reshape(t_shape)
    assert binary_accuracy(z, t) == pytest.approx(2 / 5)  # 0.0 is not > 0: predicted 0
    p = 1 / (1 + np.exp(-z))
    assert binary_accuracy(p, t, logits=False) == pytest.approx(2 / 5)
    assert binary_accuracy(z, t.astype(bool)) == pytest.approx(2 / 5)
    assert binary_accuracy(z, 1.0 - t) == pytest.approx(3 / 5)


def test_binary_accuracy_rejects_regression_targets_and_many_outputs() -> None:
    with pytest.raises(ValueError, match=r"^binary_accuracy: targets must be 0/1 labels, got values in \[0.0, 2.5\]; "
                       r"for a regression use mae, rmse or r2$"):
        binary_accuracy(np.zeros(3), np.array([0.0, 2.5, 1.0]))
    with pytest.raises(ValueError, match=r"binary_accuracy: expected outputs y of shape \(N,\) or \(N, 1\), got shape \(3, 2\)"):
        binary_accuracy(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"binary_accuracy: y has 3 samples but t has 2"):
        binary_accuracy(np.zeros(3), np.zeros(2))


def test_regression_metrics_against_formulas_and_column_shapes() -> None:
    r = rng(SEED, 1)
    y, t = r.standard_normal((20, 1)), r.standard_normal(20)
    d = y[:, 0] - t
    for yy, tt in ((y, t), (y[:, 0], t[:, None]), (y, t[:, None])):
        assert mae(yy, tt) == pytest.approx(np.mean(np.abs(d)), rel=1e-13)
        assert rmse(yy, tt) == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-13)
        assert r2(yy, tt) == pytest.approx(1 - np.sum(d**2) / np.sum((t - t.mean()) ** 2), rel=1e-13)
    assert r2(t, t) == 1.0 and rmse(t, t) == 0.0
    assert r2(np.full(20, t.mean()), t) == pytest.approx(0.0, abs=1e-12)  # predicting the mean
    assert np.isnan(r2(t[:3], np.ones(3)))
    with pytest.raises(ValueError, match=r"^rmse: expected targets of the outputs' shape \(20, 1\), got shape \(19,\)$"):
        rmse(y, t[:19])


def test_confusion_matrix_multiclass_binary_and_one_hot() -> None:
    y = np.array([[3.0, 0, 0], [0, 3, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]])
    t = np.array([0, 1, 2, 2, 1])
    cm = confusion_matrix(y, t)
    expected = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64 and cm.sum() == len(t)
    np.testing.assert_array_equal(confusion_matrix(y, np.eye(3)[t]), expected)
    assert confusion_matrix(y, t, num_classes=4).shape == (4, 4)
    # the diagonal over the total is the accuracy
    assert np.trace(cm) / cm.sum() == pytest.approx(accuracy(y, t))
    z, tb = np.array([[1.0], [-1.0], [2.0], [-3.0]]), np.array([1, 1, 0, 0])
    np.testing.assert_array_equal(confusion_matrix(z, tb), [[1, 1], [1, 1]])
    np.testing.assert_array_equal(confusion_matrix(np.array([0.9, 0.2]), np.array([1, 0]), logits=False), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"confusion_matrix: num_classes must be at least 3"):
        confusion_matrix(y, t, num_classes=2)


def test_default_metrics_follow_the_loss() -> None:
    assert default_metrics(losses.softmax_cross_entropy) == {"acc": accuracy}
    assert default_metrics(losses.cross_entropy) == {"acc": accuracy}
    assert default_metrics(losses.binary_cross_entropy_with_logits) == {"acc": binary_accuracy}
    prob = default_metrics(losses.binary_cross_entropy)["acc"]
    assert prob(np.array([0.7, 0.4]), np.array([1, 1])) == 0.5  # thresholded at 0.5, not at 0
    for loss in (losses.mean_squared_error, losses.sum_squared_error, losses.huber,
                 functools.partial(losses.huber, delta=0.1)):
        assert default_metrics(loss) == {"mae": mae, "rmse": rmse, "r2": r2}
    assert default_metrics(lambda y, t: (0.0, y)) == {}


def test_check_metrics_rejects_mismatches_in_one_line() -> None:
    check_metrics({"acc": accuracy}, (10,))
    check_metrics({"acc": binary_accuracy}, (1,))
    check_metrics({"acc": binary_accuracy}, ())
    check_metrics(default_metrics(losses.mean_squared_error), (3,), loss=losses.mean_squared_error)
    check_metrics({"mine": lambda y, t: 0.0}, (1,), loss=losses.mean_squared_error)  # a user's own metric passes
    with pytest.raises(ValueError, match=r"^metric 'acc' \(accuracy\) needs K >= 2 class scores.*\(1,\)"):
        check_metrics({"acc": accuracy}, (1,))
    with pytest.raises(ValueError, match=r"^metric 'acc' \(accuracy\) is a classification metric, but the loss "
                       r"mean_squared_error is a regression loss; use mae, rmse or r2$"):
        check_metrics({"acc": accuracy}, (3,), loss=losses.mean_squared_error)
    with pytest.raises(ValueError, match=r"^metric 'acc' \(binary_accuracy\) needs one output per sample"):
        check_metrics({"acc": binary_accuracy}, (10,))
    with pytest.raises(ValueError, match=r"^metric 'rmse' \(rmse\) is a regression metric, but the loss "
                       r"softmax_cross_entropy is a classification loss; use accuracy$"):
        check_metrics({"rmse": rmse}, (10,), loss=losses.softmax_cross_entropy)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_metrics_never_write_to_their_inputs(n: int, k: int, seed: int) -> None:
    r = rng(SEED, 2, seed)

    def frozen(a: Array) -> Array:
        a.setflags(write=False)
        return a

    y, t = frozen(r.standard_normal((n, k))), frozen(r.integers(0, k, n))
    z, tb = frozen(r.standard_normal((n, 1))), frozen(r.integers(0, 2, n))
    yr, tr = frozen(r.standard_normal(n)), frozen(r.standard_normal((n, 1)))
    assert 0.0 <= accuracy(y, t) <= 1.0
    assert confusion_matrix(y, t).sum() == n
    assert 0.0 <= binary_accuracy(z, tb) <= 1.0
    assert confusion_matrix(z, tb).sum() == n
    assert mae(yr, tr) >= 0.0 and rmse(yr, tr) >= mae(yr, tr) - 1e-12  # RMSE >= MAE always
    r2(yr, tr)
