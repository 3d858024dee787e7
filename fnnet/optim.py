"""Optimizers (the book's section 6.1) as small composable gradient transformations.

A :class:`GradientTransformation` is a pair of pure functions::

    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = apply_updates(params, updates)          # p + u, leaf by leaf

Transforms compose with :func:`chain`; every named optimizer is one ``chain(...)`` of the small
transforms below, e.g. ``adam = chain(scale_by_adam(b1, b2), scale_by_lr(lr))``. States are
NamedTuples of arrays (step counters are 0-d int64 arrays), so they are trees that a ``.npz``
checkpoint holds; :func:`current_lr` reads the learning rate back from any such state.

The book's update rules, with ``g = dL/dW`` and learning rate ``η``:

=========  ===========================================================================
SGD        ``W ← W − η g``
Momentum   ``v ← μ v − η g;  W ← W + v``
Nesterov   ``W ← W + μ² v − (1 + μ) η g;  v ← μ v − η g``  (``v`` before its update)
AdaGrad    ``h ← h + g²;  W ← W − η g / (√h + ε)``
RMSprop    ``h ← ρ h + (1 − ρ) g²;  W ← W − η g / (√h + ε)``
Adam       ``m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;``
           ``W ← W − η √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m / (√v + ε)``
AdamW      Adam plus the decoupled decay ``W ← W − η λ W`` on masked leaves
=========  ===========================================================================

``η`` may be a float or a schedule (``step -> lr``, e.g. :func:`warmup_cosine`); ``step`` counts
the updates already made (0 for the first one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn, Protocol, cast

import attrs
import numpy as np

from fnnet.typing import Array, Tree
from fnnet._validate import nonneg_int, positive_int
from fnnet.tree import tree_map

__all__ = [
    # core
    "GradientTransformation",
    "UpdateFn",
    "chain",
    "apply_updates",
    "step",
    "current_lr",
    # states
    "EmptyState",
    "ScaleByLrState",
    "ScaleByScheduleState",
    "TraceState",
    "ScaleByAdagradState",
    "ScaleByRmsState",
    "ScaleByAdamState",
    # transforms
    "scale_by_lr",
    "scale_by_schedule",
    "trace",
    "scale_by_adagrad",
    "scale_by_rms",
    "scale_by_adam",
    "add_decayed_weights",
    "clip_by_global_norm",
    # optimizers
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    # schedules
    "Schedule",
    "Constant",
    "StepDecay",
    "ExponentialDecay",
    "CosineDecay",
    "WarmupCosine",
    "constant",
    "step_decay",
    "exponential_decay",
    "cosine_decay",
    "warmup_cosine",
    # weight decay
    "Mask",
    "default_decay_mask",
    "l2_penalty",
    # constants
    "ADAGRAD_EPS",
    "RMSPROP_EPS",
    "ADAM_EPS",
]

#: ε added to √h in AdaGrad so that a coordinate whose gradient has always been zero divides by
#: ε instead of 0 (its update is then 0/ε = 0). The book's value.
ADAGRAD_EPS = 1e-7
#: ε added to √h in RMSprop, for the same reason; the book's value.
RMSPROP_EPS = 1e-7
#: ε added to √v in Adam; the book's value (the Adam paper and optax use 1e-8). It is added to the
#: *uncorrected* √v, as in the book, which equals ε / √(1 − β₂ᵗ) added to the corrected √v̂.
ADAM_EPS = 1e-7

#: A learning-rate schedule: the number of updates already made -> the learning rate to use.
Schedule = Callable[[int], float]
#: Which leaves a weight decay touches: a tree of bools shaped like params, a callable
#: ``params -> such a tree``, or ``None`` for :func:`default_decay_mask`.
Mask = Any


# --------------------------------------------------------------------------------------------
# Core
# --------------------------------------------------------------------------------------------


class UpdateFn(Protocol):
    """``update(updates, state, params=None) -> (new_updates, new_state)``."""

    def __call__(self, updates: Tree, state: Tree, params: Tree = None) -> tuple[Tree, Tree]: ...


class GradientTransformation(NamedTuple):
    """A pair of pure functions transforming gradients into parameter updates.

    Attributes:
        init: ``init(params) -> state``; the state is a tree of arrays.
        update: ``update(grads, state, params=None) -> (updates, new_state)``; ``updates`` has the
            structure of ``grads``. Nothing passed in is written to.
    """

    init: Callable[[Tree], Tree]
    update: UpdateFn


class EmptyState(NamedTuple):
    """The state of a stateless transform (no leaves)."""


class _Mismatch(Exception):
    """Raised by the fast tree walkers; the caller re-runs fnnet.tree for a named error."""


# The walkers below give the same results as fnnet.tree.tree_map with less Python work per node
# (the optimizer's update runs once per training step): arrays, None, tuples, lists and
# NamedTuples are walked here; any other node (dicts, attrs records, scalars) goes to
# fnnet.tree.tree_map. On a structure mismatch they raise _Mismatch and the public wrapper re-runs
# fnnet.tree.tree_map, whose ValueError names the path.

_ndarray = np.ndarray
_new_tuple = tuple.__new__


def _is_seq(t: Any, tt: type) -> bool:
    return tt is tuple or tt is list or (isinstance(t, tuple) and hasattr(tt, "_fields"))


def _rebuild(tt: type, kids: list[Any]) -> Any:
    if tt is list:
        return kids
    if tt is tuple:
        return tuple(kids)
    return _new_tuple(tt, kids)  # a NamedTuple, built without re-checking its fields


def _walk1(f: Callable[[Any], Any], t: Any) -> Any:
    tt = type(t)
    if tt is _ndarray:
        return f(t)
    if t is None:
        return None
    if _is_seq(t, tt):
        return _rebuild(tt, [_walk1(f, c) for c in t])
    return tree_map(f, t)


def _walk2(f: Callable[[Any, Any], Any], t: Any, r: Any) -> Any:
    tt = type(t)
    if tt is _ndarray:
        if r is None:
            raise _Mismatch
        return f(t, r)
    if t is None:
        if r is not None:
            raise _Mismatch
        return None
    if _is_seq(t, tt):
        if type(r) is not tt or len(r) != len(t):
            raise _Mismatch
        return _rebuild(tt, [_walk2(f, c, d) for c, d in zip(t, r)])
    return tree_map(f, t, r)


def _walk_n(f: Callable[..., tuple[Any, ...]], n: int, t: Any, rest: Sequence[Any]) -> tuple[Any, ...]:
    tt = type(t)
    if tt is _ndarray:
        for r in rest:
            if r is None:
                raise _Mismatch
        return f(t, *rest)
    if t is None:
        for r in rest:
            if r is not None:
                raise _Mismatch
        return (None,) * n
    if _is_seq(t, tt):
        m = len(t)
        for r in rest:
            if type(r) is not tt or len(r) != m:
                raise _Mismatch
        kids = [_walk_n(f, n, c[0], c[1:]) for c in zip(t, *rest)]
        if not kids:
            return tuple(_rebuild(tt, []) for _ in range(n))
        return tuple(_rebuild(tt, list(col)) for col in zip(*kids))
    outs: list[tuple[Any, ...]] = []
    tree_map(lambda *a: outs.append(f(*a)), t, *rest)
    return tuple(_refill(t, [o[i] for o in outs]) for i in range(n))


def _refill(like: Tree, leaves: list[Any]) -> Tree:
    it = iter(leaves)
    return tree_map(lambda _: next(it), like)


def _tmap(f: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """The result of :func:`fnnet.tree.tree_map`, with less Python overhead."""
    try:
        if not rest:
            return _walk1(f, tree)
        if len(rest) == 1:
            return _walk2(f, tree, rest[0])
        return _walk_n(lambda *a: (f(*a),), 1, tree, rest)[0]
    except _Mismatch:
        _raise_mismatch(tree, rest)


def _tmap_n(f: Callable[..., tuple[Any, ...]], n: int, tree: Tree, *rest: Tree) -> tuple[Tree, ...]:
    """Map a leaf function with ``n`` results over trees in one pass; returns ``n`` trees."""
    try:
        return _walk_n(f, n, tree, rest)
    except _Mismatch:
        _raise_mismatch(tree, rest)


def _raise_mismatch(tree: Tree, rest: Sequence[Tree]) -> NoReturn:
    tree_map(lambda *a: None, tree, *rest)  # raises a ValueError naming the path
    raise ValueError("optim: tree structures differ: an array in the first tree faces None in another")


def _add_keep_dtype(p: Any, u: Any) -> Any:
    r = p + u
    dt = getattr(p, "dtype", None)
    if dt is None or (type(r) is _ndarray and r.dtype == dt):
        return r
    return np.asarray(r, dtype=dt)  # the param's dtype; a 0-d param stays an array, not a scalar


def apply_updates(params: Tree, updates: Tree) -> Tree:
    """New parameters ``p + u`` leaf by leaf, each keeping its parameter's dtype (and 0-d arrays
    staying arrays).

    Args:
        params: any tree of arrays.
        updates: a tree of the same structure (as returned by ``update``).
    Returns:
        A new tree; ``params`` and ``updates`` are not written to.
    """
    return _tmap(_add_keep_dtype, params, updates)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Compose transformations, applied left to right; the state is a tuple of their states.

    Args:
        transforms: the transformations, e.g. ``chain(clip_by_global_norm(5.0), adam(1e-3))``.
    Returns:
        A transformation whose ``update`` feeds each one's output updates to the next.
    """
    inits = tuple(t.init for t in transforms)
    updates_fns = tuple(t.update for t in transforms)
    n = len(transforms)

    def init(params: Tree) -> tuple[Tree, ...]:
        return tuple(f(params) for f in inits)

    def update(updates: Tree, state: Tree, params: Tree = None) -> tuple[Tree, tuple[Tree, ...]]:
        if len(state) != n:
            raise ValueError(f"chain: state has {len(state)} entries for {n} transforms")
        new_states = []
        for f, s in zip(updates_fns, state):
            updates, s = f(updates, s, params)
            new_states.append(s)
        return updates, tuple(new_states)

    return GradientTransformation(init, update)


def step(opt: GradientTransformation, grads: Tree, state: Tree, params: Tree) -> tuple[Tree, Tree]:
    """One optimizer step: ``update`` then :func:`apply_updates`.

    Args:
        opt: the transformation; grads: ``dL/dparams`` shaped like ``params``;
        state: ``opt``'s state; params: the current parameters.
    Returns:
        ``(new_params, new_state)``.
    """
    updates, new_state = opt.update(grads, state, params)
    return apply_updates(params, updates), new_state


def current_lr(opt_state: Tree) -> float:
    """The learning rate the next update will use, read from a (chained) optimizer state.

    Args:
        opt_state: the state of a transformation containing :func:`scale_by_lr` or
            :func:`scale_by_schedule` (every named optimizer does).
    Returns:
        The learning rate of the first such transform found (depth first).
    """
    found = _find_lr(opt_state)
    if found is None:
        raise ValueError("current_lr: the state holds no learning rate (no scale_by_lr / scale_by_schedule)")
    return found


def _find_lr(s: Any) -> float | None:
    if isinstance(s, (ScaleByLrState, ScaleByScheduleState)):
        return float(s.lr)
    if isinstance(s, (tuple, list)):
        for c in s:
            r = _find_lr(c)
            if r is not None:
                return r
    return None


# --------------------------------------------------------------------------------------------
# Validation of hyperparameters
# --------------------------------------------------------------------------------------------


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _check_positive(where: str, name: str, v: Any) -> float:
    if not (_is_real(v) and math.isfinite(v) and v > 0):
        raise ValueError(f"{where}: {name} must be a positive finite number, got {v!r}")
    return float(v)


def _check_nonneg(where: str, name: str, v: Any) -> float:
    if not (_is_real(v) and math.isfinite(v) and v >= 0):
        raise ValueError(f"{where}: {name} must be a non-negative finite number, got {v!r}")
    return float(v)


def _check_unit(where: str, name: str, v: Any) -> float:
    if not (_is_real(v) and 0 <= v < 1):
        raise ValueError(f"{where}: {name} must be in [0, 1), got {v!r}")
    return float(v)


def _check_lr(where: str, lr: Any) -> float | Schedule:
    if callable(lr):
        return cast(Schedule, lr)
    return _check_positive(where, "lr", lr)


# --------------------------------------------------------------------------------------------
# Schedules: frozen, validated records called as schedule(step) -> lr
# --------------------------------------------------------------------------------------------


def _v_positive(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    _check_positive(type(inst).__name__, attribute.name, value)


def _v_nonneg(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    _check_nonneg(type(inst).__name__, attribute.name, value)


def _v_factor(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_is_real(value) and 0 < value <= 1):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be in (0, 1], got {value!r}")


def _check_final(inst: Any) -> None:
    if inst.final > inst.lr:
        raise ValueError(f"{type(inst).__name__}: final must be <= lr ({inst.lr!r}), got {inst.final!r}")


@attrs.frozen
class Constant:
    """``lr`` at every step."""

    lr: float = attrs.field(validator=_v_positive)

    def __call__(self, step: int) -> float:
        return float(self.lr)


@attrs.frozen
class StepDecay:
    """``lr · γ^⌊step / step_size⌋``: multiply by ``gamma`` every ``step_size`` steps."""

    lr: float = attrs.field(validator=_v_positive)
    step_size: int = attrs.field(validator=positive_int)
    gamma: float = attrs.field(default=0.1, validator=_v_factor)

    def __call__(self, step: int) -> float:
        return float(self.lr * self.gamma ** (step // self.step_size))


@attrs.frozen
class ExponentialDecay:
    """``lr · rate^(step / decay_steps)`` (smooth: a factor ``rate`` per ``decay_steps`` steps)."""

    lr: float = attrs.field(validator=_v_positive)
    decay_rate: float = attrs.field(validator=_v_factor)
    decay_steps: int = attrs.field(validator=positive_int)

    def __call__(self, step: int) -> float:
        return float(self.lr * self.decay_rate ** (step / self.decay_steps))


@attrs.frozen
class CosineDecay:
    """``final + (lr − final) · (1 + cos(π · min(step, T) / T)) / 2`` with ``T = total_steps``."""

    lr: float = attrs.field(validator=_v_positive)
    total_steps: int = attrs.field(validator=positive_int)
    final: float = attrs.field(default=0.0, validator=_v_nonneg)

    def __attrs_post_init__(self) -> None:
        _check_final(self)

    def __call__(self, step: int) -> float:
        frac = min(step, self.total_steps) / self.total_steps
        return float(self.final + (self.lr - self.final) * 0.5 * (1.0 + math.cos(math.pi * frac)))


@attrs.frozen
class WarmupCosine:
    """Linear warm-up ``lr · (step + 1) / W`` for ``step < W = warmup_steps``, then cosine decay
    from ``lr`` at step ``W`` to ``final`` at step ``total_steps`` (and after)."""

    lr: float = attrs.field(validator=_v_positive)
    warmup_steps: int = attrs.field(validator=nonneg_int)
    total_steps: int = attrs.field(validator=positive_int)
    final: float = attrs.field(default=0.0, validator=_v_nonneg)

    def __attrs_post_init__(self) -> None:
        _check_final(self)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"WarmupCosine: warmup_steps must be < total_steps ({self.total_steps}), got {self.warmup_steps}"
            )

    def __call__(self, step: int) -> float:
        w = self.warmup_steps
        if step < w:
            return float(self.lr * (step + 1) / w)
        frac = min(step - w, self.total_steps - w) / (self.total_steps - w)
        return float(self.final + (self.lr - self.final) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def constant(lr: float) -> Constant:
    """Schedule: ``lr`` at every step."""
    return Constant(lr)


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> StepDecay:
    """Schedule: ``lr · gamma^⌊step / step_size⌋`` (``0 < gamma <= 1``)."""
    return StepDecay(lr, step_size, gamma)


def exponential_decay(lr: float, decay_rate: float, decay_steps: int) -> ExponentialDecay:
    """Schedule: ``lr · decay_rate^(step / decay_steps)`` (``0 < decay_rate <= 1``)."""
    return ExponentialDecay(lr, decay_rate, decay_steps)


def cosine_decay(lr: float, total_steps: int, final: float = 0.0) -> CosineDecay:
    """Schedule: half a cosine from ``lr`` at step 0 to ``final`` at ``total_steps``, then ``final``."""
    return CosineDecay(lr, total_steps, final)


def warmup_cosine(lr: float, warmup_steps: int, total_steps: int, final: float = 0.0) -> WarmupCosine:
    """Schedule: linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``final``."""
    return WarmupCosine(lr, warmup_steps, total_steps, final)


# --------------------------------------------------------------------------------------------
# Small transforms
# --------------------------------------------------------------------------------------------


class ScaleByLrState(NamedTuple):
    """State of :func:`scale_by_lr` with a fixed rate: ``lr`` (0-d float64), read by :func:`current_lr`."""

    lr: Array


class ScaleByScheduleState(NamedTuple):
    """State of :func:`scale_by_schedule`: ``steps``, the number of updates made (0-d int64) and the ``lr`` the next
    update uses (0-d float64, ``schedule(steps)``)."""

    steps: Array
    lr: Array


def _i64(n: int) -> Array:
    return np.array(n, dtype=np.int64)


def _f64(x: float) -> Array:
    return np.array(x, dtype=np.float64)


def scale_by_lr(lr: float | Schedule) -> GradientTransformation:
    """Descent direction times the learning rate: ``u ← −η u``.

    Args:
        lr: a positive float, or a schedule ``step -> lr`` (then this is :func:`scale_by_schedule`).
    Returns:
        The transformation; its state records the learning rate for :func:`current_lr`.
    """
    lr = _check_lr("scale_by_lr", lr)
    if callable(lr):
        return scale_by_schedule(lr)
    neg_lr = -lr

    def init(params: Tree) -> ScaleByLrState:
        return ScaleByLrState(_f64(lr))

    def update(updates: Tree, state: ScaleByLrState, params: Tree = None) -> tuple[Tree, ScaleByLrState]:
        return _tmap(lambda u: neg_lr * u, updates), state

    return GradientTransformation(init, update)


def scale_by_schedule(schedule: Schedule) -> GradientTransformation:
    """``u ← −η_k u`` with ``η_k = schedule(k)`` at the ``k``-th update (``k = 0, 1, ...``).

    Args:
        schedule: a callable ``step -> lr``, e.g. :func:`cosine_decay`.
    Returns:
        The transformation; its state counts the updates and holds the next learning rate.
    """
    if not callable(schedule):
        raise ValueError(f"scale_by_schedule: schedule must be callable step -> lr, got {schedule!r}")

    def init(params: Tree) -> ScaleByScheduleState:
        return ScaleByScheduleState(_i64(0), _f64(schedule(0)))

    def update(
        updates: Tree, state: ScaleByScheduleState, params: Tree = None
    ) -> tuple[Tree, ScaleByScheduleState]:
        neg_lr = -float(state.lr)
        k = int(state.steps) + 1
        return _tmap(lambda u: neg_lr * u, updates), ScaleByScheduleState(_i64(k), _f64(schedule(k)))

    return GradientTransformation(init, update)


class TraceState(NamedTuple):
    """State of :func:`trace`: the velocity ``v`` shaped like params."""

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
    """
    mu = _check_unit("trace", "decay", decay)
    mu2, mu1 = mu * mu, 1.0 + mu

    def heavy_ball(u: Array, v: Array) -> tuple[Array, Array]:
        v = mu * v + u
        return v, v

    def nesterov_leaf(u: Array, v: Array) -> tuple[Array, Array]:
        return mu2 * v + mu1 * u, mu * v + u

    leaf = nesterov_leaf if nesterov else heavy_ball

    def init(params: Tree) -> TraceState:
        return TraceState(tree_map(np.zeros_like, params))

    def update(updates: Tree, state: TraceState, params: Tree = None) -> tuple[Tree, TraceState]:
        new_u, v = _tmap_n(leaf, 2, updates, state.velocity)
        return new_u, TraceState(v)

    return GradientTransformation(init, update)


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`: ``h``, the running sum of squared gradients."""

    sum_sq: Tree


def scale_by_adagrad(eps: float = ADAGRAD_EPS) -> GradientTransformation:
    """AdaGrad's direction: ``h ← h + g²``, ``u = g / (√h + ε)``.

    Args:
        eps: ε > 0 (:data:`ADAGRAD_EPS`, the book's 1e-7).
    Returns:
        The transformation (state: :class:`ScaleByAdagradState`, zeros at init).
    """
    eps = _check_positive("scale_by_adagrad", "eps", eps)

    def leaf(g: Array, h: Array) -> tuple[Array, Array]:
        h = h + g * g
        return g / (np.sqrt(h) + eps), h

    def init(params: Tree) -> ScaleByAdagradState:
        return ScaleByAdagradState(tree_map(np.zeros_like, params))

    def update(updates: Tree, state: ScaleByAdagradState, params: Tree = None) -> tuple[Tree, ScaleByAdagradState]:
        u, h = _tmap_n(leaf, 2, updates, state.sum_sq)
        return u, ScaleByAdagradState(h)

    return GradientTransformation(init, update)


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`: ``h``, the exponential moving average of squared gradients."""

    mean_sq: Tree


def scale_by_rms(decay: float = 0.99, eps: float = RMSPROP_EPS) -> GradientTransformation:
    """RMSprop's direction: ``h ← ρ h + (1 − ρ) g²``, ``u = g / (√h + ε)`` (no bias correction, as
    the book; ``h`` starts at 0, so the first steps are up to ``1/√(1 − ρ)`` times larger).

    Args:
        decay: ρ in [0, 1); eps: ε > 0 (:data:`RMSPROP_EPS`, the book's 1e-7).
    Returns:
        The transformation (state: :class:`ScaleByRmsState`, zeros at init).
    """
    rho = _check_unit("scale_by_rms", "decay", decay)
    eps = _check_positive("scale_by_rms", "eps", eps)
    one_minus = 1.0 - rho

    def leaf(g: Array, h: Array) -> tuple[Array, Array]:
        h = rho * h + one_minus * (g * g)
        return g / (np.sqrt(h) + eps), h

    def init(params: Tree) -> ScaleByRmsState:
        return ScaleByRmsState(tree_map(np.zeros_like, params))

    def update(updates: Tree, state: ScaleByRmsState, params: Tree = None) -> tuple[Tree, ScaleByRmsState]:
        u, h = _tmap_n(leaf, 2, updates, state.mean_sq)
        return u, ScaleByRmsState(h)

    return GradientTransformation(init, update)


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`: ``steps``, the number of updates made (0-d int64), moments ``mu`` and ``nu``."""

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
        b1, b2: β₁, β₂ in [0, 1); eps: ε > 0 (:data:`ADAM_EPS`, the book's 1e-7).
    Returns:
        The transformation (state: :class:`ScaleByAdamState`).
    """
    b1 = _check_unit("scale_by_adam", "b1", b1)
    b2 = _check_unit("scale_by_adam", "b2", b2)
    eps = _check_positive("scale_by_adam", "eps", eps)
    c1, c2 = 1.0 - b1, 1.0 - b2

    def init(params: Tree) -> ScaleByAdamState:
        return ScaleByAdamState(_i64(0), tree_map(np.zeros_like, params), tree_map(np.zeros_like, params))

    def update(updates: Tree, state: ScaleByAdamState, params: Tree = None) -> tuple[Tree, ScaleByAdamState]:
        t = int(state.steps) + 1
        corr = math.sqrt(1.0 - b2**t) / (1.0 - b1**t)

        def leaf(g: Array, m: Array, v: Array) -> tuple[Array, Array, Array]:
            m = b1 * m + c1 * g
            v = b2 * v + c2 * (g * g)
            return corr * m / (np.sqrt(v) + eps), m, v

        u, mu, nu = _tmap_n(leaf, 3, updates, state.mu, state.nu)
        return u, ScaleByAdamState(_i64(t), mu, nu)

    return GradientTransformation(init, update)


def default_decay_mask(params: Tree) -> Tree:
    """Decay the leaves with ``ndim >= 2`` (Affine weights, conv kernels), not the 1-D ones
    (biases, BatchNorm γ/β).

    Args:
        params: any tree of arrays.
    Returns:
        A tree of bools shaped like ``params``.
    """
    return _tmap(lambda p: np.ndim(p) >= 2, params)


def _resolve_mask(mask: Mask, params: Tree) -> Tree:
    if mask is None:
        return default_decay_mask(params)
    if callable(mask):
        return mask(params)
    return mask


def add_decayed_weights(weight_decay: float, mask: Mask = None) -> GradientTransformation:
    """Decoupled weight decay: ``u ← u + λ W`` on masked leaves (the next :func:`scale_by_lr` turns
    it into ``W ← W − η λ W``, independent of the gradient's scaling, as in AdamW).

    Args:
        weight_decay: λ >= 0.
        mask: tree of bools shaped like params, a callable ``params -> tree``, or ``None`` for
            :func:`default_decay_mask` (weights, not biases).
    Returns:
        The transformation (stateless); its ``update`` requires ``params``.
    """
    lam = _check_nonneg("add_decayed_weights", "weight_decay", weight_decay)

    def leaf(u: Array, p: Array, m: Any) -> Array:
        return u + lam * p if m else u

    def leaf_default_mask(u: Array, p: Array) -> Array:  # default_decay_mask, inlined
        return u + lam * p if np.ndim(p) >= 2 else u

    def init(params: Tree) -> EmptyState:
        return EmptyState()

    def update(updates: Tree, state: EmptyState, params: Tree = None) -> tuple[Tree, EmptyState]:
        if params is None:
            raise ValueError("add_decayed_weights: update needs params (call update(grads, state, params))")
        if lam == 0.0:
            return updates, state
        if mask is None:
            return _tmap(leaf_default_mask, updates, params), state
        return _tmap(leaf, updates, params, _resolve_mask(mask, params)), state

    return GradientTransformation(init, update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scale all updates by ``max_norm / ‖u‖`` when their global L2 norm ``‖u‖`` exceeds ``max_norm``.

    Args:
        max_norm: the largest allowed global norm, > 0.
    Returns:
        The transformation (stateless). The norm is accumulated in float64.
    """
    limit = _check_positive("clip_by_global_norm", "max_norm", max_norm)

    def init(params: Tree) -> EmptyState:
        return EmptyState()

    def update(updates: Tree, state: EmptyState, params: Tree = None) -> tuple[Tree, EmptyState]:
        sq: list[float] = []

        def add_sq(u: Any) -> None:
            a = np.asarray(u, dtype=np.float64)
            sq.append(float(np.vdot(a, a)))

        _tmap(add_sq, updates)
        norm = math.sqrt(math.fsum(sq))
        if norm <= limit:
            return updates, state
        factor = limit / norm
        return _tmap(lambda u: factor * u, updates), state

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
    """
    lam = _check_nonneg("l2_penalty", "weight_decay", weight_decay)
    total: list[float] = []

    def leaf(p: Array, m: Any) -> Array:
        if not m:
            return np.zeros_like(p)
        total.append(float(np.vdot(p, p)))
        return lam * p

    grads = _tmap(leaf, params, _resolve_mask(mask, params))
    return 0.5 * lam * math.fsum(total), grads


# --------------------------------------------------------------------------------------------
# Named optimizers (the book's defaults)
# --------------------------------------------------------------------------------------------


def sgd(lr: float | Schedule = 0.01) -> GradientTransformation:
    """SGD: ``W ← W − η g`` (book default η = 0.01).

    Args:
        lr: η, a positive float or a schedule.
    Returns:
        ``chain(scale_by_lr(lr))``.
    """
    return chain(scale_by_lr(_check_lr("sgd", lr)))


def momentum(lr: float | Schedule = 0.01, momentum: float = 0.9) -> GradientTransformation:
    """Momentum SGD: ``v ← μ v − η g; W ← W + v`` (book defaults η = 0.01, μ = 0.9; v starts at 0).

    Args:
        lr: η, a positive float or a schedule; momentum: μ in [0, 1).
    Returns:
        ``chain(scale_by_lr(lr), trace(momentum))``.
    """
    return chain(scale_by_lr(_check_lr("momentum", lr)), trace(_check_unit("momentum", "momentum", momentum)))


def nesterov(lr: float | Schedule = 0.01, momentum: float = 0.9) -> GradientTransformation:
    """Nesterov momentum in the book's form: ``W ← W + μ² v − (1 + μ) η g; v ← μ v − η g``.

    ``v`` in the first step is the velocity *before* this update, as in Bengio et al. (2013,
    arXiv:1212.0901), the reformulation the book's sample code cites. (That code adds ``μ²`` times
    the already-updated velocity, i.e. ``W ← W + μ³ v − (1 + μ + μ²) η g``, which is not
    Nesterov's method and can diverge where this form converges.)

    Args:
        lr: η, a positive float or a schedule; momentum: μ in [0, 1) (book defaults 0.01, 0.9).
    Returns:
        ``chain(scale_by_lr(lr), trace(momentum, nesterov=True))``.
    """
    mu = _check_unit("nesterov", "momentum", momentum)
    return chain(scale_by_lr(_check_lr("nesterov", lr)), trace(mu, nesterov=True))


def adagrad(lr: float | Schedule = 0.01, *, eps: float = ADAGRAD_EPS) -> GradientTransformation:
    """AdaGrad: ``h ← h + g²; W ← W − η g / (√h + ε)`` (book defaults η = 0.01, ε = 1e-7).

    Args:
        lr: η, a positive float or a schedule; eps: ε > 0.
    Returns:
        ``chain(scale_by_adagrad(eps), scale_by_lr(lr))``.
    """
    return chain(scale_by_adagrad(eps), scale_by_lr(_check_lr("adagrad", lr)))


def rmsprop(lr: float | Schedule = 0.01, decay: float = 0.99, *, eps: float = RMSPROP_EPS) -> GradientTransformation:
    """RMSprop: ``h ← ρ h + (1 − ρ) g²; W ← W − η g / (√h + ε)`` (book defaults 0.01, 0.99, 1e-7).

    Args:
        lr: η, a positive float or a schedule; decay: ρ in [0, 1); eps: ε > 0.
    Returns:
        ``chain(scale_by_rms(decay, eps), scale_by_lr(lr))``.
    """
    return chain(scale_by_rms(decay, eps), scale_by_lr(_check_lr("rmsprop", lr)))


def adam(
    lr: float | Schedule = 0.001, b1: float = 0.9, b2: float = 0.999, *, eps: float = ADAM_EPS
) -> GradientTransformation:
    """Adam in the book's bias-corrected form (see :func:`scale_by_adam`); book defaults
    η = 0.001, β₁ = 0.9, β₂ = 0.999, ε = 1e-7.

    Args:
        lr: η, a positive float or a schedule; b1, b2: β₁, β₂ in [0, 1); eps: ε > 0.
    Returns:
        ``chain(scale_by_adam(b1, b2, eps), scale_by_lr(lr))``.
    """
    return chain(scale_by_adam(b1, b2, eps), scale_by_lr(_check_lr("adam", lr)))


def adamw(
    lr: float | Schedule = 0.001,
    weight_decay: float = 0.01,
    mask: Mask = None,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = ADAM_EPS,
) -> GradientTransformation:
    """AdamW: Adam plus decoupled weight decay, ``W ← W − η (adam_direction + λ W)``.

    Args:
        lr: η, a positive float or a schedule; weight_decay: λ >= 0.
        mask: which leaves decay (default :func:`default_decay_mask`: weights, not biases).
        b1, b2, eps: as in :func:`adam`.
    Returns:
        ``chain(scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay, mask), scale_by_lr(lr))``.
    """
    return chain(
        scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay, mask), scale_by_lr(_check_lr("adamw", lr))
    )
