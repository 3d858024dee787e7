"""Character sequence tasks (the sequel's toy seq2seq data): reading, splitting, encoding.

A sequence file holds one example per line: a question, then ``_`` (the start token) and the
answer, each padded with spaces to a fixed width (``16+75  _91  ``). Two files ship with fnnet
(``fnnet/data/sequence``, MIT licence, see its README): ``"addition"`` (50,000 sums, 13
characters) and ``"date"`` (50,000 dates in many formats to ISO, 59 characters).

:func:`load_sequence` splits them exactly as the sequel's loader does: each line at its first
``_`` (the answer keeps the ``_``, the decoder's first input), the vocabulary in order of first
appearance (question then answer characters, line by line), and the last ``N // 10`` examples of
the permutation ``np.random.RandomState(1984).permutation(N)`` as the test set. That legacy
seeded generator is used only to reproduce the sequel's split; it never touches NumPy's global
random state.

>>> from fnnet.datasets import load_sequence, decode
>>> data = load_sequence("addition")
>>> data.x_train.shape, data.t_test.shape, data.vocab_size
((45000, 7), (5000, 5), 13)
>>> decode(data.x_test[0], data.id_to_char), decode(data.t_test[0], data.id_to_char)
('77+85  ', '_162 ')
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from fnnet._io import open_regular
from fnnet.errors import FormatError
from fnnet.typing import Array

__all__ = ["SequenceData", "SEQUENCE_TASKS", "MAX_SEQUENCE_FILE_BYTES", "load_sequence", "read_sequence_file", "decode", "encode"]

SEQUENCE_TASKS = ("addition", "date")
"""The sequence tasks shipped with fnnet (``fnnet/data/sequence/<name>.txt``): the names
:func:`load_sequence` accepts besides a path.

>>> from fnnet.datasets import SEQUENCE_TASKS
>>> SEQUENCE_TASKS
('addition', 'date')
"""

MAX_SEQUENCE_FILE_BYTES = 64 << 20
"""Files larger than this are refused before reading (the shipped ones are 0.65 and 2.05 MB).

>>> import os, tempfile
>>> from fnnet.datasets import MAX_SEQUENCE_FILE_BYTES, read_sequence_file
>>> from fnnet.errors import FormatError
>>> MAX_SEQUENCE_FILE_BYTES // 2**20  # MiB
64
>>> big = os.path.join(tempfile.mkdtemp(), "big.txt")
>>> with open(big, "wb") as f:  # a sparse file: its size, not its bytes
...     _ = f.truncate(MAX_SEQUENCE_FILE_BYTES + 1)
>>> try:
...     read_sequence_file(big)
... except FormatError as e:
...     print(e.reason)
67108865 bytes, more than the 67108864 a sequence file may have
>>> os.remove(big); os.rmdir(os.path.dirname(big))
"""

#: The sequel's seed of the train/test permutation.
_SPLIT_SEED = 1984

_DIR = Path(__file__).resolve().parent.parent / "data" / "sequence"

_VOCAB_CHUNK = 1 << 16

#: The start token that separates a question from its answer.
START = "_"
_START = ord(START)
_LF, _CR = ord("\n"), ord("\r")


class SequenceData(NamedTuple):
    """A character sequence task, split into training and test examples.

    Attributes:
        x_train: questions ``(N_train, Tq)``, int32 ids.
        t_train: answers ``(N_train, Ta)``, int32 ids; column 0 is the start token ``_``.
        x_test, t_test: the held-out examples, same widths.
        id_to_char: the vocabulary, ``id_to_char[i]`` is the character of id ``i``.
        char_to_id: the inverse mapping (read-only).

    >>> from fnnet.datasets import decode, load_sequence
    >>> data = load_sequence("addition")
    >>> data.x_train.shape, data.t_train.shape, data.x_test.shape, data.t_test.shape, data.vocab_size
    ((45000, 7), (45000, 5), (5000, 7), (5000, 5), 13)
    >>> decode(data.x_test[0], data.id_to_char), int(data.t_test[0, 0]) == data.char_to_id["_"]
    ('77+85  ', True)
    """

    x_train: Array
    t_train: Array
    x_test: Array
    t_test: Array
    id_to_char: tuple[str, ...]
    char_to_id: Mapping[str, int]

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters."""
        return len(self.id_to_char)


def read_sequence_file(path: str | os.PathLike[str]) -> tuple[Array, Array, tuple[str, ...]]:
    """Read a question/answer file in file order, without splitting it.

    A file is read in about its own size plus the ids' (4 bytes a character), also when its
    ``\\n`` and ``\\r\\n`` line endings are mixed; only a faulty one is then read again line by line
    (in about 18 times its size) to name its first fault.

    Args:
        path: a UTF-8 text file of ``N >= 1`` lines ``question_answer`` with a non-empty question
            before the first ``_``; every question has the same width, every answer too. Lines
            end with ``\\n`` or ``\\r\\n``, mixed or not, as the sequel's text-mode reading accepts
            (a ``\\r`` alone is refused as a control character).
    Returns:
        ``(x (N, Tq), t (N, Ta), id_to_char)``: int32 ids, the answers starting with ``_``, and
        the vocabulary in order of first appearance.
    Raises:
        FormatError: the file is not a regular file (a FIFO, a device), is larger than
            :data:`MAX_SEQUENCE_FILE_BYTES`, not UTF-8 text (or begins with a byte-order mark),
            empty, or a line lacks ``_``, has an empty question, a non-printable character (named
            with its column) or another width than line 1 (the message names the file and the line).
        OSError: the file cannot be opened or read.

    >>> import os, tempfile
    >>> from fnnet.datasets import read_sequence_file
    >>> f = os.path.join(tempfile.mkdtemp(), "tiny.txt")
    >>> with open(f, "w") as out:
    ...     _ = out.write("1+1_2\\n2+3_5\\n")
    >>> x, t, vocab = read_sequence_file(f)
    >>> x.tolist(), t.tolist(), "".join(vocab)
    ([[0, 1, 0], [3, 1, 4]], [[2, 3], [2, 5]], '1+_235')
    """
    return _read(Path(path), None)


def _split_order(n: int) -> Array:
    """The sequel's permutation of ``n`` examples (its last ``n // 10`` are the test set)."""
    return np.random.RandomState(_SPLIT_SEED).permutation(n)


def _read(p: Path, order: Callable[[int], Array] | None) -> tuple[Array, Array, tuple[str, ...]]:
    """:func:`read_sequence_file` of ``p``, the rows of ``x`` and ``t`` taken in the order
    ``order(N)`` when given.

    Every line ending alike (all ``\\n`` or all ``\\r\\n``, or made so by :func:`_code_points`), the
    file is checked and encoded through a strided ``(N, width)`` view of its bytes (or of its code
    points, when not ASCII), a block of rows at a time: the ids are the only large arrays made. A
    file that fails those checks goes the line-by-line way, which accepts the same files and names
    the first fault.
    """
    codes = _code_points(p, _read_raw(p))
    grid = _uniform_rows(codes)
    if grid is not None:
        rows, q_width = grid
        vocab = _first_appearance(rows)
        if all(chr(c).isprintable() for c in vocab.tolist()):
            perm = None if order is None else order(len(rows))
            return (*_encode_rows(rows, q_width, vocab, perm), tuple(map(chr, vocab.tolist())))
    x, t, vocab_text = _read_lines(p, _text(codes))
    if order is not None:
        perm = order(len(x))
        x, t = x[perm], t[perm]
    return x, t, vocab_text


def _read_raw(p: Path) -> bytes:
    """The bytes of the sequence file ``p``, refused when too large or growing."""
    with open_regular(p) as f:
        st = os.fstat(f.fileno())
        if st.st_size > MAX_SEQUENCE_FILE_BYTES:
            raise FormatError(p, "", f"{st.st_size} bytes, more than the {MAX_SEQUENCE_FILE_BYTES} a sequence file may have")
        # Asking for more than the size would allocate that much; one byte more tells a file that grew.
        raw = f.read(st.st_size + 1)
    if len(raw) > st.st_size:
        raise FormatError(p, "", f"changed while being read (more than its {st.st_size} bytes)")
    return raw


def _code_points(p: Path, raw: bytes) -> Array:
    """The characters of the UTF-8 text ``raw`` as a 1-D array of code points in the narrowest of
    uint8 (no copy when ASCII), uint16 and uint32 that holds them all.

    When ``\\r\\n`` and ``\\n`` line endings are mixed, every ``\\r\\n`` becomes ``\\n`` (as text-mode
    reading does), so that all lines end alike; a ``\\r`` alone is kept (it is refused later). A
    ``\\r\\r\\n`` is left as it is: the replacement would make a new ``\\r\\n`` of its stray ``\\r``.
    """
    if raw.isascii():
        crlf = raw.count(b"\r\n")
        if crlf and crlf != raw.count(b"\n") and b"\r\r\n" not in raw:
            raw = raw.replace(b"\r\n", b"\n")
        return np.frombuffer(raw, dtype=np.uint8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = raw.count(b"\n", 0, e.start) + 1
        raise FormatError(p, f"line {lineno}", f"not UTF-8 text (byte {e.start})") from None
    del raw  # the caller keeps no reference: the bytes go before the code points are made
    crlf = text.count("\r\n")
    if crlf and crlf != text.count("\n") and "\r\r\n" not in text:
        text = text.replace("\r\n", "\n")
    try:
        return np.frombuffer(text.encode("latin-1"), dtype=np.uint8)
    except UnicodeEncodeError:
        pass
    # UTF-8 holds no surrogates, so UTF-16 has one unit per character unless one lies above U+FFFF.
    units = text.encode("utf-16-le")
    if len(units) == 2 * len(text):
        return np.frombuffer(units, dtype="<u2")
    del units
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _text(codes: Array) -> str:
    """The string of the code points ``codes`` made by :func:`_code_points`."""
    encoding = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[codes.itemsize]
    return codes.astype(codes.dtype.newbyteorder("<"), copy=False).tobytes().decode(encoding)


def _find(codes: Array, value: int, start: int, stop: int) -> int:
    """The first index of ``value`` in ``codes[start:stop]`` (an index into ``codes``), or -1."""
    for lo in range(start, stop, _VOCAB_CHUNK):
        hit = np.flatnonzero(codes[lo : min(lo + _VOCAB_CHUNK, stop)] == value)
        if hit.size:
            return lo + int(hit[0])
    return -1


def _uniform_rows(codes: Array) -> tuple[Array, int] | None:
    """``(rows, q_width)``: the lines of ``codes`` as an ``(N, width)`` view and the column of
    every line's first ``_``, when all lines end alike, are as wide as line 1 and have their first
    ``_`` where line 1 has it, after a non-empty question; otherwise None."""
    end = codes.size
    if end and codes[end - 1] == _LF:
        end -= 1
        if end and codes[end - 1] == _CR:
            end -= 1
    if end == 0:
        return None
    first = _find(codes, _LF, 0, end)
    if first < 0:
        width, eol, n = end, 0, 1
    else:
        eol = 2 if first and codes[first - 1] == _CR else 1
        width = first + 1 - eol
        if (end + eol) % (width + eol):
            return None
        n = (end + eol) // (width + eol)
    q_width = _find(codes, _START, 0, width)
    if q_width < 1:
        return None
    item = codes.itemsize
    step = (width + eol) * item
    rows = np.ndarray((n, width), dtype=codes.dtype, buffer=codes, strides=(step, item))
    ends = np.ndarray((n - 1, eol), dtype=codes.dtype, buffer=codes, offset=width * item, strides=(step, item))
    expected = np.array([_CR, _LF][2 - eol :], dtype=codes.dtype)
    block = max(1, _VOCAB_CHUNK // max(width, 1))
    for lo in range(0, n, block):
        part = rows[lo : lo + block]
        if not (
            (part[:, q_width] == _START).all()
            and not (part[:, :q_width] == _START).any()
            and (ends[lo : lo + block] == expected).all()
        ):
            return None
    return rows, q_width


def _first_appearance(rows: Array) -> Array:
    """The distinct values of ``rows`` (2-D, read row by row) in order of first appearance, in
    O(n log n).

    Each block contributes only values not seen in earlier blocks; a value is new in at most one
    block, so the sorted parts add up to at most ``rows.size`` elements.
    """
    seen = np.zeros(int(rows.max()) + 1, dtype=bool)
    parts = []
    block = max(1, _VOCAB_CHUNK // max(rows.shape[1], 1))
    for lo in range(0, len(rows), block):
        chunk = rows[lo : lo + block].ravel()
        new = chunk[~seen[chunk]]
        if new.size:
            values, first = np.unique(new, return_index=True)
            values = values[np.argsort(first)]
            seen[values] = True
            parts.append(values)
    return np.concatenate(parts)


def _encode_rows(rows: Array, q_width: int, vocab: Array, order: Array | None) -> tuple[Array, Array]:
    """The int32 ids of the questions and answers in ``rows`` (in ``order`` when given), a block
    of rows at a time."""
    table = np.zeros(int(vocab.max()) + 1, dtype=np.int32)  # code point -> id
    table[vocab] = np.arange(len(vocab), dtype=np.int32)
    n, width = rows.shape
    x = np.empty((n, q_width), dtype=np.int32)
    t = np.empty((n, width - q_width), dtype=np.int32)
    block = max(1, _VOCAB_CHUNK // max(width, 1))
    for lo in range(0, n, block):
        part = rows[lo : lo + block] if order is None else rows[order[lo : lo + block]]
        x[lo : lo + block] = table[part[:, :q_width]]
        t[lo : lo + block] = table[part[:, q_width:]]
    return x, t


def _read_lines(p: Path, text: str) -> tuple[Array, Array, tuple[str, ...]]:
    """:func:`read_sequence_file` of the file ``p`` holding ``text``, line by line: any line
    endings, and the first fault named."""
    text = text.replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise FormatError(p, "", "empty: no lines")
    lines = text.split("\n")
    q_width = lines[0].find(START)
    width = len(lines[0])
    for i, line in enumerate(lines, 1):
        at = line.find(START)
        if at < 0:
            raise FormatError(p, f"line {i}", f"no {START!r} between question and answer")
        if at == 0:
            raise FormatError(p, f"line {i}", f"empty question (the line starts with {START!r})")
        if not line.isprintable():
            col, bad = next((j, c) for j, c in enumerate(line, 1) if not c.isprintable())
            if i == 1 and col == 1 and bad == "\ufeff":
                raise FormatError(p, "line 1", "starts with a byte-order mark (U+FEFF); save the file as UTF-8 without one")
            what = "control" if unicodedata.category(bad) == "Cc" else "non-printable"
            raise FormatError(p, f"line {i}", f"{what} character {bad!r} (U+{ord(bad):04X}) at column {col}")
        if at != q_width or len(line) != width:
            raise FormatError(
                p, f"line {i}",
                f"question/answer widths {at}/{len(line) - at} differ from line 1's {q_width}/{width - q_width}",
            )
    codes = np.frombuffer("".join(lines).encode("utf-32-le"), dtype="<u4").reshape(len(lines), width)
    order = _first_appearance(codes)
    table = np.zeros(int(order.max()) + 1, dtype=np.int32)
    table[order] = np.arange(len(order), dtype=np.int32)
    ids = table[codes]
    return np.ascontiguousarray(ids[:, :q_width]), np.ascontiguousarray(ids[:, q_width:]), tuple(map(chr, order.tolist()))


def load_sequence(name: str | os.PathLike[str] = "addition") -> SequenceData:
    """Load a question/answer task split as the sequel splits it.

    Args:
        name: ``"addition"`` or ``"date"`` (shipped with fnnet), or the path of a file in the same
            format (see :func:`read_sequence_file`).
    Returns:
        A :class:`SequenceData`: the last ``N // 10`` examples of the permutation
        ``np.random.RandomState(1984).permutation(N)`` are the test set, the others (in that
        order) the training set: 45,000 / 5,000 for the shipped tasks.
    Raises:
        FormatError: as :func:`read_sequence_file` (a FIFO, socket or device at once).
        FileNotFoundError: ``name`` is neither a shipped task nor an existing file.

    >>> from fnnet.datasets import load_sequence
    >>> data = load_sequence("date")
    >>> len(data.x_train), len(data.x_test), data.vocab_size, data.x_train.shape[1], data.t_train.shape[1]
    (45000, 5000, 59, 29, 11)
    """
    if isinstance(name, str) and name in SEQUENCE_TASKS:
        path = _DIR / f"{name}.txt"
    else:
        path = Path(name)
        if not path.exists() or path.is_dir():  # a FIFO or device goes on, to be refused as one
            raise FileNotFoundError(
                f"load_sequence: {os.fspath(name)!r} is neither a shipped task ({', '.join(SEQUENCE_TASKS)}) nor a file"
            )
    x, t, vocab = _read(path, _split_order)
    n = len(x)
    split_at = n - n // 10
    char_to_id = MappingProxyType({c: i for i, c in enumerate(vocab)})
    return SequenceData(x[:split_at], t[:split_at], x[split_at:], t[split_at:], vocab, char_to_id)


def decode(ids: Any, vocab: Sequence[str]) -> str:
    """The string of a 1-D sequence of ids.

    Args:
        ids: integer ids ``(T,)`` (an array or a sequence), values in ``[0, len(vocab))``.
        vocab: ``id -> char``, e.g. :attr:`SequenceData.id_to_char`.
    Returns:
        ``"".join(vocab[i] for i in ids)``.

    >>> from fnnet.datasets import decode
    >>> decode([2, 0, 1], ("a", "b", "c"))
    'cab'
    """
    a = np.asarray(ids)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"decode: expected a 1-D sequence of integer ids, got shape {a.shape} dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= len(vocab)):
        raise ValueError(f"decode: ids must lie in [0, {len(vocab)}), got values in [{a.min()}, {a.max()}]")
    return "".join(vocab[int(i)] for i in a)


def encode(text: str, char_to_id: Mapping[str, int]) -> Array:
    """The int32 ids ``(len(text),)`` of a string.

    Args:
        text: characters all in the vocabulary.
        char_to_id: ``char -> id``, e.g. :attr:`SequenceData.char_to_id`.
    Raises:
        TypeError: ``text`` is not a str (a list of strings is encoded one string at a time).
        ValueError: naming the first character that is not in the vocabulary.

    >>> from fnnet.datasets import encode
    >>> encode("cab", {"a": 0, "b": 1, "c": 2}).tolist()
    [2, 0, 1]
    """
    if not isinstance(text, str):
        raise TypeError(f"encode: text must be a str, not {type(text).__name__} (encode one string at a time)")
    try:
        return np.array([char_to_id[c] for c in text], dtype=np.int32)
    except KeyError as e:
        raise ValueError(f"encode: character {e.args[0]!r} is not in the vocabulary") from None
