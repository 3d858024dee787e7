"""Regression tests from a third mutation-testing pass over fnnet.runtime: $FNNET_KEEP_HEAP is read
with surrounding blanks ignored, and the allocator is set once per process."""

from __future__ import annotations

import pytest

from fnnet import runtime


@pytest.mark.parametrize(("env", "calls", "outcome"), [(" 0 ", 0, False), ("", 1, True), ("1", 1, True)])
def test_prepare_training_reads_the_opt_out_and_sets_the_allocator_once(
    monkeypatch: pytest.MonkeyPatch, env: str, calls: int, outcome: bool
) -> None:
    made: list[int] = []

    def keep_heap() -> bool:
        made.append(1)
        return True

    monkeypatch.setattr(runtime, "_prepared", [])  # as in a fresh process
    monkeypatch.setattr(runtime, "keep_heap", keep_heap)
    monkeypatch.setenv(runtime.KEEP_HEAP_ENV, env)
    assert runtime.prepare_training() is outcome
    assert runtime.prepare_training() is outcome
    assert len(made) == calls
