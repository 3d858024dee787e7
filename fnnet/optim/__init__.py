"""Optimizers (the book's section 6.1) as small composable gradient transformations.

A :class:`GradientTransformation` is a pair of pure functions::

    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = apply_updates(params, updates)          # p + u, leaf by leaf

or, in one call, ``params, state = apply_optimizer(opt, grads, state, params)``. Transforms
compose with :func:`chain`; every named optimizer is one ``chain(...)`` of the small transforms,
e.g. ``adam = chain(scale_by_adam(b1, b2), scale_by_lr(lr))``. States are NamedTuples of arrays
(update counters are 0-d int64 arrays), so they are trees that a ``.npz`` checkpoint holds;
:func:`current_lr` reads the learning rate back from any such state.

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

``η`` may be a float or a schedule (``count -> lr``, e.g. :class:`WarmupCosine`), where
``count`` is the number of updates already made (0 for the first one).

Modules: :mod:`fnnet.optim.base` (the core), :mod:`fnnet.optim.transforms`,
:mod:`fnnet.optim.schedules`, :mod:`fnnet.optim.aliases` (the named optimizers).

>>> import numpy as np
>>> from fnnet import optim
>>> opt = optim.chain(optim.clip_by_global_norm(10.0), optim.adam(optim.CosineDecay(0.1, total_steps=200)))
>>> params = {"x": np.array([3.0, -2.0])}
>>> state = opt.init(params)
>>> for _ in range(200):  # minimise |x|² / 2, whose gradient is x
...     params, state = optim.apply_optimizer(opt, params, state, params)
>>> bool(np.abs(params["x"]).max() < 0.01), optim.current_lr(state)
(True, 0.0)
"""

from fnnet.optim.aliases import adagrad, adam, adamw, momentum, nesterov, rmsprop, sgd
from fnnet.optim.base import (
    EmptyState,
    GradientTransformation,
    UpdateFn,
    apply_optimizer,
    apply_updates,
    chain,
    current_lr,
)
from fnnet.optim.schedules import Constant, CosineDecay, ExponentialDecay, Schedule, StaircaseDecay, WarmupCosine
from fnnet.optim.transforms import (
    ADAGRAD_EPS,
    ADAM_EPS,
    RMSPROP_EPS,
    Mask,
    ScaleByAdagradState,
    ScaleByAdamState,
    ScaleByLrState,
    ScaleByRmsState,
    ScaleByScheduleState,
    TraceState,
    add_decayed_weights,
    clip_by_global_norm,
    default_decay_mask,
    l2_penalty,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_lr,
    scale_by_rms,
    scale_by_schedule,
    trace,
)

__all__ = [
    # core
    "GradientTransformation",
    "UpdateFn",
    "EmptyState",
    "chain",
    "apply_updates",
    "apply_optimizer",
    "current_lr",
    # transforms and their states
    "scale_by_lr",
    "scale_by_schedule",
    "trace",
    "scale_by_adagrad",
    "scale_by_rms",
    "scale_by_adam",
    "add_decayed_weights",
    "clip_by_global_norm",
    "ScaleByLrState",
    "ScaleByScheduleState",
    "TraceState",
    "ScaleByAdagradState",
    "ScaleByRmsState",
    "ScaleByAdamState",
    # weight decay
    "Mask",
    "default_decay_mask",
    "l2_penalty",
    # named optimizers
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
    "StaircaseDecay",
    "ExponentialDecay",
    "CosineDecay",
    "WarmupCosine",
    # constants
    "ADAGRAD_EPS",
    "RMSPROP_EPS",
    "ADAM_EPS",
]
