"""Fan-out combinators (concat, add_branches), residual blocks with projection shortcuts, error paths
through nested trees, the summary tree, and the ResNet builders."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from _helpers import assert_bit_identical, assert_grads_ok, init64, normal

import fnnet
from fnnet import checkpoint, cli, models
from fnnet.cli import main
from fnnet.layers.base import EVAL, TRAIN, Ctx, Layer
from fnnet.layers.combinators import (
    AddBranches,
    Concat,
    PathError,
    Residual,
    Serial,
    add_branches,
    concat,
    residual,
    serial,
    summary,
)
from fnnet.layers.conv import Conv2D, ConvParams
from fnnet.layers.core import Affine, Identity, ReLU, Sigmoid, Tanh
from fnnet.layers.dropout import Dropout
from fnnet.layers.norm import BatchNorm, BatchNormState
from fnnet.layers.pool import GlobalAvgPool2D
from fnnet.numerical import check_grads
from fnnet.optim import sgd
from fnnet.random import Key
from fnnet.train import init_train_state, make_train_step
from fnnet.tree import tree_astype, tree_leaves, tree_map, tree_paths, tree_size
from fnnet.typing import Array, Shape

GRAD_TOL = 1e-6  # float64 central differences of smooth functions agree with backprop to ~1e-9
PROJ_KEY = fnnet.key(4242)


def _jittered(layer: Layer, in_shape: Shape, seed: int = 1) -> Any:
    """float64 params with every leaf moved off its initial value (biases off 0, BatchNorm's gamma off 1)."""
    params, _ = init64(layer, in_shape, seed)
    leaves = iter(range(10_000))
    return tree_map(lambda a: a + 0.3 * normal(a.shape, seed, next(leaves)), params)


# --- gradient checks -----------------------------------------------------------------------------

SMOOTH: dict[str, tuple[Layer, Shape]] = {
    "concat-features": (concat(Affine(3), serial(Affine(4), Tanh(), Affine(2)), Tanh()), (3,)),
    "concat-channels": (concat(Conv2D(2, 3, pad=1), serial(Conv2D(3, 1), Sigmoid()), Identity()), (2, 5, 4)),
    "concat-last-axis": (concat(Conv2D(2, 3, pad=1), Conv2D(2, (3, 1), pad=1), axis=-1), (1, 4, 5)),
    "concat-height": (concat(Conv2D(2, 3, pad=1), Conv2D(2, (3, 1), stride=(2, 1), pad=(1, 0)), axis=1), (1, 4, 5)),
    "add-features": (add_branches(Affine(3), serial(Affine(5), Tanh(), Affine(3)), serial(Affine(3), Sigmoid())), (4,)),
    "add-convs": (
        add_branches(Conv2D(3, 3, pad=1), Conv2D(3, 1), serial(Conv2D(3, (1, 3), pad=(0, 1)), Tanh())),
        (2, 4, 4),
    ),
    "residual-projection": (residual(serial(Affine(4), Tanh(), Affine(4)), Affine(4)), (3,)),
    "residual-conv-projection": (
        residual(serial(Conv2D(3, 3, stride=2, pad=1), Tanh(), Conv2D(3, 3, pad=1)), Conv2D(3, 1, stride=2)),
        (2, 5, 5),
    ),
}


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_gradients(name: str) -> None:
    layer, in_shape = SMOOTH[name]
    params = _jittered(layer, in_shape)
    assert_grads_ok(layer, params, normal((3, *in_shape), 7), tol=GRAD_TOL, key=PROJ_KEY)


#: A nested tree with BatchNorm in branches and shortcuts: every BatchNorm follows a nonlinearity,
#: so no bias is cancelled by the batch mean (see the next test for that case).
NESTED = serial(
    Conv2D(2, 3, pad=1),
    Tanh(),
    concat(
        residual(serial(Conv2D(2, 3, pad=1), Tanh(), BatchNorm())),
        add_branches(serial(Sigmoid(), BatchNorm(), Conv2D(2, 1)), Conv2D(2, (1, 3), pad=(0, 1))),
    ),
    residual(
        serial(Conv2D(3, 3, stride=2, pad=1), Tanh(), BatchNorm(), Conv2D(3, 1)),
        serial(Conv2D(3, 1, stride=2), Tanh(), BatchNorm()),
    ),
    GlobalAvgPool2D(),
    Affine(2),
)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_gradients_of_a_nested_tree_with_batchnorm(train: bool) -> None:
    in_shape = (1, 4, 4)
    params = _jittered(NESTED, in_shape)
    x = normal((4, *in_shape), 3)
    state = tree_astype(NESTED.init_state(in_shape), np.float64)
    if not train:  # evaluation needs running statistics that have seen data
        _, state, _ = NESTED.forward(params, state, x, TRAIN)
    check = assert_grads_ok(NESTED, params, x, state=state, ctx=Ctx(train=train), tol=GRAD_TOL, key=PROJ_KEY)
    assert "3/1/0/w" in check.errors and "2/0/0/2/gamma" in check.errors  # the shortcut and a branch's BatchNorm


def test_gradients_of_a_basic_block_in_training_mode() -> None:
    """The real block: Conv -> BatchNorm, so in training mode the conv biases get exactly zero gradient."""
    block = models.basic_block(3, stride=2)
    in_shape = (2, 5, 5)
    params = _jittered(block, in_shape)
    x = normal((4, *in_shape), 5)
    state = tree_astype(block.init_state(in_shape), np.float64)
    check = check_grads(block, params, x, state=state, ctx=TRAIN, key=PROJ_KEY)
    # biases feeding a training-mode BatchNorm are cancelled by its batch mean: their gradient is 0
    cancelled = {"0/0/0/b", "0/0/3/b", "0/1/0/b"}
    assert set(check.errors) == (set(tree_paths(params)) | {"x"})
    assert max(e for p, e in check.errors.items() if p not in cancelled) < GRAD_TOL, str(check)
    y, _, cache = block.forward(params, state, x, TRAIN)
    _, grads = block.backward(params, cache, normal(y.shape, 6))
    inner, shortcut = grads[0]
    for b in (inner[0].b, inner[3].b, shortcut[0].b):
        assert np.abs(b).max() < 1e-12
    assert np.abs(inner[0].w).max() > 1e-3 and np.abs(shortcut[0].w).max() > 1e-3


# --- what the combinators compute -----------------------------------------------------------------


def test_concat_and_add_compute_what_they_say() -> None:
    a, b = Conv2D(2, 3, pad=1), serial(Conv2D(3, 1), Tanh())
    x = normal((2, 1, 4, 4), 0)
    for axis in (0, -3):  # the channel axis, counted from either end
        layer = concat(a, b, axis=axis)
        params, out = init64(layer, (1, 4, 4))
        assert out == (5, 4, 4)
        expected = np.concatenate([a.apply(params[0], x), b.apply(params[1], x)], axis=1)
        np.testing.assert_array_equal(layer.apply(params, x), expected)
    c = Conv2D(3, 3, pad=1)
    both = add_branches(c, b)
    params, _ = init64(both, (1, 4, 4))
    np.testing.assert_allclose(both.apply(params, x), c.apply(params[0], x) + b.apply(params[1], x), rtol=1e-14)


def test_residual_with_a_shortcut_adds_the_shortcut() -> None:
    inner, short = serial(Affine(4), Tanh(), Affine(2)), Affine(2)
    block = residual(inner, shortcut=short)
    params, out = init64(block, (3,))
    assert out == (2,) and [type(p).__name__ for p in params] == ["tuple", "AffineParams"]
    x = normal((5, 3), 1)
    expected = inner.apply(params[0], x) + short.apply(params[1], x)
    np.testing.assert_allclose(block.apply(params, x), expected, rtol=1e-14)


def test_every_branch_gets_the_whole_dout_and_dx_is_their_sum() -> None:
    a, b = Affine(3), serial(Affine(4), Tanh(), Affine(3))
    both = add_branches(a, b)
    params, _ = init64(both, (5,))
    x, dout = normal((2, 5), 0), normal((2, 3), 1)
    _, _, cache = both.forward(params, None, x)
    dx, grads = both.backward(params, cache, dout)
    _, _, ca = a.forward(params[0], None, x)
    _, _, cb = b.forward(params[1], None, x)
    dxa, ga = a.backward(params[0], ca, dout)
    dxb, gb = b.backward(params[1], cb, dout)
    np.testing.assert_allclose(dx, dxa + dxb, rtol=1e-14)
    assert_bit_identical(grads, (ga, gb))


def test_branches_draw_from_their_own_child_keys() -> None:
    layer = concat(Dropout(0.5), Dropout(0.5), serial(Dropout(0.5)))
    x = np.ones((4, 6))
    ctx = Ctx(train=True, key=fnnet.key(8))
    y = layer.apply((None, None, (None,)), x, ctx=ctx)
    parts = np.split(y, 3, axis=1)
    assert not np.array_equal(parts[0], parts[1])  # independent masks
    np.testing.assert_array_equal(parts[0], Dropout(0.5).apply(None, x, ctx=ctx.child(0)))
    np.testing.assert_array_equal(parts[2], Dropout(0.5).apply(None, x, ctx=ctx.child(2).child(0)))
    block = residual(Dropout(0.5), shortcut=Dropout(0.5))
    z = block.apply((None, None), x, ctx=ctx)
    expected = Dropout(0.5).apply(None, x, ctx=ctx.child(0)) + Dropout(0.5).apply(None, x, ctx=ctx.child(1))
    np.testing.assert_array_equal(z, expected)


def test_batchnorm_state_threads_through_branches() -> None:
    layer = concat(BatchNorm(), serial(Conv2D(2, 1), BatchNorm()), residual(Conv2D(1, 1), BatchNorm()))
    in_shape = (1, 3, 3)
    params, _ = layer.init(fnnet.key(0), in_shape)
    state0 = layer.init_state(in_shape)
    assert isinstance(state0[0], BatchNormState) and state0[1][0] is None and state0[2][0] is None
    assert isinstance(state0[2][1], BatchNormState)
    x = normal((4, *in_shape), 2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"^branch 0 \(BatchNorm\): BatchNorm: .*never"):
        layer.apply(params, x, state=state0)  # running statistics that saw no data are refused
    _, state1, _ = layer.forward(params, state0, x, TRAIN)
    assert [int(leaf) for leaf in tree_leaves(state1) if leaf.ndim == 0] == [1, 1, 1]  # the counts
    assert layer.apply(params, x, state=state1).shape == (4, 4, 3, 3)


@pytest.mark.parametrize("layer", [concat(Identity()), add_branches(Identity()), concat(Affine(2))], ids=repr)
def test_a_single_branch_is_that_branch(layer: Concat | AddBranches) -> None:
    params, _ = layer.init(fnnet.key(0), (2,))
    x = normal((3, 2), 0, dtype=np.float32)
    y, _, cache = layer.forward(params, None, x)
    np.testing.assert_array_equal(y, layer.branches[0].apply(params[0], x))
    dx, _ = layer.backward(params, cache, np.ones_like(y))
    assert dx.shape == x.shape


def test_records_are_frozen_and_simple() -> None:
    c = concat(ReLU(), Tanh(), axis=1)
    assert (c.branches, c.axis) == ((ReLU(), Tanh()), 1)
    r = residual(ReLU(), Identity())
    assert (r.inner, r.shortcut) == (ReLU(), Identity()) and residual(ReLU()).shortcut is None
    assert add_branches(ReLU(), Tanh()).branches == (ReLU(), Tanh())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        c.axis = 0  # type: ignore[misc]
    assert attrs.evolve(c, axis=-1).axis == -1 and Concat([ReLU()]).branches == (ReLU(),)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: concat(), "^Concat: needs at least one branch$"),
        (lambda: add_branches(), "^AddBranches: needs at least one branch$"),
        (lambda: concat(ReLU(), "relu"), "^Concat: branch 1 is not a Layer: 'relu'$"),  # type: ignore[arg-type]
        (lambda: add_branches(None), "^AddBranches: branch 0 is not a Layer: None$"),  # type: ignore[arg-type]
        (lambda: concat(ReLU(), axis=1.0), r"^Concat: axis must be an int, got 1\.0$"),  # type: ignore[arg-type]
        (lambda: concat(ReLU(), axis=True), "^Concat: axis must be an int, got True$"),
        (lambda: residual("f"), "^Residual: inner must be a Layer, got 'f'$"),  # type: ignore[arg-type]
        (lambda: residual(ReLU(), 2), r"^Residual: shortcut must be a Layer or None \(the identity\), got 2$"),  # type: ignore[arg-type]
    ],
)
def test_bad_records_fail_when_built(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("layer", "in_shape", "message"),
    [
        (concat(Affine(3), Conv2D(2, 1)), (1, 2, 2),
         r"Concat: branch 1 gives (2, 2, 2) but branch 0 gives (3,); they must agree on every axis but axis 0"),
        (concat(Conv2D(2, 1), Conv2D(2, 3)), (1, 4, 4),
         r"Concat: branch 1 gives (2, 2, 2) but branch 0 gives (2, 4, 4); they must agree on every axis but axis 0"),
        (concat(Affine(3), Affine(3), axis=1), (4,), "Concat: axis 1 is out of range for branch outputs of rank 1"),
        (concat(Affine(3), Affine(3), axis=-2), (4,), "Concat: axis -2 is out of range for branch outputs of rank 1"),
        (add_branches(Affine(3), Affine(4)), (2,),
         "AddBranches: branch 1 gives (4,) but branch 0 gives (3,); shapes must match"),
        (residual(Affine(3)), (2,),
         "Residual: inner layer maps (2,) to (3,); with the identity shortcut they must match"),
        (residual(Conv2D(4, 3, stride=2, pad=1), Conv2D(4, 1)), (1, 6, 6),
         "Residual: inner layer maps (1, 6, 6) to (4, 3, 3) but the shortcut to (4, 6, 6); shapes must match"),
    ],
)
def test_incompatible_branches_fail_in_one_line(layer: Layer, in_shape: Shape, message: str) -> None:
    for fn in (lambda: layer.out_shape(in_shape), lambda: layer.init(fnnet.key(0), in_shape)):
        with pytest.raises(ValueError) as e:
            fn()
        assert str(e.value) == message


def test_mismatched_params_fail_in_forward_not_silently_broadcast() -> None:
    layer = add_branches(Affine(3), Affine(3))
    params, _ = layer.init(fnnet.key(0), (2,))
    narrow, _ = Affine(1).init(fnnet.key(1), (2,))
    x = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"^branch 1 \(Affine\): Affine: expected params w of shape \(in, 3\)"):
        layer.apply((params[0], narrow), x)  # (N, 3) + (N, 1) would broadcast
    with pytest.raises(ValueError, match=r"^AddBranches: branch 1 gives \(6,\) but branch 0 gives \(2, 3\); shapes must"):
        add_branches(fnnet.Identity(), fnnet.Flatten()).apply((None, None), np.ones((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"^AddBranches: expected params as a tuple of 2 entries, got 1 entries$"):
        layer.apply(params[:1], x)
    with pytest.raises(ValueError, match=r"^Residual: expected state as a tuple of 2 entries, got 1 entries$"):
        residual(Affine(3)).forward((params[0], None), (None,), np.ones((2, 3), np.float32))
    y, _, cache = layer.forward(params, None, x)
    with pytest.raises(ValueError, match=r"^AddBranches.backward: expected dout of shape \(2, 3\), got \(2, 4\)$"):
        layer.backward(params, cache, np.ones((2, 4), np.float32))


# --- errors name the whole path --------------------------------------------------------------------


@attrs.frozen
class Fails(Layer):
    """Keeps the shape, and raises ``ValueError`` in the method named ``where``."""

    where: str

    def _maybe(self, name: str) -> None:
        if name == self.where:
            raise ValueError(f"Fails: boom in {name}")

    def out_shape(self, in_shape: Shape) -> Shape:
        self._maybe("out_shape")
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[None, Shape]:
        self._maybe("init")
        return None, tuple(in_shape)

    def init_state(self, in_shape: Shape) -> None:
        self._maybe("init_state")
        return None

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = EVAL) -> tuple[Array, None, None]:
        self._maybe("forward")
        return x, state, None

    def backward(self, params: None, cache: None, dout: Array, input_grad: bool = True) -> tuple[Array, None]:
        self._maybe("backward")
        return dout, None


def _tree(where: str) -> Serial:
    """``Fails`` at layer 2 / branch 1 / layer 0."""
    return serial(
        Tanh(),
        ReLU(),
        concat(Identity(), serial(Fails(where), Identity())),
        residual(Identity(), add_branches(Identity(), Tanh())),
    )


def _tree2(where: str) -> Serial:
    return serial(Tanh(), serial(ReLU(), residual(Identity(), add_branches(Identity(), Fails(where)))))


@pytest.mark.parametrize("where", ["out_shape", "init", "init_state", "forward", "backward"])
def test_errors_name_the_path_through_the_tree(where: str) -> None:
    def run(model: Serial) -> None:
        x = np.ones((2, 3))
        params, _ = model.init(fnnet.key(0), (3,))
        state = model.init_state((3,))
        y, _, cache = model.forward(params, state, x, TRAIN)
        model.out_shape((3,))
        model.backward(params, cache, np.ones_like(y))

    cases = ((_tree(where), "layer 2 / branch 1 / layer 0"), (_tree2(where), "layer 1 / layer 1 / shortcut / branch 1"))
    for model, path in cases:
        with pytest.raises(PathError) as e:
            run(model)
        assert str(e.value) == f"{path} (Fails): Fails: boom in {where}"
        assert e.value.path == tuple(path.split(" / "))
        assert (e.value.kind, e.value.reason) == ("Fails", f"Fails: boom in {where}")
        assert isinstance(e.value, ValueError)
        assert str(e.value.__cause__) == f"Fails: boom in {where}"  # the original error is chained


def test_summary_errors_name_the_path_too() -> None:
    with pytest.raises(ValueError) as e:
        summary(_tree("init"), (3,))
    assert str(e.value) == "layer 2 / branch 1 / layer 0 (Fails): Fails: boom in init"
    with pytest.raises(ValueError) as e:
        summary(residual(Fails("init")), (3,))
    assert str(e.value) == "layer 0 / inner (Fails): Fails: boom in init"


def test_a_real_shape_error_deep_in_a_resnet() -> None:
    model = models.resnet(widths=(4, 8), blocks=1)
    with pytest.raises(ValueError) as e:
        model.init(fnnet.key(0), (1, 3, 8, 8))
    assert str(e.value) == "layer 0 (Conv2D): Conv2D: expected in_shape (C, H, W), got (1, 3, 8, 8)"
    params, _ = model.init(fnnet.key(0), (1, 8, 8))
    bad = list(params)
    block = bad[4]  # serial(residual(inner, shortcut), ReLU()): ((inner, shortcut), None)
    shortcut_conv = ConvParams(np.zeros((8, 2, 1, 1), np.float32), np.zeros(8, np.float32))  # for 2 channels, not 4
    bad[4] = ((block[0][0], (shortcut_conv, block[0][1][1])), None)
    x = np.ones((2, 1, 8, 8), np.float32)
    with pytest.raises(ValueError) as e:
        model.forward(tuple(bad), model.init_state((1, 8, 8)), x, TRAIN)
    assert str(e.value) == (
        "layer 4 / layer 0 / shortcut / layer 0 (Conv2D): "
        "Conv2D: expected input with 2 channels (N, 2, H, W), got shape (2, 4, 8, 8)"
    )


# --- summary as a tree -----------------------------------------------------------------------------


def test_summary_shows_the_tree() -> None:
    model = serial(
        Conv2D(4, 3, pad=1),
        concat(residual(serial(Conv2D(4, 3, pad=1), BatchNorm())), add_branches(Conv2D(2, 1), Conv2D(2, 3, pad=1))),
        residual(Conv2D(6, 3, stride=2, pad=1), shortcut=serial(Conv2D(6, 1, stride=2), BatchNorm())),
        GlobalAvgPool2D(),
        Affine(3),
    )
    in_shape = (2, 6, 6)
    s = summary(model, in_shape)
    params, out = model.init(fnnet.key(5), in_shape)
    assert s.out_shape == out == (3,)
    assert [r.kind for r in s.rows] == ["Conv2D", "Concat", "Residual", "GlobalAvgPool2D", "Affine"]
    assert s.total_params == tree_size(params)
    rows = list(s.walk())
    assert [(depth, r.path, r.kind) for depth, r in rows] == [
        (0, "0", "Conv2D"),
        (0, "1", "Concat"),
        (1, "1/0", "Residual"),
        (2, "1/0/inner", "Serial"),
        (3, "1/0/inner/0", "Conv2D"),
        (3, "1/0/inner/1", "BatchNorm"),
        (1, "1/1", "AddBranches"),
        (2, "1/1/0", "Conv2D"),
        (2, "1/1/1", "Conv2D"),
        (0, "2", "Residual"),
        (1, "2/inner", "Conv2D"),
        (1, "2/shortcut", "Serial"),
        (2, "2/shortcut/0", "Conv2D"),
        (2, "2/shortcut/1", "BatchNorm"),
        (0, "3", "GlobalAvgPool2D"),
        (0, "4", "Affine"),
    ]
    # every row's count is that of its params subtree (path "2/shortcut" is params[2][1])
    lookup = {"inner": 0, "shortcut": 1}
    for _, r in rows:
        sub: Any = params
        for step in r.path.split("/"):
            sub = sub[lookup.get(step, int(step) if step.isdigit() else -1)]
        assert r.params == tree_size(sub), r.path
    shapes = {r.path: r.out_shape for _, r in rows}
    assert shapes["1"] == (6, 6, 6) and shapes["1/1"] == (2, 6, 6) and shapes["2/shortcut/0"] == (6, 3, 3)
    lines = str(s).splitlines()
    assert lines[0].split() == ["#", "layer", "output", "shape", "params"]
    assert lines[-1] == f"total params: {s.total_params:,}"
    assert lines[2].startswith("  0  Conv2D ")
    assert any(line.startswith("           1/0/inner/1  BatchNorm ") for line in lines)  # indented by depth
    assert any(line.startswith("       2/shortcut  Serial ") for line in lines)


def test_summary_of_a_lone_combinator() -> None:
    s = summary(concat(Affine(2), Affine(3)), (4,))
    assert [(r.index, r.kind, r.path, r.out_shape, r.params) for r in s.rows] == [(0, "Concat", "0", (5,), 25)]
    assert [(r.path, r.params) for r in s.rows[0].children] == [("0/0", 10), ("0/1", 15)]


# --- ResNet ------------------------------------------------------------------------------------------


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def _resnet_params(widths: tuple[int, ...], blocks: int, output_size: int, c_in: int) -> int:
    """Trainable scalars of :func:`models.resnet`, by formula."""
    n = _conv(c_in, widths[0], 3) + 2 * widths[0]  # stem conv and BatchNorm
    c = widths[0]
    for stage, w in enumerate(widths):
        for b in range(blocks):
            n += _conv(c, w, 3) + 2 * w + _conv(w, w, 3) + 2 * w
            if stage > 0 and b == 0:
                n += _conv(c, w, 1) + 2 * w  # projection
            c = w
    return n + c * output_size + output_size


@pytest.mark.parametrize(
    ("kwargs", "in_shape", "sizes"),
    [
        ({}, (1, 28, 28), {28, 14, 7}),
        ({"widths": (4, 6, 8, 10), "blocks": 1, "output_size": 3}, (3, 9, 9), {9, 5, 3, 2}),
    ],
)
def test_resnet_shapes_and_parameter_count(kwargs: dict[str, Any], in_shape: Shape, sizes: set[int]) -> None:
    model = models.resnet(**kwargs)
    widths, blocks, out = kwargs.get("widths", (16, 32, 64)), kwargs.get("blocks", 2), kwargs.get("output_size", 10)
    s = summary(model, in_shape)
    assert model.out_shape(in_shape) == s.out_shape == (out,)
    assert s.total_params == _resnet_params(widths, blocks, out, in_shape[0])
    assert len(model.layers) == 3 + len(widths) * blocks + 2
    convs = [r for _, r in s.walk() if r.kind == "Conv2D"]
    assert {r.out_shape[1] for r in convs} == sizes
    assert len(convs) == 1 + 2 * len(widths) * blocks + len(widths) - 1
    assert len([r for _, r in s.walk() if r.path.endswith("/shortcut")]) == len(widths) - 1


def test_resnet_is_the_specified_network() -> None:
    model = models.resnet(widths=(4, 8), blocks=2, output_size=7)
    he = fnnet.initializers.HeNormal()
    stem = model.layers[:3]
    assert stem == (Conv2D(4, 3, pad=1, w_init=he), BatchNorm(), ReLU())
    assert model.layers[3:7] == (
        models.basic_block(4), models.basic_block(4), models.basic_block(8, stride=2), models.basic_block(8),
    )
    assert isinstance(model.layers[7], GlobalAvgPool2D) and model.layers[8] == Affine(7)
    block = models.basic_block(8, stride=2)
    res, relu = block.layers
    assert isinstance(res, Residual) and relu == ReLU()
    assert res.inner == serial(
        Conv2D(8, 3, stride=2, pad=1, w_init=he), BatchNorm(), ReLU(), Conv2D(8, 3, pad=1, w_init=he), BatchNorm()
    )
    assert res.shortcut == serial(Conv2D(8, (1, 1), stride=2, w_init=he), BatchNorm())
    plain, projected = models.basic_block(8).layers[0], models.basic_block(8, projection=True).layers[0]
    assert isinstance(plain, Residual) and plain.shortcut is None
    assert isinstance(projected, Residual) and projected.shortcut == serial(Conv2D(8, 1, w_init=he), BatchNorm())


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: models.basic_block(0), "^basic_block: channels must be a positive int, got 0$"),
        (lambda: models.basic_block(4, stride=2, projection=False), "^basic_block: stride 2 changes the image size"),
        (lambda: models.basic_block(4, projection=1), "^basic_block: projection must be True, False or None"),  # type: ignore[arg-type]
        (lambda: models.resnet(widths=()), r"^resnet: widths must be a non-empty sequence of positive ints, got \(\)$"),
        (lambda: models.resnet(widths=(4, -1)), r"^resnet: widths\[1\] must be a positive int, got -1$"),
        (lambda: models.resnet(blocks=0), "^resnet: blocks must be a positive int, got 0$"),
        (lambda: models.resnet(output_size=2.5), r"^resnet: output_size must be a positive int"),  # type: ignore[arg-type]
    ],
)
def test_resnet_arguments_are_checked(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_identity_block_needs_matching_channels() -> None:
    with pytest.raises(ValueError) as e:
        models.basic_block(4).init(fnnet.key(0), (2, 5, 5))
    assert str(e.value) == (
        "layer 0 (Residual): Residual: inner layer maps (2, 5, 5) to (4, 5, 5); "
        "with the identity shortcut they must match"
    )


def _same(a: Any, b: Any) -> bool:
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb))


def test_sharded_resnet_step_matches_unsharded() -> None:
    """BatchNorm inside branches and shortcuts sums its statistics across shards through ctx.child."""
    model = models.resnet(widths=(3, 4), blocks=1, output_size=5)
    in_shape, n = (2, 6, 6), 7
    g = fnnet.key(5).generator()
    x, t = g.standard_normal((n, *in_shape)), g.integers(0, 5, n)
    state = fnnet.astype(init_train_state(model, sgd(0.1), fnnet.key(0), in_shape), np.float64)
    one, m1 = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    counts = [int(leaf) for leaf in tree_leaves(one.model_state) if leaf.ndim == 0]
    assert counts == [1] * 6  # stem, 2 per block, 1 in the projection: every BatchNorm saw the batch
    for shards in (2, 3):
        many, m2 = make_train_step(model, optimizer=sgd(0.1), shards=shards)(state, x, t, None)
        assert m2.loss == pytest.approx(m1.loss, rel=1e-12)
        for a, b in zip(tree_leaves(many), tree_leaves(one)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)
    # the shard count changes the rounding, the thread count never does
    x32 = x.astype(np.float32)
    s32 = fnnet.astype(state, np.float32)
    runs = [make_train_step(model, optimizer=sgd(0.1), shards=3, threads=k)(s32, x32, t, None) for k in (1, 2)]
    assert runs[0][1].loss == runs[1][1].loss and _same(runs[0][0], runs[1][0])


def _idx(path: Path, a: Array) -> None:
    path.write_bytes(bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes())


def test_cli_trains_and_evaluates_a_resnet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "tiny"
    data.mkdir()
    g = np.random.default_rng(0)
    for part, n in (("train", 60), ("t10k", 20)):
        _idx(data / f"{part}-images-idx3-ubyte", g.integers(0, 256, (n, 8, 8)))
        _idx(data / f"{part}-labels-idx1-ubyte", g.integers(0, 10, (n,)))
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet", "--data", str(data), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("test accuracy ")
    meta = checkpoint.read_meta(out / "checkpoint.npz")
    assert meta["config"]["model"] == "resnet" and meta["config"]["optimizer"] == "adam"
    assert main(["evaluate", str(out)]) == 0  # the nested params and BatchNorm states restore
    assert capsys.readouterr().out.strip().splitlines()[-1] == printed[0]
    assert cli.MODEL_DEFAULTS["resnet"][1:] == (False, "adam", 0.001, 2)
