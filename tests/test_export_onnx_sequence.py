"""ONNX export of the sequence layers: Embedding, TimeAffine, RNN, LSTM and GRU give in ONNX Runtime
what ``apply`` gives, alone and in the pipelines of a language model and a sequence classifier."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import threadpoolctl
from _helpers import normal, onnx_session, rng

import fnnet
from fnnet.export import ONNX_EXPORTERS, ExportError, to_onnx
from fnnet.layers.base import Layer
from fnnet.layers.recurrent import LSTMState, RNNState
from fnnet.tree import tree_map
from fnnet.typing import Array, Shape

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
VOCAB = 11
#: The layer kinds this file tests (``test_export_onnx.py`` leaves them to it).
SEQUENCE_KINDS = {fnnet.Embedding, fnnet.TimeAffine, fnnet.RNN, fnnet.LSTM, fnnet.GRU}


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread() -> Iterator[None]:
    with threadpoolctl.threadpool_limits(1):
        yield




def _params(layer: Layer, in_shape: Shape, seed: int) -> Any:
    """``layer.init`` plus noise, so that biases (and the GRU's ``bhn``) are not zeros."""
    params, _ = layer.init(fnnet.key(seed), in_shape)
    g = rng(seed)
    return tree_map(lambda a: (a + 0.3 * g.standard_normal(np.shape(a))).astype(a.dtype), params)


def _ids(shape: tuple[int, ...], *salt: int) -> Array:
    ids: Array = rng(*salt).integers(0, VOCAB, shape).astype(np.int64)
    return ids


def _check(layer: Layer, in_shape: Shape, inputs: Any) -> tuple[Any, float]:
    """Export ``layer``, run it on ``inputs(n)`` for batches 5 and 1; the model and the largest difference."""
    params = _params(layer, in_shape, 1)
    m = to_onnx(layer, params, in_shape)
    session = onnx_session(m)
    worst = 0.0
    for n in (5, 1):
        x = inputs(n)
        want = layer.apply(params, x)
        got = session.run(None, {"input": x})[0]
        assert got.shape == want.shape == (n, *layer.out_shape(in_shape)) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
        worst = max(worst, float(np.abs(got - want).max()))
    return m, worst


@pytest.mark.parametrize("t", [1, 7])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("cls", [fnnet.RNN, fnnet.LSTM, fnnet.GRU], ids=lambda c: c.__name__)
def test_recurrent_layers_match_apply(cls: Any, return_sequences: bool, t: int) -> None:
    layer = cls(5, return_sequences=return_sequences)
    m, _ = _check(layer, (t, 3), lambda n: (2.0 * normal((n, t, 3), 2, n)).astype(np.float32))
    op = {fnnet.RNN: "RNN", fnnet.LSTM: "LSTM", fnnet.GRU: "GRU"}[cls]
    (node,) = [n for n in m.graph.node if n.op_type == op]
    assert list(node.output) == ([node.output[0]] if return_sequences else ["", node.output[1]])
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attributes.get("layout", 0) == 0 and attributes["hidden_size"] == 5
    assert attributes.get("linear_before_reset", 0) == (1 if cls is fnnet.GRU else 0)


def test_lstm_and_gru_gate_blocks_are_in_onnxs_order() -> None:
    h = 2
    for layer, blocks in [(fnnet.LSTM(h), (2, 3, 0, 1)), (fnnet.GRU(h), (1, 0, 2))]:
        params = _params(layer, (4, 3), 3)
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in to_onnx(layer, params, (4, 3)).graph.initializer}
        for onnx_block, ours in enumerate(blocks):
            rows = slice(onnx_block * h, (onnx_block + 1) * h)
            cols = slice(ours * h, (ours + 1) * h)
            np.testing.assert_array_equal(inits["W"][0, rows], params.wx[:, cols].T)
            np.testing.assert_array_equal(inits["R"][0, rows], params.wh[:, cols].T)
            np.testing.assert_array_equal(inits["B"][0, rows], params.b[cols])
        rb = inits["B"][0, len(blocks) * h :]
        want_rb = np.concatenate([np.zeros(2 * h, np.float32), params.bhn]) if isinstance(layer, fnnet.GRU) else 0 * rb
        np.testing.assert_array_equal(rb, want_rb)


@pytest.mark.parametrize("in_shape", [(7,), (1,), (2, 3)])
def test_embedding_gathers_int64_ids(in_shape: Shape) -> None:
    m, _ = _check(fnnet.Embedding(VOCAB, 4), in_shape, lambda n: _ids((n, *in_shape), 4, n))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [n.op_type for n in m.graph.node] == ["Gather"]


@pytest.mark.parametrize("in_shape", [(7, 4), (1, 4), (2, 3, 4)])
def test_time_affine_maps_the_last_axis(in_shape: Shape) -> None:
    m, _ = _check(fnnet.TimeAffine(6), in_shape, lambda n: normal((n, *in_shape), 5, n).astype(np.float32))
    assert [n.op_type for n in m.graph.node] == ["MatMul", "Add"]


def test_a_language_model_and_a_sequence_classifier_match_apply() -> None:
    lm = fnnet.serial(fnnet.Embedding(VOCAB, 6), fnnet.LSTM(8), fnnet.TimeAffine(VOCAB))
    m, lm_diff = _check(lm, (7,), lambda n: _ids((n, 7), 6, n))
    names = [i.name for i in m.graph.initializer]
    assert names == ["0.weight", "1.W", "1.R", "1.B", "1.direction_axis", "2.weight", "2.bias"]
    dims = [d.dim_param or d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["N", 7, VOCAB]
    classifier = fnnet.serial(fnnet.Embedding(VOCAB, 6), fnnet.GRU(8, return_sequences=False), fnnet.Affine(3))
    _, classifier_diff = _check(classifier, (7,), lambda n: _ids((n, 7), 7, n))
    nested = fnnet.serial(fnnet.serial(fnnet.Embedding(VOCAB, 6), fnnet.Dropout(0.2)), fnnet.RNN(4, return_sequences=False))
    _check(nested, (7,), lambda n: _ids((n, 7), 8, n))  # the first layer is found inside a nested serial
    assert max(lm_diff, classifier_diff) < TOL


def test_ids_out_of_range_fail_in_both_but_onnx_takes_negative_ones_from_the_end() -> None:
    emb = fnnet.Embedding(VOCAB, 3)
    params = _params(emb, (3,), 9)
    session = onnx_session(to_onnx(emb, params, (3,)))
    too_big = np.array([[0, VOCAB, 1]], np.int64)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 11\)"):
        emb.apply(params, too_big)
    with pytest.raises(Exception, match="out of data bounds"):
        session.run(None, {"input": too_big})
    negative = np.array([[0, -1, 1]], np.int64)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 11\)"):
        emb.apply(params, negative)
    np.testing.assert_array_equal(session.run(None, {"input": negative})[0][0, 1], params.w[-1])


# --- what cannot be exported ---------------------------------------------------------------------


def test_a_stateful_layer_is_refused_in_one_line_naming_its_place() -> None:
    model = fnnet.serial(fnnet.Embedding(VOCAB, 4), fnnet.serial(fnnet.LSTM(5, stateful=True)), fnnet.TimeAffine(VOCAB))
    params, _ = model.init(fnnet.key(0), (6,))
    with pytest.raises(ExportError, match=r"^layer 1 / layer 0 \(LSTM\): stateful=True carries the final state [^\n]*$"):
        to_onnx(model, params, (6,))


def test_an_initial_state_is_refused() -> None:
    for layer, state in [(fnnet.GRU(4), RNNState(np.zeros((2, 4), np.float32))),
                         (fnnet.LSTM(4), LSTMState(*(np.zeros((2, 4), np.float32),) * 2))]:  # fmt: skip
        params, _ = layer.init(fnnet.key(0), (5, 3))
        with pytest.raises(ExportError, match=r"^model \((GRU|LSTM)\): only the zero initial state \(state None\)"):
            to_onnx(layer, params, (5, 3), state=state)


def test_an_embedding_that_is_not_the_first_layer_is_refused() -> None:
    model = fnnet.serial(fnnet.Identity(), fnnet.Embedding(VOCAB, 4))
    params, _ = model.init(fnnet.key(0), (5,))
    with pytest.raises(ExportError, match=r"^layer 1 \(Embedding\): only the model's first layer"):
        to_onnx(model, params, (5,))


def test_every_sequence_kind_of_the_table_is_tested_here() -> None:
    assert SEQUENCE_KINDS <= set(ONNX_EXPORTERS)
