"""Weight initialisers (the book's section 6.2): each is a frozen record called as
``init(key, shape, fan_in, fan_out) -> array`` (float32).

fan_in / fan_out are the number of inputs / outputs of one unit: for an Affine weight ``(in, out)``
they are ``in`` and ``out``; for a convolution weight ``(FN, C, FH, FW)`` they are ``C*FH*FW`` and
``FN*FH*FW``.

>>> import fnnet
>>> w = fnnet.initializers.HeNormal()(fnnet.key(0), (784, 100), 784, 100)
>>> w.shape, w.dtype.name, round(float(w.std()), 2)
((784, 100), 'float32', 0.05)
"""

from __future__ import annotations

import math
from typing import Protocol

import attrs
import numpy as np

from fnnet.typing import DEFAULT_DTYPE, Array
from fnnet.random import Key

__all__ = [
    "Initializer",
    "Normal",
    "Uniform",
    "Zeros",
    "XavierNormal",
    "XavierUniform",
    "HeNormal",
    "HeUniform",
    "LeCunNormal",
    "normal",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "zeros",
    "default_for_activation",
]


class Initializer(Protocol):
    """Anything called as ``init(key, shape, fan_in, fan_out)`` returning a float32 array.

    Args:
        key: the random key to draw from (the same key gives the same array).
        shape: the shape of the array, e.g. ``(in, out)`` or ``(FN, C, FH, FW)``.
        fan_in: inputs of one unit; fan_out: outputs of one unit.

    Returns:
        A float32 array of ``shape``.

    >>> import fnnet, numpy as np
    >>> from fnnet.initializers import Initializer
    >>> def ones(key: fnnet.Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    ...     return np.ones(shape, np.float32)
    >>> init: Initializer = ones
    >>> fnnet.Affine(2, w_init=init).init(fnnet.key(0), (3,))[0].w.tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array: ...


def _positive(inst: object, attribute: "attrs.Attribute[float]", value: float) -> None:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a positive finite number, got {value!r}")


def _root(init: object, c: float, fan: int) -> float:
    """``sqrt(c / fan)``; 0 for ``fan == 0``, where the weight has no entries to scale."""
    if fan < 0:
        raise ValueError(f"{type(init).__name__}: fans must be >= 0, got {fan!r}")
    return math.sqrt(c / fan) if fan else 0.0


def _normal(key: Key, shape: tuple[int, ...], std: float) -> Array:
    return (key.generator().standard_normal(shape, dtype=np.float64) * std).astype(DEFAULT_DTYPE)


def _uniform(key: Key, shape: tuple[int, ...], limit: float) -> Array:
    return key.generator().uniform(-limit, limit, shape).astype(DEFAULT_DTYPE)


@attrs.frozen
class Normal:
    """N(0, std²): the book's ``weight_init_std`` (0.01 in its TwoLayerNet).

    >>> import fnnet
    >>> w = fnnet.initializers.Normal(0.01)(fnnet.key(0), (784, 50), 784, 50)    # weight (in, out)
    >>> w.shape, w.dtype.name, round(float(w.std()), 3)
    ((784, 50), 'float32', 0.01)
    """

    std: float = attrs.field(default=0.01, validator=_positive)

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        return _normal(key, shape, self.std)


@attrs.frozen
class Uniform:
    """U(-limit, limit).

    >>> import fnnet
    >>> w = fnnet.initializers.Uniform(0.5)(fnnet.key(0), (100, 10), 100, 10)
    >>> w.shape, bool(abs(w).max() <= 0.5)
    ((100, 10), True)
    """

    limit: float = attrs.field(default=0.05, validator=_positive)

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        return _uniform(key, shape, self.limit)


@attrs.frozen
class Zeros:
    """All zeros (biases; never for weights, which would then stay symmetric).

    >>> import fnnet
    >>> fnnet.initializers.Zeros()(fnnet.key(0), (3,), 5, 3).tolist()
    [0.0, 0.0, 0.0]
    """

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        return np.zeros(shape, dtype=DEFAULT_DTYPE)


@attrs.frozen
class XavierNormal:
    """Glorot normal: std = gain * sqrt(2 / (fan_in + fan_out)); suits sigmoid and tanh.

    >>> import fnnet
    >>> w = fnnet.initializers.XavierNormal()(fnnet.key(0), (300, 100), 300, 100)   # std sqrt(2/400)
    >>> w.shape, round(float(w.std()), 3)
    ((300, 100), 0.071)
    """

    gain: float = attrs.field(default=1.0, validator=_positive)

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        return _normal(key, shape, self.gain * _root(self, 2.0, fan_in + fan_out))


@attrs.frozen
class XavierUniform:
    """Glorot uniform: limit = gain * sqrt(6 / (fan_in + fan_out)).

    >>> import fnnet
    >>> w = fnnet.initializers.XavierUniform()(fnnet.key(0), (300, 100), 300, 100)  # limit sqrt(6/400)
    >>> w.shape, bool(abs(w).max() <= (6 / 400) ** 0.5)
    ((300, 100), True)
    """

    gain: float = attrs.field(default=1.0, validator=_positive)

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        return _uniform(key, shape, self.gain * _root(self, 6.0, fan_in + fan_out))


@attrs.frozen
class LeCunNormal:
    """std = sqrt(1 / fan_in): what the book calls "Xavier" (``weight_init_std='sigmoid'``).

    >>> import fnnet
    >>> w = fnnet.initializers.LeCunNormal()(fnnet.key(0), (400, 100), 400, 100)   # std sqrt(1/400)
    >>> w.shape, round(float(w.std()), 2)
    ((400, 100), 0.05)
    """

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        return _normal(key, shape, _root(self, 1.0, fan_in))


@attrs.frozen
class HeNormal:
    """He normal: std = sqrt(2 / fan_in); suits ReLU (the book's ``weight_init_std='relu'``).

    >>> import fnnet
    >>> w = fnnet.initializers.HeNormal()(fnnet.key(0), (16, 3, 3, 3), 27, 144)   # conv (FN, C, FH, FW)
    >>> w.shape, round(float(w.std()), 1)
    ((16, 3, 3, 3), 0.3)
    """

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        return _normal(key, shape, _root(self, 2.0, fan_in))


@attrs.frozen
class HeUniform:
    """He uniform: limit = sqrt(6 / fan_in).

    >>> import fnnet
    >>> w = fnnet.initializers.HeUniform()(fnnet.key(0), (600, 100), 600, 100)    # limit sqrt(6/600)
    >>> w.shape, bool(abs(w).max() <= 0.1)
    ((600, 100), True)
    """

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        return _uniform(key, shape, _root(self, 6.0, fan_in))


def normal(std: float = 0.01) -> Normal:
    """N(0, std²) initialiser.

    >>> import fnnet
    >>> from fnnet.initializers import normal
    >>> normal(0.1)(fnnet.key(0), (2, 3), 2, 3).shape
    (2, 3)
    """
    return Normal(std)


def xavier_normal(gain: float = 1.0) -> XavierNormal:
    """Glorot normal initialiser.

    >>> from fnnet.initializers import xavier_normal
    >>> xavier_normal(gain=2.0)
    XavierNormal(gain=2.0)
    """
    return XavierNormal(gain)


def xavier_uniform(gain: float = 1.0) -> XavierUniform:
    """Glorot uniform initialiser.

    >>> from fnnet.initializers import xavier_uniform
    >>> xavier_uniform()
    XavierUniform(gain=1.0)
    """
    return XavierUniform(gain)


def he_normal() -> HeNormal:
    """He normal initialiser.

    >>> import fnnet
    >>> from fnnet.initializers import he_normal
    >>> fnnet.Affine(10, w_init=he_normal()).init(fnnet.key(0), (50,))[0].w.shape
    (50, 10)
    """
    return HeNormal()


def he_uniform() -> HeUniform:
    """He uniform initialiser.

    >>> from fnnet.initializers import he_uniform
    >>> he_uniform()
    HeUniform()
    """
    return HeUniform()


def lecun_normal() -> LeCunNormal:
    """sqrt(1/fan_in) normal initialiser (the book's "Xavier").

    >>> from fnnet.initializers import lecun_normal
    >>> lecun_normal()
    LeCunNormal()
    """
    return LeCunNormal()


def zeros() -> Zeros:
    """All-zeros initialiser.

    >>> import fnnet
    >>> from fnnet.initializers import zeros
    >>> zeros()(fnnet.key(0), (2,), 1, 2).tolist()
    [0.0, 0.0]
    """
    return Zeros()


def default_for_activation(activation: str) -> Initializer:
    """He normal for ``"relu"``, Xavier (Glorot normal) for ``"sigmoid"``, ``"tanh"``, ``"identity"``.

    Names are case-insensitive; any other name raises ``ValueError`` (a typo must not silently
    pick an initialiser).

    >>> from fnnet.initializers import default_for_activation
    >>> default_for_activation("relu"), default_for_activation("tanh")
    (HeNormal(), XavierNormal(gain=1.0))
    """
    name = activation.lower()
    if name == "relu":
        return HeNormal()
    if name in ("sigmoid", "tanh", "identity"):
        return XavierNormal()
    raise ValueError(
        f"default_for_activation: unknown activation {activation!r}; expected relu, sigmoid, tanh or identity"
    )
