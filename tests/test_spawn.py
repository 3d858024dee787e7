"""``Ctx.spawn``: independent work a layer hands to a spare thread, never changing a result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _helpers import ShapeKeeping

import fnnet
from fnnet.layers import Ctx
from fnnet.layers.base import run_now
from fnnet.losses import time_softmax_cross_entropy
from fnnet.optim import adam, chain, clip_by_global_norm
from fnnet.seq2seq import AttentionSeq2seq, Seq2seq
from fnnet.train import init_train_state, make_train_step
from fnnet.train import parallel
from fnnet.tree import tree_leaves
from fnnet.typing import Array


def test_run_now_runs_at_once_and_join_returns_the_result() -> None:
    calls: list[int] = []

    def work() -> int:
        calls.append(1)
        return 5

    join = run_now(work)
    assert calls == [1]
    assert join() == 5 and join() == 5 and calls == [1]


def test_parallel_spawn_runs_on_another_thread_and_returns_its_result() -> None:
    where: list[int] = []
    release = threading.Event()

    def work() -> int:
        where.append(threading.get_ident())
        release.wait(5)
        return 7

    join = parallel.spawn(work)
    release.set()  # the caller got its join back before the work finished: it runs elsewhere
    assert join() == 7
    assert where and where[0] != threading.get_ident()


def test_parallel_spawn_raises_the_works_exception_in_the_join() -> None:
    def fail() -> None:
        raise ValueError("inside")

    join = parallel.spawn(fail)
    with pytest.raises(ValueError, match="inside"):
        join()


def test_parallel_spawn_from_a_pool_thread_runs_inline() -> None:
    def outer() -> tuple[int, int]:
        inner: list[int] = []
        parallel.spawn(lambda: inner.append(threading.get_ident()))()
        return threading.get_ident(), inner[0]

    me, inner = parallel.spawn(outer)()
    assert me == inner


def test_ctx_children_keep_the_spawn() -> None:
    def mine(fn: Callable[[], Any]) -> Callable[[], Any]:
        return run_now(fn)

    ctx = Ctx(True, fnnet.key(0), spawn=mine)
    assert ctx.child(3).spawn is mine and Ctx().spawn is run_now


def _recording() -> tuple[list[str], Callable[[Callable[[], Any]], Callable[[], Any]]]:
    log: list[str] = []

    def spawn(fn: Callable[[], Any]) -> Callable[[], Any]:
        log.append("start")
        result = fn()

        def join() -> Any:
            log.append("join")
            return result

        return join

    return log, spawn


@pytest.mark.parametrize("model", [Seq2seq(11, 6, 8, src_len=5, peeky=True, reverse=True), Seq2seq(11, 6, 8, src_len=5),
                                   AttentionSeq2seq(11, 6, 8, src_len=5)], ids=["peeky", "plain", "attention"])  # fmt: skip
def test_seq2seq_backward_spawns_its_independent_products_and_keeps_the_bits(model: Any) -> None:
    params, _ = model.init(fnnet.key(0), (5 + 3,))
    x = fnnet.key(1).generator().integers(0, 11, (6, 8))
    dout = fnnet.key(2).generator().standard_normal((6, 3, 11)).astype(np.float32)
    log, recording = _recording()
    plain = model.backward(params, model.forward(params, None, x, Ctx(True))[2], dout)[1]
    spawned = model.backward(params, model.forward(params, None, x, Ctx(True, spawn=recording))[2], dout)[1]
    threaded = model.backward(params, model.forward(params, None, x, Ctx(True, spawn=parallel.spawn))[2], dout)[1]
    assert log.count("start") == 2 and log.count("join") == 2  # the decoder's products, half the encoder's
    for a, b, c in zip(tree_leaves(plain), tree_leaves(spawned), tree_leaves(threaded)):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_the_step_gives_an_unsharded_model_the_pools_spawn_only_with_threads_to_spare() -> None:
    seen: list[Any] = []

    class Probe(ShapeKeeping):
        def forward(self, params: None, state: Any, x: Array, ctx: Ctx = fnnet.EVAL) -> tuple[Array, Any, None]:
            seen.append(ctx.spawn)
            return x, state, None

    model = fnnet.serial(Probe(), fnnet.Affine(3))
    x = np.ones((4, 2), np.float32)
    t = np.array([0, 1, 2, 0])
    state = init_train_state(model, fnnet.optim.sgd(0.1), fnnet.key(0), (2,))
    make_train_step(model, optimizer=fnnet.optim.sgd(0.1), shards=1, threads=2)(state, x, t)
    make_train_step(model, optimizer=fnnet.optim.sgd(0.1), shards=1, threads=1)(state, x, t)
    assert seen == [parallel.spawn, run_now]


def test_a_seq2seq_step_gives_the_same_bits_on_one_thread_and_two() -> None:
    model = Seq2seq(13, 8, 16, src_len=7, reverse=True, peeky=True)
    g = fnnet.key(3).generator()
    x = g.integers(0, 13, (32, 11))
    t = g.integers(0, 13, (32, 4))
    opt = chain(clip_by_global_norm(5.0), adam(0.01))
    finals = []
    for threads in (1, 2):
        step = make_train_step(model, time_softmax_cross_entropy, opt, shards=1, threads=threads)
        state = init_train_state(model, opt, fnnet.key(0), (11,))
        for _ in range(3):
            state, _ = step(state, x, t)
        finals.append(state)
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(finals[0]), tree_leaves(finals[1])))


def test_ctrl_c_while_a_step_waits_for_spawned_work_keeps_the_training_and_resumes_to_the_same_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fnnet.train import TrainingInterrupted, fit
    from fnnet.train import step as step_module

    model = Seq2seq(13, 8, 16, src_len=7, reverse=True, peeky=True)
    g = fnnet.key(4).generator()
    data = (g.integers(0, 13, (60, 11)), g.integers(0, 13, (60, 4)))
    opt = chain(clip_by_global_norm(5.0), adam(0.01))
    options: dict[str, Any] = dict(loss=time_softmax_cross_entropy, key=fnnet.key(1), epochs=3, batch_size=20,
                                   threads=2, progress="quiet")  # fmt: skip
    full = fit(model, opt, data, **options)
    calls = [0]

    def interrupted_join(fn: Callable[[], Any]) -> Callable[[], Any]:
        join = parallel.spawn(fn)
        calls[0] += 1
        if calls[0] == 9:  # step 5's first spawned product (two a step)

            def ctrl_c() -> Any:
                join()
                raise KeyboardInterrupt

            return ctrl_c
        return join

    monkeypatch.setattr(step_module, "spawn", interrupted_join)
    with pytest.raises(TrainingInterrupted) as caught:
        fit(model, opt, data, **options)
    err = caught.value
    assert int(err.state.step) == 4 and int(err.epoch_state.step) == 3
    monkeypatch.setattr(step_module, "spawn", parallel.spawn)
    rest = fit(model, opt, data, state=err.epoch_state, history=err.history, **options)
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(rest.state), tree_leaves(full.state)))
    assert rest.history.step_loss == full.history.step_loss
