"""Dropout: gradients with a fixed key, reproducible masks, rates, inverted scaling, purity."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from _helpers import call_unchanged, global_rng_untouched, normal
from hypothesis import given, settings, strategies as st

import fnnet
from fnnet.layers.base import EVAL, Ctx
from fnnet.layers.combinators import serial
from fnnet.layers.core import Affine, ReLU
from fnnet.layers.dropout import Dropout

SHAPES = [(4, 5), (3, 2, 4, 4)]
RATES = [0.1, 0.5, 0.8]
# How many standard deviations a statistical check allows. A correct layer then fails one check
# with probability below 1e-6 (normal tail beyond 5 sigma is 5.7e-7); with fixed keys the outcome
# is deterministic anyway, but the bound says why the tolerance is not arbitrary.
Z = 5.0


def _train(seed: int) -> Ctx:
    return Ctx(train=True, key=fnnet.key(seed))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rate", RATES)
def test_gradient_check_with_fixed_key(shape: tuple[int, ...], rate: float) -> None:
    check = fnnet.check_grads(Dropout(rate), None, normal(shape, 1), ctx=_train(3), key=fnnet.key(99))
    assert set(check.errors) == {"x"}
    assert check.max_error < 1e-8, str(check)  # the layer is linear in x: differences are exact


@pytest.mark.parametrize("shape", SHAPES)
def test_backward_applies_the_forward_mask(shape: tuple[int, ...]) -> None:
    d, x = Dropout(0.4), normal(shape, 1)
    y, _, cache = d.forward(None, None, x, _train(5))
    dout = normal(shape, 2)
    dx, grads = d.backward(None, cache, dout)
    assert grads is None
    kept = y != 0
    np.testing.assert_array_equal(dx[~kept], 0.0)
    np.testing.assert_allclose(dx[kept], dout[kept] / (1 - 0.4), rtol=1e-15)


def test_same_key_same_mask_different_key_different_mask() -> None:
    d, x = Dropout(0.5), np.ones((8, 50))
    y1, _, c1 = d.forward(None, None, x, _train(7))
    y2, _, c2 = d.forward(None, None, x, _train(7))
    y3, _, c3 = d.forward(None, None, x, _train(8))
    y4, _, _ = d.forward(None, None, x, Ctx(train=True, key=fnnet.fold_in(fnnet.key(7), 1)))
    assert c1.mask is not None and c2.mask is not None and c3.mask is not None
    np.testing.assert_array_equal(c1.mask, c2.mask)
    np.testing.assert_array_equal(y1, y2)
    # 400 units at rate 0.5: two independent masks agree everywhere with probability 2**-400
    assert not np.array_equal(c1.mask, c3.mask)
    assert not np.array_equal(y1, y4)


def test_does_not_touch_global_rng() -> None:
    with global_rng_untouched():
        Dropout(0.5).forward(None, None, np.ones((10, 10)), _train(1))


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_fraction_and_inverted_scaling(rate: float, dtype: Any) -> None:
    n = 200 * 500
    x = np.ones((200, 500), dtype)
    y, _, _ = Dropout(rate).forward(None, None, x, _train(11))
    kept = y != 0
    # Each unit is kept independently with p = 1 - rate, so the kept fraction is Binomial(n, p) / n
    # with standard deviation sqrt(p (1 - p) / n) (at most 0.0016 here).
    p = 1 - rate
    assert abs(kept.mean() - p) < Z * math.sqrt(p * (1 - p) / n)
    # kept units are scaled by exactly 1 / (1 - rate) (computed in x's dtype)
    np.testing.assert_array_equal(y[kept], dtype(1) / (dtype(1) - dtype(rate)))
    # E[y] = x: each y_i is 1/p with probability p, else 0, so Var(y_i) = (1 - p) / p and the mean
    # of n units has standard deviation sqrt((1 - p) / (p n)).
    assert abs(float(y.mean(dtype=np.float64)) - 1.0) < Z * math.sqrt((1 - p) / (p * n))


def test_mean_preserved_for_general_input() -> None:
    """Averaged over many keys, inverted dropout returns the input itself, unit by unit."""
    rate, trials = 0.3, 400
    x = normal((4, 6), 3) + 2.0
    total = sum(Dropout(rate).apply(None, x, ctx=_train(s)) for s in range(trials))
    mean = total / trials
    # per unit: y = x / p with probability p, else 0, so std(mean) = |x| sqrt((1 - p) / (p trials))
    p = 1 - rate
    assert np.all(np.abs(mean - x) < Z * np.abs(x) * math.sqrt((1 - p) / (p * trials)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rate", RATES)
def test_eval_is_identity(shape: tuple[int, ...], rate: float) -> None:
    d, x = Dropout(rate), normal(shape, 1)
    for ctx in (EVAL, Ctx(key=fnnet.key(1))):  # a key does not matter in evaluation
        y, _, cache = d.forward(None, None, x, ctx)
        np.testing.assert_array_equal(y, x)
        dout = normal(shape, 4)
        dx, _ = d.backward(None, cache, dout)
        np.testing.assert_array_equal(dx, dout)


def test_training_without_key_raises() -> None:
    with pytest.raises(ValueError, match=r"Dropout: .*ctx.key is None"):
        Dropout(0.5).forward(None, None, np.ones((2, 3)), Ctx(train=True))
    model = serial(Affine(4), ReLU(), Dropout(0.5))
    params, _ = model.init(fnnet.key(0), (3,))
    with pytest.raises(ValueError, match=r"layer 2 \(Dropout\): .*key"):
        model.forward(params, None, np.ones((2, 3), np.float32), Ctx(train=True))


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), True, "0.5"])
def test_bad_rate_raises(rate: Any) -> None:
    with pytest.raises(ValueError, match="Dropout: rate"):
        Dropout(rate)


def test_rate_zero_keeps_everything() -> None:
    x = normal((5, 7), 1)
    y, _, _ = Dropout(0.0).forward(None, None, x, _train(1))
    np.testing.assert_array_equal(y, x)
    assert Dropout().rate == 0.5


def test_errors_name_the_layer() -> None:
    d = Dropout(0.5)
    with pytest.raises(ValueError, match="Dropout: expected a floating point input"):
        d.forward(None, None, np.ones((2, 3), np.int64), _train(1))
    _, _, cache = d.forward(None, None, np.ones((2, 3)), _train(1))
    with pytest.raises(ValueError, match=r"Dropout.backward: expected dout of shape \(2, 3\), got \(3, 2\)"):
        d.backward(None, cache, np.ones((3, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype: Any) -> None:
    d, x = Dropout(0.3), normal((6, 7), 1, dtype=dtype)
    y, _, cache = d.forward(None, None, x, _train(2))
    dx, _ = d.backward(None, cache, y)
    assert cache.mask is not None
    assert y.dtype == dx.dtype == cache.mask.dtype == dtype


def test_init_has_no_params() -> None:
    assert Dropout(0.2).init(fnnet.key(0), (3, 4, 4)) == (None, (3, 4, 4))


@given(
    shape=st.sampled_from(SHAPES + [(1, 1), (7,)]),
    rate=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**16),
    train=st.booleans(),
)
@settings(max_examples=40, deadline=None)
def test_read_only_inputs_never_mutated(shape: tuple[int, ...], rate: float, seed: int, train: bool) -> None:
    d = Dropout(rate)
    x = normal(shape, seed, dtype=np.float32)
    dout = normal(shape, seed + 1, dtype=np.float32)
    ctx = Ctx(train=train, key=fnnet.key(seed))
    y, _, cache = call_unchanged(lambda xx: d.forward(None, None, xx, ctx), x, readonly=True)
    dx, _ = call_unchanged(lambda c, dd: d.backward(None, c, dd), cache, dout, readonly=True)
    assert y.shape == dx.shape == shape


def test_serial_keys_per_layer() -> None:
    """Two Dropouts in one pipeline draw different masks from fold_in(key, index)."""
    model = serial(Dropout(0.5), Dropout(0.5))
    x = np.ones((10, 40))
    y, _, cache = model.forward((None, None), None, x, _train(4))
    m0, m1 = cache.caches[0].mask, cache.caches[1].mask
    assert m0 is not None and m1 is not None and not np.array_equal(m0, m1)
    np.testing.assert_array_equal(y, x * m0 * m1)
    check = fnnet.check_grads(model, (None, None), normal((3, 5), 1), ctx=_train(4))
    assert check.max_error < 1e-8, str(check)
