"""Recurrent layers and their scan kernels: gradients (float64), the initial state, truncated BPTT,
the sequel's LSTM equations and PyTorch's GRU convention, and errors that name the layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, assert_grads_ok, init64, normal

import fnnet
from fnnet.layers.base import TRAIN, Layer
from fnnet.layers.recurrent import (
    GRU,
    LSTM,
    RNN,
    GRUParams,
    LSTMParams,
    LSTMState,
    RNNParams,
    RNNState,
    gru_cell,
    gru_scan,
    gru_scan_backward,
    lstm_cell,
    lstm_scan,
    lstm_scan_backward,
    rnn_cell,
    rnn_scan,
    rnn_scan_backward,
)
from fnnet.numerical import numerical_gradient
from fnnet.typing import Array

N, T, D, H = 3, 4, 2, 3
RECURRENT: list[type[Layer]] = [RNN, LSTM, GRU]
GRAD_TOL = 1e-6


def _state(make: type[Layer], n: int = N, h: int = H, seed: int = 5, dtype: Any = np.float64) -> Any:
    """A non-zero initial state for ``make``'s layers."""
    if make is LSTM:
        return LSTMState(normal((n, h), seed, dtype=dtype), normal((n, h), seed + 1, dtype=dtype))
    return RNNState(normal((n, h), seed, dtype=dtype))


def _params64(make: type[Layer], seed: int = 0) -> Any:
    """float64 params with non-zero biases (the default init has zero biases)."""
    params, _ = init64(make(H), (T, D), seed)  # type: ignore[call-arg]
    return params._replace(b=normal(params.b.shape, seed, 7))


# --- gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_layer_gradients_from_a_non_zero_initial_state(make: type[Layer], return_sequences: bool) -> None:
    layer = make(H, return_sequences=return_sequences)  # type: ignore[call-arg]
    params = _params64(make)
    check = assert_grads_ok(layer, params, normal((N, T, D), 1), state=_state(make), tol=GRAD_TOL)
    assert set(check.errors) == set(params._fields) | {"x"}


def _scan_problem(make: type[Layer]) -> tuple[Any, Callable[..., Any], Callable[..., Any], tuple[Array, ...]]:
    params = _params64(make)
    if make is GRU:
        params = params._replace(bhn=normal((H,), 8))
    state = tuple(_state(make))
    scans: dict[type[Layer], tuple[Callable[..., Any], Callable[..., Any]]] = {
        RNN: (rnn_scan, rnn_scan_backward), LSTM: (lstm_scan, lstm_scan_backward), GRU: (gru_scan, gru_scan_backward)
    }  # fmt: skip
    scan, scan_backward = scans[make]
    return params, scan, scan_backward, state


@pytest.mark.parametrize("which", ["all", "hs-only", "final-only"])
@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_scan_gradients_reach_x_params_and_the_initial_state(make: type[Layer], which: str) -> None:
    params, scan, scan_backward, state = _scan_problem(make)
    x = normal((N, T, D), 2)
    r_hs = normal((N, T, H), 3) if which != "final-only" else None
    r_final = [normal((N, H), 4 + i) if which != "hs-only" else None for i in range(len(state))]

    def value(tree: Any) -> float:
        p, xx, st = tree
        hs, final, _ = scan(p, xx, *st)
        finals = final if isinstance(final, tuple) else (final,)
        total = 0.0 if r_hs is None else float(np.sum(hs * r_hs))
        return total + sum(float(np.sum(f * r)) for f, r in zip(finals, r_final) if r is not None)

    _, _, cache = scan(params, x, *state)
    dx, *d_state, grads = scan_backward(params, cache, r_hs, *r_final)
    num_p, num_x, num_state = numerical_gradient(value, (params, x, state))
    np.testing.assert_allclose(dx, num_x, rtol=1e-6, atol=1e-8)
    for analytic, numeric in zip(d_state, num_state):
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    for name, analytic, numeric in zip(params._fields, grads, num_p):
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=name)
    assert len(d_state) == len(state) and np.any(d_state[0])


@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_scan_without_input_grad_skips_only_dx(make: type[Layer]) -> None:
    params, scan, scan_backward, state = _scan_problem(make)
    hs, _, cache = scan(params, normal((N, T, D), 2), *state)
    dhs = normal(hs.shape, 3)
    on = scan_backward(params, cache, dhs)
    off = scan_backward(params, cache, dhs, input_grad=False)
    assert not off[0].flags.writeable and not np.any(off[0]) and off[0].shape == (N, T, D)
    assert_bit_identical(off[1:], on[1:])


@pytest.mark.parametrize("initial", ["given", "zeros"])
def test_lstm_x_const_is_a_concatenated_input_with_its_own_gradient(initial: str) -> None:
    """``x_const`` (N, Dc) acts as if concatenated before every ``x_t``; its gradient, the
    parameters', ``dx`` and the initial state's match central differences, also when the
    initial state is ``None`` (the kernel then skips the products with it)."""
    dc_ = 2
    params = _params64(LSTM)._replace(wx=normal((dc_ + D, 4 * H), 9))
    x, x_const = normal((N, T, D), 2), normal((N, dc_), 10)
    state = tuple(_state(LSTM)) if initial == "given" else (np.zeros((N, H)), np.zeros((N, H)))
    r_hs, r_h, r_c = normal((N, T, H), 3), normal((N, H), 4), normal((N, H), 5)
    hs, (h_t, c_t), cache = lstm_scan(params, x, *(state if initial == "given" else ()), x_const=x_const)
    joined = np.concatenate([np.broadcast_to(x_const[:, None], (N, T, dc_)), x], axis=2)
    hs_cat, (h_cat, c_cat), _ = lstm_scan(params, joined, *state)
    np.testing.assert_allclose(hs, hs_cat, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_t, c_cat, rtol=1e-12, atol=1e-14)

    def value(tree: Any) -> float:
        p, xx, xc, st = tree
        hs_, (h_, c_), _ = lstm_scan(p, xx, *st, x_const=xc)
        return float(np.sum(hs_ * r_hs) + np.sum(h_ * r_h) + np.sum(c_ * r_c))

    dx, dh0, dc0, grads, dx_const = lstm_scan_backward(params, cache, r_hs, r_h, r_c, const_grad=True)
    num_p, num_x, num_xc, num_state = numerical_gradient(value, (params, x, x_const, state))
    for name, analytic, numeric in [("x", dx, num_x), ("x_const", dx_const, num_xc), ("h0", dh0, num_state[0]),
                                    ("c0", dc0, num_state[1]), *zip(params._fields, grads, num_p)]:  # fmt: skip
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=name)
    assert grads.wx.shape == params.wx.shape and dx_const.shape == (N, dc_) and np.any(dx_const)


def test_lstm_without_state_grad_skips_only_the_initial_state_gradients() -> None:
    params = _params64(LSTM)
    for state in [tuple(_state(LSTM)), ()]:
        hs, _, cache = lstm_scan(params, normal((N, T, D), 2), *state)
        dhs = normal(hs.shape, 3)
        on = lstm_scan_backward(params, cache, dhs, normal((N, H), 4))
        off = lstm_scan_backward(params, cache, dhs, normal((N, H), 4), state_grad=False)
        for skipped in off[1:3]:
            assert not skipped.flags.writeable and not np.any(skipped) and skipped.shape == (N, H)
        assert np.any(on[1]) and np.any(on[2])
        assert_bit_identical((off[0], off[3]), (on[0], on[3]))


# --- semantics -----------------------------------------------------------------------------------


def _sig(a: Array) -> Array:
    out: Array = 1.0 / (1.0 + np.exp(-a))
    return out


def test_lstm_follows_the_sequels_equations_with_gates_f_g_i_o() -> None:
    """A hand-made example, computed here with the sequel's equations and its (f, g, i, o) blocks."""
    h_size = 2
    wx = np.array([[0.5, -1.0, 0.25, 2.0, -0.5, 1.0, 0.0, 0.75]])  # D = 1, blocks f | g | i | o
    wh = np.arange(16, dtype=np.float64).reshape(2, 8) / 10 - 0.8
    b = np.array([1.0, 0.0, -1.0, 0.5, 0.0, 0.25, 2.0, -2.0])
    xs = np.array([[[1.0], [-2.0], [0.5]]])  # N = 1, T = 3
    h, c = np.array([[0.1, -0.2]]), np.array([[0.3, 0.4]])
    expected_h, expected_c = [], []
    for t in range(3):
        a = xs[:, t] @ wx + h @ wh + b
        f, g, i, o = a[:, 0:2], a[:, 2:4], a[:, 4:6], a[:, 6:8]
        c = _sig(f) * c + np.tanh(g) * _sig(i)
        h = _sig(o) * np.tanh(c)
        expected_h.append(h)
        expected_c.append(c)
    layer = LSTM(h_size)
    state0 = LSTMState(np.array([[0.1, -0.2]]), np.array([[0.3, 0.4]]))
    hs, _, _ = layer.forward(LSTMParams(wx, wh, b), state0, xs)
    np.testing.assert_allclose(hs[0], np.concatenate(expected_h), rtol=1e-12, atol=1e-15)
    _, (_, c_t), _ = lstm_scan(LSTMParams(wx, wh, b), xs, *state0)
    np.testing.assert_allclose(c_t, expected_c[-1], rtol=1e-12, atol=1e-15)


def test_gru_follows_pytorchs_r_z_n_convention() -> None:
    params = _params64(GRU)._replace(bhn=normal((H,), 9))
    x, h = normal((N, T, D), 1), normal((N, H), 2)
    h0 = h
    wx, wh, b, bhn = params
    for t in range(T):
        ax, ah = x[:, t] @ wx + b, h @ wh
        r = _sig(ax[:, :H] + ah[:, :H])
        z = _sig(ax[:, H : 2 * H] + ah[:, H : 2 * H])
        n = np.tanh(ax[:, 2 * H :] + r * (ah[:, 2 * H :] + bhn))
        h = (1 - z) * n + z * h
    np.testing.assert_allclose(gru_scan(params, x, h0)[1], h, rtol=1e-13)


def test_rnn_is_tanh_of_the_affine_sum() -> None:
    params = _params64(RNN)
    x, h = normal((N, T, D), 1), normal((N, H), 2)
    hs, _, _ = rnn_scan(params, x, h)
    for t in range(T):
        h = np.tanh(x[:, t] @ params.wx + h @ params.wh + params.b)
        np.testing.assert_allclose(hs[:, t], h, rtol=1e-13)


@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_cells_step_through_what_the_scan_computes(make: type[Layer]) -> None:
    params, scan, _, state = _scan_problem(make)
    x = normal((N, T, D), 2)
    hs, final, _ = scan(params, x, *state)
    carry: Any = state
    for t in range(T):
        if make is LSTM:
            carry = lstm_cell(params, x[:, t], *carry)
        else:
            carry = ((rnn_cell if make is RNN else gru_cell)(params, x[:, t], carry[0]),)
        np.testing.assert_allclose(carry[0], hs[:, t], rtol=1e-12)
    np.testing.assert_allclose(np.concatenate(carry), np.concatenate(final if make is LSTM else (final,)), rtol=1e-12)


@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_none_state_is_zeros_and_last_output_is_the_final_state(make: type[Layer]) -> None:
    params = _params64(make)
    x = normal((N, T, D), 1)
    zeros = _state(make)._replace(**{f: np.zeros((N, H)) for f in _state(make)._fields})
    seq = make(H).apply(params, x)  # type: ignore[call-arg]
    assert_bit_identical(seq, make(H).apply(params, x, state=zeros))  # type: ignore[call-arg]
    last = make(H, return_sequences=False).apply(params, x)  # type: ignore[call-arg]
    assert last.shape == (N, H)
    assert_bit_identical(last, seq[:, -1])


@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_stateful_halves_equal_the_whole_sequence(make: type[Layer]) -> None:
    """Truncated BPTT: the carried state continues the sequence; no gradient reaches the first half."""
    t_all = 6
    layer = make(H, stateful=True)  # type: ignore[call-arg]
    params, _ = layer.init(fnnet.key(3), (t_all, D))
    x = normal((N, t_all, D), 1, dtype=np.float32)
    whole, whole_state, _ = layer.forward(params, None, x, TRAIN)
    first, state1, _ = layer.forward(params, None, x[:, :3], TRAIN)
    second, state2, cache2 = layer.forward(params, state1, x[:, 3:], TRAIN)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-5, atol=1e-6)
    assert type(state2) is type(whole_state)
    for a, b in zip(state2, whole_state):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the second half's backward treats the carried state as a constant input
    dout = normal(second.shape, 2, dtype=np.float32)
    stateless = make(H)  # type: ignore[call-arg]
    _, _, cache_c = stateless.forward(params, state1, x[:, 3:])
    assert_bit_identical(layer.backward(params, cache2, dout), stateless.backward(params, cache_c, dout))
    # evaluation carries the state too
    assert layer.forward(params, state1, x[:, 3:])[1] is not state1


@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_stateless_layers_hand_the_state_back(make: type[Layer]) -> None:
    layer = make(H)  # type: ignore[call-arg]
    params, _ = layer.init(fnnet.key(0), (T, D))
    state = _state(make, dtype=np.float32)
    x = normal((N, T, D), 1, dtype=np.float32)
    assert layer.forward(params, state, x, TRAIN)[1] is state
    assert layer.forward(params, None, x, TRAIN)[1] is None
    assert layer.init_state((T, D)) is None


def test_lstm_in_a_pipeline_trains_with_fit() -> None:
    """Embedding -> LSTM -> TimeAffine learns to echo its input with the sequence loss."""
    ids = np.random.default_rng(0).integers(0, 5, (64, 4))
    model = fnnet.serial(fnnet.Embedding(5, 8), LSTM(16), fnnet.TimeAffine(5))
    result = fnnet.fit(
        model, fnnet.adam(0.05), (ids, ids), key=fnnet.key(1), epochs=8, batch_size=16,
        loss=fnnet.time_softmax_cross_entropy, progress="quiet", eval_train=False,
    )  # fmt: skip
    logits = model.apply(result.state.params, ids)
    assert logits.dtype == np.float32
    assert float(np.mean(logits.argmax(-1) == ids)) > 0.95


def test_float32_stays_float32() -> None:
    for make in RECURRENT:
        layer = make(H)  # type: ignore[call-arg]
        params, _ = layer.init(fnnet.key(0), (T, D))
        assert all(a.dtype == np.float32 for a in params)
        y, _, cache = layer.forward(params, None, normal((N, T, D), 1, dtype=np.float32))
        dx, grads = layer.backward(params, cache, np.ones_like(y))
        assert y.dtype == dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


def test_sequel_initialisation_shapes_and_scale() -> None:
    params, out = LSTM(64).init(fnnet.key(0), (29, 16))
    assert out == (29, 64)
    assert (params.wx.shape, params.wh.shape, params.b.shape) == ((16, 256), (64, 256), (256,))
    assert abs(float(params.wx.std()) - 1 / 4) < 0.02 and abs(float(params.wh.std()) - 1 / 8) < 0.01
    assert not np.any(params.b)
    gru, _ = GRU(8).init(fnnet.key(0), (5, 3))
    assert isinstance(gru, GRUParams) and gru.bhn.shape == (8,)
    assert isinstance(RNN(8).init(fnnet.key(0), (5, 3))[0], RNNParams)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_errors_name_the_layer(make: type[Layer]) -> None:
    name = make.__name__
    layer = make(H)  # type: ignore[call-arg]
    params, _ = layer.init(fnnet.key(0), (T, D))
    x = normal((N, T, D), 1, dtype=np.float32)
    with pytest.raises(ValueError, match=rf"^{name}: expected in_shape \(T, D\), got \(2,\)"):
        layer.out_shape((2,))
    with pytest.raises(ValueError, match=rf"^{name}: expected input of shape \(N, T, 2\), got \(3, 4\)"):
        layer.forward(params, None, x[:, :, 0])
    with pytest.raises(ValueError, match=rf"^{name}: expected input of shape \(N, T, 2\), got \(3, 4, 5\)"):
        layer.forward(params, None, normal((N, T, 5), 1, dtype=np.float32))
    with pytest.raises(ValueError, match=rf"^{name}: expected x of dtype float32 .* got float64"):
        layer.forward(params, None, x.astype(np.float64))
    with pytest.raises(ValueError, match=rf"^{name}: expected state None or .*State.*, got tuple"):
        layer.forward(params, (np.zeros((N, H), np.float32),) * 2, x)
    bad = _state(make, n=N + 1, dtype=np.float32)
    with pytest.raises(ValueError, match=rf"^{name}: expected state.h of shape \(3, 3\) and dtype float32 for this batch, got \(4, 3\)"):
        layer.forward(params, bad, x)
    y, _, cache = layer.forward(params, None, x)
    with pytest.raises(ValueError, match=rf"^{name}.backward: expected dout of shape \(N, 4, 3\)|^{name}.backward: expected dout of shape \(3, 4, 3\)"):
        layer.backward(params, cache, y[:, 1:])
    with pytest.raises(ValueError, match=rf"^{name}: hidden must be a positive int, got 0"):
        make(0)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=rf"^{name}: return_sequences must be True or False, got 'yes'"):
        make(2, return_sequences="yes")  # type: ignore[call-arg]


def test_kernels_check_their_arguments() -> None:
    params = _params64(LSTM)
    x = normal((N, T, D), 1)
    with pytest.raises(ValueError, match=r"^lstm_scan: expected params wx \(D, 4H\), wh \(H, 4H\), b \(4H,\)"):
        lstm_scan(LSTMParams(params.wx, params.wh[:, :4], params.b), x)
    with pytest.raises(ValueError, match=r"^lstm_scan: expected c0 of shape \(3, 3\) and dtype float64, got \(3, 2\)"):
        lstm_scan(params, x, None, np.zeros((N, 2)))
    _, _, cache = lstm_scan(params, x)
    with pytest.raises(ValueError, match=r"^lstm_scan_backward: expected dhs of shape \(3, 4, 3\) and dtype float64"):
        lstm_scan_backward(params, cache, np.zeros((N, T, 2)))
    with pytest.raises(ValueError, match=r"^lstm_scan_backward: const_grad=True needs the cache of a scan with x_const"):
        lstm_scan_backward(params, cache, const_grad=True)
    with pytest.raises(ValueError, match=r"^lstm_scan: expected x_const of shape \(N, Dc\) with the batch of x"):
        lstm_scan(params, x[:, :, 1:], x_const=np.zeros((N + 1, 1)))
    with pytest.raises(ValueError, match=r"^lstm_scan: expected x of shape \(N, T, 1\), got \(3, 4, 2\)"):
        lstm_scan(params, x, x_const=np.zeros((N, 1)))
    with pytest.raises(ValueError, match=r"^gru_scan: expected params bhn of shape \(3,\), got \(2,\)"):
        gru_scan(_params64(GRU)._replace(bhn=np.zeros(2)), x)


@pytest.mark.parametrize("make", RECURRENT, ids=lambda c: c.__name__)
def test_empty_batches_and_empty_sequences(make: type[Layer]) -> None:
    params = _params64(make)
    for shape in [(0, T, D), (N, 0, D)]:
        layer = make(H)  # type: ignore[call-arg]
        y, _, cache = layer.forward(params, None, np.zeros(shape))
        dx, grads = layer.backward(params, cache, np.ones_like(y))
        assert y.shape == (*shape[:2], H) and dx.shape == shape
        assert all(not np.any(g) for g in grads)
    # no time steps: the final state is the initial one
    state = _state(make)
    last = make(H, return_sequences=False).apply(params, np.zeros((N, 0, D)), state=state)  # type: ignore[call-arg]
    np.testing.assert_array_equal(last, state.h)
