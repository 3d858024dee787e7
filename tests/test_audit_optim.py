"""An audit of the optimizers, schedules, trees, numerical gradients, keys, initialisers and the
hyperparameter search: edge cases the other test modules do not reach, most of them pinning a bug
fixed with them (the comment says what used to happen)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import attrs
import numpy as np
import pytest
from _helpers import call_unchanged, read_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fnnet import optim
from fnnet.hparam import Choice, IntUniform, LogUniform, MLPTrial, TrialResult, Uniform, random_search
from fnnet.initializers import HeNormal, HeUniform, LeCunNormal, XavierNormal, XavierUniform
from fnnet.layers.core import Affine
from fnnet.numerical import GradCheck, check_grads, numerical_diff, numerical_gradient
from fnnet.random import Key, fold_in, key, split
from fnnet.tree import (
    tree_flatten,
    tree_global_norm,
    tree_leaves,
    tree_map,
    tree_map_n,
    tree_map_with_path,
    tree_paths,
    tree_structure,
    tree_unflatten,
)
from fnnet.typing import Tree

OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]


def _build(name: str, lr: Any) -> optim.GradientTransformation:
    """A named optimizer, or ``"clipped"``: clipping (which triggers here) then AdamW with a mask function."""
    if name == "clipped":
        every = lambda p: tree_map(lambda leaf: True, p)  # noqa: E731
        return optim.chain(optim.clip_by_global_norm(0.1), optim.adamw(lr, 0.1, every))
    opt: optim.GradientTransformation = getattr(optim, name)(lr)
    return opt


class WB(NamedTuple):
    w: Any
    b: Any


@attrs.frozen
class Rec:
    scale: Any
    _shift: Any = None


# --- optimizers on awkward trees -----------------------------------------------------------------


def _awkward_params(dtype: Any) -> Tree:
    """Every kind of node: non-string dict keys, a NamedTuple, an attrs record, None, (), 0-d leaves."""
    r = np.random.default_rng([31, np.dtype(dtype).itemsize])
    return {
        0: (r.standard_normal((2, 3)).astype(dtype), np.array(1.5, dtype)),
        (1, "x"): WB(r.standard_normal((3, 2)).astype(dtype), None),
        "rec": Rec(r.standard_normal(4).astype(dtype), ()),
        "empty": {},
    }


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", [*OPTIMIZERS, "clipped"])
def test_every_optimizer_keeps_dtypes_and_writes_nothing(name: str, dtype: Any) -> None:
    params = read_only(_awkward_params(dtype))
    grads = read_only(tree_map(lambda p: (0.5 * p + 0.25).astype(p.dtype), params))
    for lr in (0.01, np.float32(0.01), optim.WarmupCosine(0.01, 1, 5)):
        opt = _build(name, lr)
        state = read_only(opt.init(params))
        p = params
        for _ in range(3):
            p, state = call_unchanged(lambda g, s, q: optim.apply_optimizer(opt, g, s, q), grads, state, p)
            state = read_only(state)
        assert tree_structure(p) == tree_structure(params)
        for new, old in zip(tree_leaves(p), tree_leaves(params)):
            assert type(new) is np.ndarray and new.dtype == old.dtype and new.shape == old.shape
            assert np.all(np.isfinite(new)) and not np.array_equal(new, old)


def test_the_lr_a_state_holds_can_be_given_back() -> None:
    # current_lr's source, ScaleByLrState.lr, is a 0-d array: building an optimizer from it failed
    # with "lr must be a finite number > 0, got array(0.1)"
    state = optim.sgd(0.1).init(np.zeros(2))
    lr = state[0].lr
    assert isinstance(lr, np.ndarray) and lr.shape == ()
    opt = optim.adam(lr)  # type: ignore[arg-type]
    assert optim.current_lr(opt.init(np.zeros(2))) == 0.1
    with pytest.raises(ValueError, match=r"adam: lr must be a finite number > 0, got array\(\[0.1, 0.2\]\)"):
        optim.adam(np.array([0.1, 0.2]))  # type: ignore[arg-type]
    for bad in (np.array(-0.1), np.array(np.nan), np.array(True), np.array(1, dtype=object)):
        with pytest.raises(ValueError, match=r"sgd: lr must be a finite number > 0"):
            optim.sgd(bad)  # type: ignore[arg-type]


def test_a_schedule_that_returns_no_learning_rate_fails_clearly() -> None:
    # a negative rate silently turned descent into ascent; nan and inf stay in the state, where
    # fit's finiteness check refuses them (tests/test_train.py)
    params = np.zeros(2)
    with pytest.raises(ValueError, match=r"scale_by_schedule: schedule\(0\) returned None; expected a number >= 0"):
        optim.sgd(lambda count: None).init(params)  # type: ignore[arg-type, return-value]
    assert np.isnan(optim.sgd(lambda count: float("nan")).init(params)[0].lr)
    opt = optim.sgd(lambda count: 0.1 - 0.1 * count)  # negative from count 2 on
    state = opt.init(params)
    _, state = opt.update(np.ones(2), state, params)
    with pytest.raises(ValueError, match=r"scale_by_schedule: schedule\(2\) returned -0.1"):
        opt.update(np.ones(2), state, params)


# --- clipping -------------------------------------------------------------------------------------


def test_clip_by_global_norm_with_zero_huge_and_infinite_updates() -> None:
    clip = optim.clip_by_global_norm(1.0)
    zeros = (np.zeros(3), np.zeros((2, 2), np.float32))
    out, _ = clip.update(zeros, clip.init(zeros))
    assert all(not np.any(u) for u in out)
    # finite float64 updates whose squares overflow used to give norm inf, scaling them all to 0
    huge = (np.full(4, 1e200), np.array([3e200]))
    out, _ = clip.update(huge, clip.init(huge))
    assert tree_global_norm(out) == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(out[0], np.full(4, 1e200) / tree_global_norm(huge), rtol=1e-12)
    # an inf update is not clipped into something finite: it poisons its own entries with nan
    with np.errstate(invalid="ignore"):
        out, _ = clip.update((np.array([np.inf, 1.0]),), ())
    assert np.isnan(out[0][0]) and out[0][1] == 0.0


def test_global_norm_near_the_top_of_float64() -> None:
    assert tree_global_norm(np.full(4, 1e200)) == 2e200
    assert tree_global_norm((np.array([1e308]), np.array([1e308]))) == pytest.approx(np.sqrt(2) * 1e308)
    assert tree_global_norm((np.array([1e308]), np.array([-1.7e308]))) == np.inf  # really beyond float64
    assert tree_global_norm((np.array([np.inf]), np.full(3, 1e200))) == np.inf
    assert np.isnan(tree_global_norm((np.array([np.nan]), np.full(3, 1e200))))
    assert tree_global_norm((np.array([1e200]), np.zeros(0), None, np.array(1e-200))) == 1e200


# --- weight-decay masks ---------------------------------------------------------------------------


PARAMS = {"layer": WB(np.ones((2, 2)), np.ones(2)), "out": np.ones((2, 1))}


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ({"layer": WB(True, False)}, r"structures differ at <root>: .* \('out' only in the first\)"),
        ({"layer": WB(True, None), "out": True}, r"structures differ at layer/b: leaf ndarray vs none"),
        ({"layer": (True, False), "out": True}, r"structures differ at layer: namedtuple WB vs tuple"),
        ({"layer": WB(True, False), "out": True, "extra": False}, r"structures differ at <root>: .* \('extra' only in the second\)"),
        (lambda p: {"layer": True, "out": True}, r"structures differ at layer: namedtuple WB vs leaf bool"),
        ({"layer": WB(np.ones((2, 2), bool), False), "out": True}, r"at layer/w must be True or False, got an array of shape \(2, 2\)"),
    ],
    ids=["missing-key", "none-leaf", "tuple-for-namedtuple", "extra-key", "callable", "elementwise"],
)
def test_a_mask_that_does_not_fit_the_params_is_named_by_path(mask: Any, message: str) -> None:
    grads = tree_map(np.zeros_like, PARAMS)
    opt = optim.adamw(0.1, 0.01, mask)
    with pytest.raises(ValueError, match=r"^add_decayed_weights: mask (does not match params: )?" + message):
        opt.init(PARAMS)  # checked once, when the state is built
    decay = optim.add_decayed_weights(0.01, mask)
    with pytest.raises(ValueError, match=r"^add_decayed_weights: mask (does not match params: )?" + message):
        decay.update(grads, optim.EmptyState(), PARAMS)
    with pytest.raises(ValueError, match=r"^l2_penalty: mask (does not match params: )?" + message):
        optim.l2_penalty(PARAMS, 0.01, mask)


def test_masks_of_flags_of_every_kind_are_accepted() -> None:
    mask = {"layer": WB(np.array(True), np.False_), "out": 1}
    opt = optim.adamw(0.1, 0.5, mask)
    zero = tree_map(np.zeros_like, PARAMS)
    new, _ = optim.apply_optimizer(opt, zero, opt.init(PARAMS), PARAMS)
    assert new["layer"].w[0, 0] == pytest.approx(0.95) and new["layer"].b[0] == 1.0 and new["out"][0, 0] == pytest.approx(0.95)
    # a structure mismatch between updates and params is not blamed on the mask
    with pytest.raises(ValueError, match=r"^tree_map: structures differ at <root>"):
        optim.add_decayed_weights(0.1, mask).update({"out": zero["out"]}, optim.EmptyState(), PARAMS)


def test_dict_mismatches_name_the_keys_only_one_side_has() -> None:
    a, b = {"x": {1: 0.0, "a": 0.0}}, {"x": {"a": 0.0, "b": 0.0}}
    detail = r"at x: dict \(1, 'a'\) vs dict \('a', 'b'\) \(1 only in the first; 'b' only in the second\)$"
    with pytest.raises(ValueError, match=r"^tree_map: structures differ " + detail):
        tree_map(lambda u, v: u, a, b)
    with pytest.raises(ValueError, match=r"^tree_map_with_path: structures differ " + detail):
        tree_map_with_path(lambda path, u, v: u, a, b)


# --- numerical gradients in low precision ---------------------------------------------------------


def _sum_of_squares(tree: Tree) -> float:
    return float(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in tree_leaves(tree)))


def test_numerical_gradient_of_float32_divides_by_the_step_taken() -> None:
    # x ± 1e-4 rounds to a float32 grid of spacing 6e-5 at 1000: dividing by 2h gave 2441, not 2000
    x = np.array([3.0, 1000.0, -250.0, 0.1], np.float32)
    g = numerical_gradient(_sum_of_squares, x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * x.astype(np.float64), rtol=1e-5)  # f rounds at 1e6 · 1e-16
    assert numerical_diff(lambda v: float(v) ** 2, np.float32(1000.0)) == pytest.approx(2000.0, rel=1e-9)  # type: ignore[arg-type]


def test_a_step_that_vanishes_in_the_dtype_is_an_error_not_a_zero_gradient() -> None:
    x16 = np.array([3.0, 0.5], np.float16)
    with pytest.raises(ValueError, match=r"numerical_gradient: step h=0.0001 vanishes in leaf 1 \(float16\) at value 3.0"):
        numerical_gradient(_sum_of_squares, (np.zeros(1), x16))
    g = numerical_gradient(_sum_of_squares, x16, h=0.25)  # representable: exact for a quadratic
    assert g.dtype == np.float16 and g.tolist() == [6.0, 1.0]
    with pytest.raises(ValueError, match=r"numerical_diff: step h=0.0001 vanishes at x=np.float32\(1e\+08\)"):
        numerical_diff(lambda v: float(v), np.float32(1e8))  # type: ignore[arg-type]


# --- keys -----------------------------------------------------------------------------------------


def _bits(k: Key) -> list[int]:
    return [int(v) for v in k.generator().integers(0, 2**63, 4)]


def test_wide_fold_in_data_no_longer_aliases_other_keys() -> None:
    # SeedSequence reads 2**64 as the words (0, 0, 1): the path (1, 2**64) used to give the very
    # numbers of (1, 0, 0, 1), i.e. of split(fold_in(k, 0))[1]
    k = key(0)
    assert _bits(fold_in(k, 2**64)) != _bits(split(fold_in(k, 0))[1])
    assert _bits(fold_in(k, 2**32 + 5 * 2**64)) != _bits(fold_in(fold_in(k, 0), 5))
    assert fold_in(k, np.uint64(2**63)) == fold_in(k, 2**63)  # type: ignore[arg-type]
    assert fold_in(k, 2**32 - 1) == Key(0, (1, 2**32 - 1))  # narrow data keep their path (and streams)
    for bad in (-1, -(2**70), 1.0, True, "3"):
        with pytest.raises(ValueError, match=r"fold_in: data must be a non-negative int"):
            fold_in(k, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"split: n must be a positive int"):
            split(k, bad)  # type: ignore[arg-type]


def test_seeds_wider_than_the_seed_pool_are_refused() -> None:
    # a seed past 2**128 ran into the path's words: this seed gave fold_in(key(12345), 7)'s numbers
    with pytest.raises(ValueError, match=r"Key: seed must be below 2\*\*128, got \d+$"):
        key(12345 + 2**128 * (1 + 2**32 * 7))
    assert _bits(key(2**128 - 1)) == _bits(key(2**128 - 1)) != _bits(key(2**128 - 2))


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("split"), st.integers(0, 3)),
        st.tuples(st.just("fold"), st.one_of(st.integers(0, 3), st.integers(2**32 - 2, 2**32 + 2), st.integers(0, 2**100))),
    ),
    max_size=4,
)


def _derived(seed: int, ops: list[tuple[str, int]]) -> Key:
    k = key(seed)
    for op, n in ops:
        k = split(k, n + 1)[n] if op == "split" else fold_in(k, n)
    return k


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**128 - 1), _OPS, st.integers(0, 2**128 - 1), _OPS)
def test_different_derivations_give_different_streams(seed_a: int, ops_a: list[Any], seed_b: int, ops_b: list[Any]) -> None:
    a, b = _derived(seed_a, ops_a), _derived(seed_b, ops_b)
    assert _bits(a) == _bits(_derived(seed_a, ops_a))  # the same key, the same numbers
    if (seed_a, ops_a) != (seed_b, ops_b):
        assert a != b and _bits(a) != _bits(b)


# --- hyperparameter search ------------------------------------------------------------------------


def _score(hparams: dict[str, Any], k: Key) -> dict[str, float]:
    return {"val_acc": 1.0 / (1.0 + abs(float(hparams["x"])))}


def test_numpy_options_keep_their_kind() -> None:
    # NumPy ints went through float(): Choice([np.int64(32)]) drew 32.0, which a layer width refuses
    c = Choice([np.int64(32), np.float32(0.5), np.str_("relu"), 7])
    assert c.options == (32, 0.5, "relu", 7)
    assert [type(o) for o in c.options] == [int, float, str, int]
    assert c.contains(32) and not c.contains(32.0)
    with pytest.raises(ValueError, match=r"Choice: options must be str, int or finite float, got np.True_"):
        Choice([np.bool_(True)])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Uniform(-1e308, 1e308), r"Uniform: high - low must be a finite number, got low=-1e\+308, high=1e\+308"),
        (lambda: IntUniform(0, 2**63), r"IntUniform: high must be in the int64 range \[-2\*\*63, 2\*\*63\), got 9223372036854775808"),
        (lambda: IntUniform(-(2**63) - 1, 0), r"IntUniform: low must be in the int64 range"),
        (lambda: LogUniform(1e-3, 1e-3), r"LogUniform: need low < high, got low=0.001, high=0.001"),
        (lambda: LogUniform(1e-2, 1e-3), r"LogUniform: need low < high, got low=0.01, high=0.001"),
    ],
    ids=["uniform-span", "int-high", "int-low", "log-equal", "log-reversed"],
)
def test_distributions_that_cannot_draw_fail_when_built(build: Any, message: str) -> None:
    # the first two used to fail at the first draw, with NumPy's error, and so stop the whole search
    with pytest.raises(ValueError, match=message):
        build()


def test_extreme_but_valid_ranges_draw_inside_them() -> None:
    wide = Uniform(-1e307, 1e307)
    ints = IntUniform(-(2**63), 2**63 - 1)
    top = LogUniform(1.7e308, 1.7976931348623157e308)  # 10**log10(high) overflows a float
    for i in range(50):
        k = fold_in(key(9), i)
        assert wide.contains(wide.draw(k)) and ints.contains(ints.draw(k)) and top.contains(top.draw(k))


def test_search_edge_cases() -> None:
    space = {"x": Uniform(-1.0, 1.0)}
    with pytest.raises(ValueError, match=r"random_search: n_trials must be a positive int, got 0"):
        random_search(_score, space, key=key(0), n_trials=0)
    one = random_search(_score, space, key=key(0), n_trials=np.int64(1))  # type: ignore[arg-type]
    assert len(one.trials) == 1 and one.best.index == 0

    def flaky(hparams: dict[str, Any], k: Key) -> dict[str, float]:
        if hparams["x"] < 0:
            raise RuntimeError("diverged")
        return {"val_acc": float("nan")} if hparams["x"] > 0.5 else _score(hparams, k)

    res = random_search(flaky, space, key=key(0), n_trials=12)
    errors = {t.error for t in res.failed}
    assert errors <= {"RuntimeError: diverged", f"ValueError: objective returned non-finite metric val_acc=nan"}
    assert len(errors) == 2 and res.ok and all(0 <= t.hparams["x"] <= 0.5 for t in res.ok)  # type: ignore[operator]


def test_ctrl_c_stops_the_search_and_cancels_the_trials_not_started() -> None:
    started: list[int] = []

    def slow(hparams: dict[str, Any], k: Key) -> dict[str, float]:
        started.append(1)
        time.sleep(0.02)
        return _score(hparams, k)

    seen: list[TrialResult] = []

    def interrupt(t: TrialResult) -> None:
        seen.append(t)
        raise KeyboardInterrupt

    with ThreadPoolExecutor(1) as ex, pytest.raises(KeyboardInterrupt):
        random_search(slow, {"x": Uniform(-1.0, 1.0)}, key=key(0), n_trials=20, executor=ex, on_trial=interrupt)
    # the pool's shutdown used to wait for all 20 trials; the finished one reached on_trial
    assert len(seen) == 1 and seen[0].ok and len(started) <= 3

    def ctrl_c(hparams: dict[str, Any], k: Key) -> dict[str, float]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # not recorded as a failed trial
        random_search(ctrl_c, {"x": Uniform(-1.0, 1.0)}, key=key(0), n_trials=3, on_trial=seen.append)
    assert len(seen) == 1


# --- trees: random nesting ------------------------------------------------------------------------


class Pair(NamedTuple):
    a: Any
    b: Any


class Nothing(NamedTuple):
    pass


_LEAVES = st.one_of(
    st.builds(lambda n, dt: np.arange(n, dtype=dt), st.integers(0, 3), st.sampled_from([np.float16, np.float32, np.float64])),
    st.builds(np.array, st.floats(-3, 3)),
    st.floats(-3, 3),
    st.integers(-5, 5),
)
_KEYS = st.one_of(st.text(max_size=2), st.integers(-20, 20), st.tuples(st.integers(0, 2), st.integers(0, 2)))


def _nest(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(_KEYS, children, max_size=3),
        st.builds(Pair, children, children),
        st.just(Nothing()),
        st.builds(Rec, children, children),
    )


_TREES = st.recursive(_LEAVES, _nest, max_leaves=10)


def _same(a: Tree, b: Tree) -> None:
    (la, da), (lb, db) = tree_flatten(a), tree_flatten(b)
    assert da == db and len(la) == len(lb)
    assert all(x is y for x, y in zip(la, lb))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TREES)
def test_random_trees_round_trip_through_every_walker(tree: Tree) -> None:
    leaves, treedef = tree_flatten(tree)
    assert treedef.num_leaves == len(leaves) == len(tree_paths(tree))
    assert all(x is y for x, y in zip(tree_leaves(tree), leaves))
    _same(tree_unflatten(treedef, leaves), tree)
    _same(tree_map(lambda x: x, tree), tree)
    _same(tree_map(lambda x, y: x, tree, tree), tree)
    _same(tree_map(lambda x, y, z: z, tree, tree, tree), tree)
    _same(tree_map_with_path(lambda p, x: x, tree), tree)
    for out in tree_map_n(lambda x, y: (y, x), 2, tree, tree):
        _same(out, tree)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TREES, _TREES)
def test_random_tree_pairs_map_iff_their_structures_match(a: Tree, b: Tree) -> None:
    same = tree_structure(a) == tree_structure(b)
    calls: list[Callable[[], Any]] = [
        lambda: tree_map(lambda x, y: x, a, b),
        lambda: tree_map(lambda x, y, z: x, a, b, b),
        lambda: tree_map_n(lambda x, y: (x, y), 2, a, b),
        lambda: tree_map_with_path(lambda p, x, y: x, a, b),
    ]
    for call in calls:
        if same:
            call()
        else:
            with pytest.raises(ValueError, match=r"structures differ at "):
                call()


def test_l2_penalty_of_float16_weights_does_not_overflow() -> None:
    # the sum of squares was accumulated in float16, whose largest number is 65504: the loss was inf
    w = np.full((100, 100), 3.0, np.float16)
    loss, grads = optim.l2_penalty({"w": w, "b": np.ones(100, np.float16)}, 0.1)
    assert loss == pytest.approx(0.5 * 0.1 * 9.0 * 10_000)
    assert grads["w"].dtype == np.float16 and grads["b"].dtype == np.float16


# --- initialisers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("init", [HeNormal(), HeUniform(), LeCunNormal(), XavierNormal(), XavierUniform()], ids=repr)
def test_fan_scaled_initialisers_accept_a_layer_without_inputs(init: Any) -> None:
    # sqrt(c / fan_in) raised ZeroDivisionError for an Affine on an input of 0 features
    params, out_shape = Affine(3, w_init=init).init(key(0), (0,))
    assert params.w.shape == (0, 3) and params.w.dtype == np.float32 and out_shape == (3,)
    assert init(key(0), (0, 0), 0, 0).shape == (0, 0)
    with pytest.raises(ValueError, match=rf"^{type(init).__name__}: fans must be >= 0, got -"):
        init(key(0), (2, 2), -2, 1)


# --- gradient checks ------------------------------------------------------------------------------


@attrs.frozen
class _NanBias(Affine):
    """An Affine whose backward gives nan for the bias (after a correct weight gradient)."""

    def backward(self, params: Any, cache: Any, dout: Any, input_grad: bool = True) -> tuple[Any, Any]:
        dx, grads = super().backward(params, cache, dout, input_grad)
        return dx, grads._replace(b=np.full_like(grads.b, np.nan))


def test_a_nan_gradient_is_not_hidden_by_max_error() -> None:
    # max() skips a nan that is not first: max_error was the weight's 1e-10 and the check passed
    layer = _NanBias(2)
    params = tree_map(lambda p: p.astype(np.float64), layer.init(key(0), (3,))[0])
    check = check_grads(layer, params, np.random.default_rng(5).standard_normal((4, 3)))
    assert list(check.errors)[0] == "w" and check.errors["w"] < 1e-6 and np.isnan(check.errors["b"])
    assert np.isnan(check.max_error) and not check.max_error < 1e-6
    assert GradCheck({"a": 1e-9, "b": 3e-9}).max_error == 3e-9 and GradCheck({}).max_error == 0.0


def test_mlp_trial_takes_numpy_ints() -> None:
    # "n_train must be a positive int, got np.int64(100)" refused what it asked for
    trial = MLPTrial(n_train=np.int64(100), hidden_sizes=[np.int64(16)], epochs=np.int32(2), batch_size=np.uint8(20),
                     split_seed=np.int64(0))
    assert trial == MLPTrial(n_train=100, hidden_sizes=(16,), epochs=2, batch_size=20, split_seed=0)
    assert [type(v) for v in (trial.n_train, trial.hidden_sizes[0], trial.epochs, trial.batch_size, trial.split_seed)] == [int] * 5
    with pytest.raises(ValueError, match=r"MLPTrial: epochs must be a positive int, got True"):
        MLPTrial(epochs=True)


def test_mlp_trial_checks_its_activation_when_built() -> None:
    # a typo used to build fine and then fail every trial of the search, one after another
    with pytest.raises(ValueError, match=r"MLPTrial: activation must be one of \['identity', 'relu', 'sigmoid', 'tanh'\], got 'rleu'"):
        MLPTrial(activation="rleu")
    assert MLPTrial(activation="tanh").activation == "tanh"


@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_numerical_gradient_of_any_memory_layout(order: str) -> None:
    # zeros_like kept a Fortran-ordered leaf's order, its reshape(-1) was a copy, and the gradient
    # of a transposed weight came back all zeros
    base = np.arange(12.0).reshape(3, 4)
    x = {"C": base, "F": np.asfortranarray(base), "strided": base[:, ::2]}[order]
    g = numerical_gradient(_sum_of_squares, x)
    assert g.shape == x.shape
    np.testing.assert_allclose(g, 2 * x, atol=1e-6)


# --- schedules ------------------------------------------------------------------------------------


_np: Any = np  # NumPy numbers where the signatures say float or int, as the validators allow


@pytest.mark.parametrize(
    ("numpy_built", "python_built"),
    [
        (optim.Constant(_np.float32(0.5)), optim.Constant(0.5)),
        (optim.StaircaseDecay(_np.float64(0.1), _np.float32(0.5), _np.int64(10)), optim.StaircaseDecay(0.1, 0.5, 10)),
        (optim.ExponentialDecay(0.1, _np.float64(0.5), _np.uint16(10)), optim.ExponentialDecay(0.1, 0.5, 10)),
        (optim.CosineDecay(_np.float64(0.1), _np.int32(100), _np.float64(0.01)), optim.CosineDecay(0.1, 100, 0.01)),
        (optim.WarmupCosine(0.1, _np.int64(5), _np.int64(50)), optim.WarmupCosine(0.1, 5, 50)),
    ],
    ids=lambda s: type(s).__name__,
)
def test_schedules_built_from_numpy_numbers_keep_their_promises(numpy_built: Any, python_built: Any) -> None:
    # NumPy arguments were stored as they came: the repr said np.int64(10), which is not the
    # expression that builds the schedule, and equal schedules compared and hashed unequal
    assert numpy_built == python_built and hash(numpy_built) == hash(python_built)
    assert repr(numpy_built) == repr(python_built)
    assert eval(repr(numpy_built), {n: getattr(optim, n) for n in optim.__all__}) == python_built
    for bad in (True, "0.1", np.array(0.1)):
        with pytest.raises(ValueError, match=rf"{type(python_built).__name__}: lr must be a finite number > 0"):
            attrs.evolve(python_built, lr=bad)


def test_schedules_at_and_beyond_their_end() -> None:
    cos = optim.WarmupCosine(0.1, warmup_steps=4, total_steps=8, final=0.02)
    assert [round(cos(k), 12) for k in (0, 3, 4, 8, 9, 10**9)] == [0.025, 0.1, 0.1, 0.02, 0.02, 0.02]
    assert optim.CosineDecay(0.1, 1)(0) == 0.1 and optim.CosineDecay(0.1, 1)(1) == 0.0
    with pytest.raises(ValueError, match=r"WarmupCosine: warmup_steps must be < total_steps \(8\), got 9"):
        optim.WarmupCosine(0.1, 9, 8)
    for bad in (float("nan"), -0.1, float("inf")):
        with pytest.raises(ValueError, match=r"CosineDecay: lr must be a finite number > 0"):
            optim.CosineDecay(bad, 10)
        with pytest.raises(ValueError, match=r"CosineDecay: final must be a finite number >= 0"):
            optim.CosineDecay(0.1, 10, final=bad)
