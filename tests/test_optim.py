"""Optimizers (section 6.1): update formulas, convergence, schedules, masks, purity, checkpoints."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import numpy as np
import pytest
from _helpers import call_unchanged, read_only
from hypothesis import given, settings
from hypothesis import strategies as st

from fnnet import optim
from fnnet.numerical import numerical_gradient
from fnnet.optim import GradientTransformation
from fnnet.tree import tree_flatten, tree_leaves, tree_map, tree_structure, tree_unflatten

Array = np.ndarray[Any, Any]


class AffineParams(NamedTuple):
    """A dense layer's parameters, as a layer's params record would hold them."""

    w: Array
    b: Array


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def make_params(shapes: Sequence[tuple[int, int]], seed: int, dtype: Any = np.float64) -> Any:
    """A pipeline-like tree: (AffineParams, None, AffineParams, ...) with a parameter-free layer."""
    rng = np.random.default_rng(seed)
    layers: list[Any] = []
    for i, (n_in, n_out) in enumerate(shapes):
        if i:
            layers.append(None)
        layers.append(AffineParams(rng.standard_normal((n_in, n_out)).astype(dtype), rng.standard_normal(n_out).astype(dtype)))
    return tuple(layers)


def run(opt: GradientTransformation, grad: Callable[[Array], Array], x0: Array, n: int) -> list[Array]:
    """The iterates x_0, ..., x_n of ``opt`` on an array parameter."""
    x, state = x0, opt.init(x0)
    path = [x]
    for _ in range(n):
        x, state = optim.apply_optimizer(opt, grad(x), state, x)
        path.append(x)
    return path


# --------------------------------------------------------------------------------------------
# Single steps against the update formulas (two steps so that the state is exercised)
# --------------------------------------------------------------------------------------------

LR, MU, RHO, B1, B2, WD = 0.05, 0.8, 0.9, 0.85, 0.99, 0.1


def ref_sgd(p: Array, gs: list[Array], decay: bool) -> Array:
    for g in gs:
        p = p - LR * g
    return p


def ref_momentum(p: Array, gs: list[Array], decay: bool) -> Array:
    v = np.zeros_like(p)
    for g in gs:
        v = MU * v - LR * g
        p = p + v
    return p


def ref_nesterov(p: Array, gs: list[Array], decay: bool) -> Array:
    v = np.zeros_like(p)
    for g in gs:
        p = p + MU * MU * v - (1 + MU) * LR * g  # uses the velocity before this step's update
        v = MU * v - LR * g
    return p


def ref_adagrad(p: Array, gs: list[Array], decay: bool) -> Array:
    h = np.zeros_like(p)
    for g in gs:
        h = h + g * g
        p = p - LR * g / (np.sqrt(h) + optim.ADAGRAD_EPS)
    return p


def ref_rmsprop(p: Array, gs: list[Array], decay: bool) -> Array:
    h = np.zeros_like(p)
    for g in gs:
        h = RHO * h + (1 - RHO) * g * g
        p = p - LR * g / (np.sqrt(h) + optim.RMSPROP_EPS)
    return p


def ref_adam(p: Array, gs: list[Array], decay: bool) -> Array:
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(gs, start=1):
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        lr_t = LR * math.sqrt(1 - B2**t) / (1 - B1**t)
        p = p - lr_t * m / (np.sqrt(v) + optim.ADAM_EPS) - (LR * WD * p if decay else 0.0)
    return p


OPTIMIZERS: dict[str, tuple[Callable[[], GradientTransformation], Callable[[Array, list[Array], bool], Array]]] = {
    "sgd": (lambda: optim.sgd(LR), ref_sgd),
    "momentum": (lambda: optim.momentum(LR, MU), ref_momentum),
    "nesterov": (lambda: optim.nesterov(LR, MU), ref_nesterov),
    "adagrad": (lambda: optim.adagrad(LR), ref_adagrad),
    "rmsprop": (lambda: optim.rmsprop(LR, RHO), ref_rmsprop),
    "adam": (lambda: optim.adam(LR, B1, B2), ref_adam),
    "adamw": (lambda: optim.adamw(LR, WD, b1=B1, b2=B2), ref_adam),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("shapes", [[(3, 2)], [(4, 3), (3, 1)]])
def test_two_steps_match_the_update_formula(name: str, shapes: list[tuple[int, int]]) -> None:
    make, ref = OPTIMIZERS[name]
    params = make_params(shapes, seed=1)
    g_seq = [make_params(shapes, seed=10 + k) for k in range(2)]
    opt = make()
    state = opt.init(params)
    p = params
    for g in g_seq:
        p, state = optim.apply_optimizer(opt, g, state, p)
    assert tree_structure(p) == tree_structure(params)
    for leaf_path, (p0, p2, *gl) in enumerate(zip(*(tree_leaves(t) for t in [params, p, *g_seq]))):
        decay = name == "adamw" and p0.ndim >= 2  # AdamW's default mask: weights, not biases
        np.testing.assert_allclose(p2, ref(p0, list(gl), decay), rtol=1e-12, atol=1e-15, err_msg=str(leaf_path))
        assert p2.dtype == p0.dtype


def test_nesterov_is_the_look_ahead_method_at_the_shifted_point() -> None:
    # Nesterov's method: v <- mu v - lr grad(theta + mu v); theta <- theta + v. The book's form
    # tracks W = theta + mu v and needs the gradient at W only.
    a = np.array([0.5, 3.0, 20.0])
    lr, mu = 0.04, 0.9
    theta, v = np.array([1.0, -2.0, 0.5]), np.zeros(3)
    path = run(optim.nesterov(lr, mu), lambda w: a * w, theta.copy(), 25)
    for k in range(25):
        v = mu * v - lr * a * (theta + mu * v)
        theta = theta + v
        np.testing.assert_allclose(path[k + 1], theta + mu * v, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------
# The book's f(x, y) = x²/20 + y² from (-7, 2), 30 steps with the book's learning rates
# --------------------------------------------------------------------------------------------

BOOK_A = np.array([0.1, 2.0])  # the Hessian diagonal of x²/20 + y²
BOOK_X0 = np.array([-7.0, 2.0])
BOOK_STEPS = 30


def book_grad(p: Array) -> Array:
    return BOOK_A * p


def linear_prediction(m: Callable[[float], Array], x0: Array, n: int) -> Array:
    """x_n for a method that is linear per coordinate: (x, v) <- M(a) (x, v), v_0 = 0."""
    return np.array([(np.linalg.matrix_power(m(float(a)), n) @ np.array([x, 0.0]))[0] for a, x in zip(BOOK_A, x0)])


def test_book_sgd_follows_the_closed_form() -> None:
    lr = 0.95
    x = run(optim.sgd(lr), book_grad, BOOK_X0, BOOK_STEPS)[-1]
    # each coordinate is multiplied by (1 - lr a) per step
    np.testing.assert_allclose(x, BOOK_X0 * (1 - lr * BOOK_A) ** BOOK_STEPS, rtol=1e-12)
    # |1 - lr a| < 1 for both coordinates, so the distance shrinks at least by the larger factor
    rate = np.abs(1 - lr * BOOK_A).max()
    assert np.linalg.norm(x) <= rate**BOOK_STEPS * np.linalg.norm(BOOK_X0) * (1 + 1e-12)


def test_book_momentum_follows_the_linear_dynamics() -> None:
    lr, mu = 0.1, 0.9
    x = run(optim.momentum(lr, mu), book_grad, BOOK_X0, BOOK_STEPS)[-1]
    # v' = mu v - lr a x ; x' = x + v' = (1 - lr a) x + mu v
    expect = linear_prediction(lambda a: np.array([[1 - lr * a, mu], [-lr * a, mu]]), BOOK_X0, BOOK_STEPS)
    np.testing.assert_allclose(x, expect, rtol=1e-10)
    # det M = mu for every a, and the eigenvalues are complex here (lr a < (1 - sqrt(mu))² fails
    # for both), so both coordinates spiral in at the rate sqrt(mu) per step
    for a in BOOK_A:
        assert np.abs(np.linalg.eigvals(np.array([[1 - lr * a, mu], [-lr * a, mu]]))).max() == pytest.approx(
            math.sqrt(mu)
        )


def test_book_adagrad_is_within_its_contraction_bound() -> None:
    lr = 1.5
    x = run(optim.adagrad(lr), book_grad, BOOK_X0, BOOK_STEPS)[-1]
    # Per coordinate x <- x (1 - lr a / (sqrt(h) + eps)) with h = Σ (a x_j)². As lr <= |x0|, the
    # factor lies in [0, 1) at the first step (sqrt(h) = a|x0|) and h only grows, so |x| decreases
    # and sqrt(h_k) <= a |x0| sqrt(k): the k-th factor is at most 1 - lr a / (a |x0| sqrt(k) + eps).
    for a, x0, xn in zip(BOOK_A, BOOK_X0, x):
        assert lr <= abs(x0)
        k = np.arange(1, BOOK_STEPS + 1)
        bound = abs(x0) * np.prod(1 - lr * a / (a * abs(x0) * np.sqrt(k) + optim.ADAGRAD_EPS))
        assert abs(xn) <= bound
    assert np.linalg.norm(x) < 0.2 * np.linalg.norm(BOOK_X0)


def test_book_adam_ends_within_a_few_steps_of_the_minimum() -> None:
    lr = 0.3
    path = run(optim.adam(lr), book_grad, BOOK_X0, BOOK_STEPS)
    # Adam's step is scale-free, about lr per coordinate: x needs 7 / 0.3 ≈ 23 steps to arrive,
    # and then the iterate oscillates around the minimum with an amplitude of order lr.
    assert np.all(np.isfinite(path[-1]))
    assert np.abs(path[-1]).max() <= 2 * lr
    steps = np.abs(np.diff(np.array(path), axis=0))
    assert steps.max() <= 3 * lr


# --------------------------------------------------------------------------------------------
# Convergence on an ill-conditioned quadratic 0.5 xᵀAx, A = diag(1, 10, 100)
# --------------------------------------------------------------------------------------------

QA = np.array([1.0, 10.0, 100.0])
QX0 = np.ones(3)
QN = 300


def q_grad(x: Array) -> Array:
    return QA * x


def q_linear(m: Callable[[float], Array]) -> Array:
    return np.array([(np.linalg.matrix_power(m(float(a)), QN) @ np.array([x, 0.0]))[0] for a, x in zip(QA, QX0)])


def test_quadratic_sgd_at_the_optimal_rate() -> None:
    lo, hi = QA.min(), QA.max()
    lr = 2 / (lo + hi)
    x = run(optim.sgd(lr), q_grad, QX0, QN)[-1]
    rate = (hi - lo) / (hi + lo)  # max |1 - lr a| over the spectrum
    assert np.abs(x).max() <= rate**QN * (1 + 1e-9)
    np.testing.assert_allclose(x, QX0 * (1 - lr * QA) ** QN, rtol=1e-9)


def test_quadratic_heavy_ball_with_polyak_parameters() -> None:
    sl, sh = math.sqrt(QA.min()), math.sqrt(QA.max())
    lr, mu = 4 / (sl + sh) ** 2, ((sh - sl) / (sh + sl)) ** 2
    x = run(optim.momentum(lr, mu), q_grad, QX0, QN)[-1]
    np.testing.assert_allclose(x, q_linear(lambda a: np.array([[1 - lr * a, mu], [-lr * a, mu]])), rtol=1e-7)
    # all eigenvalues have modulus sqrt(mu) (double at the ends of the spectrum: a factor <= 2 QN)
    assert np.abs(x).max() <= 2 * QN * math.sqrt(mu) ** (QN - 1)


def test_quadratic_nesterov() -> None:
    kappa = QA.max() / QA.min()
    lr, mu = 1 / QA.max(), (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    x = run(optim.nesterov(lr, mu), q_grad, QX0, QN)[-1]
    # W' = W + mu² v - (1 + mu) lr a W ; v' = mu v - lr a W

    def m(a: float) -> Array:
        return np.array([[1 - (1 + mu) * lr * a, mu * mu], [-lr * a, mu]])

    np.testing.assert_allclose(x, q_linear(m), rtol=1e-7, atol=1e-300)
    rho = max(np.abs(np.linalg.eigvals(m(float(a)))).max() for a in QA)
    assert rho < 1
    assert np.abs(x).max() <= 2 * QN * rho ** (QN - 1)


def test_quadratic_adagrad() -> None:
    lr = 0.9  # <= |x0| = 1: the contraction bound of test_book_adagrad_is_within_its_contraction_bound
    x = run(optim.adagrad(lr), q_grad, QX0, QN)[-1]
    k = np.arange(1, QN + 1)
    for a, xn in zip(QA, x):
        assert abs(xn) <= np.prod(1 - lr * a / (a * np.sqrt(k) + optim.ADAGRAD_EPS))
    assert np.abs(x).max() < 1e-10


@pytest.mark.parametrize(
    "make",
    [
        lambda s: optim.rmsprop(s),
        lambda s: optim.adam(s),
        lambda s: optim.adamw(s, 0.01, mask=lambda p: True),
    ],
    ids=["rmsprop", "adam", "adamw"],
)
def test_quadratic_adaptive_methods_with_cosine_decay(make: Callable[[optim.Schedule], GradientTransformation]) -> None:
    sched = optim.CosineDecay(0.1, QN)
    x = run(make(sched), q_grad, QX0, QN)[-1]
    # their steps are about lr_k per coordinate; once lr_k has decayed below its value at 90 % of
    # the run the iterate settles within such a step of the minimum (AdamW's decay pulls to 0 too)
    assert np.abs(x).max() <= sched(int(0.9 * QN))


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def test_schedule_values() -> None:
    s = optim.StaircaseDecay(0.1, 0.5, 10)
    assert [s(k) for k in (0, 9, 10, 19, 20, 35)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.0125])
    e = optim.ExponentialDecay(0.1, 0.5, 10)
    assert [e(0), e(5), e(10), e(30)] == pytest.approx([0.1, 0.1 / math.sqrt(2), 0.05, 0.0125])
    c = optim.CosineDecay(0.1, 100, final=0.01)
    assert [c(0), c(50), c(100), c(150)] == pytest.approx([0.1, 0.055, 0.01, 0.01])
    assert c(25) == pytest.approx(0.01 + 0.09 * (1 + math.sqrt(0.5)) / 2)
    w = optim.WarmupCosine(0.1, 10, 110)
    assert [w(0), w(4), w(9)] == pytest.approx([0.01, 0.05, 0.1])  # lr (k + 1) / warmup
    assert [w(10), w(60), w(110), w(500)] == pytest.approx([0.1, 0.05, 0.0, 0.0])
    assert optim.Constant(0.3)(12345) == 0.3
    assert optim.WarmupCosine(0.2, 0, 10)(0) == pytest.approx(0.2)


@pytest.mark.parametrize(
    "sched",
    [
        optim.Constant(0.1),
        optim.StaircaseDecay(0.1, 0.3, 7),
        optim.ExponentialDecay(0.1, 0.9, 5),
        optim.CosineDecay(0.1, 50, 0.001),
        optim.WarmupCosine(0.1, 5, 50, 0.001),
    ],
    ids=repr,
)
def test_schedules_are_frozen_hashable_and_never_increase_after_warmup(sched: Any) -> None:
    assert hash(sched) == hash(attrs.evolve(sched)) and sched == attrs.evolve(sched)
    assert type(sched).__name__ in repr(sched)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        sched.lr = 1.0
    start = getattr(sched, "warmup_steps", 0)
    vals = [sched(k) for k in range(start, 80)]
    assert all(b <= a + 1e-15 for a, b in zip(vals, vals[1:]))
    assert all(v > 0 for v in vals)


@pytest.mark.parametrize(
    "sched",
    [
        optim.Constant(0.1),
        optim.StaircaseDecay(0.1, 0.3, 7),
        optim.ExponentialDecay(0.1, 0.9, 5),
        optim.CosineDecay(0.1, 50, 0.001),
        optim.WarmupCosine(0.1, 5, 50, 0.001),
    ],
    ids=repr,
)
def test_schedule_repr_is_the_expression_that_builds_it(sched: Any) -> None:
    rebuilt = eval(repr(sched), {name: getattr(optim, name) for name in optim.__all__})
    assert rebuilt == sched and type(rebuilt) is type(sched)
    assert [rebuilt(k) for k in range(0, 60, 7)] == [sched(k) for k in range(0, 60, 7)]


def test_schedule_drives_updates_and_current_lr_follows() -> None:
    sched = optim.StaircaseDecay(0.4, 0.5, 2)
    opt = optim.chain(optim.clip_by_global_norm(100.0), optim.sgd(sched))
    p = (np.zeros(3), None)
    state = opt.init(p)
    for k in range(7):
        assert optim.current_lr(state) == pytest.approx(sched(k))
        new_p, state = optim.apply_optimizer(opt, (np.ones(3), None), state, p)
        np.testing.assert_allclose(new_p[0] - p[0], -sched(k))  # W <- W - lr_k g with g = 1
        p = new_p
    assert optim.current_lr(optim.adam(0.003).init(p)) == pytest.approx(0.003)
    with pytest.raises(ValueError, match="no learning rate"):
        optim.current_lr(optim.clip_by_global_norm(1.0).init(p))


# --------------------------------------------------------------------------------------------
# Clipping, decoupled decay, coupled L2
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", [[(2, 3)], [(5, 4), (4, 2)]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ratio", [0.25, 0.99, 1.01, 3.0])
def test_clip_by_global_norm(shapes: list[tuple[int, int]], dtype: Any, ratio: float) -> None:
    g = make_params(shapes, seed=3, dtype=dtype)
    norm = math.sqrt(sum(float(np.sum(np.asarray(leaf, np.float64) ** 2)) for leaf in tree_leaves(g)))
    clip = optim.clip_by_global_norm(ratio * norm)
    u, _ = clip.update(g, clip.init(g))
    scale = min(ratio, 1.0)  # u = g * max_norm / |g| when |g| > max_norm, else g unchanged
    for a, b in zip(tree_leaves(u), tree_leaves(g)):
        np.testing.assert_allclose(a, b * scale, rtol=1e-6)
        assert a.dtype == dtype


def test_decoupled_decay_skips_biases_by_default_and_follows_masks() -> None:
    params = make_params([(3, 2), (2, 2)], seed=4)
    zero = tree_map(np.zeros_like, params)
    dec = optim.add_decayed_weights(0.1)
    u, _ = dec.update(zero, dec.init(params), params)
    for ul, pl in zip(tree_leaves(u), tree_leaves(params)):
        np.testing.assert_array_equal(ul, 0.1 * pl if pl.ndim >= 2 else 0.0)
    # an explicit mask tree: only the last layer's bias
    mask = tree_map(lambda p: False, params)
    mask = mask[:-1] + (AffineParams(np.array(False), np.array(True)),)
    u, _ = optim.add_decayed_weights(0.1, mask).update(zero, optim.EmptyState(), params)
    np.testing.assert_array_equal(u[-1].b, 0.1 * params[-1].b)
    assert all(not np.any(leaf) for leaf in tree_leaves(u)[:-1])
    with pytest.raises(ValueError, match="params"):
        dec.update(zero, dec.init(params))


def test_adamw_shrinks_weights_not_biases_without_gradient() -> None:
    lr, wd = 0.01, 0.5
    params = make_params([(3, 4)], seed=5)
    opt = optim.adamw(lr, wd)
    p1, _ = optim.apply_optimizer(opt, tree_map(np.zeros_like, params), opt.init(params), params)
    np.testing.assert_allclose(p1[0].w, (1 - lr * wd) * params[0].w, rtol=1e-14)
    np.testing.assert_array_equal(p1[0].b, params[0].b)


@pytest.mark.parametrize("shapes", [[(2, 3)], [(3, 3), (3, 2)]])
@pytest.mark.parametrize("mask_kind", ["default", "tree", "callable"])
def test_l2_penalty_matches_numerical_gradient(shapes: list[tuple[int, int]], mask_kind: str) -> None:
    lam = 0.3
    params = make_params(shapes, seed=6)
    mask: Any = None
    if mask_kind == "tree":
        mask = tree_map(lambda p: p.ndim == 1, params)  # the opposite of the default: biases only
    elif mask_kind == "callable":
        mask = lambda p: tree_map(lambda leaf: True, p)  # noqa: E731
    loss, grads = optim.l2_penalty(params, lam, mask)
    chosen = optim.default_decay_mask(params) if mask is None else (mask(params) if callable(mask) else mask)
    expect = 0.5 * lam * sum(float(np.sum(p**2)) for p, m in zip(tree_leaves(params), tree_leaves(chosen)) if m)
    assert loss == pytest.approx(expect, rel=1e-12)
    num = numerical_gradient(lambda p: optim.l2_penalty(p, lam, mask)[0], params)
    assert tree_structure(grads) == tree_structure(params)
    for g, n, m in zip(tree_leaves(grads), tree_leaves(num), tree_leaves(chosen)):
        np.testing.assert_allclose(g, n, rtol=1e-7, atol=1e-9)
        if not m:
            assert not np.any(g)


def test_default_decay_mask() -> None:
    class BN(NamedTuple):
        gamma: Array
        beta: Array

    params = (AffineParams(np.ones((3, 2)), np.ones(2)), None, BN(np.ones(2), np.ones(2)), (np.ones((4, 1, 3, 3)),))
    mask = optim.default_decay_mask(params)
    assert tree_structure(mask) == tree_structure(params)
    assert tree_leaves(mask) == [True, False, False, False, True]


# --------------------------------------------------------------------------------------------
# Trees, dtypes, state as arrays, checkpoints
# --------------------------------------------------------------------------------------------


def test_apply_updates_keeps_param_dtype_and_handles_any_tree() -> None:
    p = {"a": np.ones(3, np.float32), "b": (None, np.zeros(2, np.float64))}
    u = {"a": np.full(3, 0.5, np.float64), "b": (None, np.ones(2, np.float32))}
    out = optim.apply_updates(p, u)
    assert out["a"].dtype == np.float32 and out["b"][1].dtype == np.float64
    np.testing.assert_array_equal(out["a"], 1.5)
    assert out["b"][0] is None
    scalar = optim.apply_updates(np.array(1.0, np.float32), np.float64(0.25))
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and scalar.dtype == np.float32
    with pytest.raises(ValueError, match="structures differ"):
        optim.apply_updates((np.ones(2), np.ones(2)), (np.ones(2),))
    opt = optim.adam()
    state = opt.init((np.ones(2), None))
    with pytest.raises(ValueError, match="structures differ"):
        opt.update((np.ones(2), np.ones(2)), state)


@attrs.frozen
class Rec:
    w: Array
    b: Array


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_attrs_and_dict_trees_give_the_same_updates_as_tuples(name: str) -> None:
    make, _ = OPTIMIZERS[name]
    tup = make_params([(3, 2)], seed=7)[0]
    g = make_params([(3, 2)], seed=8)[0]
    as_rec = {"layer": Rec(tup.w, tup.b)}
    g_rec = {"layer": Rec(g.w, g.b)}
    opt = make()
    p1, _ = optim.apply_optimizer(opt, g, opt.init(tup), tup)
    p2, _ = optim.apply_optimizer(opt, g_rec, opt.init(as_rec), as_rec)
    assert isinstance(p2["layer"], Rec)
    np.testing.assert_array_equal(p1.w, p2["layer"].w)
    np.testing.assert_array_equal(p1.b, p2["layer"].b)


def test_counters_are_0d_int64_arrays() -> None:
    opt = optim.chain(optim.adam(), optim.sgd(optim.CosineDecay(0.1, 10)))
    p = (np.ones(2),)
    state = opt.init(p)
    for _ in range(3):
        _, state = opt.update(p, state, p)
    counters = [state[0][0].steps, state[1][0].steps]
    for c in counters:
        assert isinstance(c, np.ndarray) and c.shape == () and c.dtype == np.int64 and int(c) == 3


def test_state_round_trips_through_npz(tmp_path: Path) -> None:
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adamw(optim.WarmupCosine(0.01, 2, 20), 0.1))
    params = make_params([(4, 3), (3, 2)], seed=9, dtype=np.float32)
    grads = [make_params([(4, 3), (3, 2)], seed=20 + k, dtype=np.float32) for k in range(4)]
    state = opt.init(params)
    p = params
    for g in grads[:3]:
        p, state = optim.apply_optimizer(opt, g, state, p)
    leaves, treedef = tree_flatten(state)
    np.savez(tmp_path / "opt.npz", *leaves)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        loaded = tree_unflatten(treedef, [f[f"arr_{i}"] for i in range(len(leaves))])
    for a, b in zip(tree_leaves(loaded), leaves):
        assert a.dtype == b.dtype and a.shape == np.shape(b)
        np.testing.assert_array_equal(a, b)
    assert optim.current_lr(loaded) == optim.current_lr(state)
    pa, sa = optim.apply_optimizer(opt, grads[3], state, p)
    pb, sb = optim.apply_optimizer(opt, grads[3], loaded, p)
    for a, b in zip(tree_leaves((pa, sa)), tree_leaves((pb, sb))):
        np.testing.assert_array_equal(a, b)  # resuming is bit-identical


# --------------------------------------------------------------------------------------------
# Purity (hypothesis) and validation
# --------------------------------------------------------------------------------------------

ALL_OPTS: list[Callable[[], GradientTransformation]] = [m for m, _ in OPTIMIZERS.values()] + [
    lambda: optim.chain(optim.clip_by_global_norm(0.5), optim.momentum(optim.WarmupCosine(0.1, 2, 10))),
    lambda: optim.chain(optim.add_decayed_weights(0.1), optim.nesterov(optim.ExponentialDecay(0.1, 0.5, 3))),
    lambda: optim.rmsprop(optim.StaircaseDecay(0.1, 0.1, 2)),
]


@settings(max_examples=40, deadline=None)
@given(
    which=st.integers(0, len(ALL_OPTS) - 1),
    shapes=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_no_optimizer_writes_into_its_inputs(which: int, shapes: list[tuple[int, int]], seed: int, dtype: Any) -> None:
    opt = ALL_OPTS[which]()
    # read-only inputs (a write raises) whose bytes are also compared after each call
    params = read_only(make_params(shapes, seed, dtype))
    grads = read_only(make_params(shapes, seed + 1, dtype))
    state = read_only(call_unchanged(opt.init, params))
    for _ in range(2):  # the second update reads a state produced by the first
        updates, new_state = call_unchanged(opt.update, grads, state, params)
        new_params = call_unchanged(optim.apply_updates, params, read_only(updates))
        for a, b in zip(tree_leaves(new_params), tree_leaves(params)):
            assert not np.shares_memory(a, b) and a.dtype == b.dtype
        state = read_only(new_state)


@pytest.mark.parametrize(
    "build, where",
    [
        (lambda: optim.sgd(-0.1), "sgd"),
        (lambda: optim.sgd(0.0), "sgd"),
        (lambda: optim.sgd(float("nan")), "sgd"),
        (lambda: optim.sgd(True), "sgd"),
        (lambda: optim.momentum(0.01, 1.0), "momentum"),
        (lambda: optim.momentum(0.01, -0.1), "momentum"),
        (lambda: optim.nesterov(0.01, 1.5), "nesterov"),
        (lambda: optim.adagrad(-1.0), "adagrad"),
        (lambda: optim.adagrad(0.01, eps=0.0), "scale_by_adagrad"),
        (lambda: optim.rmsprop(0.01, 1.0), "scale_by_rms"),
        (lambda: optim.adam(0.001, b1=1.0), "scale_by_adam"),
        (lambda: optim.adam(0.001, b2=-0.5), "scale_by_adam"),
        (lambda: optim.adamw(0.001, weight_decay=-0.1), "add_decayed_weights"),
        (lambda: optim.clip_by_global_norm(0.0), "clip_by_global_norm"),
        (lambda: optim.trace(1.0), "trace"),
        (lambda: optim.scale_by_schedule(0.1), "scale_by_schedule"),  # type: ignore[arg-type]
        (lambda: optim.l2_penalty((np.ones((2, 2)),), -1.0), "l2_penalty"),
        (lambda: optim.Constant(-0.1), "Constant"),
        (lambda: optim.StaircaseDecay(0.1, 0.5, 0), "StaircaseDecay"),
        (lambda: optim.StaircaseDecay(0.1, decay_rate=0.0, decay_steps=10), "StaircaseDecay"),
        (lambda: optim.ExponentialDecay(0.1, 1.5, 10), "ExponentialDecay"),
        (lambda: optim.CosineDecay(0.1, 0), "CosineDecay"),
        (lambda: optim.CosineDecay(0.1, 10, final=0.2), "CosineDecay"),
        (lambda: optim.WarmupCosine(0.1, 10, 10), "WarmupCosine"),
        (lambda: optim.WarmupCosine(0.1, -1, 10), "WarmupCosine"),
    ],
)
def test_bad_hyperparameters_raise_when_built(build: Callable[[], Any], where: str) -> None:
    with pytest.raises(ValueError, match=where):
        build()


# --------------------------------------------------------------------------------------------
# Layout: optim sits below layers and uses the ground floor only
# --------------------------------------------------------------------------------------------

OPTIM_MAY_IMPORT = {"fnnet.typing", "fnnet.tree", "fnnet._validate", "fnnet.errors", "fnnet.random"}


def test_optim_imports_only_the_ground_floor() -> None:
    package = Path(optim.__file__).parent
    for module in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "fnnet"]
            for name in names:
                if name == "fnnet" or not name.startswith("fnnet"):
                    continue
                assert name in OPTIM_MAY_IMPORT or name.startswith("fnnet.optim."), f"{module.name} imports {name}"


def test_the_old_names_are_gone() -> None:
    # `step` has one meaning in fnnet (a training step); the optimizer call and the staircase
    # schedule are apply_optimizer and StaircaseDecay, and each schedule has one spelling.
    for old in ("step", "StepDecay", "step_decay", "constant", "exponential_decay", "cosine_decay", "warmup_cosine"):
        assert not hasattr(optim, old), old
    assert set(optim.__all__) <= set(dir(optim))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # float16 keeps float32 moments: test_left_numerics.py
def test_adam_equals_the_books_expressions_bit_for_bit(dtype: Any) -> None:
    """Array and 0-d leaves give exactly the bits of the expressions in the docstring."""
    b1, b2, eps = 0.9, 0.999, 1e-7
    rng = np.random.default_rng(4)
    params = [rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal(3).astype(dtype), np.asarray(1.5, dtype)]
    opt = optim.scale_by_adam(b1, b2, eps)
    state = opt.init(params)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, 6):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        updates, state = opt.update(grads, state)
        corr = math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1.0 - b1) * g
            v[i] = b2 * v[i] + (1.0 - b2) * (g * g)
            expected = corr * m[i] / (np.sqrt(v[i]) + eps)
            assert updates[i].dtype == expected.dtype
            assert np.array_equal(updates[i], expected) and np.array_equal(state.mu[i], m[i])
            assert np.array_equal(state.nu[i], v[i])
