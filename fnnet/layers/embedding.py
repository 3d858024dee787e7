"""Layers on token sequences: :class:`Embedding` (ids to vectors) and :class:`TimeAffine` (an
affine map over the last axis that keeps the batch and time axes).

>>> import numpy as np, fnnet
>>> model = fnnet.serial(fnnet.Embedding(13, 4), fnnet.LSTM(8), fnnet.TimeAffine(13))
>>> params, out_shape = model.init(fnnet.key(0), (7,))
>>> out_shape
(7, 13)
>>> model.apply(params, np.zeros((2, 7), np.int64)).shape
(2, 7, 13)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import attrs
import numpy as np

from fnnet._validate import positive_int, shape_text
from fnnet.initializers import Initializer, LeCunNormal, Normal, Zeros
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, check_dtype, no_input_grad, param_arrays
from fnnet.layers.core import AffineParams
from fnnet.random import Key, split
from fnnet.typing import Array, Shape

__all__ = ["Embedding", "EmbeddingParams", "TimeAffine", "embedding_grad", "ONE_HOT_MAX_VOCAB"]

ONE_HOT_MAX_VOCAB = 64
""":func:`embedding_grad` sums with a one-hot GEMM up to this vocabulary size, and with one
``np.bincount`` over (id, column) pairs above it (the faster of the two on each side). Both
give the same sums.

>>> import numpy as np
>>> from fnnet.layers.embedding import ONE_HOT_MAX_VOCAB, embedding_grad
>>> ids, dout = np.array([[0, 3, 0]]), np.ones((1, 3, 2), np.float32)
>>> gemm = embedding_grad(ids, dout, ONE_HOT_MAX_VOCAB)
>>> counted = embedding_grad(ids, dout, ONE_HOT_MAX_VOCAB + 1)
>>> ONE_HOT_MAX_VOCAB, gemm.shape, counted.shape, bool((gemm == counted[:-1]).all())
(64, (64, 2), (65, 2), True)
"""


def _check_dout_dtype(layer: Layer, dout: Array, dtype: np.dtype[Any]) -> None:
    """Gradients come back in the parameters' dtype, as the recurrent layers' do."""
    if dout.dtype != dtype:
        raise ValueError(f"{type(layer).__name__}.backward: expected dout of dtype {dtype} (the parameters' dtype), got {dout.dtype}")


class EmbeddingParams(NamedTuple):
    """Parameters of :class:`Embedding`: the table ``w`` of shape ``(vocab_size, dim)``.

    >>> import fnnet
    >>> params, _ = fnnet.Embedding(10, 4).init(fnnet.key(0), (7,))
    >>> params.w.shape, params.w.dtype
    ((10, 4), dtype('float32'))
    """

    w: Array


class _EmbeddingCache(NamedTuple):
    ids: Array  # the input ids, flattened (intp)
    x_shape: tuple[int, ...]
    x_dtype: np.dtype[Any]


def embedding_grad(ids: Array, dout: Array, vocab_size: int) -> Array:
    """The dense gradient of an embedding table: ``dw[v] = Σ_{k: ids[k] = v} dout[k]``.

    Args:
        ids: integer ids of any shape ``S``, values in ``[0, vocab_size)``.
        dout: the gradient of the looked-up vectors, shape ``(*S, dim)``.
        vocab_size: ``V``.
    Returns:
        ``dw`` of shape ``(V, dim)`` and ``dout``'s dtype. No Python loop over tokens: a one-hot
        GEMM for ``V <= ONE_HOT_MAX_VOCAB``, else one ``np.bincount`` (float64 sums).
    Raises:
        ValueError: ids that are not integers, lie outside ``[0, V)`` or do not match
            ``dout.shape[:-1]``.

    >>> import numpy as np
    >>> from fnnet.layers import embedding_grad
    >>> embedding_grad(np.array([[0, 2, 0]]), np.ones((1, 3, 2), np.float32), 3).tolist()
    [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]
    """
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu" or not isinstance(dout, np.ndarray) or dout.shape[:-1] != ids.shape:
        what = f"{shape_text(dout.shape)}" if isinstance(dout, np.ndarray) else type(dout).__name__
        raise ValueError(
            f"embedding_grad: expected integer ids of some shape S and dout (*S, dim), got ids {shape_text(ids.shape)} "
            f"dtype {ids.dtype} and dout {what}"
        )
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"embedding_grad: ids must lie in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]")
    dim = dout.shape[-1]
    flat = ids.reshape(-1).astype(np.intp, copy=False)
    m = flat.size
    d2 = dout.reshape(m, dim)
    if vocab_size <= ONE_HOT_MAX_VOCAB:
        # dw = onehot(ids).T @ dout as one GEMM: a (V, M) matrix of 0/1 is cheap for a small V
        onehot = np.zeros((vocab_size, m), dtype=dout.dtype)
        onehot[flat, np.arange(m)] = 1
        dw: Array = onehot @ d2
        return dw
    # one bincount over the flattened (id, column) pairs: entry id*dim + j of the (V*dim,) sum
    pairs = (flat[:, None] * dim + np.arange(dim)).reshape(-1)
    sums = np.bincount(pairs, weights=d2.reshape(-1), minlength=vocab_size * dim)
    return sums.reshape(vocab_size, dim).astype(dout.dtype, copy=False)


@attrs.frozen
class Embedding(Layer):
    """Look up rows of a table: integer ids of any shape ``(N, ...)`` to vectors ``(N, ..., dim)``.

    ``y = w[x]``. The input is discrete, so it has no gradient: ``backward`` returns as ``dx`` a
    read-only zero array of ``x``'s shape and integer dtype (an Embedding is a first layer), and
    ``grads.w`` is the dense ``(vocab_size, dim)`` sum of ``dout`` rows per id.

    Args:
        vocab_size: ``V``, the number of ids; inputs must lie in ``[0, V)``.
        dim: the vector size.
        w_init: initialiser of ``w`` (default ``N(0, 0.01²)``, the sequel's).

    >>> import numpy as np
    >>> from fnnet.layers import Embedding
    >>> emb = Embedding(5, 2)
    >>> import fnnet
    >>> params, _ = emb.init(fnnet.key(0), (3,))
    >>> y, _, cache = emb.forward(params, None, np.array([[1, 1, 4]]))
    >>> y.shape, bool((y[0, 0] == params.w[1]).all())
    ((1, 3, 2), True)
    >>> emb.backward(params, cache, np.ones_like(y))[1].w[:, 0].tolist()
    [0.0, 2.0, 0.0, 0.0, 1.0]
    """

    vocab_size: int = attrs.field(validator=positive_int)
    dim: int = attrs.field(validator=positive_int)
    w_init: Initializer = attrs.field(factory=Normal)

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(*in_shape, dim)``."""
        return (*in_shape, self.dim)

    def init(self, key: Key, in_shape: Shape) -> tuple[EmbeddingParams, Shape]:
        """``w (vocab_size, dim)`` from ``w_init``."""
        w = self.w_init(key, (self.vocab_size, self.dim), self.vocab_size, self.dim)
        return EmbeddingParams(w), self.out_shape(in_shape)

    def forward(
        self, params: EmbeddingParams, state: None, x: Array, ctx: Ctx = EVAL
    ) -> tuple[Array, None, _EmbeddingCache]:
        """``y = w[x]`` of shape ``(*x.shape, dim)`` and ``w``'s dtype."""
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "iu" or x.ndim < 1:
            what = f"dtype {x.dtype} shape {shape_text(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"Embedding: expected integer ids of shape (N, ...), got {what}")
        (w,) = param_arrays(self, params, "w")
        if w.shape != (self.vocab_size, self.dim):
            raise ValueError(f"Embedding: expected params w of shape ({self.vocab_size}, {self.dim}), got {shape_text(w.shape)}")
        v = w.shape[0]
        if x.size and (int(x.min()) < 0 or int(x.max()) >= v):
            raise ValueError(f"Embedding: ids must lie in [0, {v}), got values in [{x.min()}, {x.max()}]")
        ids = x.reshape(-1).astype(np.intp, copy=False)
        y = params.w.take(ids, axis=0).reshape(*x.shape, params.w.shape[1])
        return y, state, _EmbeddingCache(ids, x.shape, x.dtype)

    def backward(
        self, params: EmbeddingParams, cache: _EmbeddingCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, EmbeddingParams]:
        """``(zeros like x, EmbeddingParams(dw))`` with ``dw`` from :func:`embedding_grad`."""
        expected = (*cache.x_shape, params.w.shape[1])
        if dout.shape != expected:
            check_dout(self, dout, expected)
        _check_dout_dtype(self, dout, params.w.dtype)
        dw = embedding_grad(cache.ids.reshape(cache.x_shape), dout, params.w.shape[0])
        return no_input_grad(cache.x_shape, cache.x_dtype), EmbeddingParams(dw)


class _TimeAffineCache(NamedTuple):
    x2: Array  # the input as (rows, in)
    x_shape: tuple[int, ...]


@attrs.frozen
class TimeAffine(Layer):
    """Affine map over the last axis, keeping the others: ``(N, ..., D)`` to ``(N, ..., units)``.

    ``y = x @ w + b`` with ``w (D, units)``, ``b (units,)`` (:class:`~fnnet.layers.core.AffineParams`).
    Unlike :class:`~fnnet.layers.core.Affine`, which flattens each sample as in the book, the time
    axis of ``(N, T, D)`` is kept: the sequel's TimeAffine.

    Args:
        units: the output size.
        w_init, b_init: initialisers (default: std ``1/sqrt(D)`` normal, as the sequel; zeros).

    >>> import numpy as np
    >>> from fnnet.layers import TimeAffine
    >>> layer = TimeAffine(3)
    >>> import fnnet
    >>> params, out = layer.init(fnnet.key(0), (5, 4))
    >>> out, layer.apply(params, np.ones((2, 5, 4), np.float32)).shape
    ((5, 3), (2, 5, 3))
    """

    units: int = attrs.field(validator=positive_int)
    w_init: Initializer = attrs.field(factory=LeCunNormal)
    b_init: Initializer = attrs.field(factory=Zeros)

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(*in_shape[:-1], units)``."""
        if len(in_shape) < 1:
            raise ValueError(f"TimeAffine: expected in_shape (..., D), got {shape_text(tuple(in_shape))}")
        return (*in_shape[:-1], self.units)

    def init(self, key: Key, in_shape: Shape) -> tuple[AffineParams, Shape]:
        """``w (D, units)``, ``b (units,)``."""
        out = self.out_shape(in_shape)
        d = in_shape[-1]
        kw, kb = split(key)
        return AffineParams(self.w_init(kw, (d, self.units), d, self.units), self.b_init(kb, (self.units,), d, self.units)), out

    def forward(self, params: AffineParams, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, _TimeAffineCache]:
        """``y = x @ w + b`` over the last axis."""
        w, b = param_arrays(self, params, "w", "b")
        if w.ndim != 2 or w.shape[1] != self.units or b.shape != (self.units,):
            raise ValueError(
                f"TimeAffine: expected params w of shape (D, {self.units}) and b of shape ({self.units},), "
                f"got w {shape_text(w.shape)} and b {shape_text(b.shape)}"
            )
        if not isinstance(x, np.ndarray) or x.ndim < 2 or x.shape[-1] != w.shape[0]:
            shape = shape_text(x.shape) if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"TimeAffine: expected input of shape (N, ..., {w.shape[0]}), got {shape}")
        if x.dtype != w.dtype:
            check_dtype(self, x, w.dtype)
        x2 = x.reshape(-1, w.shape[0])
        y = x2 @ w
        y += params.b
        return y.reshape(*x.shape[:-1], w.shape[1]), state, _TimeAffineCache(x2, x.shape)

    def backward(
        self, params: AffineParams, cache: _TimeAffineCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, AffineParams]:
        """``dw = x2.T @ d2``, ``db = Σ d2``, ``dx = d2 @ w.T`` with rows over all leading axes."""
        expected = (*cache.x_shape[:-1], params.w.shape[1])
        if dout.shape != expected:
            check_dout(self, dout, expected)
        _check_dout_dtype(self, dout, params.w.dtype)
        d2 = dout.reshape(-1, params.w.shape[1])
        grads = AffineParams(cache.x2.T @ d2, d2.sum(axis=0))
        if not input_grad:
            return no_input_grad(cache.x_shape, dout.dtype), grads
        return (d2 @ params.w.T).reshape(cache.x_shape), grads
