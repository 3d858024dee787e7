"""The training history: the loss of every step, the figures of every epoch, optional gradient norms."""

from __future__ import annotations

import itertools
import numbers
import reprlib
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["History"]


@attrs.frozen
class History:
    """Training history, an immutable value (:func:`fnnet.train.fit` returns a new one).

    Attributes:
        step_loss: the loss of every training step.
        epochs: one dict per epoch, e.g. ``{"loss": 0.31, "train_loss": 0.29, "train_acc": 0.93,
            "val_loss": 0.33, "val_acc": 0.92, "time": 1.2}``: ``loss`` is the mean training-step
            loss, and ``NAME_loss`` / ``NAME_<metric>`` the evaluation of set ``NAME`` (train, val,
            test) after the epoch; ``lr_scale`` when a plateau rule is used.
        grad_norms: one tuple per training step of the L2 norm of the gradient of each top-level
            params entry (``fit(..., grad_norms=True)``), else empty.

    >>> from fnnet.train import History
    >>> h = History((0.9, 0.7), ({"loss": 0.8, "val_loss": 0.75},), ((1.0, 0.5), (0.8, 0.4)))
    >>> h.metric("val_loss"), History.from_json(h.to_json()) == h
    ([0.75], True)
    """

    step_loss: tuple[float, ...] = ()
    epochs: tuple[dict[str, float], ...] = ()
    grad_norms: tuple[tuple[float, ...], ...] = ()

    def metric(self, name: str) -> list[float]:
        """One figure over the epochs that have it, e.g. ``history.metric("val_loss")``."""
        return [e[name] for e in self.epochs if name in e]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``{"step_loss": [...], "epochs": [...], "grad_norms": [[...], ...]}``)."""
        return {
            "step_loss": list(self.step_loss),
            "epochs": [dict(e) for e in self.epochs],
            "grad_norms": list(map(list, self.grad_norms)),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> History:
        """Inverse of :meth:`to_json` (a dict without ``grad_norms``, from an older run, gives none).

        Raises:
            ValueError: ``d`` is not such a dict (one line naming what is wrong).

        >>> from fnnet.train import History
        >>> History.from_json({"step_loss": [0.5], "epochs": "none"})
        Traceback (most recent call last):
        ...
        ValueError: History.from_json: 'epochs' must be a list of dicts of numbers, got 'none'
        """
        if not isinstance(d, dict):
            raise ValueError(f"History.from_json: expected the dict of History.to_json(), got {type(d).__name__}")
        for name in ("step_loss", "epochs"):
            if name not in d:
                raise ValueError(f"History.from_json: no {name!r} in the dict (it has {', '.join(map(repr, d))})")
        step_loss, epochs, grad_norms = d["step_loss"], d["epochs"], d.get("grad_norms", [])
        if not _all_numbers(step_loss):
            raise ValueError(f"History.from_json: 'step_loss' must be a list of numbers, got {reprlib.repr(step_loss)}")
        if not (isinstance(epochs, (list, tuple)) and all(
            isinstance(e, dict) and all(isinstance(k, str) and _number(v) for k, v in e.items()) for e in epochs
        )):
            raise ValueError(
                f"History.from_json: 'epochs' must be a list of dicts of numbers, got {reprlib.repr(epochs)}"
            )
        if not (
            isinstance(grad_norms, (list, tuple))
            and all(issubclass(t, (list, tuple)) for t in set(map(type, grad_norms)))
            and _numbers_only(itertools.chain.from_iterable(grad_norms))
        ):
            raise ValueError(
                f"History.from_json: 'grad_norms' must be a list of lists of numbers, got {reprlib.repr(grad_norms)}"
            )
        # checked and converted by the set of types present rather than value by value: a long
        # run's history holds millions of values
        plain = set(map(type, itertools.chain.from_iterable(grad_norms))) <= {float}
        return cls(
            tuple(map(float, step_loss)),
            tuple(dict(e) for e in epochs),
            tuple(map(tuple, grad_norms)) if plain else tuple(tuple(map(float, g)) for g in grad_norms),
        )


def _all_numbers(v: Any) -> bool:
    """Whether ``v`` is a list or tuple of real numbers, bools excluded."""
    return isinstance(v, (list, tuple)) and _numbers_only(v)


def _numbers_only(values: Iterable[Any]) -> bool:
    return all(_number_type(t) for t in set(map(type, values)))


def _number_type(t: type) -> bool:
    return issubclass(t, numbers.Real) and not issubclass(t, bool)


def _number(v: Any) -> bool:
    return _number_type(type(v))
