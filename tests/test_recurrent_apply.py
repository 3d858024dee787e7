"""The recurrent layers' cache-free ``apply``: the bits of ``forward``, one step's memory.

``RNN`` and ``GRU`` evaluate through ``_rnn_run`` / ``_gru_run(..., keep=False)``: the input-side
GEMM runs on the same chunks of time steps as the scan's (so BLAS rounds every row alike), the gates
of one chunk and one step's state are overwritten in turn. Checked: bit identity of the output and
of the final state with ``forward`` / the scan kernels over shapes, dtypes, chunk sizes, stateful and
``return_sequences`` variants and ``h0`` given or not; the memory peak on a long sequence; and that
``predict`` / ``evaluate`` go through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import pytest
from _helpers import assert_bit_identical, peak_bytes, rng
from hypothesis import given, settings
from hypothesis import strategies as st

import fnnet
from fnnet.layers import recurrent as R
from fnnet.layers.base import EVAL, TRAIN, Layer
from fnnet.layers.recurrent import GRU, LSTM, RNN, LSTMState, RNNState
from fnnet.train import evaluate, predict

KINDS: dict[str, Callable[..., Layer]] = {"rnn": RNN, "gru": GRU, "lstm": LSTM}


def _inputs(layer: Layer, n: int, t: int, d: int, dtype: Any, seed: int, with_h0: bool) -> tuple[Any, Any, np.ndarray]:
    params = fnnet.astype(layer.init(fnnet.key(seed), (t, d))[0], dtype)
    r = rng(seed, 1)
    x = r.standard_normal((n, t, d)).astype(dtype)
    h = getattr(layer, "hidden")
    state: Any = None
    if with_h0:
        arrays = [r.standard_normal((n, h)).astype(dtype) for _ in range(2)]
        state = LSTMState(*arrays) if isinstance(layer, LSTM) else RNNState(arrays[0])
    return params, state, x


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    n=st.integers(1, 12),
    t=st.integers(0, 40),
    d=st.integers(1, 5),
    h=st.integers(1, 6),
    dtype=st.sampled_from([np.float32, np.float64]),
    sequences=st.booleans(),
    stateful=st.booleans(),
    with_h0=st.booleans(),
    gemm_rows=st.sampled_from([1, 7, 32, R._GEMM_ROWS]),
    seed=st.integers(0, 1000),
)
def test_apply_is_forward_bit_for_bit(
    kind: str, n: int, t: int, d: int, h: int, dtype: Any, sequences: bool, stateful: bool, with_h0: bool,
    gemm_rows: int, seed: int,
) -> None:
    layer = KINDS[kind](h, return_sequences=sequences, stateful=stateful)
    params, state, x = _inputs(layer, n, t, d, dtype, seed, with_h0)
    with mock.patch.object(R, "_GEMM_ROWS", gemm_rows):  # many chunks, a short last one, or one
        y, _, _ = layer.forward(params, state, x, TRAIN)
        got = layer.apply(params, x, state=state, ctx=EVAL)
    assert_bit_identical(got, y)
    assert got.shape == ((n, t, h) if sequences else (n, h))


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["rnn", "gru"]),
    n=st.integers(0, 9),
    t=st.integers(0, 30),
    sequences=st.booleans(),
    with_h0=st.booleans(),
    gemm_rows=st.sampled_from([1, 5, 16, R._GEMM_ROWS]),
    seed=st.integers(0, 1000),
)
def test_cache_free_kernels_give_the_scans_hidden_states_and_final_state(
    kind: str, n: int, t: int, sequences: bool, with_h0: bool, gemm_rows: int, seed: int
) -> None:
    layer = KINDS[kind](3)
    params, state, x = _inputs(layer, n, t, 2, np.float32, seed, with_h0)
    h0 = None if state is None else state.h
    scan, run = (R.rnn_scan, R._rnn_run) if kind == "rnn" else (R.gru_scan, R._gru_run)
    with mock.patch.object(R, "_GEMM_ROWS", gemm_rows):
        hs, ht, cache = scan(params, x, h0)
        hs2, ht2, none = run("scan", params, x, h0, keep=False, sequences=sequences)
    assert none is None
    assert_bit_identical(ht2, ht)
    if sequences:
        assert_bit_identical(hs2, hs)
    else:
        assert hs2 is None


def test_chunks_take_whole_steps_of_about_the_gemm_rows() -> None:
    assert [R._chunk_steps(n, 100) for n in (1, 10, 250, 1024, 5000)] == [100, 100, 4, 1, 1]
    assert R._chunk_steps(4, 0) == 1 and R._chunk_steps(0, 5) == 5


@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("sequences", [False, True])
def test_apply_keeps_one_steps_memory_on_a_long_sequence(kind: str, sequences: bool) -> None:
    n, t, d, h = 8, 2000, 4, 32
    layer = KINDS[kind](h, return_sequences=sequences)
    params, _, x = _inputs(layer, n, t, d, np.float32, 0, False)
    forward = peak_bytes(lambda: layer.forward(params, None, x))
    applied = peak_bytes(lambda: layer.apply(params, x))
    out_bytes = n * t * h * 4 if sequences else n * h * 4
    one_step = max(n, R._GEMM_ROWS) * (3 * h + d) * 4  # a chunk's gates and inputs
    assert applied < out_bytes + 2 * one_step, (applied, out_bytes, one_step)
    assert applied < (0.45 if sequences else 0.1) * forward, (applied, forward)


def test_predict_and_evaluate_run_the_cache_free_path() -> None:
    v, n, t = 6, 40, 300
    model = fnnet.serial(fnnet.Embedding(v, 4), GRU(16), RNN(8, return_sequences=False), fnnet.Affine(3))
    params, _ = model.init(fnnet.key(0), (t,))
    ids = rng(3).integers(0, v, (n, t))
    labels = rng(4).integers(0, 3, n)
    y = model.forward(params, None, ids)[0]
    assert_bit_identical(predict(model, params, ids, batch_size=n, threads=1), y)
    calls: list[str] = []
    real_gru, real_rnn = R._gru_run, R._rnn_run

    def spy(real: Callable[..., Any], name: str) -> Callable[..., Any]:
        def run(*args: Any, **kw: Any) -> Any:
            calls.append(f"{name} keep={kw['keep']}")
            return real(*args, **kw)
        return run

    with mock.patch.object(R, "_gru_run", spy(real_gru, "gru")), mock.patch.object(R, "_rnn_run", spy(real_rnn, "rnn")):
        got = evaluate(model, params, ids, labels, batch_size=n, threads=1)
    assert calls == ["gru keep=False", "rnn keep=False"]
    assert got["loss"] == fnnet.softmax_cross_entropy(y, labels)[0]


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_apply_names_the_layer_on_a_wrong_state(kind: str) -> None:
    layer = KINDS[kind](3, stateful=True)
    params, _, x = _inputs(layer, 2, 4, 2, np.float32, 0, False)
    with pytest.raises(ValueError, match=f"^{type(layer).__name__}: expected state.h of shape"):
        layer.apply(params, x, state=RNNState(np.zeros((5, 3), np.float32)))
    with pytest.raises(ValueError, match=f"^{type(layer).__name__}: expected x of dtype float32"):
        layer.apply(params, x.astype(np.float64))
