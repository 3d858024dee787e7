"""Regression tests from a third mutation-testing pass over fnnet.train._progress: the bar is drawn
at the first batch and always at the last, with its exact fill; "auto" is a bar on a
terminal only; without stderr it is quiet."""

from __future__ import annotations

import io
import sys

import pytest

from fnnet.train._progress import Progress


def test_the_bar_is_drawn_at_the_first_and_the_last_batch() -> None:
    out = io.StringIO()
    bar = Progress(2, 3, "bar", stream=out)
    bar.batch(0, 0, 0.5)
    assert out.getvalue() == "\repoch 1/2 [##########--------------------] 1/3 loss 0.5000"
    bar.batch(0, 2, 0.125)
    assert out.getvalue().endswith("\repoch 1/2 [##############################] 3/3 loss 0.1250")
    assert bar.mid_line


def test_without_stderr_the_display_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)  # pythonw, or a daemon with its streams closed
    bar = Progress(1, 2, "lines")
    assert bar.mode == "quiet"
    bar.batch(0, 1, 0.5)
    bar.epoch(0, {"loss": 0.5})
    bar.break_line()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_draws_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    assert Progress(1, 1, "auto", stream=_Terminal()).mode == "bar"
    assert Progress(1, 1, "auto", stream=io.StringIO()).mode == "lines"
