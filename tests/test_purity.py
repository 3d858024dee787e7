"""Property tests: no public function writes into the arrays it is given.

Every check goes through :func:`_helpers.call_unchanged`, which snapshots every array leaf of the
arguments (shape, dtype and raw bytes) and compares after the call. In the ``readonly`` variant it
instead passes read-only copies, so that an in-place write raises at the very line that makes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
from _helpers import call_unchanged
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from fnnet import functions as F
from fnnet.graph import Add, Mul
from fnnet.layers.activations import ELU, GELU, LeakyReLU, SiLU, Softplus
from fnnet.layers.base import EVAL, TRAIN, Ctx, Layer, kind
from fnnet.layers.combinators import add_branches, concat, residual, serial
from fnnet.layers.core import Affine, AffineParams, Flatten, Identity, ReLU, Sigmoid, Softmax, Tanh
from fnnet.layers.norm import BatchNorm, GroupNorm, LayerNorm
from fnnet.layers.conv import Conv1D, Conv2D
from fnnet.layers.pool import AvgPool1D, GlobalAvgPool2D, MaxPool1D
from fnnet.layers.embedding import Embedding, EmbeddingParams, TimeAffine
from fnnet.layers.recurrent import (
    GRU,
    LSTM,
    RNN,
    LSTMState,
    RNNState,
    gru_scan,
    gru_scan_backward,
    lstm_scan,
    lstm_scan_backward,
    rnn_scan,
    rnn_scan_backward,
)
from fnnet.losses import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    mean_squared_error,
    softmax_cross_entropy,
    sum_squared_error,
    time_softmax_cross_entropy,
)
from fnnet.metrics import accuracy, token_accuracy
from fnnet.numerical import check_grads, numerical_gradient
from fnnet.random import key
from fnnet.seq2seq import AttentionSeq2seq, Seq2seq, generate
from fnnet.tree import (
    tree_astype,
    tree_flatten,
    tree_global_norm,
    tree_leaves,
    tree_map,
    tree_map_with_path,
    tree_paths,
    tree_size,
    tree_structure,
    tree_unflatten,
    tree_zeros_like,
)
from fnnet.typing import Array, Tree

FAST = settings(max_examples=25, deadline=None)
READONLY = pytest.mark.parametrize("readonly", [False, True], ids=["snapshot", "readonly"])


# --- strategies ----------------------------------------------------------------------------------

DTYPES = st.sampled_from([np.float32, np.float64])


def _floats(lo: float = -10.0, hi: float = 10.0) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, width=32)  # representable in float32 and float64 alike


def _array(dtype: Any, shape: tuple[int, ...], lo: float = -10.0, hi: float = 10.0) -> st.SearchStrategy[Array]:
    return arrays(dtype, shape, elements=_floats(lo, hi))


@st.composite
def batches(draw: st.DrawFn, min_dims: int = 1, max_dims: int = 4, lo: float = -10.0, hi: float = 10.0) -> Array:
    """A float32 or float64 array of 1 to 5 entries per axis."""
    shape = draw(array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=5))
    return draw(_array(draw(DTYPES), shape, lo, hi))


@st.composite
def class_scores(draw: st.DrawFn, lo: float = -10.0, hi: float = 10.0) -> tuple[Array, Array, Array]:
    """Scores ``(..., K)``, integer labels ``(...)`` and the matching one-hot targets."""
    y = draw(batches(min_dims=1, max_dims=3, lo=lo, hi=hi))
    k = y.shape[-1]
    labels = draw(arrays(np.int64, y.shape[:-1], elements=st.integers(0, k - 1)))
    one_hot = (labels[..., None] == np.arange(k)).astype(draw(st.sampled_from([y.dtype, np.float64, np.int64])))
    return y, labels, one_hot


class WB(NamedTuple):
    w: Array
    b: Array


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    """A nested tree (tuple, dict, list, None, NamedTuple) of small float arrays."""
    small = batches(min_dims=0, max_dims=2)
    return (draw(small), {"k": [draw(small), None], "a": draw(small)}, WB(draw(small), draw(small)))


# --- layers --------------------------------------------------------------------------------------

ELEMENTWISE: list[Layer] = [
    ReLU(), Sigmoid(), Tanh(), Identity(), Softmax(), Flatten(),
    LeakyReLU(), ELU(), GELU(), GELU(approximate=True), SiLU(), Softplus(),
]  # fmt: skip


@READONLY
@pytest.mark.parametrize("layer", ELEMENTWISE, ids=kind)
@FAST
@given(x=batches(), data=st.data())
def test_parameter_free_layers(layer: Layer, readonly: bool, x: Array, data: st.DataObject) -> None:
    assume(not isinstance(layer, Softmax) or x.ndim >= 2)  # (N,) has no class axis: Softmax refuses it
    ctx = data.draw(st.sampled_from([EVAL, TRAIN]))
    y, _, cache = call_unchanged(lambda xx: layer.forward(None, None, xx, ctx), x, readonly=readonly)
    dout = data.draw(_array(x.dtype, y.shape))
    input_grad = data.draw(st.booleans())
    call_unchanged(lambda c, d: layer.backward(None, c, d, input_grad), cache, dout, readonly=readonly)


@READONLY
@FAST
@given(data=st.data())
def test_affine(readonly: bool, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES)
    n, out = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    feature_shape = data.draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    d_in = int(np.prod(feature_shape))
    x = data.draw(_array(dtype, (n, *feature_shape)))
    params = AffineParams(data.draw(_array(dtype, (d_in, out))), data.draw(_array(dtype, (out,))))
    ctx = data.draw(st.sampled_from([EVAL, TRAIN]))
    layer = Affine(out)
    y, _, cache = call_unchanged(lambda p, xx: layer.forward(p, None, xx, ctx), params, x, readonly=readonly)
    dout = data.draw(_array(dtype, y.shape))
    input_grad = data.draw(st.booleans())
    call_unchanged(lambda p, c, d: layer.backward(p, c, d, input_grad), params, cache, dout, readonly=readonly)


#: Per-sample normalisation and global pooling, on (N, C, H, W) batches with C in {2, 4, 6}.
SAMPLE_NORMS: list[Layer] = [LayerNorm(), GroupNorm(1), GroupNorm(2), GlobalAvgPool2D()]


@READONLY
@pytest.mark.parametrize("layer", SAMPLE_NORMS, ids=lambda v: f"{kind(v)}{getattr(v, 'groups', '')}")
@FAST
@given(data=st.data())
def test_sample_norms_and_global_pooling(layer: Layer, readonly: bool, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES)
    n, c = data.draw(st.integers(1, 4)), 2 * data.draw(st.integers(1, 3))
    in_shape = (c, data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    template = layer.init(key(0), in_shape)[0]
    params = tree_map(lambda leaf: data.draw(_array(dtype, leaf.shape)), template)
    x = data.draw(_array(dtype, (n, *in_shape)))
    ctx = data.draw(st.sampled_from([EVAL, TRAIN]))
    y, _, cache = call_unchanged(lambda p, xx: layer.forward(p, None, xx, ctx), params, x, readonly=readonly)
    dout = data.draw(_array(dtype, y.shape))
    input_grad = data.draw(st.booleans())
    call_unchanged(lambda p, c, d: layer.backward(p, c, d, input_grad), params, cache, dout, readonly=readonly)


#: 1-D convolution and pooling on (N, C, L), grouped and depthwise convolution on (N, C, H, W); C in {4, 8}.
CONV_LIKE: list[Layer] = [
    Conv1D(3, 3, stride=2, pad=1), Conv1D(4, 2, pad=1, groups=2), MaxPool1D(3, 2, 1), AvgPool1D(2),
    Conv2D(4, 2, pad=1, groups=2), Conv2D(4, (2, 3), stride=(1, 2), groups=4),
]  # fmt: skip


@READONLY
@pytest.mark.parametrize("layer", CONV_LIKE, ids=lambda v: f"{kind(v)}{getattr(v, 'groups', '')}")
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_conv1d_pool1d_and_grouped_conv(layer: Layer, readonly: bool, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES)
    n, c = data.draw(st.integers(1, 3)), 4 * data.draw(st.integers(1, 2))
    size = st.integers(3, 6)
    in_shape = (c, data.draw(size)) if isinstance(layer, (Conv1D, MaxPool1D, AvgPool1D)) else (c, data.draw(size), data.draw(size))
    template = layer.init(key(0), in_shape)[0]
    params = tree_map(lambda leaf: data.draw(_array(dtype, leaf.shape)), template)
    x = data.draw(_array(dtype, (n, *in_shape)))
    ctx = data.draw(st.sampled_from([EVAL, TRAIN]))
    y, _, cache = call_unchanged(lambda p, xx: layer.forward(p, None, xx, ctx), params, x, readonly=readonly)
    dout = data.draw(_array(dtype, y.shape))
    input_grad = data.draw(st.booleans())
    call_unchanged(lambda p, c, d: layer.backward(p, c, d, input_grad), params, cache, dout, readonly=readonly)


@READONLY
@FAST
@given(data=st.data())
def test_serial(readonly: bool, data: st.DataObject) -> None:
    model = serial(
        Affine(4), ReLU(), Affine(3), Tanh(), residual(serial(Affine(3), Sigmoid())), Affine(2), Sigmoid(), Flatten(),
        Affine(3), Softmax(), Identity(),
    )  # fmt: skip
    dtype = data.draw(DTYPES)
    params = tree_astype(model.init(key(data.draw(st.integers(0, 2**16))), (2, 3))[0], dtype)
    x = data.draw(_array(dtype, (data.draw(st.integers(1, 4)), 2, 3)))
    ctx = Ctx(train=data.draw(st.booleans()), key=key(data.draw(st.integers(0, 99))))
    y, _, cache = call_unchanged(lambda p, xx: model.forward(p, None, xx, ctx), params, x, readonly=readonly)
    dout = data.draw(_array(dtype, y.shape))
    input_grad = data.draw(st.booleans())
    call_unchanged(lambda p, c, d: model.backward(p, c, d, input_grad), params, cache, dout, readonly=readonly)


#: Fan-outs and residual blocks (with a projection and BatchNorm inside), nested.
FAN_OUT = serial(
    Affine(4),
    concat(
        residual(serial(Affine(4), Tanh()), shortcut=serial(Affine(4), BatchNorm())),
        add_branches(Sigmoid(), serial(Affine(4), BatchNorm()), Identity()),
    ),
    residual(Affine(3), Affine(3)),
    concat(Identity(), Tanh(), axis=-1),
)
#: Recurrent layers in both output modes, stateless and stateful.
RECURRENT: list[Layer] = [RNN(3), LSTM(3, stateful=True), GRU(2, return_sequences=False)]
#: Fewer examples for the recurrent kernels: each draws several arrays.
FEW = settings(max_examples=10, deadline=None)


@READONLY
@pytest.mark.parametrize("layer", RECURRENT, ids=kind)
@FEW
@given(data=st.data())
def test_recurrent_layers(layer: Layer, readonly: bool, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES)
    n, t, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    template = layer.init(key(0), (t, d))[0]
    params = tree_map(lambda leaf: data.draw(_array(dtype, leaf.shape, -2.0, 2.0)), template)
    x = data.draw(_array(dtype, (n, t, d)))
    h = getattr(layer, "hidden")
    state: Any = None
    if data.draw(st.booleans()):
        zero = [data.draw(_array(dtype, (n, h))) for _ in range(2)]
        state = LSTMState(*zero) if isinstance(layer, LSTM) else RNNState(zero[0])
    ctx = data.draw(st.sampled_from([EVAL, TRAIN]))
    y, _, cache = call_unchanged(lambda p, s, xx: layer.forward(p, s, xx, ctx), params, state, x, readonly=readonly)
    call_unchanged(lambda p, s, xx: layer.apply(p, xx, state=s, ctx=ctx), params, state, x, readonly=readonly)
    dout = data.draw(_array(dtype, y.shape))
    input_grad = data.draw(st.booleans())
    call_unchanged(lambda p, c, dd: layer.backward(p, c, dd, input_grad), params, cache, dout, readonly=readonly)


@READONLY
@pytest.mark.parametrize("kernel", ["rnn", "lstm", "gru"])
@FEW
@given(data=st.data())
def test_scan_kernels(kernel: str, readonly: bool, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES)
    n, t, d, h = (data.draw(st.integers(1, 3)) for _ in range(4))
    layer = {"rnn": RNN(h), "lstm": LSTM(h), "gru": GRU(h)}[kernel]
    params = tree_map(lambda leaf: data.draw(_array(dtype, leaf.shape, -2.0, 2.0)), layer.init(key(0), (t, d))[0])
    kernels: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "rnn": (rnn_scan, rnn_scan_backward), "lstm": (lstm_scan, lstm_scan_backward), "gru": (gru_scan, gru_scan_backward)
    }  # fmt: skip
    scan, scan_backward = kernels[kernel]
    initial = tuple(data.draw(_array(dtype, (n, h))) for _ in range(2 if kernel == "lstm" else 1))
    x = data.draw(_array(dtype, (n, t, d)))
    hs, _, cache = call_unchanged(lambda p, xx, s: scan(p, xx, *s), params, x, initial, readonly=readonly)
    finals = tuple(data.draw(_array(dtype, (n, h))) for _ in initial)
    dhs = data.draw(_array(dtype, hs.shape))
    call_unchanged(lambda p, c, dd, f: scan_backward(p, c, dd, *f), params, cache, dhs, finals, readonly=readonly)


#: Small seq2seq models over integer ids (N, Ts + Tt): plain, peeky on a reversed source, attention.
SEQ2SEQ: list[Layer] = [
    Seq2seq(5, 2, 3, src_len=3),
    Seq2seq(5, 2, 3, src_len=3, peeky=True, reverse=True),
    AttentionSeq2seq(5, 2, 3, src_len=3),
]


@READONLY
@pytest.mark.parametrize("model", SEQ2SEQ, ids=["plain", "peeky-reversed", "attention"])
@FEW
@given(data=st.data())
def test_seq2seq_models(model: Layer, readonly: bool, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES)
    n, tt = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    template = model.init(key(0), (3 + tt,))[0]
    params = tree_map(lambda leaf: data.draw(_array(dtype, leaf.shape, -2.0, 2.0)), template)
    ids = data.draw(arrays(np.int64, (n, 3 + tt), elements=st.integers(0, 4)))
    ctx = data.draw(st.sampled_from([EVAL, TRAIN]))
    y, _, cache = call_unchanged(lambda p, xx: model.forward(p, None, xx, ctx), params, ids, readonly=readonly)
    dout = data.draw(_array(dtype, y.shape))
    input_grad = data.draw(st.booleans())
    call_unchanged(lambda p, c, dd: model.backward(p, c, dd, input_grad), params, cache, dout, readonly=readonly)
    call_unchanged(lambda p, src: generate(model, p, src, 0, 2), params, ids[:, :3], readonly=readonly)


@READONLY
@FAST
@given(data=st.data())
def test_fan_out_and_residual(readonly: bool, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES)
    params = tree_astype(FAN_OUT.init(key(data.draw(st.integers(0, 2**16))), (3,))[0], dtype)
    x = data.draw(_array(dtype, (data.draw(st.integers(2, 4)), 3)))
    state = tree_astype(FAN_OUT.init_state((3,)), dtype)
    train = data.draw(st.booleans())
    if not train:  # evaluation needs running statistics that have seen data
        state = FAN_OUT.forward(params, state, x, TRAIN)[1]
    ctx = Ctx(train=train, key=key(data.draw(st.integers(0, 99))))
    y, _, cache = call_unchanged(
        lambda p, s, xx: FAN_OUT.forward(p, s, xx, ctx), params, state, x, readonly=readonly
    )
    dout = data.draw(_array(dtype, y.shape))
    input_grad = data.draw(st.booleans())
    call_unchanged(lambda p, c, d: FAN_OUT.backward(p, c, d, input_grad), params, cache, dout, readonly=readonly)


@READONLY
@FAST
@given(data=st.data())
def test_embedding_and_time_affine(readonly: bool, data: st.DataObject) -> None:
    dtype = data.draw(DTYPES)
    vocab = data.draw(st.sampled_from([3, 70]))
    ids = data.draw(arrays(np.int64, data.draw(array_shapes(min_dims=1, max_dims=3, max_side=4)), elements=st.integers(0, vocab - 1)))
    emb = Embedding(vocab, 2)
    params = EmbeddingParams(data.draw(_array(dtype, (vocab, 2))))
    y, _, cache = call_unchanged(lambda p, xx: emb.forward(p, None, xx), params, ids, readonly=readonly)
    call_unchanged(lambda p, c, dd: emb.backward(p, c, dd), params, cache, data.draw(_array(dtype, y.shape)), readonly=readonly)
    affine = TimeAffine(3)
    x = data.draw(_array(dtype, (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), 2)))
    aparams = AffineParams(data.draw(_array(dtype, (2, 3))), data.draw(_array(dtype, (3,))))
    ya, _, acache = call_unchanged(lambda p, xx: affine.forward(p, None, xx), aparams, x, readonly=readonly)
    input_grad = data.draw(st.booleans())
    dout = data.draw(_array(dtype, ya.shape))
    call_unchanged(lambda p, c, dd: affine.backward(p, c, dd, input_grad), aparams, acache, dout, readonly=readonly)


@READONLY
@pytest.mark.parametrize("node", [Mul(), Add()], ids=["Mul", "Add"])
@FAST
@given(x=batches(max_dims=3), data=st.data())
def test_graph_nodes(node: Mul | Add, readonly: bool, x: Array, data: st.DataObject) -> None:
    y = data.draw(_array(x.dtype, x.shape[data.draw(st.integers(0, x.ndim)) :]))  # broadcasts against x
    out, cache = call_unchanged(node.forward, x, y, readonly=readonly)
    dout = data.draw(_array(x.dtype, out.shape))
    dx, dy = call_unchanged(node.backward, cache, dout, readonly=readonly)
    assert dx.shape == x.shape and dy.shape == y.shape


# --- losses --------------------------------------------------------------------------------------


@READONLY
@pytest.mark.parametrize("loss", [softmax_cross_entropy, accuracy], ids=lambda f: f.__name__)
@FAST
@given(scores=class_scores())
def test_losses_on_logits(loss: Callable[[Array, Array], Any], readonly: bool, scores: tuple[Array, Array, Array]) -> None:
    y, labels, one_hot = scores
    assume(loss is not accuracy or y.shape[-1] > 1)  # accuracy of one output column is an error
    call_unchanged(loss, y, labels, readonly=readonly)
    call_unchanged(loss, y, one_hot, readonly=readonly)


@READONLY
@FAST
@given(data=st.data())
def test_time_softmax_cross_entropy(readonly: bool, data: st.DataObject) -> None:
    logits = data.draw(batches(min_dims=2, max_dims=3))
    k = logits.shape[-1]
    t = data.draw(arrays(np.int64, logits.shape[:-1], elements=st.integers(-1, k - 1)))
    call_unchanged(lambda y, tt: time_softmax_cross_entropy(y, tt, ignore_index=-1), logits, t, readonly=readonly)
    if k > 1 and (t != -1).any():  # with every token ignored there is nothing to score: a ValueError
        call_unchanged(lambda y, tt: token_accuracy(y, tt, ignore_index=-1), logits, t, readonly=readonly)


@READONLY
@FAST
@given(scores=class_scores(lo=0.0, hi=1.0))
def test_cross_entropy(readonly: bool, scores: tuple[Array, Array, Array]) -> None:
    y, labels, one_hot = scores
    call_unchanged(cross_entropy, y, labels, readonly=readonly)
    call_unchanged(cross_entropy, y, one_hot, readonly=readonly)


@READONLY
@pytest.mark.parametrize("loss", [sum_squared_error, mean_squared_error], ids=lambda f: f.__name__)
@FAST
@given(y=batches(min_dims=0), data=st.data())
def test_squared_errors(loss: Callable[[Array, Array], Any], readonly: bool, y: Array, data: st.DataObject) -> None:
    t = data.draw(_array(data.draw(DTYPES), y.shape))
    call_unchanged(loss, y, t, readonly=readonly)


@READONLY
@FAST
@given(z=batches(min_dims=0, lo=-1e4, hi=1e4), data=st.data())
def test_binary_cross_entropy(readonly: bool, z: Array, data: st.DataObject) -> None:
    t = data.draw(_array(data.draw(DTYPES), z.shape, 0.0, 1.0))
    call_unchanged(binary_cross_entropy_with_logits, z, t, readonly=readonly)


# --- numerical gradients -------------------------------------------------------------------------


def _smooth(tree: Tree) -> float:
    return float(sum(np.sum(np.sin(leaf.astype(np.float64))) for leaf in tree_leaves(tree)))


@READONLY
@settings(max_examples=15, deadline=None)
@given(tree=trees())
def test_numerical_gradient(readonly: bool, tree: Tree) -> None:
    grads = call_unchanged(lambda t: numerical_gradient(_smooth, t), tree, readonly=readonly)
    assert tree_structure(grads) == tree_structure(tree)


@READONLY
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_check_grads(readonly: bool, data: st.DataObject) -> None:
    layer = serial(Affine(3), Tanh(), Affine(2))
    params = tree_astype(layer.init(key(data.draw(st.integers(0, 99))), (4,))[0], np.float64)
    x = data.draw(_array(np.float64, (data.draw(st.integers(1, 3)), 4), -2.0, 2.0))
    report = call_unchanged(lambda p, xx: check_grads(layer, p, xx), params, x, readonly=readonly)
    assert report.max_error < 1e-5


# --- tree utilities ------------------------------------------------------------------------------


@READONLY
@FAST
@given(tree=trees())
def test_tree_functions(readonly: bool, tree: Tree) -> None:
    leaves, treedef = call_unchanged(tree_flatten, tree, readonly=readonly)
    call_unchanged(lambda ls: tree_unflatten(treedef, ls), leaves, readonly=readonly)
    call_unchanged(tree_leaves, tree, readonly=readonly)
    call_unchanged(tree_structure, tree, readonly=readonly)
    call_unchanged(tree_paths, tree, readonly=readonly)
    call_unchanged(tree_size, tree, readonly=readonly)
    call_unchanged(tree_global_norm, tree, readonly=readonly)
    call_unchanged(tree_zeros_like, tree, readonly=readonly)
    call_unchanged(lambda t: tree_astype(t, np.float64), tree, readonly=readonly)
    call_unchanged(lambda t: tree_astype(t, np.float32), tree, readonly=readonly)
    call_unchanged(lambda t: tree_map(lambda a: a * 2, t), tree, readonly=readonly)
    call_unchanged(lambda t: tree_map_with_path(lambda p, a: a, t), tree, readonly=readonly)
    call_unchanged(lambda a, b: tree_map(np.add, a, b), tree, tree_zeros_like(tree), readonly=readonly)


# --- activation functions ------------------------------------------------------------------------


@READONLY
@pytest.mark.parametrize(
    "fn",
    [
        F.step_function, F.sigmoid, F.relu, F.tanh, F.identity, F.softmax, F.log_softmax,
        F.leaky_relu, F.elu, F.gelu, F.gelu_cdf, F.gelu_grad, F.silu, F.silu_grad, F.softplus, F.softplus_grad,
        F.expit, F.erf, F.erfc,
    ],
    ids=lambda f: f.__name__,
)  # fmt: skip
@FAST
@given(x=batches(lo=-1e3, hi=1e3))
def test_functions(fn: Callable[[Array], Array], readonly: bool, x: Array) -> None:
    call_unchanged(fn, x, readonly=readonly)


def test_call_unchanged_catches_writes() -> None:
    """The helper itself: an in-place write is caught in both variants."""

    def scale_in_place(a: Array) -> Array:
        a *= 2
        return a

    with pytest.raises(AssertionError, match="written to"):
        call_unchanged(scale_in_place, np.ones(3))
    with pytest.raises(ValueError, match="read-only"):
        call_unchanged(lambda t: scale_in_place(t[0]), (np.ones(3),), readonly=True)
