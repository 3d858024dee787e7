"""Validators shared by every module: attrs field validators and plain argument checks.

Each raises ``ValueError`` naming the record or function and the argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

__all__ = [
    "is_int",
    "is_real",
    "positive_int",
    "nonneg_int",
    "finite_positive",
    "finite_nonneg",
    "finite_real",
    "boolean",
    "in_interval",
    "check_positive_int",
    "check_finite_positive",
    "check_finite_nonneg",
    "check_in_interval",
]


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers, not for bools."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def as_int(value: int | np.integer[Any]) -> int:
    """A NumPy integer as a Python ``int``, so that shapes computed from it hold plain ints (ONNX
    refuses ``np.int64`` dimensions); anything else is left for the validator.

    >>> import numpy as np
    >>> from fnnet._validate import as_int
    >>> type(as_int(np.int64(3))).__name__, as_int(True), as_int(2.0)
    ('int', True, 2.0)
    """
    if isinstance(value, np.integer):
        return int(value)
    return value


def shape_text(shape: tuple[int | None, ...]) -> str:
    """A shape as error messages write it, with ``None`` (the batch axis) as ``N``.

    >>> from fnnet._validate import shape_text
    >>> shape_text((None, 5)), shape_text((3,)), shape_text(())
    ('(N, 5)', '(3,)', '()')
    """
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def is_real(value: Any) -> bool:
    """True for finite-or-not real numbers (Python or NumPy), not for bools."""
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def positive_int(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a positive int (not bool)."""
    if not is_int(value) or value <= 0:
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a positive int, got {value!r}")


def nonneg_int(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a non-negative int (not bool)."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a non-negative int, got {value!r}")


def finite_positive(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a finite real number > 0 (not bool)."""
    check_finite_positive(type(inst).__name__, attribute.name, value)


def finite_nonneg(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a finite real number >= 0 (not bool)."""
    check_finite_nonneg(type(inst).__name__, attribute.name, value)


def finite_real(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a finite real number (not bool)."""
    if not is_real(value) or not math.isfinite(value):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a finite number, got {value!r}")


def boolean(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a bool (Python or NumPy), not a number or string."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be True or False, got {value!r}")


def in_interval(
    low: float, high: float, *, low_open: bool = False, high_open: bool = True
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """attrs validator factory: a real number in the interval from ``low`` to ``high``.

    Args:
        low, high: the ends; low_open, high_open: whether each end is excluded (default ``[low, high)``).
    Returns:
        The validator; it raises ``ValueError`` naming the record and the field.
    """

    def validate(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_in_interval(type(inst).__name__, attribute.name, value, low, high, low_open=low_open, high_open=high_open)

    return validate


def check_positive_int(where: str, name: str, value: Any) -> int:
    """``value`` as an int if it is a positive int, else ``ValueError`` naming ``where`` and ``name``."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")
    return int(value)


def check_finite_nonneg(where: str, name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number >= 0, else ``ValueError``."""
    if not is_real(value) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{where}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_finite_positive(where: str, name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0, else ``ValueError``."""
    if not is_real(value) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_in_interval(
    where: str, name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = True
) -> float:
    """``value`` as a float if it is a real number in the interval, else ``ValueError``.

    Args:
        where, name: the function or record, and the argument, for the message.
        value: the number to check.
        low, high: the ends; low_open, high_open: whether each end is excluded (default ``[low, high)``).
    Returns:
        ``float(value)``.
    """
    above = is_real(value) and (value > low if low_open else value >= low)
    if not (above and (value < high if high_open else value <= high)):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{where}: {name} must be in {interval}, got {value!r}")
    return float(value)
