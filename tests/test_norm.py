"""BatchNorm: gradients, batch and running statistics, explicit state, the batch sum, errors, pipelines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, assert_grads_ok, call_unchanged, read_only, rng
from hypothesis import given, settings, strategies as st

import fnnet
from fnnet.layers.base import EVAL, TRAIN, Ctx
from fnnet.layers.combinators import serial
from fnnet.layers.core import Affine, Flatten, ReLU
from fnnet.layers.norm import DEFAULT_EPS, BatchNorm, BatchNormCache, BatchNormParams, BatchNormState
from fnnet.tree import tree_astype, tree_leaves
from fnnet.typing import Array, Shape

# The projection check_grads uses is drawn from this key; inputs come from other seeds so that the
# projection is never (nearly) an affine function of x, which BatchNorm would map to a zero gradient.
PROJ_KEY = fnnet.key(12345)
GRAD_TOL = 1e-6  # float64 central differences on smooth functions agree to ~1e-9

SHAPES_2D = [(4,), (7,)]
SHAPES_3D = [(3, 5), (2, 7)]  # 1-D signals (C, L), as after a Conv1D
SHAPES_4D = [(2, 3, 3), (3, 2, 4)]
ALL_SHAPES = SHAPES_2D + SHAPES_3D + SHAPES_4D


def _axes(x: Array) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _per_channel(a: Array, x: Array) -> Array:
    """Reshape a ``(C,)`` array to broadcast against ``x``."""
    return a.reshape((1, -1) + (1,) * (x.ndim - 2))


def _inputs(in_shape: Shape, n: int = 5, seed: int = 1) -> Array:
    r = rng(seed)
    c = in_shape[0]
    # channels with different means and scales, so per-channel statistics matter
    loc = _per_channel(r.uniform(-3, 3, c), np.empty((1,) + tuple(in_shape)))
    scale = _per_channel(r.uniform(0.5, 4, c), np.empty((1,) + tuple(in_shape)))
    x: Array = r.standard_normal((n,) + tuple(in_shape)) * scale + loc
    return x


def _params64(in_shape: Shape, seed: int = 2) -> BatchNormParams:
    r = rng(seed)
    c = in_shape[0]
    return BatchNormParams(r.uniform(0.5, 2.0, c), r.normal(0, 1, c))


def _trained_state(in_shape: Shape, dtype: Any = np.float64, seed: int = 3) -> BatchNormState:
    r = rng(seed)
    c = in_shape[0]
    return BatchNormState(
        r.normal(0, 1, c).astype(dtype), r.uniform(0.5, 3.0, c).astype(dtype), np.asarray(4, np.int64)
    )


# --- gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
@pytest.mark.parametrize("n", [3, 6])
def test_gradients_training_mode(in_shape: Shape, n: int) -> None:
    bn = BatchNorm()
    state = tree_astype(bn.init_state(in_shape), np.float64)
    check = assert_grads_ok(
        bn, _params64(in_shape), _inputs(in_shape, n), state=state, ctx=TRAIN, key=PROJ_KEY, tol=GRAD_TOL
    )
    assert set(check.errors) == {"gamma", "beta", "x"}


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
def test_gradients_eval_mode(in_shape: Shape) -> None:
    assert_grads_ok(
        BatchNorm(), _params64(in_shape), _inputs(in_shape), state=_trained_state(in_shape), key=PROJ_KEY, tol=GRAD_TOL
    )


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_input_grad_false_skips_dx_only(in_shape: Shape, train: bool) -> None:
    bn, p, x = BatchNorm(), _params64(in_shape), _inputs(in_shape)
    dout = rng(7).standard_normal(x.shape)
    _, _, cache = bn.forward(p, None if train else _trained_state(in_shape), x, Ctx(train=train))
    dx, grads = bn.backward(p, cache, dout)
    dx2, grads2 = bn.backward(p, cache, dout, input_grad=False)
    assert np.any(dx)
    assert dx2.shape == dx.shape and dx2.dtype == dx.dtype and not np.any(dx2) and not dx2.flags.writeable
    assert_bit_identical(grads2, grads)


# --- batch statistics ----------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
def test_training_output_is_standardised_per_feature_or_channel(in_shape: Shape) -> None:
    bn = BatchNorm()
    p, x = _params64(in_shape), _inputs(in_shape, n=8)
    y, _, _ = bn.forward(p, None, x, TRAIN)
    xhat = (y - _per_channel(p.beta, x)) / _per_channel(p.gamma, x)  # undo gamma/beta
    axes = _axes(x)
    batch_var = x.var(axis=axes)
    np.testing.assert_allclose(xhat.mean(axis=axes), 0.0, atol=1e-12)
    # the variance is var / (var + eps), not exactly 1
    np.testing.assert_allclose(xhat.var(axis=axes), batch_var / (batch_var + DEFAULT_EPS), rtol=1e-12)


def test_4d_statistics_are_per_channel_not_per_position() -> None:
    """Unlike the book (one statistic per (c, h, w)), positions of one channel share statistics."""
    in_shape = (2, 3, 3)
    r = rng(4)
    # every position gets its own offset, so per-position statistics would remove it
    x = r.standard_normal((6,) + in_shape) + r.uniform(-5, 5, (1,) + in_shape)
    p = BatchNorm().init(fnnet.key(0), in_shape)[0]
    y, _, _ = BatchNorm().forward(tree_astype(p, np.float64), None, x, TRAIN)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    assert np.abs(y.mean(axis=0)).max() > 0.5  # per-position means stay non-zero


# --- running statistics ---------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_running_statistics_follow_the_formula(in_shape: Shape, momentum: float) -> None:
    bn = BatchNorm(momentum=momentum)
    p = _params64(in_shape)
    state = tree_astype(bn.init_state(in_shape), np.float64)
    run_mean, run_var = state.mean, state.var
    for step, seed in enumerate([11, 12, 13], start=1):
        x = _inputs(in_shape, n=4, seed=seed)
        _, state, _ = bn.forward(p, state, x, TRAIN)
        axes = _axes(x)
        run_mean = momentum * run_mean + (1 - momentum) * x.mean(axis=axes)
        run_var = momentum * run_var + (1 - momentum) * x.var(axis=axes)  # biased, as in the book
        np.testing.assert_allclose(state.mean, run_mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state.var, run_var, rtol=1e-12)
        assert state.count.shape == () and state.count.dtype == np.int64 and int(state.count) == step


def test_init_state_values() -> None:
    bn = BatchNorm()
    for in_shape, c in [((5,), 5), ((3, 4, 4), 3)]:
        s = bn.init_state(in_shape)
        assert isinstance(s, BatchNormState)
        np.testing.assert_array_equal(s.mean, np.zeros(c))
        np.testing.assert_array_equal(s.var, np.ones(c))
        assert s.mean.dtype == s.var.dtype == np.float32
        assert s.count.shape == () and s.count.dtype == np.int64 and int(s.count) == 0


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
def test_training_without_state_starts_from_init_state(in_shape: Shape) -> None:
    bn, p, x = BatchNorm(), _params64(in_shape), _inputs(in_shape)
    from_none = bn.forward(p, None, x, TRAIN)[1]
    explicit = tree_astype(bn.init_state(in_shape), np.float64)
    from_init = bn.forward(p, explicit, x, TRAIN)[1]
    assert_bit_identical(from_none, from_init)


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
def test_eval_uses_running_statistics(in_shape: Shape) -> None:
    bn, p, x = BatchNorm(eps=1e-3), _params64(in_shape), _inputs(in_shape)
    state = _trained_state(in_shape)
    y, new, _ = bn.forward(p, state, x)
    mean, var = _per_channel(state.mean, x), _per_channel(state.var, x)
    expected = _per_channel(p.gamma, x) * (x - mean) / np.sqrt(var + 1e-3) + _per_channel(p.beta, x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    # each sample is normalised on its own: evaluating one sample gives its row of the batch output
    np.testing.assert_allclose(bn.apply(p, x[2:3], state=state), y[2:3], rtol=1e-12, atol=1e-12)
    assert new is state  # evaluation leaves the state as it was


def test_eval_differs_from_training_output() -> None:
    """Evaluation must not fall back on batch statistics."""
    in_shape = (4,)
    bn, p, x = BatchNorm(), _params64(in_shape), _inputs(in_shape)
    y_train = bn.apply(p, x, ctx=TRAIN)
    y_eval = bn.apply(p, x, state=_trained_state(in_shape))
    assert np.abs(y_train - y_eval).max() > 0.1


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
def test_never_updated_statistics_raise(in_shape: Shape) -> None:
    bn, x = BatchNorm(), _inputs(in_shape).astype(np.float32)
    p = bn.init(fnnet.key(0), in_shape)[0]
    with pytest.raises(ValueError, match=r"BatchNorm: .*state is None.*never updated.*train=True"):
        bn.forward(p, None, x)
    with pytest.raises(ValueError, match=r"BatchNorm: .*never updated.*count == 0"):
        bn.forward(p, bn.init_state(in_shape), x)
    # after one training pass the same call works
    state = bn.forward(p, bn.init_state(in_shape), x, TRAIN)[1]
    y, _, _ = bn.forward(p, state, x)
    assert y.shape == x.shape and np.all(np.isfinite(y))


# --- purity, state kept out of params -------------------------------------------------------------


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_inputs_and_state_never_mutated(in_shape: Shape, train: bool) -> None:
    bn = BatchNorm()
    p, x, state = read_only(_params64(in_shape)), read_only(_inputs(in_shape)), read_only(_trained_state(in_shape))
    dout = read_only(rng(5).standard_normal(x.shape))
    y, new, cache = call_unchanged(lambda pp, ss, xx: bn.forward(pp, ss, xx, Ctx(train=train)), p, state, x)
    call_unchanged(bn.backward, p, cache, dout)
    if train:
        assert int(new.count) == int(state.count) + 1
        assert not any(np.shares_memory(a, b) for a in tree_leaves(new) for b in tree_leaves(state))


def test_state_is_not_in_params() -> None:
    bn = BatchNorm()
    params, out_shape = bn.init(fnnet.key(0), (3, 4, 4))
    assert out_shape == (3, 4, 4)
    assert isinstance(params, BatchNormParams) and params._fields == ("gamma", "beta")
    np.testing.assert_array_equal(params.gamma, np.ones(3))
    np.testing.assert_array_equal(params.beta, np.zeros(3))
    assert params.gamma.dtype == params.beta.dtype == np.float32
    x = np.ones((2, 3, 4, 4), np.float32)
    _, grads = bn.backward(params, bn.forward(params, None, x, TRAIN)[2], x)
    assert type(grads) is BatchNormParams  # an optimizer mapping over (grads, params) never sees state


@given(
    n=st.integers(2, 5),
    in_shape=st.sampled_from(ALL_SHAPES),
    seed=st.integers(0, 2**16),
    train=st.booleans(),
)
@settings(max_examples=30, deadline=None)
def test_property_inputs_unchanged(n: int, in_shape: Shape, seed: int, train: bool) -> None:
    bn = BatchNorm()
    x = rng(seed).standard_normal((n,) + in_shape).astype(np.float32)
    p = BatchNormParams(*rng(seed + 1).standard_normal((2, in_shape[0])).astype(np.float32))
    state = _trained_state(in_shape, np.float32, seed)
    forward = lambda pp, ss, xx: bn.forward(pp, ss, xx, Ctx(train=train))  # noqa: E731
    y, _, cache = call_unchanged(forward, p, state, x, readonly=True)
    call_unchanged(bn.backward, p, cache, y, readonly=True)


# --- dtypes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_float32_stays_float32(in_shape: Shape, train: bool) -> None:
    bn = BatchNorm()
    p = bn.init(fnnet.key(0), in_shape)[0]
    x = _inputs(in_shape).astype(np.float32)
    state = _trained_state(in_shape, np.float32)
    y, new, cache = bn.forward(p, state, x, Ctx(train=train))
    dx, grads = bn.backward(p, cache, y)
    assert y.dtype == dx.dtype == grads.gamma.dtype == grads.beta.dtype == np.float32
    assert new.mean.dtype == new.var.dtype == np.float32 and new.count.dtype == np.int64


def test_state_keeps_its_dtype() -> None:
    """A float32 state updated by a float64 pass stays float32 (checkpoints restore against it)."""
    bn, in_shape = BatchNorm(), (4,)
    state = bn.init_state(in_shape)
    new = bn.forward(_params64(in_shape), state, _inputs(in_shape), TRAIN)[1]
    assert new.mean.dtype == new.var.dtype == np.float32


# --- validation and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [-0.1, 1.0, 1.5, float("nan"), True, "0.9"])
def test_bad_momentum_raises(momentum: Any) -> None:
    with pytest.raises(ValueError, match="BatchNorm: momentum"):
        BatchNorm(momentum=momentum)


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan"), float("inf"), True])
def test_bad_eps_raises(eps: Any) -> None:
    with pytest.raises(ValueError, match="BatchNorm: eps"):
        BatchNorm(eps=eps)


def test_good_hyperparameters_accepted() -> None:
    assert BatchNorm(momentum=0.0).momentum == 0.0
    assert BatchNorm(momentum=np.float64(0.99), eps=np.float64(1e-3)).eps == 1e-3
    assert BatchNorm().eps == DEFAULT_EPS and BatchNorm().momentum == 0.9


def test_shape_rank_dtype_errors_name_the_layer() -> None:
    bn = BatchNorm()
    p = bn.init(fnnet.key(0), (4,))[0]
    with pytest.raises(ValueError, match=r"BatchNorm: expected input of rank 2 .* got shape \(3, 4, 2, 1, 1\)"):
        bn.forward(p, None, np.zeros((3, 4, 2, 1, 1), np.float32), TRAIN)
    with pytest.raises(ValueError, match=r"BatchNorm: expected input \(N, 4, L\) with 4 channels, got shape \(3, 5, 2\)"):
        bn.forward(p, None, np.zeros((3, 5, 2), np.float32), TRAIN)
    with pytest.raises(ValueError, match=r"BatchNorm: expected input \(N, 4\) with 4 features, got shape \(3, 5\)"):
        bn.forward(p, None, np.zeros((3, 5), np.float32), TRAIN)
    with pytest.raises(ValueError, match=r"BatchNorm: expected input \(N, 4, H, W\) .* got shape \(2, 3, 5, 5\)"):
        bn.forward(p, None, np.zeros((2, 3, 5, 5), np.float32), TRAIN)
    with pytest.raises(ValueError, match=r"BatchNorm: expected input of dtype float32 .* got float64"):
        bn.forward(p, None, np.zeros((3, 4)), TRAIN)
    with pytest.raises(ValueError, match=r"BatchNorm: .*more than one value per feature"):
        bn.forward(p, None, np.zeros((1, 4), np.float32), TRAIN)
    with pytest.raises(ValueError, match=r"BatchNorm: expected input shape \(D,\), \(C, L\) or \(C, H, W\)"):
        bn.init(fnnet.key(0), (3, 4, 1, 1))
    with pytest.raises(ValueError, match=r"BatchNorm: expected state.mean .* shape \(4,\), got shape \(3,\)"):
        bn.forward(p, bn.init_state((3,)), np.zeros((3, 4), np.float32), TRAIN)
    with pytest.raises(ValueError, match=r"BatchNorm: expected state to be a BatchNormState, got tuple"):
        bn.forward(p, (np.zeros(4), np.ones(4), np.asarray(1)), np.zeros((3, 4), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"BatchNorm: expected state.count as a 0-d integer array, got shape \(1,\)"):
        bn.forward(p, BatchNormState(np.zeros(4), np.ones(4), np.ones(1, np.int64)), np.zeros((3, 4), np.float32))
    _, _, cache = bn.forward(p, None, np.ones((3, 4), np.float32), TRAIN)
    with pytest.raises(ValueError, match=r"BatchNorm.backward: expected dout of shape \(3, 4\), got \(3, 5\)"):
        bn.backward(p, cache, np.ones((3, 5), np.float32))
    _, _, cache = bn.forward(p, None, np.ones((3, 4, 6), np.float32), TRAIN)
    with pytest.raises(ValueError, match=r"BatchNorm.backward: expected dout of shape \(3, 4, 1, 6\), got \(3, 4, 1, 5\)"):
        bn.backward(p, cache, np.ones((3, 4, 5), np.float32))


# --- through serial ---------------------------------------------------------------------------------


def test_serial_threads_state() -> None:
    model = serial(Affine(6), BatchNorm(momentum=0.8), ReLU(), Affine(3))
    in_shape = (5,)
    params, _ = model.init(fnnet.key(1), in_shape)
    state = model.init_state(in_shape)
    assert isinstance(state, tuple) and len(state) == 4
    assert state[0] is None and state[2] is None and state[3] is None
    assert isinstance(state[1], BatchNormState) and state[1].mean.shape == (6,) and int(state[1].count) == 0
    assert isinstance(params[1], BatchNormParams)
    assert fnnet.tree_size(params) == (5 * 6 + 6) + (6 + 6) + (6 * 3 + 3)  # no running statistics

    x = rng(6).standard_normal((8, 5)).astype(np.float32)
    with pytest.raises(ValueError, match=r"layer 1 \(BatchNorm\): .*never updated"):
        model.forward(params, state, x)
    with pytest.raises(ValueError, match=r"layer 1 \(BatchNorm\): .*state is None"):
        model.apply(params, x)  # no state at all

    for step in range(1, 3):
        prev = state
        _, state, _ = model.forward(params, state, x, TRAIN)
        h = model.layers[0].apply(params[0], x)  # BatchNorm's input
        assert isinstance(state, tuple) and len(state) == 4 and state[0] is None
        np.testing.assert_allclose(state[1].mean, 0.8 * prev[1].mean + 0.2 * h.mean(axis=0), rtol=1e-5, atol=1e-6)
        assert int(state[1].count) == step and int(prev[1].count) == step - 1  # the old state is intact

    y, same, _ = model.forward(params, state, x)
    assert same == state and same[1] is state[1]
    h = model.layers[0].apply(params[0], x)
    h = BatchNorm(momentum=0.8).apply(params[1], h, state=state[1])
    expected = model.layers[3].apply(params[3], np.maximum(h, 0))
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_serial_4d_state_and_gradients() -> None:
    model = serial(BatchNorm(), Flatten(), Affine(3))
    in_shape = (2, 3, 3)
    params = tree_astype(model.init(fnnet.key(2), in_shape)[0], np.float64)
    params = (_params64((2,)),) + params[1:]
    state = tree_astype(model.init_state(in_shape), np.float64)
    assert state[0].mean.shape == (2,)
    x = _inputs(in_shape, n=4)
    check = assert_grads_ok(model, params, x, state=state, ctx=TRAIN, key=PROJ_KEY, tol=GRAD_TOL)
    assert "0/gamma" in check.errors and "2/w" in check.errors
    new = model.forward(params, state, x, TRAIN)[1]
    np.testing.assert_allclose(new[0].mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    assert_grads_ok(model, params, x, state=new, key=PROJ_KEY, tol=GRAD_TOL)


# --- the batch sum ----------------------------------------------------------------------------------


def _twice(a: Array) -> Array:
    """The batch sum of two shards whose partial sums are equal (the shard and a copy of it)."""
    return a + a


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
def test_a_shard_is_normalised_as_the_whole_batch_through_batch_sum(in_shape: Shape) -> None:
    """A shard whose ``batch_sum`` adds the other shard's partial sums gives its rows of the whole
    batch's output, the whole batch's running statistics and input gradient, and its share of the
    parameter gradients. Here the other shard is a copy of this one, so its sums are this one's."""
    bn, p, state = BatchNorm(), _params64(in_shape), _trained_state(in_shape)
    x = _inputs(in_shape, n=3)
    dout = rng(8).standard_normal(x.shape)
    whole = np.concatenate([x, x])
    y_all, state_all, cache_all = bn.forward(p, state, whole, TRAIN)
    dx_all, g_all = bn.backward(p, cache_all, np.concatenate([dout, dout]))

    y, new, cache = bn.forward(p, state, x, Ctx(train=True, batch_sum=_twice))
    assert isinstance(cache, BatchNormCache) and cache.batch_sum is _twice
    assert cache.m == cache_all.m == whole.size // in_shape[0]  # values per channel in the whole batch
    dx, g = bn.backward(p, cache, dout)
    np.testing.assert_allclose(y, y_all[:3], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_all[:3], rtol=1e-10, atol=1e-12)
    for a, b in zip(tree_leaves(new), tree_leaves(state_all)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(2 * g.gamma, g_all.gamma, rtol=1e-10)  # the shares sum to the whole
    np.testing.assert_allclose(2 * g.beta, g_all.beta, rtol=1e-10)


@pytest.mark.parametrize("in_shape", ALL_SHAPES)
def test_every_shard_makes_the_same_batch_sum_calls(in_shape: Shape) -> None:
    """Shards of different sizes exchange the same sequence of shapes (else the exchange would hang)."""
    bn, p = BatchNorm(), _params64(in_shape)
    calls: dict[int, list[tuple[int, ...]]] = {}
    for n in (2, 5):
        seen: list[tuple[int, ...]] = []

        def recording(a: Array) -> Array:
            seen.append(a.shape)
            return a

        x = _inputs(in_shape, n=n)
        _, _, cache = bn.forward(p, None, x, Ctx(train=True, batch_sum=recording))
        bn.backward(p, cache, np.ones_like(x))
        bn.backward(p, cache, np.ones_like(x), input_grad=False)
        calls[n] = seen
    c = in_shape[0]
    assert calls[2] == calls[5] == [(c + 1,), (c,), (2 * c,)]


def test_evaluation_never_calls_batch_sum() -> None:
    def forbidden(a: Array) -> Array:
        raise AssertionError("batch_sum called in evaluation")

    bn, p = BatchNorm(), _params64((4,))
    x = _inputs((4,))
    _, _, cache = bn.forward(p, _trained_state((4,)), x, Ctx(batch_sum=forbidden))
    bn.backward(p, cache, np.ones_like(x))


# --- memory layouts ----------------------------------------------------------------------------------


def _channels_last(a: Array) -> Array:
    """``a`` (N, C, H, W) as a view of new (N, H, W, C) memory, as a convolution outputs it."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dout_layout", ["channels-last", "contiguous"])
def test_channels_last_inputs_give_the_contiguous_results(train: bool, dout_layout: str) -> None:
    """Channels-last memory (a convolution's output) takes another route through forward and
    backward; outputs, state and gradients agree with those of the same values in NCHW order,
    and the output and input gradient keep the input's memory layout."""
    in_shape = (3, 4, 5)
    bn, p, state = BatchNorm(), _params64(in_shape), _trained_state(in_shape)
    x = _inputs(in_shape, n=4)
    dout = rng(9).standard_normal(x.shape)
    ctx = TRAIN if train else EVAL
    y, s, cache = bn.forward(p, state, x, ctx)
    dx, g = bn.backward(p, cache, dout)
    xl = _channels_last(x)
    yl, sl, cache_l = bn.forward(p, state, xl, ctx)
    dxl, gl = bn.backward(p, cache_l, _channels_last(dout) if dout_layout == "channels-last" else dout)
    for a, b in zip(tree_leaves((y, s, dx, g)), tree_leaves((yl, sl, dxl, gl))):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    assert yl.transpose(0, 2, 3, 1).flags.c_contiguous
    if dout_layout == "channels-last":
        assert dxl.transpose(0, 2, 3, 1).flags.c_contiguous
    _, gl_only = bn.backward(p, cache_l, _channels_last(dout), input_grad=False)
    np.testing.assert_allclose(gl_only.gamma, g.gamma, rtol=1e-12, atol=1e-12)


def test_non_contiguous_2d_input_gives_the_contiguous_results() -> None:
    bn, p = BatchNorm(), _params64((4,))
    wide = _inputs((8,), n=6)
    x = wide[:, ::2]  # strided rows: the general route
    dout = rng(10).standard_normal(x.shape)
    y, _, cache = bn.forward(p, None, x, TRAIN)
    yc, _, cache_c = bn.forward(p, None, np.ascontiguousarray(x), TRAIN)
    np.testing.assert_allclose(y, yc, rtol=1e-12, atol=1e-12)
    for a, b in zip(tree_leaves(bn.backward(p, cache, dout)), tree_leaves(bn.backward(p, cache_c, dout))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_a_1d_signal_is_normalised_as_the_same_signal_seen_as_one_row_images() -> None:
    """BatchNorm on (N, C, L), e.g. after a Conv1D, is BatchNorm on (N, C, 1, L), bit for bit, in
    training and evaluation, for C-contiguous and channels-last inputs (a Conv1D's output)."""
    bn = BatchNorm()
    conv = fnnet.Conv1D(3, 3, pad=1)
    cp, _ = conv.init(fnnet.key(0), (2, 9))
    x_conv = conv.apply(cp, rng(5).standard_normal((4, 2, 9)).astype(np.float32))
    p = bn.init(fnnet.key(0), (3, 9))[0]
    for x in (np.ascontiguousarray(x_conv), x_conv):
        dout = rng(6).standard_normal(x.shape).astype(np.float32)
        y, state, cache = bn.forward(p, None, x, TRAIN)
        y4, state4, cache4 = bn.forward(p, None, x[:, :, None, :], TRAIN)
        assert y.shape == x.shape
        assert_bit_identical((y, state), (y4[:, :, 0, :], state4))
        dx, grads = bn.backward(p, cache, dout)
        dx4, grads4 = bn.backward(p, cache4, dout[:, :, None, :])
        assert dx.shape == x.shape
        assert_bit_identical((dx, grads), (dx4[:, :, 0, :], grads4))
        ye = bn.apply(p, x, state=state)
        assert_bit_identical(ye, bn.apply(p, x[:, :, None, :], state=state)[:, :, 0, :])
    model = fnnet.serial(fnnet.Conv1D(4, 3, pad=1), BatchNorm(), fnnet.ReLU(), fnnet.Flatten(), fnnet.Affine(2))
    assert str(fnnet.summary(model, (2, 9))).count("BatchNorm") == 1
    params, _ = model.init(fnnet.key(1), (2, 9))
    _, new_state, _ = model.forward(params, model.init_state((2, 9)), np.ones((3, 2, 9), np.float32), TRAIN)
    assert new_state[1].mean.shape == (4,) and int(new_state[1].count) == 1
