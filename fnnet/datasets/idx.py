"""IDX files, the format of MNIST and Fashion-MNIST: a magic number, big-endian sizes, the payload."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fnnet.typing import Array

__all__ = ["read_idx"]

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes (third byte of the magic number) -> element type, big-endian as the format says.
_IDX_DTYPES: Mapping[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_MAGIC_SIZE = 4
_IDX_DIM_SIZE = 4  # each dimension is a big-endian uint32


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (by suffix or by content)."""
    raw = path.read_bytes()
    if path.suffix == ".gz" or raw[:2] == _GZIP_MAGIC:
        if raw[:2] != _GZIP_MAGIC:
            raise ValueError(f"read_idx: {path}: named .gz but is not gzip data (starts with {raw[:4]!r})")
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"read_idx: {path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path: str | os.PathLike[str]) -> Array:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    The header is a magic number (two zero bytes, a type code, the number of dimensions ``ndim``)
    and ``ndim`` big-endian uint32 sizes; the payload must hold exactly ``prod(sizes)`` elements.

    Args:
        path: the file, e.g. ``t10k-images-idx3-ubyte.gz``.
    Returns:
        A new array of shape ``sizes`` in native byte order (uint8 for MNIST images and labels).
    Raises:
        ValueError: naming the file, if it is truncated, not gzip although named ``.gz``, corrupt,
            has a bad magic number or a payload whose size does not match its header.
    """
    p = Path(path)
    data = _read_bytes(p)
    if len(data) < _IDX_MAGIC_SIZE:
        raise ValueError(f"read_idx: {p}: truncated: {len(data)} bytes, shorter than the 4-byte magic number")
    zero0, zero1, code, ndim = data[:_IDX_MAGIC_SIZE]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise ValueError(
            f"read_idx: {p}: bad magic number {data[:4].hex()} (expected 0000 then a type code in "
            f"{sorted(f'{c:02x}' for c in _IDX_DTYPES)} and the number of dimensions): not an IDX file"
        )
    if ndim == 0:
        raise ValueError(f"read_idx: {p}: bad magic number {data[:4].hex()}: zero dimensions")
    header = _IDX_MAGIC_SIZE + _IDX_DIM_SIZE * ndim
    if len(data) < header:
        raise ValueError(f"read_idx: {p}: truncated header: {ndim} dimensions need {header} bytes, file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=_IDX_MAGIC_SIZE))
    dtype = _IDX_DTYPES[code]
    # Python ints: no overflow however large the header claims the sizes are.
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "too long"
        raise ValueError(
            f"read_idx: {p}: {what}: header says shape {shape} of {dtype.newbyteorder('=')} "
            f"({expected} payload bytes), file has {got} payload bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
