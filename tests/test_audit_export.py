"""Second export audit: every accepted opset, float64 graphs, identity pipelines, shared and deeply
nested layers, BatchNorm state that cannot be exported, ``path=``, batch sizes 1 and 1000, ids at
the vocabulary's edge, and state dicts with extra, missing, reordered, float16, non-contiguous,
0-d or out-of-range arrays."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import threadpoolctl
from _helpers import normal, onnx_session, rng

import fnnet
from fnnet.errors import FormatError
from fnnet.export import MIN_OPSET, ExportError, from_torch_state_dict, to_onnx, to_torch_state_dict
from fnnet.layers.base import Layer
from fnnet.layers.norm import BatchNormState
from fnnet.tree import tree_astype, tree_leaves, tree_map
from fnnet.typing import Array, Shape

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

NEWEST = int(onnx.defs.onnx_opset_version())


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread() -> Iterator[None]:
    with threadpoolctl.threadpool_limits(1):
        yield


def _run(m: Any, x: Array) -> Array:
    out: Array = onnx_session(m).run(None, {"input": x})[0]
    return out


def _noisy(params: Any, *salt: int) -> Any:
    g = rng(*salt)
    return tree_map(lambda a: (a + 0.3 * g.standard_normal(np.shape(a))).astype(a.dtype), params)


def _bn_state(c: int, dtype: Any = np.float32) -> BatchNormState:
    g = rng(9, c)
    return BatchNormState(g.normal(0.0, 1.0, c).astype(dtype), g.uniform(0.2, 3.0, c).astype(dtype), np.asarray(4, np.int64))


def _filled(state: Any, dtype: Any = np.float32) -> Any:
    """``state`` with every BatchNorm's statistics replaced by :func:`_bn_state`'s."""
    if isinstance(state, BatchNormState):
        return _bn_state(state.mean.shape[0], dtype)
    if isinstance(state, tuple):
        return tuple(_filled(s, dtype) for s in state)
    return state


# --- opsets --------------------------------------------------------------------------------------


def test_every_accepted_opset_runs_and_matches_apply_and_the_ends_are_refused() -> None:
    model = fnnet.serial(
        fnnet.Conv2D(3, 3, pad=1), fnnet.BatchNorm(), fnnet.GELU(), fnnet.MaxPool2D(2), fnnet.GroupNorm(3),
        fnnet.LeakyReLU(0.1), fnnet.Flatten(), fnnet.Affine(4), fnnet.LayerNorm(), fnnet.Softmax(),
    )
    in_shape = (2, 4, 4)
    params = _noisy(model.init(fnnet.key(0), in_shape)[0], 1)
    state = _filled(model.init_state(in_shape))
    x = normal((3, *in_shape), 2, dtype=np.float32)
    want = model.apply(params, x, state=state)
    for opset in range(MIN_OPSET, NEWEST + 1):
        m = to_onnx(model, params, in_shape, state=state, opset=opset)
        assert m.opset_import[0].version == opset
        assert ("Gelu" in [n.op_type for n in m.graph.node]) == (opset >= 20)
        np.testing.assert_allclose(_run(m, x), want, rtol=1e-5, atol=1e-5, err_msg=f"opset {opset}")
    for opset in (MIN_OPSET - 1, NEWEST + 1):
        with pytest.raises(ExportError, match=rf"^opset must be an int from {MIN_OPSET} to {NEWEST} "):
            to_onnx(model, params, in_shape, state=state, opset=opset)


# --- float64 -------------------------------------------------------------------------------------

FLOAT64_EXACT: list[tuple[Layer, Shape]] = [
    (fnnet.LeakyReLU(0.1), (6,)),  # 0.1 is not a float32: a LeakyRelu attribute would round it
    (fnnet.ELU(0.3), (6,)),
    (fnnet.Softplus(), (6,)),
    (fnnet.BatchNorm(eps=1e-3), (3, 2, 2)),
    (fnnet.serial(fnnet.Affine(4), fnnet.BatchNorm(eps=1e-5), fnnet.LeakyReLU(0.2), fnnet.Affine(3)), (6,)),
]


@pytest.mark.parametrize("opset", [MIN_OPSET, NEWEST])
@pytest.mark.parametrize(("layer", "in_shape"), FLOAT64_EXACT)
def test_float64_slopes_and_batchnorm_eps_keep_float64_precision(layer: Layer, in_shape: Shape, opset: int) -> None:
    params = tree_astype(_noisy(layer.init(fnnet.key(0), in_shape)[0], 3), np.float64)
    state = _filled(layer.init_state(in_shape), np.float64)
    x = 30.0 * normal((5, *in_shape), 4)  # far into both tails: Softplus and ELU must not overflow
    got = _run(to_onnx(layer, params, in_shape, state=state, opset=opset, dtype=np.float64), x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, layer.apply(params, x, state=state), rtol=1e-13, atol=1e-13)


def test_float32_graphs_keep_one_node_per_activation() -> None:
    model = fnnet.serial(fnnet.LeakyReLU(0.1), fnnet.ELU(0.3), fnnet.Softplus())
    assert [n.op_type for n in to_onnx(model, (None,) * 3, (4,)).graph.node] == ["LeakyRelu", "Elu", "Softplus"]


def test_a_float64_conv_either_runs_or_fails_naming_its_node() -> None:
    conv = fnnet.serial(fnnet.Conv2D(2, 3), fnnet.ReLU())
    params = tree_astype(conv.init(fnnet.key(0), (1, 4, 4))[0], np.float64)
    m = to_onnx(conv, params, (1, 4, 4))
    x = normal((2, 1, 4, 4), 5)
    try:
        got = _run(m, x)
    except Exception as e:  # ONNX Runtime 1.32 has no float64 Conv kernel, as the docs say
        assert "0/Conv" in str(e)
    else:
        np.testing.assert_allclose(got, conv.apply(params, x), rtol=1e-12, atol=1e-12)


# --- graphs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        fnnet.Identity(),
        fnnet.Dropout(0.5),
        fnnet.serial(fnnet.Identity(), fnnet.Dropout(0.3)),
        fnnet.serial(fnnet.serial(fnnet.serial(fnnet.Dropout()))),
        fnnet.concat(fnnet.Identity()),
        fnnet.add_branches(fnnet.Dropout()),
    ],
)
def test_a_model_whose_output_is_its_input_is_one_identity_node(model: Layer) -> None:
    params, _ = model.init(fnnet.key(0), (3, 2))
    m = to_onnx(model, params, (3, 2))
    assert [(n.op_type, list(n.input), list(n.output)) for n in m.graph.node] == [("Identity", ["input"], ["output"])]
    x = normal((4, 3, 2), 6, dtype=np.float32)
    np.testing.assert_array_equal(_run(m, x), x)


def test_shared_instances_three_levels_deep_get_unique_names_and_their_own_weights() -> None:
    affine, norm = fnnet.Affine(3), fnnet.LayerNorm()
    inner = fnnet.serial(affine, norm, fnnet.Tanh())  # one instance, used 13 times below
    mid = fnnet.residual(fnnet.serial(inner, inner), shortcut=inner)
    model = fnnet.serial(
        fnnet.Affine(3), fnnet.concat(mid, fnnet.serial(mid, inner)), fnnet.Affine(3), fnnet.add_branches(mid, mid)
    )
    params = _noisy(model.init(fnnet.key(0), (4,))[0], 7)
    m = to_onnx(model, params, (4,))
    names = [n.name for n in m.graph.node]
    outputs = [o for n in m.graph.node for o in n.output]
    inits = [i.name for i in m.graph.initializer]
    assert len(set(names)) == len(names) and len(set(outputs)) == len(outputs) and len(set(inits)) == len(inits)
    assert inits == list(to_torch_state_dict(model, params))
    assert len(inits) == 13 * 4 + 2 * 2  # 4 arrays per use of inner, 2 per outer Affine
    for n in (1, 1000):  # the batch axis is dynamic
        x = normal((n, 4), 8, n, dtype=np.float32)
        np.testing.assert_allclose(_run(m, x), model.apply(params, x), rtol=1e-4, atol=1e-4)


def test_sixty_nested_containers_give_long_unique_node_names() -> None:
    model: Layer = fnnet.Tanh()
    for _ in range(60):
        model = fnnet.residual(fnnet.serial(fnnet.Identity(), model))
    params, _ = model.init(fnnet.key(0), (3,))
    m = to_onnx(model, params, (3,))
    names = [n.name for n in m.graph.node]
    assert len(set(names)) == len(names) == 121 and max(len(s) for s in names) > 400
    x = normal((2, 3), 9, dtype=np.float32)
    np.testing.assert_allclose(_run(m, x), model.apply(params, x), rtol=1e-5)


def test_dropout_exports_as_evaluation_not_training() -> None:
    model = fnnet.serial(fnnet.Affine(8), fnnet.Dropout(0.5), fnnet.Affine(2))
    params, _ = model.init(fnnet.key(0), (4,))
    m = to_onnx(model, params, (4,))
    assert [n.op_type for n in m.graph.node] == ["Gemm", "Gemm"]
    x = normal((6, 4), 10, dtype=np.float32)
    got = _run(m, x)
    np.testing.assert_allclose(got, model.apply(params, x), rtol=1e-5, atol=1e-6)
    trained = model.apply(params, x, ctx=fnnet.Ctx(train=True, key=fnnet.key(1)))
    assert not np.allclose(got, trained)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"var": np.array([1.0, np.nan, 1.0], np.float32)}, r"state\.var holds NaN or infinite values"),
        ({"mean": np.array([np.inf, 0.0, 0.0], np.float32)}, r"state\.mean holds NaN or infinite values"),
        ({"var": np.array([1.0, -0.5, 1.0], np.float32)}, r"state\.var has negative values"),
    ],
)
def test_batchnorm_statistics_that_are_not_statistics_are_refused(change: dict[str, Array], pattern: str) -> None:
    model = fnnet.serial(fnnet.Affine(3), fnnet.BatchNorm())
    params, _ = model.init(fnnet.key(0), (4,))
    state = (None, _bn_state(3)._replace(**change))
    with pytest.raises(ExportError, match=rf"^layer 1 \(BatchNorm\): {pattern}$"):
        to_onnx(model, params, (4,), state=state)


def test_path_replaces_a_file_and_refuses_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"an older model")
    m = to_onnx(fnnet.ReLU(), None, (3,), path=target)
    assert target.read_bytes() == m.SerializeToString()
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        to_onnx(fnnet.ReLU(), None, (3,), path=folder)
    assert sorted(os.listdir(tmp_path)) == ["folder", "m.onnx"] and not os.listdir(folder)


def test_embedding_ids_at_the_vocabulary_edge_in_batches_of_1_and_1000() -> None:
    vocab = 13
    model = fnnet.serial(fnnet.Embedding(vocab, 4), fnnet.TimeAffine(3))
    params, _ = model.init(fnnet.key(0), (5,))
    m = to_onnx(model, params, (5,))
    for n in (1, 1000):
        ids = rng(11, n).integers(0, vocab, (n, 5))
        ids[:, 0], ids[:, -1] = 0, vocab - 1
        np.testing.assert_allclose(_run(m, ids), model.apply(params, ids), rtol=1e-5, atol=1e-6)


# --- state dicts ---------------------------------------------------------------------------------


def _torch_model() -> tuple[Layer, Any, Any, dict[str, Array]]:
    model = fnnet.serial(fnnet.Affine(3), fnnet.BatchNorm(), fnnet.ReLU(), fnnet.Affine(2), fnnet.LayerNorm())
    params = _noisy(model.init(fnnet.key(0), (4,))[0], 12)
    state = (None, _bn_state(3), None, None, None)
    return model, params, state, to_torch_state_dict(model, params, state)


def test_state_dict_order_float16_and_memory_layout_do_not_matter() -> None:
    model, params, state, sd = _torch_model()
    w = sd["0.weight"]
    wide = np.zeros((w.shape[0], 2 * w.shape[1]), np.float32)
    wide[:, ::2] = w
    variants = [
        dict(reversed(list(sd.items()))),
        {**sd, "0.weight": wide[:, ::2]},  # a strided view
        {**sd, "0.weight": np.asfortranarray(w), "3.weight": sd["3.weight"].T.copy().T},
    ]
    for arrays in variants:
        p, s = from_torch_state_dict(model, (4,), arrays)
        for got, want in zip(tree_leaves((p, s)), tree_leaves((params, state))):
            np.testing.assert_array_equal(got, want)
        assert all(a.flags.c_contiguous for a in tree_leaves(p))
    half = {k: v.astype(np.float16) if v.dtype.kind == "f" else v for k, v in sd.items()}
    p, _ = from_torch_state_dict(model, (4,), half)
    assert p[0].w.dtype == np.float32
    np.testing.assert_array_equal(p[0].w, w.astype(np.float16).astype(np.float32).T)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"0.bias": np.float32(0.5)}, r"key '0\.bias': expected layer 0 \(Affine\)'s bias of shape \(3,\), got shape \(\)$"),
        (
            {"4.weight": np.asarray(1.0, np.float32)},
            r"key '4\.weight': expected layer 4 \(LayerNorm\)'s weight \(gamma\) of shape \(2,\), got shape \(\)$",
        ),
        (
            {"5.weight": np.zeros(2), "extra": np.zeros(1)},
            r"key '5\.weight': unexpected: no layer of the model takes it \(2 unexpected keys in all\)$",
        ),
        ({"3.bias": None}, r"key '3\.bias': expected layer 3 \(Affine\)'s bias of shape \(2,\), got shape \(\)$"),
        (
            {"0.bias": np.array([1e39, 0.0, 0.0])},  # finite in float64, inf in float32
            r"key '0\.bias': layer 0 \(Affine\)'s bias holds values too large for float32 \(largest magnitude 1e\+39\)$",
        ),
        (
            {"1.num_batches_tracked": np.asarray(2**63 + 5, np.uint64)},
            r"key '1\.num_batches_tracked': expected .* as a 0-d integer in \[0, 2\*\*63\)",
        ),
    ],
)
def test_state_dicts_that_do_not_fit_name_the_key(change: dict[str, Any], pattern: str) -> None:
    model, _, _, sd = _torch_model()
    arrays = {**sd, **change}
    with pytest.raises(FormatError, match=r"^state dict: " + pattern):
        from_torch_state_dict(model, (4,), arrays)


def test_a_missing_key_names_it_and_the_keys_left() -> None:
    model, _, _, sd = _torch_model()
    del sd["3.bias"]
    left = r"\(keys not taken so far: '4\.bias', '4\.weight'"
    with pytest.raises(FormatError, match=r"key '3\.bias': missing: layer 3 \(Affine\)'s bias of shape \(2,\) " + left):
        from_torch_state_dict(model, (4,), sd)
