"""Loss functions (the book's chapter 4, its SoftmaxWithLoss of chapter 5, and logistic regression).

Every loss is a pure function ``loss(y, t) -> (value, grad)``: ``value`` is a Python float and
``grad`` is ``d value / d y``, an array of ``y``'s shape and dtype. Neither argument is written to.
Every loss here also takes the keyword ``grad=False``, which skips the gradient and returns
``(value, None)``, the same ``value`` bit for bit: :func:`loss_value` asks for it where a loss
declares that keyword (evaluation needs no gradient), and calls any other ``loss(y, t)`` as it is.

Classification losses take the class scores on the last axis, ``y`` of shape ``(N, K)`` (or
``(K,)`` for one sample, or ``(..., K)``), and targets ``t`` that are either integer labels of shape
``y.shape[:-1]`` (values in ``[0, K)``) or one-hot / probability rows of ``y``'s own shape. "Batch
size" ``N`` is the number of rows, ``prod(y.shape[:-1])`` (1 for a single sample), and
batch losses are averaged over it, as in the book.

float16 input is computed in float32 and the gradient cast back to float16, so a loss whose
intermediate sums or differences exceed float16's 65504 (logits spanning more than that, many rows)
comes out as it would in float32; float32 and float64 are computed in their own dtype.

>>> import numpy as np
>>> from fnnet.losses import mean_squared_error, softmax_cross_entropy
>>> value, grad = softmax_cross_entropy(np.array([[2.0, 0.0, 0.0]]), np.array([0]))
>>> round(value, 4), grad.shape
(0.2395, (1, 3))
>>> mean_squared_error(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0]]))[0]
2.0
>>> softmax_cross_entropy(np.array([[2.0, 0.0, 0.0]]), np.array([0]), grad=False)[1] is None
True
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np

from fnnet import functions as F
from fnnet._validate import is_int, shape_text
from fnnet.typing import Array

__all__ = [
    "CROSS_ENTROPY_DELTA",
    "sum_squared_error",
    "mean_squared_error",
    "cross_entropy",
    "softmax_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy",
    "huber",
    "time_softmax_cross_entropy",
    "loss_value",
    "scored_targets",
]

CROSS_ENTROPY_DELTA = 1e-7
"""The log guard δ of :func:`cross_entropy`: ``log(y + δ)`` stays finite when a predicted
probability is exactly 0 (``log(1e-7) ≈ -16.1``, a large but finite penalty). The book's value.

>>> import numpy as np
>>> from fnnet.losses import CROSS_ENTROPY_DELTA, cross_entropy
>>> value, _ = cross_entropy(np.array([[0.0, 1.0]]), np.array([0]))
>>> bool(np.isclose(value, -np.log(CROSS_ENTROPY_DELTA)))
True
"""


# --- argument checking ---------------------------------------------------------------------------


def _floating(fn: str, name: str, y: Any, *, min_rank: int = 0) -> Array:
    """``y`` as an array; ValueError unless it is floating point of rank >= ``min_rank``."""
    a = np.asarray(y)
    if a.dtype.kind != "f":
        raise ValueError(f"{fn}: expected {name} of a floating point dtype, got dtype {a.dtype}")
    if a.ndim < min_rank:
        raise ValueError(
            f"{fn}: expected {name} of rank >= {min_rank} with classes on the last axis, got shape {shape_text(a.shape)}"
        )
    return a


def _class_targets(fn: str, y: Array, t: Any, *, cast: bool = True) -> tuple[Array, bool]:
    """Validate classification targets against scores ``y`` of shape ``(..., K)``.

    Returns:
        ``(t, True)`` for integer labels of shape ``y.shape[:-1]`` (checked to lie in ``[0, K)``),
        or ``(t, False)`` for one-hot / probability rows of ``y.shape``, cast to ``y.dtype`` if ``cast``.
    """
    ta = np.asarray(t)
    k = y.shape[-1]
    if k == 0:
        raise ValueError(f"{fn}: expected at least one class on the last axis, got y of shape {shape_text(y.shape)}")
    if ta.shape == y.shape and ta.dtype.kind in "fiub":
        if ta.dtype.kind != "b" and ta.size:
            lo, hi = ta.min(), ta.max()
            if not (lo >= 0 and hi <= 1):  # NaN fails both comparisons
                raise ValueError(
                    f"{fn}: one-hot / probability targets must lie in [0, 1], got values in [{lo}, {hi}]"
                )
        return (ta.astype(y.dtype, copy=False) if cast else ta), False
    if ta.shape == y.shape[:-1] and ta.dtype.kind in "iu":
        if ta.size and (ta.min() < 0 or ta.max() >= k):
            raise ValueError(
                f"{fn}: labels must lie in [0, {k}) for {k} classes, got values in [{ta.min()}, {ta.max()}]"
            )
        return ta, True
    if ta.shape == y.shape[:-1]:
        raise ValueError(f"{fn}: expected integer labels of shape {shape_text(ta.shape)}, got dtype {ta.dtype}")
    raise ValueError(
        f"{fn}: expected t as integer labels of shape {shape_text(y.shape[:-1])} or one-hot targets of shape "
        f"{shape_text(y.shape)} (y has shape {shape_text(y.shape)}), got shape {shape_text(ta.shape)} dtype {ta.dtype}"
    )


def _n_rows(fn: str, y: Array) -> int:
    """The batch size ``N = prod(y.shape[:-1])``; ValueError if there are no rows or no classes."""
    k = y.shape[-1]
    if k == 0 or y.size == 0:
        raise ValueError(f"{fn}: expected at least one sample and one class, got y of shape {shape_text(y.shape)}")
    return int(y.size // k)


def _label_index(t: Array) -> tuple[Array, ...]:
    """Index picking entry ``t[i...]`` of every row of a ``(*t.shape, K)`` array (any rank, any layout)."""
    return (*np.indices(t.shape, sparse=True), t)


def _one_hot(t: Array, k: int, dtype: np.dtype[Any]) -> Array:
    """Integer labels of shape ``S`` to one-hot rows of shape ``(*S, k)``."""
    out: Array = (t[..., None] == np.arange(k)).astype(dtype)
    return out


def _same_column(y: Array, ta: Array) -> Array | None:
    """``ta`` reshaped to ``y``'s shape when the two differ only by a trailing axis of length 1
    (targets ``(N,)`` against outputs ``(N, 1)`` or the reverse); else None."""
    if ta.shape != y.shape and (ta.shape == y.shape + (1,) or (y.ndim >= 1 and y.shape[-1] == 1 and ta.shape == y.shape[:-1])):
        return ta.reshape(y.shape)
    return None


def _regression_targets(fn: str, y: Array, t: Any) -> Array:
    """Targets of ``y``'s shape (cast to its dtype). Targets ``(N,)`` against ``y`` of shape
    ``(N, 1)`` (or the reverse) are the same column; integer labels are one-hot encoded when y
    has a class axis of K > 1."""
    ta = np.asarray(t)
    if ta.shape == y.shape and ta.dtype.kind in "fiub":
        return ta.astype(y.dtype, copy=False)
    column = _same_column(y, ta) if ta.dtype.kind in "fiub" else None
    if column is not None:
        return column.astype(y.dtype, copy=False)
    if y.ndim >= 1 and ta.shape == y.shape[:-1] and ta.dtype.kind in "iu":
        t_lab, _ = _class_targets(fn, y, ta)
        return _one_hot(t_lab, y.shape[-1], y.dtype)
    raise ValueError(
        f"{fn}: expected t of y's shape {shape_text(y.shape)}"
        + (f" (or integer labels of shape {shape_text(y.shape[:-1])})" if y.ndim >= 1 else "")
        + f", got shape {shape_text(ta.shape)} dtype {ta.dtype}"
    )


def _binary_targets(fn: str, name: str, z: Array, t: Any) -> Array:
    """0/1 (or probability) targets of ``z``'s shape, cast to its dtype; ``(N,)`` against ``(N, 1)`` is aligned."""
    ta = np.asarray(t)
    if ta.dtype.kind in "fiub" and ta.shape != z.shape:
        column = _same_column(z, ta)
        ta = column if column is not None else ta
    if ta.shape != z.shape or ta.dtype.kind not in "fiub":
        raise ValueError(
            f"{fn}: expected t of {name}'s shape {shape_text(z.shape)} with values in [0, 1], "
            f"got shape {shape_text(ta.shape)} dtype {ta.dtype}"
        )
    if z.size == 0:
        raise ValueError(f"{fn}: expected a non-empty {name}, got shape {shape_text(z.shape)}")
    if ta.dtype.kind != "b" and not (ta.min() >= 0 and ta.max() <= 1):  # NaN fails both comparisons
        raise ValueError(f"{fn}: targets must lie in [0, 1], got values in [{ta.min()}, {ta.max()}]")
    return ta.astype(z.dtype, copy=False)


def _wide(a: Array) -> Array:
    """``a`` to compute a loss with: float16 widened to float32, wider dtypes as they are (the same
    array). float16 holds nothing beyond 65504: a batch's summed losses, the shifted logits
    ``x - max(x)`` of logits spanning more than that, or ``picked * N`` for N > 65504 rows would
    overflow, while the loss and most gradients fit. The gradient is cast back by :func:`_narrow`."""
    return a.astype(np.float32) if a.dtype.itemsize < 4 else a


def _narrow(grad: Array, dtype: np.dtype[Any]) -> Array:
    """The gradient in the input's ``dtype`` (a no-op unless the input was widened by :func:`_wide`);
    a float16 gradient entry beyond 65504 becomes ``inf``, as float16 arithmetic would give it."""
    return grad if grad.dtype == dtype else grad.astype(dtype)


# --- losses --------------------------------------------------------------------------------------


@overload
def sum_squared_error(y: Array, t: Any, *, grad: Literal[True] = ...) -> tuple[float, Array]: ...


@overload
def sum_squared_error(y: Array, t: Any, *, grad: Literal[False]) -> tuple[float, None]: ...


@overload
def sum_squared_error(y: Array, t: Any, *, grad: bool) -> tuple[float, Array | None]: ...


def sum_squared_error(y: Array, t: Any, *, grad: bool = True) -> tuple[float, Array | None]:
    """The book's sum of squared errors ``E = 0.5 * Σ (y - t)²``, summed over every element.

    Args:
        y: predictions, any shape, floating point.
        t: targets of ``y``'s shape, or integer labels of shape ``y.shape[:-1]`` (one-hot encoded).
            One column is one column: targets ``(N,)`` against ``y`` of shape ``(N, 1)``, or
            ``(N, 1)`` against ``(N,)``, are reshaped to ``y``'s shape (never broadcast to ``(N, N)``).
        grad: ``False`` skips the gradient: ``(E, None)``, with the same ``E`` bit for bit.
    Returns:
        ``(E, dE/dy)`` with ``dE/dy = y - t`` of ``y``'s shape and dtype.

    >>> import numpy as np
    >>> from fnnet.losses import sum_squared_error
    >>> sum_squared_error(np.array([[1.0], [2.0]]), np.array([0.0, 0.0]))[0]
    2.5
    """
    fn = "sum_squared_error"
    y_in = _floating(fn, "y", y)
    ya = _wide(y_in)
    d = ya - _regression_targets(fn, ya, t)
    return 0.5 * float(np.vdot(d, d)), (_narrow(d, y_in.dtype) if grad else None)


@overload
def mean_squared_error(y: Array, t: Any, *, grad: Literal[True] = ...) -> tuple[float, Array]: ...


@overload
def mean_squared_error(y: Array, t: Any, *, grad: Literal[False]) -> tuple[float, None]: ...


@overload
def mean_squared_error(y: Array, t: Any, *, grad: bool) -> tuple[float, Array | None]: ...


def mean_squared_error(y: Array, t: Any, *, grad: bool = True) -> tuple[float, Array | None]:
    """Mean squared error ``E = (1/n) Σ (y - t)²`` with ``n = y.size``: the mean over *all* elements
    (batch and output dimensions alike), without the book's factor 0.5.

    Args:
        y: predictions, any non-empty shape, floating point.
        t: targets of ``y``'s shape, or integer labels of shape ``y.shape[:-1]`` (one-hot encoded).
            Targets ``(N,)`` against ``y`` of shape ``(N, 1)`` (or the reverse) are reshaped to
            ``y``'s shape, so ``n = N`` either way.
        grad: ``False`` skips the gradient: ``(E, None)``, with the same ``E`` bit for bit.
    Returns:
        ``(E, dE/dy)`` with ``dE/dy = 2 (y - t) / n`` of ``y``'s shape and dtype.

    >>> import numpy as np
    >>> from fnnet.losses import mean_squared_error
    >>> value, grad = mean_squared_error(np.array([[1.0], [3.0]]), np.array([0.0, 3.0]))
    >>> value, grad.shape
    (0.5, (2, 1))
    """
    fn = "mean_squared_error"
    y_in = _floating(fn, "y", y)
    if y_in.size == 0:
        raise ValueError(f"{fn}: expected a non-empty y, got shape {shape_text(y_in.shape)}")
    ya = _wide(y_in)
    d = ya - _regression_targets(fn, ya, t)
    n = ya.size
    return float(np.vdot(d, d)) / n, (_narrow(d * (2.0 / n), y_in.dtype) if grad else None)


@overload
def cross_entropy(y: Array, t: Any, *, grad: Literal[True] = ...) -> tuple[float, Array]: ...


@overload
def cross_entropy(y: Array, t: Any, *, grad: Literal[False]) -> tuple[float, None]: ...


@overload
def cross_entropy(y: Array, t: Any, *, grad: bool) -> tuple[float, Array | None]: ...


def cross_entropy(y: Array, t: Any, *, grad: bool = True) -> tuple[float, Array | None]:
    """The book's batch cross-entropy on probabilities, ``E = -Σ t log(y + δ) / N``.

    ``δ`` is :data:`CROSS_ENTROPY_DELTA`. For labels the sum picks ``log(y[i, t_i] + δ)`` of each
    row. Prefer :func:`softmax_cross_entropy` on logits for training: it is exact and stable (in
    float16 the gradient here exceeds 65504 and is ``-inf`` where ``y < 1 / (65504 N)`` at a target).

    Args:
        y: predicted probabilities ``(N, K)`` (or ``(K,)``, or ``(..., K)``), floating point.
        t: integer labels ``y.shape[:-1]`` or one-hot / probability targets of ``y``'s shape.
        grad: ``False`` skips the gradient: ``(E, None)``, with the same ``E`` bit for bit.
    Returns:
        ``(E, dE/dy)`` with ``dE/dy = -t / (y + δ) / N`` of ``y``'s shape and dtype.

    >>> import numpy as np
    >>> from fnnet.losses import cross_entropy
    >>> y = np.array([[0.1, 0.6, 0.3], [0.8, 0.1, 0.1]])           # (N, K) = (2, 3) probabilities
    >>> value, grad = cross_entropy(y, np.array([1, 0]))             # labels (N,)
    >>> round(value, 4), grad.shape
    (0.367, (2, 3))
    """
    fn = "cross_entropy"
    y_in = _floating(fn, "y", y, min_rank=1)
    ya = _wide(y_in)
    ta, labels = _class_targets(fn, ya, t)
    n = _n_rows(fn, ya)
    if labels:
        at = _label_index(ta)
        picked = ya[at] + CROSS_ENTROPY_DELTA
        value = -float(np.log(picked).sum()) / n
        if not grad:
            return value, None
        dy = np.zeros_like(ya)
        dy[at] = -1.0 / (picked * n)
        return value, _narrow(dy, y_in.dtype)
    guarded = ya + CROSS_ENTROPY_DELTA
    value = -float(np.vdot(ta, np.log(guarded))) / n
    return value, (_narrow(ta / guarded * (-1.0 / n), y_in.dtype) if grad else None)


@overload
def softmax_cross_entropy(logits: Array, t: Any, *, grad: Literal[True] = ...) -> tuple[float, Array]: ...


@overload
def softmax_cross_entropy(logits: Array, t: Any, *, grad: Literal[False]) -> tuple[float, None]: ...


@overload
def softmax_cross_entropy(logits: Array, t: Any, *, grad: bool) -> tuple[float, Array | None]: ...


def softmax_cross_entropy(logits: Array, t: Any, *, grad: bool = True) -> tuple[float, Array | None]:
    """Softmax followed by cross-entropy, fused (the book's SoftmaxWithLoss): ``E = -Σ t log p / N``
    with ``p = softmax(logits)``, computed through the stable log-softmax.

    Infinite logits give the limits of :func:`fnnet.functions.log_softmax`: a row whose ``+inf``
    entries include its target costs ``log`` of their count (0 for one) with a zero gradient, a
    row whose target is not among them costs ``+inf`` (a training step then raises
    :class:`fnnet.train.NonFiniteLossError`); no ``inf - inf`` NaN, no warning.

    Args:
        logits: class scores ``(N, K)`` (or ``(K,)``, or ``(..., K)``), floating point.
        t: integer labels ``logits.shape[:-1]`` or one-hot / probability targets of its shape.
        grad: ``False`` skips the gradient: ``(E, None)``, with the same ``E`` bit for bit.
    Returns:
        ``(E, dE/dlogits)`` with ``dE/dlogits = (p - t) / N`` of ``logits``' shape and dtype (for
        targets whose rows do not sum to 1 the exact ``(p Σ_k t_k - t) / N``).

    >>> import numpy as np
    >>> from fnnet.losses import softmax_cross_entropy
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])        # (N, K) = (2, 3)
    >>> value, grad = softmax_cross_entropy(logits, np.array([0, 1]))
    >>> round(value, 4), grad.shape, bool(np.allclose(grad.sum(axis=1), 0.0))
    (0.3185, (2, 3), True)
    >>> value, grad = softmax_cross_entropy(np.array([[np.inf, 0.0]]), np.array([0]))
    >>> value, grad.tolist()
    (0.0, [[0.0, 0.0]])
    """
    fn = "softmax_cross_entropy"
    x_in = _floating(fn, "logits", logits, min_rank=1)
    x = _wide(x_in)
    ta, labels = _class_targets(fn, x, t)
    n = _n_rows(fn, x)
    # log p = z - log Σ exp z with z = x - max(x): exp(z) <= 1 never overflows, and log p stays
    # finite even where p itself underflows to 0.
    z = F._shifted(x)
    if labels:
        at = (np.arange(n), ta) if x.ndim == 2 else _label_index(ta)  # 2-D: the common, cheaper index
        picked = float(z[at].sum())
        e = np.exp(z, out=None if grad else z)
        s = e.sum(axis=-1, keepdims=True)
        loss = (float(np.log(s).sum()) - picked) / n
        if not grad:
            return loss, None
        dy = e * ((1.0 / n) / s)  # p / N, in a fresh array of x's dtype
        dy[at] -= 1.0 / n
        return loss, _narrow(dy, x_in.dtype)
    e = np.exp(z)
    s = e.sum(axis=-1, keepdims=True)
    z -= np.log(s)  # z now holds log p (our own scratch array)
    loss = -float(np.vdot(ta, z)) / n
    if math.isnan(loss):
        # a -inf logit (a masked class) has log p = -inf, and a target of 0 there gives 0 · -inf =
        # nan; the term is 0 (t log p -> 0 as p -> 0). A nan logit or target stays nan.
        loss = -float(np.vdot(ta, np.where(ta != 0, z, 0))) / n
    if not grad:
        return loss, None
    dy = e * (ta.sum(axis=-1, keepdims=True) / s) - ta
    dy *= 1.0 / n
    return loss, _narrow(dy, x_in.dtype)


@overload
def binary_cross_entropy_with_logits(z: Array, t: Any, *, grad: Literal[True] = ...) -> tuple[float, Array]: ...


@overload
def binary_cross_entropy_with_logits(z: Array, t: Any, *, grad: Literal[False]) -> tuple[float, None]: ...


@overload
def binary_cross_entropy_with_logits(z: Array, t: Any, *, grad: bool) -> tuple[float, Array | None]: ...


def binary_cross_entropy_with_logits(z: Array, t: Any, *, grad: bool = True) -> tuple[float, Array | None]:
    """Logistic-regression loss on logits, the mean over all ``n = z.size`` elements of
    ``-[t log σ(z) + (1 - t) log(1 - σ(z))]``.

    Computed as ``max(z, 0) - z t + log(1 + exp(-|z|))``, the same quantity rearranged so that
    ``exp`` only ever sees non-positive numbers: no overflow, finite for ``|z|`` up to 1e4 and beyond.

    Infinite logits give the limits: ``z = +inf`` with ``t = 1`` (or ``-inf`` with ``t = 0``) is a
    certain, right prediction, loss 0 and gradient 0; any other target there costs ``+inf`` (a
    training step then raises :class:`fnnet.train.NonFiniteLossError`) with the finite gradient
    ``(σ(z) - t) / n``; no ``inf - inf`` NaN, no warning.

    Args:
        z: logits, any non-empty shape, floating point.
        t: targets in ``[0, 1]`` (0/1 labels or probabilities) of ``z``'s shape (``(N,)`` against
            ``(N, 1)`` or the reverse is reshaped to ``z``'s shape); bool, int or float.
        grad: ``False`` skips the gradient: ``(E, None)``, with the same ``E`` bit for bit.
    Returns:
        ``(E, dE/dz)`` with ``dE/dz = (σ(z) - t) / n`` of ``z``'s shape and dtype.

    >>> import numpy as np
    >>> from fnnet.losses import binary_cross_entropy_with_logits
    >>> z = np.array([[3.0], [-2.0], [1000.0]])                        # (N, 1) logits
    >>> value, grad = binary_cross_entropy_with_logits(z, np.array([1, 0, 1]))   # targets (N,)
    >>> round(value, 4), grad.shape
    (0.0585, (3, 1))
    >>> value, grad = binary_cross_entropy_with_logits(np.array([np.inf, -np.inf]), np.array([1, 0]))
    >>> value, grad.tolist()
    (0.0, [0.0, 0.0])
    """
    fn = "binary_cross_entropy_with_logits"
    z_in = _floating(fn, "z", z)
    za = _wide(z_in)
    ta = _binary_targets(fn, "z", za, t)
    n = za.size
    # Σ z² is finite unless a logit is infinite (or NaN, or beyond the square root of the dtype's
    # largest number): only those take the masked form, the same bits on every finite logit
    if math.isfinite(np.vdot(za, za)):
        per_element = _logistic_loss(za, ta)
    else:
        infinite = np.isinf(za)
        per_element = _logistic_loss(np.where(infinite, 0, za), ta)
        # the limit at z = ±inf: 0 when the whole target lies on that side, else (1 - t)·inf or t·inf
        right = infinite & (ta == (za > 0))
        per_element[right] = 0
        per_element[infinite & ~right] = np.inf
    return float(per_element.sum()) / n, (_narrow((F.sigmoid(za) - ta) * (1.0 / n), z_in.dtype) if grad else None)


def _logistic_loss(z: Array, t: Array) -> Array:
    """``-[t log σ(z) + (1 - t) log(1 - σ(z))]`` per element, for finite ``z``."""
    out: Array = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return out


@overload
def binary_cross_entropy(p: Array, t: Any, *, grad: Literal[True] = ...) -> tuple[float, Array]: ...


@overload
def binary_cross_entropy(p: Array, t: Any, *, grad: Literal[False]) -> tuple[float, None]: ...


@overload
def binary_cross_entropy(p: Array, t: Any, *, grad: bool) -> tuple[float, Array | None]: ...


def binary_cross_entropy(p: Array, t: Any, *, grad: bool = True) -> tuple[float, Array | None]:
    """Binary cross-entropy on probabilities (a sigmoid output), the mean over all ``n = p.size``
    elements of ``-[t log(p + δ) + (1 - t) log(1 - p + δ)]``.

    ``δ`` is :data:`CROSS_ENTROPY_DELTA`, as in :func:`cross_entropy`: the loss stays finite when
    a probability is exactly 0 or 1. Prefer :func:`binary_cross_entropy_with_logits` for
    training: it is exact where the sigmoid saturates (and its float16 gradient never overflows,
    while this one is ``±inf`` where ``p`` or ``1 - p`` is below about ``1 / (65504 n)``).

    Args:
        p: predicted probabilities of class 1, in ``[0, 1]``, any non-empty shape, floating point.
        t: targets in ``[0, 1]`` (0/1 labels or probabilities) of ``p``'s shape (``(N,)`` against
            ``(N, 1)`` or the reverse is reshaped to ``p``'s shape); bool, int or float.
        grad: ``False`` skips the gradient: ``(E, None)``, with the same ``E`` bit for bit.
    Returns:
        ``(E, dE/dp)`` with ``dE/dp = (-t / (p + δ) + (1 - t) / (1 - p + δ)) / n`` of ``p``'s shape
        and dtype.

    >>> import numpy as np
    >>> from fnnet.losses import binary_cross_entropy
    >>> value, grad = binary_cross_entropy(np.array([[0.9], [0.2]]), np.array([1, 0]))
    >>> round(value, 4), grad.shape
    (0.1643, (2, 1))
    """
    fn = "binary_cross_entropy"
    p_in = _floating(fn, "p", p)
    pa = _wide(p_in)
    ta = _binary_targets(fn, "p", pa, t)
    n = pa.size
    pos = pa + CROSS_ENTROPY_DELTA
    neg = (1.0 - pa) + CROSS_ENTROPY_DELTA
    value = -(float(np.vdot(ta, np.log(pos))) + float(np.vdot(1.0 - ta, np.log(neg)))) / n
    if not grad:
        return value, None
    return value, _narrow(((1.0 - ta) / neg - ta / pos) * (1.0 / n), p_in.dtype)


@overload
def huber(y: Array, t: Any, delta: float = ..., *, grad: Literal[True] = ...) -> tuple[float, Array]: ...


@overload
def huber(y: Array, t: Any, delta: float = ..., *, grad: Literal[False]) -> tuple[float, None]: ...


@overload
def huber(y: Array, t: Any, delta: float = ..., *, grad: bool) -> tuple[float, Array | None]: ...


def huber(y: Array, t: Any, delta: float = 1.0, *, grad: bool = True) -> tuple[float, Array | None]:
    """Huber loss, the mean over all ``n = y.size`` elements of ``0.5 d²`` where ``|d| <= δ`` and
    ``δ (|d| - 0.5 δ)`` elsewhere, with ``d = y - t``: squared error near the target, absolute
    error (less swayed by outliers) far from it.

    For another ``δ`` pass ``functools.partial(huber, delta=...)`` as the loss.

    Args:
        y: predictions, any non-empty shape, floating point.
        t: targets as for :func:`mean_squared_error` (``(N,)`` and ``(N, 1)`` alike).
        delta: ``δ > 0``, where the quadratic part ends.
        grad: ``False`` skips the gradient: ``(E, None)``, with the same ``E`` bit for bit.
    Returns:
        ``(E, dE/dy)`` with ``dE/dy = clip(d, -δ, δ) / n`` of ``y``'s shape and dtype.

    >>> import numpy as np
    >>> from fnnet.losses import huber
    >>> huber(np.array([0.5, 3.0]), np.array([0.0, 0.0]))[0]
    1.3125
    """
    fn = "huber"
    if not (isinstance(delta, (int, float, np.floating, np.integer)) and not isinstance(delta, bool)
            and math.isfinite(delta) and delta > 0):
        raise ValueError(f"{fn}: delta must be a finite number > 0, got {delta!r}")
    y_in = _floating(fn, "y", y)
    if y_in.size == 0:
        raise ValueError(f"{fn}: expected a non-empty y, got shape {shape_text(y_in.shape)}")
    ya = _wide(y_in)
    d = ya - _regression_targets(fn, ya, t)
    a = np.abs(d)
    quad = np.minimum(a, delta)
    # 0.5 q² + δ (|d| - q) with q = min(|d|, δ) is both branches at once
    per_element = 0.5 * quad * quad + delta * (a - quad)
    n = ya.size
    value = float(per_element.sum()) / n
    return value, (_narrow(np.clip(d, -delta, delta) * (1.0 / n), y_in.dtype) if grad else None)


@overload
def time_softmax_cross_entropy(logits: Array, t: Any, ignore_index: int | None = ..., *, grad: Literal[True] = ...) -> tuple[float, Array]: ...


@overload
def time_softmax_cross_entropy(logits: Array, t: Any, ignore_index: int | None = ..., *, grad: Literal[False]) -> tuple[float, None]: ...


@overload
def time_softmax_cross_entropy(logits: Array, t: Any, ignore_index: int | None = ..., *, grad: bool) -> tuple[float, Array | None]: ...


def time_softmax_cross_entropy(logits: Array, t: Any, ignore_index: int | None = None, *, grad: bool = True) -> tuple[float, Array | None]:
    """Softmax cross-entropy of a sequence of predictions (the sequel's TimeSoftmaxWithLoss),
    averaged over the tokens whose target is not ``ignore_index``.

    ``E = -Σ_{k: t_k ≠ ignore} log p_k[t_k] / M`` with ``p = softmax(logits)`` over the last axis and
    ``M`` the number of counted tokens. Without ``ignore_index`` this is
    :func:`softmax_cross_entropy` on the ``N·T`` rows (infinite logits included). To train with an ``ignore_index``, pass
    ``functools.partial(time_softmax_cross_entropy, ignore_index=...)`` as the loss.

    Args:
        logits: scores ``(N, T, V)`` (or any ``(N, ..., V)``), floating point.
        t: integer targets ``(N, T)`` (``logits.shape[:-1]``), values in ``[0, V)`` or ``ignore_index``.
        ignore_index: a target value that counts for nothing (padding), or ``None``.
        grad: ``False`` skips the gradient: ``(E, None)``, with the same ``E`` bit for bit.
    Returns:
        ``(E, dE/dlogits)``, the gradient ``(p - onehot(t)) / M`` on counted tokens and 0 on ignored
        ones, of ``logits``' shape and dtype. When every token is ignored, ``E = 0`` and the
        gradient is zero: a batch of padding only is a training step that changes nothing (a NaN
        would stop :func:`fnnet.train.fit`). :func:`fnnet.metrics.token_accuracy`, which scores a
        whole set, raises a ValueError there instead, as do :func:`fnnet.train.evaluate` and, before
        training, :func:`fnnet.train.fit` for a set they evaluate.

    >>> import numpy as np
    >>> from fnnet.losses import time_softmax_cross_entropy
    >>> logits = np.zeros((1, 3, 4))
    >>> value, grad = time_softmax_cross_entropy(logits, np.array([[1, 2, -1]]), ignore_index=-1)
    >>> round(value, 4), grad[0, 2].tolist()  # log 4, and nothing from the ignored token
    (1.3863, [0.0, 0.0, 0.0, 0.0])
    """
    fn = "time_softmax_cross_entropy"
    x_in = _floating(fn, "logits", logits, min_rank=2)
    x = _wide(x_in)
    ta = np.asarray(t)
    v = x.shape[-1]
    if ta.shape != x.shape[:-1] or ta.dtype.kind not in "iu":
        raise ValueError(
            f"{fn}: expected integer targets of shape {shape_text(x.shape[:-1])} (logits have shape "
            f"{shape_text(x.shape)}), got shape {shape_text(ta.shape)} dtype {ta.dtype}"
        )
    if ignore_index is not None and not is_int(ignore_index):
        raise ValueError(f"{fn}: ignore_index must be an int or None, got {ignore_index!r}")
    _n_rows(fn, x)
    x2 = x.reshape(-1, v)
    t2 = ta.reshape(-1)
    keep = None if ignore_index is None else t2 != ignore_index
    rows = np.arange(t2.size) if keep is None else np.flatnonzero(keep)
    labels = t2[rows]
    if labels.size and (labels.min() < 0 or labels.max() >= v):
        raise ValueError(
            f"{fn}: targets must lie in [0, {v})"
            + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}")
            + f", got values in [{labels.min()}, {labels.max()}]"
        )
    m = labels.size
    if m == 0:
        return 0.0, (np.zeros_like(x_in) if grad else None)
    # the stable log-softmax of softmax_cross_entropy: z = x - max(x), log p = z - log Σ exp z
    z = F._shifted(x2)
    picked = float(z[rows, labels].sum())
    e = np.exp(z, out=None if grad else z)
    s = e.sum(axis=-1, keepdims=True)
    loss = (float(np.log(s[rows, 0]).sum()) - picked) / m
    if not grad:
        return loss, None
    dy = e * ((1.0 / m) / s)
    if keep is not None:
        dy[~keep] = 0
    dy[rows, labels] -= 1.0 / m
    return loss, _narrow(dy.reshape(x.shape), x_in.dtype)


def _takes_grad_flag(loss: Callable[..., Any]) -> bool:
    """Whether ``loss`` declares a keyword-only parameter ``grad`` (through any ``functools.partial``)."""
    try:
        param = inspect.signature(loss).parameters.get("grad")
    except (TypeError, ValueError):  # a callable without a signature: call it as ``loss(y, t)``
        return False
    return param is not None and param.kind is inspect.Parameter.KEYWORD_ONLY


def loss_value(loss: Callable[..., tuple[float, Any]], y: Array, t: Any) -> float:
    """The value of ``loss(y, t)`` without its gradient, where the loss can skip it.

    A loss that declares a keyword-only parameter ``grad`` (every loss of this module, also inside
    :func:`functools.partial`) is called as ``loss(y, t, grad=False)``: the same value bit for
    bit, without the output-sized gradient array. Any other ``loss(y, t) -> (value, dy)`` is
    called as it is and its ``dy`` dropped. Evaluation (:func:`fnnet.train.evaluate`) takes the
    loss through this function.

    Args:
        loss: ``loss(y, t) -> (value, dy)``, optionally taking ``grad=False`` (then ``dy`` may be None).
        y, t: the outputs and targets, as ``loss`` takes them.
    Returns:
        ``float(loss(y, t)[0])``.

    >>> import functools, numpy as np
    >>> from fnnet.losses import loss_value, time_softmax_cross_entropy
    >>> y, t = np.zeros((2, 3, 4)), np.array([[1, 2, -1], [0, -1, -1]])
    >>> masked = functools.partial(time_softmax_cross_entropy, ignore_index=-1)
    >>> loss_value(masked, y, t) == masked(y, t)[0]
    True
    >>> loss_value(lambda y, t: (float(np.abs(y - 1).sum()), np.sign(y - 1)), y, t)   # a loss of one's own
    24.0
    """
    if _takes_grad_flag(loss):
        return float(loss(y, t, grad=False)[0])
    return float(loss(y, t)[0])


def scored_targets(loss: Callable[..., Any], t: Any) -> int | None:
    """How many of the targets ``t`` a loss that skips some of them scores; None for any other loss.

    :func:`time_softmax_cross_entropy` with an ``ignore_index`` (bound with
    :func:`functools.partial`, as it is trained) scores the targets that are not ``ignore_index``:
    its value is the mean over them, and 0 when there are none. Every other loss (also the time
    loss without ``ignore_index``) scores every sample, and gives None here.
    :func:`fnnet.train.evaluate` asks this to refuse a set with nothing to score, and
    :func:`fnnet.train.fit` to refuse one before training.

    Args:
        loss: a loss function, possibly inside layers of :func:`functools.partial`.
        t: the targets, as ``loss`` takes them.
    Returns:
        The number of scored targets, or None.

    >>> import functools, numpy as np
    >>> from fnnet.losses import scored_targets, softmax_cross_entropy, time_softmax_cross_entropy
    >>> masked = functools.partial(time_softmax_cross_entropy, ignore_index=-1)
    >>> scored_targets(masked, np.array([[1, 2, -1], [0, -1, -1]])), scored_targets(softmax_cross_entropy, np.zeros(3))
    (3, None)
    """
    ignore = _ignored_target(loss)
    if ignore is None:
        return None
    return int(np.count_nonzero(np.asarray(t) != ignore))


def _ignored_target(loss: Callable[..., Any]) -> Any:
    """The ``ignore_index`` that ``loss`` (:func:`time_softmax_cross_entropy` inside layers of
    :func:`functools.partial`) skips, or None for a loss that scores every target."""
    keywords: dict[str, Any] = {}
    while isinstance(loss, functools.partial):
        keywords = {**loss.keywords, **keywords}  # an outer partial's keyword wins
        loss = loss.func
    return keywords.get("ignore_index") if loss is time_softmax_cross_entropy else None
