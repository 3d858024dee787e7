"""Numerical differentiation, gradient descent and the shared gradient-check helper."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import numpy as np
import pytest
from _helpers import assert_bit_identical, call_unchanged, init64, read_only, rng

from fnnet.layers.base import EVAL, TRAIN, Ctx, Layer
from fnnet.layers.combinators import serial
from fnnet.layers.core import Affine, Sigmoid, Tanh
from fnnet.layers.dropout import Dropout
from fnnet.layers.norm import BatchNorm
from fnnet.losses import softmax_cross_entropy
from fnnet.numerical import check_grads, gradient_descent, numerical_diff, numerical_gradient
from fnnet.random import Key, key
from fnnet.tree import tree_astype, tree_leaves, tree_map, tree_structure
from fnnet.typing import Array, Shape, Tree

SEED = 4  # the first salt of every rng() draw in this module


# --- numerical_diff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("f", "df"),
    [
        (lambda x: 0.01 * x**2 + 0.1 * x, lambda x: 0.02 * x + 0.1),  # the book's function_1
        (math.sin, math.cos),
        (math.exp, math.exp),
        (lambda x: x**3, lambda x: 3 * x**2),
    ],
    ids=["book", "sin", "exp", "cube"],
)
@pytest.mark.parametrize("x", [-2.0, 0.5, 5.0, 10.0])
def test_numerical_diff_known_derivatives(f: Callable[[float], float], df: Callable[[float], float], x: float) -> None:
    # central differences are second order: error ~ h² |f'''| / 6 plus round-off ~ eps |f| / h
    assert numerical_diff(f, x) == pytest.approx(df(x), rel=1e-6, abs=1e-9)


def test_numerical_diff_step_size() -> None:
    f = math.exp
    coarse = abs(numerical_diff(f, 1.0, h=1e-1) - math.e)
    fine = abs(numerical_diff(f, 1.0, h=1e-2) - math.e)
    assert fine < coarse / 50  # error shrinks like h²


# --- numerical_gradient on trees -----------------------------------------------------------------


class Pair(NamedTuple):
    w: Array
    b: Array


def _f(tree: Tree) -> float:
    """Sum over leaves of Σ sin(leaf) * leaf² * c, with c the leaf's position (1, 2, ...)."""
    return float(sum((i + 1) * np.sum(np.sin(a) * a**2) for i, a in enumerate(tree_leaves(tree))))


def _df(tree: Tree) -> Tree:
    leaves = tree_leaves(tree)
    index = {id(a): i for i, a in enumerate(leaves)}
    return tree_map(lambda a: (index[id(a)] + 1) * (np.cos(a) * a**2 + 2 * a * np.sin(a)), tree)


def _trees() -> list[Tree]:
    r = rng(SEED, 1)
    return [
        r.standard_normal((3, 2)),
        (r.standard_normal(4), r.standard_normal((2, 3))),
        {"w": r.standard_normal((2, 2)), "b": r.standard_normal(2)},
        Pair(r.standard_normal((3, 2)), r.standard_normal(2)),
        (Pair(r.standard_normal((2, 2)), r.standard_normal(2)), None, {"s": np.array(0.7), "t": [r.standard_normal(3)]}),
    ]


@pytest.mark.parametrize("tree", _trees(), ids=["array", "tuple", "dict", "namedtuple", "nested"])
def test_numerical_gradient_on_trees(tree: Tree) -> None:
    num = numerical_gradient(_f, tree)
    assert tree_structure(num) == tree_structure(tree)
    for g, a, exact in zip(tree_leaves(num), tree_leaves(tree), tree_leaves(_df(tree))):
        assert np.shape(g) == a.shape and np.asarray(g).dtype == a.dtype
        np.testing.assert_allclose(g, exact, rtol=1e-7, atol=1e-8)


def test_numerical_gradient_of_the_books_function_2() -> None:
    def function_2(x: Array) -> float:
        return float(x[0] ** 2 + x[1] ** 2)

    for point in ([3.0, 4.0], [0.0, 2.0], [3.0, 0.0]):
        x = np.array(point)
        np.testing.assert_allclose(numerical_gradient(function_2, x), 2 * x, atol=1e-8)


def test_numerical_gradient_keeps_float32() -> None:
    x = rng(SEED, 2).standard_normal((2, 3)).astype(np.float32)
    g = numerical_gradient(lambda a: float(np.sum(a.astype(np.float64) ** 2)), x, h=1e-2)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * x, rtol=1e-3, atol=1e-3)


def test_numerical_gradient_rejects_integer_leaves() -> None:
    with pytest.raises(ValueError, match=r"numerical_gradient: leaf 1 has dtype int64; expected floating point"):
        numerical_gradient(_f, (np.zeros(2), np.zeros(2, dtype=np.int64)))


@pytest.mark.parametrize("tree", _trees(), ids=["array", "tuple", "dict", "namedtuple", "nested"])
def test_numerical_gradient_never_writes_into_its_argument(tree: Tree) -> None:
    originals = [a for a in tree_leaves(tree) if isinstance(a, np.ndarray)]
    saved = [a.copy() for a in originals]
    calls = 0

    def watching(t: Tree) -> float:
        nonlocal calls
        calls += 1
        for a, s in zip(originals, saved):  # checked while the gradient is being taken
            assert a.tobytes() == s.tobytes(), "numerical_gradient wrote into the caller's array"
        return _f(t)

    call_unchanged(lambda t: numerical_gradient(watching, t), tree)
    assert calls == 2 * sum(a.size for a in originals)


def test_numerical_gradient_leaves_arguments_intact_when_f_raises() -> None:
    tree = _trees()[4]
    saved = read_only(tree)  # a copy
    calls = 0

    def failing(t: Tree) -> float:
        nonlocal calls
        calls += 1
        if calls == 7:  # in the middle of a leaf, with an element perturbed
            raise RuntimeError("boom")
        return _f(t)

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(failing, tree)
    assert_bit_identical(tree, saved)


def test_numerical_gradient_accepts_read_only_arrays() -> None:
    x = rng(SEED, 3).standard_normal((2, 3))
    x.flags.writeable = False
    np.testing.assert_allclose(numerical_gradient(lambda a: float(np.sum(a**2)), x), 2 * x, atol=1e-8)


# --- gradient descent ----------------------------------------------------------------------------


@pytest.mark.parametrize(("lr", "step_num"), [(0.1, 100), (0.01, 1000), (0.3, 20)])
def test_gradient_descent_on_a_bowl(lr: float, step_num: int) -> None:
    def function_2(x: Array) -> float:
        return float(x[0] ** 2 + x[1] ** 2)

    init = np.array([-3.0, 4.0])
    before = init.copy()
    x, path = gradient_descent(function_2, init, lr=lr, step_num=step_num)
    assert path.shape == (step_num + 1, 2)
    np.testing.assert_array_equal(path[0], before)
    np.testing.assert_array_equal(path[-1], x)
    np.testing.assert_array_equal(init, before)
    # each step scales x by (1 - 2 lr) exactly (the numerical gradient of a quadratic is exact)
    np.testing.assert_allclose(x, before * (1 - 2 * lr) ** step_num, atol=1e-8)
    assert np.linalg.norm(x) < 1e-3 * np.linalg.norm(before)
    norms = np.linalg.norm(path, axis=1)
    assert (np.diff(norms) < 0).all()


def test_gradient_descent_with_too_large_a_rate_diverges() -> None:
    x, path = gradient_descent(lambda v: float(np.sum(v**2)), np.array([-3.0, 4.0]), lr=1.5, step_num=10)
    assert np.linalg.norm(x) > 100 * 5.0  # |1 - 2 lr| = 2 per step
    assert path.shape == (11, 2)


# --- check_grads ---------------------------------------------------------------------------------


class ScaleParams(NamedTuple):
    w: Array


@attrs.frozen
class Scale(Layer):
    """``y = x * w`` with ``w`` of the input's shape; backward scaled by configurable (wrong) factors."""

    dx_factor: float = 1.0
    dw_factor: float = 1.0
    drop_grads: bool = False

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def init(self, key: Key, in_shape: Shape) -> tuple[ScaleParams, Shape]:
        return ScaleParams(key.generator().standard_normal(in_shape)), in_shape

    def forward(self, params: ScaleParams, state: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any, Array]:
        return x * params.w, state, x

    def backward(self, params: ScaleParams, cache: Array, dout: Array, input_grad: bool = True) -> tuple[Array, Any]:
        dw = self.dw_factor * (dout * cache).sum(axis=0)
        return self.dx_factor * dout * params.w, (None if self.drop_grads else ScaleParams(dw))


def _init64(layer: Layer, in_shape: Shape, batch: int = 3, seed: int = 0) -> tuple[Tree, Array]:
    """Float64 params from ``key(seed)`` and a float64 batch of ``batch`` inputs."""
    params, _ = init64(layer, in_shape, seed)
    return params, rng(SEED, 5, seed).standard_normal((batch, *in_shape))


def test_check_grads_correct_layers_have_tiny_errors() -> None:
    params, x = _init64(Scale(), (4,))
    report = check_grads(Scale(), params, x)
    assert set(report.errors) == {"w", "x"}
    assert report.max_error < 1e-7

    params, x = _init64(Affine(3), (5,))
    report = check_grads(Affine(3), params, x)
    assert set(report.errors) == {"w", "b", "x"}
    assert report.max_error < 1e-7


def test_check_grads_through_a_pipeline_and_a_loss() -> None:
    model = serial(Affine(6), Tanh(), Affine(4), Sigmoid(), Affine(3))
    params, x = _init64(model, (2, 3), batch=5)
    t = rng(SEED, 6).integers(0, 3, size=5)
    report = check_grads(model, params, x, loss=softmax_cross_entropy, t=t, ctx=TRAIN)
    assert set(report.errors) == {"0/w", "0/b", "2/w", "2/b", "4/w", "4/b", "x"}
    assert report.max_error < 1e-6
    assert "0/w" in str(report)


@pytest.mark.parametrize(
    ("bug", "wrong"),
    [(Scale(dw_factor=0.5), "w"), (Scale(dx_factor=-1.0), "x"), (Scale(dx_factor=1.01), "x")],
    ids=["half-dw", "sign-dx", "one-percent-dx"],
)
def test_check_grads_flags_a_wrong_backward(bug: Scale, wrong: str) -> None:
    params, x = _init64(bug, (4,))
    report = check_grads(bug, params, x)
    assert report.errors[wrong] > 5e-3
    assert report.max_error == report.errors[wrong]
    right = ({"w", "x"} - {wrong}).pop()
    assert report.errors[right] < 1e-7


def test_check_grads_flags_missing_parameter_gradients() -> None:
    bug = Scale(drop_grads=True)
    params, x = _init64(bug, (4,))
    with pytest.raises(ValueError, match=r"Scale.*grads"):
        check_grads(bug, params, x)


@attrs.frozen
class Drift(Scale):
    """``y = x * w + state``, returning ``state + 1`` as its new state: a forward pass that changes
    the state, so reusing the returned state would shift every evaluation."""

    def init_state(self, in_shape: Shape) -> Array:
        return np.zeros(in_shape)

    def forward(self, params: ScaleParams, state: Any, x: Array, ctx: Ctx = EVAL) -> tuple[Array, Any, Array]:
        return x * params.w + state, state + 1.0, x


def test_check_grads_gives_every_evaluation_the_same_state() -> None:
    layer = Drift()
    params, x = _init64(layer, (4,))
    state = rng(SEED, 7).standard_normal(4)
    report = call_unchanged(lambda p, xx, st: check_grads(layer, p, xx, state=st), params, x, state, readonly=True)
    assert set(report.errors) == {"w", "x"}
    assert report.max_error < 1e-7


def test_check_grads_in_training_mode_with_state_and_key() -> None:
    """BatchNorm through batch statistics and Dropout with one fixed mask, state and key given."""
    model = serial(Affine(5), Tanh(), BatchNorm(), Dropout(0.3), Affine(2))
    params, x = _init64(model, (3,), batch=6)
    state = tree_astype(model.init_state((3,)), np.float64)
    report = check_grads(model, params, x, state=state, ctx=Ctx(train=True, key=key(8)))
    assert set(report.errors) == {"0/w", "0/b", "2/gamma", "2/beta", "4/w", "4/b", "x"}
    assert report.max_error < 1e-6, str(report)
    with pytest.raises(ValueError, match=r"layer 2 \(BatchNorm\): .*state is None"):
        check_grads(model, params, x)  # evaluation without running statistics
