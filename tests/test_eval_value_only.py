"""Evaluation takes a loss's value alone: ``grad=False`` on the built-in losses, the old call on others.

Every built-in loss gives the same value bit for bit with and without its gradient (hypothesis over
the losses, float16/32/64, labels and one-hot targets, columns, padding with ``ignore_index``);
:func:`fnnet.losses.loss_value` passes ``grad=False`` only to a loss that declares it keyword-only,
so any ``loss(y, t) -> (value, dy)`` a user wrote keeps working in :func:`fnnet.train.evaluate`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _helpers import call_unchanged, peak_bytes, rng
from hypothesis import given, settings
from hypothesis import strategies as st

import fnnet
from fnnet import losses
from fnnet.losses import loss_value
from fnnet.train import evaluate
from fnnet.typing import Array

DTYPES = [np.float16, np.float32, np.float64]


def _same_float(a: float, b: float) -> bool:
    """Equal bit for bit (NaN equals NaN, 0.0 differs from -0.0)."""
    return np.float64(a).tobytes() == np.float64(b).tobytes()


def _case(name: str, seed: int, shape: tuple[int, ...], dtype: Any, one_hot: bool, pad: bool) -> tuple[Callable[..., Any], Array, Any]:
    """A built-in loss (possibly a partial), outputs ``y`` and targets ``t`` that it takes."""
    r = rng(seed)
    k = shape[-1]
    scores = (r.standard_normal(shape) * r.choice([0.1, 3.0, 30.0])).astype(dtype)
    labels = r.integers(0, k, size=shape[:-1])
    probs = np.exp(scores.astype(np.float64) - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    probs[..., 0] = np.where(r.random(shape[:-1]) < 0.2, 0.0, probs[..., 0])  # exact zeros
    if name in ("softmax_cross_entropy", "cross_entropy"):
        y = probs.astype(dtype) if name == "cross_entropy" else scores
        if name == "softmax_cross_entropy" and one_hot and k > 1:
            y = y.copy()
            y[..., -1] = np.where(r.random(shape[:-1]) < 0.3, -np.inf, y[..., -1])  # masked classes
            labels = np.minimum(labels, k - 2)
        t = (labels[..., None] == np.arange(k)).astype(dtype) if one_hot else labels
        return getattr(losses, name), y, t
    if name == "time_softmax_cross_entropy":
        y3 = scores.reshape(shape[0], 1, -1) if scores.ndim == 2 else scores
        t3 = labels.reshape(y3.shape[:-1])
        if pad:
            t3 = np.where(r.random(t3.shape) < 0.4, -1, t3)
            if r.random() < 0.2:
                t3 = np.full_like(t3, -1)  # every token padding
            return functools.partial(losses.time_softmax_cross_entropy, ignore_index=-1), y3, t3
        return losses.time_softmax_cross_entropy, y3, t3
    if name in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        z = scores if name.endswith("logits") else (1.0 / (1.0 + np.exp(-scores.astype(np.float64)))).astype(dtype)
        t = r.random(shape) < 0.5 if not one_hot else r.random(shape).astype(dtype)
        if shape[-1] == 1 and pad:
            t = t.reshape(shape[:-1])  # a column of targets against (N, 1)
        return getattr(losses, name), z, t
    fn: Callable[..., Any] = getattr(losses, name)
    if name == "huber" and pad:
        fn = functools.partial(losses.huber, delta=0.25)
    t = labels if one_hot and scores.ndim >= 1 else r.standard_normal(shape).astype(dtype)
    if shape[-1] == 1 and pad and not one_hot:
        t = t.reshape(shape[:-1])
    return fn, scores, t


BUILT_IN = [name for name in losses.__all__ if callable(getattr(losses, name)) and name not in ("loss_value", "scored_targets")]


def test_every_built_in_loss_is_covered() -> None:
    assert sorted(BUILT_IN) == sorted([
        "sum_squared_error", "mean_squared_error", "cross_entropy", "softmax_cross_entropy",
        "binary_cross_entropy_with_logits", "binary_cross_entropy", "huber", "time_softmax_cross_entropy",
    ])


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(BUILT_IN),
    seed=st.integers(0, 2**31),
    shape=st.lists(st.integers(1, 6), min_size=2, max_size=3).map(tuple),
    dtype=st.sampled_from(DTYPES),
    one_hot=st.booleans(),
    pad=st.booleans(),
)
def test_value_alone_is_the_same_bits(
    name: str, seed: int, shape: tuple[int, ...], dtype: Any, one_hot: bool, pad: bool
) -> None:
    fn, y, t = _case(name, seed, shape, dtype, one_hot, pad)
    with np.errstate(all="ignore"):
        value, dy = fn(y, t)
        alone, none = call_unchanged(lambda a, b: fn(a, b, grad=False), y, t)
        via = loss_value(fn, y, t)
    assert none is None and isinstance(dy, np.ndarray) and dy.shape == y.shape
    assert isinstance(alone, float)
    assert _same_float(alone, value), (alone, value)
    assert _same_float(via, value)


@pytest.mark.parametrize("name", BUILT_IN)
def test_grad_true_is_the_default(name: str) -> None:
    fn, y, t = _case(name, 3, (4, 3), np.float32, False, False)
    value, dy = fn(y, t)
    value2, dy2 = fn(y, t, grad=True)
    assert _same_float(value, value2) and dy2 is not None and dy.tobytes() == dy2.tobytes()


def test_value_alone_still_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]), grad=False)
    with pytest.raises(ValueError, match="ignore_index"):
        losses.time_softmax_cross_entropy(np.zeros((2, 2, 3)), np.zeros((2, 2), int), ignore_index=1.5, grad=False)  # type: ignore[call-overload]


def test_value_alone_allocates_no_gradient() -> None:
    y = rng(1).standard_normal((20_000, 10))
    t = rng(2).integers(0, 10, 20_000)

    full = peak_bytes(lambda: losses.softmax_cross_entropy(y, t))
    alone = peak_bytes(lambda: loss_value(losses.softmax_cross_entropy, y, t))
    assert alone < 0.6 * full, (alone, full)


# --- user-written losses keep working ------------------------------------------------------------


def _half_squared(y: Array, t: Array) -> tuple[float, Array]:
    d = y - t.reshape(y.shape)
    return float(0.5 * np.vdot(d, d)), d


class _Calls:
    """A loss object recording the keywords of every call."""

    def __init__(self) -> None:
        self.keywords: list[dict[str, Any]] = []

    def __call__(self, y: Array, t: Array, **kw: Any) -> tuple[float, Array]:
        self.keywords.append(kw)
        return _half_squared(y, t)


def test_a_loss_without_the_keyword_is_called_as_before() -> None:
    y, t = np.array([[1.0], [3.0]]), np.array([0.0, 1.0])
    assert loss_value(_half_squared, y, t) == 2.5
    assert loss_value(lambda a, b: (float(np.sum(a)), a), y, t) == 4.0
    calls = _Calls()  # **kwargs does not declare grad: no keyword passed
    assert loss_value(calls, y, t) == 2.5 and calls.keywords == [{}]


def test_grad_must_be_keyword_only_to_be_passed() -> None:
    seen: list[Any] = []

    def positional(y: Array, t: Array, grad: Any = "mine") -> tuple[float, Array]:  # another meaning
        seen.append(grad)
        return 1.0, y

    def opted_in(y: Array, t: Array, *, grad: bool = True) -> tuple[float, Array | None]:
        seen.append(grad)
        return 2.0, (y if grad else None)

    y = np.zeros((2, 2))
    assert loss_value(positional, y, y) == 1.0 and loss_value(opted_in, y, y) == 2.0
    assert seen == ["mine", False]
    assert loss_value(functools.partial(opted_in), y, y) == 2.0 and seen[-1] is False


def test_evaluate_takes_the_value_alone_from_built_ins_and_works_with_user_losses() -> None:
    model = fnnet.Affine(1)
    params, _ = model.init(fnnet.key(0), (3,))
    x = rng(5).standard_normal((40, 3)).astype(np.float32)
    t = rng(6).standard_normal(40).astype(np.float32)
    calls = _Calls()
    mine = evaluate(model, params, x, t, loss=calls, metrics={})
    y = model.apply(params, x)
    assert calls.keywords == [{}] and mine["loss"] == _half_squared(y, t)[0]

    seen: list[bool] = []

    def spy(y: Array, t: Any, *, grad: bool = True) -> tuple[float, Any]:  # Any: a LossFn may give None
        seen.append(grad)
        return losses.mean_squared_error(y, t, grad=grad)

    assert evaluate(model, params, x, t, loss=spy)["loss"] == losses.mean_squared_error(y, t)[0]
    assert seen == [False]
    ce = fnnet.serial(fnnet.Affine(4))
    cp, _ = ce.init(fnnet.key(1), (3,))
    labels = rng(7).integers(0, 4, 40)
    got = evaluate(ce, cp, x, labels)
    assert got["loss"] == losses.softmax_cross_entropy(ce.apply(cp, x), labels)[0]
    assert not math.isnan(got["acc"])
