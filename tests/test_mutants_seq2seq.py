"""Regression tests from a second mutation-testing pass over fnnet.seq2seq: sampled decoding draws
every row independently with the model's probabilities, decoding in chunks keeps every row, and the
sequel's arrays load into the places their names say, which plausible one-token changes left
untested."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import fnnet
from fnnet.seq2seq import SEQUEL_SHAPES, Seq2seq, generate, load_sequel_attention, sample


def test_sampling_draws_each_row_independently_with_the_softmax_probabilities() -> None:
    m = Seq2seq(5, 4, 6, src_len=3)
    params, _ = m.init(fnnet.key(0), (4,))
    # a bias spreading the logits, so that the temperature matters
    dec = params.decoder
    bias = np.array([1.0, 0.5, 0.0, -0.5, -1.0], dec.affine.b.dtype)
    params = params._replace(decoder=dec._replace(affine=dec.affine._replace(b=bias)))
    n, temp, start = 4000, 2.0, 0
    src = np.tile(np.array([[1, 2, 3]]), (n, 1))
    ids = sample(m, params, src, start, 2, key=fnnet.key(1), temperature=temp)
    logits = m.apply(params, np.array([[1, 2, 3, start]]))[0, 0].astype(np.float64) / temp
    p = np.exp(logits - logits.max())
    p /= p.sum()
    freq = np.bincount(ids[:, 0], minlength=5) / n
    assert np.abs(freq - p).max() < 0.03, (freq, p)
    assert len(np.unique(ids, axis=0)) > 1


def test_decoding_more_rows_than_one_chunk_keeps_every_row() -> None:
    # generate decodes 1024 questions at a time: 1030 rows are two chunks, each row as if alone
    m = Seq2seq(5, 4, 6, src_len=3)
    params, _ = m.init(fnnet.key(0), (5,))
    src = np.random.default_rng(0).integers(0, 5, (1030, 3))
    ids = generate(m, params, src, 0, 2)
    assert ids.shape == (1030, 2)
    np.testing.assert_array_equal(ids[-6:], generate(m, params, src[-6:], 0, 2))


def test_the_sequels_arrays_land_where_their_names_say(tmp_path: Path) -> None:
    v, e, h = 5, 3, 4
    size = {"V": v, "E": e, "H": h, "4H": 4 * h, "2H": 2 * h}
    rng = np.random.default_rng(1)
    arrays = {k: rng.standard_normal(tuple(size[d] for d in SEQUEL_SHAPES[k])).astype(np.float32) for k in SEQUEL_SHAPES}
    path = tmp_path / "sequel.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    p = load_sequel_attention(path)
    placed = {
        "encoder.embed.W": p.encoder.embed.w, "encoder.lstm.Wx": p.encoder.lstm.wx,
        "encoder.lstm.Wh": p.encoder.lstm.wh, "encoder.lstm.b": p.encoder.lstm.b,
        "decoder.embed.W": p.decoder.embed.w, "decoder.lstm.Wx": p.decoder.lstm.wx,
        "decoder.lstm.Wh": p.decoder.lstm.wh, "decoder.lstm.b": p.decoder.lstm.b,
        "decoder.affine.W": p.decoder.affine.w, "decoder.affine.b": p.decoder.affine.b,
    }  # fmt: skip
    assert sorted(placed) == sorted(SEQUEL_SHAPES)
    for k, a in placed.items():
        np.testing.assert_array_equal(a, arrays[k], err_msg=k)
