"""Numerical differentiation (the book's chapter 4) and gradient checking (section 5.7).

Unlike the book's ``numerical_gradient``, nothing here perturbs the caller's arrays: each leaf is
copied once into a private buffer, the buffer is perturbed, and ``f`` is called on a tree holding
that buffer in place of the leaf and the caller's untouched arrays everywhere else.

>>> import numpy as np, fnnet
>>> from fnnet.numerical import check_grads, numerical_gradient
>>> g = numerical_gradient(lambda x: float(np.sum(x ** 2)), np.array([3.0, 4.0]))
>>> np.round(g, 6).tolist()
[6.0, 8.0]
>>> layer = fnnet.Affine(3)
>>> params = fnnet.astype(layer.init(fnnet.key(0), (4,))[0], np.float64)
>>> check_grads(layer, params, np.ones((2, 4))).max_error < 1e-6
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from fnnet.typing import Array, Tree
from fnnet.losses import loss_value
from fnnet.layers.base import EVAL, Ctx, Layer
from fnnet.random import Key, fold_in, key as make_key
from fnnet.tree import tree_flatten, tree_paths, tree_structure, tree_unflatten

__all__ = ["numerical_diff", "numerical_gradient", "gradient_descent", "check_grads", "GradCheck"]

#: Central-difference step. 1e-4 balances truncation error O(h²) against float64 round-off
#: O(eps/h) for O(1) inputs; the book uses the same value.
DEFAULT_H = 1e-4
#: An array whose gradient is smaller than this fraction of the check's largest numerical gradient
#: entry is measured against that fraction instead of its own size (see :class:`GradCheck`).
#: Central-difference noise is about ``eps * |loss| / h``, that is ``2e-12 * |loss| / G`` relative
#: to the largest entry ``G``: a thousandth of ``G`` leaves it far below a 1e-6 tolerance for an
#: array whose true gradient is 0, while any error above ``1e-9 * G`` there is still reported.
ZERO_GRAD_FLOOR = 1e-3
#: Default key of check_grads' random projection; folded so it cannot coincide with a test's
#: ``default_rng(0)`` data (a projection correlated with the input can hide gradient errors).
_PROJECTION_KEY = fold_in(make_key(0), 0x5EED)


def numerical_diff(f: Callable[[float], float], x: float, h: float = DEFAULT_H) -> float:
    """Central difference ``(f(x + h) - f(x - h)) / 2h`` of a scalar function at ``x``.

    The denominator is the step actually taken, ``(x + h) - (x - h)`` as rounded in ``x``'s type,
    so a float32 ``x`` gets no extra error from rounding ``x ± h``.

    Raises:
        ValueError: if ``x + h`` and ``x - h`` round to the same number (``h`` too small for ``x``).

    >>> from fnnet.numerical import numerical_diff
    >>> round(numerical_diff(lambda x: 0.01 * x**2 + 0.1 * x, 5.0), 6)     # the book's 0.2
    0.2
    """
    x_plus, x_minus = x + h, x - h
    step = float(x_plus) - float(x_minus)
    if step == 0.0:
        raise ValueError(f"numerical_diff: step h={h!r} vanishes at x={x!r}; use a larger h or float64")
    return (float(f(x_plus)) - float(f(x_minus))) / step


def numerical_gradient(f: Callable[[Any], Any], params: Tree, h: float = DEFAULT_H) -> Tree:
    """Gradient of a scalar function of a tree by central differences, leaf by leaf.

    Args:
        f: maps a tree shaped like ``params`` to a scalar.
        params: a tree of floating point arrays (any shapes; float64 for accurate checks).
        h: the difference step.
    Returns:
        A tree shaped like ``params`` (same dtypes) holding ``df/dparams``. ``params`` is never
        written to, not even temporarily.
    Raises:
        ValueError: for a leaf that is not floating point, or where ``x ± h`` rounds to ``x``
            itself in the leaf's dtype (``h`` too small for float16, or for large float32 values).

    Each difference quotient divides by the step actually taken, ``(x + h) − (x − h)`` as
    rounded in the leaf's dtype, not by ``2h``: in float32 ``x ± h`` is rounded to a grid of
    spacing up to ``|x| · 1.2e-7``, which for ``|x| = 1000`` is about ``h`` itself.

    >>> import numpy as np
    >>> from fnnet.numerical import numerical_gradient
    >>> x = np.array([3.0, 4.0])
    >>> numerical_gradient(lambda p: float((p**2).sum()), x).round(6).tolist()   # 2x, shape (2,)
    [6.0, 8.0]
    >>> x.tolist()
    [3.0, 4.0]
    """
    leaves, treedef = tree_flatten(params)
    grads = []
    for li, leaf in enumerate(leaves):
        arr = np.asarray(leaf)
        if arr.dtype.kind != "f":
            raise ValueError(f"numerical_gradient: leaf {li} has dtype {arr.dtype}; expected floating point")
        buf = arr.copy()  # private scratch: perturbed in place, never the caller's array
        g = np.zeros(arr.shape, arr.dtype)  # C order: g.reshape(-1) must be a view (zeros_like keeps F order)
        trial = list(leaves)
        trial[li] = buf if arr.ndim else buf[()]
        flat = buf.reshape(-1)
        gflat = g.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + h
            x_plus = float(flat[i])
            if not arr.ndim:
                trial[li] = buf[()]
            f_plus = float(f(tree_unflatten(treedef, trial)))
            flat[i] = orig - h
            step = x_plus - float(flat[i])
            if not arr.ndim:
                trial[li] = buf[()]
            f_minus = float(f(tree_unflatten(treedef, trial)))
            flat[i] = orig
            if step == 0.0:
                raise ValueError(
                    f"numerical_gradient: step h={h!r} vanishes in leaf {li} ({arr.dtype}) at value {float(orig)!r}; "
                    "use a larger h or float64"
                )
            gflat[i] = (f_plus - f_minus) / step
        grads.append(g if arr.ndim else g[()])
    return tree_unflatten(treedef, grads)


def gradient_descent(
    f: Callable[[Array], Any], init_x: Array, lr: float = 0.01, step_num: int = 100
) -> tuple[Array, Array]:
    """Minimise ``f`` by ``x <- x - lr * grad f(x)`` with numerical gradients.

    Args:
        f: scalar function of an array of shape ``S``.
        init_x: starting point of shape ``S`` (not modified).
        lr: learning rate; step_num: number of steps.
    Returns:
        ``(x, path)``: the final point (shape ``S``) and every point visited, shape
        ``(step_num + 1, *S)`` starting with ``init_x``.

    >>> import numpy as np
    >>> from fnnet.numerical import gradient_descent
    >>> x, path = gradient_descent(lambda p: float((p**2).sum()), np.array([-3.0, 4.0]), lr=0.1)
    >>> bool(np.abs(x).max() < 1e-8), path.shape             # reaches the minimum at 0; path (101, 2)
    (True, (101, 2))
    """
    x = np.array(init_x, dtype=np.float64)
    path = [x]
    for _ in range(step_num):
        x = x - lr * numerical_gradient(f, x)
        path.append(x)
    return x, np.stack(path)


@attrs.frozen
class GradCheck:
    """Result of :func:`check_grads`: the max relative error per parameter path (and ``"x"``).

    The error of one array (a parameter leaf, or ``x``), with ``a`` its analytic gradient and ``n``
    its central-difference one, is::

        max|a - n| / max(max|a|, max|n|, ZERO_GRAD_FLOOR * G, 1e-12)

    where ``G`` is the largest finite ``|n|`` over every array of the check and ``ZERO_GRAD_FLOOR`` is
    1e-3. So an array is measured relative to its own scale, unless its whole gradient is below a
    thousandth of ``G``: typically a gradient that is exactly 0, like a convolution's bias in front
    of BatchNorm, where ``n`` is round-off noise (about ``eps * |loss| / h``) and ``a`` another
    noise, and dividing one by the other would report an error near 1. Such an array is measured
    against ``G / 1000``: a wrong gradient there still shows, as its error over ``G / 1000``.
    Below about 1e-6 in float64 the backward rule is right.

    >>> from fnnet.numerical import GradCheck
    >>> g = GradCheck({"0/w": 2e-10, "x": 5e-11})
    >>> g.max_error
    2e-10
    """

    errors: dict[str, float]

    @property
    def max_error(self) -> float:
        """The largest error over all parameters and the input; ``nan`` if any error is ``nan``
        (a gradient holding ``nan`` or ``inf``), so that ``max_error < tol`` fails."""
        errors = list(self.errors.values())
        if any(math.isnan(e) for e in errors):
            return math.nan
        return max(errors, default=0.0)

    def __str__(self) -> str:
        return "\n".join(f"{p:<24} {e:.3e}" for p, e in self.errors.items())


def _finite_abs_max(a: Array) -> float:
    """The largest finite ``|a|`` (0 if none): a NaN or inf gradient reports its own error as NaN
    and must not move the other arrays' floor."""
    a64 = np.abs(np.asarray(a, np.float64))
    a64 = a64[np.isfinite(a64)]
    return float(a64.max()) if a64.size else 0.0


def _rel_error(a: Array, n: Array, floor: float = 0.0) -> float:
    """``max|a - n| / max(max|a|, max|n|, floor, 1e-12)`` (0 for empty arrays); see GradCheck."""
    a64, n64 = np.asarray(a, np.float64), np.asarray(n, np.float64)
    if a64.size == 0:
        return 0.0
    scale = max(float(np.abs(a64).max()), float(np.abs(n64).max()), floor, 1e-12)
    return float(np.abs(a64 - n64).max() / scale)


def check_grads(
    layer: Layer,
    params: Tree,
    x: Array,
    *,
    state: Tree = None,
    loss: Callable[[Array, Any], tuple[float, Array]] | None = None,
    t: Any = None,
    ctx: Ctx = EVAL,
    key: Key | None = None,
    h: float = DEFAULT_H,
) -> GradCheck:
    """Compare ``layer.backward`` with central differences of the forward pass.

    Args:
        layer: any layer or pipeline.
        params: its parameters (use float64, e.g. ``fnnet.astype(params, np.float64)``).
        x: an input batch ``(N, *in_shape)``, float64.
        state: the layer's state (e.g. ``layer.init_state(in_shape)``); the same for every
            evaluation.
        loss: ``loss(y, t) -> (value, dvalue/dy)``; defaults to the projection ``sum(y * r)``
            with a fixed random ``r`` (drawn from ``key``), which tests every output direction.
        t: targets passed to ``loss``.
        ctx: the forward context, reused for every evaluation (a fixed key makes Dropout's mask
            the same each time; BatchNorm in training mode is checked through batch statistics).
    Returns:
        A :class:`GradCheck` with the error for every parameter path and for ``"x"``: relative to
        the array's own gradient, or to a thousandth of the largest one anywhere in the check when
        the array's is smaller (a parameter whose true gradient is 0); see :class:`GradCheck`.

    >>> import numpy as np, fnnet
    >>> from fnnet.numerical import check_grads
    >>> model = fnnet.serial(fnnet.Affine(3), fnnet.Tanh())
    >>> params, _ = model.init(fnnet.key(0), (4,))
    >>> x = fnnet.key(1).generator().standard_normal((2, 4))             # (N, 4), float64
    >>> check = check_grads(model, fnnet.astype(params, np.float64), x)
    >>> sorted(check.errors), check.max_error < 1e-7
    (['0/b', '0/w', 'x'], True)
    """
    y0 = layer.forward(params, state, x, ctx)[0]
    loss_fn: Callable[[Array, Any], tuple[float, Array]]
    if loss is None:
        r = (key or _PROJECTION_KEY).generator().standard_normal(y0.shape).astype(y0.dtype)

        def projection(y: Array, _t: Any) -> tuple[float, Array]:
            return float(np.sum(y * r)), r

        loss_fn = projection
    else:
        loss_fn = loss

    y, _, cache = layer.forward(params, state, x, ctx)
    _, dy = loss_fn(y, t)
    dx, grads = layer.backward(params, cache, dy)
    if tree_structure(grads) != tree_structure(params):  # else zip() below would skip parameters
        raise ValueError(f"check_grads: {type(layer).__name__}.backward returned grads whose structure differs from params'")

    def value(p: Tree, xx: Array) -> float:
        return loss_value(loss_fn, layer.forward(p, state, xx, ctx)[0], t)

    num_p = numerical_gradient(lambda p: value(p, x), params, h)
    num_x = numerical_gradient(lambda xx: value(params, xx), x, h)

    a_leaves, _ = tree_flatten(grads)
    n_leaves, _ = tree_flatten(num_p)
    pairs = [(path or "params", a, n) for path, a, n in zip(tree_paths(params), a_leaves, n_leaves)]
    pairs.append(("x", dx, num_x))
    floor = ZERO_GRAD_FLOOR * max(_finite_abs_max(n) for _, _, n in pairs)
    return GradCheck({path: _rel_error(a, n, floor) for path, a, n in pairs})
