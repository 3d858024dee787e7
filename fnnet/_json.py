"""Bounded JSON reading for files fnnet did not necessarily write: size, depth and memory capped.

``json.loads`` trusts its input: a few MB of ``[[[[...`` end in ``RecursionError``, ``[{},{},...]``
costs over 20 times the file's size in objects, and ``1e400`` becomes ``inf``. :func:`read_json`
reads one file no larger than a cap, parses it without recursion, refuses nesting deeper than a
bound, counts what the parsed objects will cost before making them (rejecting a file whose objects
would pass ``max(64 MiB, 8 x its size)``), accepts only finite numbers and refuses an object that
repeats a key (``json.loads`` silently keeps the last value). Every failure is a
:class:`fnnet.errors.FormatError` naming the file and the byte offset.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Any

from fnnet._io import open_regular
from fnnet.errors import FormatError

__all__ = ["read_json"]

_MEMORY_FLOOR = 64 << 20
_MEMORY_FACTOR = 8
_MAX_NUMBER_CHARS = 100  # longer digit strings are no float or int a record of fnnet holds
# What one container, one list element and one dict entry cost beyond their values (CPython,
# 64-bit, with the over-allocation of growing lists and dicts).
_CONTAINER_COST = 72
_LIST_SLOT_COST = 16
_DICT_ENTRY_COST = 96

_WS = re.compile(rb"[ \t\n\r]*")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# A string is matched piecewise: plain runs, then at most 4096 characters or escapes per step, so
# that the regex engine's bookkeeping stays bounded however long the string is.
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
_PIECE = re.compile(rb'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}){0,4096}')
_LITERALS: dict[bytes, Any] = {b"true": True, b"false": False, b"null": None}
_BOMS = ((b"\xef\xbb\xbf", "UTF-8"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


class _Reader:
    """One parse of ``data``: a cursor, the memory count and the key memo."""

    def __init__(self, path: str | os.PathLike[str], data: bytes, budget: int, max_depth: int) -> None:
        self.path = path
        self.data = data
        self.budget = budget
        self.max_depth = max_depth
        self.used = 0
        self.keys: dict[str, str] = {}

    def fail(self, pos: int, reason: str) -> FormatError:
        return FormatError(self.path, f"byte {pos}", reason)

    def spend(self, pos: int, cost: int) -> None:
        self.used += cost
        if self.used > self.budget:
            raise self.fail(pos, f"the parsed values would need more than {self.budget} bytes of memory")

    def skip(self, pos: int) -> int:
        m = _WS.match(self.data, pos)
        assert m is not None  # matches the empty string
        return m.end()

    def found(self, pos: int) -> str:
        if pos >= len(self.data):
            return "the end of the file"
        if pos == 0:
            for bom, name in _BOMS:
                if self.data.startswith(bom):
                    return f"a {name} byte-order mark (the file must be UTF-8 without one)"
        return repr(self.data[pos : pos + 1].decode("latin-1"))

    def string(self, pos: int) -> tuple[str, int]:
        """The string starting at ``data[pos] == '"'`` and the offset after it."""
        end = plain = _end(_PLAIN, self.data, pos + 1)
        while True:
            step = _end(_PIECE, self.data, end)
            if step == end:
                break
            end = _end(_PLAIN, self.data, step)
        if self.data[end : end + 1] != b'"':
            raise self.fail(end, f"bad or unterminated string (found {self.found(end)})")
        try:
            if plain == end:  # no escapes: the bytes are the text
                return self.data[pos + 1 : end].decode("utf-8"), end + 1
            text: str = json.loads(self.data[pos : end + 1])
        except UnicodeDecodeError as e:
            at = pos + 1 + e.start if plain == end else pos + e.start
            raise self.fail(at, f"not UTF-8 text (byte {self.data[at]:#04x} in a string)") from None
        except ValueError as e:
            raise self.fail(pos, f"bad string ({e})") from None
        return text, end + 1

    def key(self, pos: int) -> tuple[str, int]:
        """An object key (shared between objects, as json does) and the offset after its colon."""
        if self.data[pos : pos + 1] != b'"':
            raise self.fail(pos, f"expected a string key, found {self.found(pos)}")
        k, pos = self.string(pos)
        if k not in self.keys:
            self.spend(pos, sys.getsizeof(k))
            self.keys[k] = k
        pos = self.skip(pos)
        if self.data[pos : pos + 1] != b":":
            raise self.fail(pos, f"expected ':' after a key, found {self.found(pos)}")
        return self.keys[k], self.skip(pos + 1)

    def scalar(self, pos: int) -> tuple[Any, int]:
        """A string, number or literal starting at ``pos`` and the offset after it."""
        c = self.data[pos : pos + 1]
        if c == b'"':
            s, end = self.string(pos)
            self.spend(pos, sys.getsizeof(s))
            return s, end
        m = _NUMBER.match(self.data, pos)
        if m is not None:
            token = m.group()
            if len(token) > _MAX_NUMBER_CHARS:
                raise self.fail(pos, f"number of {len(token)} characters, more than {_MAX_NUMBER_CHARS}")
            value: float | int = float(token) if m.group(1) or m.group(2) else int(token)
            if isinstance(value, float) and math.isinf(value):
                raise self.fail(pos, f"number {token.decode()} is out of the range of a float")
            self.spend(pos, sys.getsizeof(value))
            return value, m.end()
        for word, literal in _LITERALS.items():
            if self.data.startswith(word, pos):
                return literal, pos + len(word)
        raise self.fail(pos, f"expected a JSON value, found {self.found(pos)}")

    def parse(self) -> Any:
        """The one JSON value in ``data``, parsed with an explicit stack."""
        stack: list[tuple[list[Any] | dict[str, Any], str, int]] = []  # (container, pending key, its offset)
        pos = self.skip(0)
        while True:
            # A value starts at pos.
            c = self.data[pos : pos + 1]
            value: Any
            if c in (b"[", b"{"):
                if len(stack) >= self.max_depth:
                    raise self.fail(pos, f"nested deeper than {self.max_depth} levels")
                self.spend(pos, _CONTAINER_COST)
                close = b"]" if c == b"[" else b"}"
                inner = self.skip(pos + 1)
                if self.data[inner : inner + 1] == close:
                    value, pos = ([] if c == b"[" else {}), inner + 1
                elif c == b"[":
                    stack.append(([], "", 0))
                    pos = inner
                    continue
                else:
                    k, pos = self.key(inner)
                    stack.append(({}, k, inner))
                    continue
            else:
                value, pos = self.scalar(pos)
            # A value ended at pos: store it, then close containers until another value is due.
            while True:
                if not stack:
                    pos = self.skip(pos)
                    if pos != len(self.data):
                        raise self.fail(pos, "extra data after the JSON value")
                    return value
                container, k, at = stack[-1]
                if isinstance(container, list):
                    self.spend(pos, _LIST_SLOT_COST)
                    container.append(value)
                else:
                    if k in container:
                        shown = repr(k) if len(k) <= 60 else repr(k[:57]) + "..."
                        raise self.fail(at, f"duplicate key {shown} in an object")
                    self.spend(pos, _DICT_ENTRY_COST)
                    container[k] = value
                pos = self.skip(pos)
                c = self.data[pos : pos + 1]
                if c == b",":
                    pos = self.skip(pos + 1)
                    if isinstance(container, dict):
                        at = pos
                        k, pos = self.key(pos)
                        stack[-1] = (container, k, at)
                    break
                if c != (b"]" if isinstance(container, list) else b"}"):
                    want = "',' or ']'" if isinstance(container, list) else "',' or '}'"
                    raise self.fail(pos, f"expected {want}, found {self.found(pos)}")
                stack.pop()
                value, pos = container, pos + 1


def _end(pattern: re.Pattern[bytes], data: bytes, pos: int) -> int:
    m = pattern.match(data, pos)
    assert m is not None  # both patterns match the empty string
    return m.end()


def read_json(path: str | os.PathLike[str], *, max_bytes: int, max_depth: int) -> Any:
    """Parse the JSON file at ``path`` within bounds on its size, nesting and memory.

    Args:
        path: the file (UTF-8 JSON, no byte-order mark).
        max_bytes: files larger than this are refused before being read.
        max_depth: the deepest nesting of arrays and objects accepted.
    Returns:
        The parsed value (dicts, lists, str, int, finite float, bool, None).
    Raises:
        FormatError: not a regular file (a FIFO, a device), too large, not JSON, nested too
            deep, a number out of range or too long, a key repeated in an object, or values that
            would need more than ``max(64 MiB, 8 x size)`` of memory; the message names the file
            and the byte offset.
        OSError: the file cannot be opened or read.
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise FormatError(path, "", f"{size} bytes, more than the {max_bytes} this file may have")
        data = f.read(min(size, max_bytes) + 1)
    if len(data) > max_bytes:
        raise FormatError(path, "", f"more than the {max_bytes} bytes this file may have")
    budget = max(_MEMORY_FLOOR, _MEMORY_FACTOR * len(data)) - 2 * len(data)
    return _Reader(path, data, budget, max_depth).parse()
