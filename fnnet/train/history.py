"""The training history: the loss of every step, the figures of every epoch, optional gradient norms."""

from __future__ import annotations

import numbers
import reprlib
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
            "grad_norms": [list(g) for g in self.grad_norms],
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

        def all_numbers(v: Any) -> bool:
            return isinstance(v, (list, tuple)) and all(_number(u) for u in v)

        if not all_numbers(step_loss):
            raise ValueError(f"History.from_json: 'step_loss' must be a list of numbers, got {reprlib.repr(step_loss)}")
        if not (isinstance(epochs, (list, tuple)) and all(
            isinstance(e, dict) and all(isinstance(k, str) and _number(v) for k, v in e.items()) for e in epochs
        )):
            raise ValueError(
                f"History.from_json: 'epochs' must be a list of dicts of numbers, got {reprlib.repr(epochs)}"
            )
        if not (isinstance(grad_norms, (list, tuple)) and all(all_numbers(g) for g in grad_norms)):
            raise ValueError(
                f"History.from_json: 'grad_norms' must be a list of lists of numbers, got {reprlib.repr(grad_norms)}"
            )
        return cls(
            tuple(float(v) for v in step_loss),
            tuple(dict(e) for e in epochs),
            tuple(tuple(float(v) for v in g) for g in grad_norms),
        )


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
