"""Keyed data augmentation of image batches ``(N, C, H, W)``: pure transforms ``t(key, x) -> x_aug``.

Every transform is a frozen record called with a :class:`fnnet.random.Key` and a batch. It draws
one choice per sample (an offset, a coin) from ``key.generator()`` and applies all of them at once
with fancy indexing over a strided view, so there is no Python loop over samples. The output is a
new array of the input's shape and dtype; the input is never written to. The same key gives the
same images, bit for bit.

- :class:`RandomCrop`: zero-pad each side by ``pad`` pixels, then crop back to ``H x W`` at a
  random offset (the CIFAR recipe, ``pad=4``);
- :class:`RandomTranslate`: shift by up to ``dy`` rows and ``dx`` columns either way, filling with
  zeros. A crop after zero padding *is* such a shift: ``RandomCrop(p)`` and
  ``RandomTranslate(p, p)`` give the same images for the same key;
- :class:`HorizontalFlip`: mirror the width axis of each sample with probability ``p``;
- :class:`RandomErasing`: with probability ``p``, set a random rectangle of each sample to a
  constant (Zhong et al., "Random Erasing Data Augmentation", 2017);
- :func:`compose` / :class:`Compose`: apply several in order, each with its own key from
  ``split(key, n)``.

:func:`fnnet.train.fit` takes any of them as ``augment=`` and applies it to the training batches
only.

>>> import numpy as np, fnnet
>>> from fnnet.datasets import HorizontalFlip, RandomCrop, compose
>>> x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
>>> aug = compose(RandomCrop(pad=1), HorizontalFlip(p=0.5))
>>> y = aug(fnnet.key(0), x)
>>> y.shape, y.dtype, bool((y == aug(fnnet.key(0), x)).all())
((2, 1, 4, 4), dtype('float32'), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fnnet._validate import check_in_interval, finite_real, is_int, is_real
from fnnet.random import Key, split
from fnnet.typing import Array

__all__ = ["Augmentation", "RandomCrop", "RandomTranslate", "HorizontalFlip", "RandomErasing", "Compose", "compose"]

Augmentation = Callable[[Key, Array], Array]
"""What :func:`fnnet.train.fit` accepts as ``augment``: ``augment(key, x) -> x_aug`` of the same
shape and dtype. The records of this module are augmentations, and so is any such function.

>>> import numpy as np, fnnet
>>> from fnnet.datasets import Augmentation, HorizontalFlip, compose
>>> def invert(key: fnnet.Key, x: np.ndarray) -> np.ndarray:  # an augmentation of one's own
...     return 1.0 - x
>>> aug: Augmentation = compose(invert, HorizontalFlip(p=1.0))
>>> aug(fnnet.key(0), np.array([[[[0.0, 0.25]]]])).ravel().tolist()
[0.75, 1.0]
"""


def _check_batch(where: str, key: Any, x: Any) -> Array:
    if not isinstance(key, Key):
        raise ValueError(f"{where}: key must be a fnnet.random.Key, got {type(key).__name__}")
    xa = np.asarray(x)
    if xa.ndim != 4:
        raise ValueError(f"{where}: expected a batch of images (N, C, H, W), got shape {xa.shape}")
    if xa.dtype.kind not in "biuf":
        raise ValueError(f"{where}: expected a numeric array, got dtype {xa.dtype}")
    return xa


def _nonneg_int(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not is_int(value) or value < 0:
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be an int >= 0, got {value!r}")


def _probability(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_in_interval(type(inst).__name__, attribute.name, value, 0.0, 1.0, high_open=False)


def _shift(x: Array, pad_y: int, pad_x: int, oy: Array, ox: Array) -> Array:
    """``out[n, c, i, j] = xp[n, c, oy[n] + i, ox[n] + j]`` with ``xp`` ``x`` zero-padded by
    ``(pad_y, pad_x)`` on each side; ``oy`` in ``[0, 2 pad_y]``, ``ox`` in ``[0, 2 pad_x]``."""
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * pad_y, w + 2 * pad_x), x.dtype)
    xp[:, :, pad_y : pad_y + h, pad_x : pad_x + w] = x
    # windows[n, c, a, b] is the H x W crop of xp at offset (a, b): a view, nothing copied yet
    windows = sliding_window_view(xp, (h, w), axis=(2, 3))
    out: Array = windows[np.arange(n), :, oy, ox]
    return out


def _random_shift(key: Key, x: Array, pad_y: int, pad_x: int) -> Array:
    gen = key.generator()
    oy = gen.integers(0, 2 * pad_y + 1, size=len(x))
    ox = gen.integers(0, 2 * pad_x + 1, size=len(x))
    # a shift by the whole height (width) or more leaves only zeros, so padding beyond it changes
    # nothing: pad by at most H (W) and clip the shifts, keeping memory bounded for any pad
    _, _, h, w = x.shape
    py, px = min(pad_y, h), min(pad_x, w)
    return _shift(x, py, px, np.clip(oy - pad_y, -py, py) + py, np.clip(ox - pad_x, -px, px) + px)


@attrs.frozen
class RandomCrop:
    """Zero-pad each side by ``pad`` pixels, then crop each sample back to ``H x W`` at a random offset.

    The offsets ``(oy, ox)`` are drawn per sample, uniform in ``[0, 2 pad]``; ``pad=0`` is the
    identity. Equal to ``RandomTranslate(pad, pad)`` for the same key.

    Args:
        pad: pixels of zeros added on each side, an int ``>= 0`` (default 4).
    Call:
        ``crop(key, x)`` with ``x`` of shape ``(N, C, H, W)``; returns a new array of the same shape
        and dtype (every channel of a sample gets the same offset).

    >>> import numpy as np, fnnet
    >>> from fnnet.datasets import RandomCrop
    >>> x = np.ones((3, 1, 5, 5), np.float32)
    >>> y = RandomCrop(pad=2)(fnnet.key(1), x)
    >>> y.shape, y.dtype, float(y.max())
    ((3, 1, 5, 5), dtype('float32'), 1.0)
    """

    pad: int = attrs.field(default=4, validator=_nonneg_int)

    def __call__(self, key: Key, x: Array) -> Array:
        return _random_shift(key, _check_batch("RandomCrop", key, x), self.pad, self.pad)


@attrs.frozen
class RandomTranslate:
    """Shift each sample by a random ``(sy, sx)``, ``|sy| <= dy``, ``|sx| <= dx``, filling with zeros.

    The shifts are drawn per sample, uniform over the integers in ``[-dy, dy]`` and ``[-dx, dx]``:
    ``out[n, c, i, j] = x[n, c, i - sy, j - sx]`` where that pixel exists, else 0.

    Args:
        dy, dx: the largest shift down/up and right/left in pixels, ints ``>= 0``.
    Call:
        ``translate(key, x)`` with ``x`` of shape ``(N, C, H, W)``; returns a new array of the same
        shape and dtype.

    >>> import numpy as np, fnnet
    >>> from fnnet.datasets import RandomTranslate
    >>> x = np.zeros((1, 1, 3, 3), np.float32); x[0, 0, 1, 1] = 1.0
    >>> y = RandomTranslate(1, 1)(fnnet.key(0), x)
    >>> float(y.sum()), y.shape
    (1.0, (1, 1, 3, 3))
    """

    dy: int = attrs.field(validator=_nonneg_int)
    dx: int = attrs.field(validator=_nonneg_int)

    def __call__(self, key: Key, x: Array) -> Array:
        return _random_shift(key, _check_batch("RandomTranslate", key, x), self.dy, self.dx)


@attrs.frozen
class HorizontalFlip:
    """Mirror each sample left-right (reverse the W axis) with probability ``p``, decided per sample.

    Args:
        p: the probability of a flip, in ``[0, 1]`` (default 0.5; 0 never flips, 1 always does).
    Call:
        ``flip(key, x)`` with ``x`` of shape ``(N, C, H, W)``; returns a new array of the same shape
        and dtype.

    >>> import numpy as np, fnnet
    >>> from fnnet.datasets import HorizontalFlip
    >>> x = np.arange(3, dtype=np.float32).reshape(1, 1, 1, 3)
    >>> HorizontalFlip(p=1.0)(fnnet.key(0), x).ravel().tolist()
    [2.0, 1.0, 0.0]
    """

    p: float = attrs.field(default=0.5, validator=_probability)

    def __call__(self, key: Key, x: Array) -> Array:
        xa = _check_batch("HorizontalFlip", key, x)
        flip = key.generator().random(len(xa)) < self.p
        out = xa.copy()
        out[flip] = xa[flip][..., ::-1]
        return out


def _range_pair(high: float | None) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """attrs validator of a pair of finite floats ``(low, high)`` with ``0 < low <= high``, and
    ``high`` at most the given bound (none if ``None``)."""

    def check(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        pair: tuple[Any, ...] = value if isinstance(value, tuple) else ()
        numbers = len(pair) == 2 and all(isinstance(v, float) and math.isfinite(v) for v in pair)
        if not (numbers and 0 < pair[0] <= pair[1] and (high is None or pair[1] <= high)):
            bound = "" if high is None else f" <= {high}"
            raise ValueError(
                f"{type(inst).__name__}: {attribute.name} must be a pair (low, high) with 0 < low <= high{bound}, "
                f"got {value!r}"
            )

    return check


def _pair_of_floats(value: Any) -> Any:
    """A tuple/list of real numbers as a tuple of floats (anything else is left for the validator)."""
    if isinstance(value, (tuple, list)) and all(is_real(v) for v in value):
        return tuple(float(v) for v in value)
    return value


@attrs.frozen
class RandomErasing:
    """Set a random rectangle of each sample, chosen with probability ``p``, to ``value``.

    Per sample: a coin with probability ``p`` decides whether to erase; the rectangle covers a
    fraction ``s`` of the image, ``s`` uniform in ``scale``, with aspect ratio (height / width)
    ``r``, ``log r`` uniform in ``log ratio``: height ``round(sqrt(s*H*W*r))`` clipped to
    ``[1, H]``, width ``round(sqrt(s*H*W/r))`` clipped to ``[1, W]``, placed uniformly at random
    inside the image. Every channel of the rectangle becomes ``value`` in the batch's dtype: a
    value that integer images cannot hold exactly (``-1`` or ``0.5`` for ``uint8``) or that
    overflows a float dtype (``1e6`` for ``float16``) raises ``ValueError`` rather than wrap or
    turn into ``inf``. All draws are made for every sample whatever ``p``, so one key always gives
    the same rectangles.

    Args:
        p: the probability of erasing a sample, in ``[0, 1]`` (default 0.5).
        scale: ``(low, high)`` fraction of the image's area, ``0 < low <= high <= 1``
            (default ``(0.02, 0.4)``).
        ratio: ``(low, high)`` aspect ratio, ``0 < low <= high`` (default ``(0.3, 3.3)``).
        value: the fill, a finite number (default 0.0: black, the background of MNIST-like images).
    Call:
        ``erase(key, x)`` with ``x`` of shape ``(N, C, H, W)``; returns a new array of the same
        shape and dtype.

    >>> import numpy as np, fnnet
    >>> from fnnet.datasets import RandomErasing
    >>> x = np.ones((4, 1, 6, 6), np.float32)
    >>> y = RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0))(fnnet.key(0), x)
    >>> y.shape, y.dtype, (y == 0).sum(axis=(1, 2, 3)).tolist()    # a 3x3 square in each sample
    ((4, 1, 6, 6), dtype('float32'), [9, 9, 9, 9])
    >>> bool((RandomErasing(p=0.0)(fnnet.key(0), x) == x).all())
    True
    """

    p: float = attrs.field(default=0.5, validator=_probability)
    scale: tuple[float, float] = attrs.field(default=(0.02, 0.4), converter=_pair_of_floats, validator=_range_pair(1.0))
    ratio: tuple[float, float] = attrs.field(default=(0.3, 3.3), converter=_pair_of_floats, validator=_range_pair(None))
    value: float = attrs.field(default=0.0, validator=finite_real)

    def __call__(self, key: Key, x: Array) -> Array:
        xa = _check_batch("RandomErasing", key, x)
        fill = self._fill(xa.dtype)
        n, _, h, w = xa.shape
        gen = key.generator()
        erase = np.less(gen.random(n), self.p)
        area = gen.uniform(self.scale[0], self.scale[1], n) * (h * w)
        r = np.exp(gen.uniform(np.log(self.ratio[0]), np.log(self.ratio[1]), n))
        at_y, at_x = gen.random(n), gen.random(n)
        hh = np.clip(np.rint(np.sqrt(area * r)), 1, h).astype(np.int64)
        ww = np.clip(np.rint(np.sqrt(area / r)), 1, w).astype(np.int64)
        y0 = np.minimum((at_y * (h - hh + 1)).astype(np.int64), h - hh)
        x0 = np.minimum((at_x * (w - ww + 1)).astype(np.int64), w - ww)
        rows = np.arange(h)
        cols = np.arange(w)
        in_rows = (rows >= y0[:, None]) & (rows < (y0 + hh)[:, None])  # (N, H)
        in_cols = (cols >= x0[:, None]) & (cols < (x0 + ww)[:, None])  # (N, W)
        mask = erase[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
        out: Array = np.where(mask[:, None], fill, xa)
        return out

    def _fill(self, dtype: np.dtype[Any]) -> Array:
        """``value`` as a 0-d array of ``dtype``, refused if that changes it beyond a float's rounding."""
        v = self.value
        if dtype.kind in "biu":
            lo, hi = (0, 1) if dtype.kind == "b" else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
            ok = (is_int(v) or float(v).is_integer()) and lo <= v <= hi
        else:
            with np.errstate(over="ignore"):
                ok = bool(np.isfinite(np.asarray(v).astype(dtype)))
        if not ok:
            raise ValueError(f"RandomErasing: value {self.value!r} cannot be stored in {dtype} images")
        return np.asarray(self.value).astype(dtype)


def _as_tuple(transforms: Iterable[Augmentation]) -> tuple[Augmentation, ...]:
    return tuple(transforms)


def _callables(inst: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    if not value:
        raise ValueError("Compose: need at least one transform")
    for i, t in enumerate(value):
        if not callable(t):
            raise ValueError(f"Compose: transform {i} must be callable as t(key, x), got {type(t).__name__}")


@attrs.frozen
class Compose:
    """Several augmentations applied in order; transform ``i`` gets key ``split(key, n)[i]``.

    Build it with :func:`compose`. Any callable ``t(key, x) -> x_aug`` may take part.

    Attributes:
        transforms: the augmentations, applied first to last (at least one).
    Call:
        ``aug(key, x)`` with ``x`` of shape ``(N, C, H, W)``; returns a new array of the same shape
        and dtype.

    >>> import numpy as np, fnnet
    >>> from fnnet.datasets import Compose, HorizontalFlip, RandomCrop, compose
    >>> aug = compose(RandomCrop(pad=1), HorizontalFlip(p=1.0))
    >>> aug == Compose((RandomCrop(pad=1), HorizontalFlip(p=1.0))), len(aug.transforms)
    (True, 2)
    >>> x = fnnet.key(0).generator().normal(size=(2, 1, 4, 4)).astype(np.float32)
    >>> k1, k2 = fnnet.split(fnnet.key(3))
    >>> y = aug(fnnet.key(3), x)
    >>> y.shape, bool((y == HorizontalFlip(p=1.0)(k2, RandomCrop(pad=1)(k1, x))).all())
    ((2, 1, 4, 4), True)
    """

    transforms: tuple[Augmentation, ...] = attrs.field(converter=_as_tuple, validator=_callables)

    def __call__(self, key: Key, x: Array) -> Array:
        xa = _check_batch("Compose", key, x)
        for t, k in zip(self.transforms, split(key, len(self.transforms))):
            xa = t(k, xa)
        return xa


def compose(*transforms: Augmentation) -> Compose:
    """Chain augmentations: ``compose(a, b)(key, x) == b(k2, a(k1, x))`` with ``k1, k2 = split(key)``.

    Args:
        *transforms: one or more callables ``t(key, x) -> x_aug`` (the records of this module or
            the caller's own).
    Returns:
        A :class:`Compose`, itself an augmentation.

    >>> import numpy as np, fnnet
    >>> from fnnet.datasets import HorizontalFlip, RandomCrop, compose
    >>> aug = compose(HorizontalFlip(p=1.0), RandomCrop(pad=0))
    >>> aug(fnnet.key(0), np.arange(2.0).reshape(1, 1, 1, 2)).ravel().tolist()
    [1.0, 0.0]
    """
    return Compose(transforms)
