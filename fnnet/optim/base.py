"""The optimizer core: :class:`GradientTransformation`, :func:`chain`, :func:`apply_updates`,
:func:`apply_optimizer` and :func:`current_lr`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

from fnnet.tree import tree_map
from fnnet.typing import Tree

__all__ = [
    "UpdateFn",
    "GradientTransformation",
    "EmptyState",
    "chain",
    "apply_updates",
    "apply_optimizer",
    "current_lr",
]


class UpdateFn(Protocol):
    """``update(updates, state, params=None) -> (new_updates, new_state)``.

    >>> import numpy as np
    >>> from fnnet.optim import GradientTransformation, UpdateFn
    >>> def halve(updates, state, params=None):
    ...     return 0.5 * updates, state
    >>> update: UpdateFn = halve
    >>> GradientTransformation(lambda params: (), update).update(np.array([2.0]), ())[0]
    array([1.])
    """

    def __call__(self, updates: Tree, state: Tree, params: Tree = None) -> tuple[Tree, Tree]: ...


class GradientTransformation(NamedTuple):
    """A pair of pure functions transforming gradients into parameter updates.

    Attributes:
        init: ``init(params) -> state``; the state is a tree of arrays.
        update: ``update(grads, state, params=None) -> (updates, new_state)``; ``updates`` has the
            structure of ``grads``. Nothing passed in is written to.

    >>> import numpy as np
    >>> from fnnet.optim import sgd
    >>> opt = sgd(0.5)
    >>> params = np.array([1.0, 2.0])
    >>> updates, state = opt.update(np.array([1.0, -2.0]), opt.init(params), params)
    >>> updates
    array([-0.5,  1. ])
    """

    init: Callable[[Tree], Tree]
    update: UpdateFn


class EmptyState(NamedTuple):
    """The state of a stateless transform (no leaves).

    >>> import numpy as np
    >>> from fnnet.optim import EmptyState, clip_by_global_norm
    >>> clip_by_global_norm(1.0).init({"w": np.zeros(3)})
    EmptyState()
    >>> len(EmptyState())
    0
    """


def _add_keep_dtype(p: Any, u: Any) -> Any:
    r = p + u
    dt = getattr(p, "dtype", None)
    if dt is None or (type(r) is np.ndarray and r.dtype == dt):
        return r
    return np.asarray(r, dtype=dt)  # the param's dtype; a 0-d param stays an array, not a scalar


def apply_updates(params: Tree, updates: Tree) -> Tree:
    """New parameters ``p + u`` leaf by leaf, each keeping its parameter's dtype.

    Args:
        params: any tree of arrays (a 0-d array stays a 0-d array).
        updates: a tree of the same structure (as returned by ``update``).
    Returns:
        A new tree; ``params`` and ``updates`` are not written to.
    Raises:
        ValueError: if the structures differ (naming the path).

    >>> import numpy as np
    >>> from fnnet.optim import apply_updates
    >>> new = apply_updates({"w": np.ones(2, np.float32)}, {"w": np.array([0.5, -0.5])})
    >>> new["w"], new["w"].dtype
    (array([1.5, 0.5], dtype=float32), dtype('float32'))
    """
    return tree_map(_add_keep_dtype, params, updates)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Compose transformations, applied left to right; the state is a tuple of their states.

    Args:
        transforms: the transformations, e.g. ``chain(clip_by_global_norm(5.0), adam(1e-3))``.
    Returns:
        A transformation whose ``update`` feeds each one's output updates to the next.

    >>> import numpy as np
    >>> from fnnet.optim import chain, clip_by_global_norm, sgd
    >>> opt = chain(clip_by_global_norm(1.0), sgd(0.1))
    >>> params = np.zeros(2)
    >>> updates, _ = opt.update(np.array([3.0, 4.0]), opt.init(params), params)
    >>> updates  # the gradient, of norm 5, clipped to norm 1, times -0.1
    array([-0.06, -0.08])
    """
    inits = tuple(t.init for t in transforms)
    update_fns = tuple(t.update for t in transforms)
    n = len(transforms)

    def init(params: Tree) -> tuple[Tree, ...]:
        return tuple(f(params) for f in inits)

    def update(updates: Tree, state: Tree, params: Tree = None) -> tuple[Tree, tuple[Tree, ...]]:
        if len(state) != n:
            raise ValueError(f"chain: state has {len(state)} entries for {n} transforms")
        new_states = []
        for f, s in zip(update_fns, state):
            updates, s = f(updates, s, params)
            new_states.append(s)
        return updates, tuple(new_states)

    return GradientTransformation(init, update)


def apply_optimizer(opt: GradientTransformation, grads: Tree, state: Tree, params: Tree) -> tuple[Tree, Tree]:
    """One optimizer update of the parameters: ``opt.update`` then :func:`apply_updates`.

    Args:
        opt: the transformation.
        grads: ``dL/dparams``, shaped like ``params``.
        state: ``opt``'s state (from ``opt.init(params)`` or the previous call).
        params: the current parameters.
    Returns:
        ``(new_params, new_state)``; nothing passed in is written to.

    >>> import numpy as np
    >>> from fnnet.optim import apply_optimizer, momentum
    >>> opt = momentum(0.1, momentum=0.9)
    >>> params = np.array([1.0])
    >>> state = opt.init(params)
    >>> for _ in range(2):
    ...     params, state = apply_optimizer(opt, 2 * params, state, params)  # f(x) = x², f' = 2x
    >>> params  # v1 = -0.2, x1 = 0.8; v2 = 0.9 v1 - 0.1 · 1.6 = -0.34, x2 = 0.46
    array([0.46])
    """
    updates, new_state = opt.update(grads, state, params)
    return apply_updates(params, updates), new_state


def current_lr(opt_state: Tree) -> float:
    """The learning rate the next update will use, read from a (chained) optimizer state.

    A transform declares the learning rate it applies by a field named ``lr`` in its state
    NamedTuple, as :func:`fnnet.optim.scale_by_lr` and :func:`fnnet.optim.scale_by_schedule` do
    (and so every named optimizer).

    Args:
        opt_state: an optimizer state.
    Returns:
        The ``lr`` of the first such state found (depth first).
    Raises:
        ValueError: if no state holds a learning rate.

    >>> import numpy as np
    >>> from fnnet.optim import CosineDecay, adam, current_lr
    >>> current_lr(adam(CosineDecay(0.01, total_steps=100)).init(np.zeros(3)))
    0.01
    """
    found = _find_lr(opt_state)
    if found is None:
        raise ValueError("current_lr: the state holds no learning rate (no scale_by_lr / scale_by_schedule)")
    return found


def _find_lr(s: Any) -> float | None:
    if isinstance(s, tuple) and "lr" in getattr(type(s), "_fields", ()):
        return float(getattr(s, "lr"))
    if isinstance(s, (tuple, list)):
        for c in s:
            r = _find_lr(c)
            if r is not None:
                return r
    return None
