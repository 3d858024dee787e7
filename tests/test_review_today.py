"""Regression tests of defects found reviewing the day's library changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fnnet.datasets.sequence import read_sequence_file
from fnnet.errors import FormatError


@pytest.mark.parametrize("text", ["ab_cd\nab_cx\r\r\n", "ab_cé\nab_cx\r\r\n"])
def test_mixed_line_endings_keep_a_stray_cr_before_the_last_crlf(tmp_path: Path, text: str) -> None:
    # turning every \r\n into \n made the stray \r of "\r\r\n" a new \r\n, dropped as a line end
    path = tmp_path / "data.txt"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(FormatError, match=r"line 2: control character '\\r'"):
        read_sequence_file(path)
