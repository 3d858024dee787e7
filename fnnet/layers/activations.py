"""Activations beyond the book's: LeakyReLU, ELU, GELU, SiLU and Softplus, each backward rule beside
its forward. All are parameter-free and elementwise: any input shape, output of the same shape and
dtype, ``dx = dout * f'(x)``. At ``±inf`` each gives the limits of ``f`` and ``f'`` (never NaN),
and NaN input stays NaN in ``y``.

>>> import numpy as np, fnnet
>>> x = np.array([[-2.0, 0.5]])
>>> fnnet.LeakyReLU(0.1).apply(None, x).tolist()
[[-0.2, 0.5]]
>>> fnnet.GELU().apply(None, x).round(4).tolist()
[[-0.0455, 0.3457]]
"""

from __future__ import annotations

from typing import NamedTuple

import attrs
import numpy as np

from fnnet import functions as F
from fnnet._validate import boolean, finite_nonneg, finite_real
from fnnet.layers.base import EVAL, Ctx
from fnnet.layers.core import _Elementwise
from fnnet.typing import Array

__all__ = ["LeakyReLU", "ELU", "GELU", "SiLU", "Softplus"]


class _XAndGate(NamedTuple):
    x: Array  # the input (first: _Elementwise.backward checks dout against it)
    gate: Array  # GELU's Phi(x) or SiLU's sigmoid(x)


@attrs.frozen
class LeakyReLU(_Elementwise):
    """``y = x if x > 0 else negative_slope * x``; ``dx = dout`` where ``x > 0``, else
    ``negative_slope * dout``. Any shape ``(N, ...)``, output of the same shape and dtype.

    Args:
        negative_slope: the slope for ``x <= 0``, a finite number (default 0.01).

    >>> import numpy as np
    >>> from fnnet.layers import LeakyReLU
    >>> LeakyReLU(0.2).apply(None, np.array([[-1.0, 3.0]])).tolist()
    [[-0.2, 3.0]]
    """

    negative_slope: float = attrs.field(default=0.01, validator=finite_real)

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, Array]:
        """``y = leaky_relu(x, negative_slope)``; the cache is ``x``."""
        self._check(self, x)
        return F.leaky_relu(x, self.negative_slope), state, x

    def _dx(self, cache: Array, dout: Array) -> Array:
        """``dx = where(x > 0, dout, negative_slope * dout)``."""
        slope = float(self.negative_slope)
        if dout.dtype.kind != "f" or not (0 < slope <= 1 and dout.dtype.type(slope) > 0):
            return np.where(cache > 0, dout, slope * dout)
        # the factor max(x > 0, slope) is 1 or slope (NaN x: slope), and dout * 1 is dout exactly
        k = np.greater(cache, 0).astype(dout.dtype)
        np.fmax(k, slope, out=k)
        k *= dout
        return k


@attrs.frozen
class ELU(_Elementwise):
    """``y = x if x > 0 else alpha * (exp(x) - 1)``; ``dx = dout`` where ``x > 0``, else
    ``dout * (y + alpha)`` (that is ``alpha * exp(x)``). Any shape, same shape and dtype out.

    Args:
        alpha: the negative saturation value is ``-alpha``; a finite number ``>= 0`` (default 1).

    >>> import numpy as np
    >>> from fnnet.layers import ELU
    >>> ELU().apply(None, np.array([[-1.0, 2.0]])).round(4).tolist()
    [[-0.6321, 2.0]]
    """

    alpha: float = attrs.field(default=1.0, validator=finite_nonneg)

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, Array]:
        """``y = elu(x, alpha)``; the cache is ``y`` (``y > 0`` exactly where ``x > 0``)."""
        self._check(self, x)
        y = F.elu(x, self.alpha)
        return y, state, y

    def _dx(self, cache: Array, dout: Array) -> Array:
        """``dx = dout * where(y > 0, 1, y + alpha)``."""
        y = cache
        if self.alpha != 1 or y.dtype != dout.dtype:
            return np.where(y > 0, dout, dout * (y + float(self.alpha)))
        # y + 1 <= 1 exactly where y <= 0: the factor min(y, 0) + 1 is 1 where y > 0 and y + 1 elsewhere
        k = np.minimum(y, 0)
        k += 1
        k *= dout
        return k


@attrs.frozen
class GELU(_Elementwise):
    """``y = x * Phi(x)`` with ``Phi`` the standard normal CDF; any shape, same shape and dtype out.

    Exact form (default): ``Phi(x) = (1 + erf(x / sqrt 2)) / 2`` and ``dx = dout * (Phi(x) + x *
    phi(x))``, ``phi`` the normal density. ``approximate=True``: the tanh form
    ``Phi(x) ~ (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) / 2``, differentiated as written.

    Args:
        approximate: use the tanh form (a bool, default False).

    >>> import numpy as np
    >>> from fnnet.layers import GELU
    >>> GELU().apply(None, np.array([[-1.0, 1.0]])).round(6).tolist()
    [[-0.158655, 0.841345]]
    >>> GELU(approximate=True).apply(None, np.array([[1.0]])).round(6).tolist()
    [[0.841192]]
    """

    approximate: bool = attrs.field(default=False, validator=boolean)

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, _XAndGate]:
        """``y = x * Phi(x)``; the cache is ``(x, Phi(x))``."""
        self._check(self, x)
        cdf = F.gelu_cdf(x, bool(self.approximate))
        return F.gelu(x, bool(self.approximate), cdf), state, _XAndGate(x, cdf)

    def _dx(self, cache: _XAndGate, dout: Array) -> Array:
        """``dx = dout * gelu'(x)`` (see :func:`fnnet.functions.gelu_grad`)."""
        return dout * F.gelu_grad(cache.x, bool(self.approximate), cache.gate)


@attrs.frozen
class SiLU(_Elementwise):
    """``y = x * sigmoid(x)`` (also called swish); ``dx = dout * s * (1 + x * (1 - s))`` with
    ``s = sigmoid(x)``. Any shape, same shape and dtype out.

    >>> import numpy as np
    >>> from fnnet.layers import SiLU
    >>> SiLU().apply(None, np.array([[-1.0, 2.0]])).round(4).tolist()
    [[-0.2689, 1.7616]]
    """

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, _XAndGate]:
        """``y = x * sigmoid(x)``; the cache is ``(x, sigmoid(x))``."""
        self._check(self, x)
        s = F.expit(x)
        return F.silu(x, s), state, _XAndGate(x, s)

    def _dx(self, cache: _XAndGate, dout: Array) -> Array:
        """``dx = dout * s * (1 + x * (1 - s))`` (see :func:`fnnet.functions.silu_grad`)."""
        dx: Array = dout * F.silu_grad(cache.x, cache.gate)
        return dx


@attrs.frozen
class Softplus(_Elementwise):
    """``y = log(1 + exp(x))``, computed as ``logaddexp(0, x)`` (no overflow at any ``x``);
    ``dx = dout * sigmoid(x)``. Any shape, same shape and dtype out.

    >>> import numpy as np
    >>> from fnnet.layers import Softplus
    >>> Softplus().apply(None, np.array([[-1000.0, 0.0, 1000.0]])).round(4).tolist()
    [[0.0, 0.6931, 1000.0]]
    """

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, Array]:
        """``y = softplus(x)``; the cache is ``x``."""
        self._check(self, x)
        return F.softplus(x), state, x

    def _dx(self, cache: Array, dout: Array) -> Array:
        """``dx = dout * sigmoid(x)``."""
        return dout * F.softplus_grad(cache)
