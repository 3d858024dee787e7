"""Regression tests from a second mutation-testing pass over fnnet.export: an Affine reading a
rank-2 sample (a Conv1D's (C, L) output) is flattened in the ONNX graph too, and a Softmax of a
rank-2 sample is over its last axis, which plausible one-token changes left untested."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import onnx_session

import fnnet
from fnnet.export import to_onnx

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def test_affine_on_a_rank_2_sample_is_flattened_in_onnx() -> None:
    model = fnnet.serial(fnnet.Conv1D(2, 3, pad=1), fnnet.Affine(4))
    params, _ = model.init(fnnet.key(0), (3, 5))
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    got = onnx_session(to_onnx(model, params, (3, 5))).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.apply(params, x), rtol=1e-5, atol=1e-5)


def test_softmax_on_a_rank_2_sample_is_over_the_last_axis_in_onnx() -> None:
    model = fnnet.Softmax()
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    got = onnx_session(to_onnx(model, None, (3, 4))).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.apply(None, x), rtol=1e-5, atol=1e-6)
