"""Core layers and pipelines: gradients, errors that name the place, summaries, input_grad, records.

Also the book's computational-graph nodes ``Mul`` and ``Add`` of :mod:`fnnet.graph` (section 5.4: the
shopping example).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np
import pytest
from _helpers import assert_grads_ok, call_unchanged, init64, normal, rng

import fnnet
from fnnet.graph import Add, Mul
from fnnet.layers.base import TRAIN, Layer, kind
from fnnet.layers.combinators import residual, serial, summary
from fnnet.layers.core import Affine, AffineParams, Flatten, Identity, ReLU, Sigmoid, Softmax, Tanh
from fnnet.numerical import numerical_gradient
from fnnet.tree import tree_astype, tree_leaves, tree_paths
from fnnet.typing import Array, Shape

GRAD_TOL = 1e-6  # float64 central differences of smooth functions agree with backprop to ~1e-9
PROJ_KEY = fnnet.key(777)  # the random projection check_grads differentiates through
# ReLU has a kink at 0: inputs are kept at least this far from it, far more than the step h = 1e-4.
KINK_MARGIN = 0.1


def _away_from_zero(shape: tuple[int, ...], seed: int = 0) -> Array:
    """A float64 batch with |x| in [KINK_MARGIN, 2] and random signs (ReLU's kink avoided)."""
    r = rng(seed)
    x: Array = r.choice([-1.0, 1.0], size=shape) * r.uniform(KINK_MARGIN, 2.0, size=shape)
    return x


def _assert_grads_ok(layer: Layer, params: Any, x: Array) -> None:
    assert_grads_ok(layer, params, x, tol=GRAD_TOL, key=PROJ_KEY)


# --- gradient checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", [(3,), (6,), (2, 3, 4)])
@pytest.mark.parametrize("out", [1, 4])
@pytest.mark.parametrize("n", [1, 3])
def test_affine_gradients(in_shape: Shape, out: int, n: int) -> None:
    layer = Affine(out)
    params, out_shape = init64(layer, in_shape, 1)
    assert out_shape == (out,)
    # a random bias, so the check does not run only at b = 0
    params = params._replace(b=normal((out,), 5))
    _assert_grads_ok(layer, params, normal((n, *in_shape), 0))


@pytest.mark.parametrize("in_shape", [(2, 3, 4), (5, 1), (3,)])
def test_affine_flattens_trailing_dims(in_shape: Shape) -> None:
    n = 4
    layer = Affine(3)
    params, _ = init64(layer, in_shape, 1)
    assert params.w.shape == (math.prod(in_shape), 3)
    x = normal((n, *in_shape), 0)
    y, state, cache = layer.forward(params, None, x)
    assert state is None
    np.testing.assert_allclose(y, x.reshape(n, -1) @ params.w + params.b, rtol=1e-12)
    dout = normal(y.shape, 3)
    dx, grads = layer.backward(params, cache, dout)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, (dout @ params.w.T).reshape(x.shape), rtol=1e-12)
    np.testing.assert_allclose(grads.w, x.reshape(n, -1).T @ dout, rtol=1e-12)
    assert type(grads) is AffineParams


ACTIVATIONS: list[Layer] = [Sigmoid(), Tanh(), Identity(), Softmax()]
ELEMENTWISE_SHAPES: list[Shape] = [(4,), (2, 3), (3, 2, 2)]


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=kind)
@pytest.mark.parametrize("in_shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("n", [1, 3])
def test_activation_gradients(layer: Layer, in_shape: Shape, n: int) -> None:
    params, out_shape = layer.init(fnnet.key(0), in_shape)
    assert params is None and out_shape == in_shape
    # scale 3 reaches the saturating parts of sigmoid / tanh and peaked softmax rows
    _assert_grads_ok(layer, params, 3 * normal((n, *in_shape), 0))


@pytest.mark.parametrize("in_shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("n", [1, 4])
def test_relu_gradients(in_shape: Shape, n: int) -> None:
    x = _away_from_zero((n, *in_shape))
    _assert_grads_ok(ReLU(), None, x)
    y, _, cache = ReLU().forward(None, None, x)
    dx, _ = ReLU().backward(None, cache, np.ones_like(y))
    np.testing.assert_array_equal(dx, (x > 0).astype(np.float64))


@pytest.mark.parametrize("in_shape", [(5,), (2, 3, 4), (1, 2)])
def test_flatten_gradients(in_shape: Shape) -> None:
    params, out_shape = Flatten().init(fnnet.key(0), in_shape)
    assert out_shape == (math.prod(in_shape),)
    x = normal((3, *in_shape), 0)
    y, _, _ = Flatten().forward(params, None, x)
    assert y.shape == (3, *out_shape)
    _assert_grads_ok(Flatten(), params, x)


PIPELINES: dict[str, tuple[Layer, Shape]] = {
    "affine-tanh-affine": (serial(Affine(5), Tanh(), Affine(3)), (4,)),
    "conv-shaped-mlp-softmax": (serial(Flatten(), Affine(4), Sigmoid(), Affine(3), Softmax()), (2, 2, 3)),
    "nested-serial": (serial(serial(Affine(4), Sigmoid()), serial(Affine(4), Tanh()), Affine(2)), (3,)),
    "residual-alone": (residual(serial(Affine(3), Tanh())), (3,)),
    "residual-in-serial": (
        serial(Affine(4), residual(serial(Affine(4), Tanh(), Affine(4))), Sigmoid(), Affine(2)),
        (5,),
    ),
    "relu-mlp": (serial(Affine(6), ReLU(), Affine(3), ReLU(), Affine(2)), (4,)),
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
@pytest.mark.parametrize("n", [2, 5])
def test_pipeline_gradients(name: str, n: int) -> None:
    model, in_shape = PIPELINES[name]
    params, out_shape = init64(model, in_shape, 1)
    x = normal((n, *in_shape), n)
    assert model.apply(params, x).shape == (n, *out_shape)
    _assert_grads_ok(model, params, x)


def test_nested_serial_params_nest() -> None:
    model, in_shape = PIPELINES["nested-serial"]
    params, _ = model.init(fnnet.key(0), in_shape)
    assert tree_paths(params) == ["0/0/w", "0/0/b", "1/0/w", "1/0/b", "2/w", "2/b"]


def test_residual_adds_its_input() -> None:
    inner = serial(Affine(3), Tanh())
    params, _ = init64(residual(inner), (3,), 1)
    assert params[1] is None  # the identity shortcut has no params
    x = normal((4, 3), 0)
    np.testing.assert_allclose(residual(inner).apply(params, x), inner.apply(params[0], x) + x, rtol=1e-12)


def test_residual_rejects_shape_change() -> None:
    with pytest.raises(ValueError, match=r"Residual: inner layer maps \(3,\) to \(5,\)"):
        residual(Affine(5)).init(fnnet.key(0), (3,))


def test_grad_check_catches_a_wrong_backward() -> None:
    """The shared check is not vacuous: a backward rule off by 1% in dw fails it."""

    @attrs.frozen
    class SlightlyWrongAffine(Affine):
        def backward(
            self, params: AffineParams, cache: Any, dout: Array, input_grad: bool = True
        ) -> tuple[Array, AffineParams]:
            dx, g = super().backward(params, cache, dout, input_grad)
            return dx, g._replace(w=g.w * 1.01)

    layer = SlightlyWrongAffine(3)
    params, _ = init64(layer, (4,), 1)
    check = fnnet.check_grads(layer, params, normal((2, 4), 0), key=PROJ_KEY)
    assert check.errors["w"] > 1e-3
    assert check.errors["b"] < GRAD_TOL


@pytest.mark.parametrize("readonly", [False, True], ids=["snapshot", "readonly"])
def test_forward_and_backward_never_write_into_arguments(readonly: bool) -> None:
    model, in_shape = PIPELINES["residual-in-serial"]
    params, _ = init64(model, in_shape, 1)
    x = normal((3, *in_shape), 0)
    y, state, cache = call_unchanged(
        lambda p, xx: model.forward(p, None, xx, TRAIN), params, x, readonly=readonly
    )
    assert state == model.init_state(in_shape) == (None, ((None, None, None), None), None, None)
    dout = normal(y.shape, 9)
    call_unchanged(lambda p, c, d: model.backward(p, c, d), params, cache, dout, readonly=readonly)


# --- errors that name the place ------------------------------------------------------------------


def _mlp32() -> tuple[Layer, Any]:
    model = serial(Affine(4), ReLU(), Affine(3))
    params, _ = model.init(fnnet.key(0), (5,))
    return model, params


@pytest.mark.parametrize("n", [1, 2])
def test_shape_mismatch_in_forward_names_layer(n: int) -> None:
    model, params = _mlp32()
    x = np.ones((n, 6), np.float32)
    with pytest.raises(ValueError) as e:
        model.forward(params, None, x)
    msg = str(e.value)
    assert msg.startswith("layer 0 (Affine): ")
    assert "expected input (N, 5)" in msg
    assert f"got shape ({n}, 6)" in msg


def test_shape_mismatch_deep_in_pipeline_names_that_layer() -> None:
    model, params = _mlp32()
    # params for layer 2 built for 6 inputs, but layer 1 produces 4 features
    wrong_last, _ = Affine(3).init(fnnet.key(1), (6,))
    params = (params[0], params[1], wrong_last)
    with pytest.raises(ValueError) as e:
        model.forward(params, None, np.ones((2, 5), np.float32))
    msg = str(e.value)
    assert msg.startswith("layer 2 (Affine): ")
    assert "expected input (N, 6)" in msg and "got shape (2, 4)" in msg


def test_shape_mismatch_in_nested_serial_names_outer_and_inner_layer() -> None:
    model = serial(Affine(4), serial(Tanh(), Affine(2)))
    params, _ = model.init(fnnet.key(0), (3,))
    inner_wrong, _ = Affine(2).init(fnnet.key(1), (7,))
    params = (params[0], (params[1][0], inner_wrong))
    with pytest.raises(ValueError, match=r"^layer 1 / layer 1 \(Affine\): Affine: .*expected input \(N, 7\)"):
        model.forward(params, None, np.ones((2, 3), np.float32))


@pytest.mark.parametrize(
    ("model", "bad_layer"),
    [
        (serial(Affine(4), ReLU(), Affine(3)), "layer 2 (Affine)"),
        (serial(Affine(3), Sigmoid()), "layer 1 (Sigmoid)"),
        (serial(Affine(3), Softmax()), "layer 1 (Softmax)"),
        (serial(Affine(3), Tanh()), "layer 1 (Tanh)"),
        (serial(Affine(3), ReLU()), "layer 1 (ReLU)"),
        (serial(Affine(3), Identity()), "layer 1 (Identity)"),
        (serial(Affine(3), Flatten()), "layer 1 (Flatten)"),
    ],
    ids=lambda v: v if isinstance(v, str) else "model",
)
def test_wrong_dout_in_backward_names_layer(model: Layer, bad_layer: str) -> None:
    params, out_shape = model.init(fnnet.key(0), (5,))
    y, _, cache = model.forward(params, None, np.ones((2, 5), np.float32))
    assert y.shape == (2, 3)
    kind = bad_layer.split("(")[1].rstrip(")")
    with pytest.raises(ValueError) as e:
        model.backward(params, cache, np.ones((2, 4), np.float32))
    msg = str(e.value)
    assert msg.startswith(f"{bad_layer}: {kind}.backward: ")
    assert "expected dout of shape (2, 3), got (2, 4)" in msg


@pytest.mark.parametrize("index", [0, 2])
def test_dtype_mismatch_names_layer(index: int) -> None:
    model, params = _mlp32()
    x = np.ones((2, 5), np.float64)
    if index == 2:  # layer 0 in float64, layer 2 left in float32
        params = (tree_astype(params[0], np.float64), params[1], params[2])
    with pytest.raises(ValueError) as e:
        model.forward(params, None, x)
    msg = str(e.value)
    assert msg.startswith(f"layer {index} (Affine): ")
    assert "expected input of dtype float32" in msg and "got float64" in msg


def test_activation_rejects_integer_input() -> None:
    model = serial(Tanh(), Flatten())
    with pytest.raises(ValueError, match=r"^layer 0 \(Tanh\): Tanh: expected a floating point input, got dtype int"):
        model.forward((None, None), None, np.ones((2, 3), np.int64))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_affine_bad_size_fails_when_built(bad: Any) -> None:
    with pytest.raises(ValueError, match=rf"^Affine: out must be a positive int, got {bad!r}"):
        Affine(bad)


def test_serial_needs_layers() -> None:
    with pytest.raises(ValueError, match="^serial: needs at least one layer"):
        serial()


@pytest.mark.parametrize("position", [0, 1])
def test_serial_rejects_non_layers(position: int) -> None:
    layers: list[Any] = [ReLU(), ReLU()]
    layers[position] = "relu"
    with pytest.raises(ValueError, match=rf"^serial: argument {position} is not a Layer: 'relu'"):
        serial(*layers)


def test_serial_rejects_params_of_the_wrong_length() -> None:
    model, params = _mlp32()
    with pytest.raises(ValueError, match="Serial: expected params as a tuple of 3 entries, got 2 entries"):
        model.forward(params[:2], None, np.ones((1, 5), np.float32))


def test_serial_rejects_state_of_the_wrong_length() -> None:
    model, params = _mlp32()
    with pytest.raises(ValueError, match="Serial: expected state as a tuple of 3 entries, got 2 entries"):
        model.forward(params, (None, None), np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="Serial: expected state as a tuple of 3 entries, got list"):
        model.forward(params, [None, None, None], np.ones((1, 5), np.float32))


# --- summary ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "in_shape"),
    [
        (serial(Flatten(), Affine(7), ReLU(), Affine(3)), (2, 3, 4)),
        (serial(Affine(10), Tanh(), serial(Affine(5), Sigmoid()), Affine(2), Softmax()), (8,)),
        (serial(Affine(4), residual(serial(Affine(4), ReLU()))), (6,)),
    ],
)
def test_summary_from_init_alone(model: Any, in_shape: Shape) -> None:
    s = summary(model, in_shape)
    params, out_shape = model.init(fnnet.key(3), in_shape)  # another key: counts do not depend on it
    assert len(s.rows) == len(model.layers)
    shape = in_shape
    for i, (row, layer, p) in enumerate(zip(s.rows, model.layers, params)):
        _, shape = layer.init(fnnet.key(0), shape)
        assert (row.index, row.kind, row.out_shape) == (i, kind(layer), shape)
        assert row.params == sum(np.size(a) for a in tree_leaves(p))
    assert s.out_shape == out_shape
    assert s.total_params == sum(np.size(a) for a in tree_leaves(params))
    assert f"total params: {s.total_params:,}" in str(s)


def test_summary_counts_match_the_formula() -> None:
    s = summary(serial(Flatten(), Affine(50), ReLU(), Affine(10)), (1, 28, 28))
    assert [r.params for r in s.rows] == [0, 784 * 50 + 50, 0, 50 * 10 + 10]
    assert [r.out_shape for r in s.rows] == [(784,), (50,), (50,), (10,)]
    assert s.total_params == 784 * 50 + 50 + 50 * 10 + 10


def test_summary_of_a_single_layer() -> None:
    s = summary(Affine(3), (4,))
    assert [(r.kind, r.out_shape, r.params) for r in s.rows] == [("Affine", (3,), 15)]


def test_summary_error_names_layer() -> None:
    with pytest.raises(ValueError, match=r"^layer 1 \(Residual\): Residual: inner layer maps"):
        summary(serial(Affine(4), residual(Affine(2))), (3,))


# --- input_grad ---------------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", [(4,), (2, 3, 4)])
def test_affine_skips_dx_without_input_grad(in_shape: Shape) -> None:
    layer = Affine(3)
    params, _ = layer.init(fnnet.key(0), in_shape)
    x = normal((5, *in_shape), 0, dtype=np.float32)
    dout = normal((5, 3), 1, dtype=np.float32)

    _, _, cache = layer.forward(params, None, x, TRAIN)
    dx_on, g_on = layer.backward(params, cache, dout)
    dx_off, g_off = layer.backward(params, cache, dout, input_grad=False)

    assert dx_on.flags.writeable and np.any(dx_on != 0)
    assert dx_off.shape == x.shape and dx_off.dtype == dout.dtype
    assert not dx_off.flags.writeable
    assert not np.any(dx_off)
    for a, b in zip(g_on, g_off):
        np.testing.assert_array_equal(a, b)


def test_serial_without_input_grad_skips_only_the_first_dx() -> None:
    model, params = _mlp32()
    x = normal((3, 5), 0, dtype=np.float32)
    y, _, cache = model.forward(params, None, x, TRAIN)
    dout = np.ones_like(y)
    dx_on, g_on = model.backward(params, cache, dout)
    dx_off, g_off = model.backward(params, cache, dout, input_grad=False)
    assert not dx_off.flags.writeable and not np.any(dx_off) and np.any(dx_on != 0)
    # layer 0's grads need layer 2's dx: equal grads show that only the first dx was skipped
    for a, b in zip(tree_leaves(g_on), tree_leaves(g_off)):
        np.testing.assert_array_equal(a, b)


# --- immutable records --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "field"),
    [
        (Affine(3), "out"),
        (Affine(3), "w_init"),
        (serial(ReLU()), "layers"),
        (residual(ReLU()), "inner"),
        (ReLU(), "x"),
        (Sigmoid(), "x"),
        (Tanh(), "x"),
        (Identity(), "x"),
        (Softmax(), "x"),
        (Flatten(), "x"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_layers_are_frozen(layer: Layer, field: str) -> None:
    before = repr(layer)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(layer, field, np.zeros(3))  # hyperparameters are fixed; no self.x caches as in the book
    assert repr(layer) == before


def test_affine_evolve_makes_a_new_record() -> None:
    a = Affine(3)
    b = attrs.evolve(a, out=5)
    assert (a.out, b.out) == (3, 5)
    with pytest.raises(ValueError, match="Affine: out must be a positive int"):
        attrs.evolve(a, out=0)


def test_params_are_immutable() -> None:
    params, _ = Affine(2).init(fnnet.key(0), (3,))
    with pytest.raises(AttributeError):
        params.w = np.zeros((3, 2))  # type: ignore[misc]


# --- computational-graph nodes (book 5.4) -------------------------------------------------------


def test_shopping_example() -> None:
    apple, n_apple, orange, n_orange, tax = 100.0, 2.0, 150.0, 3.0, 1.1
    mul_apple, mul_orange, add_fruit, mul_tax = Mul(), Mul(), Add(), Mul()

    apple_price, c_apple = mul_apple.forward(apple, n_apple)
    orange_price, c_orange = mul_orange.forward(orange, n_orange)
    total, c_add = add_fruit.forward(apple_price, orange_price)
    price, c_tax = mul_tax.forward(total, tax)
    assert float(price) == pytest.approx(715.0)

    d_total, d_tax = mul_tax.backward(c_tax, 1.0)
    d_apple_price, d_orange_price = add_fruit.backward(c_add, d_total)
    d_apple, d_n_apple = mul_apple.backward(c_apple, d_apple_price)
    d_orange, d_n_orange = mul_orange.backward(c_orange, d_orange_price)

    # price = (apple * n_apple + orange * n_orange) * tax
    expected = {
        "apple": n_apple * tax,
        "n_apple": apple * tax,
        "orange": n_orange * tax,
        "n_orange": orange * tax,
        "tax": apple * n_apple + orange * n_orange,
    }
    got = {"apple": d_apple, "n_apple": d_n_apple, "orange": d_orange, "n_orange": d_n_orange, "tax": d_tax}
    for name, value in expected.items():
        assert float(got[name]) == pytest.approx(value, rel=1e-12), name


BROADCAST_SHAPES = [((3, 4), (4,)), ((3, 4), (1, 4)), ((3, 1), (1, 4)), ((2, 3, 4), ()), ((2, 3, 4), (3, 1))]


@pytest.mark.parametrize(("x_shape", "y_shape"), BROADCAST_SHAPES)
@pytest.mark.parametrize("node", [Mul(), Add()], ids=["Mul", "Add"])
def test_node_broadcasting_gradients(node: Any, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> None:
    x, y = normal(x_shape, 1), normal(y_shape, 2)
    out, cache = call_unchanged(node.forward, x, y, readonly=True)
    assert out.shape == np.broadcast_shapes(x_shape, y_shape)
    r = normal(out.shape, 3)
    dx, dy = call_unchanged(node.backward, cache, r, readonly=True)
    assert dx.shape == x_shape and dy.shape == y_shape

    def project(a: Array, b: Array) -> float:
        return float(np.sum(node.forward(a, b)[0] * r))

    np.testing.assert_allclose(dx, numerical_gradient(lambda a: project(a, y), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dy, numerical_gradient(lambda b: project(x, b), y), rtol=1e-6, atol=1e-8)


def test_graph_nodes_are_not_layers_and_live_in_fnnet_graph() -> None:
    """Two inputs and no parameters: the nodes teach section 5.4 and are not exported as layers."""
    assert fnnet.graph.Mul is Mul and fnnet.graph.Add is Add
    assert not issubclass(Mul, Layer) and not issubclass(Add, Layer)
    for namespace in (fnnet, fnnet.layers):
        assert not hasattr(namespace, "Mul") and not hasattr(namespace, "Add")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Mul().x = 1.0  # type: ignore[attr-defined]

