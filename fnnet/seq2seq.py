"""Encoder–decoder models over token sequences (the sequel's chapters 7 and 8), as layers.

A model is one :class:`~fnnet.layers.base.Layer` whose input is a single int array
``(N, Ts + Tt)``: the source ids, then the teacher-forced decoder input (the start token and the
answer without its last token). Its output is the logits ``(N, Tt, V)`` for the answer shifted by
one, so the whole training machinery (``fnnet.train.fit``, ``make_train_step``, the optimizers,
checkpoints) runs unchanged with :func:`fnnet.softmax_cross_entropy` (which averages over the
``N * Tt`` positions, as the sequel's time softmax loss does) and targets ``(N, Tt)``.

- :class:`Seq2seq`: an LSTM encoder; the decoder LSTM starts from the encoder's last hidden state
  with a zero cell. ``peeky=True`` concatenates that state to the decoder's input at every step
  and to the affine's input (the sequel's PeekyDecoder, state first). ``reverse=True`` reads the
  source backwards.
- :class:`AttentionSeq2seq`: the same encoder and a decoder whose affine reads
  ``concat(context, h)``, where the context is the attention-weighted sum of all encoder hidden
  states: ``a = softmax_s(hs_enc[s] · h_dec)``, ``context = Σ_s a_s hs_enc[s]``.

Decoding is pure and batched: :func:`generate` (greedy), :func:`sample` (keyed, with a
temperature) and :func:`attention_weights` (for heat maps). :func:`load_sequel_attention` reads
the sequel's trained attention model for the date task.

The LSTMs are :class:`fnnet.layers.LSTMParams` (gate blocks f, g, i, o of
``A = x @ wx + h @ wh + b``, the sequel's layout), run by
:func:`fnnet.layers.recurrent.lstm_scan` and :func:`~fnnet.layers.recurrent.lstm_scan_backward`
(the peeky decoder passes the encoder state as their ``x_const``); the initial-state gradient
carries the loss into the encoder.

>>> import numpy as np, fnnet
>>> from fnnet.seq2seq import Seq2seq, generate
>>> model = Seq2seq(vocab_size=13, embed=16, hidden=32, src_len=7, peeky=True)
>>> params, out = model.init(fnnet.key(0), (7 + 4,))
>>> out
(4, 13)
>>> x = np.zeros((5, 11), np.int64)
>>> model.apply(params, x).shape
(5, 4, 13)
>>> generate(model, params, x[:, :7], start_id=0, length=4).shape
(5, 4)
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import numpy as np

from fnnet._io import npz_member_header, open_regular
from fnnet._validate import boolean, is_int, is_real, positive_int
from fnnet.errors import FormatError
from fnnet.layers.base import EVAL, Ctx, Layer, check_dout, kind, no_input_grad, run_now
from fnnet.layers.core import AffineParams
from fnnet.layers.embedding import EmbeddingParams, embedding_grad
from fnnet.layers.recurrent import LSTMCache, LSTMParams, _lstm_backward_scan, _lstm_backward_weights, _lstm_run
from fnnet.random import Key, split
from fnnet.typing import Array, Shape

__all__ = [
    "EncoderParams",
    "DecoderParams",
    "Seq2seqParams",
    "Seq2seq",
    "AttentionSeq2seq",
    "generate",
    "sample",
    "attention_weights",
    "load_sequel_attention",
    "teacher_forcing",
    "sequence_accuracy",
]


class EncoderParams(NamedTuple):
    """The encoder: ``embed`` (a ``(V, E)`` table) and its LSTM (input size ``E``).

    >>> import fnnet
    >>> from fnnet.seq2seq import Seq2seq
    >>> p, _ = Seq2seq(13, 16, 32, src_len=7).init(fnnet.key(0), (11,))
    >>> p.encoder.embed.w.shape, p.encoder.lstm.wh.shape
    ((13, 16), (32, 128))
    """

    embed: EmbeddingParams
    lstm: LSTMParams


class DecoderParams(NamedTuple):
    """The decoder: ``embed`` (``(V, E)``), its LSTM and the output affine ``(K, V)``.

    The LSTM's input size is ``E`` (``H + E`` when peeky); the affine reads ``K = H`` features
    (``2H`` when peeky or with attention).

    >>> import fnnet
    >>> from fnnet.seq2seq import Seq2seq
    >>> p, _ = Seq2seq(13, 16, 32, src_len=7, peeky=True).init(fnnet.key(0), (11,))
    >>> p.decoder.lstm.wx.shape, p.decoder.affine.w.shape
    ((48, 128), (64, 13))
    """

    embed: EmbeddingParams
    lstm: LSTMParams
    affine: AffineParams


class Seq2seqParams(NamedTuple):
    """Parameters of :class:`Seq2seq` and :class:`AttentionSeq2seq` (a tree: optimizers map over it,
    :func:`fnnet.save` writes it).

    >>> import fnnet
    >>> from fnnet.seq2seq import AttentionSeq2seq
    >>> p, _ = AttentionSeq2seq(59, 16, 256, src_len=29).init(fnnet.key(0), (39,))
    >>> fnnet.tree_paths(p)[:3]
    ['encoder/embed/w', 'encoder/lstm/wx', 'encoder/lstm/wh']
    """

    encoder: EncoderParams
    decoder: DecoderParams


# --- small maths --------------------------------------------------------------------------------


def _sigmoid(z: Array) -> Array:
    s: Array = 0.5 * np.tanh(0.5 * z) + 0.5  # = 1 / (1 + exp(-z)), without overflow
    return s


def _softmax_last(s: Array) -> Array:
    e: Array = np.exp(s - s.max(axis=-1, keepdims=True))  # shifted so exp never overflows
    e /= e.sum(axis=-1, keepdims=True)
    return e


# --- the models ------------------------------------------------------------------------------------


class _FwdCache(NamedTuple):
    src: Array  # (N, Ts) source ids in the order the encoder reads them
    dec_in: Array  # (N, Tt)
    enc: LSTMCache
    hs_enc: Array  # (N, Ts, H)
    dec: LSTMCache
    hd: Array  # (N, Tt, H)
    attn: Array | None  # (N, Tt, Ts) attention weights
    context: Array | None  # (N, Tt, H)
    x_shape: tuple[int, ...]
    spawn: Callable[[Callable[[], Any]], Callable[[], Any]]  # the forward context's


def _gen(key: Key) -> np.random.Generator:
    return key.generator()


def _lstm_init(key: Key, d: int, hdim: int, dtype: Any) -> LSTMParams:
    g = _gen(key)
    wx = (g.standard_normal((d, 4 * hdim)) / math.sqrt(d)).astype(dtype)
    wh = (g.standard_normal((hdim, 4 * hdim)) / math.sqrt(hdim)).astype(dtype)
    return LSTMParams(wx, wh, np.zeros(4 * hdim, dtype))


@attrs.frozen
class _EncoderDecoder(Layer):
    vocab_size: int = attrs.field(validator=positive_int)
    embed: int = attrs.field(validator=positive_int)
    hidden: int = attrs.field(validator=positive_int)
    src_len: int = attrs.field(kw_only=True, validator=positive_int)
    reverse: bool = attrs.field(default=False, kw_only=True, validator=boolean)

    @property
    def _peeky(self) -> bool:
        return False

    @property
    def _attention(self) -> bool:
        return False

    def _tgt_len(self, in_shape: Shape) -> int:
        if len(in_shape) != 1 or in_shape[0] <= self.src_len:
            raise ValueError(
                f"{kind(self)}: expected inputs (N, src_len + Tt) = (N, {self.src_len} + Tt) with Tt >= 1, "
                f"got in_shape {tuple(in_shape)}"
            )
        return int(in_shape[0]) - self.src_len

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(Tt, vocab_size)`` for inputs ``(src_len + Tt,)``."""
        return (self._tgt_len(in_shape), self.vocab_size)

    def init(self, key: Key, in_shape: Shape) -> tuple[Seq2seqParams, Shape]:
        """Embeddings N(0, 0.01²), LSTM and affine weights N(0, 1/fan_in), zero biases (the sequel's)."""
        out = self.out_shape(in_shape)
        v, e, h = self.vocab_size, self.embed, self.hidden
        dt = np.float32
        k = split(key, 5)
        enc_embed = EmbeddingParams((_gen(k[0]).standard_normal((v, e)) * 0.01).astype(dt))
        enc = EncoderParams(enc_embed, _lstm_init(k[1], e, h, dt))
        d_in = h + e if self._peeky else e
        k_aff = h * 2 if (self._peeky or self._attention) else h
        aw = (_gen(k[4]).standard_normal((k_aff, v)) / math.sqrt(k_aff)).astype(dt)
        dec = DecoderParams(
            EmbeddingParams((_gen(k[2]).standard_normal((v, e)) * 0.01).astype(dt)),
            _lstm_init(k[3], d_in, h, dt),
            AffineParams(aw, np.zeros(v, dt)),
        )
        return Seq2seqParams(enc, dec), out

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter array, by its tree path."""
        v, e, h = self.vocab_size, self.embed, self.hidden
        d_in = h + e if self._peeky else e
        k_aff = 2 * h if (self._peeky or self._attention) else h
        return {
            "encoder/embed/w": (v, e), "encoder/lstm/wx": (e, 4 * h), "encoder/lstm/wh": (h, 4 * h),
            "encoder/lstm/b": (4 * h,), "decoder/embed/w": (v, e), "decoder/lstm/wx": (d_in, 4 * h),
            "decoder/lstm/wh": (h, 4 * h), "decoder/lstm/b": (4 * h,), "decoder/affine/w": (k_aff, v),
            "decoder/affine/b": (v,),
        }  # fmt: skip

    def _check_params(self, params: Any, fn: str, *, one_dtype: bool = True) -> None:
        """Raise one line naming ``fn`` unless ``params`` has the shapes :meth:`init` gives (and,
        with ``one_dtype``, one float dtype: the decoders have no kernel to check it)."""
        dtype = None
        for path, want in self._param_shapes().items():
            a: Any = params
            for name in path.split("/"):
                a = getattr(a, name, None)
            if not isinstance(a, np.ndarray):
                raise ValueError(
                    f"{fn}: expected Seq2seqParams as {kind(self)}.init makes them, got {type(params).__name__} without array {path}"
                )
            if a.shape != want:
                raise ValueError(
                    f"{fn}: params do not fit {kind(self)}(vocab_size={self.vocab_size}, embed={self.embed}, "
                    f"hidden={self.hidden}{', peeky=True' if self._peeky else ''}): {path} has shape {a.shape}, expected {want}"
                )
            if one_dtype and (a.dtype.kind != "f" or (dtype is not None and a.dtype != dtype)):
                raise ValueError(f"{fn}: expected params of one float dtype, got {path} of dtype {a.dtype} (others {dtype})")
            dtype = a.dtype

    def _check_input(self, params: Seq2seqParams, x: Array) -> None:
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{kind(self)}: expected int input (N, src_len + Tt) as a NumPy array, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] <= self.src_len:
            raise ValueError(
                f"{kind(self)}: expected int input (N, src_len + Tt) with src_len {self.src_len} and Tt >= 1, "
                f"got shape {x.shape}"
            )
        if x.dtype.kind not in "iu":
            raise ValueError(f"{kind(self)}: expected integer token ids, got dtype {x.dtype}")
        self._check_params(params, kind(self), one_dtype=False)  # the LSTM kernels name mixed dtypes
        v = params.encoder.embed.w.shape[0]
        if x.size and (int(x.min()) < 0 or int(x.max()) >= v):
            raise ValueError(
                f"{kind(self)}: token ids must be in [0, {v}), got ids in [{int(x.min())}, {int(x.max())}]"
            )

    def _source(self, x: Array) -> Array:
        """The source ids ``(N, Ts)`` in reading order."""
        src = x[:, : self.src_len]
        return src[:, ::-1] if self.reverse else src

    def forward(self, params: Seq2seqParams, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, _FwdCache]:
        """Logits ``(N, Tt, V)`` for ids ``x`` = ``(N, src_len + Tt)`` (source, then decoder input)."""
        y, cache = self._run(params, x, keep=True, spawn=ctx.spawn)
        assert cache is not None
        return y, state, cache

    def apply(self, params: Seq2seqParams, x: Array, *, state: None = None, ctx: Ctx = EVAL) -> Array:
        """The logits alone, ``forward(params, state, x, ctx)[0]`` bit for bit, computed without the
        LSTMs' caches (their gates are most of ``forward``'s memory)."""
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{kind(self)}.apply: expected x as a NumPy array, got {type(x).__name__}")
        return self._run(params, x, keep=False)[0]

    def _run(
        self, params: Seq2seqParams, x: Array, *, keep: bool, spawn: Callable[[Callable[[], Any]], Callable[[], Any]] = run_now
    ) -> tuple[Array, _FwdCache | None]:
        """The logits and, with ``keep``, the cache of :meth:`backward`."""
        self._check_input(params, x)
        hdim = self.hidden
        ep, dp = params.encoder, params.decoder
        src = self._source(x)
        dec_in = x[:, self.src_len :]
        try:
            hs_enc, (h_enc, _), enc = _lstm_run(
                "lstm_scan", ep.lstm, ep.embed.w[src], None, None, None, keep=keep, sequences=self._attention
            )  # the encoder's states are only attended to (and kept by the scan for the backward)
            peek = h_enc if self._peeky else None
            hd, _, dec = _lstm_run("lstm_scan", dp.lstm, dp.embed.w[dec_in], h_enc, None, peek, keep=keep)
        except ValueError as e:  # name the model, not the kernel (params of mixed shapes or dtypes)
            raise ValueError(f"{kind(self)}: {str(e).split(': ', 1)[-1]}") from None
        assert hd is not None
        aw, ab = dp.affine
        attn = context = None
        if self._attention:
            assert hs_enc is not None
            attn = _softmax_last(hd @ hs_enc.transpose(0, 2, 1))  # (N, Tt, Ts)
            context = attn @ hs_enc
            y = context @ aw[:hdim] + hd @ aw[hdim:] + ab
        elif self._peeky:
            y = hd @ aw[hdim:] + (h_enc @ aw[:hdim] + ab)[:, None, :]
        else:
            y = hd @ aw + ab
        if enc is None or dec is None or hs_enc is None:
            return y, None
        return y, _FwdCache(src, dec_in, enc, hs_enc, dec, hd, attn, context, x.shape, spawn)

    def backward(
        self, params: Seq2seqParams, cache: _FwdCache, dout: Array, input_grad: bool = True
    ) -> tuple[Array, Seq2seqParams]:
        """Gradients of every weight; the gradient reaches the encoder through the decoder's initial
        state (and, with attention, through every encoder state). ``dx`` is a read-only zero array of
        the ids' shape and dtype (ids have no gradient), as :class:`~fnnet.layers.Embedding`'s."""
        hdim = self.hidden
        n, t_len = cache.dec_in.shape
        ep, dp = params.encoder, params.decoder
        v = dp.embed.w.shape[0]
        if dout.shape != (n, t_len, v):
            check_dout(self, dout, (n, t_len, v))
        aw = dp.affine.w
        if dout.dtype != aw.dtype:
            raise ValueError(f"{kind(self)}.backward: expected dout of dtype {aw.dtype} (the parameters' dtype), got {dout.dtype}")
        hd, hs_enc = cache.hd, cache.hs_enc
        d2 = dout.reshape(n * t_len, v)
        dab = d2.sum(axis=0)
        dhs_enc: Array | None = None
        dh_enc = None
        if cache.attn is not None and cache.context is not None:
            attn, context = cache.attn, cache.context
            daw = np.concatenate([context.reshape(n * t_len, hdim).T @ d2, hd.reshape(n * t_len, hdim).T @ d2])
            dctx = dout @ aw[:hdim].T  # (N, Tt, H)
            dhd = dout @ aw[hdim:].T
            da_w = dctx @ hs_enc.transpose(0, 2, 1)  # (N, Tt, Ts)
            dscore = attn * (da_w - (da_w * attn).sum(axis=-1, keepdims=True))
            dhd += dscore @ hs_enc
            dhs_enc = attn.transpose(0, 2, 1) @ dctx + dscore.transpose(0, 2, 1) @ hd  # (N, Ts, H)
        elif self._peeky:
            dsum = dout.sum(axis=1)  # (N, V): the encoder state feeds every step alike
            h_enc = hs_enc[:, -1]
            daw = np.concatenate([h_enc.T @ dsum, hd.reshape(n * t_len, hdim).T @ d2])
            dhd = dout @ aw[hdim:].T
            dh_enc = dsum @ aw[:hdim].T
        else:
            daw = hd.reshape(n * t_len, hdim).T @ d2
            dhd = dout @ aw.T
        # The decoder's products over all steps run beside the encoder's scan (cache.spawn).
        da_dec, dh0, _ = _lstm_backward_scan(dp.lstm, cache.dec, dhd)
        da_sum = None
        if dh_enc is not None:
            da_sum = da_dec.sum(axis=0)  # the peeky input meets every decoder step's gradient
            dh0 = dh0 + da_sum @ dp.lstm.wx[:hdim].T + dh_enc

        def decoder_rest() -> tuple[Array, LSTMParams]:
            dx_dec, g, _ = _lstm_backward_weights(dp.lstm, cache.dec, da_dec, da_sum=da_sum)
            return embedding_grad(cache.dec_in, dx_dec, v), g

        join_decoder = cache.spawn(decoder_rest)
        da_enc, _, _ = _lstm_backward_scan(ep.lstm, cache.enc, dhs_enc, dh0, state_grad=False)
        dx_enc, g_enc, _ = _lstm_backward_weights(ep.lstm, cache.enc, da_enc, spawn=cache.spawn)
        de_e = embedding_grad(cache.src, dx_enc, v)
        de_d, g_dec = join_decoder()
        grads = Seq2seqParams(
            EncoderParams(EmbeddingParams(de_e), g_enc),
            DecoderParams(EmbeddingParams(de_d), g_dec, AffineParams(daw, dab)),
        )
        return no_input_grad(cache.x_shape, cache.src.dtype), grads


@attrs.frozen
class Seq2seq(_EncoderDecoder):
    """The sequel's Seq2seq (and PeekySeq2seq): an LSTM encoder, an LSTM decoder, an affine.

    Input: int ids ``(N, src_len + Tt)``, the source then the teacher-forced decoder input. Output:
    logits ``(N, Tt, vocab_size)``. The decoder starts from the encoder's last hidden state with a
    zero cell; with ``peeky`` that state is also concatenated (first) to the decoder's input at
    every step and to the affine's input. ``reverse`` reads the source backwards.

    Args:
        vocab_size: V; embed: E; hidden: H.
        src_len: Ts, the number of leading input columns that are the source.
        reverse: reverse the source in time (the sequel's "reversed input").
        peeky: the sequel's PeekyDecoder.

    >>> import numpy as np, fnnet
    >>> from fnnet.seq2seq import Seq2seq
    >>> m = Seq2seq(13, 16, 8, src_len=7, peeky=True)
    >>> fnnet.summary(m, (11,)).total_params
    2493
    """

    peeky: bool = attrs.field(default=False, kw_only=True, validator=boolean)

    @property
    def _peeky(self) -> bool:
        return self.peeky


@attrs.frozen
class AttentionSeq2seq(_EncoderDecoder):
    """The sequel's AttentionSeq2seq: an LSTM encoder, an LSTM decoder and dot-product attention.

    Input: int ids ``(N, src_len + Tt)``; output logits ``(N, Tt, vocab_size)``. The decoder
    starts from the encoder's last hidden state with a zero cell; at each step the attention
    weights are ``softmax_s(hs_enc[:, s] · h)`` over the ``Ts`` encoder states, the context their
    weighted sum, and the affine reads ``concat(context, h)`` (``(2H, V)``).

    >>> import numpy as np, fnnet
    >>> from fnnet.seq2seq import AttentionSeq2seq
    >>> m = AttentionSeq2seq(59, 16, 256, src_len=29, reverse=True)
    >>> fnnet.summary(m, (29 + 10,)).total_params
    591259
    """

    @property
    def _attention(self) -> bool:
        return True


# --- decoding ----------------------------------------------------------------------------------------


def _check_src(fn: str, model: _EncoderDecoder, params: Any, src: Any, start_id: Any, length: Any) -> Array:
    """``src`` as an int array ``(N, src_len)`` of ids in ``[0, V)``, after checking the other arguments."""
    if not isinstance(model, _EncoderDecoder):
        raise ValueError(f"{fn}: expected a Seq2seq or AttentionSeq2seq, got {type(model).__name__}")
    model._check_params(params, fn)
    ids: Array = np.asarray(src)
    if ids.ndim != 2 or ids.shape[1] != model.src_len or ids.dtype.kind not in "iu":
        raise ValueError(f"{fn}: expected int source ids (N, {model.src_len}), got shape {ids.shape} dtype {ids.dtype}")
    v = model.vocab_size
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= v):
        raise ValueError(f"{fn}: source ids must be in [0, {v}), got ids in [{int(ids.min())}, {int(ids.max())}]")
    if not (is_int(start_id) and 0 <= start_id < v) or not (is_int(length) and length >= 1):
        raise ValueError(f"{fn}: need an int start_id in [0, {v}) and an int length >= 1, got {start_id!r}, {length!r}")
    return ids


def _half(h4: int, dtype: Any) -> Array:
    """Column scales ``(4H,)``: 1/2 on the sigmoid gates f, i, o and 1 on g (see :func:`_cell`)."""
    half = np.full(h4, 0.5, dtype)
    half[h4 // 4 : h4 // 2] = 1
    return half


def _cell(a: Array, c: Array) -> tuple[Array, Array]:
    """One LSTM step from the pre-activation ``a`` ``(N, 4H)`` (gates f, g, i, o) whose sigmoid
    columns are already halved (``a * _half``); ``a`` is overwritten. Returns ``(h, c)``."""
    hdim = a.shape[1] // 4
    np.tanh(a, out=a)  # tanh(z/2) on f, i, o; tanh(z) on g
    f, g, io = a[:, :hdim], a[:, hdim : 2 * hdim], a[:, 2 * hdim :]
    f *= 0.5
    f += 0.5
    io *= 0.5
    io += 0.5
    c = f * c
    c += io[:, :hdim] * g
    h = np.tanh(c)
    h *= io[:, hdim:]
    return h, c


#: Questions decoded together: bounds the per-step arrays (and keeps them in cache) on big inputs.
_DECODE_CHUNK = 1024


def _decode(
    model: _EncoderDecoder,
    params: Seq2seqParams,
    src: Array,
    start_id: int,
    length: int,
    pick: Any,
) -> tuple[Array, Array | None]:
    """Decode in chunks of rows; see :func:`_decode_rows`."""
    parts = [
        _decode_rows(model, params, src[lo : lo + _DECODE_CHUNK], start_id, length, pick)
        for lo in range(0, max(len(src), 1), _DECODE_CHUNK)
    ]
    ids = np.concatenate([p[0] for p in parts])
    weights = [p[1] for p in parts]
    return ids, (np.concatenate(weights) if weights[0] is not None else None)  # type: ignore[arg-type]


def _decode_rows(
    model: _EncoderDecoder,
    params: Seq2seqParams,
    src: Array,
    start_id: int,
    length: int,
    pick: Any,
) -> tuple[Array, Array | None]:
    """Run the encoder, then the decoder one step at a time, feeding back
    ``pick(logits (N, V), step) -> ids (N,)``; no caches are kept."""
    hdim = model.hidden
    n = src.shape[0]
    ep, dp = params.encoder, params.decoder
    # x_t @ wx for a token x_t is row x_t of embed @ wx: one small product, then lookups
    half = _half(4 * hdim, ep.lstm.wh.dtype)
    enc_table = (ep.embed.w @ ep.lstm.wx + ep.lstm.b) * half
    enc_wh = ep.lstm.wh * half
    h = np.zeros((n, hdim), ep.lstm.wh.dtype)
    c = np.zeros_like(h)
    hs = np.empty((src.shape[1], n, hdim), h.dtype)
    for t, tok in enumerate(model._source(src).T):
        a = h @ enc_wh
        a += enc_table[tok]
        h, c = _cell(a, c)
        hs[t] = h
    h_enc = h
    c = np.zeros_like(h)
    wx, wh, b = dp.lstm
    wh = wh * half
    aw, ab = dp.affine
    if model._peeky:
        dec_table = (dp.embed.w @ wx[hdim:]) * half
        peek_x = (h_enc @ wx[:hdim] + b) * half
        peek_a = h_enc @ aw[:hdim] + ab
    else:
        dec_table = (dp.embed.w @ wx) * half
        peek_x, peek_a = b * half, ab
    hs_b = hs.transpose(1, 0, 2)  # (N, Ts, H)
    ids = np.empty((n, length), np.int64)
    weights = np.empty((n, length, model.src_len), h.dtype) if model._attention else None
    cur = np.full(n, start_id, np.int64)
    for t in range(length):
        a = h @ wh
        a += dec_table[cur]
        a += peek_x
        h, c = _cell(a, c)
        if weights is not None:
            w = _softmax_last(np.matmul(hs_b, h[:, :, None])[:, :, 0])
            ctx = np.matmul(w[:, None, :], hs_b)[:, 0]
            logits = ctx @ aw[:hdim] + h @ aw[hdim:] + ab
            weights[:, t] = w[:, ::-1] if model.reverse else w
        elif model._peeky:
            logits = h @ aw[hdim:] + peek_a
        else:
            logits = h @ aw + peek_a
        cur = np.asarray(pick(logits, t), np.int64)
        ids[:, t] = cur
    return ids, weights


def generate(model: Layer, params: Seq2seqParams, src: Array, start_id: int, length: int) -> Array:
    """Greedy decoding: feed back the most likely token at each step (the sequel's ``generate``).

    Args:
        model: a :class:`Seq2seq` or :class:`AttentionSeq2seq`.
        params: its parameters (any float dtype).
        src: source ids ``(N, src_len)`` in ``[0, vocab_size)``, in their natural order (the model
            reverses them if asked).
        start_id: the decoder's first input (the start token), an int in ``[0, vocab_size)``.
        length: the number of tokens to produce, an int ``>= 1``.
    Returns:
        ids ``(N, length)`` int64 (the start token excluded).

    >>> import numpy as np, fnnet
    >>> from fnnet.seq2seq import Seq2seq, generate
    >>> m = Seq2seq(5, 4, 6, src_len=3)
    >>> p, _ = m.init(fnnet.key(0), (5,))
    >>> generate(m, p, np.array([[1, 2, 3]]), start_id=0, length=2).shape
    (1, 2)
    """
    if not isinstance(model, _EncoderDecoder):
        raise ValueError(f"generate: expected a Seq2seq or AttentionSeq2seq, got {type(model).__name__}")
    src = _check_src("generate", model, params, src, start_id, length)
    return _decode(model, params, src, start_id, length, lambda logits, t: logits.argmax(axis=1))[0]


def sample(
    model: Layer, params: Seq2seqParams, src: Array, start_id: int, length: int, *, key: Key, temperature: float = 1.0
) -> Array:
    """Sampled decoding: draw each token from ``softmax(logits / temperature)`` and feed it back.

    Args:
        model, params, src, start_id, length: as in :func:`generate`.
        key: the random key (the same key gives the same ids).
        temperature: > 0; small values approach :func:`generate`.
    Returns:
        ids ``(N, length)`` int64.

    >>> import numpy as np, fnnet
    >>> from fnnet.seq2seq import Seq2seq, sample
    >>> m = Seq2seq(5, 4, 6, src_len=3)
    >>> p, _ = m.init(fnnet.key(0), (5,))
    >>> a = sample(m, p, np.array([[1, 2, 3]]), 0, 4, key=fnnet.key(1))
    >>> bool((a == sample(m, p, np.array([[1, 2, 3]]), 0, 4, key=fnnet.key(1))).all())
    True
    """
    if not isinstance(model, _EncoderDecoder):
        raise ValueError(f"sample: expected a Seq2seq or AttentionSeq2seq, got {type(model).__name__}")
    src = _check_src("sample", model, params, src, start_id, length)
    if not isinstance(key, Key):
        raise ValueError(f"sample: key must be a fnnet.Key, got {type(key).__name__}")
    temp = float(temperature) if is_real(temperature) else math.nan
    if not (math.isfinite(temp) and temp > 0):
        raise ValueError(f"sample: temperature must be a finite number > 0, got {temperature!r}")
    gen = key.generator()

    def pick(logits: Array, t: int) -> Array:
        z = logits.astype(np.float64)
        # shift before dividing: (z - max) / temp <= 0 never overflows to inf (inf - inf = nan)
        # however small the temperature; the largest logit gets exp(0) = 1
        z -= z.max(axis=1, keepdims=True)
        with np.errstate(over="ignore"):  # -inf for the logits far below the largest: p = 0
            z /= temp
        p = _softmax_last(z)
        u = gen.random((len(p), 1))  # in [0, 1): the token is the first whose cumulative p exceeds u
        drawn: Array = np.minimum((np.cumsum(p, axis=1) <= u).sum(axis=1), p.shape[1] - 1)
        return drawn

    return _decode(model, params, src, start_id, length, pick)[0]


def attention_weights(
    model: Layer, params: Seq2seqParams, src: Array, start_id: int, length: int
) -> tuple[Array, Array]:
    """Greedy decoding with the attention weights of every step (for a heat map).

    Args:
        model: an :class:`AttentionSeq2seq`; the rest as in :func:`generate`.
    Returns:
        ``(ids, weights)``: ids ``(N, length)`` and weights ``(N, length, src_len)`` whose rows sum
        to 1; column ``s`` is source position ``s`` in its natural order, even when the model
        reads the source reversed.

    >>> import numpy as np, fnnet
    >>> from fnnet.seq2seq import AttentionSeq2seq, attention_weights
    >>> m = AttentionSeq2seq(5, 4, 6, src_len=3)
    >>> p, _ = m.init(fnnet.key(0), (5,))
    >>> ids, w = attention_weights(m, p, np.array([[1, 2, 3]]), 0, 2)
    >>> w.shape, bool(np.allclose(w.sum(axis=-1), 1))
    ((1, 2, 3), True)
    """
    if not isinstance(model, AttentionSeq2seq):
        raise ValueError(f"attention_weights: expected an AttentionSeq2seq, got {type(model).__name__}")
    src = _check_src("attention_weights", model, params, src, start_id, length)
    ids, w = _decode(model, params, src, start_id, length, lambda logits, t: logits.argmax(axis=1))
    assert w is not None
    return ids, w


# --- the sequel's weights ----------------------------------------------------------------------------

#: What np.load and zipfile raise on a damaged archive (a truncated zip, a bad CRC, a mangled
#: .npy header); turned into FormatError.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, NotImplementedError,
                RuntimeError, struct.error, OverflowError)  # fmt: skip

#: The sequel's names and the shapes of its attention model for the date task.
SEQUEL_ATTENTION_KEYS = (
    "encoder.embed.W", "encoder.lstm.Wx", "encoder.lstm.Wh", "encoder.lstm.b",
    "decoder.embed.W", "decoder.lstm.Wx", "decoder.lstm.Wh", "decoder.lstm.b",
    "decoder.affine.W", "decoder.affine.b",
)  # fmt: skip


#: The shape of each array in terms of the vocabulary V, embedding E and hidden size H.
SEQUEL_SHAPES: dict[str, tuple[str, ...]] = {
    "encoder.embed.W": ("V", "E"), "encoder.lstm.Wx": ("E", "4H"), "encoder.lstm.Wh": ("H", "4H"),
    "encoder.lstm.b": ("4H",), "decoder.embed.W": ("V", "E"), "decoder.lstm.Wx": ("E", "4H"),
    "decoder.lstm.Wh": ("H", "4H"), "decoder.lstm.b": ("4H",), "decoder.affine.W": ("2H", "V"),
    "decoder.affine.b": ("V",),
}  # fmt: skip

#: The arrays' declared bytes may exceed 8 times the archive's size only up to this many.
MAX_SEQUEL_BYTES = 64 << 20


def _check_sequel_headers(p: Path, z: Any, budget: int) -> None:
    """Check every array's header (presence, dtype, shape, total size) before any data is read."""
    headers = {}
    for k in SEQUEL_ATTENTION_KEYS:
        if k not in z.files:
            raise FormatError(str(p), k, "missing array")
        headers[k] = shape, dt = npz_member_header(z, k)
        if dt.kind != "f":
            raise FormatError(str(p), k, f"expected floating point, got {dt}")
    embed_shape, b_shape = headers["encoder.embed.W"][0], headers["encoder.lstm.b"][0]
    if len(embed_shape) != 2 or 0 in embed_shape:
        raise FormatError(str(p), "encoder.embed.W", f"expected a (V, E) matrix with V, E >= 1, got shape {embed_shape}")
    if len(b_shape) != 1 or b_shape[0] == 0 or b_shape[0] % 4:
        raise FormatError(str(p), "encoder.lstm.b", f"expected a (4H,) vector with H >= 1, got shape {b_shape}")
    size = {"V": embed_shape[0], "E": embed_shape[1], "H": b_shape[0] // 4, "2H": b_shape[0] // 2, "4H": b_shape[0]}
    total = 0
    for k, (shape, dt) in headers.items():
        expected = tuple(size[d] for d in SEQUEL_SHAPES[k])
        if shape != expected:
            raise FormatError(str(p), k, f"expected shape {expected}, got {shape}")
        total += math.prod(shape) * dt.itemsize
    if total > budget:
        raise FormatError(str(p), "archive", f"its arrays declare {total} bytes, more than the {budget} a file of this size may hold")


def load_sequel_attention(path: str | Path, dtype: Any = np.float32) -> Seq2seqParams:
    """Load the sequel's trained AttentionSeq2seq (``.npz``, its names) as :class:`Seq2seqParams`.

    The archive holds ``encoder.embed.W``, ``encoder.lstm.{Wx,Wh,b}``, ``decoder.embed.W``,
    ``decoder.lstm.{Wx,Wh,b}``, ``decoder.affine.{W,b}`` (any float dtype; the sequel's are
    float16), cast to ``dtype``; the gate blocks keep the sequel's order f, g, i, o.
    Build the model as ``AttentionSeq2seq(V, E, H, src_len=Ts, reverse=True)`` with V, E, H from
    the shapes (59, 16, 256 for the date task, Ts 29).

    Args:
        path: the ``.npz`` archive.
        dtype: a floating point dtype for every array.
    Every array's header is checked (present, floating point, the shapes above agreeing with one
    another, at most ``max(MAX_SEQUEL_BYTES, 8 x the file's size)`` bytes in all) before any
    array's data is read.

    Raises:
        fnnet.errors.FormatError: not a regular file (a FIFO, a device), not a readable ``.npz``
            archive, a missing, non-float or misshapen array, or arrays larger than the bound.
        OSError: the file cannot be opened.
        ValueError: ``dtype`` is not floating point.

    >>> import os, tempfile, numpy as np
    >>> from fnnet.seq2seq import load_sequel_attention
    >>> v, e, h = 5, 2, 3  # a tiny archive with the sequel's names
    >>> shapes = {"embed.W": (v, e), "lstm.Wx": (e, 4 * h), "lstm.Wh": (h, 4 * h), "lstm.b": (4 * h,)}
    >>> arrays = {f"{part}.{k}": np.ones(s, np.float16) for part in ("encoder", "decoder") for k, s in shapes.items()}
    >>> arrays.update({"decoder.affine.W": np.ones((2 * h, v), np.float16), "decoder.affine.b": np.ones(v, np.float16)})
    >>> path = os.path.join(tempfile.mkdtemp(), "attention.npz")
    >>> np.savez(path, **arrays)
    >>> p = load_sequel_attention(path)
    >>> p.decoder.affine.w.shape, p.encoder.lstm.wx.dtype
    ((6, 5), dtype('float32'))
    """
    p = Path(path)
    if np.dtype(dtype).kind != "f":
        raise ValueError(f"load_sequel_attention: dtype must be a floating point type, got {np.dtype(dtype)}")
    with open_regular(p) as f:
        budget = max(MAX_SEQUEL_BYTES, 8 * os.fstat(f.fileno()).st_size)
        try:
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise FormatError(str(p), "archive", "a single .npy array, not a .npz archive of named arrays")
            with loaded as z:
                _check_sequel_headers(p, z, budget)
                arrays = {k: z[k] for k in SEQUEL_ATTENTION_KEYS}
        except FormatError:
            raise
        except _READ_ERRORS as err:
            raise FormatError(str(p), "archive", f"not a readable .npz: {err}") from None

    def cast(a: Array) -> Array:
        return np.ascontiguousarray(a.astype(dtype))

    def lstm(prefix: str) -> LSTMParams:
        return LSTMParams(*(cast(arrays[f"{prefix}.{n}"]) for n in ("Wx", "Wh", "b")))

    return Seq2seqParams(
        EncoderParams(EmbeddingParams(cast(arrays["encoder.embed.W"])), lstm("encoder.lstm")),
        DecoderParams(
            EmbeddingParams(cast(arrays["decoder.embed.W"])),
            lstm("decoder.lstm"),
            AffineParams(cast(arrays["decoder.affine.W"]), cast(arrays["decoder.affine.b"])),
        ),
    )


# --- data helpers ------------------------------------------------------------------------------------


def teacher_forcing(src: Array, answer: Array) -> tuple[Array, Array]:
    """The model input and targets of question/answer pairs, for training and teacher-forced loss.

    Args:
        src: source ids ``(N, Ts)``.
        answer: answer ids ``(N, Ta)`` whose column 0 is the start token.
    Returns:
        ``(x, t)``: ``x = concat(src, answer[:, :-1])`` ``(N, Ts + Ta - 1)`` int64 (the model's
        input) and ``t = answer[:, 1:]`` ``(N, Ta - 1)`` int64 (the targets of its logits).

    >>> import numpy as np
    >>> from fnnet.seq2seq import teacher_forcing
    >>> x, t = teacher_forcing(np.array([[1, 2]]), np.array([[0, 3, 4]]))
    >>> x.tolist(), t.tolist()
    ([[1, 2, 0, 3]], [[3, 4]])
    """
    src, answer = np.asarray(src), np.asarray(answer)
    if src.ndim != 2 or answer.ndim != 2 or len(src) != len(answer) or answer.shape[1] < 2:
        raise ValueError(
            f"teacher_forcing: expected src (N, Ts) and answer (N, Ta >= 2) with the same N, "
            f"got shapes {src.shape} and {answer.shape}"
        )
    if src.dtype.kind not in "iu" or answer.dtype.kind not in "iu":
        raise ValueError(f"teacher_forcing: expected integer ids, got dtypes {src.dtype} and {answer.dtype}")
    x = np.concatenate([src, answer[:, :-1]], axis=1).astype(np.int64)
    return x, answer[:, 1:].astype(np.int64)


def sequence_accuracy(
    model: Layer, params: Seq2seqParams, src: Array, answer: Array, *, batch_size: int = 5000
) -> float:
    """The fraction of questions whose greedy answer is exactly right (the sequel's ``eval_seq2seq``).

    Args:
        model, params: a :class:`Seq2seq` or :class:`AttentionSeq2seq` and its parameters.
        src: source ids ``(N, Ts)``.
        answer: answer ids ``(N, Ta)`` starting with the start token; the model decodes
            ``Ta - 1`` tokens from ``answer[:, 0]`` and every one must match.
        batch_size: questions decoded at once.
    Returns:
        The exact-match accuracy in [0, 1].

    >>> import numpy as np, fnnet
    >>> from fnnet.seq2seq import Seq2seq, sequence_accuracy
    >>> m = Seq2seq(5, 4, 6, src_len=3)
    >>> p, _ = m.init(fnnet.key(0), (5,))
    >>> 0.0 <= sequence_accuracy(m, p, np.array([[1, 2, 3]]), np.array([[0, 4, 4]])) <= 1.0
    True
    """
    src, answer = np.asarray(src), np.asarray(answer)
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"sequence_accuracy: batch_size must be an int >= 1, got {batch_size!r}")
    if len(src) != len(answer) or answer.ndim != 2 or answer.shape[1] < 2:
        raise ValueError(
            f"sequence_accuracy: expected answer (N, Ta >= 2) for src (N, Ts), got {answer.shape} for {src.shape}"
        )
    if len(src) == 0:
        raise ValueError("sequence_accuracy: no questions")
    if not isinstance(model, _EncoderDecoder):
        raise ValueError(f"sequence_accuracy: expected a Seq2seq or AttentionSeq2seq, got {type(model).__name__}")
    v = model.vocab_size
    if answer.dtype.kind not in "iu" or int(answer.min()) < 0 or int(answer.max()) >= v:
        got = f"ids in [{answer.min()}, {answer.max()}]" if answer.dtype.kind in "iu" else f"dtype {answer.dtype}"
        raise ValueError(f"sequence_accuracy: expected integer answer ids in [0, {v}), got {got}")
    _check_src("sequence_accuracy", model, params, src, int(answer[0, 0]), answer.shape[1] - 1)
    starts = np.unique(answer[:, 0])
    if len(starts) != 1:
        raise ValueError("sequence_accuracy: every answer must begin with the same start token")
    right = 0
    for lo in range(0, len(src), batch_size):
        ids = generate(model, params, src[lo : lo + batch_size], int(starts[0]), answer.shape[1] - 1)
        right += int((ids == answer[lo : lo + batch_size, 1:]).all(axis=1).sum())
    return right / len(src)
