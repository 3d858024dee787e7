"""Learning-rate schedules: frozen records called as ``schedule(count) -> lr``.

``count`` is the number of optimizer updates already made (0 for the first update). Each schedule
is a frozen attrs record: validated when built, hashable, compared by value, and its ``repr`` is
the expression that builds it. Pass one wherever a learning rate is taken, e.g.
``adam(CosineDecay(1e-3, total_steps=10_000))``; :func:`fnnet.optim.current_lr` reads the rate
the next update will use.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs

from fnnet._validate import finite_nonneg, finite_positive, in_interval, is_int, is_real, nonneg_int, positive_int

__all__ = ["Schedule", "Constant", "StaircaseDecay", "ExponentialDecay", "CosineDecay", "WarmupCosine"]

Schedule = Callable[[int], float]
"""A learning-rate schedule: the number of updates already made -> the learning rate to use.

>>> from fnnet.optim import Schedule, StaircaseDecay, sgd
>>> schedule: Schedule = StaircaseDecay(0.1, 0.5, decay_steps=100)
>>> schedule(0), schedule(250)
(0.1, 0.025)
>>> opt = sgd(schedule)                               # any callable int -> float is a schedule
"""

_decay_rate = in_interval(0.0, 1.0, low_open=True, high_open=False)


def _float(value: float) -> float:
    """A Python or NumPy real number as a Python float (so that repr, == and hash go by value);
    anything else as it is, for the validator to refuse."""
    return float(value) if is_real(value) else value


def _int(value: int) -> int:
    """A Python or NumPy int as a Python int; anything else as it is, for the validator to refuse."""
    return int(value) if is_int(value) else value


def _half_cosine(lr: float, final: float, frac: float) -> float:
    """``final + (lr − final) · (1 + cos(π · frac)) / 2``: ``lr`` at frac 0, ``final`` at frac 1."""
    return float(final + (lr - final) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def _check_final(inst: CosineDecay | WarmupCosine) -> None:
    if inst.final > inst.lr:
        raise ValueError(f"{type(inst).__name__}: final must be <= lr ({inst.lr!r}), got {inst.final!r}")


@attrs.frozen
class Constant:
    """The same learning rate ``lr`` for every update.

    Args:
        lr: the learning rate, > 0.

    >>> from fnnet.optim import Constant
    >>> Constant(0.1)(1000)
    0.1
    """

    lr: float = attrs.field(converter=_float, validator=finite_positive)

    def __call__(self, count: int) -> float:
        """The learning rate for the update after ``count`` updates."""
        return float(self.lr)


@attrs.frozen
class StaircaseDecay:
    """``lr · decay_rate^⌊count / decay_steps⌋``: the rate drops by a factor every ``decay_steps`` updates.

    Args:
        lr: the initial learning rate, > 0.
        decay_rate: the factor applied at each drop, in (0, 1].
        decay_steps: the number of updates between drops, > 0.

    >>> from fnnet.optim import StaircaseDecay
    >>> sched = StaircaseDecay(0.1, decay_rate=0.5, decay_steps=10)
    >>> [sched(count) for count in (0, 9, 10, 25)]
    [0.1, 0.1, 0.05, 0.025]
    """

    lr: float = attrs.field(converter=_float, validator=finite_positive)
    decay_rate: float = attrs.field(converter=_float, validator=_decay_rate)
    decay_steps: int = attrs.field(converter=_int, validator=positive_int)

    def __call__(self, count: int) -> float:
        """The learning rate for the update after ``count`` updates."""
        return float(self.lr * self.decay_rate ** (count // self.decay_steps))


@attrs.frozen
class ExponentialDecay:
    """``lr · decay_rate^(count / decay_steps)``: smooth decay by ``decay_rate`` per ``decay_steps`` updates.

    Args:
        lr: the initial learning rate, > 0.
        decay_rate: the factor per ``decay_steps`` updates, in (0, 1].
        decay_steps: > 0.

    >>> from fnnet.optim import ExponentialDecay
    >>> sched = ExponentialDecay(0.1, decay_rate=0.5, decay_steps=10)
    >>> [round(sched(count), 4) for count in (0, 5, 10)]
    [0.1, 0.0707, 0.05]
    """

    lr: float = attrs.field(converter=_float, validator=finite_positive)
    decay_rate: float = attrs.field(converter=_float, validator=_decay_rate)
    decay_steps: int = attrs.field(converter=_int, validator=positive_int)

    def __call__(self, count: int) -> float:
        """The learning rate for the update after ``count`` updates."""
        return float(self.lr * self.decay_rate ** (count / self.decay_steps))


@attrs.frozen
class CosineDecay:
    """Half a cosine from ``lr`` at count 0 to ``final`` at ``total_steps``, then ``final``:
    ``final + (lr − final) · (1 + cos(π · min(count, T) / T)) / 2`` with ``T = total_steps``.

    Args:
        lr: the initial learning rate, > 0.
        total_steps: the number of updates the decay takes, > 0.
        final: the learning rate from ``total_steps`` on, in [0, lr].

    >>> from fnnet.optim import CosineDecay
    >>> sched = CosineDecay(0.1, total_steps=100)
    >>> [round(sched(count), 4) for count in (0, 50, 100, 200)]
    [0.1, 0.05, 0.0, 0.0]
    """

    lr: float = attrs.field(converter=_float, validator=finite_positive)
    total_steps: int = attrs.field(converter=_int, validator=positive_int)
    final: float = attrs.field(default=0.0, converter=_float, validator=finite_nonneg)

    def __attrs_post_init__(self) -> None:
        _check_final(self)

    def __call__(self, count: int) -> float:
        """The learning rate for the update after ``count`` updates."""
        return _half_cosine(self.lr, self.final, min(count, self.total_steps) / self.total_steps)


@attrs.frozen
class WarmupCosine:
    """Linear warm-up ``lr · (count + 1) / W`` for ``count < W = warmup_steps``, then half a cosine
    from ``lr`` at count ``W`` to ``final`` at ``total_steps`` (and after).

    Args:
        lr: the peak learning rate, > 0.
        warmup_steps: the number of warm-up updates W, in [0, total_steps).
        total_steps: the update count at which ``final`` is reached.
        final: the learning rate from ``total_steps`` on, in [0, lr].

    >>> from fnnet.optim import WarmupCosine
    >>> sched = WarmupCosine(0.1, warmup_steps=10, total_steps=110)
    >>> [round(sched(count), 4) for count in (0, 9, 60, 110)]
    [0.01, 0.1, 0.05, 0.0]
    """

    lr: float = attrs.field(converter=_float, validator=finite_positive)
    warmup_steps: int = attrs.field(converter=_int, validator=nonneg_int)
    total_steps: int = attrs.field(converter=_int, validator=positive_int)
    final: float = attrs.field(default=0.0, converter=_float, validator=finite_nonneg)

    def __attrs_post_init__(self) -> None:
        _check_final(self)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"WarmupCosine: warmup_steps must be < total_steps ({self.total_steps}), got {self.warmup_steps}"
            )

    def __call__(self, count: int) -> float:
        """The learning rate for the update after ``count`` updates."""
        w = self.warmup_steps
        if count < w:
            return float(self.lr * (count + 1) / w)
        return _half_cosine(self.lr, self.final, min(count - w, self.total_steps - w) / (self.total_steps - w))
