"""Data parallelism: shard arithmetic, the thread runner, BLAS thread control and sharded train steps."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnnet
from fnnet import models, parallel
from fnnet.layers import Affine, BatchNorm, Conv2D, Dropout, Flatten, ReLU, residual, serial
from fnnet.optim import sgd
from fnnet.train import (
    DEFAULT_SHARDS,
    NonFiniteLossError,
    TrainState,
    evaluate,
    fit,
    init_train_state,
    make_train_step,
    predict,
)
from fnnet.tree import tree_leaves, tree_map


@given(st.integers(0, 300), st.integers(1, 9))
def test_shard_slices_cover_the_batch_in_balanced_contiguous_runs(n: int, shards: int) -> None:
    parts = parallel.shard_slices(n, shards)
    assert len(parts) == min(n, shards)
    covered = [i for s in parts for i in range(s.start, s.stop)]
    assert covered == list(range(n))
    sizes = [s.stop - s.start for s in parts]
    if sizes:
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)
        assert min(sizes) >= 1


def test_shard_slices_rejects_zero_shards() -> None:
    with pytest.raises(ValueError, match="shards must be positive"):
        parallel.shard_slices(10, 0)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_run_shards_keeps_order(threads: int) -> None:
    items = list(range(11))
    assert parallel.run_shards(lambda i: i * i, items, threads) == [i * i for i in items]
    assert parallel.run_shards(lambda i: i, [], threads) == []


def test_run_shards_runs_items_concurrently() -> None:
    # Each item waits for the other at a barrier: this only returns if both run at once.
    barrier = threading.Barrier(2, timeout=10)
    assert parallel.run_shards(lambda i: (barrier.wait(), i)[1], [0, 1], 2) == [0, 1]


def test_nested_run_shards_finish() -> None:
    # Items that themselves split their work: a pool thread must not wait on work queued behind it.
    def outer(i: int) -> list[int]:
        return parallel.run_shards(lambda j: 10 * i + j, [0, 1, 2], 2)

    got: list[list[list[int]]] = []
    runner = threading.Thread(target=lambda: got.append(parallel.run_shards(outer, [0, 1, 2, 3], 2)), daemon=True)
    runner.start()
    runner.join(60)  # a deadlock would hang here; fail instead
    assert not runner.is_alive(), "nested run_shards deadlocked"
    assert got == [[[10 * i + j for j in range(3)] for i in range(4)]]


def test_run_shards_with_one_thread_stays_in_the_caller() -> None:
    me = threading.get_ident()
    assert parallel.run_shards(lambda _: threading.get_ident(), [0, 1, 2], 1) == [me, me, me]


def test_run_shards_raises_after_every_run_finished() -> None:
    finished: list[int] = []

    def work(i: int) -> int:
        if i == 1:
            raise RuntimeError("shard 1 failed")
        finished.append(i)
        return i

    with pytest.raises(RuntimeError, match="shard 1 failed"):
        parallel.run_shards(work, [0, 1, 2, 3], 2)
    # runs: items (0, 1) in the caller, (2, 3) in a worker, which finishes before the error is raised
    assert sorted(finished) == [0, 2, 3]
    with pytest.raises(ValueError, match="threads must be positive"):
        parallel.run_shards(work, [0], 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="NumPy's bundled OpenBLAS is looked up on Linux")
def test_blas_thread_count_is_found_and_restored() -> None:
    before = parallel.blas_threads()
    assert before is not None and before >= 1
    with parallel.single_threaded_blas() as ok:
        assert ok
        assert parallel.blas_threads() == 1
        with parallel.single_threaded_blas():  # nested
            assert parallel.blas_threads() == 1
        assert parallel.blas_threads() == 1  # the inner exit does not restore early
    assert parallel.blas_threads() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="NumPy's bundled OpenBLAS is looked up on Linux")
def test_blas_thread_count_restored_after_concurrent_users_and_errors() -> None:
    before = parallel.blas_threads()
    inside: list[int | None] = []
    barrier = threading.Barrier(2, timeout=10)

    def user(_: int) -> None:
        with parallel.single_threaded_blas():
            barrier.wait()
            inside.append(parallel.blas_threads())
            barrier.wait()

    parallel.run_shards(user, [0, 1], 2)
    assert inside == [1, 1]
    with pytest.raises(KeyError):
        with parallel.single_threaded_blas():
            raise KeyError("boom")
    assert parallel.blas_threads() == before


def test_default_threads_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.THREADS_ENV, "3")
    assert parallel.default_threads() == 3
    monkeypatch.setenv(parallel.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match="FNNET_NUM_THREADS must be a positive integer"):
        parallel.default_threads()
    monkeypatch.setenv(parallel.THREADS_ENV, "0")
    with pytest.raises(ValueError, match="FNNET_NUM_THREADS"):
        parallel.default_threads()
    monkeypatch.delenv(parallel.THREADS_ENV)
    assert 1 <= parallel.default_threads() <= parallel.available_cores()


def _child_runs_shards(queue: Any) -> None:
    queue.put(parallel.run_shards(lambda i: i + 1, [0, 1, 2, 3], 2))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start method")
def test_thread_pool_works_in_a_forked_child() -> None:
    parallel.run_shards(lambda i: i, [0, 1], 2)  # the parent's pool exists before the fork
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_runs_shards, args=(queue,))
    proc.start()
    try:
        assert queue.get(timeout=60) == [1, 2, 3, 4]
    finally:
        proc.join(60)
    assert proc.exitcode == 0


# --- layer flags ------------------------------------------------------------------------------


def test_layer_flags_propagate_through_pipelines() -> None:
    assert Conv2D(4, 3).splits_well and not Conv2D(4, 3).couples_batch
    assert not Affine(3).splits_well
    assert BatchNorm().couples_batch
    conv_net = serial(Conv2D(4, 3), ReLU(), Flatten(), Affine(10))
    assert conv_net.splits_well and not conv_net.couples_batch
    assert residual(serial(Conv2D(2, 3, pad=1))).splits_well
    assert serial(conv_net, BatchNorm()).couples_batch
    assert residual(BatchNorm()).couples_batch
    assert not models.two_layer_net().splits_well


# --- sharded train steps ------------------------------------------------------------------------


def _conv_setup(dtype: Any = np.float64, n: int = 7) -> tuple[fnnet.Serial, TrainState, np.ndarray, np.ndarray]:
    model = serial(Conv2D(3, 3, pad=1), ReLU(), Flatten(), Affine(5))
    g = fnnet.key(5).generator()
    x = g.standard_normal((n, 2, 6, 6)).astype(dtype)
    t = g.integers(0, 5, n)
    state = init_train_state(model, sgd(0.1), fnnet.key(0), (2, 6, 6))
    return model, fnnet.astype(state, dtype), x, t


def _leaves_equal(a: Any, b: Any) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(tree_leaves(a), tree_leaves(b)))


def test_sharded_step_matches_unsharded_to_rounding() -> None:
    model, state, x, t = _conv_setup()
    one, m1 = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    for shards in (2, 3, 7, 20):
        many, m2 = make_train_step(model, optimizer=sgd(0.1), shards=shards)(state, x, t, None)
        assert m2.loss == pytest.approx(m1.loss, rel=1e-12)
        for a, b in zip(tree_leaves(many.params), tree_leaves(one.params)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        assert int(many.step) == 1


def test_threads_change_speed_not_bits() -> None:
    model, state, x, t = _conv_setup(np.float32, n=40)
    results = []
    for threads in (1, 2, 4):
        step = make_train_step(model, optimizer=sgd(0.1), shards=4, threads=threads)
        s, m = state, None
        for _ in range(3):
            s, m = step(s, x, t, None)
        results.append((s, m))
    for s, m in results[1:]:
        assert m is not None and results[0][1] is not None and m.loss == results[0][1].loss
        assert _leaves_equal(s.params, results[0][0].params)


def test_default_shards_follow_the_model() -> None:
    model, state, x, t = _conv_setup()
    default, _ = make_train_step(model, optimizer=sgd(0.1))(state, x, t, None)
    explicit, _ = make_train_step(model, optimizer=sgd(0.1), shards=DEFAULT_SHARDS)(state, x, t, None)
    single, _ = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    assert _leaves_equal(default.params, explicit.params)
    assert not _leaves_equal(default.params, single.params)  # rounding differs: it really split
    mlp = models.two_layer_net(8, 4, 3)
    ms = init_train_state(mlp, sgd(0.1), fnnet.key(0), (8,))
    xm, tm = x.reshape(7, -1)[:, :8].astype(np.float32), t % 3
    d, _ = make_train_step(mlp, optimizer=sgd(0.1))(ms, xm, tm, None)
    s1, _ = make_train_step(mlp, optimizer=sgd(0.1), shards=1)(ms, xm, tm, None)
    assert _leaves_equal(d.params, s1.params)  # fully connected: not split by default


def test_sharded_step_with_dropout_and_weight_decay_is_reproducible() -> None:
    model = serial(Conv2D(3, 3), ReLU(), Flatten(), Dropout(0.5), Affine(4))
    g = fnnet.key(9).generator()
    x, t = g.standard_normal((10, 1, 5, 5)), g.integers(0, 4, 10)
    state = fnnet.astype(init_train_state(model, sgd(0.1), fnnet.key(1), (1, 5, 5)), np.float64)
    step = make_train_step(model, optimizer=sgd(0.1), shards=2, weight_decay=0.1)
    a, ma = step(state, x, t, fnnet.key(3))
    b, mb = step(state, x, t, fnnet.key(3))
    c, _ = step(state, x, t, fnnet.key(4))
    assert ma.loss == mb.loss and _leaves_equal(a.params, b.params)
    assert not _leaves_equal(a.params, c.params)  # the key drives the masks
    # the L2 term is counted once, not once per shard
    plain, mp = make_train_step(model, optimizer=sgd(0.1), shards=2)(state, x, t, fnnet.key(3))
    w = [leaf for leaf in tree_leaves(state.params) if leaf.ndim >= 2]
    assert ma.loss - mp.loss == pytest.approx(0.05 * sum(float(np.sum(v * v)) for v in w), rel=1e-9)


def _bn_setup(
    dtype: Any = np.float64, n: int = 9, dropout: bool = False
) -> tuple[fnnet.Serial, TrainState, np.ndarray, np.ndarray]:
    model = serial(
        Conv2D(3, 3, pad=1), BatchNorm(), ReLU(), residual(serial(Conv2D(3, 3, pad=1), BatchNorm())),
        Flatten(), Affine(6), BatchNorm(), ReLU(), *([Dropout(0.3)] if dropout else []), Affine(4),
    )  # fmt: skip
    g = fnnet.key(2).generator()
    x, t = g.standard_normal((n, 2, 5, 5)).astype(dtype), g.integers(0, 4, n)
    state = fnnet.astype(init_train_state(model, sgd(0.1), fnnet.key(0), (2, 5, 5)), dtype)
    return model, state, x, t


def test_batch_coupled_pipelines_run_coupled_layers_on_the_whole_batch() -> None:
    model, state, x, t = _bn_setup()
    assert model.couples_batch and model.splits_well
    one, m1 = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    for shards in (2, 3, 9):
        many, m2 = make_train_step(model, optimizer=sgd(0.1), shards=shards)(state, x, t, None)
        assert m2.loss == pytest.approx(m1.loss, rel=1e-12)
        for a, b in zip(tree_leaves((many.params, many.model_state)), tree_leaves((one.params, one.model_state))):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)  # full-batch statistics, not per shard
    auto, _ = make_train_step(model, optimizer=sgd(0.1))(state, x, t, None)
    two, _ = make_train_step(model, optimizer=sgd(0.1), shards=2)(state, x, t, None)
    assert _leaves_equal(auto.params, two.params) and _leaves_equal(auto.model_state, two.model_state)


def test_batch_coupled_pipelines_do_not_depend_on_threads() -> None:
    model, state, x, t = _bn_setup(np.float32, n=30, dropout=True)
    runs = []
    for threads in (1, 2, 3):
        step = make_train_step(model, optimizer=sgd(0.1), shards=3, threads=threads)
        s = state
        for k in range(3):
            s, m = step(s, x, t, fnnet.key(k))  # Dropout draws from the key
        runs.append((s, m.loss))
    for s, loss in runs[1:]:
        assert loss == runs[0][1]
        assert _leaves_equal(s, runs[0][0])


def test_a_coupled_model_that_is_not_a_pipeline_is_not_split() -> None:
    model = residual(serial(Conv2D(2, 3, pad=1), BatchNorm()))
    with pytest.raises(ValueError, match="shards=2 splits the batch.*not a serial pipeline"):
        make_train_step(model, optimizer=sgd(0.1), shards=2)
    g = fnnet.key(2).generator()
    x = g.standard_normal((6, 2, 4, 4)).astype(np.float32)
    t = g.standard_normal((6, 2, 4, 4)).astype(np.float32)
    state = init_train_state(model, sgd(0.1), fnnet.key(0), (2, 4, 4))
    auto, _ = make_train_step(model, fnnet.mean_squared_error, sgd(0.1))(state, x, t, None)
    one, _ = make_train_step(model, fnnet.mean_squared_error, sgd(0.1), shards=1)(state, x, t, None)
    assert _leaves_equal(auto, one)


def test_segmented_step_names_the_failing_layer() -> None:
    model, state, x, t = _bn_setup()
    conv, bn = state.params[3]
    params = list(state.params)
    params[3] = (conv._replace(w=conv.w[:2]), bn)  # the residual's convolution loses a filter
    with pytest.raises(ValueError, match=r"layer 3 \(Residual\)"):
        make_train_step(model, optimizer=sgd(0.1), shards=2)(state._replace(params=tuple(params)), x, t, None)
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2D\)"):
        make_train_step(model, optimizer=sgd(0.1), shards=2)(state, x[:, :1], t, None)


def test_segmented_step_leaves_its_inputs_alone() -> None:
    model, state, x, t = _bn_setup(np.float32, n=8)
    copies = tree_map(np.copy, state), x.copy(), t.copy()
    make_train_step(model, optimizer=sgd(0.1), shards=2, threads=2)(state, x, t, fnnet.key(1))
    assert _leaves_equal(state, copies[0]) and np.array_equal(x, copies[1]) and np.array_equal(t, copies[2])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_shards_and_threads_are_refused(bad: Any) -> None:
    model = models.simple_convnet()
    with pytest.raises(ValueError, match="shards must be a positive int"):
        make_train_step(model, optimizer=sgd(0.1), shards=bad)
    with pytest.raises(ValueError, match="threads must be a positive int"):
        make_train_step(model, optimizer=sgd(0.1), threads=bad)


def test_sharded_step_raises_non_finite_loss_with_the_input_state() -> None:
    model, state, x, t = _conv_setup()
    bad = x.copy()
    bad[-1, 0, 0, 0] = np.nan  # in the last shard only
    with pytest.raises(NonFiniteLossError) as err:
        make_train_step(model, optimizer=sgd(0.1), shards=2)(state, bad, t, None)
    assert err.value.state is state


def test_sharded_step_batches_smaller_than_the_shard_count() -> None:
    model, state, x, t = _conv_setup()
    single, _ = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x[:1], t[:1], None)
    split, _ = make_train_step(model, optimizer=sgd(0.1), shards=4)(state, x[:1], t[:1], None)
    assert _leaves_equal(single.params, split.params)  # one sample: one shard, same arithmetic


def test_sharded_step_leaves_its_inputs_alone() -> None:
    model, state, x, t = _conv_setup(np.float32, n=9)
    copies = tree_map(np.copy, state), x.copy(), t.copy()
    make_train_step(model, optimizer=sgd(0.1), shards=3, threads=2)(state, x, t, None)
    assert _leaves_equal(state, copies[0]) and np.array_equal(x, copies[1]) and np.array_equal(t, copies[2])


def test_evaluate_and_predict_do_not_depend_on_threads() -> None:
    model, state, x, t = _conv_setup(np.float32, n=23)
    ys = [predict(model, state.params, x, batch_size=4, threads=k) for k in (1, 2, 5)]
    assert ys[0].shape == (23, 5)
    assert all(np.array_equal(ys[0], y) for y in ys[1:])
    evs = [evaluate(model, state.params, x, t, batch_size=4, threads=k) for k in (1, 3)]
    assert evs[0] == evs[1]
    with pytest.raises(ValueError, match="threads must be a positive int"):
        predict(model, state.params, x, threads=0)
    with pytest.raises(ValueError, match="x has 23 samples but t has 22"):
        evaluate(model, state.params, x, t[:-1])


def test_fit_results_do_not_depend_on_threads() -> None:
    model = serial(Conv2D(2, 3), ReLU(), Flatten(), Affine(3))
    g = fnnet.key(4).generator()
    x, t = g.standard_normal((30, 1, 6, 6)).astype(np.float32), g.integers(0, 3, 30)
    runs = [
        fit(model, sgd(0.05), (x, t), key=fnnet.key(0), epochs=2, batch_size=8, progress="quiet", threads=k)
        for k in (1, 2)
    ]
    assert runs[0].history.step_loss == runs[1].history.step_loss
    no_time = [[{k: v for k, v in e.items() if k != "time"} for e in r.history.epochs] for r in runs]
    assert no_time[0] == no_time[1] and "train_acc" in no_time[0][0]
    assert _leaves_equal(runs[0].state.params, runs[1].state.params)


# --- the layer shard protocol -------------------------------------------------------------------


def _split(a: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(a, np.cumsum(sizes)[:-1])


@pytest.mark.parametrize("shape", [(11, 5), (7, 3, 4, 5)])
@pytest.mark.parametrize("input_grad", [True, False])
def test_batchnorm_on_shards_equals_batchnorm_on_the_batch(shape: tuple[int, ...], input_grad: bool) -> None:
    layer = BatchNorm()
    g = fnnet.key(7).generator()
    x = g.standard_normal(shape) * 3 + 1
    params = fnnet.astype(layer.init(fnnet.key(0), shape[1:])[0], np.float64)
    params = params._replace(gamma=params.gamma + g.standard_normal(shape[1]), beta=g.standard_normal(shape[1]))
    state = fnnet.astype(layer.init_state(shape[1:]), np.float64)
    ctx = fnnet.Ctx(train=True, state=state, input_grad=input_grad)
    dout = g.standard_normal(shape)
    y, cache = layer.forward(params, x, ctx)
    dx, grads = layer.backward(params, cache, dout)
    sizes = [4, 1, len(x) - 5]
    shards = parallel.Shards(3, 2)
    ys, scache = layer.forward_shards(params, _split(x, sizes), ctx, shards)
    dxs, sgrads = layer.backward_shards(params, scache, _split(dout, sizes), shards)
    assert [len(p) for p in ys] == sizes and [len(p) for p in dxs] == sizes
    np.testing.assert_allclose(np.concatenate(ys), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate(dxs), dx, rtol=1e-10, atol=1e-12)
    for a, b in zip(tree_leaves((sgrads, layer.new_state(scache))), tree_leaves((grads, layer.new_state(cache)))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_batchnorm_on_shards_validates_like_forward() -> None:
    layer = BatchNorm()
    params = layer.init(fnnet.key(0), (3,))[0]
    shards = parallel.Shards(2, 2)
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="expected input"):
        layer.forward_shards(params, [x, np.ones((2, 4), np.float32)], fnnet.TRAIN, shards)
    with pytest.raises(ValueError, match="more than one value per feature"):
        layer.forward_shards(params, [x[:1]], fnnet.TRAIN, parallel.Shards(1, 1))
    ys, cache = layer.forward_shards(params, [x, x * 2], fnnet.TRAIN, shards)
    with pytest.raises(ValueError, match="expected dout of shape"):
        layer.backward_shards(params, cache, [x, x[:1]], shards)


def test_default_shard_protocol_joins_and_splits() -> None:
    layer = Affine(4)
    g = fnnet.key(3).generator()
    x = g.standard_normal((9, 6))
    params = fnnet.astype(layer.init(fnnet.key(0), (6,))[0], np.float64)
    y, cache = layer.forward(params, x, fnnet.TRAIN)
    dx, grads = layer.backward(params, cache, y)
    shards = parallel.Shards(2, 2)
    ys, scache = layer.forward_shards(params, _split(x, [5, 4]), fnnet.TRAIN, shards)
    dxs, sgrads = layer.backward_shards(params, scache, ys, shards)
    assert np.array_equal(np.concatenate(ys), y) and np.array_equal(np.concatenate(dxs), dx)
    assert _leaves_equal(sgrads, grads)


def test_join_rows_keeps_channels_last_memory() -> None:
    from fnnet.layers.base import join_rows

    parts = [np.arange(n * 24, dtype=np.float32).reshape(n, 2, 3, 4).transpose(0, 3, 1, 2) for n in (2, 3)]
    joined = join_rows(parts)
    assert np.array_equal(joined, np.concatenate(parts))
    assert joined.transpose(0, 2, 3, 1).flags.c_contiguous
    plain = [np.ones((2, 3)), np.zeros((1, 3))]
    assert join_rows(plain).flags.c_contiguous and join_rows(plain).shape == (3, 3)
    assert join_rows(plain[:1]) is plain[0]


class _Counting(fnnet.Layer):
    """An identity layer with state that does not declare couples_batch (for the refusal tests)."""

    def init(self, key: fnnet.Key, in_shape: tuple[int, ...]) -> tuple[None, tuple[int, ...]]:
        return None, tuple(in_shape)

    def init_state(self, in_shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros((), np.int64)

    def forward(self, params: None, x: np.ndarray, ctx: fnnet.Ctx = fnnet.EVAL) -> tuple[np.ndarray, Any]:
        return x, ctx.state

    def backward(self, params: None, cache: Any, dout: np.ndarray) -> tuple[np.ndarray, None]:
        return dout, None

    def new_state(self, cache: Any) -> Any:
        return None if cache is None else cache + 1


@pytest.mark.parametrize("with_batchnorm", [False, True])
def test_stateful_layers_that_do_not_declare_coupling_are_not_split(with_batchnorm: bool) -> None:
    layers = [Conv2D(2, 3), _Counting(), *([BatchNorm()] if with_batchnorm else []), Flatten(), Affine(3)]
    model = serial(*layers)
    g = fnnet.key(1).generator()
    x, t = g.standard_normal((6, 1, 5, 5)).astype(np.float32), g.integers(0, 3, 6)
    state = init_train_state(model, sgd(0.1), fnnet.key(0), (1, 5, 5))
    with pytest.raises(ValueError, match="state"):
        make_train_step(model, optimizer=sgd(0.1), shards=2)(state, x, t, None)
    one, _ = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    assert int(one.model_state[1]) == 1


def test_nested_pipelines_with_batchnorm_run_on_shards() -> None:
    def block(filters: int) -> fnnet.Serial:
        return serial(Conv2D(filters, 3, pad=1), BatchNorm(), ReLU())

    model = serial(block(3), block(2), Flatten(), Affine(4))
    g = fnnet.key(6).generator()
    x, t = g.standard_normal((8, 1, 5, 5)), g.integers(0, 4, 8)
    state = fnnet.astype(init_train_state(model, sgd(0.1), fnnet.key(0), (1, 5, 5)), np.float64)
    # the inner blocks are split too: their caches are per-segment, not one joined pass
    ctx = fnnet.Ctx(train=True, state=state.model_state, input_grad=False)
    _, cache = model.forward_shards(state.params, [x[:4], x[4:]], ctx, parallel.Shards(2, 2))
    from fnnet._sharded import SegmentedCache

    assert isinstance(cache.caches[0], SegmentedCache) and isinstance(cache.caches[1], SegmentedCache)
    one, m1 = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    two, m2 = make_train_step(model, optimizer=sgd(0.1), shards=2)(state, x, t, None)
    assert m2.loss == pytest.approx(m1.loss, rel=1e-12)
    for a, b in zip(tree_leaves((two.params, two.model_state)), tree_leaves((one.params, one.model_state))):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
