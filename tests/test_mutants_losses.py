"""Regression test from a second mutation-testing pass over fnnet.losses: an ignore_index of 0 (a
common padding id) is honoured, not taken for "no ignore_index", which a plausible one-token
change left untested."""

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
