"""IDX files, the format of MNIST and Fashion-MNIST, read with the header checked first.

An IDX file is a magic number (two zero bytes, a type code, the number of dimensions ``ndim``),
``ndim`` big-endian uint32 sizes and then exactly ``prod(sizes)`` big-endian elements. It may be
gzip-compressed (named ``.gz``, or recognised by its content).

The reader never trusts the header with memory: it reads the file as a stream, checks the magic
number and the sizes before any payload is read, compares the declared payload with what the
file can hold (its size when raw, the most deflate can expand it to when compressed), reads
exactly the declared bytes in bounded chunks into one array, and then looks at most one byte
further to reject a file that is too long. Rejecting any file costs far less memory than
``max(64 MiB, 8 x its size)``.

The gzip wrapper (RFC 1952) is parsed here rather than by :mod:`gzip`, which reads a header's
file name and comment a byte at a time: each member's header is checked (magic, method 8, no
reserved flags, its CRC when present), its file name and comment may have at most 4095 bytes
each, and its trailer's CRC-32 and size must match the data :mod:`zlib` inflates. NUL padding
between members is skipped, as :mod:`gzip` does.

Every damaged, truncated or hostile file raises :class:`fnnet.errors.FormatError` naming the
file and the place (header field or byte offset).
"""

from __future__ import annotations

import io
import math
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

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

# RFC 1952: a member is a 10-byte header (magic, method, flags, mtime, xfl, os), the optional
# fields its flags announce, raw deflate data and an 8-byte trailer (CRC-32, size mod 2**32).
_GZIP_FIXED = 10
_GZIP_DEFLATE = 8
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 0x02, 0x04, 0x08, 0x10
_F_RESERVED = 0xE0
_GZIP_TRAILER = 8
#: The longest file name or comment (with its terminating NUL) a gzip header may hold here.
_GZIP_TEXT_MAX = 4096
#: Compressed bytes read from the file at a time, and given to zlib at a time.
_GZIP_READ = 1 << 16
_GZIP_FEED = 1 << 14

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
            regular file (a FIFO, a device), or a gzip header holds a file name or comment longer
            than 4095 bytes; the message names the file and the header field or byte offset (in
            the file for a gzip header or trailer, in the decompressed stream for the IDX data).
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
    g = _GzipStream(p, f)
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
    g = _GzipStream(p, f)  # the whole stream checked out: read it again, now keeping the payload
    if _read_header(p, g, gz=True) != (shape, dtype, header):
        raise FormatError(p, "header", "changed while being read")
    return _read_payload(p, g, shape, dtype, header, gz=True)


class _GzipStream:
    """The decompressed bytes of every member of the gzip file ``f`` in turn, read from its start.

    Damage raises :class:`FormatError`: in a header or trailer at its byte offset in the file, in
    the deflate data at the decompressed offset. NUL bytes between members are skipped, as
    :mod:`gzip` does.
    """

    def __init__(self, p: Path, f: io.BufferedReader) -> None:
        f.seek(0)
        self._p = p
        self._f = f
        self._buf = b""  # compressed bytes read from the file; those before self._i are used up
        self._i = 0
        self._base = 0  # file offset of self._buf[0]
        self._inflate: zlib._Decompress | None = None  # the current member's; None between members
        self._crc = 0
        self._size = 0
        self._out = 0  # decompressed bytes handed out so far
        self._end = False

    def read(self, n: int, /) -> bytes:
        """``n`` bytes, fewer only at the end of the last member."""
        parts: list[bytes] = []
        while n > 0 and (data := self._next(n)):
            parts.append(data)
            n -= len(data)
        return b"".join(parts)

    def readinto(self, buffer: memoryview, /) -> int:
        """Fill the start of ``buffer``; returns the number of bytes, 0 only at the end."""
        data = self._next(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _more(self) -> bool:
        """Append the next compressed bytes of the file to the unused ones; False at its end."""
        data = self._f.read(_GZIP_READ)
        if not data:
            return False
        self._base += self._i
        self._buf = self._buf[self._i :] + data
        self._i = 0
        return True

    def _have(self, n: int) -> bool:
        """Whether ``n`` unused bytes are there, reading the file as needed."""
        while len(self._buf) - self._i < n:
            if not self._more():
                return False
        return True

    def _fail(self, part: str, at: int, reason: str) -> FormatError:
        """The error for damage in a member's ``part`` (header, trailer) at file offset ``at``."""
        return FormatError(self._p, f"gzip {part}, byte {at}", f"corrupt or truncated gzip data ({reason})")

    def _next(self, limit: int) -> bytes:
        """At most ``min(limit, _CHUNK)`` (at least 1) decompressed bytes; empty at the end."""
        while not self._end:
            d = self._inflate
            if d is None:
                self._start_member()
                continue
            if not self._have(1):
                raise FormatError(
                    self._p, f"gzip stream, at decompressed byte {self._out}",
                    "corrupt or truncated gzip data (the file ends inside the compressed data)",
                )
            # A bounded piece at a time: zlib copies what it leaves unused.
            piece = memoryview(self._buf)[self._i : self._i + _GZIP_FEED]
            try:
                data = d.decompress(piece, min(limit, _CHUNK))
            except zlib.error as e:
                raise FormatError(
                    self._p, f"gzip stream, at decompressed byte {self._out}", f"corrupt or truncated gzip data ({e})"
                ) from None
            self._i += len(piece) - len(d.unused_data if d.eof else d.unconsumed_tail)
            self._crc = zlib.crc32(data, self._crc)
            self._size += len(data)
            self._out += len(data)
            if d.eof:
                self._end_member()
            if data:
                return data
        return b""

    def _start_member(self) -> None:
        """Skip NUL padding, then parse the next member's header (or note the end of the file)."""
        while True:
            if not self._have(1):
                self._end = True
                return
            if self._buf[self._i]:
                break
            self._i = len(self._buf) - len(self._buf[self._i :].lstrip(b"\0"))
        start = self._base + self._i  # the header's offsets below are from here
        self._have(_GZIP_FIXED)
        head = self._buf[self._i : self._i + _GZIP_FIXED]
        if head[:2] != _GZIP_MAGIC:
            raise self._fail("member", start, f"{head[:2].hex()} where a gzip member or the end of the file should be")
        if len(head) < _GZIP_FIXED:
            raise self._fail("header", start, f"the file ends inside a {_GZIP_FIXED}-byte gzip header")
        method, flags = head[2], head[3]
        if method != _GZIP_DEFLATE:
            raise self._fail("header", start + 2, f"compression method {method}, expected {_GZIP_DEFLATE} (deflate)")
        if flags & _F_RESERVED:
            raise self._fail("header", start + 3, f"reserved header flags set ({flags:#04x})")
        end = _GZIP_FIXED
        if flags & _FEXTRA:
            if not self._have(end + 2):
                raise self._fail("header", start + end, "the file ends inside the gzip header's extra field")
            end += 2 + int.from_bytes(self._buf[self._i + end : self._i + end + 2], "little")
            if not self._have(end):
                raise self._fail("header", start + end - 1, "the file ends inside the gzip header's extra field")
        for flag, what in ((_FNAME, "file name"), (_FCOMMENT, "comment")):
            if flags & flag:
                end = self._text_end(start, end, what)
        if flags & _FHCRC:
            if not self._have(end + 2):
                raise self._fail("header", start + end, "the file ends inside the gzip header's CRC")
            stored = int.from_bytes(self._buf[self._i + end : self._i + end + 2], "little")
            if stored != zlib.crc32(self._buf[self._i : self._i + end]) & 0xFFFF:
                raise self._fail("header", start + end, f"header CRC {stored:04x} does not match the header")
            end += 2
        self._i += end
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._crc = self._size = 0

    def _text_end(self, start: int, field: int, what: str) -> int:
        """The header offset just past the NUL-terminated field at header offset ``field``."""
        searched = field
        while True:
            nul = self._buf.find(b"\0", self._i + searched, self._i + field + _GZIP_TEXT_MAX)
            if nul >= 0:
                return nul + 1 - self._i
            searched = len(self._buf) - self._i
            if searched >= field + _GZIP_TEXT_MAX:
                raise FormatError(
                    self._p, f"gzip header, byte {start + field}",
                    f"{what} longer than {_GZIP_TEXT_MAX - 1} bytes (no NUL in the first {_GZIP_TEXT_MAX}): refused",
                )
            if not self._more():
                raise self._fail("header", start + field, f"the file ends inside the gzip header's {what}")

    def _end_member(self) -> None:
        """Check the trailer of the member just inflated against its data."""
        at = self._base + self._i
        if not self._have(_GZIP_TRAILER):
            raise self._fail("trailer", at, "the file ends inside a gzip trailer")
        crc = int.from_bytes(self._buf[self._i : self._i + 4], "little")
        size = int.from_bytes(self._buf[self._i + 4 : self._i + _GZIP_TRAILER], "little")
        if crc != self._crc:
            raise self._fail("trailer", at, f"CRC-32 {crc:08x} in the trailer, {self._crc:08x} computed")
        if size != self._size & 0xFFFFFFFF:
            got = self._size & 0xFFFFFFFF
            raise self._fail("trailer", at + 4, f"size {size} in the trailer, {got} decompressed (mod 2**32)")
        self._i += _GZIP_TRAILER
        self._inflate = None


def _unit(gz: bool) -> str:
    return "decompressed byte" if gz else "byte"


def _read_exact(s: _Stream, n: int) -> bytes:
    """``n`` bytes (or fewer at the end of the data) from stream ``s``."""
    return s.read(n)


def _read_header(p: Path, s: _Stream, gz: bool) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Parse and check the magic number and sizes; returns ``(shape, dtype, header bytes)``."""
    magic = _read_exact(s, _IDX_MAGIC_SIZE)
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
    dims = _read_exact(s, header - _IDX_MAGIC_SIZE)
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
        got = s.readinto(target)
        if not got:
            raise FormatError(
                p, f"{_unit(gz)} {header + pos}",
                f"truncated: header says shape {shape} of {dtype.newbyteorder('=')} ({nbytes} payload bytes), "
                f"data ends after {pos} payload bytes",
            )
        pos += got
    if _read_exact(s, 1):
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
