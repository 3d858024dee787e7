"""Activation functions and softmax (the book's chapter 3), as pure array functions.

>>> import numpy as np
>>> from fnnet.functions import relu, softmax, step_function
>>> x = np.array([-1.0, 0.5, 2.0])
>>> step_function(x).tolist(), relu(x).tolist()
([0.0, 1.0, 1.0], [0.0, 0.5, 2.0])
>>> float(softmax(x).sum())
1.0
"""

from __future__ import annotations

import numpy as np

from fnnet.typing import Array

__all__ = ["step_function", "sigmoid", "relu", "tanh", "identity", "softmax", "log_softmax"]


def step_function(x: Array) -> Array:
    """Step function: 1 where ``x > 0``, else 0, in ``x``'s dtype (any shape)."""
    x = np.asarray(x)
    return (x > 0).astype(x.dtype if x.dtype.kind == "f" else np.int64)


def sigmoid(x: Array) -> Array:
    """Logistic sigmoid ``1 / (1 + exp(-x))`` (any shape).

    Computed as ``0.5 * (1 + tanh(x / 2))``, which is exact algebra and never overflows, so
    ``sigmoid(±1000)`` gives 1 and 0 without warnings.
    """
    x = np.asarray(x)
    half = x.dtype.type(0.5) if x.dtype.kind == "f" else 0.5
    return half + half * np.tanh(half * x)


def relu(x: Array) -> Array:
    """Rectified linear unit ``max(x, 0)`` (any shape)."""
    return np.maximum(x, 0)


def tanh(x: Array) -> Array:
    """Hyperbolic tangent (any shape)."""
    return np.tanh(x)


def identity(x: Array) -> Array:
    """The identity (the output activation for regression)."""
    return np.asarray(x)


def softmax(x: Array) -> Array:
    """Softmax over the last axis, for any batch shape ``(..., K)``.

    Subtracting the row maximum first leaves the result unchanged (softmax is invariant to adding a
    constant) but keeps ``exp`` from overflowing for large inputs.
    """
    x = np.asarray(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def log_softmax(x: Array) -> Array:
    """``log(softmax(x))`` over the last axis, computed stably as ``z - log(sum(exp(z)))``
    with ``z = x - max(x)``; finite even where ``softmax`` underflows to 0."""
    x = np.asarray(x)
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # type: ignore[no-any-return]
