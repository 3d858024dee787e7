"""A tiny progress display: a bar on a terminal, a line per epoch otherwise, nothing when quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Reports training progress to ``stream`` (stderr by default).

    ``mode`` is ``"auto"`` (a bar if the stream is a terminal, else lines), ``"bar"``, ``"lines"`` or
    ``"quiet"``; without a stream (``sys.stderr`` may be None) it is quiet, and it turns quiet when
    writing fails (stderr closed, a full disk, a reader gone): a display must not stop training.
    ``labels`` renames metrics in the epoch lines (e.g. ``test_acc`` to ``test_acc(sample 2000)``
    when it was measured on a sample).
    """

    def __init__(
        self,
        total_epochs: int,
        batches_per_epoch: int,
        mode: str = "auto",
        stream: TextIO | None = None,
        labels: dict[str, str] | None = None,
    ):
        if mode not in ("auto", "bar", "lines", "quiet"):
            raise ValueError(f"Progress: mode must be auto, bar, lines or quiet, got {mode!r}")
        self.stream = stream if stream is not None else sys.stderr
        if self.stream is None:
            mode = "quiet"
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self.total_epochs = total_epochs
        self.batches = batches_per_epoch
        self.labels = dict(labels or {})
        self.mid_line = False  # a bar is drawn and its line not ended
        self._last_draw = 0.0
        self._t0 = time.perf_counter()

    def batch(self, epoch: int, i: int, loss: float) -> None:
        """Called after each training batch (``i`` counts from 0 within the epoch)."""
        if self.mode != "bar":
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.1 and i + 1 < self.batches:
            return
        self._last_draw = now
        width = 30
        done = int(width * (i + 1) / max(self.batches, 1))
        bar = "#" * done + "-" * (width - done)
        if self._write(f"\repoch {epoch + 1}/{self.total_epochs} [{bar}] {i + 1}/{self.batches} loss {loss:.4f}"):
            self.mid_line = True

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Called at the end of an epoch with its metrics."""
        if self.mode == "quiet":
            return
        parts = " ".join(f"{self.labels.get(k, k)} {v:.4f}" for k, v in metrics.items())
        elapsed = time.perf_counter() - self._t0
        prefix = "\r\x1b[K" if self.mode == "bar" else ""
        self._write(f"{prefix}epoch {epoch + 1}/{self.total_epochs} {parts} ({elapsed:.1f}s)\n")
        self.mid_line = False

    def break_line(self) -> None:
        """End a half-drawn bar, so that a message printed next starts on its own line."""
        if self.mid_line:
            self._write("\n")
            self.mid_line = False

    def _write(self, text: str) -> bool:
        """Write and flush ``text``; on failure turn quiet and return False."""
        if self.mode == "quiet":
            return False
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:
            self.mode = "quiet"
            return False
        return True
