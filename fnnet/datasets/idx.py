"""IDX files, the format of MNIST and Fashion-MNIST, read with the header checked first.

An IDX file is a magic number (two zero bytes, a type code, the number of dimensions ``ndim``),
``ndim`` big-endian uint32 sizes and then exactly ``prod(sizes)`` big-endian elements. It may be
gzip-compressed (named ``.gz``, or recognised by its content).

The reader never trusts the header with memory: it reads the file as a stream, checks the magic
number and the sizes before any payload is read, compares the declared payload with what the
file can hold (its size when raw, the most deflate can expand it to when compressed), reads
exactly the declared bytes in bounded chunks into one array, and then looks at most one byte
further to reject a file that is too long. Rejecting any file costs far less memory than
``max(64 MiB, 8 x its size)``. Every damaged, truncated or hostile file raises
:class:`fnnet.errors.FormatError` naming the file and the place (header field or byte offset).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from fnnet._io import open_regular
from fnnet.errors import FormatError
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
_MAX_NDIM = 32  # NumPy's own limit on dimensions (1.x); real IDX files have 1 to 4

# Deflate emits at most 258 bytes per length/distance code of at least 2 bits, so one compressed
# byte expands to at most 1032 bytes: a gzip file of n bytes holds fewer than 1032 * n.
_MAX_DEFLATE_RATIO = 1032

#: Payloads read in chunks of this many bytes (the most the reader holds besides the result).
_CHUNK = 1 << 20
# A gzip payload larger than this is first counted without being kept, so that a file that turns
# out truncated is rejected without ever allocating its declared size.
_ONE_PASS_FLOOR = 48 << 20
_ONE_PASS_FACTOR = 6

_T = TypeVar("_T")


class _Stream(Protocol):
    def read(self, n: int, /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def read_idx(path: str | os.PathLike[str]) -> Array:
    """Read an IDX file (the MNIST format), raw or gzip-compressed, checking its header first.

    Args:
        path: the file, e.g. ``t10k-images-idx3-ubyte.gz``.
    Returns:
        A new, writable array of shape ``sizes`` in native byte order (uint8 for MNIST images and
        labels).
    Raises:
        FormatError: the file is not an IDX file, is truncated or too long for its header, is
            named ``.gz`` but is not gzip data, or its gzip stream is corrupt, or ``path`` is not a
            regular file (a FIFO, a device); the message names the file and the header field or
            byte offset (of the decompressed stream for gzip).
        OSError: the file cannot be opened or read (``FileNotFoundError`` if it does not exist).

    >>> import gzip, os, tempfile
    >>> from fnnet.datasets import read_idx
    >>> d = tempfile.mkdtemp()
    >>> f = os.path.join(d, "tiny-idx2-ubyte.gz")
    >>> with gzip.open(f, "wb") as out:
    ...     _ = out.write(bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    >>> read_idx(f)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    p = Path(path)
    with open_regular(p) as f:
        size = os.fstat(f.fileno()).st_size
        lead = f.read(len(_GZIP_MAGIC))
        if p.suffix == ".gz" or lead == _GZIP_MAGIC:
            if lead != _GZIP_MAGIC:
                raise FormatError(p, "bytes 0-1", f"named .gz but is not gzip data (starts with {lead.hex() or 'nothing'})")
            return _read_gzip(p, f, size)
        f.seek(0)
        shape, dtype, header = _read_header(p, f, gz=False)
        nbytes = math.prod(shape) * dtype.itemsize
        if size - header != nbytes:
            what = "truncated" if size - header < nbytes else "too long"
            raise FormatError(
                p, "header",
                f"{what}: header says shape {shape} of {dtype.newbyteorder('=')} ({nbytes} payload bytes), "
                f"file has {size - header} payload bytes",
            )
        _check_numpy_size(p, shape, dtype)
        return _read_payload(p, f, shape, dtype, header, gz=False)


def _read_gzip(p: Path, f: io.BufferedReader, size: int) -> Array:
    """The IDX array in the gzip file ``f``: header first, then the payload in bounded chunks."""
    f.seek(0)
    with gzip.GzipFile(fileobj=f, mode="rb") as g:
        shape, dtype, header = _read_header(p, g, gz=True)
        nbytes = math.prod(shape) * dtype.itemsize
        if header + nbytes > _MAX_DEFLATE_RATIO * size:
            raise FormatError(
                p, "header",
                f"truncated: header says shape {shape} of {dtype.newbyteorder('=')} ({nbytes} payload bytes), "
                f"more than a {size}-byte gzip file can hold",
            )
        _check_numpy_size(p, shape, dtype)
        if nbytes <= max(_ONE_PASS_FLOOR, _ONE_PASS_FACTOR * size):
            return _read_payload(p, g, shape, dtype, header, gz=True)
        _read_payload(p, g, shape, dtype, header, gz=True, keep=False)
    f.seek(0)  # the whole stream checked out: read it again, now keeping the payload
    with gzip.GzipFile(fileobj=f, mode="rb") as g:
        if _read_header(p, g, gz=True) != (shape, dtype, header):
            raise FormatError(p, "header", "changed while being read")
        return _read_payload(p, g, shape, dtype, header, gz=True)


def _gzip_guard(p: Path, offset: int, gz: bool, read: Callable[[], _T]) -> _T:
    """``read()``, with a corrupt gzip stream reported as a FormatError at decompressed ``offset``."""
    if not gz:
        return read()
    try:
        return read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise FormatError(p, f"gzip stream, at decompressed byte {offset}", f"corrupt or truncated gzip data ({e})") from None


def _unit(gz: bool) -> str:
    return "decompressed byte" if gz else "byte"


def _read_exact(p: Path, s: _Stream, n: int, offset: int, gz: bool) -> bytes:
    """``n`` bytes (or fewer at the end of the data) from stream ``s`` at ``offset``."""
    return _gzip_guard(p, offset, gz, lambda: s.read(n))


def _read_header(p: Path, s: _Stream, gz: bool) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Parse and check the magic number and sizes; returns ``(shape, dtype, header bytes)``."""
    magic = _read_exact(p, s, _IDX_MAGIC_SIZE, 0, gz)
    if len(magic) < _IDX_MAGIC_SIZE:
        raise FormatError(p, "magic number (bytes 0-3)",
                          f"truncated: {len(magic)} bytes, shorter than the 4-byte magic number")
    zero0, zero1, code, ndim = magic
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise FormatError(
            p, "magic number (bytes 0-3)",
            f"bad magic number {magic.hex()} (expected 0000 then a type code in "
            f"{sorted(f'{c:02x}' for c in _IDX_DTYPES)} and the number of dimensions): not an IDX file",
        )
    if ndim == 0:
        raise FormatError(p, "magic number (byte 3)", f"bad magic number {magic.hex()}: zero dimensions")
    if ndim > _MAX_NDIM:
        raise FormatError(p, "magic number (byte 3)", f"{ndim} dimensions, more than the {_MAX_NDIM} NumPy allows")
    header = _IDX_MAGIC_SIZE + _IDX_DIM_SIZE * ndim
    dims = _read_exact(p, s, header - _IDX_MAGIC_SIZE, _IDX_MAGIC_SIZE, gz)
    if len(dims) < header - _IDX_MAGIC_SIZE:
        raise FormatError(
            p, f"sizes (bytes 4-{header - 1})",
            f"truncated header: {ndim} dimensions need {header} bytes, data ends at {_unit(gz)} {_IDX_MAGIC_SIZE + len(dims)}",
        )
    shape = tuple(int.from_bytes(dims[i : i + _IDX_DIM_SIZE], "big") for i in range(0, len(dims), _IDX_DIM_SIZE))
    return shape, _IDX_DTYPES[code], header


def _check_numpy_size(p: Path, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    """Reject a shape NumPy cannot hold even with no elements, e.g. ``(0, 2**32 - 1, 2**32 - 1, ...)``."""
    # Python ints: no overflow however large the header claims the sizes are.
    if math.prod(d for d in shape if d) * dtype.itemsize > np.iinfo(np.intp).max:
        raise FormatError(p, "sizes", f"shape {shape} is too large for any array")


def _read_payload(
    p: Path, s: _Stream, shape: tuple[int, ...], dtype: np.dtype[Any], header: int, gz: bool, keep: bool = True
) -> Array:
    """Read exactly the declared payload in chunks, then check that nothing follows it.

    With ``keep=False`` the payload is only counted (and, for gzip, its checksum verified) and an
    empty array is returned.
    """
    nbytes = math.prod(shape) * dtype.itemsize
    buf = np.empty(nbytes if keep else min(nbytes, _CHUNK), dtype=np.uint8)
    view = memoryview(buf.data)
    pos = 0
    while pos < nbytes:
        n = min(_CHUNK, nbytes - pos)
        target = view[pos : pos + n] if keep else view[:n]
        got = _gzip_guard(p, header + pos, gz, lambda: s.readinto(target))
        if not got:
            raise FormatError(
                p, f"{_unit(gz)} {header + pos}",
                f"truncated: header says shape {shape} of {dtype.newbyteorder('=')} ({nbytes} payload bytes), "
                f"data ends after {pos} payload bytes",
            )
        pos += got
    if _read_exact(p, s, 1, header + nbytes, gz):
        raise FormatError(
            p, f"{_unit(gz)} {header + nbytes}",
            f"too long: header says shape {shape} of {dtype.newbyteorder('=')} ({nbytes} payload bytes), "
            "more data follows",
        )
    if not keep:
        return buf[:0]
    out = buf.view(dtype).reshape(shape)
    if not dtype.isnative:
        out.byteswap(inplace=True)
        out = out.view(dtype.newbyteorder("="))
    return out
