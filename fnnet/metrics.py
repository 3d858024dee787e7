"""Metrics that fit the task: multi-class and binary accuracy, regression errors, confusion matrices.

A metric is a pure function ``metric(y, t) -> float`` of a model's outputs ``y`` and the targets
``t`` over a whole data set. Which metrics fit follows from the loss (:func:`default_metrics`):

====================================================  =====================================
loss (output layer)                                   default metrics
====================================================  =====================================
softmax_cross_entropy, cross_entropy (softmax)        ``{"acc": accuracy}``
time_softmax_cross_entropy (logits ``(N, T, V)``)     ``{"acc": token_accuracy}`` (its ``ignore_index``)
binary_cross_entropy_with_logits (sigmoid, fused)     ``{"acc": binary_accuracy}``
binary_cross_entropy (sigmoid output)                 ``{"acc": binary_accuracy(logits=False)}``
mean_squared_error, sum_squared_error, huber          ``{"mae": mae, "rmse": rmse, "r2": r2}``
(identity output)
====================================================  =====================================

Binary and regression outputs may have shape ``(N,)`` or ``(N, 1)``, and their targets either
shape: both are treated alike. A metric that does not fit the outputs is a one-line ValueError:
:func:`accuracy` of a one-output model names :func:`binary_accuracy`, and :func:`binary_accuracy`
of targets that are not 0/1 says so.

Nothing to score is a one-line ValueError too: every metric raises on empty input, and
:func:`token_accuracy` when every target is its ``ignore_index``. A metric scores a whole set, so an
empty one is a data error (a NaN would pass unnoticed: early stopping never counts it as best).
Only :func:`r2` returns NaN, on data whose targets are all equal (its ratio is 0/0).

>>> import numpy as np
>>> from fnnet.metrics import accuracy, binary_accuracy, rmse
>>> y = np.array([[2.0, 0.5], [0.1, 0.3], [1.0, -1.0]])
>>> accuracy(y, np.array([0, 1, 1]))
0.6666666666666666
>>> binary_accuracy(np.array([1.5, -0.2, 0.3]), np.array([1, 0, 0]))
0.6666666666666666
>>> round(rmse(np.array([1.0, 2.0]), np.array([1.0, 4.0])), 4)
1.4142
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fnnet import losses
from fnnet._validate import is_int, shape_text
from fnnet.losses import _class_targets, _n_rows
from fnnet.typing import Array

__all__ = [
    "Metric",
    "accuracy",
    "token_accuracy",
    "binary_accuracy",
    "mae",
    "rmse",
    "r2",
    "confusion_matrix",
    "default_metrics",
    "check_metrics",
]

Metric = Callable[[Array, Array], float]
"""``metric(y, t) -> float`` with ``y`` a model's outputs and ``t`` the targets, over a whole set.

>>> import numpy as np
>>> from fnnet.metrics import Metric, accuracy
>>> def top_score(y: np.ndarray, t: np.ndarray) -> float:      # a user's own metric
...     return float(y.max(axis=1).mean())
>>> metrics: dict[str, Metric] = {"acc": accuracy, "top": top_score}
>>> y, t = np.array([[0.9, 0.1], [0.3, 0.7]]), np.array([0, 0])    # (N, K) scores, (N,) labels
>>> {name: round(m(y, t), 2) for name, m in metrics.items()}
{'acc': 0.5, 'top': 0.8}
"""


def _numeric(fn: str, name: str, a: Any) -> Array:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{fn}: expected numeric {name}, got dtype {arr.dtype}")
    return arr


# --- classification ------------------------------------------------------------------------------


def accuracy(y: Array, t: Any) -> float:
    """Multi-class accuracy: the fraction of rows whose highest score (argmax over the last axis)
    is the target class.

    Args:
        y: scores or probabilities ``(N, K)`` with ``K >= 2`` (or ``(K,)``, or ``(..., K)``).
        t: integer labels ``y.shape[:-1]`` or one-hot / probability targets of ``y``'s shape.
    Returns:
        The accuracy in ``[0, 1]``. A one-output ``y`` raises: use :func:`binary_accuracy`.

    >>> import numpy as np
    >>> from fnnet.metrics import accuracy
    >>> accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))
    0.5
    """
    fn = "accuracy"
    ya = _numeric(fn, "scores y", y)
    if ya.ndim < 1:
        raise ValueError(f"{fn}: expected numeric scores of rank >= 1 with classes on the last axis, got shape {shape_text(ya.shape)}")
    if ya.shape[-1] == 1:
        raise ValueError(
            f"{fn}: y of shape {shape_text(ya.shape)} has one output per sample, so its argmax is always 0; "
            "use binary_accuracy for a one-output classifier, or mae/rmse/r2 for a regression"
        )
    ta, labels = _class_targets(fn, ya, t, cast=False)
    _n_rows(fn, ya)
    target = ta if labels else ta.argmax(axis=-1)
    return float(np.mean(ya.argmax(axis=-1) == target))


def token_accuracy(y: Array, t: Any, *, ignore_index: int | None = None) -> float:
    """Per-token accuracy of a sequence model: the fraction of the tokens whose target is not
    ``ignore_index`` (padding) whose highest score is the target.

    Args:
        y: scores ``(N, T, V)`` (or any ``(..., V)``) with ``V >= 2``.
        t: integer targets ``y.shape[:-1]``, values in ``[0, V)`` or ``ignore_index``.
        ignore_index: a target value that is not counted, as in
            :func:`fnnet.losses.time_softmax_cross_entropy`; None counts every token.
    Returns:
        The accuracy in ``[0, 1]`` over the counted tokens.
    Raises:
        ValueError: there is no token to score: ``y`` has none, or every target is
            ``ignore_index``. (The loss counts such a batch as 0 with a zero gradient, a training
            step that changes nothing; a metric scores a whole set, where it is a data error.)

    >>> import numpy as np
    >>> from fnnet.metrics import token_accuracy
    >>> y = np.array([[[0.1, 0.9], [0.8, 0.2], [0.5, 0.4]]])   # (N, T, V) = (1, 3, 2)
    >>> token_accuracy(y, np.array([[1, 1, -1]]), ignore_index=-1)   # the third token is padding
    0.5
    >>> token_accuracy(y, np.array([[-1, -1, -1]]), ignore_index=-1)
    Traceback (most recent call last):
    ...
    ValueError: token_accuracy: every target equals ignore_index=-1, so there is no token to score
    """
    fn = "token_accuracy"
    ya = _numeric(fn, "scores y", y)
    ta = np.asarray(t)
    if ya.ndim < 2 or ya.shape[-1] < 2:
        raise ValueError(f"{fn}: expected scores (N, T, V) with V >= 2 classes on the last axis, got shape {shape_text(ya.shape)}")
    if ta.shape != ya.shape[:-1] or ta.dtype.kind not in "iu":
        raise ValueError(
            f"{fn}: expected integer targets of shape {shape_text(ya.shape[:-1])} (scores have shape "
            f"{shape_text(ya.shape)}), got shape {shape_text(ta.shape)} dtype {ta.dtype}"
        )
    if ignore_index is not None and not is_int(ignore_index):
        raise ValueError(f"{fn}: ignore_index must be an int or None, got {ignore_index!r}")
    if ta.size == 0:
        raise ValueError(f"{fn}: expected at least one token, got scores of shape {shape_text(ya.shape)}")
    keep = None if ignore_index is None else ta != ignore_index
    counted = ta if keep is None else ta[keep]
    if counted.size == 0:
        raise ValueError(f"{fn}: every target equals ignore_index={ignore_index}, so there is no token to score")
    if counted.min() < 0 or counted.max() >= ya.shape[-1]:
        raise ValueError(
            f"{fn}: targets must lie in [0, {ya.shape[-1]})"
            + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}")
            + f", got values in [{counted.min()}, {counted.max()}]"
        )
    pred = ya.argmax(axis=-1)
    return float(np.mean((pred if keep is None else pred[keep]) == counted))


def _one_column(fn: str, name: str, a: Array) -> Array:
    """``a`` of shape ``(N,)`` or ``(N, 1)`` as a flat ``(N,)`` view; ValueError otherwise."""
    if a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1):
        return a.reshape(-1)
    raise ValueError(f"{fn}: expected {name} of shape (N,) or (N, 1), got shape {shape_text(a.shape)}")


def _binary(fn: str, y: Any, t: Any, logits: bool) -> tuple[Array, Array]:
    """Predicted and true 0/1 labels, each of shape ``(N,)`` (int64)."""
    ya = _one_column(fn, "outputs y", _numeric(fn, "outputs y", y))
    ta = _one_column(fn, "targets t", _numeric(fn, "targets t", t))
    if len(ya) != len(ta):
        raise ValueError(f"{fn}: y has {len(ya)} samples but t has {len(ta)}")
    if len(ya) == 0:
        raise ValueError(f"{fn}: expected at least one sample, got none")
    if ta.dtype.kind != "b" and not np.isin(ta, (0, 1)).all():
        raise ValueError(
            f"{fn}: targets must be 0/1 labels, got values in [{ta.min()}, {ta.max()}]; "
            "for a regression use mae, rmse or r2"
        )
    pred = ya > 0 if logits else ya > 0.5
    return pred.astype(np.int64), ta.astype(np.int64)


def binary_accuracy(y: Array, t: Any, *, logits: bool = True) -> float:
    """Binary accuracy of a one-output classifier: predicted 1 where the logit is > 0 (or, with
    ``logits=False``, where the probability is > 0.5).

    Args:
        y: logits (or probabilities) of shape ``(N,)`` or ``(N, 1)``.
        t: 0/1 labels of shape ``(N,)`` or ``(N, 1)`` (bool, int or float).
        logits: whether ``y`` holds logits (the default) or sigmoid probabilities.
    Returns:
        The fraction of samples whose predicted label is ``t``.

    >>> import numpy as np
    >>> from fnnet.metrics import binary_accuracy
    >>> binary_accuracy(np.array([[0.9], [0.2]]), np.array([1, 1]), logits=False)
    0.5
    """
    pred, true = _binary("binary_accuracy", y, t, logits)
    return float(np.mean(pred == true))


def confusion_matrix(y: Array, t: Any, *, num_classes: int | None = None, logits: bool = True) -> Array:
    """Counts of (true class, predicted class) pairs: row ``i`` column ``j`` counts the samples of
    class ``i`` predicted as ``j``.

    Args:
        y: multi-class scores ``(N, K)`` (prediction: argmax), or one-output logits / probabilities
            ``(N,)`` or ``(N, 1)`` (prediction as in :func:`binary_accuracy`; ``K = 2``).
        t: integer labels ``(N,)`` or one-hot rows ``(N, K)``; 0/1 labels for a one-output ``y``.
        num_classes: ``K`` (default ``y.shape[-1]``, or 2 for one output); at least the number of scores.
        logits: for a one-output ``y``, whether it holds logits or probabilities.
    Returns:
        A ``(K, K)`` int64 array whose entries sum to ``N``.

    >>> import numpy as np
    >>> from fnnet.metrics import confusion_matrix
    >>> confusion_matrix(np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), np.array([0, 1, 1]))
    array([[1, 0],
           [1, 1]])
    """
    fn = "confusion_matrix"
    ya = _numeric(fn, "outputs y", y)
    if ya.ndim == 1 or (ya.ndim == 2 and ya.shape[1] == 1):
        pred, true = _binary(fn, ya, t, logits)
        k_min = 2
    elif ya.ndim == 2:
        ta, labels = _class_targets(fn, ya, t, cast=False)
        _n_rows(fn, ya)
        pred, true = ya.argmax(axis=-1), (ta if labels else ta.argmax(axis=-1))
        k_min = ya.shape[1]
    else:
        raise ValueError(f"{fn}: expected y of shape (N, K), (N,) or (N, 1), got shape {shape_text(ya.shape)}")
    if num_classes is not None and not is_int(num_classes):
        raise ValueError(f"{fn}: num_classes must be an int or None, got {num_classes!r}")
    k = k_min if num_classes is None else int(num_classes)
    if k < k_min:
        raise ValueError(f"{fn}: num_classes must be at least {k_min} for y of shape {shape_text(ya.shape)}, got {num_classes}")
    counts = np.bincount(true.astype(np.int64) * k + pred.astype(np.int64), minlength=k * k)
    out: Array = counts.reshape(k, k).astype(np.int64)
    return out


# --- regression ----------------------------------------------------------------------------------


def _regression(fn: str, y: Any, t: Any) -> tuple[Array, Array]:
    """Outputs and targets as arrays of one shape, in their own dtypes; ``(N,)`` against ``(N, 1)``
    is aligned. The metrics compute in float64: a float64 temporary of their own, no converted copies."""
    ya = _numeric(fn, "outputs y", y)
    ta = _numeric(fn, "targets t", t)
    if ta.shape != ya.shape:
        if ya.shape == ta.shape + (1,) or ta.shape == ya.shape + (1,):
            ta = ta.reshape(ya.shape)
        else:
            raise ValueError(
                f"{fn}: expected targets of the outputs' shape {shape_text(ya.shape)}, got shape {shape_text(ta.shape)}"
            )
    if ya.size == 0:
        raise ValueError(f"{fn}: expected at least one sample, got y of shape {shape_text(ya.shape)}")
    return ya, ta


def _difference(a: Array, b: Array) -> Array:
    """``a - b`` in float64 (each operand converted exactly, element by element), a new array."""
    d: Array = np.subtract(a, b, dtype=np.float64)
    return d


def mae(y: Array, t: Any) -> float:
    """Mean absolute error ``mean |y - t|`` over all elements.

    Args:
        y: predictions, any non-empty shape; t: targets of that shape (``(N,)`` and ``(N, 1)`` alike).
    Returns:
        The mean absolute error (float64).

    >>> import numpy as np
    >>> from fnnet.metrics import mae
    >>> mae(np.array([[1.0], [3.0]]), np.array([0.0, 3.0]))
    0.5
    """
    d = _difference(*_regression("mae", y, t))
    np.abs(d, out=d)
    return float(np.mean(d))


def rmse(y: Array, t: Any) -> float:
    """Root mean squared error ``sqrt(mean (y - t)²)`` over all elements.

    Args:
        y: predictions, any non-empty shape; t: targets of that shape (``(N,)`` and ``(N, 1)`` alike).
    Returns:
        The root mean squared error (float64), in the targets' units.

    >>> import numpy as np
    >>> from fnnet.metrics import rmse
    >>> rmse(np.array([0.0, 0.0]), np.array([3.0, 4.0]))
    3.5355339059327378
    """
    d = _difference(*_regression("rmse", y, t)).reshape(-1)
    return float(np.sqrt(np.dot(d, d) / d.size))


def r2(y: Array, t: Any) -> float:
    """Coefficient of determination ``R² = 1 - Σ(t - y)² / Σ(t - t̄)²``.

    ``t̄`` is the mean over the samples (axis 0) of each output; with several outputs the sums run
    over all of them. 1 is a perfect fit, 0 predicting the mean, below 0 worse than the mean.

    Args:
        y: predictions ``(N,)`` or ``(N, D)``; t: targets of that shape (``(N,)`` and ``(N, 1)`` alike).
    Returns:
        ``R²`` (float64); NaN when the targets are all equal (the ratio is undefined).

    >>> import numpy as np
    >>> from fnnet.metrics import r2
    >>> r2(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    0.7857142857142857
    """
    ya, ta = _regression("r2", y, t)
    t64 = ta.astype(np.float64, copy=False)
    d = _difference(t64, ya)
    ss_res = float(np.vdot(d, d))
    np.subtract(t64, t64.mean(axis=0), out=d)  # the deviations from the mean, in the same buffer
    ss_tot = float(np.vdot(d, d))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - ss_res / ss_tot


# --- which metrics fit which loss -----------------------------------------------------------------

_REGRESSION_LOSSES: tuple[Callable[..., Any], ...] = (
    losses.mean_squared_error,
    losses.sum_squared_error,
    losses.huber,
)
_MULTICLASS_LOSSES: tuple[Callable[..., Any], ...] = (
    losses.softmax_cross_entropy,
    losses.cross_entropy,
    losses.time_softmax_cross_entropy,
)
_BINARY_LOSSES: tuple[Callable[..., Any], ...] = (
    losses.binary_cross_entropy_with_logits,
    losses.binary_cross_entropy,
)


def _base(fn: Any) -> Any:
    """The function under any layers of :func:`functools.partial`."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _task(loss: Any) -> str | None:
    """``"multiclass"``, ``"binary"``, ``"regression"`` or None (a loss this module does not know)."""
    base = _base(loss)
    if base in _MULTICLASS_LOSSES:
        return "multiclass"
    if base in _BINARY_LOSSES:
        return "binary"
    if base in _REGRESSION_LOSSES:
        return "regression"
    return None


def _keywords(fn: Any) -> dict[str, Any]:
    """The keyword arguments bound by the layers of :func:`functools.partial` around ``fn`` (outer wins)."""
    found: dict[str, Any] = {}
    while isinstance(fn, functools.partial):
        found = {**fn.keywords, **found}
        fn = fn.func
    return found


def default_metrics(loss: Callable[..., Any]) -> dict[str, Metric]:
    """The metrics that fit ``loss``'s task (see the module's table); ``{}`` for a loss it does not know.

    Args:
        loss: a loss function, possibly wrapped in :func:`functools.partial` (e.g. a Huber ``delta``).
    Returns:
        A new dict ``name -> metric``.

    >>> from fnnet import losses
    >>> import functools
    >>> from fnnet.metrics import accuracy, default_metrics
    >>> sorted(default_metrics(losses.mean_squared_error))
    ['mae', 'r2', 'rmse']
    >>> default_metrics(losses.softmax_cross_entropy)["acc"] is accuracy
    True
    >>> default_metrics(functools.partial(losses.time_softmax_cross_entropy, ignore_index=-1))["acc"].keywords
    {'ignore_index': -1}
    """
    base = _base(loss)
    if base is losses.time_softmax_cross_entropy:
        ignore = _keywords(loss).get("ignore_index")
        per_token: Metric = token_accuracy if ignore is None else functools.partial(token_accuracy, ignore_index=ignore)
        return {"acc": per_token}
    if base is losses.binary_cross_entropy:
        prob_accuracy: Metric = functools.partial(binary_accuracy, logits=False)
        return {"acc": prob_accuracy}
    task = _task(loss)
    if task == "multiclass":
        return {"acc": accuracy}
    if task == "binary":
        return {"acc": binary_accuracy}
    if task == "regression":
        return {"mae": mae, "rmse": rmse, "r2": r2}
    return {}


def _kind(metric: Any) -> str | None:
    base = _base(metric)
    if base in (accuracy, token_accuracy):
        return "multiclass"
    if base is binary_accuracy:
        return "binary"
    if base in (mae, rmse, r2):
        return "regression"
    return None


def check_metrics(metrics: Mapping[str, Metric], y_shape: tuple[int, ...], *, loss: Any = None) -> None:
    """Raise a one-line ValueError if a metric does not fit the model's outputs (or its loss).

    The metrics of this module are checked: :func:`accuracy` needs ``K >= 2`` scores per sample,
    :func:`binary_accuracy` one output, and neither fits a regression loss; :func:`mae`,
    :func:`rmse` and :func:`r2` do not fit a classification loss. A user's own metric passes.

    Args:
        metrics: ``name -> metric``, as given to :func:`fnnet.train.fit`.
        y_shape: the model's output shape per sample, without the batch axis (``model.out_shape``),
            e.g. ``(10,)``, ``(1,)`` or ``()``.
        loss: the training loss, when known.
    Returns:
        None.

    >>> from fnnet.metrics import accuracy, check_metrics
    >>> check_metrics({"acc": accuracy}, (1,))
    Traceback (most recent call last):
    ...
    ValueError: metric 'acc' (accuracy) needs K >= 2 class scores per sample, but the model has output shape (1,); use binary_accuracy for a one-output classifier, or mae/rmse/r2 for a regression
    """
    outputs = int(np.prod(y_shape)) if len(y_shape) else 1
    last = y_shape[-1] if len(y_shape) else 1
    task = _task(loss) if loss is not None else None
    loss_name = getattr(_base(loss), "__name__", repr(loss))
    for name, metric in metrics.items():
        if not callable(metric):
            raise ValueError(f"metric {name!r} must be a function metric(y, t) -> float, got {type(metric).__name__}")
        kind = _kind(metric)
        fn_name = getattr(_base(metric), "__name__", "")
        if kind in ("multiclass", "binary") and task == "regression":
            raise ValueError(
                f"metric {name!r} ({fn_name}) is a classification metric, but the loss {loss_name} is a "
                "regression loss; use mae, rmse or r2"
            )
        if kind == "regression" and task in ("multiclass", "binary"):
            raise ValueError(
                f"metric {name!r} ({fn_name}) is a regression metric, but the loss {loss_name} is a "
                f"classification loss; use {'accuracy' if task == 'multiclass' else 'binary_accuracy'}"
            )
        if kind == "multiclass" and last < 2:
            raise ValueError(
                f"metric {name!r} ({fn_name}) needs K >= 2 class scores per sample, but the model has output "
                f"shape {shape_text(tuple(y_shape))}; use binary_accuracy for a one-output classifier, or "
                "mae/rmse/r2 for a regression"
            )
        if kind == "binary" and outputs != 1:
            raise ValueError(
                f"metric {name!r} (binary_accuracy) needs one output per sample, but the model has output "
                f"shape {shape_text(tuple(y_shape))}; use accuracy for K class scores"
            )
