"""Search-space distributions and keyed sampling of a point from a space."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any, Union

import attrs
import numpy as np

from fnnet.random import Key, fold_in

__all__ = ["LogUniform", "Uniform", "IntUniform", "Choice", "Distribution", "Value", "sample"]

Value = Union[float, int, str]
"""A hyperparameter value: what a distribution draws (JSON scalars).

>>> import fnnet
>>> from fnnet.hparam import Choice, Value
>>> v: Value = Choice(["sgd", "adam"]).draw(fnnet.key(0))
>>> v in ("sgd", "adam")
True
"""


def _real(value: Any) -> Any:
    """Convert int/float/NumPy reals to float; leave anything else for the validator to reject."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return value


def _integer(value: Any) -> Any:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    return value


def _finite(inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, float) or not math.isfinite(value):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a finite number, got {_short(value)}")


def _int_field(inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be an int, got {_short(value)}")


def _check_order(inst: Any, strict: bool) -> None:
    if (inst.low >= inst.high) if strict else (inst.low > inst.high):
        rel = "<" if strict else "<="
        raise ValueError(f"{type(inst).__name__}: need low {rel} high, got low={_short(inst.low)}, high={_short(inst.high)}")


@attrs.frozen
class LogUniform:
    """``10^U(log10 low, log10 high)``: uniform in the exponent, for scales such as learning rates.

    The book's ``10 ** np.random.uniform(-6, -2)`` is ``LogUniform(1e-6, 1e-2)``. Draws lie in
    ``[low, high]``; needs ``0 < low < high``.

    >>> import fnnet
    >>> from fnnet.hparam import LogUniform
    >>> lr = LogUniform(1e-6, 1e-2).draw(fnnet.key(0))
    >>> 1e-6 <= lr <= 1e-2, lr == LogUniform(1e-6, 1e-2).draw(fnnet.key(0))
    (True, True)
    """

    low: float = attrs.field(converter=_real, validator=_finite)
    high: float = attrs.field(converter=_real, validator=_finite)

    def __attrs_post_init__(self) -> None:
        if self.low <= 0:
            raise ValueError(f"LogUniform: low must be > 0, got {_short(self.low)}")
        _check_order(self, strict=True)

    def draw(self, key: Key) -> float:
        """One draw (a float in ``[low, high]``) from ``key``."""
        top = math.log10(self.high)
        exponent = float(key.generator().uniform(math.log10(self.low), top))
        if exponent >= top:  # 10**top can exceed the largest float when high is near it
            return self.high
        # 10**x can round past an end point by one ulp; keep draws inside the stated range.
        return min(max(float(10.0**exponent), self.low), self.high)

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a possible draw."""
        return isinstance(value, float) and self.low <= value <= self.high


@attrs.frozen
class Uniform:
    """``U(low, high)``: a float in ``[low, high)``; needs ``low < high`` and a finite ``high - low``.

    >>> import fnnet
    >>> from fnnet.hparam import Uniform
    >>> d = Uniform(0.0, 0.5)
    >>> d.contains(d.draw(fnnet.key(3))), d.contains(0.7)
    (True, False)
    """

    low: float = attrs.field(converter=_real, validator=_finite)
    high: float = attrs.field(converter=_real, validator=_finite)

    def __attrs_post_init__(self) -> None:
        _check_order(self, strict=True)
        if not math.isfinite(self.high - self.low):
            raise ValueError(
                f"Uniform: high - low must be a finite number, got low={_short(self.low)}, high={_short(self.high)}"
            )

    def draw(self, key: Key) -> float:
        """One draw (a float in ``[low, high)``) from ``key``."""
        return float(key.generator().uniform(self.low, self.high))

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a possible draw."""
        return isinstance(value, float) and self.low <= value <= self.high


@attrs.frozen
class IntUniform:
    """A uniform integer in ``[low, high]`` (both ends included); needs ``low <= high``, both in
    the int64 range.

    >>> import fnnet
    >>> from fnnet.hparam import IntUniform
    >>> draws = {IntUniform(1, 3).draw(fnnet.key(i)) for i in range(50)}
    >>> sorted(draws)
    [1, 2, 3]
    """

    low: int = attrs.field(converter=_integer, validator=_int_field)
    high: int = attrs.field(converter=_integer, validator=_int_field)

    def __attrs_post_init__(self) -> None:
        _check_order(self, strict=False)
        for name, value in (("low", self.low), ("high", self.high)):
            if not -(2**63) <= value < 2**63:
                raise ValueError(f"IntUniform: {name} must be in the int64 range [-2**63, 2**63), got {_short(value)}")

    def draw(self, key: Key) -> int:
        """One draw (an int in ``[low, high]``) from ``key``."""
        return int(key.generator().integers(self.low, self.high, endpoint=True))

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a possible draw."""
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


def _option(v: Any) -> Any:
    """A NumPy integer, float or string option as the Python one (bools are left to the validator)."""
    if isinstance(v, (bool, np.bool_)):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, str):
        return str(v)
    return v


def _to_options(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_option(v) for v in value)
    return value


def _check_options(inst: object, attribute: attrs.Attribute[tuple[Value, ...]], value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise ValueError(f"Choice: options must be a non-empty list or tuple, got {_short(value)}")
    for v in value:
        ok = isinstance(v, (str, int)) or (isinstance(v, float) and math.isfinite(v))
        if not ok or isinstance(v, bool):
            raise ValueError(f"Choice: options must be str, int or finite float, got {_short(v)}")


@attrs.frozen
class Choice:
    """One of ``options`` (str, int or float; NumPy ones become Python ones), each equally likely.

    >>> import fnnet
    >>> from fnnet.hparam import Choice
    >>> c = Choice(["relu", "sigmoid"])
    >>> c.draw(fnnet.key(0)) in c.options, c.contains("tanh")
    (True, False)
    """

    options: tuple[Value, ...] = attrs.field(converter=_to_options, validator=_check_options)

    def draw(self, key: Key) -> Value:
        """One draw (an element of ``options``) from ``key``."""
        return self.options[int(key.generator().integers(len(self.options)))]

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a possible draw (same value and type as an option)."""
        return any(type(value) is type(o) and value == o for o in self.options)


Distribution = Union[LogUniform, Uniform, IntUniform, Choice]
"""A search-space dimension.

>>> import fnnet
>>> from fnnet.hparam import Distribution, IntUniform, LogUniform, sample
>>> space: dict[str, Distribution] = {"lr": LogUniform(1e-4, 1e-1), "hidden": IntUniform(50, 100)}
>>> drawn = sample(space, fnnet.key(0))
>>> sorted(drawn), all(space[name].contains(value) for name, value in drawn.items())
(['hidden', 'lr'], True)
"""
_DISTRIBUTIONS: dict[str, type[Distribution]] = {
    "LogUniform": LogUniform,
    "Uniform": Uniform,
    "IntUniform": IntUniform,
    "Choice": Choice,
}


def _check_space(space: Mapping[str, Distribution], where: str) -> None:
    if not isinstance(space, Mapping) or not space:
        raise ValueError(f"{where}: space must be a non-empty dict of name -> distribution, got {_short(space)}")
    for name, dist in space.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: space names must be non-empty strings, got {_short(name)}")
        if not isinstance(dist, tuple(_DISTRIBUTIONS.values())):
            raise ValueError(
                f"{where}: space[{_short(name)}] must be one of {sorted(_DISTRIBUTIONS)}, got {type(dist).__name__}"
            )


def _name_stream(name: str) -> int:
    # A stable hash of the name (not Python's salted hash()): each hyperparameter has its own
    # stream, so adding or reordering dimensions leaves the other draws unchanged.
    return zlib.crc32(name.encode("utf-8"))


def sample(space: Mapping[str, Distribution], key: Key) -> dict[str, Value]:
    """Draw one point of ``space`` (pure: the same key gives the same point).

    Args:
        space: ``{name: distribution}``, e.g. ``{"lr": LogUniform(1e-6, 1e-2)}``.
        key: the random key; ``space[name]`` draws from ``fold_in(key, crc32(name))``, so objectives
            that need randomness should ``split`` the key rather than ``fold_in`` small ints.
    Returns:
        ``{name: value}`` in the order of ``space``.

    >>> import fnnet
    >>> from fnnet.hparam import Choice, IntUniform, LogUniform, sample
    >>> space = {"lr": LogUniform(1e-6, 1e-2), "layers": IntUniform(2, 6), "opt": Choice(["sgd", "adam"])}
    >>> point = sample(space, fnnet.key(0))
    >>> point == sample(space, fnnet.key(0)), 1e-6 <= point["lr"] <= 1e-2, point["opt"] in ("sgd", "adam")
    (True, True, True)
    """
    _check_space(space, "sample")
    return {name: dist.draw(fold_in(key, _name_stream(name))) for name, dist in space.items()}


def _dist_to_json(dist: Distribution) -> dict[str, Any]:
    return {"type": type(dist).__name__, **{k: list(v) if isinstance(v, tuple) else v for k, v in
                                            attrs.asdict(dist).items()}}


def _short(value: Any) -> str:
    """A repr of ``value`` short enough for a one-line message, whatever a file put there."""
    if isinstance(value, (dict, list, tuple)) and (
        len(value) > 8 or not all(isinstance(v, (str, int, float, type(None))) for v in value)
    ):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:60]) + "..."
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dist_from_json(d: Any) -> Distribution:
    """The distribution a :func:`_dist_to_json` dict describes (``ValueError`` if it is none)."""
    kind = d.get("type") if isinstance(d, dict) else None
    if not isinstance(kind, str) or kind not in _DISTRIBUTIONS:
        raise ValueError(f"not a distribution: {_short(d) if kind is None else 'type ' + _short(kind)}")
    cls = _DISTRIBUTIONS[kind]
    fields = {k: v for k, v in d.items() if k != "type"}
    names = {a.name for a in attrs.fields(cls)}
    if set(fields) != names:
        raise ValueError(f"{kind} needs fields {sorted(names)}, got {sorted(fields)}")
    return cls(**fields)
