"""The book's optimizers (section 6.1), each one ``chain(...)`` of transforms, with its defaults."""

from __future__ import annotations

from fnnet.optim.base import GradientTransformation, chain
from fnnet.optim.schedules import Schedule
from fnnet.optim.transforms import (
    ADAGRAD_EPS,
    ADAM_EPS,
    RMSPROP_EPS,
    Mask,
    _check_lr,
    _check_rate,
    add_decayed_weights,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_lr,
    scale_by_rms,
    trace,
)

__all__ = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]


def sgd(lr: float | Schedule = 0.01) -> GradientTransformation:
    """SGD: ``W ← W − η g`` (book default η = 0.01).

    Args:
        lr: η, a positive float or a schedule.
    Returns:
        ``chain(scale_by_lr(lr))``.

    >>> import numpy as np
    >>> from fnnet.optim import apply_optimizer, sgd
    >>> opt = sgd(0.1)
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> params, state = apply_optimizer(opt, {"w": np.array([1.0, -1.0])}, opt.init(params), params)
    >>> params["w"]
    array([0.9, 2.1])
    """
    return chain(scale_by_lr(_check_lr("sgd", lr)))


def momentum(lr: float | Schedule = 0.01, momentum: float = 0.9) -> GradientTransformation:
    """Momentum SGD: ``v ← μ v − η g; W ← W + v`` (book defaults η = 0.01, μ = 0.9; v starts at 0).

    Args:
        lr: η, a positive float or a schedule.
        momentum: μ in [0, 1).
    Returns:
        ``chain(scale_by_lr(lr), trace(momentum))``.

    >>> import numpy as np
    >>> from fnnet.optim import apply_optimizer, momentum
    >>> opt = momentum(0.1, momentum=0.5)
    >>> params, grads = np.zeros(1), np.ones(1)
    >>> state = opt.init(params)
    >>> for _ in range(3):
    ...     params, state = apply_optimizer(opt, grads, state, params)
    >>> params  # v = -0.1, -0.15, -0.175
    array([-0.425])
    """
    return chain(scale_by_lr(_check_lr("momentum", lr)), trace(_check_rate("momentum", "momentum", momentum)))


def nesterov(lr: float | Schedule = 0.01, momentum: float = 0.9) -> GradientTransformation:
    """Nesterov momentum in the book's form: ``W ← W + μ² v − (1 + μ) η g; v ← μ v − η g``.

    ``v`` in the first step is the velocity *before* this update, as in Bengio et al. (2013,
    arXiv:1212.0901), the reformulation the book's sample code cites. (That code adds ``μ²`` times
    the already-updated velocity, i.e. ``W ← W + μ³ v − (1 + μ + μ²) η g``, which is not
    Nesterov's method and can diverge where this form converges.)

    Args:
        lr: η, a positive float or a schedule.
        momentum: μ in [0, 1) (book defaults 0.01, 0.9).
    Returns:
        ``chain(scale_by_lr(lr), trace(momentum, nesterov=True))``.

    >>> import numpy as np
    >>> from fnnet.optim import apply_optimizer, nesterov
    >>> opt = nesterov(0.1, momentum=0.5)
    >>> params = np.zeros(1)
    >>> params, state = apply_optimizer(opt, np.ones(1), opt.init(params), params)
    >>> params  # -(1 + μ) η g
    array([-0.15])
    """
    mu = _check_rate("nesterov", "momentum", momentum)
    return chain(scale_by_lr(_check_lr("nesterov", lr)), trace(mu, nesterov=True))


def adagrad(lr: float | Schedule = 0.01, *, eps: float = ADAGRAD_EPS) -> GradientTransformation:
    """AdaGrad: ``h ← h + g²; W ← W − η g / (√h + ε)`` (book defaults η = 0.01, ε = 1e-7).

    Args:
        lr: η, a positive float or a schedule.
        eps: ε > 0.
    Returns:
        ``chain(scale_by_adagrad(eps), scale_by_lr(lr))``.

    >>> import numpy as np
    >>> from fnnet.optim import adagrad, apply_optimizer
    >>> opt = adagrad(0.1)
    >>> params = np.zeros(2)
    >>> params, state = apply_optimizer(opt, np.array([5.0, -0.5]), opt.init(params), params)
    >>> np.round(params, 6)  # the first step is η per coordinate, whatever |g|
    array([-0.1,  0.1])
    """
    return chain(scale_by_adagrad(eps), scale_by_lr(_check_lr("adagrad", lr)))


def rmsprop(lr: float | Schedule = 0.01, decay: float = 0.99, *, eps: float = RMSPROP_EPS) -> GradientTransformation:
    """RMSprop: ``h ← ρ h + (1 − ρ) g²; W ← W − η g / (√h + ε)`` (book defaults 0.01, 0.99, 1e-7).

    Args:
        lr: η, a positive float or a schedule.
        decay: ρ in [0, 1).
        eps: ε > 0.
    Returns:
        ``chain(scale_by_rms(decay, eps), scale_by_lr(lr))``.

    >>> import numpy as np
    >>> from fnnet.optim import apply_optimizer, rmsprop
    >>> opt = rmsprop(0.1, decay=0.75)
    >>> params = np.zeros(1)
    >>> params, state = apply_optimizer(opt, np.array([3.0]), opt.init(params), params)
    >>> np.round(params, 6)  # η g / √((1 − ρ) g²) = 0.1 / 0.5
    array([-0.2])
    """
    return chain(scale_by_rms(decay, eps), scale_by_lr(_check_lr("rmsprop", lr)))


def adam(
    lr: float | Schedule = 0.001, b1: float = 0.9, b2: float = 0.999, *, eps: float = ADAM_EPS
) -> GradientTransformation:
    """Adam in the book's bias-corrected form (see :func:`scale_by_adam`); book defaults
    η = 0.001, β₁ = 0.9, β₂ = 0.999, ε = 1e-7.

    Args:
        lr: η, a positive float or a schedule.
        b1, b2: β₁, β₂ in [0, 1).
        eps: ε > 0.
    Returns:
        ``chain(scale_by_adam(b1, b2, eps), scale_by_lr(lr))``.

    >>> import numpy as np
    >>> from fnnet.optim import adam, apply_optimizer
    >>> opt = adam(0.01)
    >>> params = np.ones(2)
    >>> params, state = apply_optimizer(opt, np.array([0.5, -1e3]), opt.init(params), params)
    >>> np.round(params, 4)  # the first step is about η per coordinate, against the gradient
    array([0.99, 1.01])
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
        lr: η, a positive float or a schedule.
        weight_decay: λ >= 0.
        mask: which leaves decay (default :func:`default_decay_mask`: weights, not biases).
        b1, b2, eps: as in :func:`adam`.
    Returns:
        ``chain(scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay, mask), scale_by_lr(lr))``.

    >>> import numpy as np
    >>> from fnnet.optim import adamw, apply_optimizer
    >>> opt = adamw(0.1, weight_decay=0.5)
    >>> params = {"w": np.ones((1, 1)), "b": np.ones(1)}
    >>> zero = {"w": np.zeros((1, 1)), "b": np.zeros(1)}
    >>> params, state = apply_optimizer(opt, zero, opt.init(params), params)
    >>> params  # without a gradient only the weight shrinks, by η λ W
    {'b': array([1.]), 'w': array([[0.95]])}
    """
    return chain(
        scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay, mask), scale_by_lr(_check_lr("adamw", lr))
    )
