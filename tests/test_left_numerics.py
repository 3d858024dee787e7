"""Numerics left over: integer input to Identity and Flatten, float16 softmax cross-entropy whose
logits span more than float16's range, weight decay on a model without parameters, and the loss
and optimizer edge cases found with them (the comment on each test says what used to happen)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fnnet
from fnnet.layers.base import Layer


# --- 1. Identity and Flatten take floating point input, as every other layer ----------------------


@pytest.mark.parametrize("layer", [fnnet.Identity(), fnnet.Flatten()], ids=repr)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_identity_and_flatten_refuse_non_float_input(layer: Layer, dtype: Any) -> None:
    # both passed an integer array through unchanged while ReLU, Affine, Softmax, pools ... refused it
    x = np.ones((2, 3, 2), dtype)
    name = type(layer).__name__
    pattern = rf"^{name}: expected a floating point input, got dtype {np.dtype(dtype)}$"
    with pytest.raises(ValueError, match=pattern):
        layer.forward(None, None, x)
    with pytest.raises(ValueError, match=pattern):
        layer.apply(None, x)


@pytest.mark.parametrize("layer", [fnnet.Identity(), fnnet.Flatten()], ids=repr)
def test_identity_and_flatten_refusal_names_the_pipeline_position(layer: Layer) -> None:
    model = fnnet.serial(layer, fnnet.ReLU())
    with pytest.raises(ValueError, match=rf"^layer 0 \({type(layer).__name__}\): {type(layer).__name__}: expected a floating"):
        model.apply((None, None), np.ones((2, 3), np.int64))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_identity_and_flatten_still_pass_floats(dtype: Any) -> None:
    x = np.arange(12, dtype=dtype).reshape(2, 3, 2)
    assert fnnet.Identity().apply(None, x) is x
    y = fnnet.Flatten().apply(None, x)
    assert y.dtype == dtype and y.shape == (2, 6) and np.array_equal(y.ravel(), x.ravel())
