"""Recurrent layers over whole sequences (the sequel's RNN, LSTM and GRU), with their kernels.

Inputs are batches of sequences ``x`` of shape ``(N, T, D)``; a layer returns every hidden state
``(N, T, H)`` (``return_sequences=True``) or the last one ``(N, H)``.

Two levels:

- the layers :class:`RNN`, :class:`LSTM`, :class:`GRU` follow the :class:`~fnnet.layers.base.Layer`
  contract. Their *state* is the initial hidden (and cell) state: ``None`` means zeros, or an
  :class:`RNNState` / :class:`LSTMState` of ``(N, H)`` arrays. With ``stateful=False`` (the
  default) ``forward`` hands the state back unchanged, so a training loop that threads the model
  state through its batches (``fnnet.fit``) starts every batch from the same initial state. With
  ``stateful=True`` ``forward`` returns the final ``(h, c)`` as the new state, in training and in
  evaluation: running consecutive batches through it is truncated backpropagation through time
  (no gradient flows into the previous batch). ``apply`` (what :func:`fnnet.train.predict` and
  :func:`fnnet.train.evaluate` run) gives ``forward``'s output bit for bit without its cache:
  every layer then holds one step's gates and state besides the output.
- pure kernels for models that need more than ``dx``: ``*_scan(params, x, h0, ...)`` runs a whole
  sequence and returns the hidden states, the final state and a cache; ``*_scan_backward`` takes
  the gradients of the hidden states and of the final state and returns ``dx``, the gradients of
  the initial state and the parameter gradients; ``*_cell`` runs one time step (greedy decoding).
  An encoder-decoder is built from these: the encoder's ``(hT, cT)`` is the decoder's ``(h0, c0)``,
  and the decoder's ``dh0, dc0`` are the encoder's ``dhT, dcT``; a decoder that reads the
  encoder's state at every step (the sequel's peeky decoder) passes it once as
  ``lstm_scan(..., x_const=hT)`` and gets its gradient from ``lstm_scan_backward(...,
  const_grad=True)``. Caches are opaque: their layout is internal to the kernels.

Stateful layers and the training loop. :func:`fnnet.fit` is not the sequel's RNNLM trainer: by
default it shuffles the rows of ``x`` every epoch (so the state carried into row ``i`` of a batch is
that of an unrelated row of the previous batch: not truncated BPTT; ``shuffle=False`` keeps the
order), keeps the carried state from one epoch to the next, and evaluates each set from a fresh
state (zeros, every evaluation batch on its own; learned statistics such as BatchNorm's are kept).
For truncated BPTT over a corpus, cut it into ``N`` streams read side by side
and run the training step (:func:`fnnet.train.make_train_step`) on consecutive windows in order,
starting each epoch afresh (``model_state`` from ``init_state``, i.e. zeros); evaluate and predict
from ``state=None``. Every batch must have the same ``N`` (a last, shorter one is refused in one
line; in ``fit``: ``drop_last=True``). After a step the training state's ``model_state`` holds the
``(N, H)`` arrays, so the skeleton given to :func:`fnnet.checkpoint.load` must hold them too (the
``model_state`` of one forward pass of a batch); a checkpoint resumes bit for bit:

>>> import numpy as np, fnnet
>>> from fnnet.train import init_train_state, make_train_step
>>> V, N, T = 10, 4, 5
>>> ids = fnnet.key(1).generator().integers(0, V, N * 20 + 1)        # a corpus of token ids
>>> xs, ts = ids[:-1].reshape(N, -1), ids[1:].reshape(N, -1)         # N streams (N, 20)
>>> lm = fnnet.serial(fnnet.Embedding(V, 8), fnnet.LSTM(16, stateful=True), fnnet.TimeAffine(V))
>>> step = make_train_step(lm, fnnet.time_softmax_cross_entropy, fnnet.adam(0.01))
>>> state = init_train_state(lm, fnnet.adam(0.01), fnnet.key(0), (T,))
>>> for epoch in range(2):
...     state = state._replace(model_state=lm.init_state((T,)))     # each epoch starts afresh
...     for k in range(0, xs.shape[1], T):                           # consecutive windows, in order
...         state, m = step(state, xs[:, k:k + T], ts[:, k:k + T], fnnet.fold_in(fnnet.key(2), int(state.step)))
>>> state.model_state[1].h.shape                                      # LSTMState(h, c) of (N, H)
(4, 16)

The layer's ``backward`` gives ``dx`` and the parameter gradients only (no gradient reaches the
initial state). The kernels never write into their arguments; the weights are float32 by default
and every kernel computes in the parameters' dtype (``x`` and states must match it).

Gate layouts (the column blocks of ``wx``, ``wh`` and ``b``):

- LSTM: ``(f, g, i, o)``, the sequel's order, so its weights load unchanged::

      A = x @ wx + h @ wh + b;  f, g, i, o = A[:, :H], A[:, H:2H], A[:, 2H:3H], A[:, 3H:]
      c' = σ(f) * c + tanh(g) * σ(i);  h' = σ(o) * tanh(c')

  The sequel's ``Wx``, ``Wh``, ``b`` are ``LSTMParams(Wx, Wh, b)`` as they are (cast float16
  weights with ``fnnet.astype(params, np.float32)``). (A PyTorch LSTM's ``weight_ih`` rows are
  ``(i, f, g, o)``: ``wx = W_ih.T`` with the blocks reordered, ``b = b_ih + b_hh`` likewise.)
- GRU: PyTorch's ``(r, z, n)`` convention, with the reset gate applied to ``h @ wh_n + bhn``::

      r = σ(x wx_r + h wh_r + b_r);  z = σ(x wx_z + h wh_z + b_z)
      n = tanh(x wx_n + b_n + r * (h wh_n + bhn));  h' = (1 - z) * n + z * h

  (from PyTorch: ``wx = W_ih.T``, ``wh = W_hh.T``, ``b = b_ih + [b_hr, b_hz, 0]``, ``bhn = b_hn``.)
- RNN: ``h' = tanh(x @ wx + h @ wh + b)``.

>>> import numpy as np, fnnet
>>> lstm = fnnet.LSTM(8)
>>> params, out_shape = lstm.init(fnnet.key(0), (5, 3))
>>> out_shape, params.wx.shape, params.wh.shape, params.b.shape
((5, 8), (3, 32), (8, 32), (32,))
>>> x = np.ones((2, 5, 3), np.float32)
>>> hs, state, cache = lstm.forward(params, None, x)
>>> dx, grads = lstm.backward(params, cache, np.ones_like(hs))
>>> hs.shape, dx.shape, grads.wh.shape
((2, 5, 8), (2, 5, 3), (8, 32))
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple, overload

import attrs
import numpy as np

from fnnet._validate import boolean, positive_int, shape_text
from fnnet.initializers import Initializer, LeCunNormal, Zeros
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, no_input_grad, param_arrays
from fnnet.random import Key, fold_in, split
from fnnet.typing import Array, Shape

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "RNNParams",
    "LSTMParams",
    "GRUParams",
    "RNNState",
    "LSTMState",
    "RNNCache",
    "LSTMCache",
    "GRUCache",
    "rnn_cell",
    "rnn_scan",
    "rnn_scan_backward",
    "lstm_cell",
    "lstm_scan",
    "lstm_scan_backward",
    "gru_cell",
    "gru_scan",
    "gru_scan_backward",
]


class RNNParams(NamedTuple):
    """Parameters of :class:`RNN`: ``wx (D, H)``, ``wh (H, H)``, ``b (H,)``.

    >>> import fnnet
    >>> p, _ = fnnet.RNN(5).init(fnnet.key(0), (7, 3))  # in_shape (T, D) = (7, 3)
    >>> p.wx.shape, p.wh.shape, p.b.shape
    ((3, 5), (5, 5), (5,))
    """

    wx: Array
    wh: Array
    b: Array


class LSTMParams(NamedTuple):
    """Parameters of :class:`LSTM`: ``wx (D, 4H)``, ``wh (H, 4H)``, ``b (4H,)``, gate blocks ``(f, g, i, o)``.

    Column block ``k`` of ``wx``, ``wh`` and ``b`` (columns ``k*H`` to ``(k+1)*H``) belongs to
    gate ``(f, g, i, o)[k]``.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import LSTMParams, lstm_cell
    >>> p, _ = fnnet.LSTM(5).init(fnnet.key(0), (7, 3))
    >>> p.wx.shape, p.wh.shape, p.b.shape
    ((3, 20), (5, 20), (20,))
    >>> z = np.zeros((1, 4), np.float32)  # H = 1: a forget gate wide open, an output gate shut
    >>> p = LSTMParams(z, z, np.array([100, 0, 0, -100], np.float32))
    >>> h, c = lstm_cell(p, np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32))
    >>> float(c[0, 0]), float(h[0, 0])  # c' = σ(f) c + tanh(g) σ(i) = 1,  h' = σ(o) tanh(c') = 0
    (1.0, 0.0)
    """

    wx: Array
    wh: Array
    b: Array


class GRUParams(NamedTuple):
    """Parameters of :class:`GRU`: ``wx (D, 3H)``, ``wh (H, 3H)``, ``b (3H,)`` with gate blocks
    ``(r, z, n)``, and ``bhn (H,)``, the bias of ``h @ wh_n`` inside the reset product.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import GRUParams, gru_cell
    >>> p, _ = fnnet.GRU(5).init(fnnet.key(0), (7, 3))
    >>> p.wx.shape, p.wh.shape, p.b.shape, p.bhn.shape
    ((3, 15), (5, 15), (15,), (5,))
    >>> z = np.zeros((1, 3), np.float32)  # H = 1, the update gate z (block 1) saturated: h' = h
    >>> gru_cell(GRUParams(z, z, np.array([0, 100, 0], np.float32), z[0, :1]), z[:, :1], z[:, :1] + 2).tolist()
    [[2.0]]
    """

    wx: Array
    wh: Array
    b: Array
    bhn: Array


class RNNState(NamedTuple):
    """Hidden state of :class:`RNN` and :class:`GRU`: ``h (N, H)``.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import RNNState
    >>> rnn = fnnet.RNN(4, stateful=True)
    >>> params, _ = rnn.init(fnnet.key(0), (5, 3))
    >>> h0 = RNNState(np.zeros((2, 4), np.float32))  # the same as passing None
    >>> y, state, _ = rnn.forward(params, h0, np.ones((2, 5, 3), np.float32))
    >>> type(state).__name__, state.h.shape, bool((state.h == y[:, -1]).all())
    ('RNNState', (2, 4), True)
    """

    h: Array


class LSTMState(NamedTuple):
    """State of :class:`LSTM`: hidden ``h (N, H)`` and cell ``c (N, H)``.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import LSTMState
    >>> lstm = fnnet.LSTM(4, stateful=True)
    >>> params, _ = lstm.init(fnnet.key(0), (5, 3))
    >>> s0 = LSTMState(np.zeros((2, 4), np.float32), np.ones((2, 4), np.float32))
    >>> y, s1, _ = lstm.forward(params, s0, np.ones((2, 5, 3), np.float32))
    >>> s1.h.shape, s1.c.shape, bool((s1.h == y[:, -1]).all())
    ((2, 4), (2, 4), True)
    """

    h: Array
    c: Array


class RNNCache(NamedTuple):
    """What :func:`rnn_scan_backward` needs (time-major arrays).

    The third value :func:`rnn_scan` returns (and what the cache of :meth:`RNN.forward` holds).
    Opaque: hand it to :func:`rnn_scan_backward` unchanged; its fields are internal.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import rnn_scan, rnn_scan_backward
    >>> from fnnet.layers.recurrent import RNNCache
    >>> p, _ = fnnet.RNN(4).init(fnnet.key(0), (5, 3))
    >>> hs, hT, cache = rnn_scan(p, np.ones((2, 5, 3), np.float32))
    >>> isinstance(cache, RNNCache), rnn_scan_backward(p, cache, np.ones_like(hs))[0].shape
    (True, (2, 5, 3))
    """

    xt: Array  # (T*N, D): the input, time-major
    hs: Array  # (T+1, N, H): h0, h1, ..., hT
    x_shape: tuple[int, ...]


class LSTMCache(NamedTuple):
    """What :func:`lstm_scan_backward` needs (time-major arrays; the gate layout is internal).

    The third value :func:`lstm_scan` returns (and what the cache of :meth:`LSTM.forward` holds).
    Opaque: hand it to :func:`lstm_scan_backward` unchanged; its fields are internal.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import lstm_scan, lstm_scan_backward
    >>> from fnnet.layers.recurrent import LSTMCache
    >>> p, _ = fnnet.LSTM(4).init(fnnet.key(0), (5, 3))
    >>> hs, (hT, cT), cache = lstm_scan(p, np.ones((2, 5, 3), np.float32))
    >>> isinstance(cache, LSTMCache), lstm_scan_backward(p, cache, np.ones_like(hs))[0].shape
    (True, (2, 5, 3))
    """

    zs: Array  # (T+1, N, D+1+H): each step's GEMM input [x_t, 1, h_{t-1}]; row T: hT
    cs: Array  # (T+1, N, H): c0 .. cT
    gates: Array  # (T, 4, N, H): σ(f), tanh(g), σ(i), σ(o), each gate a contiguous block
    tanh_c: Array  # (T, N, H): tanh(c1) .. tanh(cT)
    x_shape: tuple[int, ...]
    x_const: Array | None  # (N, Dc): the input shared by every step, or None


class GRUCache(NamedTuple):
    """What :func:`gru_scan_backward` needs (time-major arrays; the gate layout is internal).

    The third value :func:`gru_scan` returns (and what the cache of :meth:`GRU.forward` holds).
    Opaque: hand it to :func:`gru_scan_backward` unchanged; its fields are internal.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import gru_scan, gru_scan_backward
    >>> from fnnet.layers.recurrent import GRUCache
    >>> p, _ = fnnet.GRU(4).init(fnnet.key(0), (5, 3))
    >>> hs, hT, cache = gru_scan(p, np.ones((2, 5, 3), np.float32))
    >>> isinstance(cache, GRUCache), gru_scan_backward(p, cache, np.ones_like(hs))[0].shape
    (True, (2, 5, 3))
    """

    xt: Array  # (T*N, D)
    hs: Array  # (T+1, N, H)
    gates: Array  # (3, T, N, H): r, z, n, each gate a contiguous block
    hn: Array  # (T, N, H): h @ wh_n + bhn
    x_shape: tuple[int, ...]


# --- helpers -------------------------------------------------------------------------------------


def _sigmoid_(a: Array) -> None:
    """``a = σ(a)`` in place, as ``0.5 + 0.5 tanh(a / 2)``: exact algebra that never overflows."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5


def _sigmoid(a: Array) -> Array:
    """``σ(a)`` in a new array."""
    out = np.array(a, copy=True)
    _sigmoid_(out)
    return out


def _check_params(fn: str, params: Any, gates: int) -> tuple[Array, Array, int]:
    wx, wh = params.wx, params.wh
    h = wh.shape[0] if wh.ndim == 2 else -1
    if wx.ndim != 2 or wh.shape != (h, gates * h) or wx.shape[1] != gates * h or params.b.shape != (gates * h,):
        raise ValueError(
            f"{fn}: expected params wx (D, {gates}H), wh (H, {gates}H), b ({gates}H,), got "
            f"{shape_text(wx.shape)}, {shape_text(wh.shape)}, {shape_text(params.b.shape)}"
        )
    return wx, wh, h


def _check_x(fn: str, x: Array, wx: Array, skip: int = 0) -> tuple[int, int, int]:
    """Check ``x`` ``(N, T, D)`` against ``wx``, whose first ``skip`` rows read another input."""
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != wx.shape[0] - skip:
        shape = shape_text(x.shape) if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{fn}: expected x of shape (N, T, {wx.shape[0] - skip}), got {shape}")
    if x.dtype != wx.dtype:
        raise ValueError(
            f"{fn}: expected x of dtype {wx.dtype} (the parameters' dtype), got {x.dtype}; "
            f"cast the input with x.astype(np.{wx.dtype}) or the params with fnnet.astype(params, ...)"
        )
    n, t, d = x.shape
    return n, t, d


def _carried(fn: str, name: str, a: Array | None, n: int, h: int, dtype: np.dtype[Any]) -> Array:
    """A checked gradient of a final state as a fresh array the backward loop accumulates into
    (zeros for None); the caller's array is never written."""
    a = _initial(fn, name, a, n, h, dtype)
    return np.zeros((n, h), dtype=dtype) if a is None else a.copy()


def _initial(fn: str, name: str, a: Array | None, n: int, h: int, dtype: np.dtype[Any]) -> Array | None:
    """Check an initial state (or a gradient of a final state): None, or ``(N, H)`` of ``dtype``."""
    if a is None:
        return None
    if not isinstance(a, np.ndarray) or a.shape != (n, h) or a.dtype != dtype:
        what = f"{shape_text(a.shape)} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{fn}: expected {name} of shape ({n}, {h}) and dtype {dtype}, got {what}")
    return a


def _time_major(x: Array) -> Array:
    """``(N, T, D)`` to a C-contiguous ``(T*N, D)``: row ``t*N + n`` is ``x[n, t]``."""
    n, t, d = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(t * n, d)


#: Rows of one input-side GEMM in the RNN and GRU scans (see :func:`_chunk_steps`).
_GEMM_ROWS = 1024


def _chunk_steps(n: int, t: int) -> int:
    """How many time steps' input projections ``x_t @ wx`` are one GEMM: about ``_GEMM_ROWS`` rows
    (at least one step). A scan and its cache-free evaluation take the same chunks: BLAS may round
    a row of a product differently when the product has another number of rows."""
    return max(1, min(t, _GEMM_ROWS // max(n, 1)))


def _x_rows(x: Array, xt: Array, s0: int, s1: int, keep: bool) -> Array:
    """Steps ``s0 .. s1 - 1`` of ``x (N, T, D)`` as time-major rows ``((s1 - s0) N, D)``: a slice
    of the whole time-major input ``xt`` (``keep``), or copied into the start of the buffer ``xt``."""
    n, _, d = x.shape
    if keep:
        return xt[s0 * n : s1 * n]
    rows = xt[: (s1 - s0) * n]
    rows.reshape(s1 - s0, n, d)[...] = x[:, s0:s1].transpose(1, 0, 2)
    return rows


def _batch_major(a: Array, t: int, n: int) -> Array:
    """Time-major ``(T*N, K)`` or ``(T, N, K)`` back to a C-contiguous ``(N, T, K)``."""
    return np.ascontiguousarray(a.reshape(t, n, a.shape[-1]).transpose(1, 0, 2))


def _gate_major(w: Array, order: tuple[int, ...], halve: int = 0) -> Array:
    """Columns ``(K, G*H)`` of gate blocks to ``(G, K, H)``, blocks taken in ``order``, the first
    ``halve`` of them times 0.5 (exact in binary floating point)."""
    k = w.shape[0]
    g = len(order)
    out = np.ascontiguousarray(w.reshape(k, g, -1)[:, list(order)].transpose(1, 0, 2))
    if halve:
        out[:halve] *= 0.5
    return out


def _param_major(g: Array, order: tuple[int, ...]) -> Array:
    """Inverse of :func:`_gate_major` (without halving): ``(G, K, H)`` to ``(K, G*H)``."""
    n_gates, k, h = g.shape
    out = np.empty((k, n_gates * h), dtype=g.dtype)
    out.reshape(k, n_gates, h)[:, list(order)] = g.transpose(1, 0, 2)
    return out


def _check_dhs(fn: str, dhs: Array | None, n: int, t: int, h: int, dtype: np.dtype[Any]) -> Array | None:
    if dhs is None:
        return None
    if not isinstance(dhs, np.ndarray) or dhs.shape != (n, t, h) or dhs.dtype != dtype:
        what = f"{shape_text(dhs.shape)} {dhs.dtype}" if isinstance(dhs, np.ndarray) else type(dhs).__name__
        raise ValueError(f"{fn}: expected dhs of shape ({n}, {t}, {h}) and dtype {dtype}, got {what}")
    return dhs


# --- RNN -----------------------------------------------------------------------------------------


def rnn_cell(params: RNNParams, x_t: Array, h: Array) -> Array:
    """One step of the tanh RNN: ``h' = tanh(x_t @ wx + h @ wh + b)``.

    Args:
        params: :class:`RNNParams`.
        x_t: one time step ``(N, D)``.
        h: the previous hidden state ``(N, H)``.
    Returns:
        The next hidden state ``(N, H)``.

    >>> import numpy as np
    >>> from fnnet.layers import RNNParams, rnn_cell
    >>> p = RNNParams(np.eye(2, dtype=np.float32), np.zeros((2, 2), np.float32), np.zeros(2, np.float32))
    >>> rnn_cell(p, np.array([[0.0, 100.0]], np.float32), np.zeros((1, 2), np.float32)).tolist()
    [[0.0, 1.0]]
    """
    out: Array = np.tanh(x_t @ params.wx + h @ params.wh + params.b)
    return out


def rnn_scan(params: RNNParams, x: Array, h0: Array | None = None) -> tuple[Array, Array, RNNCache]:
    """Run the tanh RNN over whole sequences.

    Args:
        params: :class:`RNNParams` ``wx (D, H)``, ``wh (H, H)``, ``b (H,)``.
        x: inputs ``(N, T, D)`` of the parameters' dtype.
        h0: the initial hidden state ``(N, H)``; ``None`` means zeros.
    Returns:
        ``(hs, hT, cache)``: all hidden states ``(N, T, H)``, the last one ``(N, H)`` (``h0`` when
        ``T == 0``) and the cache for :func:`rnn_scan_backward`.

    >>> import numpy as np
    >>> from fnnet.layers import RNNParams, rnn_scan
    >>> p = RNNParams(np.ones((1, 2), np.float32), np.zeros((2, 2), np.float32), np.zeros(2, np.float32))
    >>> hs, hT, _ = rnn_scan(p, np.zeros((3, 4, 1), np.float32))
    >>> hs.shape, hT.shape
    ((3, 4, 2), (3, 2))
    """
    hs, ht, cache = _rnn_run("rnn_scan", params, x, h0, keep=True)
    assert hs is not None and cache is not None
    return hs, ht, cache


def _rnn_run(
    fn: str, params: RNNParams, x: Array, h0: Array | None, *, keep: bool, sequences: bool = True
) -> tuple[Array | None, Array, RNNCache | None]:
    """:func:`rnn_scan`; with ``keep=False`` no cache (None): the input projections of one chunk
    of steps (:func:`_chunk_steps`) and one step's state overwrite the last's, so an evaluation
    holds ``O(N·H)`` besides the output, and the hidden states ``(N, T, H)`` only with
    ``sequences`` (else None is returned for them). Both ways compute the same bits."""
    wx, wh, hdim = _check_params(fn, params, 1)
    n, t, d = _check_x(fn, x, wx)
    h0 = _initial(fn, "h0", h0, n, hdim, wx.dtype)
    dtype = wx.dtype
    c = _chunk_steps(n, t)
    xt = _time_major(x) if keep else np.empty((c * n, d), dtype=dtype)
    ax2 = np.empty(((t if keep else c) * n, hdim), dtype=dtype)  # x_t @ wx + b, rows time-major
    ax = ax2.reshape(t if keep else c, n, hdim)
    hs = np.empty((t + 1 if keep else 2, n, hdim), dtype=dtype)
    out = np.empty((n, t, hdim), dtype=dtype) if sequences and not keep else None
    hs[0] = 0 if h0 is None else h0
    for s in range(t):
        j = s if keep else s % c
        if s % c == 0:  # the input side of steps s .. s1 - 1: one GEMM
            s1 = min(s + c, t)
            rows = ax2[j * n : (j + s1 - s) * n]
            np.matmul(_x_rows(x, xt, s, s1, keep), wx, out=rows)
            rows += params.b
        h_prev, h = (hs[s], hs[s + 1]) if keep else (hs[s % 2], hs[(s + 1) % 2])
        np.matmul(h_prev, wh, out=h)
        h += ax[j]
        np.tanh(h, out=h)
        if out is not None:
            out[:, s] = h
    ht = hs[t if keep else t % 2].copy()
    if keep:
        return _batch_major(hs[1:], t, n), ht, RNNCache(xt, hs, x.shape)
    return out, ht, None


def rnn_scan_backward(
    params: RNNParams, cache: RNNCache, dhs: Array | None = None, dhT: Array | None = None, input_grad: bool = True
) -> tuple[Array, Array, RNNParams]:
    """Backward of :func:`rnn_scan`.

    Args:
        params, cache: as given to and returned by :func:`rnn_scan`.
        dhs: the loss gradient of every hidden state ``(N, T, H)``, or ``None`` (zeros).
        dhT: the loss gradient of the final state ``(N, H)`` beyond ``dhs[:, -1]``, or ``None``.
        input_grad: ``False`` skips ``dx`` (a read-only zero array is returned).
    Returns:
        ``(dx (N, T, D), dh0 (N, H), grads)`` with ``grads`` an :class:`RNNParams`.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import rnn_scan, rnn_scan_backward
    >>> p, _ = fnnet.RNN(4).init(fnnet.key(0), (6, 3))
    >>> hs, hT, cache = rnn_scan(p, np.ones((2, 6, 3), np.float32))
    >>> dx, dh0, grads = rnn_scan_backward(p, cache, dhT=np.ones_like(hT))  # a loss on hT only
    >>> dx.shape, dh0.shape, grads.wx.shape, grads.wh.shape, grads.b.shape
    ((2, 6, 3), (2, 4), (3, 4), (4, 4), (4,))
    """
    fn = "rnn_scan_backward"
    wx, wh, hdim = _check_params(fn, params, 1)
    n, t, d = cache.x_shape
    dtype = wx.dtype
    dhs = _check_dhs(fn, dhs, n, t, hdim, dtype)
    hs = cache.hs
    da = np.empty((t, n, hdim), dtype=dtype)
    dh = _carried(fn, "dhT", dhT, n, hdim, dtype)
    wh_t = wh.T
    for s in range(t - 1, -1, -1):
        if dhs is not None:
            dh += dhs[:, s]
        a = da[s]
        h = hs[s + 1]
        np.multiply(h, h, out=a)
        np.subtract(1, a, out=a)
        a *= dh
        np.matmul(a, wh_t, out=dh)
    da2 = da.reshape(t * n, hdim)
    grads = RNNParams(cache.xt.T @ da2, hs[:-1].reshape(t * n, hdim).T @ da2, da2.sum(axis=0))
    dx = _batch_major(da2 @ wx.T, t, n) if input_grad else no_input_grad((n, t, d), dtype)
    return dx, dh, grads


# --- LSTM ----------------------------------------------------------------------------------------


def lstm_cell(params: LSTMParams, x_t: Array, h: Array, c: Array) -> tuple[Array, Array]:
    """One LSTM step, gate blocks ``(f, g, i, o)`` of ``A = x_t @ wx + h @ wh + b``.

    Args:
        params: :class:`LSTMParams`.
        x_t: one time step ``(N, D)``.
        h, c: the previous hidden and cell states ``(N, H)``.
    Returns:
        ``(h', c')`` with ``c' = σ(f) c + tanh(g) σ(i)`` and ``h' = σ(o) tanh(c')``.

    >>> import numpy as np
    >>> from fnnet.layers import LSTMParams, lstm_cell
    >>> p = LSTMParams(np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32), np.zeros(4, np.float32))
    >>> h, c = lstm_cell(p, np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32))
    >>> float(c[0, 0])  # σ(0) * 1 + tanh(0) * σ(0)
    0.5
    """
    hdim = params.wh.shape[0]
    a = x_t @ params.wx + h @ params.wh + params.b
    f, g, i, o = (a[:, k * hdim : (k + 1) * hdim] for k in range(4))
    c_new = _sigmoid(f) * c + np.tanh(g) * _sigmoid(i)
    return _sigmoid(o) * np.tanh(c_new), c_new


def _check_x_const(fn: str, x_const: Array | None, x: Array, wx: Array) -> int:
    """Check ``x_const`` ``(N, Dc)`` against ``x`` and ``wx``; return ``Dc`` (0 without one)."""
    if x_const is None:
        return 0
    ok = isinstance(x_const, np.ndarray) and x_const.ndim == 2 and x_const.shape[1] <= wx.shape[0]
    if ok and isinstance(x, np.ndarray) and x.ndim == 3:
        ok = x_const.shape[0] == x.shape[0]
    if not ok:
        what = shape_text(x_const.shape) if isinstance(x_const, np.ndarray) else type(x_const).__name__
        raise ValueError(f"{fn}: expected x_const of shape (N, Dc) with the batch of x and Dc <= {wx.shape[0]}, got {what}")
    if x_const.dtype != wx.dtype:
        raise ValueError(f"{fn}: expected x_const of dtype {wx.dtype} (the parameters' dtype), got {x_const.dtype}")
    return int(x_const.shape[1])


def lstm_scan(
    params: LSTMParams, x: Array, h0: Array | None = None, c0: Array | None = None, *, x_const: Array | None = None
) -> tuple[Array, tuple[Array, Array], LSTMCache]:
    """Run the LSTM over whole sequences (gate blocks ``(f, g, i, o)``, see the module docstring).

    Each step is one GEMM, ``[x_t, 1, h] @ [wx; b; wh]``, into preallocated gate-major buffers
    (every gate block one contiguous ``(N, H)`` array); a zero initial state (``None``) costs no
    recurrent product. ``x_const`` is an input that is the same at every step (a peeky decoder's
    encoder state): it is concatenated before ``x_t`` in ``A = [x_const, x_t] @ wx + h @ wh + b``,
    but multiplied once per sequence, not once per step.

    Args:
        params: :class:`LSTMParams` ``wx (Dc + D, 4H)``, ``wh (H, 4H)``, ``b (4H,)`` (``Dc = 0``
            without ``x_const``; its first ``Dc`` rows read ``x_const``).
        x: inputs ``(N, T, D)`` of the parameters' dtype.
        h0, c0: the initial hidden and cell states ``(N, H)``; ``None`` means zeros.
        x_const: ``(N, Dc)``, the input shared by every step, or ``None``. Its gradient comes
            from :func:`lstm_scan_backward` with ``const_grad=True``.
    Returns:
        ``(hs, (hT, cT), cache)``: all hidden states ``(N, T, H)``, the final hidden and cell
        states ``(N, H)`` and the cache for :func:`lstm_scan_backward`.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import lstm_scan
    >>> p, _ = fnnet.LSTM(4).init(fnnet.key(0), (6, 3))
    >>> x = np.ones((2, 6, 3), np.float32)
    >>> hs, (hT, cT), cache = lstm_scan(p, x)
    >>> hs.shape, bool((hs[:, -1] == hT).all()), cT.shape
    ((2, 6, 4), True, (2, 4))
    >>> hs2, _, _ = lstm_scan(p, x[:, :, 1:], x_const=x[:, 0, :1])  # x's first feature taken once
    >>> bool(np.allclose(hs, hs2, atol=1e-6))
    True
    """
    hs, final, cache = _lstm_run("lstm_scan", params, x, h0, c0, x_const, keep=True)
    assert hs is not None and cache is not None
    return hs, final, cache


def _lstm_run(
    fn: str,
    params: LSTMParams,
    x: Array,
    h0: Array | None,
    c0: Array | None,
    x_const: Array | None,
    *,
    keep: bool,
    sequences: bool = True,
) -> tuple[Array | None, tuple[Array, Array], LSTMCache | None]:
    """:func:`lstm_scan`; with ``keep=False`` no cache (None): one step's input row, gates and
    states overwrite the last's (:func:`_lstm_eval`), so an evaluation holds ``O(N·(D + H))``
    besides the output, and the hidden states ``(N, T, H)`` only with ``sequences`` (else None is
    returned for them). Both ways compute the same bits."""
    wx, wh, hdim = _check_params(fn, params, 4)
    k = _check_x_const(fn, x_const, x, wx)
    n, t, d = _check_x(fn, x, wx, k)
    dtype = wx.dtype
    h0 = _initial(fn, "h0", h0, n, hdim, dtype)
    c0 = _initial(fn, "c0", c0, n, hdim, dtype)
    # One GEMM per step, [x_t, 1, h] @ [wx; b; wh], into gate-major blocks. The sigmoid gates'
    # columns are halved (exact), so one tanh pass over all four blocks gives tanh(a / 2) on f, i,
    # o, and σ(a) = 0.5 + 0.5 tanh(a / 2); tanh(a) on g.
    w = _gate_major(np.concatenate([wx[k:], params.b[None], wh]), (0, 1, 2, 3))  # (4, D+1+H, H)
    w[0] *= 0.5
    w[2:] *= 0.5
    const = None
    if x_const is not None:
        const = np.matmul(x_const, _gate_major(wx[:k], (0, 1, 2, 3)))  # (4, N, H)
        const[0] *= 0.5
        const[2:] *= 0.5
    if not keep:
        hs_eval, final = _lstm_eval(x, w, const, h0, c0, sequences)
        return hs_eval, final, None
    # zs[s] = [x_{s+1}, 1, h_s] (row T holds only hT): the hidden states are written in place
    zs = np.empty((t + 1, n, d + 1 + hdim), dtype=dtype)
    zs[:t, :, :d] = x.transpose(1, 0, 2)
    zs[t, :, :d] = 0
    zs[:, :, d] = 1
    hs = zs[:, :, d + 1 :]
    cs = np.empty((t + 1, n, hdim), dtype=dtype)
    hs[0] = 0 if h0 is None else h0
    cs[0] = 0 if c0 is None else c0
    gates = np.empty((t, 4, n, hdim), dtype=dtype)
    tanh_c = np.empty((t, n, hdim), dtype=dtype)
    tmp = np.empty((n, hdim), dtype=dtype)
    for s in range(t):  # step s reads cs[s] and writes gates[s], cs[s + 1], tanh_c[s]
        _lstm_step(zs[s], w, d, const, gates[s], cs[s] if s or c0 is not None else None, cs[s + 1],
                   tanh_c[s], hs[s + 1], tmp, with_h=bool(s) or h0 is not None)  # fmt: skip
    cache = LSTMCache(zs, cs, gates, tanh_c, x.shape, x_const)
    return _batch_major(hs[1:], t, n), (hs[t].copy(), cs[t].copy()), cache


def _lstm_step(
    z: Array,
    w: Array,
    d: int,
    const: Array | None,
    gs: Array,
    c_old: Array | None,
    c_new: Array,
    tanh_c: Array,
    h_new: Array,
    tmp: Array,
    *,
    with_h: bool,
) -> None:
    """One LSTM step in place: the gates ``gs`` ``(4, N, H)`` from the row ``z = [x_t, 1, h]``
    (without its ``h`` part when ``with_h`` is False: a zero initial state), then ``c_new``,
    ``tanh_c`` and ``h_new``. ``c_old`` None is a zero cell. The sigmoid gates' columns of ``w``
    (and of ``const``) are halved, so one tanh gives ``σ(a) = 0.5 + 0.5 tanh(a / 2)`` on f, i, o."""
    if with_h:
        np.matmul(z, w, out=gs)
    else:
        np.matmul(z[:, : d + 1], w[:, : d + 1], out=gs)
    if const is not None:
        gs += const
    np.tanh(gs, out=gs)
    f, g, i, o = gs
    f *= 0.5
    f += 0.5
    io = gs[2:]
    io *= 0.5
    io += 0.5
    if c_old is not None:
        np.multiply(f, c_old, out=c_new)  # σ(f) c
        np.multiply(i, g, out=tmp)  # σ(i) tanh(g)
        c_new += tmp
    else:
        np.multiply(i, g, out=c_new)
    np.tanh(c_new, out=tanh_c)
    np.multiply(o, tanh_c, out=h_new)


def _lstm_eval(
    x: Array, w: Array, const: Array | None, h0: Array | None, c0: Array | None, sequences: bool
) -> tuple[Array | None, tuple[Array, Array]]:
    """The steps of :func:`_lstm_run` without a cache: ``(hs or None, (hT, cT))``.

    Each step multiplies its row ``[x_t, 1, h]`` by ``w`` as the scan does, from a buffer of the
    scan's row layout (``(N, D+1+H)`` with the same strides), so BLAS sees the same operands; two
    such rows alternate, the step's new ``h`` written into the next one.
    """
    n, t, d = x.shape
    hdim = w.shape[2]
    dtype = w.dtype
    zs = np.empty((2, n, d + 1 + hdim), dtype=dtype)  # [x_t, 1, h_t] of this step and the next
    zs[:, :, d] = 1
    hs = zs[:, :, d + 1 :]
    hs[0] = 0 if h0 is None else h0
    cs = np.empty((2, n, hdim), dtype=dtype)
    cs[0] = 0 if c0 is None else c0
    gs = np.empty((4, n, hdim), dtype=dtype)
    tanh_c = np.empty((n, hdim), dtype=dtype)
    tmp = np.empty((n, hdim), dtype=dtype)
    out = np.empty((n, t, hdim), dtype=dtype) if sequences else None
    for s in range(t):
        now, nxt = s % 2, (s + 1) % 2
        z = zs[now]
        z[:, :d] = x[:, s]
        _lstm_step(z, w, d, const, gs, cs[now] if s or c0 is not None else None, cs[nxt], tanh_c, hs[nxt], tmp,
                   with_h=bool(s) or h0 is not None)  # fmt: skip
        if out is not None:
            out[:, s] = hs[nxt]
    return out, (hs[t % 2].copy(), cs[t % 2].copy())


@overload
def lstm_scan_backward(
    params: LSTMParams,
    cache: LSTMCache,
    dhs: Array | None = ...,
    dhT: Array | None = ...,
    dcT: Array | None = ...,
    input_grad: bool = ...,
    *,
    state_grad: bool = ...,
    const_grad: Literal[False] = ...,
) -> tuple[Array, Array, Array, LSTMParams]: ...


@overload
def lstm_scan_backward(
    params: LSTMParams,
    cache: LSTMCache,
    dhs: Array | None = ...,
    dhT: Array | None = ...,
    dcT: Array | None = ...,
    input_grad: bool = ...,
    *,
    state_grad: bool = ...,
    const_grad: Literal[True],
) -> tuple[Array, Array, Array, LSTMParams, Array]: ...


def lstm_scan_backward(
    params: LSTMParams,
    cache: LSTMCache,
    dhs: Array | None = None,
    dhT: Array | None = None,
    dcT: Array | None = None,
    input_grad: bool = True,
    *,
    state_grad: bool = True,
    const_grad: bool = False,
) -> tuple[Array, Array, Array, LSTMParams] | tuple[Array, Array, Array, LSTMParams, Array]:
    """Backward of :func:`lstm_scan`.

    Args:
        params, cache: as given to and returned by :func:`lstm_scan`.
        dhs: the loss gradient of every hidden state ``(N, T, H)``, or ``None`` (zeros).
        dhT, dcT: the loss gradients of the final hidden and cell states ``(N, H)`` (``dhT`` adds
            to ``dhs[:, -1]``), or ``None`` (zeros).
        input_grad: ``False`` skips ``dx`` (a read-only zero array is returned).
        state_grad: ``False`` skips ``dh0`` and ``dc0`` (read-only zero arrays are returned),
            saving the first step's backward product.
        const_grad: ``True`` also returns the gradient of ``x_const`` (the scan must have had
            one), as a fifth value; ``grads.wx`` covers its rows whatever this flag.
    Returns:
        ``(dx (N, T, D), dh0 (N, H), dc0 (N, H), grads)`` with ``grads`` an :class:`LSTMParams`;
        with ``const_grad=True``, ``(dx, dh0, dc0, grads, dx_const (N, Dc))``.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import lstm_scan, lstm_scan_backward
    >>> p, _ = fnnet.LSTM(4).init(fnnet.key(0), (6, 3))
    >>> hs, _, cache = lstm_scan(p, np.ones((2, 6, 3), np.float32))
    >>> dx, dh0, dc0, grads = lstm_scan_backward(p, cache, np.ones_like(hs))
    >>> dx.shape, dh0.shape, grads.wx.shape
    ((2, 6, 3), (2, 4), (3, 16))
    >>> hs, _, cache = lstm_scan(p, np.ones((2, 6, 2), np.float32), x_const=np.ones((2, 1), np.float32))
    >>> dx, dh0, dc0, grads, dx_const = lstm_scan_backward(p, cache, np.ones_like(hs), const_grad=True)
    >>> dx.shape, dx_const.shape, grads.wx.shape
    ((2, 6, 2), (2, 1), (3, 16))
    """
    if const_grad and cache.x_const is None:
        raise ValueError("lstm_scan_backward: const_grad=True needs the cache of a scan with x_const")
    da, dh, dc = _lstm_backward_scan(params, cache, dhs, dhT, dcT, state_grad=state_grad)
    dx, grads, dx_const = _lstm_backward_weights(params, cache, da, input_grad, const_grad=const_grad)
    if not state_grad:
        dh = dc = no_input_grad(dh.shape, dh.dtype)
    if dx_const is None:
        return dx, dh, dc, grads
    return dx, dh, dc, grads, dx_const


def _lstm_backward_scan(
    params: LSTMParams,
    cache: LSTMCache,
    dhs: Array | None = None,
    dhT: Array | None = None,
    dcT: Array | None = None,
    *,
    state_grad: bool = True,
) -> tuple[Array, Array, Array]:
    """The sequential half of :func:`lstm_scan_backward`: ``(dA (T, N, 4H), dh0, dc0)``."""
    fn = "lstm_scan_backward"
    wx, wh, hdim = _check_params(fn, params, 4)
    n, t, d = cache.x_shape
    x_const = cache.x_const
    k = 0 if x_const is None else x_const.shape[1]
    if wx.shape[0] != k + d:
        raise ValueError(f"{fn}: expected params wx with {k + d} rows (the scan's inputs), got {wx.shape[0]}")
    dtype = wx.dtype
    dhs = _check_dhs(fn, dhs, n, t, hdim, dtype)
    dh = _carried(fn, "dhT", dhT, n, hdim, dtype)
    dc = _carried(fn, "dcT", dcT, n, hdim, dtype)
    gates, cs, tanh_c = cache.gates, cache.cs, cache.tanh_c
    wh_t = np.ascontiguousarray(wh.T)
    dhs_t = None if dhs is None else np.ascontiguousarray(dhs.transpose(1, 0, 2))  # time-major
    da = np.empty((t, n, 4 * hdim), dtype=dtype)  # gradients of the pre-activations A
    blk = np.empty((4, n, hdim), dtype=dtype)
    tmp = np.empty((n, hdim), dtype=dtype)
    for s in range(t - 1, -1, -1):
        if dhs_t is not None:
            dh += dhs_t[s]
        gs = gates[s]
        f, g, i, o = gs
        tc = tanh_c[s]
        # σ'(a) = σ (1 - σ) for f, i, o in one pass over the step's blocks (g's is overwritten)
        np.subtract(1, gs, out=blk)
        blk *= gs
        # dc += dh σ(o) (1 - tanh²(c))
        np.multiply(tc, tc, out=tmp)
        np.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        # dA_o = dh tanh(c) σ'(o)
        blk[3] *= tc
        blk[3] *= dh
        # dA_f = dc c_prev σ'(f), dA_g = dc σ(i) (1 - tanh²(g)), dA_i = dc tanh(g) σ'(i)
        blk[0] *= cs[s]
        np.multiply(g, g, out=blk[1])
        np.subtract(1, blk[1], out=blk[1])
        blk[1] *= i
        blk[2] *= g
        blk[:3] *= dc
        dc *= f
        a = da[s]
        np.copyto(a.reshape(n, 4, hdim), blk.transpose(1, 0, 2))
        if s or state_grad:
            np.matmul(a, wh_t, out=dh)  # dh_prev = dA @ wh.T
    return da, dh, dc


def _lstm_backward_weights(
    params: LSTMParams,
    cache: LSTMCache,
    da: Array,
    input_grad: bool = True,
    *,
    const_grad: bool = False,
    da_sum: Array | None = None,
    spawn: Callable[[Callable[[], Array]], Callable[[], Array]] | None = None,
) -> tuple[Array, LSTMParams, Array | None]:
    """The rest of :func:`lstm_scan_backward` once :func:`_lstm_backward_scan` has given ``dA``:
    products over all steps at once. ``da_sum``, if given, is ``dA.sum(axis=0)`` (a scan with
    ``x_const``). With ``spawn`` (a :attr:`fnnet.layers.Ctx.spawn`), the weight gradient is taken
    as two products over halves of ``dA``'s columns, the first spawned (the same bits wherever it
    runs; not always those of the one product). Returns ``(dx, grads, dx_const)``, ``dx_const``
    None without ``const_grad``."""
    fn = "lstm_scan_backward"
    wx = params.wx
    hdim = params.wh.shape[0]
    n, t, d = cache.x_shape
    x_const = cache.x_const
    k = 0 if x_const is None else x_const.shape[1]
    if const_grad and x_const is None:
        raise ValueError(f"{fn}: const_grad=True needs the cache of a scan with x_const")
    dtype = wx.dtype
    da2 = da.reshape(t * n, 4 * hdim)
    # [dwx; db; dwh] = [x_t, 1, h_{t-1}]^T @ dA over all steps, one GEMM (a zero h0 adds zeros)
    zs_t = cache.zs[:t].reshape(t * n, d + 1 + hdim).T
    if spawn is None:
        dw_all = zs_t @ da2
    else:
        half = 2 * hdim
        join = spawn(lambda: zs_t @ da2[:, :half])
        right = zs_t @ da2[:, half:]
        dw_all = np.concatenate([join(), right], axis=1)
    dwx, dwh = dw_all[:d], dw_all[d + 1 :]
    if x_const is not None:
        if da_sum is None:
            da_sum = da.sum(axis=0)  # (N, 4H): the constant input meets every step's gradient
        dwx = np.concatenate([x_const.T @ da_sum, dwx])
    grads = LSTMParams(dwx, dwh, dw_all[d])
    if input_grad:
        dx = _batch_major(da2 @ wx[k:].T, t, n)
    else:
        dx = no_input_grad((n, t, d), dtype)
    if not const_grad:
        return dx, grads, None
    assert da_sum is not None
    return dx, grads, da_sum @ wx[:k].T


# --- GRU -----------------------------------------------------------------------------------------


def _check_gru(fn: str, params: GRUParams) -> tuple[Array, Array, int]:
    wx, wh, hdim = _check_params(fn, params, 3)
    if params.bhn.shape != (hdim,):
        raise ValueError(f"{fn}: expected params bhn of shape ({hdim},), got {shape_text(params.bhn.shape)}")
    return wx, wh, hdim


def gru_cell(params: GRUParams, x_t: Array, h: Array) -> Array:
    """One GRU step (PyTorch's ``(r, z, n)`` convention, see the module docstring).

    Args:
        params: :class:`GRUParams`.
        x_t: one time step ``(N, D)``.
        h: the previous hidden state ``(N, H)``.
    Returns:
        The next hidden state ``h' = (1 - z) n + z h``, shape ``(N, H)``.

    >>> import numpy as np
    >>> from fnnet.layers import GRUParams, gru_cell
    >>> p = GRUParams(*(np.zeros(s, np.float32) for s in [(1, 3), (1, 3), (3,), (1,)]))
    >>> gru_cell(p, np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32)).tolist()  # z = 0.5, n = 0
    [[0.5]]
    """
    hdim = params.wh.shape[0]
    ax = x_t @ params.wx + params.b
    ah = h @ params.wh
    r = _sigmoid(ax[:, :hdim] + ah[:, :hdim])
    z = _sigmoid(ax[:, hdim : 2 * hdim] + ah[:, hdim : 2 * hdim])
    nn = np.tanh(ax[:, 2 * hdim :] + r * (ah[:, 2 * hdim :] + params.bhn))
    out: Array = nn + z * (h - nn)
    return out


#: The GRU's gates inside the kernels: the parameter order (r, z, n), the two sigmoid gates first.
_GRU_ORDER = (0, 1, 2)


def gru_scan(params: GRUParams, x: Array, h0: Array | None = None) -> tuple[Array, Array, GRUCache]:
    """Run the GRU over whole sequences.

    Args:
        params: :class:`GRUParams` ``wx (D, 3H)``, ``wh (H, 3H)``, ``b (3H,)``, ``bhn (H,)``.
        x: inputs ``(N, T, D)`` of the parameters' dtype.
        h0: the initial hidden state ``(N, H)``; ``None`` means zeros.
    Returns:
        ``(hs, hT, cache)``: all hidden states ``(N, T, H)``, the last one ``(N, H)`` and the
        cache for :func:`gru_scan_backward`.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import gru_scan
    >>> p, _ = fnnet.GRU(4).init(fnnet.key(0), (6, 3))
    >>> hs, hT, cache = gru_scan(p, np.ones((2, 6, 3), np.float32))
    >>> hs.shape, hT.shape
    ((2, 6, 4), (2, 4))
    """
    hs, ht, cache = _gru_run("gru_scan", params, x, h0, keep=True)
    assert hs is not None and cache is not None
    return hs, ht, cache


def _gru_run(
    fn: str, params: GRUParams, x: Array, h0: Array | None, *, keep: bool, sequences: bool = True
) -> tuple[Array | None, Array, GRUCache | None]:
    """:func:`gru_scan`; with ``keep=False`` no cache (None): the gates of one chunk of steps
    (:func:`_chunk_steps`) and one step's state overwrite the last's, so an evaluation holds
    ``O(N·H)`` besides the output, and the hidden states ``(N, T, H)`` only with ``sequences``
    (else None is returned for them). Both ways compute the same bits."""
    wx, wh, hdim = _check_gru(fn, params)
    n, t, d = _check_x(fn, x, wx)
    h0 = _initial(fn, "h0", h0, n, hdim, wx.dtype)
    dtype = wx.dtype
    # r and z get their weights halved so that tanh of the sum is tanh(a / 2)
    wx3 = _gate_major(wx, _GRU_ORDER, halve=2)
    wh3 = _gate_major(wh, _GRU_ORDER, halve=2)
    b3 = _gate_major(params.b[None], _GRU_ORDER, halve=2)
    c = _chunk_steps(n, t)
    xt = _time_major(x) if keep else np.empty((c * n, d), dtype=dtype)
    g2 = np.empty((3, (t if keep else c) * n, hdim), dtype=dtype)  # the gates, rows time-major
    gates = g2.reshape(3, t if keep else c, n, hdim)
    hs = np.empty((t + 1 if keep else 2, n, hdim), dtype=dtype)
    hn = np.empty((t if keep else 1, n, hdim), dtype=dtype)
    out = np.empty((n, t, hdim), dtype=dtype) if sequences and not keep else None
    hs[0] = 0 if h0 is None else h0
    a = np.empty((3, n, hdim), dtype=dtype)
    tmp = np.empty((n, hdim), dtype=dtype)
    for s in range(t):
        j = s if keep else s % c  # the step's place in the gate buffers
        if s % c == 0:  # the input side of steps s .. s1 - 1: one GEMM
            s1 = min(s + c, t)
            rows = g2[:, j * n : (j + s1 - s) * n]
            np.matmul(_x_rows(x, xt, s, s1, keep), wx3, out=rows)
            rows += b3
        g = gates[:, j]
        h_prev, h_next = (hs[s], hs[s + 1]) if keep else (hs[s % 2], hs[(s + 1) % 2])
        hn_s = hn[s if keep else 0]
        np.matmul(h_prev, wh3, out=a)
        rz = g[:2]
        rz += a[:2]
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5
        r, z, nn = g
        np.add(a[2], params.bhn, out=hn_s)
        np.multiply(r, hn_s, out=tmp)
        nn += tmp
        np.tanh(nn, out=nn)
        # h' = n + z (h - n)
        np.subtract(h_prev, nn, out=tmp)
        tmp *= z
        np.add(nn, tmp, out=h_next)
        if out is not None:
            out[:, s] = h_next
    ht = hs[t if keep else t % 2].copy()
    if keep:
        return _batch_major(hs[1:], t, n), ht, GRUCache(xt, hs, gates, hn, x.shape)
    return out, ht, None


def gru_scan_backward(
    params: GRUParams, cache: GRUCache, dhs: Array | None = None, dhT: Array | None = None, input_grad: bool = True
) -> tuple[Array, Array, GRUParams]:
    """Backward of :func:`gru_scan`.

    Args:
        params, cache: as given to and returned by :func:`gru_scan`.
        dhs: the loss gradient of every hidden state ``(N, T, H)``, or ``None`` (zeros).
        dhT: the loss gradient of the final state ``(N, H)`` beyond ``dhs[:, -1]``, or ``None``.
        input_grad: ``False`` skips ``dx`` (a read-only zero array is returned).
    Returns:
        ``(dx (N, T, D), dh0 (N, H), grads)`` with ``grads`` a :class:`GRUParams`.

    >>> import fnnet
    >>> import numpy as np
    >>> from fnnet.layers import gru_scan, gru_scan_backward
    >>> p, _ = fnnet.GRU(4).init(fnnet.key(0), (6, 3))
    >>> hs, hT, cache = gru_scan(p, np.ones((2, 6, 3), np.float32))
    >>> dx, dh0, grads = gru_scan_backward(p, cache, np.ones_like(hs))
    >>> dx.shape, dh0.shape, grads.wx.shape, grads.wh.shape, grads.b.shape, grads.bhn.shape
    ((2, 6, 3), (2, 4), (3, 12), (4, 12), (12,), (4,))
    """
    fn = "gru_scan_backward"
    wx, wh, hdim = _check_gru(fn, params)
    n, t, d = cache.x_shape
    dtype = wx.dtype
    dhs = _check_dhs(fn, dhs, n, t, hdim, dtype)
    dh = _carried(fn, "dhT", dhT, n, hdim, dtype)
    hs, gates, hn = cache.hs, cache.gates, cache.hn
    wh3_t = _gate_major(wh, _GRU_ORDER).transpose(0, 2, 1)  # (3, H, H): wh_k.T
    dax = np.empty((3, t, n, hdim), dtype=dtype)  # gradients of the x-side pre-activations
    dhn = np.empty((t, n, hdim), dtype=dtype)  # ... and of h @ wh_n + bhn
    a = np.empty((3, n, hdim), dtype=dtype)
    tmp = np.empty((n, hdim), dtype=dtype)
    for s in range(t - 1, -1, -1):
        if dhs is not None:
            dh += dhs[:, s]
        r, z, nn = gates[:, s]
        dar, daz, dan = dax[:, s]
        # dA_n = dh (1 - z) (1 - n²)
        np.subtract(1, z, out=dan)
        dan *= dh
        np.multiply(nn, nn, out=tmp)
        np.subtract(1, tmp, out=tmp)
        dan *= tmp
        # dA_z = dh (h - n) σ'(z)
        np.subtract(hs[s], nn, out=daz)
        daz *= dh
        np.multiply(z, z, out=tmp)
        np.subtract(z, tmp, out=tmp)
        daz *= tmp
        # dA_r = dA_n (h wh_n + bhn) σ'(r)
        np.multiply(dan, hn[s], out=dar)
        np.multiply(r, r, out=tmp)
        np.subtract(r, tmp, out=tmp)
        dar *= tmp
        np.multiply(dan, r, out=dhn[s])
        # dh_prev = dh z + dA_r @ wh_r.T + dA_z @ wh_z.T + (dA_n r) @ wh_n.T
        np.matmul(dax[:2, s], wh3_t[:2], out=a[:2])
        np.matmul(dhn[s], wh3_t[2], out=a[2])
        dh *= z
        dh += a[0]
        dh += a[1]
        dh += a[2]
    dax2 = dax.reshape(3, t * n, hdim)
    dhn2 = dhn.reshape(t * n, hdim)
    h_prev_t = hs[:-1].reshape(t * n, hdim).T
    dwh3 = np.empty((3, hdim, hdim), dtype=dtype)
    np.matmul(h_prev_t, dax2[:2], out=dwh3[:2])
    np.matmul(h_prev_t, dhn2, out=dwh3[2])
    ones = np.ones(t * n, dtype=dtype)
    grads = GRUParams(
        _param_major(np.matmul(cache.xt.T, dax2), _GRU_ORDER),
        _param_major(dwh3, _GRU_ORDER),
        _param_major((ones @ dax2)[:, None], _GRU_ORDER)[0],
        ones @ dhn2,
    )
    if not input_grad:
        return no_input_grad((n, t, d), dtype), dh, grads
    dx = np.matmul(dax2, _gate_major(wx, _GRU_ORDER).transpose(0, 2, 1)).sum(axis=0)
    return _batch_major(dx, t, n), dh, grads


# --- layers --------------------------------------------------------------------------------------


class _RecurrentCache(NamedTuple):
    scan: Any  # the scan's cache
    y_shape: tuple[int, ...]


class _Recurrent(Layer):
    """Shared plumbing of :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    __slots__ = ()

    hidden: int
    return_sequences: bool
    stateful: bool
    wx_init: Initializer
    wh_init: Initializer
    b_init: Initializer
    _GATES: ClassVar[int] = 1

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(T, H)`` with ``return_sequences``, else ``(H,)``, for ``in_shape = (T, D)``."""
        if len(in_shape) != 2:
            raise ValueError(f"{type(self).__name__}: expected in_shape (T, D), got {shape_text(tuple(in_shape))}")
        return (in_shape[0], self.hidden) if self.return_sequences else (self.hidden,)

    def _draw(self, key: Key, in_shape: Shape) -> tuple[list[Array], Shape]:
        out = self.out_shape(in_shape)
        d, h, gh = in_shape[1], self.hidden, self._GATES * self.hidden
        kx, kh, kb = split(key, 3)
        return [self.wx_init(kx, (d, gh), d, gh), self.wh_init(kh, (h, gh), h, gh), self.b_init(kb, (gh,), d, gh)], out

    @abc.abstractmethod
    def _scan(self, params: Any, x: Array, state: Any) -> tuple[Array, Any, Any]:
        """``(hs, final_state_record, scan_cache)``."""

    @abc.abstractmethod
    def _scan_backward(self, params: Any, cache: Any, dhs: Array | None, dhT: Array | None, input_grad: bool) -> tuple[Array, Any]:
        """``(dx, grads)``."""

    def _h0(self, state: Any, fields: tuple[str, ...], x: Array, dtype: np.dtype[Any]) -> tuple[Array | None, ...]:
        """The initial state's arrays (``None`` for zeros), checked against the batch."""
        name = type(self).__name__
        if state is None:
            return (None,) * len(fields)
        if not (isinstance(state, tuple) and getattr(state, "_fields", None) == fields):
            want = "LSTMState(h, c)" if len(fields) == 2 else "RNNState(h)"
            raise ValueError(f"{name}: expected state None or {want}, got {type(state).__name__}")
        want_shape = (x.shape[0], self.hidden)
        for field, a in zip(fields, state):
            if not isinstance(a, np.ndarray) or a.shape != want_shape or a.dtype != dtype:
                what = f"{shape_text(a.shape)} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                hint = (
                    "; a stateful layer carries its state between batches of one size: train on equal batches "
                    "(fit: drop_last=True) and evaluate or predict from state=None"
                    if self.stateful
                    else ""
                )
                raise ValueError(
                    f"{name}: expected state.{field} of shape {shape_text(want_shape)} and dtype {dtype} for this batch, got {what}{hint}"
                )
        return tuple(state)

    def _scan_eval(self, params: Any, x: Array, state: Any) -> tuple[Array | None, Any]:
        """``(hs, final_state_record)`` of :meth:`_scan` bit for bit, without its cache; ``hs`` may
        be None when the layer does not return sequences."""
        hs, final, _ = self._scan(params, x, state)
        return hs, final

    def _check_input(self, params: Any, x: Any) -> None:
        names = ("wx", "wh", "b", "bhn") if isinstance(self, GRU) else ("wx", "wh", "b")
        wx, wh = param_arrays(self, params, *names)[:2]
        gh = self._GATES * self.hidden
        if wx.ndim != 2 or wx.shape[1] != gh or wh.shape != (self.hidden, gh):
            raise ValueError(
                f"{type(self).__name__}: expected params of hidden size {self.hidden}: wx (D, {gh}) and wh "
                f"({self.hidden}, {gh}), got wx {shape_text(wx.shape)} and wh {shape_text(wh.shape)}"
            )
        if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != params.wx.shape[0]:
            shape = shape_text(x.shape) if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"{type(self).__name__}: expected input of shape (N, T, {params.wx.shape[0]}), got {shape}")

    def forward(self, params: Any, state: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any, _RecurrentCache]:
        """``x (N, T, D)`` to ``hs (N, T, H)`` (or ``hT (N, H)``); see the class docstring for the state."""
        self._check_input(params, x)
        try:
            hs, final, cache = self._scan(params, x, state)
        except ValueError as e:  # name the layer, not the kernel
            raise ValueError(f"{type(self).__name__}: {str(e).split(': ', 1)[-1]}") from None
        y = hs if self.return_sequences else final.h
        return y, (final if self.stateful else state), _RecurrentCache(cache, y.shape)

    def apply(self, params: Any, x: Array, *, state: Any = None, ctx: Ctx = EVAL) -> Array:
        """The output alone, ``forward(params, state, x, ctx)[0]`` bit for bit, keeping no cache:
        every layer holds one step's gates and state (and the output), not every step's.

        >>> import numpy as np, fnnet
        >>> gru = fnnet.GRU(4, return_sequences=False)
        >>> params, _ = gru.init(fnnet.key(0), (50, 3))
        >>> x = np.ones((2, 50, 3), np.float32)
        >>> y = gru.apply(params, x)      # (N, H): the last hidden state; no (T, N, 3H) gates kept
        >>> y.shape, bool((y == gru.forward(params, None, x)[0]).all())
        ((2, 4), True)
        """
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{type(self).__name__}.apply: expected x as a NumPy array, got {type(x).__name__}")
        self._check_input(params, x)
        try:
            hs, final = self._scan_eval(params, x, state)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {str(e).split(': ', 1)[-1]}") from None
        if not self.return_sequences:
            h: Array = final.h
            return h
        assert hs is not None
        return hs

    def backward(self, params: Any, cache: _RecurrentCache, dout: Array, input_grad: bool = True) -> tuple[Array, Any]:
        """``(dx (N, T, D), grads)``; no gradient reaches the initial state (use the scan kernels for that)."""
        if dout.shape != cache.y_shape:
            check_dout(self, dout, cache.y_shape)
        if dout.dtype != params.wx.dtype:
            raise ValueError(
                f"{type(self).__name__}.backward: expected dout of dtype {params.wx.dtype} (the parameters' dtype), got {dout.dtype}"
            )
        if self.return_sequences:
            return self._scan_backward(params, cache.scan, dout, None, input_grad)
        return self._scan_backward(params, cache.scan, None, dout, input_grad)


_DOC_LAYER = """
    Args:
        hidden: ``H``, the size of the hidden state.
        return_sequences: output every hidden state ``(N, T, H)`` (True) or the last ``(N, H)``.
        stateful: False: the state passed to ``forward`` (``None`` = zeros, or the initial state
            record) is the initial state and comes back unchanged. True: ``forward`` returns the
            final state as the new state (truncated backpropagation through time over
            consecutive batches of the same size: :func:`fnnet.fit` with ``shuffle=False`` and
            ``drop_last=True``, or the loop in the module docstring, which also starts each
            epoch from zeros).
        wx_init, wh_init, b_init: initialisers of ``wx``, ``wh`` and the biases (defaults: std
            ``1/sqrt(fan_in)`` normal, as the sequel, and zeros).
"""


@attrs.frozen
class RNN(_Recurrent):
    __doc__ = (
        """Elman RNN ``h_t = tanh(x_t @ wx + h_{t-1} @ wh + b)`` over sequences ``(N, T, D)``.

    Params :class:`RNNParams`; state ``None`` or :class:`RNNState`. Kernels: :func:`rnn_scan`,
    :func:`rnn_scan_backward`, :func:`rnn_cell`.
"""
        + _DOC_LAYER
        + """
    >>> import numpy as np, fnnet
    >>> from fnnet.layers import RNN
    >>> rnn = RNN(6, return_sequences=False)
    >>> params, out_shape = rnn.init(fnnet.key(0), (4, 3))  # in_shape (T, D)
    >>> y, state, cache = rnn.forward(params, None, np.ones((2, 4, 3), np.float32))  # x (N, T, D)
    >>> out_shape, y.shape, state  # the last hidden state only; not stateful: None comes back
    ((6,), (2, 6), None)
    >>> rnn.backward(params, cache, np.ones_like(y))[0].shape
    (2, 4, 3)
"""
    )

    hidden: int = attrs.field(validator=positive_int)
    return_sequences: bool = attrs.field(default=True, validator=boolean)
    stateful: bool = attrs.field(default=False, validator=boolean)
    wx_init: Initializer = attrs.field(factory=LeCunNormal)
    wh_init: Initializer = attrs.field(factory=LeCunNormal)
    b_init: Initializer = attrs.field(factory=Zeros)

    def init(self, key: Key, in_shape: Shape) -> tuple[RNNParams, Shape]:
        """``wx (D, H)``, ``wh (H, H)``, ``b (H,)`` for ``in_shape = (T, D)``."""
        arrays, out = self._draw(key, in_shape)
        return RNNParams(*arrays), out

    def _scan(self, params: RNNParams, x: Array, state: Any) -> tuple[Array, RNNState, RNNCache]:
        (h0,) = self._h0(state, RNNState._fields, x, params.wx.dtype)
        hs, ht, cache = rnn_scan(params, x, h0)
        return hs, RNNState(ht), cache

    def _scan_eval(self, params: RNNParams, x: Array, state: Any) -> tuple[Array | None, RNNState]:
        (h0,) = self._h0(state, RNNState._fields, x, params.wx.dtype)
        hs, ht, _ = _rnn_run("rnn_scan", params, x, h0, keep=False, sequences=self.return_sequences)
        return hs, RNNState(ht)

    def _scan_backward(self, params: RNNParams, cache: RNNCache, dhs: Array | None, dhT: Array | None, input_grad: bool) -> tuple[Array, RNNParams]:
        dx, _, grads = rnn_scan_backward(params, cache, dhs, dhT, input_grad)
        return dx, grads


@attrs.frozen
class LSTM(_Recurrent):
    __doc__ = (
        """Long short-term memory over sequences ``(N, T, D)``, gate blocks ``(f, g, i, o)``.

    ``A = x_t @ wx + h @ wh + b``; ``c_t = σ(A_f) c + tanh(A_g) σ(A_i)``; ``h_t = σ(A_o) tanh(c_t)``:
    the sequel's layout, so its ``Wx``, ``Wh``, ``b`` load as :class:`LSTMParams` unchanged.
    State ``None`` or :class:`LSTMState`. Kernels: :func:`lstm_scan`, :func:`lstm_scan_backward`,
    :func:`lstm_cell`.
"""
        + _DOC_LAYER
        + """
    >>> import numpy as np, fnnet
    >>> from fnnet.layers import LSTM
    >>> lstm = LSTM(8, stateful=True)
    >>> params, out_shape = lstm.init(fnnet.key(0), (5, 3))  # in_shape (T, D)
    >>> x = np.ones((2, 5, 3), np.float32)  # (N, T, D)
    >>> y, state, cache = lstm.forward(params, None, x)
    >>> out_shape, y.shape, state.h.shape, state.c.shape
    ((5, 8), (2, 5, 8), (2, 8), (2, 8))
    >>> y2, _, _ = lstm.forward(params, state, x)  # the next batch continues from (h, c)
    >>> y10, _, _ = lstm.forward(params, None, np.concatenate([x, x], axis=1))
    >>> bool(np.allclose(y2, y10[:, 5:], atol=1e-6))
    True
"""
    )

    _GATES: ClassVar[int] = 4

    hidden: int = attrs.field(validator=positive_int)
    return_sequences: bool = attrs.field(default=True, validator=boolean)
    stateful: bool = attrs.field(default=False, validator=boolean)
    wx_init: Initializer = attrs.field(factory=LeCunNormal)
    wh_init: Initializer = attrs.field(factory=LeCunNormal)
    b_init: Initializer = attrs.field(factory=Zeros)

    def init(self, key: Key, in_shape: Shape) -> tuple[LSTMParams, Shape]:
        """``wx (D, 4H)``, ``wh (H, 4H)``, ``b (4H,)`` for ``in_shape = (T, D)``."""
        arrays, out = self._draw(key, in_shape)
        return LSTMParams(*arrays), out

    def _scan(self, params: LSTMParams, x: Array, state: Any) -> tuple[Array, LSTMState, LSTMCache]:
        h0, c0 = self._h0(state, LSTMState._fields, x, params.wx.dtype)
        hs, (ht, ct), cache = lstm_scan(params, x, h0, c0)
        return hs, LSTMState(ht, ct), cache

    def _scan_eval(self, params: LSTMParams, x: Array, state: Any) -> tuple[Array | None, LSTMState]:
        h0, c0 = self._h0(state, LSTMState._fields, x, params.wx.dtype)
        hs, (ht, ct), _ = _lstm_run("lstm_scan", params, x, h0, c0, None, keep=False, sequences=self.return_sequences)
        return hs, LSTMState(ht, ct)

    def _scan_backward(self, params: LSTMParams, cache: LSTMCache, dhs: Array | None, dhT: Array | None, input_grad: bool) -> tuple[Array, LSTMParams]:
        dx, _, _, grads = lstm_scan_backward(params, cache, dhs, dhT, None, input_grad, state_grad=False)
        return dx, grads


@attrs.frozen
class GRU(_Recurrent):
    __doc__ = (
        """Gated recurrent unit over sequences ``(N, T, D)``, PyTorch's ``(r, z, n)`` convention.

    ``r, z = σ(x wx_{r,z} + h wh_{r,z} + b_{r,z})``; ``n = tanh(x wx_n + b_n + r (h wh_n + bhn))``;
    ``h_t = (1 - z) n + z h``. Params :class:`GRUParams`; state ``None`` or :class:`RNNState`.
    Kernels: :func:`gru_scan`, :func:`gru_scan_backward`, :func:`gru_cell`.
"""
        + _DOC_LAYER
        + """
    >>> import numpy as np, fnnet
    >>> from fnnet.layers import GRU, RNNState
    >>> gru = GRU(4)
    >>> params, out_shape = gru.init(fnnet.key(0), (6, 3))  # in_shape (T, D)
    >>> h0 = RNNState(np.full((2, 4), 0.5, np.float32))
    >>> y, state, cache = gru.forward(params, h0, np.ones((2, 6, 3), np.float32))
    >>> out_shape, y.shape, state is h0  # not stateful: the initial state comes back unchanged
    ((6, 4), (2, 6, 4), True)
    >>> dx, grads = gru.backward(params, cache, np.ones_like(y))
    >>> dx.shape, grads.bhn.shape
    ((2, 6, 3), (4,))
"""
    )

    _GATES: ClassVar[int] = 3

    hidden: int = attrs.field(validator=positive_int)
    return_sequences: bool = attrs.field(default=True, validator=boolean)
    stateful: bool = attrs.field(default=False, validator=boolean)
    wx_init: Initializer = attrs.field(factory=LeCunNormal)
    wh_init: Initializer = attrs.field(factory=LeCunNormal)
    b_init: Initializer = attrs.field(factory=Zeros)

    def init(self, key: Key, in_shape: Shape) -> tuple[GRUParams, Shape]:
        """``wx (D, 3H)``, ``wh (H, 3H)``, ``b (3H,)``, ``bhn (H,)`` for ``in_shape = (T, D)``."""
        arrays, out = self._draw(key, in_shape)
        bhn = self.b_init(fold_in(key, 3), (self.hidden,), self.hidden, self.hidden)
        return GRUParams(arrays[0], arrays[1], arrays[2], bhn), out

    def _scan(self, params: GRUParams, x: Array, state: Any) -> tuple[Array, RNNState, GRUCache]:
        (h0,) = self._h0(state, RNNState._fields, x, params.wx.dtype)
        hs, ht, cache = gru_scan(params, x, h0)
        return hs, RNNState(ht), cache

    def _scan_eval(self, params: GRUParams, x: Array, state: Any) -> tuple[Array | None, RNNState]:
        (h0,) = self._h0(state, RNNState._fields, x, params.wx.dtype)
        hs, ht, _ = _gru_run("gru_scan", params, x, h0, keep=False, sequences=self.return_sequences)
        return hs, RNNState(ht)

    def _scan_backward(self, params: GRUParams, cache: GRUCache, dhs: Array | None, dhT: Array | None, input_grad: bool) -> tuple[Array, GRUParams]:
        dx, _, grads = gru_scan_backward(params, cache, dhs, dhT, input_grad)
        return dx, grads

