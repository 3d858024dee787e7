"""Weight initialisers: shapes, dtypes, spreads against their formulas, bounds, keys, validation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from _helpers import global_rng_untouched

import fnnet
from fnnet.initializers import (
    HeNormal,
    HeUniform,
    Initializer,
    LeCunNormal,
    Normal,
    Uniform,
    XavierNormal,
    XavierUniform,
    Zeros,
    default_for_activation,
    he_normal,
    he_uniform,
    lecun_normal,
    normal,
    xavier_normal,
    xavier_uniform,
    zeros,
)

ALL: list[Initializer] = [
    Normal(),
    Normal(0.3),
    Uniform(),
    Zeros(),
    XavierNormal(),
    XavierUniform(),
    HeNormal(),
    HeUniform(),
    LeCunNormal(),
]
RANDOM = [i for i in ALL if not isinstance(i, Zeros)]

FAN_IN, FAN_OUT = 300, 200
N = FAN_IN * FAN_OUT  # one (fan_in, fan_out) Affine weight: 60,000 draws
# Statistical tolerance: for n i.i.d. draws the sample standard deviation has relative standard
# error sqrt((kurtosis - 1) / (4 n)); that is 1 / sqrt(2 n) for a normal and less for a uniform
# (kurtosis 1.8). Allowing 5 such errors fails a correct initialiser with probability < 1e-6.
STD_RTOL = 5 / math.sqrt(2 * N)  # about 1.4%

# (initialiser, the standard deviation its formula gives for FAN_IN, FAN_OUT)
SPREADS: list[tuple[Initializer, float]] = [
    (HeNormal(), math.sqrt(2 / FAN_IN)),
    (XavierNormal(), math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (XavierNormal(gain=2.0), 2.0 * math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (LeCunNormal(), math.sqrt(1 / FAN_IN)),
    (Normal(0.01), 0.01),
    (Normal(0.5), 0.5),
    # uniform on [-a, a] has std a / sqrt(3)
    (HeUniform(), math.sqrt(6 / FAN_IN) / math.sqrt(3)),
    (XavierUniform(), math.sqrt(6 / (FAN_IN + FAN_OUT)) / math.sqrt(3)),
    (Uniform(0.2), 0.2 / math.sqrt(3)),
]


@pytest.mark.parametrize("init", ALL, ids=repr)
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5, 5)])
def test_shape_and_dtype(init: Initializer, shape: tuple[int, ...]) -> None:
    w = init(fnnet.key(0), shape, 12, 8)
    assert w.shape == shape and w.dtype == np.float32
    assert np.all(np.isfinite(w))


def test_zeros_are_zero() -> None:
    np.testing.assert_array_equal(Zeros()(fnnet.key(0), (3, 4), 3, 4), np.zeros((3, 4)))


@pytest.mark.parametrize(("init", "std"), SPREADS, ids=[repr(i) for i, _ in SPREADS])
def test_empirical_std_matches_formula(init: Initializer, std: float) -> None:
    w = init(fnnet.key(1), (FAN_IN, FAN_OUT), FAN_IN, FAN_OUT).astype(np.float64)
    assert abs(w.std() / std - 1) < STD_RTOL
    # the mean of n draws has standard deviation std / sqrt(n)
    assert abs(w.mean()) < 5 * std / math.sqrt(N)


def test_conv_fans_are_used() -> None:
    """For a conv weight (FN, C, FH, FW) the spread follows the fan_in given, not the shape."""
    fn, c, fh, fw = 16, 8, 3, 3
    w = HeNormal()(fnnet.key(2), (fn, c, fh, fw), c * fh * fw, fn * fh * fw).astype(np.float64)
    n = w.size
    assert abs(w.std() / math.sqrt(2 / (c * fh * fw)) - 1) < 5 / math.sqrt(2 * n)


@pytest.mark.parametrize(
    ("init", "limit"),
    [
        (Uniform(0.2), 0.2),
        (HeUniform(), math.sqrt(6 / FAN_IN)),
        (XavierUniform(), math.sqrt(6 / (FAN_IN + FAN_OUT))),
        (XavierUniform(gain=0.5), 0.5 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ],
    ids=repr,
)
def test_uniform_bounds(init: Initializer, limit: float) -> None:
    w = init(fnnet.key(3), (FAN_IN, FAN_OUT), FAN_IN, FAN_OUT)
    # compare in float32: rounding a draw just below the limit may give float32(limit) itself
    assert np.abs(w).max() <= np.float32(limit)
    # and the range is used: P(max |w| < 0.999 limit) = 0.999**60000, about 1e-26
    assert np.abs(w).max() > 0.999 * limit
    assert w.min() < 0 < w.max()


@pytest.mark.parametrize("init", RANDOM, ids=repr)
def test_same_key_same_values_other_key_other_values(init: Initializer) -> None:
    a = init(fnnet.key(5), (6, 7), 6, 7)
    b = init(fnnet.key(5), (6, 7), 6, 7)
    c = init(fnnet.key(6), (6, 7), 6, 7)
    d = init(fnnet.split(fnnet.key(5))[0], (6, 7), 6, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)


def test_does_not_touch_global_rng() -> None:
    with global_rng_untouched():
        for init in RANDOM:
            init(fnnet.key(0), (4, 4), 4, 4)


@pytest.mark.parametrize("bad", [0, 0.0, -0.01, float("nan"), float("inf"), True, "0.1", None])
@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: Normal(v), "Normal: std"),
        (lambda v: Uniform(v), "Uniform: limit"),
        (lambda v: XavierNormal(v), "XavierNormal: gain"),
        (lambda v: XavierUniform(v), "XavierUniform: gain"),
    ],
)
def test_bad_values_raise(bad: Any, make: Any, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make(bad)


def test_numpy_scalars_accepted() -> None:
    std: Any = np.float32(0.1)  # e.g. from a hyperparameter search
    gain: Any = np.int64(2)
    assert Normal(std).std == std
    assert XavierNormal(gain).gain == 2


def test_factory_functions() -> None:
    assert normal(0.2) == Normal(0.2)
    assert xavier_normal(2.0) == XavierNormal(2.0)
    assert xavier_uniform() == XavierUniform()
    assert he_normal() == HeNormal() and he_uniform() == HeUniform()
    assert lecun_normal() == LeCunNormal() and zeros() == Zeros()


@pytest.mark.parametrize(
    ("activation", "expected"),
    [
        ("relu", HeNormal),
        ("ReLU", HeNormal),
        ("sigmoid", XavierNormal),
        ("tanh", XavierNormal),
        ("identity", XavierNormal),
    ],
)
def test_default_for_activation(activation: str, expected: type) -> None:
    assert type(default_for_activation(activation)) is expected


@pytest.mark.parametrize("activation", ["sigmod", "", "softmax"])
def test_default_for_activation_rejects_unknown_names(activation: str) -> None:
    with pytest.raises(ValueError, match="default_for_activation: unknown activation"):
        default_for_activation(activation)
