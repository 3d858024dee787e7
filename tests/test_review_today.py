"""Regression tests of defects found reviewing the day's library changes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fnnet.checkpoint import load, read_manifest, save
from fnnet.datasets.sequence import read_sequence_file
from fnnet.errors import FormatError
from fnnet.layers.base import Ctx


@pytest.mark.parametrize("text", ["ab_cd\nab_cx\r\r\n", "ab_cé\nab_cx\r\r\n"])
def test_mixed_line_endings_keep_a_stray_cr_before_the_last_crlf(tmp_path: Path, text: str) -> None:
    # turning every \r\n into \n made the stray \r of "\r\r\n" a new \r\n, dropped as a line end
    path = tmp_path / "data.txt"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(FormatError, match=r"line 2: control character '\\r'"):
        read_sequence_file(path)


def _meta_array_header_rewritten(src: Path, dst: Path, shape: tuple[int, ...]) -> None:
    """``src`` with the header of its member ``__meta_0__.npy`` saying ``shape`` (float64, the
    same 2048 data bytes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "__meta_0__.npy":
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
                data = buf.getvalue() + np.zeros(2048).tobytes()
            zout.writestr(info.filename, data)


@pytest.mark.parametrize("shape", [(-2, -1024), (-1, -2048)])
def test_meta_array_of_negative_dimensions_is_a_format_error(tmp_path: Path, shape: tuple[int, ...]) -> None:
    # the header check took the product of the dimensions, positive for two negative ones, and
    # reshape then raised a bare ValueError
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    save(good, {"w": np.zeros(2)}, {"h": [[0.5, 1.5]] * 1024})
    _meta_array_header_rewritten(good, bad, shape)
    for read in (read_manifest, lambda p: load(p, {"w": np.zeros(2)})):
        with pytest.raises(FormatError, match=r"meta\.h: its \.npy header says shape"):
            read(bad)


def test_ctx_refuses_a_spawn_that_is_not_callable() -> None:
    # spawn=None (what the LSTM kernels take for "no spawn") used to fail only in a seq2seq
    # backward, as "'NoneType' object is not callable"
    with pytest.raises(ValueError, match=r"^Ctx: spawn must be callable .* got NoneType$"):
        Ctx(True, spawn=None)  # type: ignore[arg-type]


def test_ctx_refuses_a_batch_sum_that_is_not_callable() -> None:
    with pytest.raises(ValueError, match=r"^Ctx: batch_sum must be callable .* got NoneType$"):
        Ctx(True, batch_sum=None)  # type: ignore[arg-type]
