"""Threads outside the layers: the shard runner, the ordered batch sum, BLAS limits, the policy."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from _helpers import ShapeKeeping, blas_limit_held_by_another_thread

import fnnet
from fnnet import models
from fnnet.layers import Affine, BatchNorm, Conv2D, Ctx, Dropout, Flatten, Layer, ReLU, residual, serial
from fnnet.optim import sgd
from fnnet.train import choose_policy, evaluate, fit, init_train_state, make_train_step, predict
from fnnet.train import parallel
from fnnet.train.step import SHARD_MIN_VOLUME, TrainState, join_rows
from fnnet.tree import tree_leaves
from fnnet.typing import Array, Shape

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and threadpoolctl's BLAS lookup")


@given(st.integers(0, 50), st.integers(1, 8))
def test_shard_slices_cover_the_batch_in_balanced_contiguous_runs(n: int, shards: int) -> None:
    parts = parallel.shard_slices(n, shards)
    assert len(parts) == min(n, shards)
    covered = [i for s in parts for i in range(s.start, s.stop)]
    assert covered == list(range(n))
    if parts:
        sizes = [s.stop - s.start for s in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_slices_rejects_zero_shards() -> None:
    with pytest.raises(ValueError, match="shards must be positive"):
        parallel.shard_slices(4, 0)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_run_shards_keeps_order(threads: int) -> None:
    assert parallel.run_shards(lambda i: i * 10, list(range(7)), threads) == [i * 10 for i in range(7)]


def test_run_shards_runs_items_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=10)  # each item waits for the other: only concurrency passes
    assert parallel.run_shards(lambda i: barrier.wait() * 0 + i, [0, 1], 2) == [0, 1]


def test_nested_run_shards_finish() -> None:
    def outer(i: int) -> list[int]:
        return parallel.run_shards(lambda j: i * 10 + j, [0, 1, 2], 2)

    assert parallel.run_shards(outer, [0, 1, 2, 3], 2) == [[i * 10 + j for j in range(3)] for i in range(4)]


def test_run_shards_raises_after_every_run_finished() -> None:
    done: list[int] = []

    def work(i: int) -> int:
        if i == 0:
            raise KeyError("first")
        done.append(i)
        return i

    with pytest.raises(KeyError):
        parallel.run_shards(work, [0, 1, 2, 3], 2)
    assert sorted(done) == [2, 3]  # the failing run stopped at item 0; the other run finished


def test_pool_is_safe_for_callers_asking_for_different_thread_counts() -> None:
    errors: list[BaseException] = []

    def caller(k: int) -> None:
        try:
            for i in range(40):
                threads = 1 + (k + i) % 4
                assert parallel.run_shards(lambda j: j + 1, list(range(6)), threads) == [1, 2, 3, 4, 5, 6]
        except BaseException as e:  # collected for the assertion below
            errors.append(e)

    callers = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for c in callers:
        c.start()
    for c in callers:
        c.join(60)
    assert errors == []


def test_concurrent_fits_and_predicts_with_different_threads() -> None:
    model = serial(Conv2D(2, 3), ReLU(), Flatten(), Affine(3))
    g = fnnet.key(3).generator()
    x, t = g.standard_normal((24, 1, 6, 6)).astype(np.float32), g.integers(0, 3, 24)
    errors: list[BaseException] = []
    outs: list[Array] = []

    def caller(k: int) -> None:
        try:
            for i in range(10):
                r = fit(model, sgd(0.1), (x, t), key=fnnet.key(0), epochs=1, batch_size=12, shards=2,
                        threads=1 + (k + i) % 3, progress="quiet", eval_train=False)  # fmt: skip
                outs.append(predict(model, r.state.params, x, batch_size=5, threads=1 + i % 4))
        except BaseException as e:  # collected for the assertion below
            errors.append(e)

    callers = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for c in callers:
        c.start()
    for c in callers:
        c.join(120)
    assert errors == [] and len(outs) == 40
    assert all(np.array_equal(o, outs[0]) for o in outs)


# --- the ordered batch sum ------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_shard_group_sums_in_shard_order_on_any_thread_count(threads: int) -> None:
    group = parallel.ShardGroup(5, threads)
    parts = [np.array([0.1 * (s + 1), 1e8 if s == 0 else 1.0], np.float32) for s in range(5)]
    expected = parts[0].copy()
    for p in parts[1:]:
        expected += p
    outs = group.run(lambda s: group.batch_sum(s)(parts[s]))
    again = group.run(lambda s: group.batch_sum(s)(parts[s]))  # a second round (a backward pass)
    for o in outs + again:
        assert np.array_equal(o, expected)


def test_shard_group_failure_in_one_shard_reaches_the_caller_without_hanging() -> None:
    group = parallel.ShardGroup(3, 2)

    def work(s: int) -> Array:
        if s == 2:
            raise KeyError("shard 2")
        return group.batch_sum(s)(np.ones(2))

    with pytest.raises(KeyError, match="shard 2"):
        group.run(work)


# --- BLAS threads ---------------------------------------------------------------------------------


@linux
def test_blas_limit_sets_and_restores() -> None:
    before = parallel.blas_threads()
    assert before is not None and before >= 1
    with parallel.blas_limit(1):
        assert parallel.blas_threads() == 1
        with parallel.blas_limit(1):
            assert parallel.blas_threads() == 1
        assert parallel.blas_threads() == 1  # the inner exit does not restore early
        with pytest.raises(ValueError, match="held at 1 thread"):
            with parallel.blas_limit(2):
                pass
    assert parallel.blas_threads() == before
    with pytest.raises(KeyError):
        with parallel.blas_limit(1):
            raise KeyError("boom")
    assert parallel.blas_threads() == before


def test_default_threads_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.THREADS_ENV, "3")
    assert parallel.default_threads() == 3
    for bad in ("zero", "0", "-2"):
        monkeypatch.setenv(parallel.THREADS_ENV, bad)
        with pytest.raises(ValueError, match="FNNET_NUM_THREADS must be a positive integer"):
            parallel.default_threads()
    monkeypatch.delenv(parallel.THREADS_ENV)
    assert parallel.default_threads() == parallel.available_cores()


def _child_report(queue: Any) -> None:
    queue.put((parallel.run_shards(lambda i: i + 1, [0, 1, 2, 3], 2), parallel.blas_threads()))


@linux
def test_a_forked_child_has_a_working_pool_and_the_parents_blas_threads() -> None:
    parallel.run_shards(lambda i: i, [0, 1], 2)  # the parent's pool exists before the fork
    before = parallel.blas_threads()
    with blas_limit_held_by_another_thread(1):
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child_report, args=(queue,))
        proc.start()
        result = queue.get(timeout=60)
        proc.join(60)
    assert result == ([1, 2, 3, 4], before)
    assert proc.exitcode == 0


# --- the sharded training step --------------------------------------------------------------------


def _setup(model: Layer, in_shape: Shape, n: int, dtype: Any = np.float64) -> tuple[TrainState, Array, Array]:
    g = fnnet.key(5).generator()
    x = g.standard_normal((n, *in_shape)).astype(dtype)
    t = g.integers(0, 5, n)
    return fnnet.astype(init_train_state(model, sgd(0.1), fnnet.key(0), in_shape), dtype), x, t


def _conv() -> Layer:
    return serial(Conv2D(3, 3, pad=1), ReLU(), Flatten(), Affine(5))


def _bn_conv() -> Layer:
    inner = serial(Conv2D(3, 3, pad=1), BatchNorm(), ReLU())
    return serial(Conv2D(3, 3, pad=1), BatchNorm(), ReLU(), residual(inner), Flatten(), Affine(6), BatchNorm(), Affine(5))


def _same(a: Any, b: Any) -> bool:
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb))


@pytest.mark.parametrize("build", [_conv, _bn_conv])
def test_sharded_step_matches_unsharded_to_rounding(build: Any) -> None:
    model = build()
    state, x, t = _setup(model, (2, 6, 6), 7)
    one, m1 = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    for shards in (2, 3, 7):  # uneven shards too
        many, m2 = make_train_step(model, optimizer=sgd(0.1), shards=shards)(state, x, t, None)
        assert m2.loss == pytest.approx(m1.loss, rel=1e-12)
        for a, b in zip(tree_leaves(many), tree_leaves(one)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("build", [_conv, _bn_conv])
def test_threads_change_speed_not_bits(build: Any) -> None:
    model = build()
    state, x, t = _setup(model, (2, 6, 6), 40, np.float32)
    results = []
    for threads in (1, 2, 4):
        train_step = make_train_step(model, optimizer=sgd(0.1), shards=4, threads=threads)
        s = state
        for i in range(3):
            s, m = train_step(s, x, t, fnnet.key(i))
        results.append((s, m.loss))
    for s, loss in results[1:]:
        assert loss == results[0][1] and _same(s, results[0][0])
    single, _ = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, fnnet.key(0))
    first, _ = make_train_step(model, optimizer=sgd(0.1), shards=4)(state, x, t, fnnet.key(0))
    assert not _same(single.params, first.params)  # the shards really changed the arithmetic


def test_sharded_step_with_dropout_and_weight_decay_is_reproducible() -> None:
    model = serial(Conv2D(3, 3), ReLU(), Flatten(), Dropout(0.5), Affine(5))
    state, x, t = _setup(model, (1, 5, 5), 10)
    train_step = make_train_step(model, optimizer=sgd(0.1), shards=2, weight_decay=0.1)
    a, ma = train_step(state, x, t, fnnet.key(3))
    b, mb = train_step(state, x, t, fnnet.key(3))
    c, _ = train_step(state, x, t, fnnet.key(4))
    assert ma.loss == mb.loss and _same(a, b) and not _same(a.params, c.params)


class _Counter(ShapeKeeping):
    """A stateful layer that counts the samples it saw without summing through ctx.batch_sum."""

    def init_state(self, in_shape: Shape) -> Array:
        return np.zeros((), np.int64)

    def forward(self, params: None, state: Array, x: Array, ctx: Ctx = fnnet.EVAL) -> tuple[Array, Array, None]:
        return x, state + (len(x) if ctx.train else 0), None


def test_state_that_differs_between_shards_is_refused() -> None:
    model = serial(Conv2D(2, 3), _Counter(), Flatten(), Affine(5))
    state, x, t = _setup(model, (1, 5, 5), 9)
    s1, _ = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    assert int(s1.model_state[1]) == 9
    with pytest.raises(ValueError, match="state differs between shards"):
        make_train_step(model, optimizer=sgd(0.1), shards=2)(state, x, t, None)


def test_sharded_step_names_the_failing_layer_and_leaves_inputs_alone() -> None:
    model = _bn_conv()
    state, x, t = _setup(model, (2, 6, 6), 8)
    before = [a.copy() for a in tree_leaves((state, x))]
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2D\)"):
        make_train_step(model, optimizer=sgd(0.1), shards=2)(state, x[:, :1], t, None)
    make_train_step(model, optimizer=sgd(0.1), shards=2)(state, x, t, None)
    assert all(np.array_equal(a, b) for a, b in zip(before, tree_leaves((state, x))))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_shards_threads_and_blas_threads_are_refused(bad: Any) -> None:
    for name in ("shards", "threads", "blas_threads"):
        with pytest.raises(ValueError, match=f"{name} must be a positive int"):
            make_train_step(_conv(), optimizer=sgd(0.1), **{name: bad})


def test_sharded_step_batches_smaller_than_the_shard_count() -> None:
    model = _bn_conv()
    state, x, t = _setup(model, (2, 6, 6), 3)
    one, _ = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x, t, None)
    many, _ = make_train_step(model, optimizer=sgd(0.1), shards=8)(state, x, t, None)
    for a, b in zip(tree_leaves(many.params), tree_leaves(one.params)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)


def test_evaluate_and_predict_do_not_depend_on_threads() -> None:
    model = _conv()
    state, x, t = _setup(model, (2, 6, 6), 23, np.float32)
    ys = [predict(model, state.params, x, batch_size=4, threads=n) for n in (1, 2, 3)]
    assert all(np.array_equal(y, ys[0]) for y in ys)
    scores = [evaluate(model, state.params, x, t, batch_size=5, threads=n) for n in (1, 2, 3)]
    assert all(s == scores[0] for s in scores)


def test_fit_results_do_not_depend_on_threads() -> None:
    model = _bn_conv()
    _, x, t = _setup(model, (2, 6, 6), 30, np.float32)
    runs = [
        fit(model, sgd(0.05), (x, t), key=fnnet.key(1), epochs=2, batch_size=10, shards=2, threads=n,
            progress="quiet")  # fmt: skip
        for n in (1, 2)
    ]
    assert _same(runs[0].state, runs[1].state) and runs[0].history.step_loss == runs[1].history.step_loss
    drop_time = [[{k: v for k, v in e.items() if k != "time"} for e in r.history.epochs] for r in runs]
    assert drop_time[0] == drop_time[1]


def test_join_rows_keeps_channels_last_memory() -> None:
    base = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 4, 5, 3)
    parts = [base[:1].transpose(0, 3, 1, 2), base[1:].transpose(0, 3, 1, 2)]
    joined = join_rows(parts)
    assert np.array_equal(joined, np.concatenate([np.ascontiguousarray(p) for p in parts]))
    assert joined.transpose(0, 2, 3, 1).flags.c_contiguous


# --- the execution policy -------------------------------------------------------------------------


def _policy(model: Layer, in_shape: Shape, n: int) -> fnnet.train.ExecutionPolicy:
    params, _ = model.init(fnnet.key(0), in_shape)
    return choose_policy(model, params, model.init_state(in_shape), np.zeros((n, *in_shape), np.float32))


def test_policy_shards_large_convolutional_batches_only() -> None:
    assert _policy(models.two_layer_net(), (784,), 100).shards == 1
    assert _policy(models.mlp((1000, 1000), 10), (784,), 100).shards == 1
    small_cnn = serial(*[layer for _ in range(3) for layer in (Conv2D(25, (1, 5), stride=(1, 2), pad=(0, 1)), ReLU())])
    assert _policy(small_cnn, (1, 1, 40), 100).shards == 1
    assert _policy(models.simple_convnet(), (1, 28, 28), 100).shards == 2
    assert _policy(models.deep_convnet(batchnorm=True), (1, 28, 28), 100).shards == 2
    assert _policy(models.simple_convnet(), (1, 28, 28), 2).shards == 1
    assert all(_policy(m, s, 100).blas_threads == 1 for m, s in [(models.two_layer_net(), (784,))])
    assert SHARD_MIN_VOLUME > 0


def test_default_step_follows_the_policy() -> None:
    model = _conv()
    state, x, t = _setup(model, (2, 6, 6), 7)
    chosen = choose_policy(model, state.params, state.model_state, x).shards
    default, _ = make_train_step(model, optimizer=sgd(0.1))(state, x, t, None)
    explicit, _ = make_train_step(model, optimizer=sgd(0.1), shards=chosen)(state, x, t, None)
    assert _same(default, explicit)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 9), st.sampled_from([1, 2, 3]))
def test_shard_count_is_part_of_the_bits_not_the_threads(n: int, shards: int) -> None:
    model = _bn_conv()
    state, x, t = _setup(model, (2, 6, 6), max(n, 2))
    a, _ = make_train_step(model, optimizer=sgd(0.1), shards=shards, threads=1)(state, x, t, None)
    b, _ = make_train_step(model, optimizer=sgd(0.1), shards=shards, threads=3)(state, x, t, None)
    assert _same(a, b)
