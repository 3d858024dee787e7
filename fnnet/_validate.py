"""Validators shared by every module: attrs field validators and plain argument checks.

Each raises ``ValueError`` naming the record or function and the argument.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

__all__ = ["is_int", "is_real", "positive_int", "nonneg_int", "check_positive_int"]


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers, not for bools."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


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
