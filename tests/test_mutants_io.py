"""Regression tests from a third mutation-testing pass over fnnet._json and fnnet._io: the depth
bound of read_json is exact, a file over the size cap is refused from its size alone, and
atomic_write syncs the file and then its directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fnnet._io import atomic_write_bytes
from fnnet._json import read_json
from fnnet.errors import FormatError


def test_read_json_accepts_exactly_max_depth_levels(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text("[[1]]")
    assert read_json(p, max_bytes=100, max_depth=2) == [[1]]
    p.write_text("[[[1]]]")
    with pytest.raises(FormatError, match="nested deeper than 2 levels"):
        read_json(p, max_bytes=100, max_depth=2)
    p.write_text('{"a": {"b": 1}}')
    assert read_json(p, max_bytes=100, max_depth=2) == {"a": {"b": 1}}
    with pytest.raises(FormatError, match="nested deeper than 1 levels"):
        read_json(p, max_bytes=100, max_depth=1)


def test_read_json_refuses_a_file_over_the_cap_by_its_size(tmp_path: Path) -> None:
    p = tmp_path / "big.json"
    p.write_text("[" + "0," * 50 + "0]")
    with pytest.raises(FormatError) as info:
        read_json(p, max_bytes=20, max_depth=4)
    assert info.value.reason == f"{p.stat().st_size} bytes, more than the 20 this file may have"


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record what each os.fsync call syncs: "file" or the directory's path."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if stat.S_ISDIR(st.st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names an open directory through /proc")
def test_atomic_write_syncs_the_file_then_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = _fsyncs(monkeypatch)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert synced == ["file", str(tmp_path)]


def test_read_json_takes_numbers_of_up_to_100_characters(tmp_path: Path) -> None:
    p = tmp_path / "n.json"
    p.write_text("[" + "9" * 100 + "]")
    assert read_json(p, max_bytes=1000, max_depth=2) == [int("9" * 100)]
    p.write_text("[" + "9" * 101 + "]")
    with pytest.raises(FormatError, match="number of 101 characters, more than 100"):
        read_json(p, max_bytes=1000, max_depth=2)
