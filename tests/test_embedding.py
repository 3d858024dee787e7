"""Embedding, TimeAffine and time_softmax_cross_entropy: float64 gradients, values and errors."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from _helpers import assert_grads_ok, init64, normal, rng

import fnnet
from fnnet.layers.embedding import ONE_HOT_MAX_VOCAB, Embedding, EmbeddingParams, TimeAffine, embedding_grad
from fnnet.losses import softmax_cross_entropy, time_softmax_cross_entropy
from fnnet.numerical import numerical_gradient
from fnnet.typing import Shape

GRAD_TOL = 1e-6


# --- Embedding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [7, ONE_HOT_MAX_VOCAB, ONE_HOT_MAX_VOCAB + 1, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_grad_sums_rows_per_id_on_both_paths(vocab: int, dtype: type) -> None:
    ids = rng(1).integers(0, vocab, (6, 9))
    ids[0, :4] = 3  # repeated ids must add up
    dout = normal((6, 9, 5), 2, dtype=dtype)
    expected = np.zeros((vocab, 5))
    np.add.at(expected, ids.reshape(-1), dout.reshape(-1, 5).astype(np.float64))
    got = embedding_grad(ids, dout, vocab)
    assert got.shape == (vocab, 5) and got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_embedding_grad_of_no_tokens_is_zero() -> None:
    for vocab in (5, 500):
        got = embedding_grad(np.zeros((0, 3), np.int64), np.zeros((0, 3, 2), np.float32), vocab)
        assert got.shape == (vocab, 2) and not np.any(got)


@pytest.mark.parametrize("x_shape", [(4, 6), (3,), (2, 3, 2)])
@pytest.mark.parametrize("vocab", [11, 100])
def test_embedding_weight_gradient_is_numerically_right(x_shape: Shape, vocab: int) -> None:
    layer = Embedding(vocab, 3)
    params, out_shape = init64(layer, x_shape[1:])
    x = rng(3).integers(0, vocab, x_shape)
    r = normal((*x_shape, 3), 4)
    y, _, cache = layer.forward(params, None, x)
    assert y.shape == (x_shape[0], *out_shape)
    dx, grads = layer.backward(params, cache, r)
    num = numerical_gradient(lambda p: float(np.sum(layer.forward(p, None, x)[0] * r)), params)
    np.testing.assert_allclose(grads.w, num.w, rtol=1e-7, atol=1e-9)
    # the input is discrete: dx is a read-only zero of x's shape and integer dtype
    assert dx.shape == x.shape and dx.dtype == x.dtype and not dx.flags.writeable and not np.any(dx)


def test_embedding_looks_up_rows_and_keeps_the_table_dtype() -> None:
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = Embedding(4, 3).apply(EmbeddingParams(w), np.array([[3, 0], [1, 1]], dtype=np.uint8))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, w[[[3, 0], [1, 1]]])


def test_embedding_errors_name_the_layer() -> None:
    layer = Embedding(5, 2)
    params, _ = layer.init(fnnet.key(0), (3,))
    with pytest.raises(ValueError, match=r"^Embedding: expected integer ids of shape \(N, \.\.\.\), got dtype float32"):
        layer.forward(params, None, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"^Embedding: ids must lie in \[0, 5\), got values in \[0, 5\]"):
        layer.forward(params, None, np.array([[0, 5]]))
    with pytest.raises(ValueError, match=r"^Embedding: ids must lie in \[0, 5\), got values in \[-1, 2\]"):
        layer.forward(params, None, np.array([[-1, 2]]))
    _, _, cache = layer.forward(params, None, np.array([[1, 2, 3]]))
    with pytest.raises(ValueError, match=r"^Embedding.backward: expected dout of shape \(1, 3, 2\), got \(1, 3\)"):
        layer.backward(params, cache, np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"^Embedding: vocab_size must be a positive int, got 0"):
        Embedding(0, 2)


# --- TimeAffine ----------------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", [(5, 3), (3,), (2, 4, 3)])
def test_time_affine_gradients(in_shape: Shape) -> None:
    layer = TimeAffine(4)
    params, out = init64(layer, in_shape)
    assert out == (*in_shape[:-1], 4)
    params = params._replace(b=normal((4,), 9))
    assert_grads_ok(layer, params, normal((3, *in_shape), 1), tol=GRAD_TOL)


def test_time_affine_is_affine_at_every_time_step() -> None:
    layer = TimeAffine(4)
    params, _ = init64(layer, (5, 3))
    x = normal((2, 5, 3), 1)
    y = layer.apply(params, x)
    for t in range(5):
        np.testing.assert_allclose(y[:, t], x[:, t] @ params.w + params.b, rtol=1e-13)


def test_time_affine_errors() -> None:
    layer = TimeAffine(2)
    params, _ = layer.init(fnnet.key(0), (4, 3))
    with pytest.raises(ValueError, match=r"^TimeAffine: expected input of shape \(N, \.\.\., 3\), got \(2, 4, 5\)"):
        layer.forward(params, None, np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"^TimeAffine: expected input of dtype float32"):
        layer.forward(params, None, np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"^TimeAffine: expected in_shape \(\.\.\., D\), got \(\)"):
        layer.out_shape(())


# --- time_softmax_cross_entropy ------------------------------------------------------------------


def test_time_loss_without_ignore_is_softmax_cross_entropy_over_all_tokens() -> None:
    logits, t = normal((3, 4, 5), 1), rng(2).integers(0, 5, (3, 4))
    value, grad = time_softmax_cross_entropy(logits, t)
    ref_value, ref_grad = softmax_cross_entropy(logits.reshape(12, 5), t.reshape(12))
    assert value == pytest.approx(ref_value, rel=1e-14)
    np.testing.assert_allclose(grad, ref_grad.reshape(3, 4, 5), rtol=1e-14)


@pytest.mark.parametrize("ignore", [-1, 0, 7])
def test_time_loss_gradient_with_ignore_index(ignore: int) -> None:
    logits = normal((3, 4, 5), 1)
    t = rng(2).integers(0, 5, (3, 4))
    t[0, 1] = t[2, 3] = ignore
    value, grad = time_softmax_cross_entropy(logits, t, ignore_index=ignore)
    counted = t != ignore
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    picked = np.take_along_axis(p, np.where(counted, t, 0)[..., None], -1)[..., 0]
    assert value == pytest.approx(-np.log(picked[counted]).sum() / counted.sum(), rel=1e-12)
    num = numerical_gradient(lambda z: time_softmax_cross_entropy(z, t, ignore)[0], logits)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)
    assert not np.any(grad[~counted])


def test_time_loss_keeps_float32_and_all_ignored_is_zero() -> None:
    logits = normal((2, 3, 4), 1, dtype=np.float32)
    value, grad = time_softmax_cross_entropy(logits, np.zeros((2, 3), np.int32))
    assert grad.dtype == np.float32 and value > 0
    value, grad = time_softmax_cross_entropy(logits, np.full((2, 3), -1), ignore_index=-1)
    assert value == 0.0 and grad.shape == logits.shape and not np.any(grad)


def test_time_loss_works_as_a_fit_loss_with_partial() -> None:
    loss = functools.partial(time_softmax_cross_entropy, ignore_index=0)
    value, grad = loss(np.zeros((1, 2, 3)), np.array([[0, 2]]))
    assert value == pytest.approx(np.log(3)) and not np.any(grad[0, 0])


def test_time_loss_errors() -> None:
    logits = np.zeros((2, 3, 4))
    fn = "time_softmax_cross_entropy"
    with pytest.raises(ValueError, match=rf"^{fn}: expected integer targets of shape \(2, 3\) .* got shape \(2, 3\) dtype float64"):
        time_softmax_cross_entropy(logits, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=rf"^{fn}: expected integer targets of shape \(2, 3\) .* got shape \(2, 4\)"):
        time_softmax_cross_entropy(logits, np.zeros((2, 4), int))
    with pytest.raises(ValueError, match=rf"^{fn}: targets must lie in \[0, 4\) or equal ignore_index=-1, got values in \[0, 4\]"):
        time_softmax_cross_entropy(logits, np.array([[0, 4, -1]] * 2), ignore_index=-1)
    with pytest.raises(ValueError, match=rf"^{fn}: targets must lie in \[0, 4\), got values in \[-1, 0\]"):
        time_softmax_cross_entropy(logits, np.array([[0, -1, 0]] * 2))
    with pytest.raises(ValueError, match=rf"^{fn}: ignore_index must be an int or None, got True"):
        time_softmax_cross_entropy(logits, np.zeros((2, 3), int), ignore_index=True)
    with pytest.raises(ValueError, match=rf"^{fn}: expected logits of rank >= 2"):
        time_softmax_cross_entropy(np.zeros(4), np.zeros((), int))

