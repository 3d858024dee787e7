"""The book's computational-graph nodes (section 5.4): two inputs, one output, local gradients.

They are not layers: a node takes two values and no parameters, and its backward hands each input
its share of ``dout``.

>>> from fnnet.graph import Mul
>>> out, cache = Mul().forward(100.0, 2.0)
>>> dx, dy = Mul().backward(cache, 1.0)
>>> float(out), float(dx), float(dy)
(200.0, 2.0, 100.0)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import attrs
import numpy as np

from fnnet.typing import Array

__all__ = ["Mul", "Add"]


class _Pair(NamedTuple):
    x: Array
    y: Array


@attrs.frozen
class Mul:
    """Multiplication node ``out = x * y`` (broadcasting like NumPy).

    ``forward(x, y) -> (out, cache)``; ``backward(cache, dout) -> (dx, dy)`` with
    ``dx = dout * y`` and ``dy = dout * x`` (summed back to each input's shape).

    The book's apple example: 2 apples at 100 each, with 10% tax.

    >>> from fnnet.graph import Mul
    >>> apple, tax = Mul(), Mul()
    >>> price, c1 = apple.forward(100.0, 2.0)
    >>> total, c2 = tax.forward(price, 1.1)
    >>> float(total)
    220.00000000000003
    >>> dprice, dtax = tax.backward(c2, 1.0)
    >>> dapple, dnum = apple.backward(c1, dprice)
    >>> float(dapple), float(dnum), float(dtax)
    (2.2, 110.00000000000001, 200.0)
    """

    def forward(self, x: Any, y: Any) -> tuple[Array, _Pair]:
        xa, ya = np.asarray(x), np.asarray(y)
        return xa * ya, _Pair(xa, ya)

    def backward(self, cache: _Pair, dout: Any) -> tuple[Array, Array]:
        d = np.asarray(dout)
        return _unbroadcast(d * cache.y, cache.x.shape), _unbroadcast(d * cache.x, cache.y.shape)


@attrs.frozen
class Add:
    """Addition node ``out = x + y``; ``backward`` passes ``dout`` to both inputs.

    >>> import numpy as np
    >>> from fnnet.graph import Add
    >>> out, cache = Add().forward(np.ones((2, 3)), np.array([1.0, 2.0, 3.0]))   # y broadcast over rows
    >>> dx, dy = Add().backward(cache, np.ones((2, 3)))
    >>> out.shape, dx.shape, dy.tolist()
    ((2, 3), (2, 3), [2.0, 2.0, 2.0])
    """

    def forward(self, x: Any, y: Any) -> tuple[Array, tuple[tuple[int, ...], tuple[int, ...]]]:
        xa, ya = np.asarray(x), np.asarray(y)
        return xa + ya, (xa.shape, ya.shape)

    def backward(self, cache: tuple[tuple[int, ...], tuple[int, ...]], dout: Any) -> tuple[Array, Array]:
        d = np.asarray(dout)
        return _unbroadcast(d, cache[0]), _unbroadcast(d, cache[1])


def _unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``g`` over the axes that broadcasting added or stretched, back to ``shape``."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for ax, s in enumerate(shape):
        if s == 1 and g.shape[ax] != 1:
            g = g.sum(axis=ax, keepdims=True)
    return g
