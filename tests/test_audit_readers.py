"""Reader hardening found by an audit: FIFOs and devices, duplicate JSON keys, quadratic work.

Every reader must fail fast with one FormatError naming the file and the place; these are the
cases the other hostile tests did not reach.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fnnet import checkpoint
from fnnet._io import open_regular
from fnnet.datasets import read_idx, read_sequence_file
from fnnet.errors import FormatError
from fnnet.hparam import SearchResult

READERS: dict[str, Callable[[Path], Any]] = {
    "read_idx": read_idx,
    "read_idx_gz": lambda p: read_idx(p.with_name(p.name + ".gz")),
    "read_sequence_file": read_sequence_file,
    "SearchResult.load": SearchResult.load,
    "checkpoint.load": lambda p: checkpoint.load(p, {"w": np.zeros(2)}),
    "checkpoint.read_meta": checkpoint.read_meta,
}


def _outcome_on_fifo(call: Callable[[], Any], fifo: Path, seconds: float) -> BaseException | None:
    """Run ``call`` in a thread; the exception it raised, or None if it returned.

    Fails if it still runs after ``seconds`` (a reader waiting for a writer), after releasing it.
    """
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        with open(fifo, "wb"):  # the writer the reader waits for; closing it ends the read
            pass
        t.join(seconds)
        pytest.fail(f"reading the FIFO {fifo} blocked for {seconds} s")
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_fifo_is_refused_at_once(tmp_path: Path, reader: str) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    if reader == "read_idx_gz":
        fifo = tmp_path / "pipe.gz"
        os.mkfifo(fifo)
    err = _outcome_on_fifo(lambda: READERS[reader](tmp_path / "pipe"), fifo, 3.0)
    assert isinstance(err, FormatError), repr(err)
    assert str(err) == f"{fifo}: not a regular file (a FIFO)"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
@pytest.mark.parametrize("reader", ["SearchResult.load", "read_idx", "checkpoint.read_meta"])
def test_a_device_is_refused(reader: str) -> None:
    with pytest.raises(FormatError, match=r"^/dev/null: not a regular file \(a character device\)$"):
        READERS[reader](Path("/dev/null"))


def test_open_regular_reads_in_blocking_mode(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    with open_regular(f) as r:
        assert os.get_blocking(r.fileno()) and r.read() == b"abc"
    with pytest.raises(IsADirectoryError):
        open_regular(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "nope")
