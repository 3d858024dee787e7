"""The layer contract, checked on every layer kind: shapes without weights, state in and out,
``input_grad=False``, the context, and the small base class."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pytest
from _helpers import assert_bit_identical, normal

import fnnet
from fnnet.layers.activations import ELU, GELU, LeakyReLU, SiLU, Softplus
from fnnet.layers.base import EVAL, TRAIN, Ctx, Layer, kind
from fnnet.layers.combinators import AddBranches, Concat, Residual, Serial, add_branches, concat, residual, serial
from fnnet.layers.conv import Conv1D, Conv2D
from fnnet.layers.core import Affine, Flatten, Identity, ReLU, Sigmoid, Softmax, Tanh
from fnnet.layers.dropout import Dropout
from fnnet.layers.embedding import Embedding, TimeAffine
from fnnet.layers.norm import BatchNorm, BatchNormState, GroupNorm, LayerNorm
from fnnet.layers.pool import AvgPool1D, AvgPool2D, GlobalAvgPool2D, MaxPool1D, MaxPool2D
from fnnet.layers.recurrent import GRU, LSTM, RNN
from fnnet.random import Key
from fnnet.seq2seq import AttentionSeq2seq, Seq2seq
from fnnet.tree import tree_leaves, tree_structure
from fnnet.typing import Array, Shape

FLAT: list[Shape] = [(4,), (2, 3), (2, 3, 4)]  # any-rank layers
IMAGES: list[Shape] = [(1, 6, 6), (3, 7, 5)]  # (C, H, W)
SEQUENCES: list[Shape] = [(1, 9), (4, 6)]  # (C, L)
TIME_SEQUENCES: list[Shape] = [(4, 2), (1, 3)]  # (T, D)

#: Every layer kind (and the combinators) with the input shapes it is checked on.
CATALOG: list[tuple[Layer, list[Shape]]] = [
    (Affine(3), [(4,), (2, 3), (1, 5, 5)]),
    (ReLU(), FLAT),
    (Sigmoid(), FLAT),
    (Tanh(), FLAT),
    (LeakyReLU(0.2), FLAT),
    (ELU(), FLAT),
    (GELU(), FLAT),
    (GELU(approximate=True), FLAT),
    (SiLU(), FLAT),
    (Softplus(), FLAT),
    (Identity(), FLAT),
    (Softmax(), FLAT),
    (Flatten(), FLAT),
    (Dropout(0.3), FLAT),
    (BatchNorm(), [(4,), (3, 5, 5), (2, 4, 3), (3, 6)]),
    (Conv2D(2, 3), IMAGES),
    (Conv2D(3, (3, 2), stride=2, pad=1), [*IMAGES, (2, 2, 2)]),
    (Conv2D(4, 3, pad=1, groups=2), [(2, 5, 5), (4, 6, 4)]),
    (Conv2D(6, (2, 3), stride=2, groups=3), [(3, 5, 6), (6, 4, 4)]),  # depthwise on 3 channels
    (Conv1D(2, 3), SEQUENCES),
    (Conv1D(4, 3, stride=2, pad=2, groups=2), [(2, 7), (4, 4)]),
    (MaxPool1D(2), SEQUENCES),
    (MaxPool1D(3, 2, 1), SEQUENCES),
    (AvgPool1D(3, 1, 1), SEQUENCES),
    (serial(Conv1D(4, 3, pad=1), ReLU(), MaxPool1D(2), Conv1D(4, 1, groups=4), Flatten(), Affine(3)), SEQUENCES),
    (serial(Conv1D(4, 3, pad=1), BatchNorm(), ReLU(), Conv1D(4, 3, pad=1), GroupNorm(2), AvgPool1D(2), Flatten(), Affine(3)), SEQUENCES),
    (MaxPool2D(2), IMAGES),
    (MaxPool2D(3, 2, 1), IMAGES),
    (AvgPool2D((2, 3), 1, (1, 1)), IMAGES),
    (GlobalAvgPool2D(), IMAGES),
    (LayerNorm(), [(4,), (3, 5, 5), (2, 4, 3)]),
    (GroupNorm(1), IMAGES),
    (GroupNorm(2), [(4, 3, 3), (6, 2, 5), (4,), (4, 7)]),
    (GroupNorm(3), [(3, 7, 5), (6, 2, 2)]),
    (serial(Conv2D(4, 3, pad=1), GroupNorm(2), ReLU(), GlobalAvgPool2D(), Affine(3), LayerNorm()), IMAGES),
    (serial(Conv2D(2, 3, pad=1), BatchNorm(), ReLU(), MaxPool2D(2), Flatten(), Dropout(0.5), Affine(3)), IMAGES),
    (serial(Flatten(), Affine(3), serial(Tanh(), Affine(2))), FLAT),
    (residual(serial(Conv2D(3, 3, pad=1), ReLU(), Conv2D(3, 1))), [(3, 6, 6), (3, 5, 4)]),
    (residual(serial(BatchNorm(), Tanh())), [(4,), (2, 3, 3)]),
    (concat(Conv2D(2, 3, pad=1), serial(Conv2D(3, 1), BatchNorm()), MaxPool2D(3, 1, 1)), IMAGES),
    (concat(Conv2D(2, 3, pad=1), Conv2D(2, (3, 1), pad=1), axis=-1), IMAGES),
    (concat(Affine(3), serial(Affine(2), Tanh()), Dropout(0.5)), [(3,)]),
    (concat(Affine(3)), FLAT),
    (add_branches(Conv2D(3, 3, pad=1), serial(Conv2D(3, 1), BatchNorm()), Conv2D(3, (1, 3), pad=(0, 1))), IMAGES),
    (add_branches(Affine(4), serial(Affine(3), Sigmoid(), Affine(4))), FLAT),
    (
        residual(
            serial(Conv2D(4, 3, stride=2, pad=1), BatchNorm(), ReLU(), Conv2D(4, 3, pad=1), BatchNorm()),
            serial(Conv2D(4, 1, stride=2), BatchNorm()),
        ),
        IMAGES,
    ),
    (
        serial(
            Conv2D(4, 3, pad=1),
            concat(residual(serial(Conv2D(4, 3, pad=1), BatchNorm())), add_branches(ReLU(), Conv2D(4, 1))),
            residual(Conv2D(4, 1, stride=2), Conv2D(4, 1, stride=2, w_init=fnnet.initializers.Normal(0.5))),
            GlobalAvgPool2D(),
            Affine(3),
        ),
        IMAGES,
    ),
    (Embedding(7, 3), [(5,), (2, 3), ()]),  # integer ids in, see _inputs
    (TimeAffine(3), [(4, 2), (2,), (2, 3, 2)]),
    (RNN(3), TIME_SEQUENCES),
    (RNN(3, return_sequences=False), TIME_SEQUENCES),
    (LSTM(3), TIME_SEQUENCES),
    (LSTM(3, return_sequences=False), TIME_SEQUENCES),
    (GRU(3), TIME_SEQUENCES),
    (GRU(3, return_sequences=False), TIME_SEQUENCES),
    (serial(Embedding(7, 4), LSTM(5), TimeAffine(7)), [(6,)]),
    (serial(Embedding(7, 4), GRU(5, return_sequences=False), Affine(2)), [(3,)]),
    (Seq2seq(7, 3, 4, src_len=3), [(5,), (4,)]),  # integer ids (N, Ts + Tt) in, see _inputs
    (Seq2seq(7, 3, 4, src_len=3, peeky=True, reverse=True), [(5,)]),
    (AttentionSeq2seq(7, 3, 4, src_len=2), [(5,), (3,)]),
]


def _takes_ids(layer: Layer) -> bool:
    """Whether the layer's input is integer ids (an Embedding first, or a seq2seq model): no input
    gradient then."""
    first = layer.layers[0] if isinstance(layer, Serial) else layer
    return isinstance(first, (Embedding, Seq2seq, AttentionSeq2seq))


def _inputs(layer: Layer, in_shape: Shape, n: int = 3) -> Array:
    """A batch for ``layer``: ids below 7 (the catalog's vocabularies) for an Embedding first or a
    seq2seq model, else standard normal float32."""
    if _takes_ids(layer):
        return np.random.default_rng(1).integers(0, 7, (n, *in_shape))
    return normal((n, *in_shape), 1, dtype=np.float32)


def _id(layer: Layer) -> str:
    if isinstance(layer, Serial):
        return "serial(" + ",".join(_id(sub) for sub in layer.layers) + ")"
    if isinstance(layer, Residual):
        shortcut = "" if layer.shortcut is None else f",{_id(layer.shortcut)}"
        return f"residual({_id(layer.inner)}{shortcut})"
    if isinstance(layer, (Concat, AddBranches)):
        axis = f",axis={layer.axis}" if isinstance(layer, Concat) else ""
        return f"{kind(layer).lower()}(" + ",".join(_id(b) for b in layer.branches) + axis + ")"
    return kind(layer)


CASES = [pytest.param(layer, shape, id=f"{_id(layer)}-{shape}") for layer, shapes in CATALOG for shape in shapes]
#: One case per catalog entry.
LAYERS = [pytest.param(layer, shapes[0], id=_id(layer)) for layer, shapes in CATALOG]

#: A training context with a key (Dropout draws from it).
TRAIN_KEYED = Ctx(train=True, key=fnnet.key(2))


# --- shapes without weights ---------------------------------------------------------------------


@pytest.mark.parametrize(("layer", "in_shape"), CASES)
def test_out_shape_is_inits_out_shape(layer: Layer, in_shape: Shape) -> None:
    out = layer.out_shape(in_shape)
    assert isinstance(out, tuple) and all(isinstance(d, int) for d in out)
    assert out == layer.init(fnnet.key(0), in_shape)[1]


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        (Conv2D(2, 5), (1, 4, 9)),
        (Conv2D(2, 3), (9, 9)),
        (MaxPool2D(4), (1, 3, 8)),
        (AvgPool2D(2), (8,)),
        (Conv2D(4, 3, groups=2), (3, 5, 5)),
        (Conv1D(2, 5), (1, 4)),
        (Conv1D(2, 3), (1, 4, 4)),
        (MaxPool1D(3), (2, 2)),
        (AvgPool1D(2), (2, 2, 2)),
        (BatchNorm(), (3, 4, 1, 1)),
        (GlobalAvgPool2D(), (8,)),
        (LayerNorm(), ()),
        (GroupNorm(4), (6, 3, 3)),
        (GroupNorm(2), (3, 4)),
        (residual(Affine(5)), (3,)),
        (serial(Affine(4), Conv2D(2, 3)), (5,)),
        (serial(Conv2D(2, 3), serial(ReLU(), MaxPool2D(5))), (1, 6, 6)),
        (concat(Conv2D(2, 1), Conv2D(2, 3)), (1, 6, 6)),
        (concat(Affine(2), Affine(3), axis=1), (4,)),
        (add_branches(Affine(2), Affine(3)), (4,)),
        (residual(Conv2D(2, 3, stride=2, pad=1), Conv2D(2, 1)), (1, 6, 6)),
        (serial(ReLU(), concat(ReLU(), serial(Tanh(), Conv2D(2, 9)))), (1, 6, 6)),
        (residual(Affine(4), serial(ReLU(), Conv2D(4, 1))), (4,)),
        (LSTM(3), (4,)),
        (GRU(3, return_sequences=False), (2, 3, 4)),
        (RNN(3), ()),
        (TimeAffine(2), ()),
        (serial(Embedding(5, 2), LSTM(3)), (2, 3)),
        (Seq2seq(7, 3, 4, src_len=3), (3,)),
        (AttentionSeq2seq(7, 3, 4, src_len=3), (5, 2)),
    ],
    ids=lambda v: _id(v) if isinstance(v, Layer) else str(v),
)
def test_out_shape_and_init_reject_the_same_shapes_alike(layer: Layer, in_shape: Shape) -> None:
    with pytest.raises(ValueError) as by_out_shape:
        layer.out_shape(in_shape)
    with pytest.raises(ValueError) as by_init:
        layer.init(fnnet.key(0), in_shape)
    assert str(by_out_shape.value) == str(by_init.value)


def test_serial_out_shape_errors_name_the_layer() -> None:
    with pytest.raises(ValueError, match=r"^layer 1 \(Conv2D\): Conv2D: expected in_shape \(C, H, W\), got \(4,\)"):
        serial(Affine(4), Conv2D(2, 3)).out_shape((5,))
    with pytest.raises(ValueError, match=r"^layer 1 / layer 1 \(MaxPool2D\): MaxPool2D: window \(5, 5\)"):
        serial(Conv2D(2, 3), serial(ReLU(), MaxPool2D(5))).out_shape((1, 6, 6))


@attrs.frozen
class NoDraw:
    """An initializer that fails the test if it is ever called."""

    def __call__(self, key: Key, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Array:
        raise AssertionError(f"weights {shape} were drawn")


@attrs.frozen
class InitRaises(Layer):
    """A shape-keeping layer whose ``init`` fails the test if it is ever called."""

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[Any, Shape]:
        raise AssertionError("init was called")

    def forward(self, params: Any, state: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any, None]:
        return x, state, None

    def backward(self, params: Any, cache: None, dout: Array, input_grad: bool = True) -> tuple[Array, None]:
        return dout, None


def test_out_shape_and_init_state_draw_no_weights() -> None:
    model = serial(
        Conv2D(2, 3, pad=1, w_init=NoDraw(), b_init=NoDraw()),
        InitRaises(),
        BatchNorm(),
        residual(serial(InitRaises(), Conv2D(2, 3, pad=1, w_init=NoDraw()), BatchNorm())),
        MaxPool2D(2),
        Flatten(),
        Affine(5, w_init=NoDraw(), b_init=NoDraw()),
        BatchNorm(),
        Dropout(0.5),
    )
    assert model.out_shape((1, 6, 6)) == (5,)
    state = model.init_state((1, 6, 6))
    assert isinstance(state, tuple) and len(state) == len(model.layers)
    bn = {i: s for i, s in enumerate(state) if s is not None}
    assert sorted(bn) == [2, 3, 7]
    assert isinstance(bn[2], BatchNormState) and bn[2].mean.shape == (2,)
    inner_state, shortcut_state = bn[3]  # a residual block's state: (inner's, the identity's None)
    assert shortcut_state is None and inner_state[:2] == (None, None)
    assert isinstance(inner_state[2], BatchNormState) and inner_state[2].var.shape == (2,)
    assert isinstance(bn[7], BatchNormState) and bn[7].mean.shape == (5,) and int(bn[7].count) == 0
    with pytest.raises(AssertionError, match="were drawn|init was called"):  # the probes do work
        model.init(fnnet.key(0), (1, 6, 6))


# --- forward and backward ------------------------------------------------------------------------


@pytest.mark.parametrize(("layer", "in_shape"), CASES)
def test_forward_threads_state_and_backward_mirrors_params(layer: Layer, in_shape: Shape) -> None:
    params, out_shape = layer.init(fnnet.key(0), in_shape)
    state0 = layer.init_state(in_shape)
    x = _inputs(layer, in_shape)

    y, state1, cache = layer.forward(params, state0, x, TRAIN_KEYED)
    assert y.shape == (3, *out_shape) and y.dtype == np.float32
    assert tree_structure(state1) == tree_structure(state0)  # None for stateless layers
    dx, grads = layer.backward(params, cache, np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == x.dtype
    assert tree_structure(grads) == tree_structure(params)  # what an optimizer maps over

    # evaluation (with the statistics training returned) hands the state back untouched
    y_eval, state2, _ = layer.forward(params, state1, x)
    assert y_eval.shape == y.shape
    assert tree_structure(state2) == tree_structure(state1)
    assert all(a is b for a, b in zip(tree_leaves(state2), tree_leaves(state1)))
    np.testing.assert_array_equal(layer.apply(params, x, state=state1), y_eval)
    np.testing.assert_array_equal(layer.apply(params, x, state=state0, ctx=TRAIN_KEYED), y)


@pytest.mark.parametrize(("layer", "in_shape"), LAYERS)
def test_backward_without_input_grad_gives_a_read_only_zero_dx(layer: Layer, in_shape: Shape) -> None:
    params, _ = layer.init(fnnet.key(0), in_shape)
    x = _inputs(layer, in_shape)
    y, _, cache = layer.forward(params, layer.init_state(in_shape), x, TRAIN_KEYED)
    dout = normal(y.shape, 2, dtype=np.float32)
    dx_on, grads_on = layer.backward(params, cache, dout)
    dx_off, grads_off = layer.backward(params, cache, dout, input_grad=False)
    assert bool(np.any(dx_on)) != _takes_ids(layer)  # integer ids have no gradient: zeros
    assert dx_off.shape == x.shape and dx_off.dtype == (x.dtype if _takes_ids(layer) else dout.dtype)
    assert not dx_off.flags.writeable and not np.any(dx_off)
    assert all(s == 0 for s in dx_off.strides)  # one zero seen everywhere: it takes no memory
    assert_bit_identical(grads_off, grads_on)  # only dx is skipped


# --- the context ---------------------------------------------------------------------------------


def test_ctx_defaults() -> None:
    assert (EVAL.train, EVAL.key, TRAIN.train, TRAIN.key) == (False, None, True, None)
    a = np.arange(3.0)
    assert Ctx().batch_sum(a) is a  # unsharded: the batch's own sum is the whole sum
    assert Ctx(train=1).train is True  # type: ignore[arg-type]
    assert repr(Ctx(train=True)) == "Ctx(train=True, key=None)"


def test_ctx_children_fold_the_key_and_keep_the_rest() -> None:
    k = fnnet.key(3)

    def total(a: Array) -> Array:
        return a * 2

    ctx = Ctx(train=True, key=k, batch_sum=total)
    assert ctx.key == k
    assert ctx.child(2).key == fnnet.fold_in(k, 2)
    assert ctx.child(2).child(5).key == fnnet.fold_in(fnnet.fold_in(k, 2), 5)
    assert ctx.child(2).train is True and ctx.child(2).batch_sum is total
    keyless = Ctx(train=True, batch_sum=total).child(4)
    assert keyless.key is None and keyless.train is True and keyless.batch_sum is total


def test_ctx_is_immutable_and_checks_its_key() -> None:
    ctx = Ctx(key=fnnet.key(0))
    with pytest.raises(AttributeError, match="immutable"):
        ctx.train = True
    with pytest.raises(AttributeError, match="immutable"):
        ctx.child(1).batch_sum = np.negative
    with pytest.raises(ValueError, match=r"^Ctx: key must be a fnnet.Key or None, got int"):
        Ctx(key=0)  # type: ignore[arg-type]


@attrs.frozen
class CtxProbe(Layer):
    """Passes ``x`` through and keeps the context it was given as its cache."""

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        return None, tuple(in_shape)

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, Ctx]:
        return x, state, ctx

    def backward(self, params: None, cache: Ctx, dout: Array, input_grad: bool = True) -> tuple[Array, None]:
        return dout, None


def test_serial_gives_layer_i_the_context_child_i() -> None:
    k = fnnet.key(9)

    def total(a: Array) -> Array:
        return a

    model = serial(CtxProbe(), serial(CtxProbe(), CtxProbe()), residual(CtxProbe()))
    _, _, cache = model.forward((None, (None, None), (None, None)), None, np.ones((2, 3)), Ctx(True, k, batch_sum=total))
    got = [cache.caches[0], cache.caches[1].caches[0], cache.caches[1].caches[1], cache.caches[2].caches[0]]
    paths = [(0,), (1, 0), (1, 1), (2, 0)]
    for ctx, path in zip(got, paths):
        expected = k
        for i in path:
            expected = fnnet.fold_in(expected, i)
        assert ctx.key == expected and ctx.train is True and ctx.batch_sum is total


# --- the base class ------------------------------------------------------------------------------


def test_the_layer_base_class_is_small() -> None:
    public = {name for name in dir(Layer) if not name.startswith("_")}
    assert public == {"out_shape", "init", "init_state", "forward", "backward", "apply"}


def test_kind_is_the_class_name() -> None:
    assert [kind(layer) for layer, _ in CATALOG[:3]] == ["Affine", "ReLU", "Sigmoid"]
    assert kind(serial(ReLU())) == "Serial" and kind(residual(ReLU())) == "Residual"
    assert kind(InitRaises()) == "InitRaises"


@pytest.mark.parametrize(("layer", "in_shape"), LAYERS)
def test_only_batchnorm_carries_state(layer: Layer, in_shape: Shape) -> None:
    state = layer.init_state(in_shape)
    assert bool(tree_leaves(state)) == ("BatchNorm" in _id(layer))
    if isinstance(layer, (Serial, Residual, Concat, AddBranches)):
        return
    assert state is None or isinstance(layer, BatchNorm)  # the base class's default is None
