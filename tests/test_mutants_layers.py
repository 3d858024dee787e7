"""Regression tests from a second mutation-testing pass over the layers: the LeakyReLU gradient at
exactly 0 and the fans Affine hands its initialiser, which plausible one-token changes left untested."""

from __future__ import annotations

import numpy as np

import fnnet
from fnnet.initializers import HeNormal
from fnnet.layers.activations import LeakyReLU


def test_leaky_relu_gradient_at_zero_takes_the_slope() -> None:
    # the documented rule is dx = dout only where x > 0: x == 0 gets the negative slope
    layer = LeakyReLU(0.25)
    x = np.array([[-1.0, 0.0, 2.0]])
    _, _, cache = layer.forward(None, None, x)
    dx, _ = layer.backward(None, cache, np.ones_like(x))
    assert dx.tolist() == [[0.25, 0.25, 1.0]]


def test_affine_passes_fan_in_then_fan_out_to_its_initialiser() -> None:
    # Xavier (the default) is symmetric in the fans; He is not: std = sqrt(2 / fan_in)
    params, _ = fnnet.Affine(10, w_init=HeNormal()).init(fnnet.key(0), (1000,))
    assert abs(float(params.w.std()) / np.sqrt(2 / 1000) - 1) < 0.05
    seen: list[tuple[int, int]] = []

    def spy(key: fnnet.Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
        seen.append((fan_in, fan_out))
        return np.zeros(shape, np.float32)

    fnnet.Affine(3, w_init=spy, b_init=spy).init(fnnet.key(0), (2, 5))
    assert seen == [(10, 3), (10, 3)]
