"""PyTorch weights in and out without torch: parameters as the arrays of a ``state_dict``.

:func:`to_torch_state_dict` gives the NumPy arrays that ``model.state_dict()`` holds for the
PyTorch network built of the equivalent modules, under the same keys; :func:`from_torch_state_dict`
reads such arrays back (a dict, or an ``.npz`` file written on the torch side with
``np.savez(path, **{k: v.numpy() for k, v in model.state_dict().items()})``).

Keys are the layer's place in the fnnet pipeline, as ``torch.nn.Sequential`` numbers its modules:
layer ``i`` of a ``serial`` is module ``i`` (a nested ``serial`` a nested ``Sequential``, keys
``"2.0.weight"``); a ``Residual`` is a module whose ``inner`` and ``shortcut`` attributes hold
its parts (``"3.inner.0.weight"``). Parameter-free layers own no keys but keep their place, so the torch
network must have a module at every position where the fnnet model has a layer.

The mapping, layer by layer (keys relative to the layer's place, e.g. ``"7.weight"``):

- ``Affine(out)`` is ``nn.Linear(in, out)``: ``weight`` = ``w.T``, shape ``(out, in)`` (fnnet keeps
  ``(in, out)``); ``bias`` = ``b``, ``(out,)``.
- ``Conv2D(FN, k, stride, pad, groups=G)`` is ``nn.Conv2d(C, FN, k, stride, pad, groups=G)``:
  ``weight`` ``(FN, C/G, FH, FW)`` and ``bias`` ``(FN,)``, the same arrays; ``Conv1D`` likewise
  is ``nn.Conv1d`` with ``weight`` ``(FN, C/G, K)``.
- ``BatchNorm(momentum, eps)`` is ``nn.BatchNorm1d`` on ``(N, D)`` inputs, ``nn.BatchNorm2d`` on
  ``(N, C, H, W)``, built with ``eps=1e-6`` (fnnet's default, torch's is 1e-5) and
  ``momentum = 1 - fnnet's momentum`` (0.1 for 0.9): ``weight`` = gamma, ``bias`` = beta,
  ``running_mean`` = ``state.mean``, ``running_var`` = ``state.var`` (all ``(C,)``), and
  ``num_batches_tracked`` = ``state.count`` (0-d int64). Evaluation is the same; training goes on
  slightly differently, as torch folds the unbiased batch variance into ``running_var`` and fnnet
  (like the book) the biased one.
- ``LayerNorm(eps)`` is ``nn.LayerNorm(in_shape, eps=eps)``: ``weight`` = gamma, ``bias`` = beta,
  both of shape ``in_shape``.
- ``GroupNorm(G, eps)`` is ``nn.GroupNorm(G, C, eps=eps)``: ``weight`` = gamma, ``bias`` = beta, ``(C,)``.
- ``Embedding(V, D)`` is ``nn.Embedding(V, D)``: ``weight`` = ``w``, ``(V, D)``, the same array.
- ``TimeAffine(out)`` is ``nn.Linear(D, out)`` on the last axis of ``(N, T, D)``: ``weight`` = ``w.T``
  ``(out, D)``, ``bias`` = ``b``.
- ``RNN(H)``, ``LSTM(H)``, ``GRU(H)`` are one-layer, one-direction ``nn.RNN(D, H)`` (tanh),
  ``nn.LSTM(D, H)``, ``nn.GRU(D, H)``, with ``batch_first=True`` for fnnet's ``(N, T, D)`` (the
  weights do not depend on it): ``weight_ih_l0`` ``(G*H, D)``, ``weight_hh_l0`` ``(G*H, H)``,
  ``bias_ih_l0`` and ``bias_hh_l0`` ``(G*H,)``, ``G`` = 1, 4, 3 gate blocks. PyTorch's row blocks
  are LSTM ``(i, f, g, o)`` (fnnet's columns are ``(f, g, i, o)``, reordered here) and GRU
  ``(r, z, n)`` (the same as fnnet's): ``weight_ih_l0`` = ``wx.T`` and ``weight_hh_l0`` =
  ``wh.T`` with their blocks so ordered. Out, ``b`` goes into ``bias_ih_l0`` and ``bias_hh_l0``
  is zeros, but for the GRU's ``bhn`` in its ``n`` block; in, ``b`` is the sum of the two biases,
  except in the GRU's ``n`` block, where ``bias_hh_l0``'s part is ``bhn`` (it sits inside the
  reset product). The torch module at the layer's position must hold these keys itself: an
  ``nn.LSTM`` returns a tuple, so ``nn.Sequential`` needs a subclass at that position whose
  ``forward`` returns ``super().forward(x)[0]`` (``return_sequences=True``) or the last step
  ``[0][:, -1]``. Keys of more layers (``_l1``), of the reverse direction (``_reverse``) or of a
  projection (``weight_hr_l0``) are unexpected keys. The state dict holds no hidden state: a
  stateful layer's weights map alike.
- ``serial(...)`` is ``nn.Sequential(...)`` (keys ``"i.<key>"``). ``residual(f, shortcut)`` is a
  module with attributes ``inner`` and ``shortcut`` computing ``inner(x) + shortcut(x)`` (keys
  ``"i.inner.<key>"``, ``"i.shortcut.<key>"``; no shortcut keys for the identity).
  ``concat(*branches, axis)`` and ``add_branches(*branches)`` are modules holding an
  ``nn.ModuleList`` ``branches`` (keys ``"i.branches.j.<key>"``) that concatenate the branches'
  outputs along ``axis + 1`` or sum them.
- Parameter-free layers own no keys: ``ReLU``, ``Sigmoid``, ``Tanh``, ``Softmax`` (``dim=-1``),
  ``LeakyReLU``, ``ELU``, ``GELU`` (``approximate="tanh"`` for ``approximate=True``), ``SiLU``,
  ``Softplus``, ``Identity``, ``Flatten``, ``MaxPool2d`` / ``MaxPool1d``, ``AvgPool2d`` / ``AvgPool1d``
  (``count_include_pad=True``),
  ``GlobalAvgPool2D`` (``nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())``) and ``Dropout``
  (inverted in both).

An ``Affine`` flattens ``(N, C, H, W)`` inputs itself; torch needs an ``nn.Flatten`` module for
that, which takes a position. To line the positions up, put a ``fnnet.Flatten()`` before the
``Affine`` where the torch network has its ``nn.Flatten()`` (both flatten in C order, so the
weights are the same). BatchNorm's ``num_batches_tracked`` becomes ``state.count``, the number of
training passes folded into the statistics (fnnet refuses to evaluate with a count of 0); without
that key the statistics count as updated once. Imported arrays take the dtype of ``model.init``
(float32).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from fnnet._io import npz_member_header, open_regular
from fnnet.errors import FormatError
from fnnet.export.onnx_graph import ExportError, child, describe, gate_rows
from fnnet.layers.base import Layer
from fnnet.layers.combinators import AddBranches, Concat, Residual, Serial
from fnnet.layers.conv import Conv1D, Conv2D, ConvParams
from fnnet.layers.core import Affine, AffineParams
from fnnet.layers.embedding import Embedding, EmbeddingParams, TimeAffine
from fnnet.layers.norm import (
    BatchNorm,
    BatchNormParams,
    BatchNormState,
    GroupNorm,
    GroupNormParams,
    LayerNorm,
    LayerNormParams,
)
from fnnet.layers.recurrent import GRU, LSTM, RNN, GRUParams, LSTMParams, RNNParams
from fnnet.random import key as make_key
from fnnet.tree import tree_leaves
from fnnet.typing import Array, Shape

__all__ = ["TorchMapping", "TORCH_MAPPINGS", "StateDictReader", "to_torch_state_dict", "from_torch_state_dict"]

#: How a state dict given as a mapping is named in error messages.
MAPPING_SOURCE = "state dict"
# What zipfile and numpy's .npy reader raise on a damaged archive member.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError, NotImplementedError, RuntimeError)


class StateDictReader:
    """The arrays of a state dict, handed out one key at a time with their shape checked first.

    Attributes:
        source: the file name (or ``"state dict"`` for a mapping), as errors name it.
        keys: every key there is.
        used: the keys taken so far.

    ``header(key) -> (shape, dtype)`` reads what an array is without its data, ``read(key)`` the
    array itself.

    >>> import numpy as np
    >>> from fnnet.export.torch_state import StateDictReader
    >>> arrays = {"0.bias": np.zeros(3)}
    >>> reader = StateDictReader("state dict", list(arrays), lambda k: (arrays[k].shape, arrays[k].dtype),
    ...                          arrays.__getitem__)
    >>> reader.take("0.bias", (3,), "the bias", np.dtype(np.float32)).dtype, reader.used
    (dtype('float32'), {'0.bias'})
    >>> reader.take("0.bias", (4,), "the bias", np.dtype(np.float32))
    Traceback (most recent call last):
    fnnet.errors.FormatError: state dict: key '0.bias': expected the bias of shape (4,), got shape (3,)
    """

    def __init__(
        self, source: str, keys: list[str], header: Callable[[str], tuple[tuple[int, ...], np.dtype[Any]]],
        read: Callable[[str], Array],
    ):
        self.source = source
        self.keys = keys
        self._header = header
        self._read = read
        self.used: set[str] = set()

    def _fail(self, key: str, reason: str) -> FormatError:
        return FormatError(self.source, f"key {key!r}", reason)

    def _unused(self) -> str:
        rest = sorted(set(self.keys) - self.used)
        if not rest:
            return ""
        shown = ", ".join(repr(k) for k in rest[:4]) + (", ..." if len(rest) > 4 else "")
        return f" (keys not taken so far: {shown}; does every fnnet layer sit at its torch module's position?)"

    def _meta(self, key: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
        try:
            return self._header(key)
        except FormatError:
            raise
        except _READ_ERRORS as e:
            raise self._fail(key, f"cannot read its header: {e}") from None

    def take(self, key: str, shape: tuple[int, ...], what: str, dtype: np.dtype[Any]) -> Array:
        """The float array under ``key``, checked to have ``shape`` and finite values, as ``dtype``.

        Raises:
            FormatError: the key is missing, or its array has another shape, is not floating
                point, or holds NaN or infinities (``what`` says whose array it is).
        """
        if key not in self.keys:
            raise self._fail(key, f"missing: {what} of shape {shape}{self._unused()}")
        got, got_dtype = self._meta(key)
        if got != shape:
            raise self._fail(key, f"expected {what} of shape {shape}, got shape {got}")
        if got_dtype.kind != "f":
            raise self._fail(key, f"expected {what} as floating point values, got dtype {got_dtype}")
        try:
            a = np.asarray(self._read(key))
        except _READ_ERRORS as e:
            raise self._fail(key, f"cannot read: {e}") from None
        if a.shape != shape or a.dtype.kind != "f":  # a header that lied
            raise self._fail(key, f"expected {what} of shape {shape}, got {a.dtype} {a.shape}")
        if not np.all(np.isfinite(a)):
            raise self._fail(key, f"{what} holds NaN or infinite values")
        with np.errstate(over="ignore"):
            out = np.array(a, dtype=dtype, order="C")
        if not np.all(np.isfinite(out)):  # finite float64 values beyond float32's range
            raise self._fail(key, f"{what} holds values too large for {dtype} (largest magnitude {float(np.max(np.abs(a))):g})")
        self.used.add(key)
        return out

    def take_count(self, key: str, what: str) -> Array | None:
        """The 0-d non-negative integer under ``key`` as int64 (``None`` when absent)."""
        if key not in self.keys:
            return None
        got, got_dtype = self._meta(key)
        if got != () or got_dtype.kind not in "iu":
            raise self._fail(key, f"expected {what} as a 0-d integer, got {got_dtype} of shape {got}")
        try:
            a = np.asarray(self._read(key))
        except _READ_ERRORS as e:
            raise self._fail(key, f"cannot read: {e}") from None
        if a.shape != () or a.dtype.kind not in "iu" or not 0 <= int(a) <= np.iinfo(np.int64).max:
            raise self._fail(key, f"expected {what} as a 0-d integer in [0, 2**63), got {a.dtype} {a.shape} {a!r}")
        self.used.add(key)
        return np.asarray(int(a), dtype=np.int64)


#: ``to_torch(layer, params, state, where) -> {key: array}``.
ToTorch = Callable[[Any, Any, Any, str], dict[str, Array]]
#: ``from_torch(layer, in_shape, like_params, like_state, where, reader) -> (params, state)``; the
#: ``like_*`` values (from ``init`` and ``init_state``) give the structure, shapes and dtypes.
FromTorch = Callable[[Any, Shape, Any, Any, str, StateDictReader], tuple[Any, Any]]


class TorchMapping(NamedTuple):
    """How one layer kind maps to a torch module's ``state_dict`` entries (see the module docstring).

    Attributes:
        to_torch: ``(layer, params, state, where) -> {key: array}``.
        from_torch: ``(layer, in_shape, like_params, like_state, where, reader) -> (params, state)``,
            the ``like_*`` values (from ``init`` and ``init_state``) giving structure, shapes and
            dtypes, the arrays taken from a :class:`StateDictReader`.

    >>> import fnnet
    >>> from fnnet.export import TORCH_MAPPINGS
    >>> layer = fnnet.Affine(2)
    >>> params, _ = layer.init(fnnet.key(0), (3,))
    >>> {k: v.shape for k, v in TORCH_MAPPINGS[fnnet.Affine].to_torch(layer, params, None, "4").items()}
    {'4.weight': (2, 3), '4.bias': (2,)}
    """

    to_torch: ToTorch
    from_torch: FromTorch


def _dtype(like: Array) -> np.dtype[Any]:
    return np.asarray(like).dtype


# --- leaf layers ---------------------------------------------------------------------------------


def _affine_to(layer: Affine, params: AffineParams, state: None, where: str) -> dict[str, Array]:
    return {child(where, "weight"): np.ascontiguousarray(np.asarray(params.w).T), child(where, "bias"): np.array(params.b)}


def _affine_from(
    layer: Affine, in_shape: Shape, like: AffineParams, like_state: None, where: str, reader: StateDictReader
) -> tuple[AffineParams, None]:
    n_in, out = like.w.shape
    desc = describe(where, layer)
    w = reader.take(child(where, "weight"), (out, n_in), f"{desc}'s Linear weight (out, in)", _dtype(like.w))
    b = reader.take(child(where, "bias"), (out,), f"{desc}'s bias", _dtype(like.b))
    return AffineParams(np.ascontiguousarray(w.T), b), like_state


def _conv_to(layer: Conv2D | Conv1D, params: ConvParams, state: None, where: str) -> dict[str, Array]:
    return {child(where, "weight"): np.array(params.w), child(where, "bias"): np.array(params.b)}


def _conv_from(
    layer: Conv2D | Conv1D, in_shape: Shape, like: ConvParams, like_state: None, where: str, reader: StateDictReader
) -> tuple[ConvParams, None]:
    desc = describe(where, layer)
    w = reader.take(child(where, "weight"), like.w.shape, f"{desc}'s weight (FN, C, FH, FW)", _dtype(like.w))
    b = reader.take(child(where, "bias"), like.b.shape, f"{desc}'s bias", _dtype(like.b))
    return ConvParams(w, b), like_state


def _batch_norm_to(layer: BatchNorm, params: BatchNormParams, state: Any, where: str) -> dict[str, Array]:
    if not isinstance(state, BatchNormState):
        raise ExportError(
            f"{describe(where, layer)}: its running statistics are part of the state dict, got state "
            f"{type(state).__name__}; pass state= (the model state after training)"
        )
    return {
        child(where, "weight"): np.array(params.gamma),
        child(where, "bias"): np.array(params.beta),
        child(where, "running_mean"): np.array(state.mean),
        child(where, "running_var"): np.array(state.var),
        child(where, "num_batches_tracked"): np.asarray(int(state.count), dtype=np.int64),
    }


def _batch_norm_from(
    layer: BatchNorm, in_shape: Shape, like: BatchNormParams, like_state: BatchNormState, where: str,
    reader: StateDictReader,
) -> tuple[BatchNormParams, BatchNormState]:
    desc = describe(where, layer)
    c = like.gamma.shape
    gamma = reader.take(child(where, "weight"), c, f"{desc}'s weight (gamma)", _dtype(like.gamma))
    beta = reader.take(child(where, "bias"), c, f"{desc}'s bias (beta)", _dtype(like.beta))
    mean = reader.take(child(where, "running_mean"), c, f"{desc}'s running_mean", _dtype(like_state.mean))
    var = reader.take(child(where, "running_var"), c, f"{desc}'s running_var", _dtype(like_state.var))
    if np.any(var < 0):
        raise FormatError(reader.source, f"key {child(where, 'running_var')!r}", f"{desc}'s running_var has negative values")
    count = reader.take_count(child(where, "num_batches_tracked"), f"{desc}'s num_batches_tracked")
    return BatchNormParams(gamma, beta), BatchNormState(mean, var, np.asarray(1, np.int64) if count is None else count)


def _sample_norm_to(layer: LayerNorm | GroupNorm, params: Any, state: None, where: str) -> dict[str, Array]:
    return {child(where, "weight"): np.array(params.gamma), child(where, "bias"): np.array(params.beta)}


def _sample_norm_from(
    layer: LayerNorm | GroupNorm, in_shape: Shape, like: Any, like_state: None, where: str, reader: StateDictReader
) -> tuple[Any, None]:
    desc = describe(where, layer)
    gamma = reader.take(child(where, "weight"), like.gamma.shape, f"{desc}'s weight (gamma)", _dtype(like.gamma))
    beta = reader.take(child(where, "bias"), like.beta.shape, f"{desc}'s bias (beta)", _dtype(like.beta))
    return type(like)(gamma, beta), like_state


# --- sequence layers -----------------------------------------------------------------------------


def _time_affine_to(layer: TimeAffine, params: AffineParams, state: None, where: str) -> dict[str, Array]:
    shapes = [getattr(getattr(params, n, None), "shape", None) for n in ("w", "b")]
    if shapes[0] is None or len(shapes[0]) != 2 or shapes[0][1] != layer.units or shapes[1] != (layer.units,):
        raise ExportError(
            f"{describe(where, layer)}: expected params w of shape (D, {layer.units}) and b of shape ({layer.units},), "
            f"got w {shapes[0]} and b {shapes[1]}"
        )
    return _affine_to(layer, params, state, where)  # type: ignore[arg-type]


def _embedding_to(layer: Embedding, params: EmbeddingParams, state: None, where: str) -> dict[str, Array]:
    w = getattr(params, "w", None)
    if not isinstance(w, np.ndarray) or w.shape != (layer.vocab_size, layer.dim):
        got = w.shape if isinstance(w, np.ndarray) else type(params).__name__
        raise ExportError(f"{describe(where, layer)}: expected params w of shape ({layer.vocab_size}, {layer.dim}), got {got}")
    return {child(where, "weight"): np.array(params.w)}


def _embedding_from(
    layer: Embedding, in_shape: Shape, like: EmbeddingParams, like_state: None, where: str, reader: StateDictReader
) -> tuple[EmbeddingParams, None]:
    w = reader.take(child(where, "weight"), like.w.shape, f"{describe(where, layer)}'s weight (V, D)", _dtype(like.w))
    return EmbeddingParams(w), like_state


#: For each recurrent layer, the gate block of fnnet's that each of PyTorch's blocks holds:
#: LSTM (i, f, g, o) from fnnet's (f, g, i, o); GRU (r, z, n) and RNN as they are.
_TORCH_GATES: dict[type[Layer], tuple[int, ...]] = {RNN: (0,), LSTM: (2, 0, 1, 3), GRU: (0, 1, 2)}


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(order))


def _recurrent_to(layer: RNN | LSTM | GRU, params: Any, state: Any, where: str) -> dict[str, Array]:
    order = _TORCH_GATES[type(layer)]
    h, gh = layer.hidden, len(order) * layer.hidden
    names = ("wx", "wh", "b", "bhn") if isinstance(layer, GRU) else ("wx", "wh", "b")
    shapes = [getattr(getattr(params, n, None), "shape", None) for n in names]
    wx_ok = shapes[0] is not None and len(shapes[0]) == 2 and shapes[0][1] == gh
    if not wx_ok or shapes[1:] != [(h, gh), (gh,), (h,)][: len(names) - 1]:
        got = ", ".join(f"{n} {shape}" for n, shape in zip(names, shapes))
        raise ExportError(f"{describe(where, layer)}: expected params of hidden size {h} (wx (D, {gh}), wh ({h}, {gh})), got {got}")
    b_hh = np.zeros_like(params.b)
    if isinstance(layer, GRU):
        b_hh[2 * layer.hidden :] = params.bhn  # the n block: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    return {
        child(where, "weight_ih_l0"): gate_rows(np.asarray(params.wx).T, order),
        child(where, "weight_hh_l0"): gate_rows(np.asarray(params.wh).T, order),
        child(where, "bias_ih_l0"): gate_rows(np.asarray(params.b), order),
        child(where, "bias_hh_l0"): gate_rows(b_hh, order),
    }


def _recurrent_from(
    layer: RNN | LSTM | GRU, in_shape: Shape, like: Any, like_state: Any, where: str, reader: StateDictReader
) -> tuple[Any, Any]:
    back = _inverse(_TORCH_GATES[type(layer)])
    desc = describe(where, layer)
    (d, gh), h = like.wx.shape, layer.hidden
    gates = f"{gh // h}H" if gh != h else "H"
    dtype = _dtype(like.wx)
    w_ih = reader.take(child(where, "weight_ih_l0"), (gh, d), f"{desc}'s weight_ih_l0 ({gates}, D)", dtype)
    w_hh = reader.take(child(where, "weight_hh_l0"), (gh, h), f"{desc}'s weight_hh_l0 ({gates}, H)", dtype)
    b_ih = reader.take(child(where, "bias_ih_l0"), (gh,), f"{desc}'s bias_ih_l0 ({gates},)", dtype)
    b_hh = reader.take(child(where, "bias_hh_l0"), (gh,), f"{desc}'s bias_hh_l0 ({gates},)", dtype)
    wx, wh = np.ascontiguousarray(gate_rows(w_ih, back).T), np.ascontiguousarray(gate_rows(w_hh, back).T)
    if isinstance(layer, GRU):
        # b_hn stays inside the reset product as bhn; the r and z biases add up
        b = b_ih + np.concatenate([b_hh[: 2 * h], np.zeros(h, dtype)])
        return GRUParams(wx, wh, gate_rows(b, back), b_hh[2 * h :].copy()), like_state
    params_type = LSTMParams if isinstance(layer, LSTM) else RNNParams
    return params_type(wx, wh, gate_rows(b_ih + b_hh, back)), like_state


# --- containers ----------------------------------------------------------------------------------


def _check_entries(layer: Layer, params: Any, states: Any, n: int, where: str) -> None:
    """ExportError unless ``params`` and ``states`` are tuples of ``n`` entries (zip would drop the rest)."""
    if not isinstance(params, tuple) or len(params) != n or not isinstance(states, tuple) or len(states) != n:
        raise ExportError(f"{describe(where, layer)}: expected params and state as tuples of {n} entries")


def _serial_to(layer: Serial, params: Any, state: Any, where: str) -> dict[str, Array]:
    states = (None,) * len(layer.layers) if state is None else state
    _check_entries(layer, params, states, len(layer.layers), where)
    out: dict[str, Array] = {}
    for i, (sub, p, s) in enumerate(zip(layer.layers, params, states)):
        out.update(_to(sub, p, s, child(where, i)))
    return out


def _serial_from(
    layer: Serial, in_shape: Shape, like: Any, like_state: Any, where: str, reader: StateDictReader
) -> tuple[Any, Any]:
    params, states = [], []
    shape = tuple(in_shape)
    for i, (sub, p, s) in enumerate(zip(layer.layers, like, like_state)):
        p, s = _from(sub, shape, p, s, child(where, i), reader)
        params.append(p)
        states.append(s)
        shape = sub.out_shape(shape)
    return tuple(params), tuple(states)


def _fan_out(layer: Residual | Concat | AddBranches) -> list[tuple[str, Layer | None]]:
    """A fan-out's parts with their key steps (``None``: the identity shortcut)."""
    if isinstance(layer, Residual):
        return [("inner", layer.inner), ("shortcut", layer.shortcut)]
    return [(f"branches.{i}", b) for i, b in enumerate(layer.branches)]


def _fan_out_to(layer: Residual | Concat | AddBranches, params: Any, state: Any, where: str) -> dict[str, Array]:
    parts = _fan_out(layer)
    states = (None,) * len(parts) if state is None else state
    _check_entries(layer, params, states, len(parts), where)
    out: dict[str, Array] = {}
    for (step, part), p, s in zip(parts, params, states):
        if part is not None:
            out.update(_to(part, p, s, child(where, step)))
    return out


def _fan_out_from(
    layer: Residual | Concat | AddBranches, in_shape: Shape, like: Any, like_state: Any, where: str,
    reader: StateDictReader,
) -> tuple[Any, Any]:
    params, states = [], []
    for (step, part), p, s in zip(_fan_out(layer), like, like_state):
        if part is not None:
            p, s = _from(part, in_shape, p, s, child(where, step), reader)
        params.append(p)
        states.append(s)
    return tuple(params), tuple(states)


TORCH_MAPPINGS: dict[type[Layer], TorchMapping] = {
    Affine: TorchMapping(_affine_to, _affine_from),
    Conv2D: TorchMapping(_conv_to, _conv_from),
    Conv1D: TorchMapping(_conv_to, _conv_from),
    BatchNorm: TorchMapping(_batch_norm_to, _batch_norm_from),
    LayerNorm: TorchMapping(_sample_norm_to, _sample_norm_from),
    GroupNorm: TorchMapping(_sample_norm_to, _sample_norm_from),
    Embedding: TorchMapping(_embedding_to, _embedding_from),
    TimeAffine: TorchMapping(_time_affine_to, _affine_from),
    RNN: TorchMapping(_recurrent_to, _recurrent_from),
    LSTM: TorchMapping(_recurrent_to, _recurrent_from),
    GRU: TorchMapping(_recurrent_to, _recurrent_from),
    Serial: TorchMapping(_serial_to, _serial_from),
    Residual: TorchMapping(_fan_out_to, _fan_out_from),
    Concat: TorchMapping(_fan_out_to, _fan_out_from),
    AddBranches: TorchMapping(_fan_out_to, _fan_out_from),
}
"""Layer type -> :class:`TorchMapping` (exact types). Layers without an entry map to no keys if they
have neither parameters nor state (activations, pooling, Dropout, Flatten); otherwise they cannot
be mapped. Add an entry for a parametrised layer kind of your own.

>>> from fnnet.export import TORCH_MAPPINGS
>>> sorted(t.__name__ for t in TORCH_MAPPINGS)[:4]
['AddBranches', 'Affine', 'BatchNorm', 'Concat']
"""


def _unmapped(layer: Layer, where: str) -> ExportError:
    return ExportError(f"{describe(where, layer)}: has parameters or state but no PyTorch mapping")


def _to(layer: Layer, params: Any, state: Any, where: str) -> dict[str, Array]:
    mapping = TORCH_MAPPINGS.get(type(layer))
    if mapping is not None:
        return mapping.to_torch(layer, params, state, where)
    if tree_leaves(params) or tree_leaves(state):
        raise _unmapped(layer, where)
    return {}


def _from(layer: Layer, in_shape: Shape, like: Any, like_state: Any, where: str, reader: StateDictReader) -> tuple[Any, Any]:
    mapping = TORCH_MAPPINGS.get(type(layer))
    if mapping is not None:
        return mapping.from_torch(layer, in_shape, like, like_state, where, reader)
    if tree_leaves(like) or tree_leaves(like_state):
        raise _unmapped(layer, where)
    return like, like_state


def to_torch_state_dict(model: Layer, params: Any, state: Any = None) -> dict[str, Array]:
    """``model``'s parameters (and BatchNorm statistics) as a PyTorch ``state_dict`` of NumPy arrays.

    Args:
        model: a layer or pipeline (see the module docstring for the layer -> module table).
        params: its parameters.
        state: its state (needed when the model has BatchNorm layers).
    Returns:
        key -> new array, in layer order: ``Linear`` weights ``(out, in)``, the rest as fnnet holds
        them, ``num_batches_tracked`` a 0-d int64. On the torch side:
        ``net.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})``.
    Raises:
        ExportError: a layer with parameters or state that has no entry in :data:`TORCH_MAPPINGS`,
            or a pipeline whose params or state do not have one entry per layer.

    >>> import fnnet
    >>> from fnnet.export import to_torch_state_dict
    >>> model = fnnet.serial(fnnet.Flatten(), fnnet.Affine(3))
    >>> params, _ = model.init(fnnet.key(0), (2, 2))
    >>> {k: v.shape for k, v in to_torch_state_dict(model, params).items()}
    {'1.weight': (3, 4), '1.bias': (3,)}
    >>> lm = fnnet.serial(fnnet.Embedding(10, 4), fnnet.LSTM(6), fnnet.TimeAffine(10))
    >>> params, _ = lm.init(fnnet.key(0), (7,))
    >>> {k: v.shape for k, v in to_torch_state_dict(lm, params).items()}  # doctest: +NORMALIZE_WHITESPACE
    {'0.weight': (10, 4), '1.weight_ih_l0': (24, 4), '1.weight_hh_l0': (24, 6), '1.bias_ih_l0': (24,),
     '1.bias_hh_l0': (24,), '2.weight': (10, 6), '2.bias': (10,)}
    """
    return _to(model, params, state, "")


@contextmanager
def _reader_for(arrays: Mapping[str, Any] | str | os.PathLike[str]) -> Iterator[StateDictReader]:
    if isinstance(arrays, Mapping):
        values = dict(arrays)
        for k in values:
            if not isinstance(k, str):
                raise FormatError(MAPPING_SOURCE, f"key {k!r}", "keys must be strings")

        def header(key: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
            a = np.asarray(values[key])
            return a.shape, a.dtype

        yield StateDictReader(MAPPING_SOURCE, list(values), header, lambda key: np.asarray(values[key]))
        return
    path = os.fspath(arrays)
    with open_regular(path) as f:
        try:
            npz = np.load(f, allow_pickle=False)
        except _READ_ERRORS as e:
            raise FormatError(path, "", f"not a readable .npz archive: {e}") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise FormatError(path, "", "not an .npz archive (a single .npy array); write it with np.savez(path, **arrays)")
        with npz:
            yield StateDictReader(path, list(npz.files), lambda key: npz_member_header(npz, key), lambda key: npz[key])


def from_torch_state_dict(
    model: Layer, in_shape: Shape, arrays: Mapping[str, Any] | str | os.PathLike[str]
) -> tuple[Any, Any]:
    """``(params, state)`` for ``model`` from a PyTorch ``state_dict``'s arrays.

    Args:
        model: the fnnet equivalent of the torch network, layer ``i`` at module ``i`` (see the
            module docstring).
        in_shape: the input shape without the batch axis (it fixes ``Linear``'s ``in``).
        arrays: key -> array (NumPy arrays, or anything ``np.asarray`` takes), or the path of an
            ``.npz`` written by ``np.savez(path, **{k: v.numpy() for k, v in sd.items()})``
            (read with ``allow_pickle=False``; each array's shape is checked from its header
            before its data is read).
    Returns:
        ``(params, state)`` shaped as ``model.init`` and ``model.init_state`` shape them, in their
        dtypes (float32), ``Linear`` weights transposed to Affine's ``(in, out)``.
    Raises:
        FormatError: naming the file (or ``"state dict"``) and the key: a missing key, an unexpected
            key, a shape that does not fit the layer, a non-float or non-finite array.
        ExportError: a layer with parameters that has no entry in :data:`TORCH_MAPPINGS`.

    >>> import numpy as np, fnnet
    >>> from fnnet.export import from_torch_state_dict
    >>> model = fnnet.serial(fnnet.Affine(2))
    >>> sd = {"0.weight": np.arange(6.0).reshape(2, 3), "0.bias": np.zeros(2)}
    >>> params, state = from_torch_state_dict(model, (3,), sd)
    >>> params[0].w.shape, params[0].w.dtype, state
    ((3, 2), dtype('float32'), (None,))
    """
    in_shape = tuple(int(s) for s in in_shape)
    like, _ = model.init(make_key(0), in_shape)
    like_state = model.init_state(in_shape)
    with _reader_for(arrays) as reader:
        params, state = _from(model, in_shape, like, like_state, "", reader)
        extra = sorted(set(reader.keys) - reader.used)
        if extra:
            more = f" ({len(extra)} unexpected keys in all)" if len(extra) > 1 else ""
            raise FormatError(reader.source, f"key {extra[0]!r}", f"unexpected: no layer of the model takes it{more}")
    return params, state
