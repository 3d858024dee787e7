"""Regression test from a second mutation-testing pass over fnnet.seq2seq: sampled decoding draws
every row independently, with the model's probabilities, which a plausible one-token change left
untested."""

from __future__ import annotations

import numpy as np

import fnnet
from fnnet.seq2seq import Seq2seq, sample


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
