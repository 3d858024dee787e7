"""Regression tests for the readers' problems left by the last audit: hostile gzip headers of IDX
files, the memory a sequence file costs to read, what a failed download leaves in the cache, and
the not-found hint when there is no usable user cache."""

from __future__ import annotations

import gzip
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from fnnet.datasets import read_idx
from fnnet.errors import FormatError

# --------------------------------------------------------------------------------------------
# IDX .gz: the gzip header is parsed with bounds, not a byte at a time
# --------------------------------------------------------------------------------------------

_IDX = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
_ARRAY = np.arange(6, dtype=np.uint8).reshape(2, 3)


def _member(payload: bytes, flags: int = 0, fields: bytes = b"", header_crc: int | None = None) -> bytes:
    """One gzip member: the 10 fixed header bytes with ``flags``, then ``fields`` as given (and a
    correct header CRC when FHCRC is set, unless ``header_crc`` gives another)."""
    head = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\x00\xff" + fields
    if flags & 0x02:
        crc = zlib.crc32(head) & 0xFFFF if header_crc is None else header_crc
        head += crc.to_bytes(2, "little")
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(payload) + c.flush()
    return head + body + zlib.crc32(payload).to_bytes(4, "little") + len(payload).to_bytes(4, "little")


def _write(tmp_path: Path, data: bytes) -> Path:
    f = tmp_path / "x-idx2-ubyte.gz"
    f.write_bytes(data)
    return f


@pytest.mark.parametrize("flag, what", [(0x08, "file name"), (0x10, "comment")])
def test_a_huge_gzip_name_or_comment_is_refused_at_once(tmp_path: Path, flag: int, what: str) -> None:
    # 8 MB without a NUL: gzip accepts it after reading it a byte at a time (about a second).
    f = _write(tmp_path, _member(_IDX, flag, b"a" * (8 << 20) + b"\0"))
    t0 = time.perf_counter()
    with pytest.raises(FormatError) as info:
        read_idx(f)
    assert time.perf_counter() - t0 < 0.5
    assert info.value.path == str(f) and info.value.where == "gzip header, byte 10"
    assert info.value.reason.startswith(f"{what} longer than 4095 bytes")


def test_gzip_names_up_to_the_bound_are_read(tmp_path: Path) -> None:
    name, comment, extra = b"n" * 4095 + b"\0", b"c" * 4095 + b"\0", b"\xff\xff" + bytes(65535)
    data = _member(_IDX, 0x04 | 0x08 | 0x10 | 0x02, extra + name + comment)
    assert gzip.decompress(data) == _IDX
    assert np.array_equal(read_idx(_write(tmp_path, data)), _ARRAY)
    with pytest.raises(FormatError, match="byte 10: file name longer than 4095"):
        read_idx(_write(tmp_path, _member(_IDX, 0x08, b"n" * 4096 + b"\0")))


def test_a_huge_name_in_a_second_member_is_refused(tmp_path: Path) -> None:
    first = _member(_IDX)
    f = _write(tmp_path, first + _member(b"", 0x08, b"a" * (8 << 20) + b"\0"))
    with pytest.raises(FormatError) as info:
        read_idx(f)
    assert info.value.where == f"gzip header, byte {len(first) + 10}"


def test_header_crc_and_reserved_flags_are_checked(tmp_path: Path) -> None:
    assert np.array_equal(read_idx(_write(tmp_path, _member(_IDX, 0x02))), _ARRAY)
    bad = _member(_IDX, 0x02, header_crc=0x1234)
    assert gzip.decompress(bad) == _IDX  # Python's gzip does not look at the header CRC
    with pytest.raises(FormatError, match=r"gzip header, byte 10: .*header CRC 1234 does not match"):
        read_idx(_write(tmp_path, bad))
    with pytest.raises(FormatError, match=r"gzip header, byte 3: .*reserved header flags set \(0x20\)"):
        read_idx(_write(tmp_path, _member(_IDX, 0x20)))
    with pytest.raises(FormatError, match=r"gzip header, byte 2: .*compression method 7"):
        read_idx(_write(tmp_path, b"\x1f\x8b\x07" + _member(_IDX)[3:]))


def test_members_padding_and_trailers(tmp_path: Path) -> None:
    # Two members with NUL padding between and after them read as gzip reads them.
    data = _member(_IDX[:5]) + bytes(3 << 20) + _member(_IDX[5:]) + bytes(100)
    assert gzip.decompress(data) == _IDX
    assert np.array_equal(read_idx(_write(tmp_path, data)), _ARRAY)
    good = _member(_IDX)
    bad_crc = good[:-8] + bytes(4) + good[-4:]
    with pytest.raises(FormatError, match=rf"gzip trailer, byte {len(good) - 8}: .*CRC-32 00000000 in the trailer"):
        read_idx(_write(tmp_path, bad_crc))
    bad_size = good[:-4] + (len(_IDX) + 1).to_bytes(4, "little")
    with pytest.raises(FormatError, match=rf"gzip trailer, byte {len(good) - 4}: .*size 19 in the trailer, 18"):
        read_idx(_write(tmp_path, bad_size))
    with pytest.raises(FormatError, match=rf"gzip member, byte {len(good)}: .*7a7a where a gzip member"):
        read_idx(_write(tmp_path, good + b"zz"))
    for cut in (5, 12, len(good) - 9, len(good) - 3):
        with pytest.raises(FormatError, match="corrupt or truncated gzip data"):
            read_idx(_write(tmp_path, good[:cut]))
