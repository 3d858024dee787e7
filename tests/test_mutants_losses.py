"""Regression tests from a second mutation-testing pass over fnnet.losses: an ignore_index of 0 (a
common padding id) is honoured, not taken for "no ignore_index", and probability targets below 0
are refused like those above 1, which plausible one-token changes left untested."""

from __future__ import annotations

import numpy as np
import pytest

from fnnet.losses import softmax_cross_entropy, time_softmax_cross_entropy


def test_ignore_index_zero_is_honoured() -> None:
    logits = np.random.default_rng(0).standard_normal((2, 3, 4))
    t = np.array([[0, 1, 2], [3, 0, 0]])
    value, grad = time_softmax_cross_entropy(logits, t, ignore_index=0)
    kept = t != 0
    ref, ref_grad = softmax_cross_entropy(logits[kept], t[kept])
    assert value == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(grad[kept], ref_grad, rtol=1e-12)
    assert (grad[~kept] == 0).all()


@pytest.mark.parametrize("row", [[-0.5, 1.0, 0.5], [1.5, 0.0, -0.5], [1.5, 0.0, 0.0]])
def test_probability_targets_outside_0_1_are_refused(row: list[float]) -> None:
    t = np.array([row])
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy: one-hot / probability targets must lie in \[0, 1\]"):
        softmax_cross_entropy(np.zeros((1, 3)), t)
