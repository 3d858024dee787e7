"""The small gradient transformations the named optimizers are chained from, and weight decay.

Every transform's state is a NamedTuple of arrays (update counters are 0-d int64 arrays), so an
optimizer state is a tree that a ``.npz`` checkpoint holds; the field names are the checkpoint's
paths (``opt_state/1/mu/0/w``) and do not change.

The adaptive transforms (AdaGrad, RMSprop, Adam) keep the moments of a float16 leaf in float32 and
compute its update there, rounding it to float16 once: ``g²`` leaves float16's range for
``|g| > 256`` (the moment becomes ``inf`` and the leaf never moves again) and underflows to 0 for
``|g|`` below about 0.008 (the update is then ``m / ε``, hundreds of times too large). Other dtypes
are computed in their own dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np

from fnnet._validate import check_finite_nonneg, check_finite_positive, check_in_interval, is_real
from fnnet.optim.base import EmptyState, GradientTransformation
from fnnet.optim.schedules import Schedule
from fnnet.tree import tree_global_norm, tree_leaves, tree_map, tree_map_n, tree_paths, tree_zeros_like
from fnnet.typing import Array, Tree

__all__ = [
    "ADAGRAD_EPS",
    "RMSPROP_EPS",
    "ADAM_EPS",
    "Mask",
    "ScaleByLrState",
    "ScaleByScheduleState",
    "TraceState",
    "ScaleByAdagradState",
    "ScaleByRmsState",
    "ScaleByAdamState",
    "scale_by_lr",
    "scale_by_schedule",
    "trace",
    "scale_by_adagrad",
    "scale_by_rms",
    "scale_by_adam",
    "add_decayed_weights",
    "clip_by_global_norm",
    "default_decay_mask",
    "l2_penalty",
]

ADAGRAD_EPS = 1e-7
"""ε added to √h in AdaGrad so that a coordinate whose gradient has always been zero divides by
ε instead of 0 (its update is then 0/ε = 0). The book's value.

>>> import numpy as np
>>> from fnnet.optim import adagrad
>>> opt = adagrad(0.1)
>>> updates, _ = opt.update(np.zeros(2), opt.init(np.ones(2)), np.ones(2))
>>> bool((updates == 0).all())                       # 0 / ε, not 0 / 0
True
"""

RMSPROP_EPS = 1e-7
"""ε added to √h in RMSprop, for the same reason; the book's value.

>>> from fnnet.optim import RMSPROP_EPS, rmsprop
>>> RMSPROP_EPS
1e-07
>>> rmsprop(0.01, eps=1e-8).init(0.0)[0].mean_sq
array(0.)
"""

ADAM_EPS = 1e-7
"""ε added to √v in Adam; the book's value (the Adam paper and optax use 1e-8). It is added to the
*uncorrected* √v, as in the book, which equals ε / √(1 − β₂ᵗ) added to the corrected √v̂.

>>> import numpy as np
>>> from fnnet.optim import ADAM_EPS, adam
>>> opt = adam(0.1)                                   # eps=ADAM_EPS
>>> updates, _ = opt.update(np.array([4.0]), opt.init(np.zeros(1)), np.zeros(1))
>>> updates.round(6).tolist()                         # the first Adam step is -lr * sign(g)
[-0.1]
"""

Mask = Any
"""Which leaves a weight decay touches: a tree of bools shaped like params, a callable
``params -> such a tree``, or ``None`` for :func:`default_decay_mask`.

>>> import numpy as np
>>> from fnnet.optim import Mask, add_decayed_weights
>>> params = {"w": np.ones((2, 2)), "b": np.ones(2)}
>>> mask: Mask = {"w": True, "b": False}                 # decay the weights, not the bias
>>> grads = {"w": np.zeros((2, 2)), "b": np.zeros(2)}
>>> updates, _ = add_decayed_weights(0.1, mask).update(grads, (), params)
>>> updates["w"].tolist(), updates["b"].tolist()
([[0.1, 0.1], [0.1, 0.1]], [0.0, 0.0])
"""


def _check_lr(where: str, lr: Any) -> float | Schedule:
    """A learning rate: a schedule (any callable), else a finite number > 0 (a 0-d array too, such
    as the ``lr`` a state holds)."""
    if callable(lr):
        return cast(Schedule, lr)
    return check_finite_positive(where, "lr", _scalar(lr))


def _scalar(value: Any) -> Any:
    """A 0-d integer or float array as its NumPy scalar; anything else as it is."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return value[()]
    return value


def _check_rate(where: str, name: str, value: Any) -> float:
    """A decay rate or momentum in [0, 1)."""
    return check_in_interval(where, name, value, 0.0, 1.0)


def _i64(n: int) -> Array:
    return np.array(n, dtype=np.int64)


def _f64(x: float) -> Array:
    return np.array(x, dtype=np.float64)


def _wide(a: Any) -> Any:
    """A float16 array or scalar as float32; anything else as it is (the same object)."""
    return a.astype(np.float32) if getattr(a, "dtype", None) == np.float16 else a


def _moments_like(params: Tree) -> Tree:
    """Zero moments shaped like ``params``: in each leaf's dtype, float32 for float16 leaves."""
    return tree_map(lambda p: _wide(np.zeros_like(p)), params)


def _rounded(u: Array, g: Any, gw: Any) -> Array:
    """The update ``u`` computed from ``gw = _wide(g)``, in ``g``'s dtype."""
    return u if gw is g else u.astype(g.dtype)


# --------------------------------------------------------------------------------------------
# The learning rate
# --------------------------------------------------------------------------------------------


class ScaleByLrState(NamedTuple):
    """State of :func:`scale_by_lr` with a fixed rate: ``lr`` (0-d float64), read by :func:`current_lr`.

    >>> from fnnet.optim import current_lr, scale_by_lr
    >>> state = scale_by_lr(0.1).init({"w": None})
    >>> state, current_lr(state)
    (ScaleByLrState(lr=array(0.1)), 0.1)
    """

    lr: Array


class ScaleByScheduleState(NamedTuple):
    """State of :func:`scale_by_schedule`: ``steps``, the number of updates made (0-d int64), and
    the ``lr`` the next update uses (0-d float64, ``schedule(steps)``).

    >>> import numpy as np
    >>> from fnnet.optim import ExponentialDecay, scale_by_schedule
    >>> opt = scale_by_schedule(ExponentialDecay(0.1, 0.5, decay_steps=1))
    >>> _, state = opt.update(np.ones(1), opt.init(np.zeros(1)))
    >>> int(state.steps), float(state.lr)                  # the next update uses lr 0.05
    (1, 0.05)
    """

    steps: Array
    lr: Array


def scale_by_lr(lr: float | Schedule) -> GradientTransformation:
    """Descent direction times the learning rate: ``u ← −η u``.

    Args:
        lr: η, a positive float (or 0-d array), or a schedule ``count -> lr`` (then this is
            :func:`scale_by_schedule`).
    Returns:
        The transformation; its state records the learning rate for :func:`current_lr`.

    >>> import numpy as np
    >>> from fnnet.optim import scale_by_lr
    >>> t = scale_by_lr(0.1)
    >>> t.update(np.array([1.0, -2.0]), t.init(None))[0]
    array([-0.1,  0.2])
    """
    lr = _check_lr("scale_by_lr", lr)
    if callable(lr):
        return scale_by_schedule(lr)
    neg_lr = -lr

    def init(params: Tree) -> ScaleByLrState:
        return ScaleByLrState(_f64(lr))

    def update(updates: Tree, state: ScaleByLrState, params: Tree = None) -> tuple[Tree, ScaleByLrState]:
        return tree_map(lambda u: neg_lr * u, updates), state

    return GradientTransformation(init, update)


def scale_by_schedule(schedule: Schedule) -> GradientTransformation:
    """``u ← −η_k u`` with ``η_k = schedule(k)`` at the update after ``k`` updates (``k = 0, 1, ...``).

    Args:
        schedule: a callable ``count -> lr``, e.g. :class:`CosineDecay`.
    Returns:
        The transformation; its state counts the updates and holds the next learning rate.
    Raises:
        ValueError: from ``init`` or ``update`` when the schedule returns a negative rate or not
            a number (naming the count). A ``nan`` or ``inf`` rate is kept in the state, which
            :func:`fnnet.fit` then refuses as non-finite.

    >>> import numpy as np
    >>> from fnnet.optim import StaircaseDecay, scale_by_schedule
    >>> t = scale_by_schedule(StaircaseDecay(1.0, decay_rate=0.5, decay_steps=1))
    >>> g, state = np.ones(1), t.init(None)
    >>> for _ in range(3):
    ...     u, state = t.update(g, state)
    ...     print(u)
    [-1.]
    [-0.5]
    [-0.25]
    """
    if not callable(schedule):
        raise ValueError(f"scale_by_schedule: schedule must be callable count -> lr, got {schedule!r}")

    def lr_at(count: int) -> Array:
        lr = schedule(count)
        v = _scalar(lr)
        if not is_real(v) or v < 0:  # nan and inf go into the state, where fit's finiteness check stops them
            raise ValueError(f"scale_by_schedule: schedule({count}) returned {lr!r}; expected a number >= 0")
        return _f64(v)

    def init(params: Tree) -> ScaleByScheduleState:
        return ScaleByScheduleState(_i64(0), lr_at(0))

    def update(
        updates: Tree, state: ScaleByScheduleState, params: Tree = None
    ) -> tuple[Tree, ScaleByScheduleState]:
        neg_lr = -float(state.lr)
        k = int(state.steps) + 1
        return tree_map(lambda u: neg_lr * u, updates), ScaleByScheduleState(_i64(k), lr_at(k))

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# Momentum and the adaptive directions
# --------------------------------------------------------------------------------------------


class TraceState(NamedTuple):
    """State of :func:`trace`: the velocity ``v`` shaped like params.

    >>> import numpy as np
    >>> from fnnet.optim import trace
    >>> opt = trace(0.9)
    >>> state = opt.init({"w": np.zeros((2, 3))})          # velocity shaped like params
    >>> state.velocity["w"].shape
    (2, 3)
    """

    velocity: Tree


def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Momentum on already-scaled updates ``u`` (put it after :func:`scale_by_lr`, as the book does).

    Heavy ball: ``v ← μ v + u`` and the update is the new ``v``. Nesterov (see :func:`nesterov`): the
    update is ``μ² v + (1 + μ) u`` with the *old* ``v``, then ``v ← μ v + u``. With ``u = −η g``
    this is Nesterov's look-ahead method ``v ← μ v − η ∇f(θ + μ v); θ ← θ + v`` written for the
    shifted point ``W = θ + μ v``, so only the gradient at ``W`` is needed.

    Args:
        decay: the momentum ``μ`` in [0, 1).
        nesterov: use the book's Nesterov update.
    Returns:
        The transformation (state: :class:`TraceState`, velocity zeros at init).

    >>> import numpy as np
    >>> from fnnet.optim import trace
    >>> t = trace(0.5)
    >>> u = np.ones(1)
    >>> state = t.init(u)
    >>> for _ in range(3):
    ...     v, state = t.update(u, state)
    ...     print(v)
    [1.]
    [1.5]
    [1.75]
    """
    mu = _check_rate("trace", "decay", decay)
    mu2, mu1 = mu * mu, 1.0 + mu

    def heavy_ball(u: Array, v: Array) -> tuple[Array, Array]:
        v = mu * v + u
        return v, v

    def nesterov_leaf(u: Array, v: Array) -> tuple[Array, Array]:
        return mu2 * v + mu1 * u, mu * v + u

    leaf = nesterov_leaf if nesterov else heavy_ball

    def init(params: Tree) -> TraceState:
        return TraceState(tree_zeros_like(params))

    def update(updates: Tree, state: TraceState, params: Tree = None) -> tuple[Tree, TraceState]:
        new_u, v = tree_map_n(leaf, 2, updates, state.velocity)
        return new_u, TraceState(v)

    return GradientTransformation(init, update)


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`: ``h``, the running sum of squared gradients, shaped like
    params (float32 for float16 leaves).

    >>> import numpy as np
    >>> from fnnet.optim import scale_by_adagrad
    >>> opt = scale_by_adagrad()
    >>> _, state = opt.update(np.array([3.0, 4.0]), opt.init(np.zeros(2)))
    >>> state.sum_sq.tolist()                             # h = sum of g², shaped like params
    [9.0, 16.0]
    """

    sum_sq: Tree


def scale_by_adagrad(eps: float = ADAGRAD_EPS) -> GradientTransformation:
    """AdaGrad's direction: ``h ← h + g²``, ``u = g / (√h + ε)``.

    Args:
        eps: ε > 0 (:data:`ADAGRAD_EPS`, the book's 1e-7).
    Returns:
        The transformation (state: :class:`ScaleByAdagradState`, zeros at init).

    >>> import numpy as np
    >>> from fnnet.optim import scale_by_adagrad
    >>> t = scale_by_adagrad()
    >>> g = np.array([3.0, -4.0])
    >>> np.round(t.update(g, t.init(g))[0], 6)  # the first direction is g / |g|
    array([ 1., -1.])
    """
    eps = check_finite_positive("scale_by_adagrad", "eps", eps)

    def leaf(g: Array, h: Array) -> tuple[Array, Array]:
        gw = _wide(g)
        h = h + gw * gw
        return _rounded(gw / (np.sqrt(h) + eps), g, gw), h

    def init(params: Tree) -> ScaleByAdagradState:
        return ScaleByAdagradState(_moments_like(params))

    def update(updates: Tree, state: ScaleByAdagradState, params: Tree = None) -> tuple[Tree, ScaleByAdagradState]:
        u, h = tree_map_n(leaf, 2, updates, state.sum_sq)
        return u, ScaleByAdagradState(h)

    return GradientTransformation(init, update)


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`: ``h``, the exponential moving average of squared gradients,
    shaped like params (float32 for float16 leaves).

    >>> import numpy as np
    >>> from fnnet.optim import scale_by_rms
    >>> opt = scale_by_rms(decay=0.9)
    >>> _, state = opt.update(np.array([10.0]), opt.init(np.zeros(1)))
    >>> state.mean_sq.round(6).tolist()                   # 0.9 * 0 + 0.1 * 10²
    [10.0]
    """

    mean_sq: Tree


def scale_by_rms(decay: float = 0.99, eps: float = RMSPROP_EPS) -> GradientTransformation:
    """RMSprop's direction: ``h ← ρ h + (1 − ρ) g²``, ``u = g / (√h + ε)`` (no bias correction, as
    the book; ``h`` starts at 0, so the first steps are up to ``1/√(1 − ρ)`` times larger).

    Args:
        decay: ρ in [0, 1).
        eps: ε > 0 (:data:`RMSPROP_EPS`, the book's 1e-7).
    Returns:
        The transformation (state: :class:`ScaleByRmsState`, zeros at init).

    >>> import numpy as np
    >>> from fnnet.optim import scale_by_rms
    >>> t = scale_by_rms(decay=0.75)
    >>> g = np.array([1.0])
    >>> np.round(t.update(g, t.init(g))[0], 6)  # h = 0.25 g², so u = g / (0.5 |g|)
    array([2.])
    """
    rho = _check_rate("scale_by_rms", "decay", decay)
    eps = check_finite_positive("scale_by_rms", "eps", eps)
    one_minus = 1.0 - rho

    def leaf(g: Array, h: Array) -> tuple[Array, Array]:
        gw = _wide(g)
        h = rho * h + one_minus * (gw * gw)
        return _rounded(gw / (np.sqrt(h) + eps), g, gw), h

    def init(params: Tree) -> ScaleByRmsState:
        return ScaleByRmsState(_moments_like(params))

    def update(updates: Tree, state: ScaleByRmsState, params: Tree = None) -> tuple[Tree, ScaleByRmsState]:
        u, h = tree_map_n(leaf, 2, updates, state.mean_sq)
        return u, ScaleByRmsState(h)

    return GradientTransformation(init, update)


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`: ``steps``, the number of updates made (0-d int64), and the
    moments ``mu`` and ``nu``, shaped like params (float32 for float16 leaves).

    >>> import numpy as np
    >>> from fnnet.optim import scale_by_adam
    >>> opt = scale_by_adam()
    >>> _, state = opt.update(np.array([2.0]), opt.init(np.zeros(1)))
    >>> int(state.steps), state.mu.round(6).tolist(), state.nu.round(6).tolist()
    (1, [0.2], [0.004])
    """

    steps: Array
    mu: Tree
    nu: Tree


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = ADAM_EPS) -> GradientTransformation:
    """Adam's direction in the book's form, at the ``t``-th update (``t = 1, 2, ...``)::

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,
        u = √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m / (√v + ε)

    which is the bias-corrected ``m̂ / (√v̂ + ε')`` with ``m̂ = m / (1 − β₁ᵗ)``,
    ``v̂ = v / (1 − β₂ᵗ)`` and ``ε' = ε / √(1 − β₂ᵗ)``.

    Args:
        b1, b2: β₁, β₂ in [0, 1).
        eps: ε > 0 (:data:`ADAM_EPS`, the book's 1e-7).
    Returns:
        The transformation (state: :class:`ScaleByAdamState`).

    >>> import numpy as np
    >>> from fnnet.optim import scale_by_adam
    >>> t = scale_by_adam()
    >>> g = np.array([0.5, -100.0])
    >>> np.round(t.update(g, t.init(g))[0], 4)  # the first direction is about g / |g|
    array([ 1., -1.])
    """
    b1 = _check_rate("scale_by_adam", "b1", b1)
    b2 = _check_rate("scale_by_adam", "b2", b2)
    eps = check_finite_positive("scale_by_adam", "eps", eps)
    c1, c2 = 1.0 - b1, 1.0 - b2

    def init(params: Tree) -> ScaleByAdamState:
        return ScaleByAdamState(_i64(0), _moments_like(params), _moments_like(params))

    def update(updates: Tree, state: ScaleByAdamState, params: Tree = None) -> tuple[Tree, ScaleByAdamState]:
        t = int(state.steps) + 1
        corr = math.sqrt(1.0 - b2**t) / (1.0 - b1**t)

        def leaf(g: Array, m: Array, v: Array) -> tuple[Array, Array, Array]:
            gw = _wide(g)
            m = b1 * m + c1 * gw
            v = b2 * v + c2 * (gw * gw)
            return _rounded(corr * m / (np.sqrt(v) + eps), g, gw), m, v

        u, mu, nu = tree_map_n(leaf, 3, updates, state.mu, state.nu)
        return u, ScaleByAdamState(_i64(t), mu, nu)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# Clipping and weight decay
# --------------------------------------------------------------------------------------------


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scale all updates by ``max_norm / ‖u‖`` when their global L2 norm ``‖u‖`` exceeds ``max_norm``.

    Args:
        max_norm: the largest allowed global norm, > 0.
    Returns:
        The transformation (stateless). The norm is accumulated in float64 (see
        :func:`fnnet.tree.tree_global_norm`). An update holding ``inf`` has norm ``inf`` and is
        scaled by 0, which makes its ``inf`` entries ``nan``: a non-finite gradient is not hidden.

    >>> import numpy as np
    >>> from fnnet.optim import clip_by_global_norm
    >>> t = clip_by_global_norm(1.0)
    >>> g = (np.array([3.0]), np.array([4.0]))  # global norm 5
    >>> t.update(g, t.init(g))[0]
    (array([0.6]), array([0.8]))
    """
    limit = check_finite_positive("clip_by_global_norm", "max_norm", max_norm)

    def init(params: Tree) -> EmptyState:
        return EmptyState()

    def update(updates: Tree, state: EmptyState, params: Tree = None) -> tuple[Tree, EmptyState]:
        norm = tree_global_norm(updates)
        if norm <= limit:
            return updates, state
        factor = limit / norm
        return tree_map(lambda u: factor * u, updates), state

    return GradientTransformation(init, update)


def default_decay_mask(params: Tree) -> Tree:
    """Decay the leaves with ``ndim >= 2`` (Affine weights, conv kernels), not the 1-D ones
    (biases, BatchNorm γ/β).

    Args:
        params: any tree of arrays.
    Returns:
        A tree of bools shaped like ``params``.

    >>> import numpy as np
    >>> from fnnet.optim import default_decay_mask
    >>> default_decay_mask({"w": np.ones((3, 2)), "b": np.ones(2)})
    {'b': False, 'w': True}
    """
    return tree_map(lambda p: np.ndim(p) >= 2, params)


def _resolve_mask(mask: Mask, params: Tree) -> Tree:
    if mask is None:
        return default_decay_mask(params)
    if callable(mask):
        return mask(params)
    return mask


def _mask_error(where: str, params: Tree, mask_tree: Tree) -> ValueError | None:
    """The error to raise if ``mask_tree`` is not a tree of flags shaped like ``params``, else None."""
    try:
        flags = tree_map(lambda p, m: m, params, mask_tree)
    except ValueError as e:
        return ValueError(f"{where}: mask does not match params: {str(e).removeprefix('tree_map: ')}")
    for path, m in zip(tree_paths(params), tree_leaves(flags)):
        if not (
            isinstance(m, (bool, int, np.bool_, np.integer))
            or (isinstance(m, np.ndarray) and m.shape == () and m.dtype.kind in "biu")
        ):
            what = f"an array of shape {m.shape}" if isinstance(m, np.ndarray) else repr(m)
            return ValueError(f"{where}: mask at {path or '<root>'} must be True or False, got {what}")
    return None


def add_decayed_weights(weight_decay: float, mask: Mask = None) -> GradientTransformation:
    """Decoupled weight decay: ``u ← u + λ W`` on masked leaves (the next :func:`scale_by_lr` turns
    it into ``W ← W − η λ W``, independent of the gradient's scaling, as in AdamW).

    Args:
        weight_decay: λ >= 0.
        mask: tree of bools shaped like params, a callable ``params -> tree``, or ``None`` for
            :func:`default_decay_mask` (weights, not biases).
    Returns:
        The transformation (stateless); its ``update`` requires ``params`` unless the updates
        have no leaves (a model without parameters, whose params are ``None`` or empty tuples,
        has nothing to decay). Its ``init`` checks the mask against the params: a mask of
        another structure, or with a leaf that is not a flag, raises ``ValueError`` naming the path.

    >>> import numpy as np
    >>> from fnnet.optim import add_decayed_weights
    >>> t = add_decayed_weights(0.1)
    >>> params = {"w": np.ones((1, 2)), "b": np.ones(2)}
    >>> grads = {"w": np.zeros((1, 2)), "b": np.zeros(2)}
    >>> t.update(grads, t.init(params), params)[0]  # the bias is not decayed
    {'b': array([0., 0.]), 'w': array([[0.1, 0.1]])}
    """
    lam = check_finite_nonneg("add_decayed_weights", "weight_decay", weight_decay)

    def leaf(u: Array, p: Array, m: Any) -> Array:
        return u + lam * p if m else u

    def leaf_default_mask(u: Array, p: Array) -> Array:  # default_decay_mask, inlined
        return u + lam * p if np.ndim(p) >= 2 else u

    def init(params: Tree) -> EmptyState:
        if mask is not None:
            err = _mask_error("add_decayed_weights", params, _resolve_mask(mask, params))
            if err is not None:
                raise err
        return EmptyState()

    def update(updates: Tree, state: EmptyState, params: Tree = None) -> tuple[Tree, EmptyState]:
        if params is None:
            if tree_leaves(updates):
                raise ValueError("add_decayed_weights: update needs params (call update(grads, state, params))")
            return updates, state  # a model without parameters: nothing to decay
        if lam == 0.0:
            return updates, state
        mask_tree = None
        try:
            if mask is None:
                return tree_map(leaf_default_mask, updates, params), state
            mask_tree = _resolve_mask(mask, params)
            return tree_map(leaf, updates, params, mask_tree), state
        except ValueError:
            if not tree_leaves(updates) and not tree_leaves(params):
                return updates, state  # empty trees of two spellings, () and (None, None)
            err = None if mask_tree is None else _mask_error("add_decayed_weights", params, mask_tree)
            if err is None:
                raise
            raise err from None

    return GradientTransformation(init, update)


def l2_penalty(params: Tree, weight_decay: float, mask: Mask = None) -> tuple[float, Tree]:
    """The book's coupled L2 weight decay as a loss term: ``0.5 · λ · Σ W²`` over masked leaves.

    Args:
        params: any tree of arrays.
        weight_decay: λ >= 0.
        mask: as in :func:`add_decayed_weights` (default: weights with ndim >= 2).
    Returns:
        ``(loss, grads)``: the penalty (a float) and its gradient, a tree shaped like ``params``
        holding ``λ W`` on masked leaves and zeros elsewhere (add it to the loss gradient).
    Raises:
        ValueError: if the mask does not match ``params`` (naming the path).

    >>> import numpy as np
    >>> from fnnet.optim import l2_penalty
    >>> loss, grads = l2_penalty({"w": np.full((2, 2), 2.0), "b": np.ones(2)}, 0.1)
    >>> round(loss, 10), grads["w"][0], grads["b"]  # 0.5 · 0.1 · (4 · 2²)
    (0.8, array([0.2, 0.2]), array([0., 0.]))
    """
    lam = check_finite_nonneg("l2_penalty", "weight_decay", weight_decay)
    total: list[float] = []

    def leaf(p: Array, m: Any) -> Array:
        if not m:
            return np.zeros_like(p)
        a = np.asarray(p)
        if a.dtype.itemsize < 4:  # a float16 sum of squares overflows at 65504
            a = a.astype(np.float64)
        total.append(float(np.vdot(a, a)))
        return lam * p

    mask_tree = _resolve_mask(mask, params)
    try:
        grads = tree_map(leaf, params, mask_tree)
    except ValueError:
        err = _mask_error("l2_penalty", params, mask_tree)
        if err is None:
            raise
        raise err from None
    return 0.5 * lam * math.fsum(total), grads
