"""Activation functions and softmax (the book's chapter 3) and the later ones (LeakyReLU, ELU, GELU,
SiLU, Softplus, with a NumPy-only erf), as pure array functions.

>>> import numpy as np
>>> from fnnet.functions import relu, softmax, step_function
>>> x = np.array([-1.0, 0.5, 2.0])
>>> step_function(x).tolist(), relu(x).tolist()
([0.0, 1.0, 1.0], [0.0, 0.5, 2.0])
>>> float(softmax(x).sum())
1.0
"""

from __future__ import annotations

import math

import numpy as np

from fnnet.typing import Array

__all__ = [
    "step_function",
    "sigmoid",
    "relu",
    "tanh",
    "identity",
    "softmax",
    "log_softmax",
    "leaky_relu",
    "elu",
    "gelu",
    "silu",
    "softplus",
    "gelu_cdf",
    "gelu_grad",
    "expit",
    "silu_grad",
    "softplus_grad",
    "erf",
    "erfc",
]


def step_function(x: Array) -> Array:
    """Step function: 1 where ``x > 0``, else 0, in ``x``'s dtype (any shape); NaN stays NaN
    (integer and bool input give int64).

    >>> import numpy as np
    >>> from fnnet.functions import step_function
    >>> step_function(np.array([-np.inf, 0.0, 2.0, np.nan])).tolist()
    [0.0, 0.0, 1.0, nan]
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return (x > 0).astype(np.int64)
    out = np.greater(x, 0, out=np.empty_like(x))
    nan = np.isnan(x)
    if nan.any():  # x > 0 is False at NaN
        out[nan] = np.nan
    return out


def sigmoid(x: Array) -> Array:
    """Logistic sigmoid ``1 / (1 + exp(-x))`` (any shape).

    Computed as ``0.5 * (1 + tanh(x / 2))``, which is exact algebra and never overflows, so
    ``sigmoid(±1000)`` gives 1 and 0 without warnings.

    >>> import numpy as np
    >>> from fnnet.functions import sigmoid
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    x = np.asarray(x)
    half = x.dtype.type(0.5) if x.dtype.kind == "f" else 0.5
    return half + half * np.tanh(half * x)


def relu(x: Array) -> Array:
    """Rectified linear unit ``max(x, 0)`` (any shape).

    >>> import numpy as np
    >>> from fnnet.functions import relu
    >>> relu(np.array([[-1.0, 2.0], [3.0, -4.0]])).tolist()
    [[0.0, 2.0], [3.0, 0.0]]
    """
    return np.maximum(x, 0)


def tanh(x: Array) -> Array:
    """Hyperbolic tangent (any shape).

    >>> import numpy as np
    >>> from fnnet.functions import tanh
    >>> tanh(np.array([0.0, 20.0])).tolist()
    [0.0, 1.0]
    """
    return np.tanh(x)


def identity(x: Array) -> Array:
    """The identity (the output activation for regression).

    >>> from fnnet.functions import identity
    >>> identity([1.5, -2.0]).tolist()
    [1.5, -2.0]
    """
    return np.asarray(x)


def _wide(x: Array) -> Array:
    """float16 ``x`` as float32 (for sums and differences that overflow float16's 65504, and for
    series whose roundings add up); any other array itself."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _narrow(out: Array, x: Array) -> Array:
    """``out`` computed from ``_wide(x)``, back in float16 if ``x`` was."""
    return out.astype(np.float16) if x.dtype == np.float16 else out


def _shifted(xw: Array) -> Array:
    """``xw - max(xw)`` over the last axis, the exponent of softmax and log-softmax.

    A row whose maximum is infinite has no finite shift: its entries equal to the maximum become 0
    and the others -inf, so a single ``+inf`` takes all the mass (the limit), several share it
    equally, and a row of ``-inf`` only is uniform (as every row of equal entries is). A row
    holding NaN stays NaN.
    """
    m = xw.max(axis=-1, keepdims=True)
    # Σ m² is finite unless a row maximum is infinite (or NaN, or beyond the square root of the
    # dtype's largest number): one dot product rules out the infinite rows in the common case
    if not math.isfinite(np.vdot(m, m)):
        inf_rows = np.isinf(m)
        if inf_rows.any():
            top = np.where(xw == m, 0, -np.inf).astype(xw.dtype, copy=False)
            xw = np.where(inf_rows, top, xw)
            m = np.where(inf_rows, 0, m).astype(xw.dtype, copy=False)
    z: Array = xw - m
    return z


def softmax(x: Array) -> Array:
    """Softmax over the last axis, for any batch shape ``(..., K)``.

    Subtracting the row maximum first leaves the result unchanged (softmax is invariant to adding a
    constant) but keeps ``exp`` from overflowing for large inputs. float16 input is computed in
    float32 and the result cast back: ``x - max(x)`` overflows float16 when a row spans more than
    65504. Infinite entries give the limit: a row with one ``+inf`` is one-hot there (several
    ``+inf`` share the mass equally), ``-inf`` entries get 0, a row of ``-inf`` only is uniform; a
    row holding NaN is NaN.

    >>> import numpy as np
    >>> from fnnet.functions import softmax
    >>> p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))   # (N, K) = (2, 2)
    >>> p.round(4).tolist()
    [[0.5, 0.5], [0.25, 0.75]]
    >>> softmax(np.array([-40000.0, 40000.0], np.float16)).tolist()
    [0.0, 1.0]
    >>> softmax(np.array([[np.inf, 0.0, -np.inf], [-np.inf, -np.inf, 0.0]])).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    x = np.asarray(x)
    xw = _wide(x)
    e = np.exp(_shifted(xw))
    p: Array = e / e.sum(axis=-1, keepdims=True)
    return p if xw is x else p.astype(x.dtype)


def log_softmax(x: Array) -> Array:
    """``log(softmax(x))`` over the last axis, computed stably as ``z - log(sum(exp(z)))``
    with ``z = x - max(x)``; finite even where ``softmax`` underflows to 0.

    float16 input is computed in float32 and the result cast back, so only a log-probability
    below float16's -65504 is ``-inf`` (and every other entry is exact to float16 rounding).
    Infinite entries give the limit as in :func:`softmax`: ``log_softmax([inf, 0]) = [0, -inf]``.

    >>> import numpy as np
    >>> from fnnet.functions import log_softmax
    >>> log_softmax(np.array([0.0, -1000.0])).tolist()       # softmax would give log(0)
    [0.0, -1000.0]
    >>> log_softmax(np.array([-20000.0, 20000.0], np.float16)).tolist()
    [-40000.0, 0.0]
    """
    x = np.asarray(x)
    xw = _wide(x)
    z = _shifted(xw)
    out: Array = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return out if xw is x else out.astype(x.dtype)


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    """Leaky ReLU ``x if x > 0 else negative_slope * x`` (any shape, ``x``'s dtype).

    >>> import numpy as np
    >>> from fnnet.functions import leaky_relu
    >>> leaky_relu(np.array([-2.0, 3.0]), 0.1).tolist()
    [-0.2, 3.0]
    """
    x = np.asarray(x)
    slope = float(negative_slope)
    if x.dtype.kind != "f" or not (0 < slope <= 1 and x.dtype.type(slope) > 0):  # as x's dtype holds it
        return np.where(x > 0, x, slope * x)
    # a slope in (0, 1] scales a positive x down and a negative one up, so the larger of x and
    # slope * x is the output, ±0, ±inf and NaN included (no mask of the signs to choose with)
    out: Array = np.multiply(x, slope)
    np.maximum(x, out, out=out)
    return out


def elu(x: Array, alpha: float = 1.0) -> Array:
    """Exponential linear unit ``x if x > 0 else alpha * (exp(x) - 1)`` (any shape, ``x``'s dtype).

    ``expm1`` sees only ``min(x, 0)``, so large positive inputs cannot overflow.

    >>> import numpy as np
    >>> from fnnet.functions import elu
    >>> elu(np.array([-1.0, 2.0])).round(6).tolist()
    [-0.632121, 2.0]
    """
    x = np.asarray(x)
    if x.dtype.kind != "f" or not abs(float(alpha)) < float(np.finfo(x.dtype).max):  # finite in x's dtype
        return np.where(x > 0, x, float(alpha) * np.expm1(np.minimum(x, 0)))
    # alpha * expm1(min(x, 0)) is +0 where x > 0, and max(x, -0.0) is -0.0 where x <= 0: their
    # sum is the branch taken for every x (-0.0 + -0.0 keeps the sign of a zero), without a mask
    out: Array = np.minimum(x, 0)
    np.expm1(out, out=out)
    out *= float(alpha)
    out += np.maximum(x, -0.0)
    return out


# Beyond these |z| erf(z) is ±1 and erfc(z) is 0 or 2 in float64; clipping to them keeps z*z finite.
_ERF_CLIP = 40.0
# |z| below the split: the series; above: the continued fraction. At 1.5, erfc = 1 - erf loses at
# most 1.5 digits below the split; the term counts keep both pieces within a few float64 roundings.
_ERF_SPLIT = 1.5
_SERIES_TERMS = 24
_CF_TERMS = 80


# erf(z) = 2/sqrt(pi) exp(-z^2) z sum_k c_k (z^2)^k with c_k = 2^k / (1 * 3 * ... * (2k + 1)): all
# terms have z's sign, so nothing cancels
_SERIES_COEFS = tuple(2.0**k / math.prod(range(1, 2 * k + 2, 2)) for k in range(_SERIES_TERMS))


def _erf_series(z: Array) -> Array:
    w = z * z
    total = np.full_like(z, _SERIES_COEFS[-1])
    for c in reversed(_SERIES_COEFS[:-1]):  # Horner in z^2, in place
        total *= w
        total += c
    total *= z
    np.negative(w, out=w)
    total *= np.exp(w, out=w)
    total *= 2 / math.sqrt(math.pi)
    return total


def _erfc_cf(z: Array) -> Array:
    # erfc(z) = exp(-z^2) / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / (z + ...)))) for z > 0,
    # evaluated from a fixed depth inwards
    f = z.copy()
    for k in range(_CF_TERMS, 0, -1):
        np.divide(k / 2, f, out=f)
        f += z
    out: Array = np.exp(-z * z) / (math.sqrt(math.pi) * f)
    return out


def _erf_parts(x: Array) -> tuple[Array, Array, Array]:
    """``(z, small, e)``: ``z`` clipped, the mask ``|z| < split``, and ``e`` holding erf(z) where
    small and erfc(|z|) elsewhere."""
    x = np.asarray(x)
    x = _wide(x) if x.dtype.kind == "f" else x.astype(np.float64)
    z = np.clip(x, -_ERF_CLIP, _ERF_CLIP)
    small = np.abs(z) < _ERF_SPLIT
    e = np.empty_like(z)
    e[small] = _erf_series(z[small])
    e[~small] = _erfc_cf(np.abs(z[~small]))
    return z, small, e


def erf(x: Array) -> Array:
    """The error function ``2/sqrt(pi) * integral_0^x exp(-t^2) dt`` (any shape; float64 for
    non-float input, float16 computed in float32), to within a few units of float64 rounding.

    >>> import numpy as np
    >>> from fnnet.functions import erf
    >>> float(erf(np.array(0.5)).round(12))
    0.520499877813
    """
    x = np.asarray(x)
    z, small, e = _erf_parts(x)
    return _narrow(np.where(small, e, np.sign(z) * (1 - e)), x)


def erfc(x: Array) -> Array:
    """The complementary error function ``1 - erf(x)``, accurate relative to itself for large ``x``.

    >>> import numpy as np
    >>> from fnnet.functions import erfc
    >>> float(erfc(np.array(5.0)))  # doctest: +ELLIPSIS
    1.5374597944280...e-12
    """
    x = np.asarray(x)
    z, small, e = _erf_parts(x)
    return _narrow(np.where(small, 1 - e, np.where(z > 0, e, 2 - e)), x)


_GELU_C = math.sqrt(2 / math.pi)
_GELU_A = 0.044715
# the tanh form's tanh is exactly ±1 far beyond |x| = 100; clipping there keeps x**3 finite. Below
# -100 both forms of Phi are exactly 0 in every float dtype, so x * Phi(x) may take max(x, -100) for
# x: the same -0 for finite x, and no -inf * 0 = NaN at x = -inf
_GELU_TANH_CLIP = 100.0


def gelu(x: Array, approximate: bool = False, cdf: Array | None = None) -> Array:
    """Gaussian error linear unit ``x * Phi(x)``, ``Phi`` the standard normal CDF (any shape).

    Exact form: ``Phi(x) = erfc(-x / sqrt(2)) / 2``; ``approximate=True`` gives the tanh form
    ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``. At the infinities it takes the limits
    ``gelu(-inf) = 0`` and ``gelu(inf) = inf``; NaN stays NaN.

    ``cdf``, if given, is ``gelu_cdf(x, approximate)`` already computed (the layer keeps it).

    >>> import numpy as np
    >>> from fnnet.functions import gelu
    >>> gelu(np.array([-1.0, 0.0, 1.0])).round(6).tolist()
    [-0.158655, 0.0, 0.841345]
    >>> gelu(np.array([1.0]), approximate=True).round(6).tolist()
    [0.841192]
    >>> gelu(np.array([-np.inf, np.inf])).tolist()
    [-0.0, inf]
    """
    x = np.asarray(x)
    if cdf is None:
        cdf = gelu_cdf(x, approximate)
    y: Array = np.maximum(x, -_GELU_TANH_CLIP)
    y *= cdf
    return y


def gelu_cdf(x: Array, approximate: bool = False) -> Array:
    """GELU's gate ``Phi(x)`` (exact or tanh form), so that ``gelu(x) = x * gelu_cdf(x)``.

    >>> import numpy as np
    >>> from fnnet.functions import gelu, gelu_cdf
    >>> x = np.array([-1.0, 0.0, 2.0])
    >>> gelu_cdf(x).round(6).tolist()
    [0.158655, 0.5, 0.97725]
    >>> bool(np.allclose(x * gelu_cdf(x), gelu(x)))
    True
    """
    x = np.asarray(x)
    xw = _wide(x)  # float16: the cubic overflows, and 1 + tanh and erfc's pieces lose digits
    if approximate:
        xc = np.clip(xw, -_GELU_TANH_CLIP, _GELU_TANH_CLIP)
        # 0.5 + 0.5 * tanh(C * (xc + A * xc * xc * xc)), the same operations in place
        gate: Array = _GELU_A * xc
        gate *= xc
        gate *= xc
        gate += xc
        gate *= _GELU_C
        gate = np.tanh(gate)
        gate *= 0.5
        gate += 0.5
        return _narrow(gate, x)
    # erfc(-x/sqrt 2) keeps Phi accurate relative to itself for x << 0, where 1 + erf would cancel
    return _narrow(0.5 * erfc(xw * -math.sqrt(0.5)), x)


def gelu_grad(x: Array, approximate: bool = False, cdf: Array | None = None) -> Array:
    """``d gelu / dx`` (exact: ``Phi(x) + x * phi(x)``; tanh form: its own derivative).

    ``cdf``, if given, is ``gelu_cdf(x, approximate)`` already computed (the forward pass has it).

    >>> import numpy as np
    >>> from fnnet.functions import gelu, gelu_grad
    >>> x, h = np.array([-1.0, 0.5, 2.0]), 1e-6
    >>> bool(np.allclose(gelu_grad(x), (gelu(x + h) - gelu(x - h)) / (2 * h)))
    True
    """
    x = np.asarray(x)
    xw = _wide(x)
    if approximate:
        xc = np.clip(xw, -_GELU_TANH_CLIP, _GELU_TANH_CLIP)
        t = np.tanh(_GELU_C * (xc + _GELU_A * xc * xc * xc))
        slope: Array = 0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * _GELU_C * (1 + 3 * _GELU_A * xc * xc)
        return _narrow(slope, x)
    if cdf is None:
        cdf = gelu_cdf(xw)
    xc = np.clip(xw, -_ERF_CLIP, _ERF_CLIP)
    pdf = np.exp(-0.5 * xc * xc) * (1 / math.sqrt(2 * math.pi))
    out: Array = cdf + xc * pdf
    return _narrow(out, x)


def expit(x: Array) -> Array:
    """The sigmoid ``1 / (1 + exp(-x))`` accurate relative to itself in both tails (any shape).

    :func:`sigmoid`'s ``0.5 + 0.5 tanh(x / 2)`` is accurate to a float64 rounding absolutely but
    cancels for ``x << 0``; this form keeps ``expit(-30) ~ 9.4e-14`` to full precision. It never
    overflows.

    >>> import numpy as np
    >>> from fnnet.functions import expit
    >>> float(expit(np.array(-30.0)))  # doctest: +ELLIPSIS
    9.35762296883...e-14
    """
    x = np.asarray(x)
    # e / (1 + e) with e = exp(-|x|) = exp(x) <= 1 on the left, 1 / (1 + e) on the right: the
    # numerator exp(min(x, 0)) is e on the left and 1 on the right (a second exp costs less than
    # choosing between the two with a mask of random signs)
    den = np.exp(-np.abs(x))
    den += 1
    out: Array = np.exp(np.minimum(x, 0))
    out /= den
    return out


# beyond ±1000 expit is exactly 1 or 0 in every float dtype: x clipped there gives the same
# x * sigmoid(x) and x * (1 - sigmoid(x)) for finite x, and no ±inf * 0 = NaN at the infinities
_SILU_CLIP = 1000.0


def silu(x: Array, sig: Array | None = None) -> Array:
    """Sigmoid linear unit (swish) ``x * sigmoid(x)`` (any shape), accurate relative to itself for
    large negative ``x`` too; ``silu(-inf) = -0.0``, ``silu(inf) = inf``, NaN stays NaN.

    ``sig``, if given, is ``expit(x)`` already computed (the layer keeps it).

    >>> import numpy as np
    >>> from fnnet.functions import silu
    >>> silu(np.array([-1.0, 0.0, 2.0])).round(6).tolist()
    [-0.268941, 0.0, 1.761594]
    >>> silu(np.array([-np.inf, np.inf])).tolist()
    [-0.0, inf]
    """
    x = np.asarray(x)
    if sig is None:
        sig = expit(x)
    y: Array = np.maximum(x, -_SILU_CLIP)
    y *= sig
    return y


def silu_grad(x: Array, sig: Array | None = None) -> Array:
    """``d silu / dx = s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``: 0 at ``-inf``, 1 at ``inf``.

    ``sig``, if given, is ``expit(x)`` already computed (the forward pass has it).

    >>> import numpy as np
    >>> from fnnet.functions import silu, silu_grad
    >>> x, h = np.array([-3.0, 0.0, 4.0]), 1e-6
    >>> bool(np.allclose(silu_grad(x), (silu(x + h) - silu(x - h)) / (2 * h)))
    True
    >>> silu_grad(np.array([-np.inf, np.inf])).tolist()
    [-0.0, 1.0]
    """
    x = np.asarray(x)
    if sig is None:
        sig = expit(x)
    g: Array = np.clip(x, -_SILU_CLIP, _SILU_CLIP)
    g *= 1 - sig
    g += 1
    g *= sig
    return g


def softplus(x: Array) -> Array:
    """``log(1 + exp(x))`` (any shape), computed as ``logaddexp(0, x)`` so that it never overflows;
    its derivative is ``sigmoid(x)``. ``softplus(-inf) = 0``, ``softplus(inf) = inf``.

    >>> import numpy as np
    >>> from fnnet.functions import softplus
    >>> softplus(np.array([-1000.0, 0.0, 1000.0])).round(6).tolist()
    [0.0, 0.693147, 1000.0]
    """
    x = np.asarray(x)
    with np.errstate(invalid="ignore"):  # logaddexp flags a NaN input; NaN stays NaN
        return np.logaddexp(0, x)


def softplus_grad(x: Array) -> Array:
    """``d softplus / dx = sigmoid(x)``, accurate relative to itself in both tails.

    >>> import numpy as np
    >>> from fnnet.functions import softplus_grad
    >>> softplus_grad(np.array([-800.0, 0.0, 800.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    return expit(np.asarray(x))
