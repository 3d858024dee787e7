"""Early stopping and reduce-on-plateau, as pure functions of a :class:`fnnet.train.history.History`.

Neither rule is a callback and neither keeps state: :meth:`EarlyStopping.decide` and
:meth:`ReduceOnPlateau.scale` read the history's per-epoch figures and return a value, so the same
history always gives the same decision, and a resumed run decides as an uninterrupted one.

>>> from fnnet.train import EarlyStopping, History, ReduceOnPlateau
>>> h = History(epochs=tuple({"val_loss": v} for v in (0.9, 0.7, 0.75, 0.72, 0.8)))
>>> EarlyStopping(patience=3).decide(h)
StopDecision(stop=True, best_epoch=2)
>>> ReduceOnPlateau(patience=2).scale(h)
0.5
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import attrs

from fnnet._validate import is_int, is_real
from fnnet.train.history import History

__all__ = ["EarlyStopping", "ReduceOnPlateau", "StopDecision"]

_MODES = ("auto", "min", "max")


class StopDecision(NamedTuple):
    """What :meth:`EarlyStopping.decide` returns.

    Attributes:
        stop: True when ``patience`` epochs have passed without an improvement.
        best_epoch: the 1-based epoch with the best monitored value (0 for an empty history).

    >>> from fnnet.train import EarlyStopping, History
    >>> epochs = tuple({"val_loss": v} for v in (0.9, 0.7, 0.8, 0.85))
    >>> EarlyStopping(monitor="val_loss", patience=2).decide(History((), epochs))
    StopDecision(stop=True, best_epoch=2)
    """

    stop: bool
    best_epoch: int


def _check_monitor(cls: str, monitor: Any) -> None:
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{cls}: monitor must be the name of a per-epoch figure such as 'val_loss', got {monitor!r}")


def _check_mode(cls: str, mode: Any) -> None:
    if mode not in _MODES:
        raise ValueError(f"{cls}: mode must be 'auto', 'min' or 'max', got {mode!r}")


def _check_positive_int(cls: str, name: str, v: Any) -> None:
    if not is_int(v) or v < 1:
        raise ValueError(f"{cls}: {name} must be a positive int, got {v!r}")


def _check_nonneg(cls: str, name: str, v: Any) -> None:
    if not is_real(v) or not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{cls}: {name} must be a finite number >= 0, got {v!r}")


def _maximise(monitor: str, mode: str) -> bool:
    """``mode`` "auto" maximises names ending in acc or r2 (accuracy, R²) and minimises the rest."""
    if mode == "auto":
        return monitor.endswith(("acc", "r2"))
    return mode == "max"


def _values(cls: str, monitor: str, history: History) -> list[tuple[int, float]]:
    """``(1-based epoch, value)`` of every epoch that records ``monitor``; ValueError if none does."""
    found = [(i + 1, float(e[monitor])) for i, e in enumerate(history.epochs) if monitor in e]
    if history.epochs and not found:
        have = sorted({k for e in history.epochs for k in e})
        raise ValueError(f"{cls}: monitor {monitor!r} is not in the history's epochs (they have {', '.join(have)})")
    return found


def _improves(v: float, best: float | None, min_delta: float, maximise: bool) -> bool:
    if math.isnan(v):
        return False
    if best is None:
        return True
    return v > best + min_delta if maximise else v < best - min_delta


@attrs.frozen
class EarlyStopping:
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves when its value beats the best so far by more than ``min_delta`` (NaN never
    does). ``mode`` "auto" maximises names ending in ``acc`` or ``r2`` and minimises the others
    (losses, MAE, RMSE). With ``restore_best`` :func:`fnnet.train.fit` returns the training state
    of the best epoch; a run resumed after that epoch gets it back as ``fit(..., best_state=...)``
    (save it when :meth:`is_best` says so).

    >>> from fnnet.train import EarlyStopping, History
    >>> rule = EarlyStopping(monitor="val_acc", patience=2)
    >>> rule.decide(History(epochs=({"val_acc": 0.8}, {"val_acc": 0.9}, {"val_acc": 0.85})))
    StopDecision(stop=False, best_epoch=2)
    """

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best: bool = True

    def __attrs_post_init__(self) -> None:
        _check_monitor("EarlyStopping", self.monitor)
        _check_positive_int("EarlyStopping", "patience", self.patience)
        _check_nonneg("EarlyStopping", "min_delta", self.min_delta)
        _check_mode("EarlyStopping", self.mode)
        if not isinstance(self.restore_best, bool):
            raise ValueError(f"EarlyStopping: restore_best must be a bool, got {self.restore_best!r}")

    def decide(self, history: History) -> StopDecision:
        """Whether to stop after the history's last epoch, and its best epoch so far.

        Args:
            history: the history up to now (its epochs are numbered from 1).
        Returns:
            A :class:`StopDecision`; stop is True when the last epoch is ``patience`` or more
            epochs after the best one.
        """
        maximise = _maximise(self.monitor, self.mode)
        found = _values("EarlyStopping", self.monitor, history)
        if not found:
            return StopDecision(False, 0)
        best: float | None = None
        best_epoch = found[0][0]
        for epoch, v in found:
            if _improves(v, best, self.min_delta, maximise):
                best, best_epoch = v, epoch
        return StopDecision(len(history.epochs) - best_epoch >= self.patience, best_epoch)

    def is_best(self, history: History) -> bool:
        """Whether the history's last epoch is its best so far (its figure a number, not NaN).

        Then the state after that epoch is the one ``restore_best`` returns unless a later epoch
        beats it: in :func:`fnnet.train.fit`'s ``on_epoch(state, history)`` save ``state`` as the
        best next to the checkpoint, and pass it back as ``fit(..., best_state=...)`` when resuming.

        Args:
            history: the history up to now.
        Returns:
            True when :meth:`decide`'s best epoch is the last one and its figure is not NaN.

        >>> from fnnet.train import EarlyStopping, History
        >>> rule = EarlyStopping(patience=2)
        >>> [rule.is_best(History(epochs=tuple({"val_loss": v} for v in (0.9, 0.7, 0.8)[:k]))) for k in (1, 2, 3)]
        [True, True, False]
        >>> rule.is_best(History(epochs=({"val_loss": float("nan")},)))   # NaN is never best
        False
        """
        k = self.decide(history).best_epoch
        return k >= 1 and k == len(history.epochs) and not math.isnan(float(history.epochs[k - 1][self.monitor]))


@attrs.frozen
class ReduceOnPlateau:
    """Multiply the learning rate by ``factor`` whenever ``monitor`` has not improved for
    ``patience`` epochs, never going below ``min_scale`` times the optimizer's own rate.

    Improvement is judged as in :class:`EarlyStopping`; after each reduction the count of epochs
    without improvement starts again. :func:`fnnet.train.fit` multiplies the optimizer's updates
    by :meth:`scale` in each epoch and records it as ``lr_scale``: for SGD, AdaGrad, RMSprop and
    Adam exactly a scaled learning rate; for the book's Momentum and Nesterov, whose velocity
    carries the rate, a scaled step (see :func:`fnnet.train.step.make_train_step`).

    >>> from fnnet.train import History, ReduceOnPlateau
    >>> rule = ReduceOnPlateau(factor=0.1, patience=1, min_scale=0.05)
    >>> rule.scale(History(epochs=({"val_loss": 1.0}, {"val_loss": 1.1}, {"val_loss": 1.2})))
    0.05
    """

    monitor: str = "val_loss"
    factor: float = 0.5
    patience: int = 3
    min_delta: float = 0.0
    min_scale: float = 1e-3
    mode: str = "auto"

    def __attrs_post_init__(self) -> None:
        _check_monitor("ReduceOnPlateau", self.monitor)
        if not is_real(self.factor) or not 0 < self.factor < 1:
            raise ValueError(f"ReduceOnPlateau: factor must lie in (0, 1), got {self.factor!r}")
        _check_positive_int("ReduceOnPlateau", "patience", self.patience)
        _check_nonneg("ReduceOnPlateau", "min_delta", self.min_delta)
        if not is_real(self.min_scale) or not 0 < self.min_scale <= 1:
            raise ValueError(f"ReduceOnPlateau: min_scale must lie in (0, 1], got {self.min_scale!r}")
        _check_mode("ReduceOnPlateau", self.mode)

    def scale(self, history: History) -> float:
        """The factor for the learning rate of the epoch after the history's last one.

        Args:
            history: the history up to now.
        Returns:
            ``factor ** k`` for the ``k`` plateaus so far, at least ``min_scale``; 1.0 for an
            empty history.
        """
        maximise = _maximise(self.monitor, self.mode)
        scale, best, wait = 1.0, None, 0
        for _, v in _values("ReduceOnPlateau", self.monitor, history):
            if _improves(v, best, self.min_delta, maximise):
                best, wait = v, 0
            elif best is not None:
                wait += 1
                if wait >= self.patience:
                    scale, wait = scale * self.factor, 0
        return max(scale, float(self.min_scale))
