"""Audit of the training step, its threads and BLAS limits, batching, augmentation and checkpoint save."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fnnet
from fnnet.layers import Affine, BatchNorm, Ctx, Layer, ReLU, serial
from fnnet.optim import sgd
from fnnet.train import NonFiniteLossError, init_train_state, make_train_step, parallel
from fnnet.train.step import TrainState
from fnnet.tree import tree_leaves
from fnnet.typing import Array, Shape

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and threadpoolctl's BLAS lookup")


def _net() -> Layer:
    return serial(Affine(4), BatchNorm(), ReLU(), Affine(3))


def _setup(n: int = 8) -> tuple[Layer, TrainState, Array, Array]:
    model = _net()
    g = fnnet.key(1).generator()
    x, t = g.standard_normal((n, 5)).astype(np.float32), g.integers(0, 3, n)
    return model, init_train_state(model, sgd(0.1), fnnet.key(0), (5,)), x, t


# --- the training step ----------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize("shape", [(0, 5), ()])
def test_an_empty_or_0d_batch_is_a_one_line_error(shards: int, shape: tuple[int, ...]) -> None:
    model, state, _, _ = _setup()
    step = make_train_step(model, optimizer=sgd(0.1), shards=shards)
    with pytest.raises(ValueError, match=r"train_step: x must be a batch \(N, \.\.\.\) with N >= 1"):
        step(state, np.zeros(shape, np.float32), np.zeros(shape[:1], np.int64))


@pytest.mark.parametrize("bad", ["2", None, [0.5], np.array([0.5]), True + 1j])
def test_update_scale_that_is_not_a_number_is_refused(bad: Any) -> None:
    model, state, x, t = _setup()
    with pytest.raises(ValueError, match="update_scale must be a finite number >= 0"):
        make_train_step(model, optimizer=sgd(0.1))(state, x, t, None, bad)


@linux
def test_a_step_with_its_own_blas_count_runs_inside_a_limit_of_that_count() -> None:
    # the default policy's probe took a one-thread BLAS limit of its own and clashed
    model, state, x, t = _setup()
    step = make_train_step(model, optimizer=sgd(0.1), blas_threads=2)
    with parallel.blas_limit(2):
        new, _ = step(state, x, t)
    assert int(new.step) == 1


class _NaNState(Layer):
    """A layer whose state becomes NaN in training while its output stays finite."""

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def init(self, key: fnnet.Key, in_shape: Shape) -> tuple[None, Shape]:
        return None, tuple(in_shape)

    def init_state(self, in_shape: Shape) -> Array:
        return np.zeros(1, np.float32)

    def forward(self, params: None, state: Array, x: Array, ctx: Ctx = fnnet.EVAL) -> tuple[Array, Array, None]:
        return x, state + (np.float32("nan") if ctx.train else 0), None

    def backward(self, params: None, cache: None, dout: Array, input_grad: bool = True) -> tuple[Array, None]:
        return dout, None


@pytest.mark.parametrize("shards", [1, 2])
def test_a_nan_model_state_is_non_finite_with_and_without_shards(shards: int) -> None:
    model = serial(Affine(3), _NaNState())
    state = init_train_state(model, sgd(0.1), fnnet.key(0), (4,))
    x, t = np.ones((6, 4), np.float32), np.zeros(6, np.int64)
    with pytest.raises(NonFiniteLossError, match="non-finite parameters or optimizer state"):
        make_train_step(model, optimizer=sgd(0.1), shards=shards)(state, x, t)
