"""Encoder–decoder models: gradients (float64), the sequel's semantics, decoding, weights, contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, call_unchanged, init64, read_only, rng

import fnnet
from fnnet.errors import FormatError
from fnnet.layers.recurrent import LSTMParams, lstm_cell
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
from fnnet.tree import tree_flatten, tree_map, tree_paths, tree_structure
from fnnet.typing import Array

WEIGHTS = Path(__file__).resolve().parent.parent / "examples" / "weights" / "sequel" / "ch08_attention_seq2seq.npz"
V, E, H, TS, TT = 7, 3, 5, 4, 3

MODELS = [
    Seq2seq(V, E, H, src_len=TS),
    Seq2seq(V, E, H, src_len=TS, reverse=True),
    Seq2seq(V, E, H, src_len=TS, reverse=True, peeky=True),
    AttentionSeq2seq(V, E, H, src_len=TS),
    AttentionSeq2seq(V, E, H, src_len=TS, reverse=True),
]
IDS = ["plain", "reversed", "peeky", "attention", "attention-reversed"]


def _params(model: Any, seed: int = 0, dtype: Any = np.float64) -> Seq2seqParams:
    """Parameters with O(1) entries (so every gate is far from saturation and from linearity)."""
    params, _ = init64(model, (TS + TT,), seed)
    g = rng(seed, 1)
    out: Seq2seqParams = tree_map(lambda a: (a + 0.4 * g.standard_normal(a.shape)).astype(dtype), params)
    return out


def _batch(n: int = 3, seed: int = 2) -> tuple[Array, Array]:
    g = rng(seed)
    return g.integers(0, V, (n, TS + TT)), g.integers(0, V, (n, TT))


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_backward_matches_central_differences_in_float64(model: Any) -> None:
    params = _params(model)
    x, t = _batch()
    y, _, cache = model.forward(params, None, x)
    _, dy = time_softmax_cross_entropy(y, t)
    _, grads = model.backward(params, cache, dy)
    num = numerical_gradient(lambda p: time_softmax_cross_entropy(model.apply(p, x), t)[0], params)
    assert tree_structure(grads) == tree_structure(params)
    for path, a, n in zip(tree_paths(params), tree_flatten(grads)[0], tree_flatten(num)[0]):
        assert np.abs(n).max() > 1e-6, path  # every weight matters, the encoder's included
        err = np.abs(a - n).max() / np.abs(n).max()
        assert err < 1e-6, (path, err)


def _reference_logits(model: Any, p: Seq2seqParams, x: Array) -> Array:
    """The sequel's forward pass, one step at a time with the shared ``lstm_cell``."""
    src, dec_in = x[:, :TS], x[:, TS:]
    if model.reverse:
        src = src[:, ::-1]
    n = len(x)
    h = c = np.zeros((n, H))
    hs = []
    for s in range(TS):
        h, c = lstm_cell(p.encoder.lstm, p.encoder.embed.w[src[:, s]], h, c)
        hs.append(h)
    h_enc, c = h, np.zeros((n, H))
    out = []
    for s in range(TT):
        e = p.decoder.embed.w[dec_in[:, s]]
        h, c = lstm_cell(p.decoder.lstm, np.concatenate([h_enc, e], 1) if getattr(model, "peeky", False) else e, h, c)
        if isinstance(model, AttentionSeq2seq):
            enc = np.stack(hs, 1)  # (N, Ts, H)
            s_ = np.einsum("nsh,nh->ns", enc, h)
            a = np.exp(s_ - s_.max(1, keepdims=True))
            a /= a.sum(1, keepdims=True)
            feats = np.concatenate([np.einsum("ns,nsh->nh", a, enc), h], 1)
        elif model.peeky:
            feats = np.concatenate([h_enc, h], 1)
        else:
            feats = h
        out.append(feats @ p.decoder.affine.w + p.decoder.affine.b)
    return np.stack(out, 1)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_forward_is_the_sequels_step_by_step_model(model: Any) -> None:
    params = _params(model, 3)
    x, _ = _batch(4, 5)
    np.testing.assert_allclose(model.apply(params, x), _reference_logits(model, params, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_greedy_decoding_agrees_with_teacher_forcing_on_its_own_output(model: Any) -> None:
    params = _params(model, 4, np.float32)
    src = rng(6).integers(0, V, (40, TS))
    ids = generate(model, params, src, 0, TT)
    assert ids.shape == (40, TT) and ids.dtype == np.int64
    x = np.concatenate([src, np.zeros((40, 1), np.int64), ids[:, :-1]], 1)
    np.testing.assert_array_equal(model.apply(params, x).argmax(-1), ids)


def test_sampling_is_keyed_and_cold_sampling_is_greedy() -> None:
    model = MODELS[2]
    params = _params(model, 7, np.float32)
    src = rng(8).integers(0, V, (30, TS))
    a = sample(model, params, src, 0, TT, key=fnnet.key(1))
    assert_bit_identical(a, sample(model, params, src, 0, TT, key=fnnet.key(1)))
    assert not np.array_equal(a, sample(model, params, src, 0, TT, key=fnnet.key(2)))
    np.testing.assert_array_equal(sample(model, params, src, 0, TT, key=fnnet.key(1), temperature=1e-4),
                                  generate(model, params, src, 0, TT))  # fmt: skip
    with pytest.raises(ValueError, match="temperature"):
        sample(model, params, src, 0, TT, key=fnnet.key(1), temperature=0.0)


def test_attention_weights_are_per_source_position_in_natural_order() -> None:
    fwd, rev = MODELS[3], MODELS[4]
    params = _params(fwd, 9, np.float32)
    src = rng(10).integers(0, V, (6, TS))
    ids, w = attention_weights(rev, params, src, 0, TT)
    assert w.shape == (6, TT, TS)
    np.testing.assert_allclose(w.sum(-1), 1, rtol=1e-5)
    # the reversed model reading src is the forward model reading src backwards
    ids_f, w_f = attention_weights(fwd, params, src[:, ::-1], 0, TT)
    np.testing.assert_array_equal(ids, ids_f)
    np.testing.assert_allclose(w, w_f[:, :, ::-1], rtol=1e-6)
    with pytest.raises(ValueError, match="AttentionSeq2seq"):
        attention_weights(MODELS[0], params, src, 0, TT)


def test_the_sequels_weights_load_into_the_model() -> None:
    params = load_sequel_attention(WEIGHTS)
    model = AttentionSeq2seq(59, 16, 256, src_len=29, reverse=True)
    skeleton, out = model.init(fnnet.key(0), (39,))
    assert out == (10, 59)
    assert tree_structure(params) == tree_structure(skeleton)
    for a, b in zip(tree_flatten(params)[0], tree_flatten(skeleton)[0]):
        assert a.shape == b.shape and a.dtype == np.float32
    assert sum(a.size for a in tree_flatten(params)[0]) == 591_259


def test_the_weights_reader_names_what_is_wrong(tmp_path: Path) -> None:
    with np.load(WEIGHTS, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in arrays.items() if k != "decoder.lstm.Wh"})
    with pytest.raises(FormatError, match=r"decoder\.lstm\.Wh: missing array"):
        load_sequel_attention(missing)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{**arrays, "decoder.affine.W": arrays["decoder.affine.W"][:256]})
    with pytest.raises(FormatError, match=r"decoder\.affine\.W: expected shape \(512, 59\)"):
        load_sequel_attention(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(FormatError, match="junk.npz"):
        load_sequel_attention(junk)


@pytest.mark.parametrize("model", MODELS[2:4], ids=IDS[2:4])
def test_forward_and_backward_write_into_nothing_they_were_given(model: Any) -> None:
    params = read_only(_params(model, 11, np.float32))
    x, t = _batch(5, 12)
    y, _, cache = call_unchanged(lambda p, xx: model.forward(p, None, xx), params, x)
    dy = time_softmax_cross_entropy(y, t)[1]
    dx, grads = call_unchanged(lambda p, c, d: model.backward(p, c, d), params, cache, dy)
    assert not dx.flags.writeable and not np.any(dx) and dx.shape == x.shape
    _, grads_off = model.backward(params, cache, dy, input_grad=False)
    assert_bit_identical(grads, grads_off)
    call_unchanged(lambda p, s: generate(model, p, s, 0, TT), params, x[:, :TS])


def test_contract_shapes_and_errors_name_the_layer() -> None:
    model = MODELS[2]
    assert model.out_shape((TS + TT,)) == model.init(fnnet.key(0), (TS + TT,))[1] == (TT, V)
    with pytest.raises(ValueError, match=r"^Seq2seq: expected inputs \(N, src_len \+ Tt\)"):
        model.out_shape((TS,))
    params = _params(model, 0, np.float32)
    with pytest.raises(ValueError, match=r"^Seq2seq: expected integer token ids"):
        model.forward(params, None, np.zeros((2, TS + TT), np.float32))
    with pytest.raises(ValueError, match=r"^Seq2seq: token ids must be in \[0, 7\)"):
        model.forward(params, None, np.full((2, TS + TT), V))
    y, _, cache = model.forward(params, None, np.zeros((2, TS + TT), np.int64))
    with pytest.raises(ValueError, match=r"^Seq2seq\.backward: expected dout of shape"):
        model.backward(params, cache, y[:, :1])
    with pytest.raises(ValueError, match="src_len"):
        Seq2seq(V, E, H, src_len=0)
    with pytest.raises(ValueError, match=r"^generate: expected int source ids \(N, 4\)"):
        generate(model, params, np.zeros((2, TS + 1), np.int64), 0, TT)


def test_teacher_forcing_and_sequence_accuracy() -> None:
    x, t = teacher_forcing(np.array([[1, 2, 3]]), np.array([[0, 4, 5]]))
    assert x.tolist() == [[1, 2, 3, 0, 4]] and t.tolist() == [[4, 5]]
    model = MODELS[0]
    params = _params(model, 13, np.float32)
    src = rng(14).integers(0, V, (9, TS))
    ids = generate(model, params, src, 0, TT)
    answers = np.concatenate([np.zeros((9, 1), np.int64), ids], 1)
    assert sequence_accuracy(model, params, src, answers, batch_size=4) == 1.0
    answers[:3, -1] = (answers[:3, -1] + 1) % V
    assert sequence_accuracy(model, params, src, answers) == pytest.approx(6 / 9)


def test_fit_trains_a_model_and_checkpoints_round_trip(tmp_path: Path) -> None:
    # copy task: the answer is the source itself; reversed+peeky learns it in a few epochs
    g = rng(15)
    src = g.integers(1, V, (256, TS))
    answers = np.concatenate([np.zeros((256, 1), np.int64), src[:, :TT]], 1)
    model = Seq2seq(V, 8, 32, src_len=TS, reverse=True, peeky=True)
    opt = fnnet.optim.chain(fnnet.optim.clip_by_global_norm(5.0), fnnet.adam(0.01))
    result = fnnet.train.fit(model, opt, teacher_forcing(src, answers), key=fnnet.key(0), epochs=8, batch_size=32,
                             loss=time_softmax_cross_entropy, eval_train=False, progress="quiet")  # fmt: skip
    losses = result.history.step_loss
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])
    path = tmp_path / "s2s.npz"
    fnnet.save(path, result.state)
    restored, _ = fnnet.load(path, like=result.state)
    assert_bit_identical(restored.params, result.state.params)
    assert isinstance(restored.params.decoder.lstm, LSTMParams)


def test_the_sequels_weights_ship_with_their_notice() -> None:
    notice = (WEIGHTS.parent / "NOTICE.md").read_text()
    assert "Copyright (c) 2018 Koki Saitoh" in notice and "MIT License" in notice
    assert sorted(p.name for p in WEIGHTS.parent.glob("*.npz")) == [WEIGHTS.name] and WEIGHTS.name in notice
