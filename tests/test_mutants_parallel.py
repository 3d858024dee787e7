"""Regression tests from a third mutation-testing pass over fnnet.train.parallel: the thread pool
grows when a later call asks for more workers than an earlier one, and Ctrl-C in one run of
run_shards stops the others after their current item."""

from __future__ import annotations

import threading
import time

import pytest

from fnnet.train import parallel


def test_the_pool_grows_for_a_call_wanting_more_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_pool", parallel._Pool())  # a fresh pool, as in a new process
    assert parallel.run_shards(lambda i: i * 2, [1, 2], threads=2) == [2, 4]  # one pool worker
    together = threading.Barrier(4, timeout=5)  # the four items only finish if all run at once

    def meet(i: int) -> int:
        together.wait()
        return i

    assert parallel.run_shards(meet, [0, 1, 2, 3], threads=4) == [0, 1, 2, 3]


def test_ctrl_c_in_a_pool_run_stops_the_callers_run_after_its_current_item() -> None:
    done: list[int] = []
    started, raised = threading.Event(), threading.Event()

    def item(i: int) -> int:
        if i == 2:  # the pool's run: Ctrl-C while the caller works on its first item
            assert started.wait(5)
            raised.set()
            raise KeyboardInterrupt
        if i == 0:  # the caller's first item outlasts the interrupt in the other run
            started.set()
            assert raised.wait(5)
            time.sleep(0.3)
        done.append(i)
        return i

    with pytest.raises(KeyboardInterrupt):
        parallel.run_shards(item, [0, 1, 2, 3], threads=2)
    assert done == [0]
