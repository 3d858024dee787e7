"""ONNX export: every exportable layer and the book's models give in ONNX Runtime what ``apply`` gives."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import numpy as np
import pytest
import threadpoolctl
from _examples import EXAMPLES, load_script
from _helpers import call_unchanged, global_rng_untouched, normal, onnx_session, rng

import fnnet
from fnnet.export import ONNX_EXPORTERS, ExportError, to_onnx
from fnnet.layers.base import Layer
from fnnet.layers.core import Identity
from fnnet.layers.norm import BatchNormState
from fnnet.tree import tree_map
from fnnet.typing import Array, Shape

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
#: Images per ONNX Runtime run when scoring the test set.
EVAL_BATCH = 1000


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread() -> Iterator[None]:
    """NumPy's reference outputs on one BLAS thread: on a busy 2-core machine two are many times slower."""
    with threadpoolctl.threadpool_limits(1):
        yield




def _run(model: Any, x: Array) -> Array:
    out: Array = onnx_session(model).run(None, {"input": x})[0]
    return out


def _perturbed(params: Any, *salt: int) -> Any:
    """``params`` plus noise: biases, gammas and betas away from their zeros and ones."""
    g = rng(*salt)
    return tree_map(lambda a: (a + 0.3 * g.standard_normal(np.shape(a))).astype(a.dtype), params)


def _trained_state(layer: Layer, in_shape: Shape, *salt: int) -> Any:
    """``layer.init_state`` with every BatchNorm's running statistics random and non-trivial."""
    g = rng(*salt)

    def fill(s: Any) -> Any:
        if isinstance(s, BatchNormState):
            c = s.mean.shape
            mean = g.normal(0.0, 1.0, c).astype(s.mean.dtype)
            var = g.uniform(0.2, 3.0, c).astype(s.var.dtype)
            return BatchNormState(mean, var, np.asarray(7, np.int64))
        if isinstance(s, tuple):
            return tuple(fill(v) for v in s)
        return s

    return fill(layer.init_state(in_shape))


def _check(layer: Layer, in_shape: Shape, *, batch: int = 5, opset: int = 17, scale: float = 2.0) -> Any:
    params, _ = layer.init(fnnet.key(1), in_shape)
    params = _perturbed(params, 2)
    state = _trained_state(layer, in_shape, 3)
    m = to_onnx(layer, params, in_shape, state=state, opset=opset)
    for n in (batch, 1):  # the batch axis is dynamic
        x = (scale * normal((n, *in_shape), 4, n)).astype(np.float32)
        want = layer.apply(params, x, state=state)
        got = _run(m, x)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
    return m


IMAGE = (3, 6, 7)

LAYERS: list[tuple[Layer, Shape]] = [
    (fnnet.Affine(4), (5,)),
    (fnnet.Affine(4), (2, 3, 4)),  # flattened first, as in the book
    (fnnet.Flatten(), IMAGE),
    (fnnet.Identity(), (5,)),
    (fnnet.ReLU(), IMAGE),
    (fnnet.Sigmoid(), (5,)),
    (fnnet.Tanh(), (5,)),
    (fnnet.Softmax(), (6,)),
    (fnnet.LeakyReLU(0.2), (5,)),
    (fnnet.ELU(0.7), (5,)),
    (fnnet.GELU(), (5,)),
    (fnnet.GELU(approximate=True), (5,)),
    (fnnet.SiLU(), (5,)),
    (fnnet.Softplus(), (5,)),
    (fnnet.Conv2D(4, 3), IMAGE),
    (fnnet.Conv2D(4, 3, stride=2, pad=1), IMAGE),
    (fnnet.Conv2D(2, (2, 3), stride=(1, 2), pad=(0, 2)), IMAGE),
    (fnnet.Conv2D(4, 3, pad=1, groups=2), (6, 5, 5)),  # grouped: one Conv with group=2
    (fnnet.Conv2D(6, 3, stride=2, groups=6), (6, 7, 7)),  # depthwise
    (fnnet.Conv1D(4, 3), (3, 11)),
    (fnnet.Conv1D(4, 5, stride=2, pad=2, groups=2), (6, 11)),
    (fnnet.MaxPool1D(2), (3, 11)),
    (fnnet.MaxPool1D(3, stride=2, pad=1), (3, 11)),
    (fnnet.AvgPool1D(3, stride=2, pad=1), (3, 11)),
    (fnnet.MaxPool2D(2), IMAGE),
    (fnnet.MaxPool2D(3, stride=2, pad=1), IMAGE),
    (fnnet.AvgPool2D(2), IMAGE),
    (fnnet.AvgPool2D((3, 2), stride=(2, 1), pad=(1, 1)), IMAGE),
    (fnnet.GlobalAvgPool2D(), IMAGE),
    (fnnet.BatchNorm(), (5,)),
    (fnnet.BatchNorm(eps=1e-3), IMAGE),
    (fnnet.LayerNorm(), (5,)),
    (fnnet.LayerNorm(eps=1e-3), IMAGE),
    (fnnet.GroupNorm(2), (4, 3, 3)),
    (fnnet.GroupNorm(4), (4,)),
    (fnnet.serial(fnnet.Conv1D(4, 3, pad=1), fnnet.BatchNorm(), fnnet.ReLU(), fnnet.GroupNorm(2)), (3, 11)),  # 1-D signals
    (fnnet.Dropout(0.5), (5,)),
    (fnnet.serial(fnnet.Affine(6), fnnet.serial(fnnet.Tanh(), fnnet.Affine(3))), (4,)),
    (fnnet.residual(fnnet.serial(fnnet.Affine(5), fnnet.BatchNorm(), fnnet.ReLU())), (5,)),
    (fnnet.residual(fnnet.Conv2D(3, 3, pad=1)), IMAGE),
    (fnnet.residual(fnnet.Conv2D(4, 3, stride=2, pad=1), shortcut=fnnet.serial(fnnet.Conv2D(4, 1, stride=2), fnnet.BatchNorm())),
     IMAGE),
    (fnnet.concat(fnnet.Conv2D(2, 1), fnnet.serial(fnnet.Conv2D(3, 3, pad=1), fnnet.ReLU()), fnnet.MaxPool2D(3, 1, 1)), IMAGE),
    (fnnet.concat(fnnet.Conv2D(3, (1, 3)), fnnet.Identity(), axis=-1), IMAGE),  # along W: (3, 6, 5 + 7)
    (fnnet.concat(fnnet.Affine(3)), (5,)),
    (fnnet.add_branches(fnnet.Affine(3), fnnet.serial(fnnet.Affine(4), fnnet.Tanh(), fnnet.Affine(3)), fnnet.Affine(3)), (5,)),
    (fnnet.add_branches(fnnet.Sigmoid()), (5,)),
    (fnnet.serial(fnnet.Dropout(0.2)), (5,)),  # no node at all: the output is the input
]


@pytest.mark.parametrize(("layer", "in_shape"), LAYERS, ids=lambda v: repr(v)[:40] if isinstance(v, Layer) else str(v))
def test_every_layer_matches_apply_in_onnxruntime(layer: Layer, in_shape: Shape) -> None:
    _check(layer, in_shape)


def test_every_layer_kind_of_the_table_is_tested() -> None:
    tested = {type(layer) for layer, _ in LAYERS}
    sequence = {fnnet.Embedding, fnnet.TimeAffine, fnnet.RNN, fnnet.LSTM, fnnet.GRU}  # test_export_onnx_sequence.py
    assert set(ONNX_EXPORTERS) <= tested | sequence | {t for layer, _ in LAYERS for t in _kinds(layer)}


def _kinds(layer: Layer) -> set[type]:
    subs = [*getattr(layer, "layers", ()), *getattr(layer, "branches", ())]
    subs += [sub for sub in (getattr(layer, "inner", None), getattr(layer, "shortcut", None)) if sub is not None]
    return {type(layer)}.union(*(_kinds(sub) for sub in subs))


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_is_one_node_from_opset_20(approximate: bool) -> None:
    m = _check(fnnet.GELU(approximate=approximate), (7,), opset=20, scale=4.0)
    assert [n.op_type for n in m.graph.node] == ["Gelu"]
    composed = _check(fnnet.GELU(approximate=approximate), (7,), opset=17, scale=4.0)
    assert "Gelu" not in {n.op_type for n in composed.graph.node}


def test_graph_names_shapes_and_batch_axis() -> None:
    model = fnnet.models.simple_convnet()
    params, _ = model.init(fnnet.key(0), (1, 28, 28))
    m = to_onnx(model, params, (1, 28, 28))
    (inp,), (out,) = m.graph.input, m.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert (inp.name, dims) == ("input", ["N", 1, 28, 28])
    assert (out.name, [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]) == ("output", ["N", 10])
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    assert sorted(inits) == ["0.bias", "0.weight", "3.bias", "3.weight", "5.bias", "5.weight"]
    np.testing.assert_array_equal(inits["3.weight"], params[3].w.T)  # Linear's (out, in), for Gemm transB=1
    np.testing.assert_array_equal(inits["0.weight"], params[0].w)
    assert m.opset_import[0].version == 17 and m.producer_name == "fnnet"


def test_path_writes_the_same_model(tmp_path: Path) -> None:
    model = fnnet.models.two_layer_net()
    params, _ = model.init(fnnet.key(0), (784,))
    m = to_onnx(model, params, (784,), path=tmp_path / "net.onnx")
    assert onnx.load(str(tmp_path / "net.onnx")) == m


def test_export_writes_into_nothing_it_is_given() -> None:
    model = fnnet.serial(fnnet.Conv2D(3, 3), fnnet.BatchNorm(), fnnet.ReLU(), fnnet.Affine(4))
    params, _ = model.init(fnnet.key(0), IMAGE)
    state = _trained_state(model, IMAGE, 1)
    with global_rng_untouched():
        m = call_unchanged(lambda p, s: to_onnx(model, p, IMAGE, state=s), params, state, readonly=True)
    x = normal((2, *IMAGE), 2, dtype=np.float32)
    np.testing.assert_allclose(_run(m, x), model.apply(params, x, state=state), rtol=TOL, atol=TOL)


def test_float64_params_give_a_float64_graph() -> None:
    model = fnnet.serial(fnnet.Affine(5), fnnet.Tanh(), fnnet.Affine(2))
    params, _ = model.init(fnnet.key(0), (3,))
    params64 = fnnet.tree.tree_astype(params, np.float64)
    x = normal((4, 3), 1)
    got = _run(to_onnx(model, params64, (3,)), x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, model.apply(params64, x), rtol=1e-12, atol=1e-12)


# --- errors --------------------------------------------------------------------------------------


@attrs.frozen
class Doubler(Identity):
    """A layer kind the export table does not know."""


def test_an_unknown_layer_is_named_by_place_and_kind() -> None:
    model = fnnet.serial(fnnet.Affine(3), fnnet.residual(fnnet.serial(fnnet.ReLU(), Doubler())))
    params, _ = model.init(fnnet.key(0), (4,))
    with pytest.raises(ExportError, match=r"^layer 1 / inner / layer 1 \(Doubler\): cannot be exported to ONNX$"):
        to_onnx(model, params, (4,))
    with pytest.raises(ExportError, match=r"^model \(Doubler\): cannot be exported to ONNX$"):
        to_onnx(Doubler(), None, (4,))


def test_batchnorm_needs_updated_running_statistics() -> None:
    model = fnnet.serial(fnnet.Affine(3), fnnet.BatchNorm())
    params, _ = model.init(fnnet.key(0), (4,))
    with pytest.raises(ExportError, match=r"^layer 1 \(BatchNorm\): needs its running statistics"):
        to_onnx(model, params, (4,))
    with pytest.raises(ExportError, match=r"^layer 1 \(BatchNorm\): the running statistics were never updated"):
        to_onnx(model, params, (4,), state=model.init_state((4,)))


def test_params_that_do_not_fit_and_bad_options_are_refused() -> None:
    model = fnnet.serial(fnnet.Affine(3), fnnet.ReLU())
    params, _ = model.init(fnnet.key(0), (4,))
    with pytest.raises(ExportError, match=r"params leaf 0/w has shape \(4, 3\), expected \(5, 3\)"):
        to_onnx(model, params, (5,))
    with pytest.raises(ExportError, match="opset must be an int from 17"):
        to_onnx(model, params, (4,), opset=11)
    with pytest.raises(ExportError, match="float32 or float64"):
        to_onnx(model, params, (4,), dtype=np.float16)
    bad = (params[0]._replace(b=np.full(3, np.nan, np.float32)), None)
    with pytest.raises(ExportError, match="NaN or infinite"):
        to_onnx(model, bad, (4,))


def test_importing_fnnet_does_not_import_onnx() -> None:
    code = "import sys, fnnet, fnnet.export; print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_onnx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    model = fnnet.serial(fnnet.Affine(3))
    params, _ = model.init(fnnet.key(0), (4,))
    with pytest.raises(ImportError, match=r"pip install 'fnnet\[export\]'"):
        to_onnx(model, params, (4,))


# --- the book's models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist() -> tuple[Array, Array]:
    return fnnet.datasets.load_mnist_test(normalize=True, flatten=False)


BOOK_MODELS: dict[str, tuple[Callable[[], fnnet.Serial], Shape]] = {
    "two_layer_net": (fnnet.models.two_layer_net, (784,)),
    "simple_convnet": (fnnet.models.simple_convnet, (1, 28, 28)),
    "deep_convnet": (fnnet.models.deep_convnet, (1, 28, 28)),
    "deep_convnet_batchnorm": (lambda: fnnet.models.deep_convnet(batchnorm=True), (1, 28, 28)),
    "resnet": (lambda: fnnet.models.resnet(widths=(4, 8), blocks=2), (1, 28, 28)),
}


@pytest.mark.parametrize("name", list(BOOK_MODELS))
def test_book_models_match_apply_on_random_and_mnist_inputs(name: str, mnist: tuple[Array, Array]) -> None:
    build, in_shape = BOOK_MODELS[name]
    model = build()
    params, _ = model.init(fnnet.key(5), in_shape)
    params = _perturbed(params, 6)
    state = _trained_state(model, in_shape, 7)
    session = onnx_session(to_onnx(model, params, in_shape, state=state))
    images = mnist[0][:100].reshape(-1, *in_shape)
    for x in (normal((8, *in_shape), 8, dtype=np.float32), images):
        want = model.apply(params, x, state=state)
        got = session.run(None, {"input": x})[0]
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL * max(1.0, float(np.abs(want).max())))
        assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


@pytest.fixture(scope="module")
def book_weights() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield load_script(EXAMPLES / "_book_weights.py")
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.mark.parametrize(("which", "accuracy"), [("simple_convnet_book", "0.9600"), ("deep_convnet_book", "0.9797")])
def test_the_books_weights_score_the_books_accuracy_in_onnxruntime(
    which: str, accuracy: str, book_weights: ModuleType, mnist: tuple[Array, Array]
) -> None:
    model, params = getattr(book_weights, which)()
    session = onnx_session(to_onnx(model, params, (1, 28, 28)))
    x, t = mnist
    t0 = time.perf_counter()
    # 10 runs of 1000 images: one run of all 10,000 holds gigabytes of activations, and is slower
    logits = np.concatenate([session.run(None, {"input": x[i : i + EVAL_BATCH]})[0] for i in range(0, len(x), EVAL_BATCH)])
    seconds = time.perf_counter() - t0
    assert logits.shape == (10000, 10)
    assert f"{np.mean(logits.argmax(axis=1) == t):.4f}" == accuracy
    assert seconds < 30, seconds
