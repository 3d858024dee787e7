"""Last follow-ups: the logistic loss at infinite logits, and sets with nothing to score.

- ``binary_cross_entropy_with_logits`` takes the limits at ``z = ±inf`` (0 loss and 0 gradient for
  a certain, right prediction, ``+inf`` loss for a certain, wrong one) without a warning, and gives
  finite logits the bits of the plain formula.
- ``evaluate`` names the ``ignore_index`` of a set it refuses, and ``fit`` refuses such a set among
  those it evaluates before its first training step.
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings
from typing import Any
from unittest import mock

import numpy as np
import pytest
from _helpers import FLOATS, FLOAT_WIDTH, assert_bit_identical, assert_certain_and_right_is_still, rng, strict_floats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fnnet
from fnnet import functions as F
from fnnet import losses
from fnnet.losses import binary_cross_entropy_with_logits as bce_logits
from fnnet.losses import time_softmax_cross_entropy
from fnnet.train import evaluate, init_train_state, make_train_step
from fnnet.train._progress import Progress
from fnnet.typing import Array

INF = np.inf


# --- 1. the logistic loss at infinite logits ------------------------------------------------------


def _both(z: Array, t: Any) -> tuple[float, Array]:
    """``bce_logits(z, t)``, checked to give the value of ``grad=False`` bit for bit, without a warning."""
    with strict_floats():
        value, grad = bce_logits(z, t)
        alone, none = bce_logits(z, t, grad=False)
    assert none is None and np.float64(alone).tobytes() == np.float64(value).tobytes()
    assert grad.dtype == z.dtype and grad.shape == z.shape
    return value, grad


@pytest.mark.parametrize("dtype", FLOATS)
def test_an_infinite_logit_on_the_target_side_is_a_certain_prediction(dtype: Any) -> None:
    z = np.array([[INF], [-INF]], dtype)
    for t in (np.array([1, 0]), np.array([True, False]), np.array([[1.0], [0.0]], dtype)):
        value, grad = _both(z, t)
        assert value == 0.0 and not grad.any()
    # next to an ordinary logit: the mean over n = 3 elements
    value, grad = _both(np.array([INF, 0.0, -INF], dtype), np.array([1, 1, 0]))
    assert np.isclose(value, np.log(2) / 3, rtol=1e-3)
    assert grad[0] == 0 and grad[2] == 0 and np.isclose(float(grad[1]), -0.5 / 3, rtol=1e-3)


@pytest.mark.parametrize("dtype", FLOATS)
def test_an_infinite_logit_against_any_other_target_is_an_infinite_loss_with_a_finite_gradient(dtype: Any) -> None:
    z = np.array([INF, -INF, INF, -INF], dtype)
    t = np.array([0.0, 1.0, 0.5, 0.25], dtype)  # wrong labels, and probabilities short of certain
    value, grad = _both(z, t)
    assert value == INF
    assert grad.tolist() == [0.25, -0.25, 0.125, -0.0625]  # (σ(z) - t) / 4
    for i in range(4):
        assert _both(z[i:i + 1], t[i:i + 1])[0] == INF


def test_a_nan_logit_stays_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad = bce_logits(np.array([np.nan, INF]), np.array([1, 1]))
    assert np.isnan(value) and np.isnan(grad[0]) and grad[1] == 0


def test_a_training_step_takes_a_certain_right_logit_and_raises_on_a_certain_wrong_one() -> None:
    model, opt = fnnet.Affine(1), fnnet.optim.sgd(0.1)
    step = make_train_step(model, bce_logits, opt)
    state = init_train_state(model, opt, fnnet.key(0), (2,))
    # the logit 3e38 + 3e38 overflows float32 to +inf: certain of class 1
    state = state._replace(params=state.params._replace(w=np.ones((2, 1), np.float32), b=np.zeros(1, np.float32)))
    x = np.full((3, 2), 3e38, np.float32)
    assert_certain_and_right_is_still(step, state, x, np.array([1, 1, 1]), np.array([1, 0, 1]))


def _plain(z: Any, t: Any, *, grad: bool = True) -> tuple[float, Array | None]:
    """The loss before the limits: ``max(z, 0) - z t + log(1 + exp(-|z|))`` on every element."""
    z_in = np.asarray(z)
    za = losses._wide(z_in)
    ta = losses._binary_targets("bce", "z", za, t)
    per_element = np.maximum(za, 0) - za * ta + np.log1p(np.exp(-np.abs(za)))
    n = za.size
    return float(per_element.sum()) / n, (losses._narrow((F.sigmoid(za) - ta) * (1.0 / n), z_in.dtype) if grad else None)


@st.composite
def _finite_logits_and_targets(draw: Any) -> tuple[Array, Any]:
    dtype = draw(st.sampled_from(FLOATS))
    fi = np.finfo(dtype)
    # up to the largest finite number, where Σ z² overflows and the masked form is taken
    elements = st.floats(-float(fi.max), float(fi.max), width=FLOAT_WIDTH[dtype]) | st.floats(-40, 40, width=FLOAT_WIDTH[dtype])
    shape = draw(st.sampled_from([(1,), (5,), (4, 1), (2, 3)]))
    z: Array = draw(hnp.arrays(dtype, shape, elements=elements))
    kind = draw(st.sampled_from(["int", "bool", "float", "column"]))
    r = rng(draw(st.integers(0, 100)))
    if kind == "float":
        return z, r.random(shape).astype(dtype)
    labels = r.integers(0, 2, shape)
    if kind == "column" and z.ndim == 2 and shape[1] == 1:
        return z, labels[:, 0]  # (N,) targets against (N, 1) logits
    return z, labels.astype(bool) if kind == "bool" else labels


@settings(max_examples=100, deadline=None)
@given(zt=_finite_logits_and_targets())
def test_property_finite_logits_give_the_plain_formulas_bits(zt: tuple[Array, Any]) -> None:
    z, t = zt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float16 gradients overflow alike both ways
        got = [bce_logits(z, t), bce_logits(z, t, grad=False)]
        want = [_plain(z, t), _plain(z, t, grad=False)]
    for (gv, gg), (wv, wg) in zip(got, want):
        assert np.float64(gv).tobytes() == np.float64(wv).tobytes()
        assert (gg is None) == (wg is None)
        if gg is not None:
            assert_bit_identical(gg, wg)


def test_the_other_losses_meet_infinite_predictions_without_nan() -> None:
    """The regression losses give ``+inf`` for an infinite prediction (a wrong one: targets are
    finite); the probability losses take probabilities in [0, 1], where nothing is infinite."""
    y, t = np.array([[INF], [-INF], [0.5]]), np.array([0.0, 1.0, 0.5])
    with strict_floats():
        for loss in (losses.sum_squared_error, losses.mean_squared_error, losses.huber):
            value, grad = loss(y, t)
            assert value == INF and not np.isnan(grad).any()
        assert losses.huber(y, t)[1].ravel().tolist() == [1 / 3, -1 / 3, 0.0]
        p = np.array([1.0, 0.0])
        assert np.isfinite(losses.binary_cross_entropy(p, np.array([0, 1]))[0])
        assert np.isfinite(losses.cross_entropy(np.array([[0.0, 1.0]]), np.array([0]))[0])


# --- 2. sets with nothing to score -----------------------------------------------------------------

MASKED = functools.partial(time_softmax_cross_entropy, ignore_index=-1)
FIT_MODULE = importlib.import_module("fnnet.train.fit")  # fnnet.train.fit is the function


def _tokens(seed: int) -> tuple[Array, Array]:
    return rng(seed).integers(0, 5, (6, 3)), rng(seed + 1).integers(0, 5, (6, 3))


def _model() -> fnnet.Layer:
    return fnnet.serial(fnnet.Embedding(5, 3), fnnet.TimeAffine(5))


def test_evaluate_names_the_ignore_index() -> None:
    x = np.zeros((2, 3, 5))
    for ignore in (-1, 0, 7):
        loss = functools.partial(time_softmax_cross_entropy, ignore_index=ignore)
        with pytest.raises(ValueError, match=rf"^evaluate: every target equals the loss's ignore_index={ignore}, so the set has no token to score$"):
            evaluate(fnnet.Identity(), None, x, np.full((2, 3), ignore), loss=loss)


class _Steps(Progress):
    """A quiet display counting the training steps fit reports."""

    def __init__(self) -> None:
        super().__init__(1, 1, "quiet")
        self.steps = 0

    def batch(self, epoch: int, i: int, loss: float) -> None:
        self.steps += 1


def _fit(train: tuple[Array, Array], **kw: Any) -> fnnet.train.FitResult:
    kw = {"loss": MASKED, "key": fnnet.key(0), "epochs": 2, "batch_size": 2, "metrics": {}, **kw}
    return fnnet.fit(_model(), fnnet.optim.sgd(0.1), train, **kw)


@pytest.mark.parametrize("which", ["val", "test"])
def test_fit_refuses_an_evaluated_set_with_nothing_to_score_before_any_step(which: str) -> None:
    x, t = _tokens(3)
    bar, epochs = _Steps(), []
    match = rf"^fit: every {which} target equals the loss's ignore_index=-1, so the {which} set has no token to score$"
    with pytest.raises(ValueError, match=match):
        _fit((x, t), progress=bar, on_epoch=lambda s, h: epochs.append(s.epoch), **{which: (x, np.full_like(t, -1))})
    assert bar.steps == 0 and epochs == []
    # one scored token is enough: the same run trains
    padding = np.full_like(t, -1)
    padding[0, 0] = 1
    result = _fit((x, t), progress=bar, on_epoch=lambda s, h: epochs.append(s.epoch), **{which: (x, padding)})
    assert bar.steps == 6 and len(epochs) == 2 and np.isfinite(result.history.metric(f"{which}_loss")).all()


def test_fit_evaluating_the_training_set_refuses_it_and_trains_on_it_without() -> None:
    x, t = _tokens(7)
    padding = np.full_like(t, -1)
    bar = _Steps()
    with pytest.raises(ValueError, match=r"^fit: every train target equals the loss's ignore_index=-1, so the train set has no token to score; pass eval_train=False"):
        _fit((x, padding), progress=bar)
    assert bar.steps == 0
    result = _fit((x, padding), progress=bar, eval_train=False, val=(x, t))
    assert bar.steps == 6 and result.history.step_loss == (0.0,) * 6  # padding only: loss 0 by design
    assert np.isfinite(result.history.metric("val_loss")).all()


def test_fit_refuses_an_epochs_evaluation_sample_with_nothing_to_score() -> None:
    x, t = _tokens(9)
    sparse = np.full_like(t, -1)
    sparse[5, 1] = 2  # one scored token in six rows: a sample of 5 misses it in some epoch
    bar = _Steps()
    kw: dict[str, Any] = {"progress": bar, "val": (x, sparse), "eval_sample": 5, "eval_train": False, "key": fnnet.key(2)}
    with pytest.raises(ValueError, match=r"^fit: every val target in epoch (\d+)'s evaluation sample of 5 equals the loss's ignore_index=-1, so that sample has no token to score; raise eval_sample$") as info:
        _fit((x, t), epochs=8, **kw)
    assert bar.steps == 0
    refused = int(re.findall(r"epoch (\d+)'s", str(info.value))[0])
    assert refused > 1  # (epoch 5 with this key) so that the epochs before it are tried below
    # the epoch named is the one whose evaluation would have failed: the epochs before it train
    assert len(_fit((x, t), epochs=refused - 1, **kw).history.epochs) == refused - 1
    with mock.patch.object(FIT_MODULE, "_check_scored", lambda *a: None), pytest.raises(ValueError, match=r"^evaluate: "):
        _fit((x, t), epochs=refused, **kw)
    assert bar.steps == 3 * (2 * refused - 1)
    # the whole set, evaluated each epoch, has its token
    result = _fit((x, t), progress=bar, val=(x, sparse), eval_train=False)
    assert len(result.history.metric("val_loss")) == 2
