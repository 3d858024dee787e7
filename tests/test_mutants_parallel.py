"""Regression tests from a third mutation-testing pass over fnnet.train.parallel: the thread pool
grows when a later call asks for more workers than an earlier one."""

from __future__ import annotations

import threading

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
