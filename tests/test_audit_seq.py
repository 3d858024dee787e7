"""Edge cases of the sequence models found in an audit: tiny shapes in float64, truncated BPTT
across batches, decoding arguments, sampling at extreme temperatures, hyperparameter flags and
errors that name the layer."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, assert_grads_ok, call_unchanged, init64, normal, read_only, rng

import fnnet
from fnnet.errors import FormatError
from fnnet.layers.base import TRAIN, Layer
from fnnet.layers.embedding import ONE_HOT_MAX_VOCAB, embedding_grad
from fnnet.layers.recurrent import GRU, LSTM, RNN
from fnnet.losses import time_softmax_cross_entropy
from fnnet.numerical import numerical_gradient
from fnnet.seq2seq import (
    AttentionSeq2seq,
    Seq2seq,
    Seq2seqParams,
    attention_weights,
    generate,
    load_sequel_attention,
    sample,
    sequence_accuracy,
    teacher_forcing,
)
from fnnet.tree import tree_flatten, tree_map, tree_paths

WEIGHTS = Path(__file__).resolve().parent.parent / "examples" / "weights" / "sequel" / "ch08_attention_seq2seq.npz"
RECURRENT: list[type[Layer]] = [RNN, LSTM, GRU]
V, TS, TT = 6, 3, 2


def _biased64(make: type[Layer], hidden: int, in_shape: tuple[int, int], seed: int = 0, **kw: Any) -> Any:
    """float64 params with non-zero biases."""
    params, _ = init64(make(hidden, **kw), in_shape, seed)  # type: ignore[call-arg]
    return params._replace(b=normal(params.b.shape, seed, 7))


# --- float64 gradients on paths the other tests do not reach ---------------------------------------


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_one_sample_one_step_one_unit_gradients(make: type[Layer], return_sequences: bool) -> None:
    """N = T = H = 1, where every transposition in the kernels is a no-op view."""
    layer = make(1, return_sequences=return_sequences)  # type: ignore[call-arg]
    assert_grads_ok(layer, _biased64(make, 1, (1, 1)), normal((1, 1, 1), 1), tol=1e-6)


@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_stateful_second_batch_gradient_treats_the_carried_state_as_a_constant(make: type[Layer]) -> None:
    """Truncated BPTT over two consecutive batches, float64: the second batch's parameter and
    input gradients are those of the second batch's loss with the carried state held fixed."""
    n, t, d, h = 2, 3, 2, 2
    layer = make(h, stateful=True)  # type: ignore[call-arg]
    params = _biased64(make, h, (t, d), stateful=True)
    x1, x2 = normal((n, t, d), 1), normal((n, t, d), 2)
    _, carried, _ = layer.forward(params, None, x1, TRAIN)
    y2, state2, cache = layer.forward(params, carried, x2, TRAIN)
    r = normal(y2.shape, 3)
    dx, grads = layer.backward(params, cache, r)
    num_p, num_x = numerical_gradient(lambda tree: float(np.sum(layer.forward(tree[0], carried, tree[1])[0] * r)), (params, x2))
    np.testing.assert_allclose(dx, num_x, rtol=1e-6, atol=1e-9)
    for name, a, b in zip(params._fields, grads, num_p):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, err_msg=name)
    assert type(state2) is type(carried) and not np.array_equal(state2.h, carried.h)


@pytest.mark.parametrize("model", [Seq2seq(V, 2, 1, src_len=1, peeky=True), AttentionSeq2seq(V, 2, 1, src_len=1)], ids=["peeky", "attention"])
def test_seq2seq_gradients_with_one_source_token_one_target_and_one_unit(model: Any) -> None:
    params, _ = init64(model, (2,))
    g = rng(4)
    params = tree_map(lambda a: a + 0.5 * g.standard_normal(a.shape), params)
    x, t = np.array([[3, 1]]), np.array([[4]])
    y, _, cache = model.forward(params, None, x)
    _, grads = model.backward(params, cache, time_softmax_cross_entropy(y, t)[1])
    num = numerical_gradient(lambda p: time_softmax_cross_entropy(model.apply(p, x), t)[0], params)
    for path, a, b in zip(tree_paths(params), tree_flatten(grads)[0], tree_flatten(num)[0]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, err_msg=path)


# --- truncated BPTT with a changing batch --------------------------------------------------------------


@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_stateful_layer_refuses_a_batch_of_another_size_and_none_restarts(make: type[Layer]) -> None:
    layer = make(3, stateful=True)  # type: ignore[call-arg]
    params, _ = layer.init(fnnet.key(0), (4, 2))
    _, carried, _ = layer.forward(params, None, normal((3, 4, 2), 1, dtype=np.float32), TRAIN)
    smaller = normal((2, 4, 2), 2, dtype=np.float32)
    with pytest.raises(ValueError, match=rf"^{make.__name__}: expected state\.h of shape \(2, 3\) .* got \(3, 3\) .*"
                                         r"batches of one size: .*\(fit: drop_last=True\) .* from state=None"):  # fmt: skip
        layer.forward(params, carried, smaller, TRAIN)
    y, state, _ = layer.forward(params, None, smaller, TRAIN)
    assert y.shape == (2, 4, 3) and state.h.shape == (2, 3)


# --- dtypes: errors name the layer -------------------------------------------------------------------


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_recurrent_backward_names_the_layer_for_a_dout_of_another_dtype(make: type[Layer], return_sequences: bool) -> None:
    """Was: ``lstm_scan_backward: expected dhT ...``, a kernel and an argument the caller never saw."""
    layer = make(3, return_sequences=return_sequences)  # type: ignore[call-arg]
    params, _ = layer.init(fnnet.key(0), (4, 2))
    y, _, cache = layer.forward(params, None, normal((2, 4, 2), 1, dtype=np.float32))
    with pytest.raises(ValueError, match=rf"^{make.__name__}\.backward: expected dout of dtype float32 \(the parameters' dtype\), got float64$"):
        layer.backward(params, cache, np.ones(y.shape))


def _model_params(model: Any, seed: int = 0, dtype: Any = np.float32) -> Seq2seqParams:
    params, _ = model.init(fnnet.key(seed), (TS + TT,))
    g = rng(seed, 1)
    out: Seq2seqParams = tree_map(lambda a: (a + 0.4 * g.standard_normal(a.shape)).astype(dtype), params)
    return out


PEEKY = Seq2seq(V, 3, 4, src_len=TS, peeky=True, reverse=True)
ATTENTION = AttentionSeq2seq(V, 3, 4, src_len=TS)


@pytest.mark.parametrize("model", [PEEKY, ATTENTION], ids=["peeky", "attention"])
def test_seq2seq_errors_name_the_model(model: Any) -> None:
    name = type(model).__name__
    params = _model_params(model)
    x = rng(1).integers(0, V, (2, TS + TT))
    y, _, cache = model.forward(params, None, x)
    with pytest.raises(ValueError, match=rf"^{name}\.backward: expected dout of dtype float32 \(the parameters' dtype\), got float64$"):
        model.backward(params, cache, np.ones(y.shape))
    mixed = params._replace(decoder=fnnet.astype(params.decoder, np.float64))
    with pytest.raises(ValueError, match=rf"^{name}: expected (h0|x_const) of .*dtype float64.* got .*float32$"):
        model.forward(mixed, None, x)
    with pytest.raises(ValueError, match=rf"^{name}: expected int input \(N, src_len \+ Tt\) as a NumPy array, got list$"):
        model.forward(params, None, x.tolist())


def test_seq2seq_flags_must_be_bools() -> None:
    """Was: ``converter=bool``, so ``peeky="no"`` built a peeky model."""
    with pytest.raises(ValueError, match=r"^Seq2seq: peeky must be True or False, got 'no'$"):
        Seq2seq(V, 3, 4, src_len=TS, peeky="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^AttentionSeq2seq: reverse must be True or False, got 0$"):
        AttentionSeq2seq(V, 3, 4, src_len=TS, reverse=0)  # type: ignore[arg-type]
    assert Seq2seq(V, 3, 4, src_len=TS, peeky=np.bool_(True)).peeky  # type: ignore[arg-type]


# --- decoding arguments ---------------------------------------------------------------------------------


def _decoders(model: Any, params: Seq2seqParams) -> dict[str, Any]:
    out = {
        "generate": lambda src, s, n: generate(model, params, src, s, n),
        "sample": lambda src, s, n: sample(model, params, src, s, n, key=fnnet.key(1)),
    }
    if isinstance(model, AttentionSeq2seq):
        out["attention_weights"] = lambda src, s, n: attention_weights(model, params, src, s, n)[0]
    return out


@pytest.mark.parametrize("model", [PEEKY, ATTENTION], ids=["peeky", "attention"])
def test_decoding_checks_its_source_start_id_and_length(model: Any) -> None:
    """Was: a negative source id silently read the table's last rows, an id >= V raised an
    IndexError, start_id 1.7 decoded from 1 and a float length raised a TypeError."""
    params = _model_params(model)
    src = rng(2).integers(0, V, (3, TS))
    for fn, decode in _decoders(model, params).items():
        for bad in (-1, V):
            wrong = src.copy()
            wrong[1, 2] = bad
            with pytest.raises(ValueError, match=rf"^{fn}: source ids must be in \[0, {V}\), got ids in \[{min(bad, 0)}, {max(bad, V - 1)}\]$"):
                decode(wrong, 0, TT)
        for start, length in [(1.7, TT), (V, TT), (-1, TT), (True, TT), (0, 2.5), (0, 0), (0, True)]:
            with pytest.raises(ValueError, match=rf"^{fn}: need an int start_id in \[0, {V}\) and an int length >= 1, got "):
                decode(src, start, length)
        one = decode(src, np.int64(0), 1)
        assert one.shape == (3, 1) and one.dtype == np.int64
        assert_bit_identical(decode(src.tolist(), 0, TT), decode(src, 0, TT))  # array-likes as arrays


def test_sampling_at_a_subnormal_temperature_is_greedy_without_nans() -> None:
    """Was: ``logits / 5e-324`` overflowed to inf, inf - inf gave NaN probabilities and
    arbitrary tokens."""
    params = _model_params(PEEKY, 3)
    src = rng(5).integers(0, V, (40, TS))
    greedy = generate(PEEKY, params, src, 0, TT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for temperature in (5e-324, 1e-300):
            np.testing.assert_array_equal(sample(PEEKY, params, src, 0, TT, key=fnnet.key(1), temperature=temperature), greedy)


def test_sampling_with_one_key_repeats_and_never_writes_into_its_arguments() -> None:
    params = read_only(_model_params(ATTENTION, 6))
    src = read_only(rng(7).integers(0, V, (5, TS)))
    a = call_unchanged(lambda p, s: sample(ATTENTION, p, s, 0, TT, key=fnnet.key(2), temperature=2.0), params, src)
    assert_bit_identical(a, sample(ATTENTION, params, src, 0, TT, key=fnnet.key(2), temperature=2.0))
    call_unchanged(lambda p, s: attention_weights(ATTENTION, p, s, 0, TT), params, src)
    # a transposed (non-contiguous) source decodes as its contiguous copy
    src_t = np.asfortranarray(src)
    assert_bit_identical(generate(ATTENTION, params, src_t, 0, TT), generate(ATTENTION, params, src, 0, TT))


def test_sequence_accuracy_and_teacher_forcing_check_their_arguments() -> None:
    """Was: ``batch_size=-1`` returned an accuracy of 0.0 without decoding anything, and float
    ids were truncated to ints."""
    params = _model_params(PEEKY)
    src, answer = rng(8).integers(0, V, (4, TS)), rng(9).integers(0, V, (4, TT + 1))
    answer[:, 0] = 0
    for bad in (-1, 0, 2.0):
        with pytest.raises(ValueError, match=rf"^sequence_accuracy: batch_size must be an int >= 1, got {bad}$"):
            sequence_accuracy(PEEKY, params, src, answer, batch_size=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^teacher_forcing: expected integer ids, got dtypes float64 and int64$"):
        teacher_forcing(src + 0.5, answer)


# --- the whole stack on awkward inputs ----------------------------------------------------------------


def test_read_only_non_contiguous_ids_run_the_stack_as_their_copies() -> None:
    model = fnnet.serial(fnnet.Embedding(V, 3), LSTM(4), GRU(3, return_sequences=False), fnnet.Affine(V))
    params, _ = model.init(fnnet.key(0), (5,))
    ids = rng(10).integers(0, V, (5, 6)).T  # (6, 5), Fortran order
    ids.flags.writeable = False
    y, _, cache = call_unchanged(lambda p, x: model.forward(p, None, x), params, ids)
    y_c, _, cache_c = model.forward(params, None, np.ascontiguousarray(ids))
    assert_bit_identical(y, y_c)
    assert_bit_identical(model.backward(params, cache, np.ones_like(y))[1], model.backward(params, cache_c, np.ones_like(y))[1])


@pytest.mark.parametrize("vocab", [5, ONE_HOT_MAX_VOCAB + 1], ids=["one-hot", "bincount"])
def test_embedding_grad_refuses_ids_it_cannot_place(vocab: int) -> None:
    """Was: on the one-hot path id -1 silently added to the last row, float ids were truncated;
    on the bincount path an id >= V died in a reshape."""
    dout = np.ones((1, 2, 3), np.float32)
    for bad in (-1, vocab):
        with pytest.raises(ValueError, match=rf"^embedding_grad: ids must lie in \[0, {vocab}\), got values in \[{min(bad, 0)}, {max(bad, 0)}\]$"):
            embedding_grad(np.array([[bad, 0]]), dout, vocab)
    with pytest.raises(ValueError, match=r"^embedding_grad: expected integer ids .* got ids \(1, 2\) dtype float64"):
        embedding_grad(np.array([[1.0, 0.0]]), dout, vocab)
    with pytest.raises(ValueError, match=r"^embedding_grad: expected integer ids .* got ids \(1, 3\) dtype int64 and dout \(1, 2, 3\)$"):
        embedding_grad(np.array([[1, 0, 2]]), dout, vocab)
    assert embedding_grad(np.array([[1, 1]]), dout, vocab)[1].tolist() == [2.0, 2.0, 2.0]


def test_the_sequel_weights_reader_turns_damaged_files_into_format_errors(tmp_path: Path) -> None:
    """Was: a .npy file raised TypeError (no context manager), a truncated archive or a bad CRC
    zipfile.BadZipFile, and a 3-D embedding "expected shape (0, 0)"."""
    raw = WEIGHTS.read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    cases = {"truncated.npz": raw[: len(raw) // 2], "crc.npz": bytes(flipped)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FormatError, match=rf"{name}: archive: not a readable \.npz"):
            load_sequel_attention(tmp_path / name)
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(FormatError, match=r"one\.npy: archive: a single \.npy array, not a \.npz archive"):
        load_sequel_attention(tmp_path / "one.npy")
    with np.load(WEIGHTS, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    with pytest.raises(ValueError, match=r"^load_sequel_attention: dtype must be a floating point type, got int32$"):
        load_sequel_attention(WEIGHTS, np.int32)  # was: loaded, then decoding failed inside np.tanh
    for key, bad in [("encoder.embed.W", np.ones((59, 16, 1), np.float16)), ("encoder.lstm.b", np.ones(10, np.float16))]:
        np.savez(tmp_path / "shape.npz", **{**arrays, key: bad})
        with pytest.raises(FormatError, match=rf"{key}: expected a .* got shape {re.escape(str(bad.shape))}"):
            load_sequel_attention(tmp_path / "shape.npz")


def test_a_float64_language_model_pipeline_has_the_numerical_gradient_with_padding() -> None:
    """Embedding -> LSTM (from a carried state) -> GRU -> TimeAffine -> the time loss with a
    padding id outside the vocabulary, all float64, against central differences."""
    pad = V
    model = fnnet.serial(fnnet.Embedding(V, 3), LSTM(3, stateful=True), GRU(2), fnnet.TimeAffine(V))
    params, _ = init64(model, (4,))
    params = tree_map(lambda a: a + 0.3 * rng(11).standard_normal(a.shape), params)
    ids, t = rng(12).integers(0, V, (2, 4)), rng(13).integers(0, V, (2, 4))
    t[0, 1:] = pad
    _, state, _ = model.forward(params, None, rng(14).integers(0, V, (2, 4)), TRAIN)  # a previous batch
    assert state[1] is not None and state[1].h.dtype == np.float64

    def loss(p: Any) -> float:
        return time_softmax_cross_entropy(model.forward(p, state, ids, TRAIN)[0], t, ignore_index=pad)[0]

    y, _, cache = model.forward(params, state, ids, TRAIN)
    _, dy = time_softmax_cross_entropy(y, t, ignore_index=pad)
    assert dy.dtype == np.float64 and not np.any(dy[0, 1:])
    _, grads = model.backward(params, cache, dy, input_grad=False)
    num = numerical_gradient(loss, params)
    for path, a, b in zip(tree_paths(params), tree_flatten(grads)[0], tree_flatten(num)[0]):
        assert a.dtype == np.float64, path
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, err_msg=path)
    all_pad = np.full_like(t, pad)
    value, grad = time_softmax_cross_entropy(y, all_pad, ignore_index=pad)
    assert value == 0.0 and not np.any(grad) and grad.dtype == np.float64


def test_the_sequel_weights_reader_checks_headers_before_reading_data(tmp_path: Path) -> None:
    """A small deflated archive whose arrays declare hundreds of MB is refused from the headers
    alone, without allocating them; a FIFO is refused at once; a missing file stays an OSError."""
    import tracemalloc
    import zipfile

    v, e, h = 4096, 4096, 1024  # consistent shapes: 4096*4096 float32 embeddings are 64 MiB each
    shapes = {"embed.W": (v, e), "lstm.Wx": (e, 4 * h), "lstm.Wh": (h, 4 * h), "lstm.b": (4 * h,)}
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        arrays = {f"{part}.{k}": s for part in ("encoder", "decoder") for k, s in shapes.items()}
        arrays.update({"decoder.affine.W": (2 * h, v), "decoder.affine.b": (v,)})
        for name, shape in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
                f.write(b"\0" * 4096)  # a little data; the headers alone must decide
    assert bomb.stat().st_size < 200_000
    tracemalloc.start()
    with pytest.raises(FormatError, match=r"bomb\.npz: archive: its arrays declare \d+ bytes, more than the 67108864"):
        load_sequel_attention(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match=r"pipe\.npz: not a regular file \(a FIFO\)"):
        load_sequel_attention(fifo)
    with pytest.raises(FileNotFoundError):
        load_sequel_attention(tmp_path / "absent.npz")


def test_sample_refuses_a_temperature_that_is_not_a_number() -> None:
    model = fnnet.Seq2seq(V, 3, 4, src_len=3)
    params, _ = model.init(fnnet.key(0), (5,))
    src = np.array([[1, 2, 3]])
    for bad in ("1", True, None, [1.0]):
        with pytest.raises(ValueError, match=r"^sample: temperature must be a finite number > 0"):
            fnnet.seq2seq.sample(model, params, src, 0, 2, key=fnnet.key(1), temperature=bad)  # type: ignore[arg-type]
    ok = fnnet.seq2seq.sample(model, params, src, 0, 2, key=fnnet.key(1), temperature=float(np.float32(0.5)))
    assert ok.shape == (1, 2)
