"""Hostile IDX files: bombs rejected in bounded memory, and only FormatError (or a right read) out.

The bombs are built cheaply: deflate output after a full flush does not refer back, so one
compressed MiB of zeros repeated N times is a valid single gzip member that expands to N MiB.
"""

from __future__ import annotations

import gzip
import struct
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fnnet.datasets import load_mnist, read_idx
from fnnet.errors import FormatError
from fnnet.typing import Array

MiB = 1 << 20
# IDX type codes, written independently of the reader's table.
CODES: dict[str, int] = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
HOSTILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def header(code: int, shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def idx_bytes(a: Array) -> bytes:
    kind = a.dtype.kind + str(a.dtype.itemsize)
    return header(CODES[kind], a.shape) + a.astype(a.dtype.newbyteorder(">")).tobytes()


def gzip_bomb(head: bytes, zeros_mib: int) -> bytes:
    """A single gzip member holding ``head`` and then ``zeros_mib`` MiB of zeros, built in a blink."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    segment = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)  # history reset: repeatable
    last = c.flush(zlib.Z_FINISH)
    crc = zlib.crc32(head)
    for _ in range(zeros_mib):
        crc = zlib.crc32(zeros, crc)
    size = (len(head) + zeros_mib * MiB) & 0xFFFFFFFF
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return gzip_header + first + segment * zeros_mib + last + struct.pack("<II", crc, size)


def peak_while_rejecting(f: Path) -> tuple[int, FormatError]:
    """The traced peak memory of ``read_idx(f)``, which must fail with FormatError."""
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as info:
            read_idx(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, info.value


def bound(f: Path) -> int:
    return max(64 * MiB, 8 * f.stat().st_size)


# --------------------------------------------------------------------------------------------
# Bombs: rejected in memory far below max(64 MiB, 8 x file size)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(30, 28, 28), (30,)], ids=["images", "labels"])
def test_gzip_bomb_too_long_is_rejected_without_decompressing_it(tmp_path: Path, shape: tuple[int, ...]) -> None:
    payload = int(np.prod(shape))
    f = tmp_path / "bomb-idx-ubyte.gz"
    f.write_bytes(gzip_bomb(header(0x08, shape) + bytes(payload), 128))
    assert f.stat().st_size < 140 * 1024  # a small file that expands to 128 MiB
    peak, err = peak_while_rejecting(f)
    assert peak < bound(f) and peak < 4 * MiB
    assert "too long" in str(err) and err.path == str(f)
    assert err.where == f"decompressed byte {len(header(0x08, shape)) + payload}"


def test_gzip_header_beyond_what_the_file_can_hold_is_rejected_before_reading(tmp_path: Path) -> None:
    f = tmp_path / "huge-idx3-ubyte.gz"
    f.write_bytes(gzip_bomb(header(0x08, (2**32 - 1, 2**32 - 1, 2**32 - 1)), 4))
    peak, err = peak_while_rejecting(f)
    assert peak < MiB
    assert "truncated" in str(err) and "can hold" in str(err) and err.where == "header"


def test_truncated_large_gzip_is_counted_before_allocating(tmp_path: Path) -> None:
    # 78 MB declared, 1 MiB of noise (so the size is plausible for deflate) and 70 MiB of zeros.
    noise = np.random.default_rng(0).integers(0, 256, MiB, dtype=np.uint8).tobytes()
    f = tmp_path / "short-idx3-ubyte.gz"
    f.write_bytes(gzip_bomb(header(0x08, (100_000, 28, 28)) + noise, 70))
    peak, err = peak_while_rejecting(f)
    assert peak < bound(f) and peak < 8 * MiB
    assert "truncated" in str(err) and f"{16 + 71 * MiB}" in err.where


def test_large_gzip_payload_read_in_two_passes_is_right(tmp_path: Path) -> None:
    shape = (80_000, 28, 28)
    n = int(np.prod(shape))
    noise = np.random.default_rng(1).integers(0, 256, MiB, dtype=np.uint8).tobytes()
    zero_mib, rest = divmod(n - len(noise), MiB)
    f = tmp_path / "big-idx3-ubyte.gz"
    f.write_bytes(gzip_bomb(header(0x08, shape) + noise + bytes(rest), zero_mib))
    x = read_idx(f)
    assert x.shape == shape and x.dtype == np.uint8
    flat = x.reshape(-1)
    assert flat[: len(noise)].tobytes() == noise and not flat[len(noise) :].any()


def test_raw_file_too_long_is_rejected_from_its_size(tmp_path: Path) -> None:
    f = tmp_path / "sparse-idx3-ubyte"
    with open(f, "wb") as out:
        out.write(header(0x08, (30, 28, 28)))
        out.truncate(16 + 30 * 28 * 28 + 128 * MiB)  # sparse: costs no disk
    peak, err = peak_while_rejecting(f)
    assert peak < MiB and "too long" in str(err)


def test_empty_set_and_count_mismatch_name_the_files(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    arrays = [np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), np.zeros((3, 28, 28), np.uint8),
              np.zeros(3, np.uint8)]
    for stem, a in zip(STEMS, arrays):
        (d / stem).write_bytes(idx_bytes(a))
    with pytest.raises(FormatError, match="0 images") as info:
        load_mnist(str(d))
    assert info.value.path == str(d / STEMS[0])
    (d / STEMS[0]).write_bytes(idx_bytes(np.zeros((4, 28, 28), np.uint8)))
    with pytest.raises(FormatError, match="4 images but .* has 0 labels") as info:
        load_mnist(str(d))
    assert str(d / STEMS[0]) in str(info.value) and str(d / STEMS[1]) in str(info.value)


# --------------------------------------------------------------------------------------------
# Property tests: truncation, bit flips, hostile headers
# --------------------------------------------------------------------------------------------


@st.composite
def idx_arrays(draw: Callable[..., Any]) -> Array:
    kind = draw(st.sampled_from(sorted(CODES)))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
    data = draw(st.binary(min_size=int(np.prod(shape)) * int(kind[1]), max_size=int(np.prod(shape)) * int(kind[1])))
    return np.frombuffer(data, dtype=np.dtype(kind).newbyteorder(">")).reshape(shape)


def outcome(data: bytes, suffix: str) -> Array | FormatError:
    """Read ``data`` as a file; any exception other than FormatError fails the test."""
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / f"x-idx-ubyte{suffix}"
        f.write_bytes(data)
        try:
            return read_idx(f)
        except FormatError as e:
            assert e.path == str(f) and str(f) in str(e)
            return e


def assert_right_read(a: Array, raw: bytes) -> None:
    """A successful read must be exactly what the (decompressed) bytes say."""
    assert a.dtype.isnative
    assert idx_bytes(a) == raw


@HOSTILE
@given(a=idx_arrays(), cut=st.integers(0, 10**6), gz=st.booleans())
def test_truncation_gives_format_error(a: Array, cut: int, gz: bool) -> None:
    raw = idx_bytes(a)
    data = gzip.compress(raw, mtime=0) if gz else raw
    cut %= len(data)
    got = outcome(data[:cut], ".gz" if gz else "")
    assert isinstance(got, FormatError)


@HOSTILE
@given(a=idx_arrays(), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=3), gz=st.booleans())
def test_bit_flips_give_format_error_or_a_right_read(a: Array, flips: list[int], gz: bool) -> None:
    raw = idx_bytes(a)
    data = bytearray(gzip.compress(raw, mtime=0) if gz else raw)
    for i in flips:
        data[(i // 8) % len(data)] ^= 1 << (i % 8)
    got = outcome(bytes(data), ".gz" if gz else "")
    if isinstance(got, np.ndarray):
        assert_right_read(got, gzip.decompress(bytes(data)) if gz else bytes(data))


@HOSTILE
@given(
    magic=st.tuples(st.integers(0, 1), st.integers(0, 1), st.sampled_from([*CODES.values(), 0x00, 0x0A, 0xFF])),
    dims=st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), min_size=0, max_size=40),
    ndim_delta=st.integers(-2, 2),
    payload=st.binary(max_size=300),
    gz=st.booleans(),
)
def test_hostile_headers_give_format_error_or_a_right_read(
    magic: tuple[int, int, int], dims: list[int], ndim_delta: int, payload: bytes, gz: bool
) -> None:
    ndim = min(max(len(dims) + ndim_delta, 0), 255)
    raw = bytes([*magic, ndim]) + struct.pack(f">{len(dims)}I", *dims) + payload
    got = outcome(gzip.compress(raw, mtime=0) if gz else raw, ".gz" if gz else "")
    if isinstance(got, np.ndarray):
        assert_right_read(got, raw)


@HOSTILE
@given(data=st.binary(max_size=200), gz=st.booleans())
def test_arbitrary_bytes_give_format_error_or_a_right_read(data: bytes, gz: bool) -> None:
    got = outcome(data, ".gz" if gz else "")
    if isinstance(got, np.ndarray):
        assert_right_read(got, gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
