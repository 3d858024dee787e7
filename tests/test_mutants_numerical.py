"""Regression tests from a second mutation-testing pass over fnnet.numerical: difference quotients
divide by the step actually taken, and the relative error is scaled by the larger of the two
gradients, which plausible one-token changes left untested."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fnnet.numerical import _rel_error, numerical_diff, numerical_gradient


def test_numerical_gradient_divides_by_the_rounded_step() -> None:
    # float32 at 1000 has a spacing of 2**-14: 1000 ± 1e-4 round to 1000 ± 2 * 2**-14, a step of
    # 2.44e-4, not 2e-4; the slope of f(p) = p must still come out 1
    g = numerical_gradient(lambda p: float(p.sum(dtype=np.float64)), np.array([1000.0], np.float32))
    assert g.dtype == np.float32 and float(g[0]) == pytest.approx(1.0, rel=1e-6)


def test_numerical_diff_divides_by_the_rounded_step() -> None:
    x: Any = np.float32(1000.0)  # documented: the step is rounded in x's type
    assert numerical_diff(lambda v: float(v), x, h=1e-4) == pytest.approx(1.0, rel=1e-6)


def test_relative_error_is_scaled_by_the_larger_gradient() -> None:
    # documented: max|a - n| / max(max|a|, max|n|): an analytic gradient half the numeric one is 0.5 off
    assert _rel_error(np.array([0.5, 0.0]), np.array([1.0, 0.0])) == 0.5
    assert _rel_error(np.array([1.0, 0.0]), np.array([0.5, 0.0])) == 0.5
