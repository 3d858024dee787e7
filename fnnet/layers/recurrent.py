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
  (no gradient flows into the previous batch).
- pure kernels for models that need more than ``dx``: ``*_scan(params, x, h0, ...)`` runs a whole
  sequence and returns the hidden states, the final state and a cache; ``*_scan_backward`` takes
  the gradients of the hidden states and of the final state and returns ``dx``, the gradients of
  the initial state and the parameter gradients; ``*_cell`` runs one time step (greedy decoding).

Gate layouts (the column blocks of ``wx``, ``wh`` and ``b``):

- LSTM: ``(f, g, i, o)``, the sequel's order, so its weights load unchanged::

      A = x @ wx + h @ wh + b;  f, g, i, o = A[:, :H], A[:, H:2H], A[:, 2H:3H], A[:, 3H:]
      c' = σ(f) * c + tanh(g) * σ(i);  h' = σ(o) * tanh(c')

  (A PyTorch LSTM's ``weight_ih`` rows are ``(i, f, g, o)``: ``wx = W_ih.T`` with the blocks
  reordered, ``b = b_ih + b_hh`` reordered likewise.)
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
from typing import Any, ClassVar, NamedTuple

import attrs
import numpy as np

from fnnet._validate import boolean, positive_int
from fnnet.initializers import Initializer, LeCunNormal, Zeros
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, no_input_grad
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
    """Parameters of :class:`RNN`: ``wx (D, H)``, ``wh (H, H)``, ``b (H,)``."""

    wx: Array
    wh: Array
    b: Array


class LSTMParams(NamedTuple):
    """Parameters of :class:`LSTM`: ``wx (D, 4H)``, ``wh (H, 4H)``, ``b (4H,)``, gate blocks ``(f, g, i, o)``."""

    wx: Array
    wh: Array
    b: Array


class GRUParams(NamedTuple):
    """Parameters of :class:`GRU`: ``wx (D, 3H)``, ``wh (H, 3H)``, ``b (3H,)`` with gate blocks
    ``(r, z, n)``, and ``bhn (H,)``, the bias of ``h @ wh_n`` inside the reset product."""

    wx: Array
    wh: Array
    b: Array
    bhn: Array


class RNNState(NamedTuple):
    """Hidden state of :class:`RNN` and :class:`GRU`: ``h (N, H)``."""

    h: Array


class LSTMState(NamedTuple):
    """State of :class:`LSTM`: hidden ``h (N, H)`` and cell ``c (N, H)``."""

    h: Array
    c: Array


class RNNCache(NamedTuple):
    """What :func:`rnn_scan_backward` needs (time-major arrays)."""

    xt: Array  # (T*N, D): the input, time-major
    hs: Array  # (T+1, N, H): h0, h1, ..., hT
    x_shape: tuple[int, ...]


class LSTMCache(NamedTuple):
    """What :func:`lstm_scan_backward` needs (time-major arrays)."""

    xt: Array  # (T*N, D)
    hs: Array  # (T+1, N, H): h0 .. hT
    cs: Array  # (T+1, N, H): c0 .. cT
    gates: Array  # (T, N, 4H): σ(f), tanh(g), σ(i), σ(o)
    tanh_c: Array  # (T, N, H): tanh(c1) .. tanh(cT)
    x_shape: tuple[int, ...]


class GRUCache(NamedTuple):
    """What :func:`gru_scan_backward` needs (time-major arrays)."""

    xt: Array  # (T*N, D)
    hs: Array  # (T+1, N, H)
    gates: Array  # (T, N, 3H): r, z, n
    hn: Array  # (T, N, H): h @ wh_n + bhn
    x_shape: tuple[int, ...]


# --- helpers -------------------------------------------------------------------------------------


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1 else ")")


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
            f"{_fmt(wx.shape)}, {_fmt(wh.shape)}, {_fmt(params.b.shape)}"
        )
    return wx, wh, h


def _check_x(fn: str, x: Array, wx: Array) -> tuple[int, int, int]:
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != wx.shape[0]:
        shape = _fmt(x.shape) if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{fn}: expected x of shape (N, T, {wx.shape[0]}), got {shape}")
    if x.dtype != wx.dtype:
        raise ValueError(
            f"{fn}: expected x of dtype {wx.dtype} (the parameters' dtype), got {x.dtype}; "
            f"cast the input with x.astype(np.{wx.dtype}) or the params with fnnet.astype(params, ...)"
        )
    n, t, d = x.shape
    return n, t, d


def _initial(fn: str, name: str, a: Array | None, n: int, h: int, dtype: np.dtype[Any]) -> Array | None:
    """Check an initial state (or a gradient of a final state): None, or ``(N, H)`` of ``dtype``."""
    if a is None:
        return None
    if not isinstance(a, np.ndarray) or a.shape != (n, h) or a.dtype != dtype:
        what = f"{_fmt(a.shape)} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{fn}: expected {name} of shape ({n}, {h}) and dtype {dtype}, got {what}")
    return a


def _time_major(x: Array) -> Array:
    """``(N, T, D)`` to a C-contiguous ``(T*N, D)``: row ``t*N + n`` is ``x[n, t]``."""
    n, t, d = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(t * n, d)


def _batch_major(a: Array, t: int, n: int) -> Array:
    """Time-major ``(T*N, K)`` or ``(T, N, K)`` back to a C-contiguous ``(N, T, K)``."""
    return np.ascontiguousarray(a.reshape(t, n, -1).transpose(1, 0, 2))


def _check_dhs(fn: str, dhs: Array | None, n: int, t: int, h: int, dtype: np.dtype[Any]) -> Array | None:
    if dhs is None:
        return None
    if not isinstance(dhs, np.ndarray) or dhs.shape != (n, t, h) or dhs.dtype != dtype:
        what = f"{_fmt(dhs.shape)} {dhs.dtype}" if isinstance(dhs, np.ndarray) else type(dhs).__name__
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

    >>> p = RNNParams(np.ones((1, 2), np.float32), np.zeros((2, 2), np.float32), np.zeros(2, np.float32))
    >>> hs, hT, _ = rnn_scan(p, np.zeros((3, 4, 1), np.float32))
    >>> hs.shape, hT.shape
    ((3, 4, 2), (3, 2))
    """
    fn = "rnn_scan"
    wx, wh, hdim = _check_params(fn, params, 1)
    n, t, _ = _check_x(fn, x, wx)
    h0 = _initial(fn, "h0", h0, n, hdim, wx.dtype)
    xt = _time_major(x)
    ax = (xt @ wx).reshape(t, n, hdim)
    ax += params.b
    hs = np.empty((t + 1, n, hdim), dtype=wx.dtype)
    hs[0] = 0 if h0 is None else h0
    for s in range(t):
        h = hs[s + 1]
        np.matmul(hs[s], wh, out=h)
        h += ax[s]
        np.tanh(h, out=h)
    return _batch_major(hs[1:], t, n), hs[t].copy(), RNNCache(xt, hs, x.shape)


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
    """
    fn = "rnn_scan_backward"
    wx, wh, hdim = _check_params(fn, params, 1)
    n, t, d = cache.x_shape
    dtype = wx.dtype
    dhs = _check_dhs(fn, dhs, n, t, hdim, dtype)
    dhT = _initial(fn, "dhT", dhT, n, hdim, dtype)
    hs = cache.hs
    da = np.empty((t, n, hdim), dtype=dtype)
    dh = np.zeros((n, hdim), dtype=dtype) if dhT is None else dhT.copy()
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


def lstm_scan(
    params: LSTMParams, x: Array, h0: Array | None = None, c0: Array | None = None
) -> tuple[Array, tuple[Array, Array], LSTMCache]:
    """Run the LSTM over whole sequences (gate blocks ``(f, g, i, o)``, see the module docstring).

    ``x @ wx + b`` is one GEMM over all time steps; each step adds ``h @ wh`` and applies the gates
    in preallocated buffers.

    Args:
        params: :class:`LSTMParams` ``wx (D, 4H)``, ``wh (H, 4H)``, ``b (4H,)``.
        x: inputs ``(N, T, D)`` of the parameters' dtype.
        h0, c0: the initial hidden and cell states ``(N, H)``; ``None`` means zeros.
    Returns:
        ``(hs, (hT, cT), cache)``: all hidden states ``(N, T, H)``, the final hidden and cell
        states ``(N, H)`` and the cache for :func:`lstm_scan_backward`.

    >>> import fnnet
    >>> p, _ = fnnet.LSTM(4).init(fnnet.key(0), (6, 3))
    >>> hs, (hT, cT), cache = lstm_scan(p, np.ones((2, 6, 3), np.float32))
    >>> hs.shape, bool((hs[:, -1] == hT).all()), cT.shape
    ((2, 6, 4), True, (2, 4))
    """
    fn = "lstm_scan"
    wx, wh, hdim = _check_params(fn, params, 4)
    n, t, _ = _check_x(fn, x, wx)
    h0 = _initial(fn, "h0", h0, n, hdim, wx.dtype)
    c0 = _initial(fn, "c0", c0, n, hdim, wx.dtype)
    dtype = wx.dtype
    xt = _time_major(x)
    gates = (xt @ wx).reshape(t, n, 4 * hdim)
    gates += params.b
    hs = np.empty((t + 1, n, hdim), dtype=dtype)
    cs = np.empty((t + 1, n, hdim), dtype=dtype)
    tanh_c = np.empty((t, n, hdim), dtype=dtype)
    hs[0] = 0 if h0 is None else h0
    cs[0] = 0 if c0 is None else c0
    a = np.empty((n, 4 * hdim), dtype=dtype)
    tmp = np.empty((n, hdim), dtype=dtype)
    h1, h2, h3 = hdim, 2 * hdim, 3 * hdim
    for s in range(t):
        g = gates[s]
        np.matmul(hs[s], wh, out=a)
        g += a
        _sigmoid_(g[:, :h1])
        np.tanh(g[:, h1:h2], out=g[:, h1:h2])
        _sigmoid_(g[:, h2:])
        c = cs[s + 1]
        np.multiply(g[:, :h1], cs[s], out=c)  # σ(f) c
        np.multiply(g[:, h1:h2], g[:, h2:h3], out=tmp)  # tanh(g) σ(i)
        c += tmp
        np.tanh(c, out=tanh_c[s])
        np.multiply(g[:, h3:], tanh_c[s], out=hs[s + 1])
    cache = LSTMCache(xt, hs, cs, gates, tanh_c, x.shape)
    return _batch_major(hs[1:], t, n), (hs[t].copy(), cs[t].copy()), cache


def lstm_scan_backward(
    params: LSTMParams,
    cache: LSTMCache,
    dhs: Array | None = None,
    dhT: Array | None = None,
    dcT: Array | None = None,
    input_grad: bool = True,
) -> tuple[Array, Array, Array, LSTMParams]:
    """Backward of :func:`lstm_scan`.

    Args:
        params, cache: as given to and returned by :func:`lstm_scan`.
        dhs: the loss gradient of every hidden state ``(N, T, H)``, or ``None`` (zeros).
        dhT, dcT: the loss gradients of the final hidden and cell states ``(N, H)`` (``dhT`` adds
            to ``dhs[:, -1]``), or ``None`` (zeros).
        input_grad: ``False`` skips ``dx`` (a read-only zero array is returned).
    Returns:
        ``(dx (N, T, D), dh0 (N, H), dc0 (N, H), grads)`` with ``grads`` an :class:`LSTMParams`.

    >>> import fnnet
    >>> p, _ = fnnet.LSTM(4).init(fnnet.key(0), (6, 3))
    >>> hs, _, cache = lstm_scan(p, np.ones((2, 6, 3), np.float32))
    >>> dx, dh0, dc0, grads = lstm_scan_backward(p, cache, np.ones_like(hs))
    >>> dx.shape, dh0.shape, grads.wx.shape
    ((2, 6, 3), (2, 4), (3, 16))
    """
    fn = "lstm_scan_backward"
    wx, wh, hdim = _check_params(fn, params, 4)
    n, t, d = cache.x_shape
    dtype = wx.dtype
    dhs = _check_dhs(fn, dhs, n, t, hdim, dtype)
    dh = np.zeros((n, hdim), dtype=dtype) if _initial(fn, "dhT", dhT, n, hdim, dtype) is None else dhT.copy()  # type: ignore[union-attr]
    dc = np.zeros((n, hdim), dtype=dtype) if _initial(fn, "dcT", dcT, n, hdim, dtype) is None else dcT.copy()  # type: ignore[union-attr]
    gates, cs, tanh_c = cache.gates, cache.cs, cache.tanh_c
    da = np.empty((t, n, 4 * hdim), dtype=dtype)
    tmp = np.empty((n, hdim), dtype=dtype)
    h1, h2, h3 = hdim, 2 * hdim, 3 * hdim
    wh_t = wh.T
    for s in range(t - 1, -1, -1):
        if dhs is not None:
            dh += dhs[:, s]
        g = gates[s]
        f, gg, i, o = g[:, :h1], g[:, h1:h2], g[:, h2:h3], g[:, h3:]
        tc = tanh_c[s]
        a = da[s]
        da_f, da_g, da_i, da_o = a[:, :h1], a[:, h1:h2], a[:, h2:h3], a[:, h3:]
        # dc += dh σ(o) (1 - tanh²(c))
        np.multiply(tc, tc, out=tmp)
        np.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        # dA_o = dh tanh(c) σ'(o), with σ' = σ (1 - σ)
        np.multiply(dh, tc, out=da_o)
        np.multiply(o, o, out=tmp)
        np.subtract(o, tmp, out=tmp)
        da_o *= tmp
        # dA_f = dc c_prev σ'(f)
        np.multiply(dc, cs[s], out=da_f)
        np.multiply(f, f, out=tmp)
        np.subtract(f, tmp, out=tmp)
        da_f *= tmp
        # dA_g = dc σ(i) (1 - tanh²(g))
        np.multiply(dc, i, out=da_g)
        np.multiply(gg, gg, out=tmp)
        np.subtract(1, tmp, out=tmp)
        da_g *= tmp
        # dA_i = dc tanh(g) σ'(i)
        np.multiply(dc, gg, out=da_i)
        np.multiply(i, i, out=tmp)
        np.subtract(i, tmp, out=tmp)
        da_i *= tmp
        dc *= f
        np.matmul(a, wh_t, out=dh)
    da2 = da.reshape(t * n, 4 * hdim)
    grads = LSTMParams(cache.xt.T @ da2, cache.hs[:-1].reshape(t * n, hdim).T @ da2, da2.sum(axis=0))
    dx = _batch_major(da2 @ wx.T, t, n) if input_grad else no_input_grad((n, t, d), dtype)
    return dx, dh, dc, grads


# --- GRU -----------------------------------------------------------------------------------------


def _check_gru(fn: str, params: GRUParams) -> tuple[Array, Array, int]:
    wx, wh, hdim = _check_params(fn, params, 3)
    if params.bhn.shape != (hdim,):
        raise ValueError(f"{fn}: expected params bhn of shape ({hdim},), got {_fmt(params.bhn.shape)}")
    return wx, wh, hdim


def gru_cell(params: GRUParams, x_t: Array, h: Array) -> Array:
    """One GRU step (PyTorch's ``(r, z, n)`` convention, see the module docstring).

    Args:
        params: :class:`GRUParams`.
        x_t: one time step ``(N, D)``.
        h: the previous hidden state ``(N, H)``.
    Returns:
        The next hidden state ``h' = (1 - z) n + z h``, shape ``(N, H)``.

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
    >>> p, _ = fnnet.GRU(4).init(fnnet.key(0), (6, 3))
    >>> hs, hT, cache = gru_scan(p, np.ones((2, 6, 3), np.float32))
    >>> hs.shape, hT.shape
    ((2, 6, 4), (2, 4))
    """
    fn = "gru_scan"
    wx, wh, hdim = _check_gru(fn, params)
    n, t, _ = _check_x(fn, x, wx)
    h0 = _initial(fn, "h0", h0, n, hdim, wx.dtype)
    dtype = wx.dtype
    xt = _time_major(x)
    gates = (xt @ wx).reshape(t, n, 3 * hdim)
    gates += params.b
    hs = np.empty((t + 1, n, hdim), dtype=dtype)
    hn = np.empty((t, n, hdim), dtype=dtype)
    hs[0] = 0 if h0 is None else h0
    a = np.empty((n, 3 * hdim), dtype=dtype)
    tmp = np.empty((n, hdim), dtype=dtype)
    h1, h2 = hdim, 2 * hdim
    for s in range(t):
        g = gates[s]
        np.matmul(hs[s], wh, out=a)
        rz = g[:, :h2]
        rz += a[:, :h2]
        _sigmoid_(rz)
        np.add(a[:, h2:], params.bhn, out=hn[s])
        nn = g[:, h2:]
        np.multiply(g[:, :h1], hn[s], out=tmp)
        nn += tmp
        np.tanh(nn, out=nn)
        # h' = n + z (h - n)
        np.subtract(hs[s], nn, out=tmp)
        tmp *= g[:, h1:h2]
        np.add(nn, tmp, out=hs[s + 1])
    return _batch_major(hs[1:], t, n), hs[t].copy(), GRUCache(xt, hs, gates, hn, x.shape)


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
    """
    fn = "gru_scan_backward"
    wx, wh, hdim = _check_gru(fn, params)
    n, t, d = cache.x_shape
    dtype = wx.dtype
    dhs = _check_dhs(fn, dhs, n, t, hdim, dtype)
    dhT = _initial(fn, "dhT", dhT, n, hdim, dtype)
    dh = np.zeros((n, hdim), dtype=dtype) if dhT is None else dhT.copy()
    hs, gates, hn = cache.hs, cache.gates, cache.hn
    dax = np.empty((t, n, 3 * hdim), dtype=dtype)  # gradients of the x-side pre-activations
    dah = np.empty((t, n, 3 * hdim), dtype=dtype)  # ... and of h @ wh (+ bhn)
    tmp = np.empty((n, hdim), dtype=dtype)
    h1, h2 = hdim, 2 * hdim
    wh_t = wh.T
    for s in range(t - 1, -1, -1):
        if dhs is not None:
            dh += dhs[:, s]
        g = gates[s]
        r, z, nn = g[:, :h1], g[:, h1:h2], g[:, h2:]
        ax, ah = dax[s], dah[s]
        dar, daz, dan = ax[:, :h1], ax[:, h1:h2], ax[:, h2:]
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
        ah[:, :h2] = ax[:, :h2]
        np.multiply(dan, r, out=ah[:, h2:])
        # dh_prev = dh z + dA_h @ wh.T
        dh *= z
        np.matmul(ah, wh_t, out=tmp)
        dh += tmp
    dax2 = dax.reshape(t * n, 3 * hdim)
    dah2 = dah.reshape(t * n, 3 * hdim)
    grads = GRUParams(
        cache.xt.T @ dax2, hs[:-1].reshape(t * n, hdim).T @ dah2, dax2.sum(axis=0), dah2[:, h2:].sum(axis=0)
    )
    dx = _batch_major(dax2 @ wx.T, t, n) if input_grad else no_input_grad((n, t, d), dtype)
    return dx, dh, grads


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
            raise ValueError(f"{type(self).__name__}: expected in_shape (T, D), got {_fmt(tuple(in_shape))}")
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

    def _h0(self, state: Any, fields: tuple[str, ...]) -> tuple[Array | None, ...]:
        if state is None:
            return (None,) * len(fields)
        if not (isinstance(state, tuple) and getattr(state, "_fields", None) == fields):
            want = "LSTMState(h, c)" if len(fields) == 2 else "RNNState(h)"
            raise ValueError(f"{type(self).__name__}: expected state None or {want}, got {type(state).__name__}")
        return tuple(state)

    def forward(self, params: Any, state: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any, _RecurrentCache]:
        """``x (N, T, D)`` to ``hs (N, T, H)`` (or ``hT (N, H)``); see the class docstring for the state."""
        if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != params.wx.shape[0]:
            shape = _fmt(x.shape) if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"{type(self).__name__}: expected input of shape (N, T, {params.wx.shape[0]}), got {shape}")
        try:
            hs, final, cache = self._scan(params, x, state)
        except ValueError as e:  # name the layer, not the kernel
            raise ValueError(f"{type(self).__name__}: {str(e).split(': ', 1)[-1]}") from None
        y = hs if self.return_sequences else final.h
        return y, (final if self.stateful else state), _RecurrentCache(cache, y.shape)

    def backward(self, params: Any, cache: _RecurrentCache, dout: Array, input_grad: bool = True) -> tuple[Array, Any]:
        """``(dx (N, T, D), grads)``; no gradient reaches the initial state (use the scan kernels for that)."""
        if dout.shape != cache.y_shape:
            check_dout(self, dout, cache.y_shape)
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
            consecutive batches of the same size).
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
        (h0,) = self._h0(state, RNNState._fields)
        hs, ht, cache = rnn_scan(params, x, h0)
        return hs, RNNState(ht), cache

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
        h0, c0 = self._h0(state, LSTMState._fields)
        hs, (ht, ct), cache = lstm_scan(params, x, h0, c0)
        return hs, LSTMState(ht, ct), cache

    def _scan_backward(self, params: LSTMParams, cache: LSTMCache, dhs: Array | None, dhT: Array | None, input_grad: bool) -> tuple[Array, LSTMParams]:
        dx, _, _, grads = lstm_scan_backward(params, cache, dhs, dhT, None, input_grad)
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
        (h0,) = self._h0(state, RNNState._fields)
        hs, ht, cache = gru_scan(params, x, h0)
        return hs, RNNState(ht), cache

    def _scan_backward(self, params: GRUParams, cache: GRUCache, dhs: Array | None, dhT: Array | None, input_grad: bool) -> tuple[Array, GRUParams]:
        dx, _, grads = gru_scan_backward(params, cache, dhs, dhT, input_grad)
        return dx, grads

