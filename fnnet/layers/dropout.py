"""Dropout (the book's section 6.4.3), inverted: the scaling happens in training, not evaluation."""

from __future__ import annotations

from typing import Any, NamedTuple

import attrs
import numpy as np

from fnnet.typing import Array, Shape
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, no_input_grad
from fnnet.random import Key

__all__ = ["Dropout", "DropoutCache"]


class DropoutCache(NamedTuple):
    """The scaled keep mask (``None`` in evaluation) and the input shape.

    >>> import numpy as np, fnnet
    >>> x = np.ones((2, 3), np.float32)
    >>> ctx = fnnet.Ctx(train=True, key=fnnet.key(0))
    >>> _, _, cache = fnnet.Dropout(0.5).forward(None, None, x, ctx)
    >>> cache.mask.shape, cache.mask.dtype, cache.shape
    ((2, 3), dtype('float32'), (2, 3))
    >>> fnnet.Dropout(0.5).forward(None, None, x)[2].mask is None  # evaluation
    True
    """

    mask: Array | None  # 1 / (1 - rate) where a unit is kept, 0 where dropped; x's dtype
    shape: tuple[int, ...]


def _rate(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        0.0 <= value < 1.0
    ):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a number in [0, 1), got {value!r}")


@attrs.frozen
class Dropout(Layer):
    """Inverted dropout: in training each unit is kept with probability ``1 - rate`` and kept units
    are scaled by ``1 / (1 - rate)``; in evaluation the layer is the identity. Any input shape.

    Scaling in training keeps the expected output equal to the input, so evaluation needs no
    correction. The book's ``Dropout`` instead passes kept units unscaled in training and multiplies
    by ``1 - rate`` in evaluation: its evaluation output is ``(1 - rate) * x`` where fnnet's is
    ``x``. Weights trained by the book's code therefore convert by multiplying the weights (not the
    bias) of the layer that follows each Dropout by ``1 - rate``. Training is not the same, though:
    the two nets are reparametrisations of each other, and plain SGD is not invariant to that, so
    with the same learning rate the layers after an inverted Dropout take relatively larger steps
    (at the book's rate 0.2 the book's version trains noticeably slower).

    The mask is drawn from ``ctx.key`` only (``ctx.key.generator()``), so the same key gives the
    same mask; a training forward without a key raises ``ValueError``.

    Attributes:
        rate: the probability of dropping a unit, in ``[0, 1)`` (the book's ``dropout_ratio``).

    >>> import numpy as np, fnnet
    >>> drop = fnnet.Dropout(0.5)
    >>> x = np.ones((2, 4), np.float32)
    >>> y, _, cache = drop.forward(None, None, x, fnnet.Ctx(train=True, key=fnnet.key(0)))
    >>> y.tolist()  # dropped units are 0, kept ones scaled by 1 / (1 - 0.5)
    [[2.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    >>> dx, _ = drop.backward(None, cache, np.ones_like(y))
    >>> bool((dx == y).all()), drop.apply(None, x) is x  # the same mask; evaluation: identity
    (True, True)
    """

    rate: float = attrs.field(default=0.5, validator=_rate)

    def out_shape(self, in_shape: Shape) -> Shape:
        """The input shape."""
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        """No parameters; the output shape is ``in_shape``."""
        return None, tuple(in_shape)

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, DropoutCache]:
        """Drop and rescale (training) or pass through (evaluation).

        Args:
            params, state: ``None``.
            x: any shape ``(N, ...)``, floating point.
            ctx: ``ctx.train`` selects the mode; ``ctx.key`` (required in training) draws the mask.
        Returns:
            ``(y, None, cache)`` with ``y`` of ``x``'s shape (``x`` itself in evaluation).
        """
        if x.dtype.kind != "f":
            raise ValueError(f"{type(self).__name__}: expected a floating point input, got dtype {x.dtype}")
        if not ctx.train:
            return x, state, DropoutCache(None, x.shape)
        key = ctx.key
        if key is None:
            raise ValueError(
                f"{type(self).__name__}: a training forward pass needs a random key to draw the mask, but ctx.key "
                "is None; pass Ctx(train=True, key=fnnet.key(seed)) (a fresh fold_in/split key per step)"
            )
        u = key.generator().random(x.shape, dtype=np.float32)  # uniform in [0, 1)
        one, rate = x.dtype.type(1), x.dtype.type(self.rate)
        # P(u >= rate) = 1 - rate: keep those units, scaled by 1 / (1 - rate) so that E[y] = x. A rate
        # that rounds to 1 in x's dtype (0.99999999 in float32) would make that 1 / 0: the scale is
        # then taken in float64 and rounded once (inf only where float16 cannot hold it).
        if rate < one:
            scale = one / (one - rate)
        else:
            with np.errstate(over="ignore"):
                scale = x.dtype.type(1.0 / (1.0 - float(self.rate)))
        keep = u >= self.rate
        if np.isfinite(scale):
            mask = np.multiply(keep, scale, dtype=x.dtype)
        else:  # dropped units must stay 0, not 0 * inf = NaN
            mask = np.where(keep, scale, x.dtype.type(0))
        return x * mask, state, DropoutCache(mask, x.shape)

    def backward(
        self, params: None, cache: DropoutCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, None]:
        """``dx = dout * mask`` (training) or ``dout`` (evaluation); no parameter gradients.

        Args:
            params: ``None``.
            cache: from :meth:`forward`.
            dout: ``dL/dy``, the shape of ``x``.
        Returns:
            ``(dx, None)`` with ``dx`` of ``x``'s shape.
        """
        if dout.shape != cache.shape:
            check_dout(self, dout, cache.shape)
        if not input_grad:
            return no_input_grad(cache.shape, dout.dtype), None
        if cache.mask is None:
            return dout, None
        return dout * cache.mask, None
