"""The book's CNNs as fnnet models: shapes match the book's trained weights, gradients are right."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, assert_grads_ok, rng

import fnnet
from fnnet import models
from fnnet.layers.base import TRAIN, Ctx
from fnnet.layers.combinators import Serial, summary
from fnnet.layers.conv import Conv2D
from fnnet.layers.core import Affine, ReLU
from fnnet.layers.dropout import Dropout
from fnnet.layers.norm import BatchNorm
from fnnet.layers.pool import MaxPool2D
from fnnet.losses import softmax_cross_entropy
from fnnet.tree import tree_leaves

WEIGHTS = Path(__file__).resolve().parents[1] / "examples" / "weights"
MNIST = (1, 28, 28)
GRAD_TOL = 1e-6  # float64 central differences through ReLU/max-pool kinks away from ties


def _book_shapes(name: str) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``[(W1.shape, b1.shape), (W2.shape, b2.shape), ...]`` of a book weights archive."""
    with np.load(WEIGHTS / name, allow_pickle=False) as npz:
        files = set(npz.files)
        count = sum(1 for f in files if f.startswith("W"))
        assert files == {f"{p}{i}" for p in "Wb" for i in range(1, count + 1)}
        return [(npz[f"W{i}"].shape, npz[f"b{i}"].shape) for i in range(1, count + 1)]


def _param_shapes(model: Serial, in_shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    params, _ = model.init(fnnet.key(0), in_shape)
    return [(p[0].shape, p[1].shape) for p in params if p is not None]


@pytest.mark.parametrize(
    "builder, archive",
    [(models.simple_convnet, "ch07_simple_convnet.npz"), (models.deep_convnet, "ch08_deep_convnet.npz")],
)
def test_parameter_shapes_and_counts_are_the_books(builder: Any, archive: str) -> None:
    model = builder()
    book = _book_shapes(archive)
    assert _param_shapes(model, MNIST) == book
    s = summary(model, MNIST)
    assert s.out_shape == (10,)
    assert s.total_params == sum(math.prod(w) + math.prod(b) for w, b in book)


def test_simple_convnet_layout() -> None:
    s = summary(models.simple_convnet(), MNIST)
    assert [r.kind for r in s.rows] == ["Conv2D", "MaxPool2D", "ReLU", "Affine", "ReLU", "Affine"]
    assert [r.out_shape for r in s.rows[:4]] == [(30, 24, 24), (30, 12, 12), (30, 12, 12), (100,)]
    book = summary(models.simple_convnet(pool_first=False), MNIST)
    assert [r.kind for r in book.rows] == ["Conv2D", "ReLU", "MaxPool2D", "Affine", "ReLU", "Affine"]


def _book_order_pairs() -> list[tuple[Any, Any, tuple[int, ...]]]:
    deep_blocks = (((3, 1), (3, 1)), ((4, 1), (4, 2)))
    return [
        (models.simple_convnet(4, 3, hidden=6, output_size=5),
         models.simple_convnet(4, 3, hidden=6, output_size=5, pool_first=False), (1, 10, 10)),
        (models.deep_convnet(dropout=0.0, hidden=5, blocks=deep_blocks),
         models.deep_convnet(dropout=0.0, hidden=5, blocks=deep_blocks, pool_first=False), (1, 8, 8)),
        (models.deep_convnet(dropout=0.0, hidden=5, blocks=deep_blocks, batchnorm=True),
         models.deep_convnet(dropout=0.0, hidden=5, blocks=deep_blocks, batchnorm=True, pool_first=False), (1, 8, 8)),
    ]  # fmt: skip


@pytest.mark.parametrize("index", [0, 1, 2], ids=["simple", "deep", "deep-bn"])
def test_pooling_before_relu_is_the_books_function_bit_for_bit(index: int) -> None:
    fast, book, in_shape = _book_order_pairs()[index]
    params, _ = fast.init(fnnet.key(20), in_shape)
    book_params, _ = book.init(fnnet.key(20), in_shape)
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(params), tree_leaves(book_params)))
    assert [type(p) for p in params] == [type(p) for p in book_params]  # the same positions
    # inputs around zero: many windows hold negative maxima, ties and mixed signs
    x = np.round(rng(21).standard_normal((4, *in_shape)), 1).astype(np.float32)
    state = fast.init_state(in_shape)
    assert_bit_identical(state, book.init_state(in_shape))
    y, new_state, cache = fast.forward(params, state, x, TRAIN)
    y_book, new_state_book, cache_book = book.forward(params, state, x, TRAIN)
    assert np.array_equal(y, y_book)
    assert_bit_identical(new_state, new_state_book)
    dout = rng(22).standard_normal(y.shape).astype(np.float32)
    dx, grads = fast.backward(params, cache, dout)
    dx_book, grads_book = book.backward(params, cache_book, dout)
    assert np.array_equal(dx, dx_book)
    assert_bit_identical(grads, grads_book)


def test_deep_convnet_layout() -> None:
    model = models.deep_convnet()
    s = summary(model, MNIST)
    convs = [(r.out_shape, layer) for r, layer in zip(s.rows, model.layers) if isinstance(layer, Conv2D)]
    assert [layer.pad for _, layer in convs] == [(1, 1), (1, 1), (1, 1), (2, 2), (1, 1), (1, 1)]
    assert all(layer.kernel == (3, 3) and layer.stride == (1, 1) for _, layer in convs)
    assert [shape for shape, _ in convs] == [(16, 28, 28), (16, 28, 28), (32, 14, 14), (32, 16, 16), (64, 8, 8), (64, 8, 8)]
    pools = [r.out_shape for r in s.rows if r.kind == "MaxPool2D"]
    assert pools == [(16, 14, 14), (32, 8, 8), (64, 4, 4)]  # 64 * 4 * 4 = 1024 features for Affine(50)
    # every conv is followed by a ReLU, or by the block's pool and then a ReLU; the head is the book's
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Conv2D):
            nxt = model.layers[i + 1]
            assert isinstance(nxt, ReLU) or (isinstance(nxt, MaxPool2D) and isinstance(model.layers[i + 2], ReLU))
    assert [r.kind for r in s.rows[-5:]] == ["Affine", "ReLU", "Dropout", "Affine", "Dropout"]
    assert [layer.rate for layer in model.layers if isinstance(layer, Dropout)] == [0.5, 0.5]


@pytest.mark.parametrize("dropout, n_dropout", [(0.0, 0), (0.3, 2)])
def test_deep_convnet_options(dropout: float, n_dropout: int) -> None:
    plain = models.deep_convnet(output_size=7, dropout=dropout)
    assert summary(plain, MNIST).out_shape == (7,)
    assert sum(isinstance(layer, Dropout) for layer in plain.layers) == n_dropout
    bn = models.deep_convnet(dropout=dropout, batchnorm=True)
    kinds = [type(layer) for layer in bn.layers]
    assert kinds.count(BatchNorm) == 7  # after each of the six convs and the hidden Affine
    for i, layer in enumerate(bn.layers):
        if isinstance(layer, BatchNorm):
            assert isinstance(bn.layers[i - 1], (Conv2D, Affine))
            assert isinstance(bn.layers[i + 1], ReLU) or isinstance(bn.layers[i + 2], ReLU)  # maybe a pool between


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_deep_convnet_rejects_bad_dropout(dropout: float) -> None:
    with pytest.raises(ValueError, match="deep_convnet: dropout"):
        models.deep_convnet(dropout=dropout)


def test_he_initialisation_spreads() -> None:
    """Default weights are He normal: std sqrt(2 / fan_in) (a wide check: sample std of many weights)."""
    for model in (models.simple_convnet(), models.deep_convnet()):
        params, _ = model.init(fnnet.key(1), MNIST)
        for p in params:
            if p is None:
                continue
            w = p[0]
            fan_in = math.prod(w.shape[1:]) if w.ndim == 4 else w.shape[0]
            if w.size >= 500:  # enough samples for a 15% check on the spread
                assert abs(float(w.std()) / math.sqrt(2.0 / fan_in) - 1.0) < 0.15
            assert not np.any(p[1])  # zero biases


def test_simple_convnet_w_init_is_used() -> None:
    params, _ = models.simple_convnet(w_init=fnnet.initializers.Normal(0.01)).init(fnnet.key(0), MNIST)
    assert float(params[0].w.std()) == pytest.approx(0.01, rel=0.3)
    assert float(params[3].w.std()) == pytest.approx(0.01, rel=0.05)


@pytest.mark.parametrize(
    "in_shape, filters, kernel, pad, stride",
    [((1, 8, 8), 3, 3, 0, 1), ((2, 7, 7), 2, 3, 1, 2), ((1, 9, 8), 2, 5, 2, 1)],
)
def test_small_simple_convnet_gradients(
    in_shape: tuple[int, int, int], filters: int, kernel: int, pad: int, stride: int
) -> None:
    model = models.simple_convnet(filters=filters, kernel=kernel, pad=pad, stride=stride, hidden=5, output_size=4)
    params, out = model.init(fnnet.key(2), in_shape)
    assert out == (4,)
    params64 = fnnet.astype(params, np.float64)
    x = rng(3).standard_normal((2, *in_shape))
    labels = np.array([1, 3])
    result = assert_grads_ok(model, params64, x, loss=softmax_cross_entropy, t=labels, tol=GRAD_TOL)
    assert len(result.errors) == 7  # w and b of the conv and both affines, and x


def test_small_deep_convnet_gradients_in_training_mode() -> None:
    """The DeepConvNet pipeline (convs, pools, dropout with a fixed key), thinned to a few channels."""
    thin = (((2, 1), (2, 1)), ((3, 1), (3, 2)), ((4, 1), (4, 1)))
    model = models.deep_convnet(output_size=3, hidden=4, blocks=thin)
    in_shape = (1, 8, 8)  # 8 -> 4 -> (4 + 2*2 - 2 = 6) -> 3 -> 1
    params, out = model.init(fnnet.key(4), in_shape)
    assert out == (3,)
    params64 = fnnet.astype(params, np.float64)
    x = rng(5).standard_normal((2, *in_shape))
    ctx = Ctx(train=True, key=fnnet.key(6))
    assert_grads_ok(model, params64, x, ctx=ctx, tol=GRAD_TOL)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_deep_convnet_forward_backward_is_finite(batchnorm: bool) -> None:
    model = models.deep_convnet(batchnorm=batchnorm)
    params, _ = model.init(fnnet.key(7), MNIST)
    x = rng(8).random((2, *MNIST), dtype=np.float32)
    state = model.init_state(MNIST)
    y, new_state, cache = model.forward(params, state, x, Ctx(train=True, key=fnnet.key(9)))
    assert y.shape == (2, 10) and y.dtype == np.float32 and np.all(np.isfinite(y))
    _, dy = softmax_cross_entropy(y, np.array([0, 1]))
    dx, grads = model.backward(params, cache, dy)
    assert dx.shape == x.shape
    assert fnnet.tree_structure(grads) == fnnet.tree_structure(params)
    assert all(np.all(np.isfinite(g)) for g in fnnet.tree_leaves(grads))
    assert fnnet.tree_structure(new_state) == fnnet.tree_structure(state)
    y_eval = model.apply(params, x, state=new_state)
    assert y_eval.shape == (2, 10) and np.all(np.isfinite(y_eval))


def test_deep_convnet_evaluation_ignores_the_key() -> None:
    """Evaluation is deterministic (Dropout is the identity); training draws masks from the key."""
    model = models.deep_convnet()
    params, _ = model.init(fnnet.key(10), MNIST)
    x = rng(11).random((2, *MNIST), dtype=np.float32)
    a = model.apply(params, x, ctx=Ctx(key=fnnet.key(1)))
    b = model.apply(params, x, ctx=Ctx(key=fnnet.key(2)))
    np.testing.assert_array_equal(a, b)
    t1 = model.apply(params, x, ctx=Ctx(train=True, key=fnnet.key(1)))
    t2 = model.apply(params, x, ctx=Ctx(train=True, key=fnnet.key(2)))
    assert not np.array_equal(t1, t2)


def test_models_match_the_conv_layers_directly() -> None:
    """simple_convnet computes Conv2D -> ReLU -> MaxPool2D(2) -> Affine -> ReLU -> Affine, nothing hidden."""
    model = models.simple_convnet(filters=4, kernel=3, hidden=6, output_size=5)
    params, _ = model.init(fnnet.key(12), (1, 10, 10))
    x = rng(13).random((3, 1, 10, 10), dtype=np.float32)
    conv, pool = Conv2D(4, 3), MaxPool2D(2)
    h = np.maximum(conv.apply(params[0], x), 0)
    h = pool.apply(None, h).reshape(3, -1)
    h = np.maximum(h @ params[3].w + params[3].b, 0)
    np.testing.assert_allclose(model.apply(params, x), h @ params[5].w + params[5].b, rtol=1e-5, atol=1e-6)


def test_cli_trains_and_evaluates_the_simple_convnet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``fnnet train --model simple-convnet`` feeds unflattened images; its checkpoint evaluates the same."""
    from fnnet.cli import MODEL_DEFAULTS, main

    assert MODEL_DEFAULTS["simple-convnet"][1] is False and MODEL_DEFAULTS["deep-convnet"][1] is False
    out = tmp_path / "run"
    assert main(["train", "--model", "simple-convnet", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    acc = float(printed.removeprefix("test accuracy "))
    assert 0.85 < acc <= 1.0  # one epoch of Adam on 8,000 digits
    assert main(["evaluate", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == printed
