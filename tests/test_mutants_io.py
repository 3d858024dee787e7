"""Regression tests from a third mutation-testing pass over fnnet._json and fnnet._io: the depth
bound of read_json is exact, and a file over the size cap is refused from its size alone."""

from __future__ import annotations

from pathlib import Path

import pytest

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
