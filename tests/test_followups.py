"""Follow-ups of a review: the softmax losses at infinite logits, mask-free LeakyReLU and ELU, the
LSTM's cache-free evaluation, and evaluate on a set with nothing to score.

- ``softmax_cross_entropy`` / ``time_softmax_cross_entropy`` take the limit of the log-softmax on a
  row whose maximum is infinite (as ``fnnet.functions.log_softmax`` does), without a warning, and
  give finite inputs the bits of the plain ``x - max(x)`` formula.
- ``leaky_relu`` / ``elu`` and the layers' gradients give ``np.where``'s bits (±0, ±inf, NaN, huge
  values, every float dtype), computed without it for the slopes and alphas that allow it.
- ``LSTM.apply`` and the encoder-decoders' ``apply`` give ``forward``'s bits while holding one
  step's input row, gates and state.
- ``evaluate`` refuses a set whose every target is the loss's ``ignore_index``.
"""

from __future__ import annotations

import functools
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import pytest
from _helpers import FLOATS, FLOAT_WIDTH, assert_bit_identical, assert_certain_and_right_is_still, rng, strict_floats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fnnet
from fnnet import functions as F
from fnnet.layers import recurrent as R
from fnnet.layers.activations import ELU, LeakyReLU
from fnnet.layers.recurrent import LSTM
from fnnet.losses import scored_targets, softmax_cross_entropy, time_softmax_cross_entropy
from fnnet.seq2seq import AttentionSeq2seq, Seq2seq
from fnnet.train import evaluate, init_train_state, make_train_step
from fnnet.tree import tree_astype
from fnnet.typing import Array

INF = np.inf


# --- 1. the softmax losses at infinite logits ----------------------------------------------------


def _both(loss: Callable[..., Any], y: Array, t: Any, **kw: Any) -> tuple[float, Array]:
    """``loss(y, t)``, checked to give the value of ``grad=False`` bit for bit, without a warning."""
    with strict_floats():
        value, grad = loss(y, t, **kw)
        alone, none = loss(y, t, grad=False, **kw)
    assert none is None and np.float64(alone).tobytes() == np.float64(value).tobytes()
    assert grad.dtype == y.dtype and grad.shape == y.shape
    return value, grad


@pytest.mark.parametrize("dtype", FLOATS)
def test_an_infinite_logit_on_the_target_is_a_certain_prediction(dtype: Any) -> None:
    x = np.array([[INF, 0.0, -3.0], [1.0, 2.0, 3.0]], dtype)
    value, grad = _both(softmax_cross_entropy, x[:1], np.array([0]))
    assert value == 0.0 and not grad.any()
    value, grad = _both(softmax_cross_entropy, x[:1], np.array([[1, 0, 0]], dtype))  # one-hot
    assert value == 0.0 and not grad.any()
    # a certain row next to an ordinary one: the batch mean halves the ordinary row's loss
    value, grad = _both(softmax_cross_entropy, x, np.array([0, 2]))
    assert np.isclose(value, softmax_cross_entropy(x[1:].astype(np.float64), np.array([2]))[0] / 2, rtol=1e-3)
    assert not grad[0].any() and np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_an_infinite_logit_off_the_target_is_an_infinite_loss_with_a_finite_gradient(dtype: Any) -> None:
    x = np.array([[INF, 0.0, -3.0]], dtype)
    value, grad = _both(softmax_cross_entropy, x, np.array([1]))
    assert value == INF and grad.tolist() == [[1.0, -1.0, 0.0]]
    value, grad = _both(softmax_cross_entropy, x, np.array([[0.0, 1.0, 0.0]], dtype))
    assert value == INF and grad.tolist() == [[1.0, -1.0, 0.0]]


@pytest.mark.parametrize("dtype", FLOATS)
def test_rows_of_several_infinities_or_only_minus_infinity_take_softmax_limits(dtype: Any) -> None:
    x = np.array([[INF, INF, 0.0], [-INF, -INF, -INF]], dtype)
    value, grad = _both(softmax_cross_entropy, x, np.array([1, 2]))
    assert np.isclose(value, (np.log(2) + np.log(3)) / 2, rtol=1e-3)
    p = F.softmax(x)
    assert np.allclose(grad.astype(np.float64), (p - np.eye(3)[[1, 2]]) / 2, atol=1e-3)


@pytest.mark.parametrize("dtype", FLOATS)
def test_the_time_loss_takes_the_same_limits_and_ignores_padding_rows_holding_infinities(dtype: Any) -> None:
    x = np.zeros((2, 3, 4), dtype)
    x[0, 0, 1] = INF  # a certain, right token
    x[0, 1, 2] = INF  # padding: counts for nothing
    x[1, 2] = [INF, -INF, INF, 0.0]  # two certain classes, the target one of them
    t = np.array([[1, -1, 3], [0, 2, 2]])
    value, grad = _both(time_softmax_cross_entropy, x, t, ignore_index=-1)
    assert np.isclose(value, (0 + np.log(4) + np.log(4) + np.log(4) + np.log(2)) / 5, rtol=1e-3)
    assert not grad[0, :2].any() and np.isfinite(grad).all()
    assert np.allclose(grad[1, 2].astype(np.float64), [0.1, 0.0, -0.1, 0.0], atol=1e-3)  # (p - onehot) / 5
    value, _ = _both(time_softmax_cross_entropy, x, np.array([[2, -1, 3], [0, 2, 2]]), ignore_index=-1)
    assert value == INF


def test_a_training_step_on_an_infinite_wrong_logit_raises_non_finite_loss() -> None:
    model, opt = fnnet.Affine(2), fnnet.optim.sgd(0.1)
    step = make_train_step(model, softmax_cross_entropy, opt)
    state = init_train_state(model, opt, fnnet.key(0), (2,))
    # logits [0, inf] (the sum 6e38 overflows float32): class 1 is certain, so a target of class 0
    # has an infinite loss
    w = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    state = state._replace(params=state.params._replace(w=w, b=np.zeros(2, np.float32)))
    x = np.full((3, 2), 3e38, np.float32)
    assert_certain_and_right_is_still(step, state, x, np.array([1, 1, 1]), np.array([0, 1, 0]))


def _plain_shift(x: Array) -> Array:
    """The losses' exponent before the limits: ``x - max(x)``."""
    out: Array = x - x.max(axis=-1, keepdims=True)
    return out


@st.composite
def _finite_logits(draw: Any) -> Array:
    dtype = draw(st.sampled_from(FLOATS))
    big = float(np.finfo(dtype).max) / 4  # huge, yet x - max(x) stays finite
    elements = st.floats(-big, big, width=FLOAT_WIDTH[dtype]) | st.floats(-30, 30, width=FLOAT_WIDTH[dtype])
    shape = draw(st.sampled_from([(1,), (3, 4), (2, 3, 5), (7, 1)]))
    a: Array = draw(hnp.arrays(dtype, shape, elements=elements))
    return a


@settings(max_examples=80, deadline=None)
@given(x=_finite_logits(), seed=st.integers(0, 100), one_hot=st.booleans())
def test_property_finite_logits_give_the_plain_formulas_bits(x: Array, seed: int, one_hot: bool) -> None:
    k = x.shape[-1]
    labels = rng(seed).integers(0, k, x.shape[:-1])
    t: Array = np.eye(k, dtype=x.dtype)[labels] if one_hot else labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float16 overflows to inf alike both ways
        got = [softmax_cross_entropy(x, t), softmax_cross_entropy(x, t, grad=False)]
        if x.ndim >= 2:
            got += [time_softmax_cross_entropy(x, labels), time_softmax_cross_entropy(x, labels, ignore_index=0, grad=False)]
        with mock.patch.object(F, "_shifted", _plain_shift):
            want = [softmax_cross_entropy(x, t), softmax_cross_entropy(x, t, grad=False)]
            if x.ndim >= 2:
                want += [time_softmax_cross_entropy(x, labels), time_softmax_cross_entropy(x, labels, ignore_index=0, grad=False)]
    for (gv, gg), (wv, wg) in zip(got, want):
        assert np.float64(gv).tobytes() == np.float64(wv).tobytes()
        assert (gg is None) == (wg is None)
        if gg is not None:
            assert_bit_identical(gg, wg)


# --- 2. LeakyReLU and ELU without a mask of signs --------------------------------------------------


def _edge_and_random(dtype: Any, seed: int = 0) -> Array:
    fi = np.finfo(dtype)
    edge = [0.0, -0.0, INF, -INF, np.nan, -np.nan, fi.max, -fi.max, fi.tiny, -fi.tiny, fi.smallest_subnormal,
            -fi.smallest_subnormal, 1.0, -1.0, 1e-3, -1e-3]
    r = rng(seed)
    x: Array = np.concatenate([np.array(edge, dtype), (r.standard_normal(500) * 10).astype(dtype),
                               (r.standard_normal(100) * 1e-6).astype(dtype)])
    return x


SLOPES = [0.01, 0.2, 1.0, 1e-30, 0.0, -0.5, 3.0]
ALPHAS = [1.0, 0.0, 0.5, 2.0, 1e-40, 1e30]


@pytest.mark.parametrize("dtype", FLOATS)
def test_leaky_relu_and_its_gradient_have_the_bits_of_the_masked_form(dtype: Any) -> None:
    x = _edge_and_random(dtype)
    dout = _edge_and_random(dtype, 1)[rng(2).permutation(x.size)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in SLOPES:
            assert_bit_identical(F.leaky_relu(x, s), np.where(x > 0, x, s * x))
            assert_bit_identical(LeakyReLU(s).backward(None, x, dout)[0], np.where(x > 0, dout, s * dout))


@pytest.mark.parametrize("dtype", FLOATS)
def test_elu_and_its_gradient_have_the_bits_of_the_masked_form(dtype: Any) -> None:
    x = _edge_and_random(dtype)
    dout = _edge_and_random(dtype, 1)[rng(2).permutation(x.size)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a in ALPHAS:
            want = np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
            assert_bit_identical(F.elu(x, a), want)
            y, _, cache = ELU(a).forward(None, None, x)
            assert_bit_identical(y, want)
            assert_bit_identical(ELU(a).backward(None, cache, dout)[0], np.where(want > 0, dout, dout * (want + a)))


def test_default_leaky_relu_and_elu_choose_without_np_where() -> None:
    x = rng(3).standard_normal((4, 5)).astype(np.float32)
    want = [F.leaky_relu(x), F.elu(x), LeakyReLU().backward(None, x, x)[0], ELU().backward(None, F.elu(x), x)[0]]
    with mock.patch.object(np, "where", side_effect=AssertionError("np.where")):
        got = [F.leaky_relu(x), F.elu(x), LeakyReLU().backward(None, x, x)[0], ELU().backward(None, F.elu(x), x)[0]]
    assert_bit_identical(got, want)


# --- 3. the LSTM's cache-free evaluation -----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 7),
    t=st.integers(0, 10),
    k=st.integers(0, 3),
    with_h0=st.booleans(),
    with_c0=st.booleans(),
    sequences=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_property_the_cache_free_kernel_gives_the_scans_states(
    n: int, t: int, k: int, with_h0: bool, with_c0: bool, sequences: bool, seed: int
) -> None:
    d, h = 3, 5
    params, _ = LSTM(h).init(fnnet.key(seed), (t, k + d))
    r = rng(seed, 3)
    x = r.standard_normal((n, t, d)).astype(np.float32)
    const = r.standard_normal((n, k)).astype(np.float32) if k else None
    h0 = r.standard_normal((n, h)).astype(np.float32) if with_h0 else None
    c0 = r.standard_normal((n, h)).astype(np.float32) if with_c0 else None
    hs, final, _ = R.lstm_scan(params, x, h0, c0, x_const=const)
    hs2, final2, none = R._lstm_run("lstm_scan", params, x, h0, c0, const, keep=False, sequences=sequences)
    assert none is None
    assert_bit_identical(final2, final)
    if sequences:
        assert hs2 is not None
        assert_bit_identical(hs2, hs)
    else:
        assert hs2 is None


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(["plain", "peeky", "reverse", "attention"]),
    n=st.integers(1, 20),
    src_len=st.integers(1, 6),
    dec_len=st.integers(1, 5),
    hidden=st.integers(1, 8),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 1000),
)
def test_property_seq2seq_apply_is_forward_bit_for_bit(
    kind: str, n: int, src_len: int, dec_len: int, hidden: int, dtype: Any, seed: int
) -> None:
    model: Any
    if kind == "attention":
        model = AttentionSeq2seq(9, 3, hidden, src_len=src_len, reverse=seed % 2 == 0)
    else:
        model = Seq2seq(9, 3, hidden, src_len=src_len, peeky=kind == "peeky", reverse=kind == "reverse")
    params = tree_astype(model.init(fnnet.key(seed), (src_len + dec_len,))[0], dtype)
    x = rng(seed, 4).integers(0, 9, (n, src_len + dec_len))
    assert_bit_identical(model.apply(params, x), model.forward(params, None, x)[0])


def _peak(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("sequences", [False, True])
def test_lstm_apply_holds_one_step_besides_the_output(sequences: bool) -> None:
    n, t, d, h = 8, 2000, 4, 32
    layer = LSTM(h, return_sequences=sequences)
    params, _ = layer.init(fnnet.key(0), (t, d))
    x = rng(5).standard_normal((n, t, d)).astype(np.float32)
    applied = _peak(lambda: layer.apply(params, x))
    out_bytes = n * t * h * 4 if sequences else n * h * 4
    one_step = n * (d + 1 + 9 * h) * 4 * 2  # two input rows, the gates, two cell states and spares
    assert applied < out_bytes + one_step + 64 * 1024, (applied, out_bytes, one_step)


# --- 4. evaluate on a set with nothing to score ------------------------------------------------------


def test_scored_targets_counts_what_the_time_loss_scores() -> None:
    t = np.array([[1, 2, -1], [0, -1, -1]])
    masked = functools.partial(time_softmax_cross_entropy, ignore_index=-1)
    assert scored_targets(masked, t) == 3
    assert scored_targets(functools.partial(functools.partial(masked), ignore_index=2), t) == 5  # the outer keyword
    assert scored_targets(time_softmax_cross_entropy, t) is None
    assert scored_targets(softmax_cross_entropy, t) is None


def test_evaluate_weighs_the_tokens_of_the_whole_set_not_the_batches() -> None:
    masked = functools.partial(time_softmax_cross_entropy, ignore_index=-1)
    y = rng(6).standard_normal((6, 4, 5))
    t = np.array([[1, -1, -1, -1]] * 3 + [[0, 1, 2, 3]] * 3)  # few tokens in the first rows, many after
    got = evaluate(fnnet.Identity(), None, y, t, loss=masked, metrics={}, batch_size=3)["loss"]
    assert got == masked(y, t)[0]


def test_fit_refuses_a_validation_set_of_padding_only_before_training() -> None:
    masked = functools.partial(time_softmax_cross_entropy, ignore_index=-1)
    x = rng(7).integers(0, 5, (4, 3))
    t = rng(8).integers(0, 5, (4, 3))
    model = fnnet.serial(fnnet.Embedding(5, 3), fnnet.TimeAffine(5))
    with pytest.raises(ValueError, match=r"^fit: every val target equals the loss's ignore_index=-1"):
        fnnet.fit(model, fnnet.optim.sgd(0.1), (x, t), val=(x, np.full_like(t, -1)), loss=masked, key=fnnet.key(0),
                  epochs=1, batch_size=4, progress="quiet", metrics={})
