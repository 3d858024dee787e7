"""Numerics left over: integer input to Identity and Flatten, float16 softmax cross-entropy whose
logits span more than float16's range, weight decay on a model without parameters, and the loss
and optimizer edge cases found with them (the comment on each test says what used to happen)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, normal

import fnnet
from fnnet import losses as L
from fnnet.layers.base import Layer
from fnnet.typing import Array


# --- 1. Identity and Flatten take floating point input, as every other layer ----------------------


@pytest.mark.parametrize("layer", [fnnet.Identity(), fnnet.Flatten()], ids=repr)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_identity_and_flatten_refuse_non_float_input(layer: Layer, dtype: Any) -> None:
    # both passed an integer array through unchanged while ReLU, Affine, Softmax, pools ... refused it
    x = np.ones((2, 3, 2), dtype)
    name = type(layer).__name__
    pattern = rf"^{name}: expected a floating point input, got dtype {np.dtype(dtype)}$"
    with pytest.raises(ValueError, match=pattern):
        layer.forward(None, None, x)
    with pytest.raises(ValueError, match=pattern):
        layer.apply(None, x)


@pytest.mark.parametrize("layer", [fnnet.Identity(), fnnet.Flatten()], ids=repr)
def test_identity_and_flatten_refusal_names_the_pipeline_position(layer: Layer) -> None:
    model = fnnet.serial(layer, fnnet.ReLU())
    with pytest.raises(ValueError, match=rf"^layer 0 \({type(layer).__name__}\): {type(layer).__name__}: expected a floating"):
        model.apply((None, None), np.ones((2, 3), np.int64))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_identity_and_flatten_still_pass_floats(dtype: Any) -> None:
    x = np.arange(12, dtype=dtype).reshape(2, 3, 2)
    assert fnnet.Identity().apply(None, x) is x
    y = fnnet.Flatten().apply(None, x)
    assert y.dtype == dtype and y.shape == (2, 6) and np.array_equal(y.ravel(), x.ravel())


# --- 2. float16 losses and softmax computed in float32; float32 and float64 unchanged -------------
#
# The references below are the loss formulas in the operation order the implementation used before
# float16 was widened: float32 and float64 results must stay bit-identical to them.


def _ref_softmax_ce(x: Array, t: Array) -> tuple[float, Array]:
    n = x.size // x.shape[-1]
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=-1, keepdims=True)
    log_s = np.log(s)
    if t.shape == x.shape[:-1]:
        at = (np.arange(n), t) if x.ndim == 2 else (*np.indices(t.shape, sparse=True), t)
        loss = (float(log_s.sum()) - float(z[at].sum())) / n
        grad = e * ((1.0 / n) / s)
        grad[at] -= 1.0 / n
        return loss, grad
    ta = t.astype(x.dtype)
    z -= log_s
    loss = -float(np.vdot(ta, z)) / n
    grad = e * (ta.sum(axis=-1, keepdims=True) / s) - ta
    grad *= 1.0 / n
    return loss, grad


def _ref_time_softmax_ce(x: Array, t: Array, ignore: int) -> tuple[float, Array]:
    v = x.shape[-1]
    x2, t2 = x.reshape(-1, v), t.reshape(-1)
    keep = t2 != ignore
    rows = np.flatnonzero(keep)
    labels = t2[rows]
    m = labels.size
    z = x2 - x2.max(axis=-1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=-1, keepdims=True)
    loss = (float(np.log(s[rows, 0]).sum()) - float(z[rows, labels].sum())) / m
    grad = e * ((1.0 / m) / s)
    grad[~keep] = 0
    grad[rows, labels] -= 1.0 / m
    return loss, grad.reshape(x.shape)


def _ref_others(y: Array, t: Array, labels: Array, p: Array, t01: Array) -> dict[str, tuple[float, Array]]:
    d = y - t
    n = y.size
    k = y.shape[-1]
    at = (np.arange(labels.size), labels)
    picked = p[at] + 1e-7
    ce_grad = np.zeros_like(p)
    ce_grad[at] = -1.0 / (picked * labels.size)
    guarded = p + 1e-7
    onehot = (labels[:, None] == np.arange(k)).astype(y.dtype)
    pos, neg = p + 1e-7, (1.0 - p) + 1e-7
    a = np.abs(d)
    quad = np.minimum(a, 1.0)
    return {
        "sse": (0.5 * float(np.vdot(d, d)), d),
        "mse": (float(np.vdot(d, d)) / n, d * (2.0 / n)),
        "ce_labels": (-float(np.log(picked).sum()) / labels.size, ce_grad),
        "ce_onehot": (-float(np.vdot(onehot, np.log(guarded))) / labels.size, onehot / guarded * (-1.0 / labels.size)),
        "bce_logits": (
            float((np.maximum(y, 0) - y * t01 + np.log1p(np.exp(-np.abs(y)))).sum()) / n,
            (fnnet.functions.sigmoid(y) - t01) * (1.0 / n),
        ),
        "bce": (
            -(float(np.vdot(t01, np.log(pos))) + float(np.vdot(1.0 - t01, np.log(neg)))) / n,
            ((1.0 - t01) / neg - t01 / pos) * (1.0 / n),
        ),
        "huber": (float((0.5 * quad * quad + 1.0 * (a - quad)).sum()) / n, np.clip(d, -1.0, 1.0) * (1.0 / n)),
    }


def _assert_same(got: tuple[float, Array], want: tuple[float, Array], dtype: Any) -> None:
    assert got[0] == want[0], (got[0], want[0])
    assert got[1].dtype == dtype and want[1].dtype == dtype
    assert_bit_identical(got[1], want[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_losses_are_bit_identical_to_the_reference(dtype: Any) -> None:
    x = normal((16, 5), 1, dtype=dtype) * 4
    labels = np.arange(16) % 5
    soft = np.random.default_rng(2).dirichlet(np.ones(5), size=16)
    _assert_same(L.softmax_cross_entropy(x, labels), _ref_softmax_ce(x, labels), dtype)
    _assert_same(L.softmax_cross_entropy(x, soft), _ref_softmax_ce(x, soft), dtype)
    x3 = x.reshape(2, 8, 5)
    _assert_same(L.softmax_cross_entropy(x3, labels.reshape(2, 8)), _ref_softmax_ce(x3, labels.reshape(2, 8)), dtype)
    t3 = labels.reshape(2, 8).copy()
    t3[0, :3] = -1
    _assert_same(L.time_softmax_cross_entropy(x3, t3, ignore_index=-1), _ref_time_softmax_ce(x3, t3, -1), dtype)
    p = fnnet.functions.softmax(x)
    p[0, labels[0]] = 0.0  # the log guard at work
    t = normal((16, 5), 3, dtype=dtype)
    t01 = (normal((16, 5), 4) > 0).astype(dtype)
    ref = _ref_others(x, t, labels, p, t01)
    _assert_same(L.sum_squared_error(x, t), ref["sse"], dtype)
    _assert_same(L.mean_squared_error(x, t), ref["mse"], dtype)
    _assert_same(L.cross_entropy(p, labels), ref["ce_labels"], dtype)
    _assert_same(L.cross_entropy(p, np.eye(5)[labels]), ref["ce_onehot"], dtype)
    _assert_same(L.binary_cross_entropy_with_logits(x, t01), ref["bce_logits"], dtype)
    _assert_same(L.binary_cross_entropy(p, t01), ref["bce"], dtype)
    _assert_same(L.huber(x, t), ref["huber"], dtype)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    assert_bit_identical(fnnet.functions.softmax(x), e / e.sum(axis=-1, keepdims=True))
    z = x - x.max(axis=-1, keepdims=True)
    assert_bit_identical(fnnet.functions.log_softmax(x), z - np.log(np.exp(z).sum(axis=-1, keepdims=True)))


WIDE16 = np.array([[-40000.0, 40000.0], [40000.0, -40000.0], [1.0, -2.0]], np.float16)


@pytest.mark.parametrize(
    ("t", "value"),
    [
        (np.array([0, 0, 0]), (80000.0 + 0.0 + np.log1p(np.exp(-3.0))) / 3),
        (np.array([1, 0, 1]), (0.0 + 0.0 + 3.0 + np.log1p(np.exp(-3.0))) / 3),
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), (80000.0 + 80000.0 + 3.0 + np.log1p(np.exp(-3.0))) / 3),
        (np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]), np.log1p(np.exp(-3.0)) / 3),  # was nan: 0 · -inf
        (np.array([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]]), (40000.0 + 40000.0 + np.log1p(np.exp(-3.0))) / 3),
    ],
)
def test_float16_softmax_cross_entropy_of_logits_spanning_more_than_65504(t: Array, value: float) -> None:
    # x - max(x) = -80000 overflowed float16 to -inf: the loss was inf (labels, one-hot) or nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = L.softmax_cross_entropy(WIDE16, t)
    assert loss == pytest.approx(value, rel=1e-6)
    assert grad.dtype == np.float16 and np.isfinite(grad).all()
    ref_loss, ref_grad = L.softmax_cross_entropy(WIDE16.astype(np.float32), t)
    assert loss == ref_loss and np.array_equal(grad, ref_grad.astype(np.float16))


def test_float16_time_softmax_cross_entropy_and_softmax_of_wide_logits() -> None:
    x = WIDE16[None]  # (1, 3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = L.time_softmax_cross_entropy(x, np.array([[0, 1, -1]]), ignore_index=-1)
        p = fnnet.functions.softmax(WIDE16)
        log_p = fnnet.functions.log_softmax(WIDE16 / 2)
        y = fnnet.Softmax().apply(None, WIDE16)
    assert loss == 80000.0 and grad.dtype == np.float16
    assert grad.tolist() == [[[-0.5, 0.5], [0.5, -0.5], [0.0, 0.0]]]
    assert p.dtype == np.float16 and p[:2].tolist() == [[0.0, 1.0], [1.0, 0.0]] and np.array_equal(y, p)
    assert log_p.dtype == np.float16 and log_p[:2].tolist() == [[-40000.0, 0.0], [0.0, -40000.0]]


@pytest.mark.parametrize("name", ["sse", "mse", "ce", "sce", "bce_logits", "bce", "huber", "time"])
def test_float16_losses_equal_float32_on_the_same_values(name: str) -> None:
    """Each float16 loss is the float32 loss of the same numbers, its gradient rounded once."""
    x32 = (normal((70, 4), 5) * 3).astype(np.float16).astype(np.float32)
    p32 = fnnet.functions.softmax(x32).astype(np.float16).astype(np.float32)
    labels = np.arange(70) % 4
    t01 = (normal((70, 4), 6) > 0).astype(np.float32)
    fns: dict[str, tuple[Callable[..., tuple[float, Array]], Array, Array]] = {
        "sse": (L.sum_squared_error, x32, labels),
        "mse": (L.mean_squared_error, x32, t01),
        "ce": (L.cross_entropy, p32, labels),
        "sce": (L.softmax_cross_entropy, x32, labels),
        "bce_logits": (L.binary_cross_entropy_with_logits, x32, t01),
        "bce": (L.binary_cross_entropy, p32, t01),
        "huber": (L.huber, x32, t01),
        "time": (L.time_softmax_cross_entropy, x32.reshape(7, 10, 4), labels.reshape(7, 10)),
    }
    fn, y, t = fns[name]
    v16, g16 = fn(y.astype(np.float16), t)
    v32, g32 = fn(y, t)
    assert v16 == v32 and g16.dtype == np.float16 and np.array_equal(g16, g32.astype(np.float16))


def test_float16_cross_entropy_of_more_than_65504_rows_has_a_gradient() -> None:
    # picked * N with N = 70000 Python int was taken in float16: N became inf and the gradient 0
    p = np.full((70_000, 2), 0.5, np.float16)
    value, grad = L.cross_entropy(p, np.zeros(70_000, np.int64))
    assert value == pytest.approx(np.log(2), rel=1e-6)
    assert grad.dtype == np.float16 and grad[0, 0] == np.float16(-1 / 35_000) and grad[0, 1] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_minus_inf_logits_with_probability_targets(dtype: Any) -> None:
    # a -inf logit (a masked class) with target 0 gave 0 · -inf = nan with probability targets,
    # while integer labels gave the right loss
    x = np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, 0.0]], dtype)
    t = np.array([[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]])
    value, grad = L.softmax_cross_entropy(x, t)
    lp = fnnet.functions.log_softmax(x)
    expected = -(0.25 * lp[0, 1] + 0.75 * lp[0, 2] + lp[1, 0]) / 2
    assert value == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(grad).all() and grad[0, 0] == 0 and grad[1, 1] == 0
    assert L.softmax_cross_entropy(x, np.eye(3)[[2, 0]])[0] == pytest.approx(L.softmax_cross_entropy(x, np.array([2, 0]))[0])
    # the target class itself masked is an infinite loss; a nan logit stays nan
    assert L.softmax_cross_entropy(x, np.eye(3)[[0, 0]])[0] == np.inf
    assert np.isnan(L.softmax_cross_entropy(np.array([[np.nan, 0.0]], dtype), np.array([[0.0, 1.0]]))[0])


# --- 3. weight decay on a model without parameters ------------------------------------------------


@pytest.mark.parametrize("params", [None, (), (None, None), {"a": None, "b": ()}], ids=repr)
@pytest.mark.parametrize("mask", [None, lambda p: p], ids=["default-mask", "callable-mask"])
def test_decoupled_decay_of_an_empty_tree_is_the_empty_update(params: Any, mask: Any) -> None:
    # update(grads, state, None) raised "update needs params" although there was nothing to decay
    for opt in (fnnet.optim.adamw(0.1, mask=mask), fnnet.optim.add_decayed_weights(0.1, mask)):
        state = opt.init(params)
        for p in (params, None):
            updates, _ = opt.update(params, state, p)
            assert updates == params
        new, _ = fnnet.optim.apply_optimizer(opt, params, state, params)
        assert new == params
    decay = fnnet.optim.add_decayed_weights(0.1, mask)
    assert decay.update((None, None), decay.init(()), ())[0] == (None, None)  # two spellings of no leaves


def test_decoupled_decay_still_needs_params_when_there_are_leaves() -> None:
    grads = (None, {"w": np.ones((2, 2))})
    for opt in (fnnet.optim.adamw(0.1), fnnet.optim.add_decayed_weights(0.1)):
        with pytest.raises(ValueError, match=r"^add_decayed_weights: update needs params \(call update\(grads, state, params\)\)$"):
            opt.update(grads, opt.init(grads))


@pytest.mark.parametrize("model", [fnnet.ReLU(), fnnet.serial(fnnet.ReLU(), fnnet.Flatten())], ids=repr)
@pytest.mark.parametrize("how", ["adamw", "chained-decay", "fit-weight_decay"])
def test_fit_a_parameterless_model_with_weight_decay(model: Layer, how: str) -> None:
    # fit(ReLU(), adamw(...)) stopped at the first step: its params are None
    x = normal((12, 3), 7, dtype=np.float32)
    t = np.arange(12) % 3
    opt = {
        "adamw": fnnet.optim.adamw(0.01),
        "chained-decay": fnnet.optim.chain(fnnet.optim.add_decayed_weights(0.1, lambda p: p), fnnet.optim.sgd(0.1)),
        "fit-weight_decay": fnnet.optim.sgd(0.1),
    }[how]
    result = fnnet.fit(model, opt, (x, t), key=fnnet.key(0), epochs=1, batch_size=5, progress="quiet",
                       weight_decay=0.1 if how == "fit-weight_decay" else 0.0)  # fmt: skip
    value, _ = L.softmax_cross_entropy(model.apply(result.state.params, x), t)
    assert len(result.history.step_loss) == 3 and result.history.epochs[0]["train_loss"] == pytest.approx(value)
    assert fnnet.tree.tree_leaves(result.state.params) == []


# --- 4. found on the way --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adam", "adagrad", "rmsprop"])
def test_float16_adaptive_optimizers_equal_float32_on_the_same_values(name: str) -> None:
    # g * g was taken in float16: for |g| > 256 the moment was inf and the update 0 (the leaf never
    # moved again), for |g| below about 0.008 it was 0 and the update m / eps, Adam's 266 times and
    # RMSprop's 840 times too large at g = 1e-3
    direction = {"adam": fnnet.optim.scale_by_adam(), "adagrad": fnnet.optim.scale_by_adagrad(),
                 "rmsprop": fnnet.optim.scale_by_rms()}[name]  # fmt: skip
    named = {"adam": fnnet.optim.adamw(1e-3, 0.1), "adagrad": fnnet.optim.adagrad(1e-3), "rmsprop": fnnet.optim.rmsprop(1e-3)}[name]
    r = np.random.default_rng(9)
    p16 = {"w": r.standard_normal((4, 3)).astype(np.float16), "b": np.zeros(3, np.float16)}
    p32 = fnnet.tree.tree_astype(p16, np.float32)
    d16, d32, n16, n32 = direction.init(p16), direction.init(p32), named.init(p16), named.init(p32)
    for scale in (1e-3, 300.0, 1.0):
        g16 = fnnet.tree.tree_map(lambda p: (r.standard_normal(p.shape) * scale).astype(np.float16), p16)
        g32 = fnnet.tree.tree_astype(g16, np.float32)
        u16, d16 = direction.update(g16, d16)
        u32, d32 = direction.update(g32, d32)
        for a, b in zip(fnnet.tree.tree_leaves(u16), fnnet.tree.tree_leaves(u32)):
            assert a.dtype == np.float16 and np.array_equal(a, b.astype(np.float16))
        assert_bit_identical(d16, d32)  # the moments of float16 leaves are float32
        u16, n16 = named.update(g16, n16, p16)
        u32, n32 = named.update(g32, n32, p32)
        for a, b in zip(fnnet.tree.tree_leaves(u16), fnnet.tree.tree_leaves(u32)):
            assert a.dtype == np.float16 and np.isfinite(a).all()
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-7)
            assert 0 < np.abs(a).max() <= 1.01e-2  # about lr per coordinate (RMSprop's first steps up to 10 lr)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_adaptive_directions_are_bit_identical_to_the_book(dtype: Any) -> None:
    r = np.random.default_rng(10)
    g = [r.standard_normal((3, 4)).astype(dtype), np.asarray(0.5, dtype)]
    ada, rms, adam = fnnet.optim.scale_by_adagrad(), fnnet.optim.scale_by_rms(0.9), fnnet.optim.scale_by_adam()
    sa, sr, sm = ada.init(g), rms.init(g), adam.init(g)
    h = [np.zeros_like(x) for x in g]
    q = [np.zeros_like(x) for x in g]
    m = [np.zeros_like(x) for x in g]
    v = [np.zeros_like(x) for x in g]
    for t in (1, 2):
        ua, sa = ada.update(g, sa)
        ur, sr = rms.update(g, sr)
        um, sm = adam.update(g, sm)
        corr = np.sqrt(1.0 - 0.999**t) / (1.0 - 0.9**t)
        for i, x in enumerate(g):
            h[i] = h[i] + x * x
            q[i] = 0.9 * q[i] + (1.0 - 0.9) * (x * x)
            m[i] = 0.9 * m[i] + (1.0 - 0.9) * x
            v[i] = 0.999 * v[i] + (1.0 - 0.999) * (x * x)
            assert_bit_identical(ua[i], x / (np.sqrt(h[i]) + 1e-7))
            assert_bit_identical(ur[i], x / (np.sqrt(q[i]) + 1e-7))
            assert_bit_identical(um[i], float(corr) * m[i] / (np.sqrt(v[i]) + 1e-7))
        assert_bit_identical((sa.sum_sq, sr.mean_sq, sm.mu, sm.nu), (h, q, m, v))
