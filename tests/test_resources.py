"""Memory of whole-set computations: peaks bounded by a small multiple of the data, results bit for
bit those of the plain formulas (metrics, augmentations)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import peak_bytes, rng

import fnnet
from fnnet.metrics import mae, r2, rmse, token_accuracy
from fnnet.train import History
from fnnet.tree import tree_astype
from fnnet.typing import Array


# --- regression metrics ---------------------------------------------------------------------------


def plain_mae(y: Array, t: Array) -> float:
    ya, ta = y.astype(np.float64), t.reshape(y.shape).astype(np.float64)
    return float(np.mean(np.abs(ya - ta)))


def plain_rmse(y: Array, t: Array) -> float:
    d = (y.astype(np.float64) - t.reshape(y.shape).astype(np.float64)).reshape(-1)
    return float(np.sqrt(np.dot(d, d) / d.size))


def plain_r2(y: Array, t: Array) -> float:
    ya, ta = y.astype(np.float64), t.reshape(y.shape).astype(np.float64)
    res, dev = ta - ya, ta - ta.mean(axis=0)
    ss_tot = float(np.vdot(dev, dev))
    return float("nan") if ss_tot == 0.0 else 1.0 - float(np.vdot(res, res)) / ss_tot


REGRESSION = [(mae, plain_mae), (rmse, plain_rmse), (r2, plain_r2)]


@pytest.mark.parametrize("metric, plain", REGRESSION, ids=["mae", "rmse", "r2"])
@pytest.mark.parametrize(
    "y_shape, t_shape, y_dtype, t_dtype",
    [
        ((20000,), (20000,), np.float32, np.float32),  # more than one summation block
        ((3001, 1), (3001,), np.float32, np.float64),
        ((257,), (257, 1), np.float64, np.float32),
        ((500, 7), (500, 7), np.float16, np.int64),
        ((64, 3), (64, 3), np.int32, np.uint8),
        ((40,), (40,), np.bool_, np.float32),
    ],
)
def test_regression_metrics_equal_the_plain_float64_formulas_bit_for_bit(
    metric: Callable[[Array, Array], float],
    plain: Callable[[Array, Array], float],
    y_shape: tuple[int, ...],
    t_shape: tuple[int, ...],
    y_dtype: Any,
    t_dtype: Any,
) -> None:
    g = rng(4101, len(y_shape), y_shape[0])
    y = (g.standard_normal(y_shape) * 20).astype(y_dtype)
    t = (g.standard_normal(t_shape) * 20).astype(t_dtype)
    got, want = metric(y, t), plain(y, t)
    assert got == want or (np.isnan(got) and np.isnan(want))


@pytest.mark.parametrize("metric, temporaries", [(mae, 1), (rmse, 1), (r2, 2)], ids=["mae", "rmse", "r2"])
def test_regression_metrics_of_big_float32_outputs_keep_at_most_two_float64_temporaries(
    metric: Callable[[Array, Array], float], temporaries: int
) -> None:
    # an autoencoder's outputs (N, 784): the metrics used to hold four float64 copies (8x the data)
    g = rng(4102)
    y = g.random((1500, 784), dtype=np.float32)
    t = g.random((1500, 784), dtype=np.float32)
    float64_copy = 2 * y.nbytes
    assert peak_bytes(lambda: metric(y, t)) < temporaries * float64_copy + y.nbytes // 2


def test_regression_metrics_leave_their_inputs_unchanged() -> None:
    y, t = rng(4103).standard_normal((2, 300, 2))
    y0, t0 = y.copy(), t.copy()
    y.flags.writeable = t.flags.writeable = False
    for metric in (mae, rmse, r2):
        metric(y, t)
    assert np.array_equal(y, y0) and np.array_equal(t, t0)


# --- token accuracy -------------------------------------------------------------------------------


@pytest.mark.parametrize("ignore_index", [None, -1, 3])
def test_token_accuracy_equals_the_masked_mean(ignore_index: int | None) -> None:
    g = rng(4104)
    y = g.standard_normal((300, 9, 5)).astype(np.float32)
    t = g.integers(0, 5, (300, 9))
    if ignore_index == -1:
        t[:, 6:] = -1
    keep = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    want = float(np.mean(y.argmax(axis=-1)[keep] == t[keep]))
    assert token_accuracy(y, t, ignore_index=ignore_index) == want


def test_token_accuracy_without_ignore_index_copies_no_targets() -> None:
    # 60,000 x 10 tokens: a mask and two gathered int64 copies used to add 2.6x the targets
    g = rng(4105)
    y = g.standard_normal((6000, 10, 13)).astype(np.float32)
    t = g.integers(0, 13, (6000, 10))
    assert peak_bytes(lambda: token_accuracy(y, t)) < 1.3 * t.nbytes


# --- checkpoints with a long history in meta ------------------------------------------------------


def test_a_checkpoint_holds_the_history_of_200k_steps_as_the_readme_saves_it(tmp_path: Path) -> None:
    # 107 epochs of 60,000 samples at batch 32; its indented manifest was larger than MAX_MANIFEST_BYTES
    g = rng(4106)
    history = History(tuple(float(v) for v in g.random(200_000) * 2.3), ({"loss": 0.5, "train_acc": 0.9},) * 107)
    state = {"w": np.ones((3, 2), np.float32)}
    path = tmp_path / "ck.npz"
    fnnet.save(path, state, meta={"history": history.to_json(), "key": fnnet.key(3)})
    loaded, meta = fnnet.load(path, state)
    assert History.from_json(meta["history"]) == history and meta["key"] == fnnet.key(3)
    assert np.array_equal(loaded["w"], state["w"])


def test_checking_a_long_meta_list_pushes_none_of_its_numbers() -> None:
    from fnnet.checkpoint import _meta_key_problem, _too_deep

    meta = {"history": {"step_loss": [0.5] * 100_000, "epochs": [{"loss": 0.1}] * 10}, "key": fnnet.key(1)}
    assert peak_bytes(lambda: _too_deep(meta, 100)) < 64 << 10
    assert peak_bytes(lambda: _meta_key_problem(meta)) < 64 << 10
    assert not _too_deep(meta, 100) and _meta_key_problem(meta) is None
    assert _too_deep({"a": [[fnnet.key(0)]]}, 5) and not _too_deep({"a": [[fnnet.key(0)]]}, 6)
    assert _meta_key_problem({"a": [0.5, {1: 0, "1": 0}]}) is not None


# --- evaluating a pipeline with apply ---------------------------------------------------------------


def _block(c: int) -> fnnet.layers.Layer:
    inner = fnnet.serial(fnnet.Conv2D(c, 3, pad=1), fnnet.BatchNorm(), fnnet.ReLU(), fnnet.Conv2D(c, 3, pad=1))
    return fnnet.residual(inner)


def test_apply_of_nested_pipelines_equals_forward_bit_for_bit() -> None:
    from fnnet.layers import add_branches, concat

    model = fnnet.serial(
        fnnet.Conv2D(4, 3, pad=1),
        fnnet.BatchNorm(),
        fnnet.ReLU(),
        _block(4),
        fnnet.residual(fnnet.Conv2D(6, 1, stride=2), shortcut=fnnet.serial(fnnet.Conv2D(6, 1, stride=2), fnnet.BatchNorm())),
        concat(fnnet.ReLU(), fnnet.serial(fnnet.Conv2D(2, 1), fnnet.Tanh())),
        add_branches(fnnet.Conv2D(3, 1), fnnet.Conv2D(3, 1)),
        fnnet.Flatten(),
        fnnet.Dropout(0.4),
        fnnet.Affine(5),
    )
    in_shape = (2, 6, 6)
    params, _ = model.init(fnnet.key(0), in_shape)
    x = rng(4107).standard_normal((7, *in_shape)).astype(np.float32)
    train = fnnet.layers.base.Ctx(True, fnnet.key(5))
    y_train, trained, _ = model.forward(params, model.init_state(in_shape), x, train)
    assert model.apply(params, x, state=model.init_state(in_shape), ctx=train).tobytes() == y_train.tobytes()
    y_eval = model.forward(params, trained, x)[0]
    assert model.apply(params, x, state=trained).tobytes() == y_eval.tobytes()


def test_apply_names_the_failing_layer_as_forward_does() -> None:
    model = fnnet.serial(fnnet.Affine(4), fnnet.residual(fnnet.serial(fnnet.ReLU(), fnnet.Affine(4))))
    params, _ = model.init(fnnet.key(0), (3,))
    bad = (params[0], ((params[1][0][0], params[0]), None))  # the inner Affine gets the first one's weights
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError) as by_forward:
        model.forward(bad, None, x)
    with pytest.raises(ValueError) as by_apply:
        model.apply(bad, x)
    assert str(by_apply.value) == str(by_forward.value) and "layer 1 / inner / layer 1 (Affine)" in str(by_apply.value)
    with pytest.raises(ValueError, match=r"^Serial\.apply: expected x as a NumPy array, got list$"):
        model.apply(params, [[1.0, 2.0, 3.0]])  # type: ignore[arg-type]


def test_apply_of_a_deep_pipeline_holds_a_few_activations_not_every_layer_s_cache() -> None:
    depth, width, n = 12, 128, 2000
    model = fnnet.serial(*[layer for _ in range(depth) for layer in (fnnet.Affine(width), fnnet.ReLU())])
    params, _ = model.init(fnnet.key(0), (width,))
    x = rng(4108).standard_normal((n, width)).astype(np.float32)
    activation = x.nbytes
    assert peak_bytes(lambda: model.forward(params, None, x)) > depth * activation  # every cache kept
    assert peak_bytes(lambda: model.apply(params, x)) < 4 * activation


# --- recurrent models evaluated without their caches ----------------------------------------------


def _seq2seq(kind: str, hidden: int) -> Any:
    from fnnet.seq2seq import AttentionSeq2seq, Seq2seq

    if kind == "attention":
        return AttentionSeq2seq(11, 4, hidden, src_len=7, reverse=True)
    return Seq2seq(11, 4, hidden, src_len=7, peeky=kind == "peeky", reverse=kind == "reverse")


@pytest.mark.parametrize("kind", ["plain", "peeky", "reverse", "attention"])
@pytest.mark.parametrize("n, hidden, dtype", [(3, 5, np.float32), (64, 32, np.float32), (5, 6, np.float64)])
def test_seq2seq_apply_equals_forward_bit_for_bit(kind: str, n: int, hidden: int, dtype: Any) -> None:
    model = _seq2seq(kind, hidden)
    params, _ = model.init(fnnet.key(1), (7 + 4,))
    params = tree_astype(params, dtype)
    x = rng(4109, n).integers(0, 11, (n, 7 + 4))
    want = model.forward(params, None, x)[0]
    got = model.apply(params, x)
    assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("n, t, hidden", [(3, 7, 5), (32, 9, 16)])
def test_lstm_apply_equals_forward_bit_for_bit(return_sequences: bool, n: int, t: int, hidden: int) -> None:
    lstm = fnnet.LSTM(hidden, return_sequences=return_sequences, stateful=True)
    params, _ = lstm.init(fnnet.key(2), (t, 5))
    x = rng(4110, n).standard_normal((n, t, 5)).astype(np.float32)
    _, carried, _ = lstm.forward(params, None, x)
    for state in (None, carried):
        want = lstm.forward(params, state, x)[0]
        assert lstm.apply(params, x, state=state).tobytes() == want.tobytes()
    with pytest.raises(ValueError, match=r"^LSTM: expected input of shape \(N, T, 5\), got \(3, 4\)$"):
        lstm.apply(params, np.zeros((3, 4), np.float32))


def test_attention_seq2seq_apply_keeps_no_lstm_gates() -> None:
    from fnnet.seq2seq import AttentionSeq2seq

    model = AttentionSeq2seq(60, 16, 64, src_len=29)
    params, _ = model.init(fnnet.key(0), (29 + 10,))
    x = rng(4111).integers(0, 60, (300, 29 + 10))
    by_forward = peak_bytes(lambda: model.forward(params, None, x))
    assert peak_bytes(lambda: model.apply(params, x)) < by_forward / 3


def _peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_predict_and_evaluate_keep_no_layer_caches() -> None:
    """Evaluation goes through ``apply``: a deep pipeline's activations are not all alive at once
    (``forward`` keeps every layer's input in its cache), and the outputs are forward's."""
    layers: list[fnnet.Layer] = []
    for _ in range(10):
        layers += [fnnet.Affine(256), fnnet.ReLU()]
    model = fnnet.serial(*layers, fnnet.Affine(10))
    params, _ = model.init(fnnet.key(0), (64,))
    x = fnnet.key(1).generator().random((2000, 64), dtype=np.float32)
    t = np.arange(2000) % 10
    cached = _peak_mib(lambda: model.forward(params, None, x))
    assert cached > 15  # ten (2000, 256) float32 layer inputs and ReLU masks
    assert _peak_mib(lambda: fnnet.predict(model, params, x, batch_size=2000, threads=1)) < cached / 3
    assert _peak_mib(lambda: fnnet.evaluate(model, params, x, t, batch_size=2000, threads=1)) < cached / 3
    assert np.array_equal(fnnet.predict(model, params, x, batch_size=2000, threads=1), model.forward(params, None, x)[0])


def test_predict_writes_each_batch_into_the_result_instead_of_joining_a_list() -> None:
    """A wide output (an autoencoder's) is held once: the batches go straight into the result, so
    the peak is the result and a few batches in flight, not the result twice."""
    model = fnnet.serial(fnnet.Affine(784))
    params, _ = model.init(fnnet.key(0), (16,))
    x = fnnet.key(1).generator().random((4000, 16), dtype=np.float32)
    size = 4000 * 784 * 4 / 2**20
    peak = _peak_mib(lambda: fnnet.predict(model, params, x, threads=2))
    assert peak < 1.4 * size
    y = fnnet.predict(model, params, x, threads=2)
    want = np.concatenate([model.apply(params, x[i : i + 250]) for i in range(0, 4000, 250)])
    assert y.dtype == np.float32 and np.array_equal(y, want)
    assert fnnet.predict(model, params, x[:0]).shape == (0,)
