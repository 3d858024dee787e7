"""Checkpoints: a tree of arrays and a metadata dict in one ``.npz`` file, never pickle.

:func:`save` writes one standard ``.npz`` archive (the format of ``np.savez``: a zip of ``.npy``
files, readable with ``np.load(path, allow_pickle=False)``) holding

- every leaf of the tree under its tree path (``"params/0/w"``, ``"opt_state/1/mu/0/w"``, ...; a
  tree that is a single leaf uses ``"__root__"``), and
- ``"__manifest__"``: a uint8 array of UTF-8 JSON with the format name and version, the fnnet
  version, each leaf's path, shape, dtype and kind, and the user's ``meta`` dict, and
- ``"__meta_0__"``, ``"__meta_1__"``, ...: the long lists of floats of ``meta`` (a training
  history's per-step losses and gradient norms), stored as float64 arrays instead of JSON.

``meta`` is for what is not an array: the step, the run's key, the training history, the
configuration. It must be JSON-serialisable, with two additions: a :class:`fnnet.random.Key` is
stored as ``{"__fnnet_key__": {"seed": s, "path": [...]}}`` and comes back as a ``Key`` (so that
object key is reserved), and NumPy scalars are stored as plain numbers (they come back as Python
``int`` / ``float`` / ``bool``). JSON turns tuples into lists and dict keys into strings (two
keys of one dict that become the same string, such as ``1`` and ``"1"``, are refused); ``NaN``
and infinities are kept (written as JSON's ``NaN`` / ``Infinity``, read back as floats). ``meta``
may nest at most :data:`MAX_META_DEPTH` containers deep and the whole manifest may take at most
:data:`MAX_MANIFEST_BYTES`. A list (or tuple) in ``meta`` of at least 1,024 floats and nothing
else, or of rows of floats all of one length ``k >= 1`` (1,024 floats or more in all), is stored
as a 1-D or 2-D ``.npy`` member that the manifest names in its place (``{"__fnnet_array__":
"__meta_0__"}``, a reserved key like the Key tag); it is read back as the same list of lists of
floats (a tuple as a list, as JSON does). So a history of a million steps fits; the meta arrays
may hold at most 2**25 numbers in all.

The file is written atomically with :func:`fnnet._io.atomic_write` (a temporary file
``.NAME.PID.XXXXXXXX.tmp`` in the same directory, flushed and fsynced, then ``os.replace`` and a
directory fsync), so a crash or an error leaves either the old file or the new one, never a
partial one. A writer killed mid-save may leave its temporary file; the next save to the same path
removes it. There is deliberately no ``<path>.json`` sidecar: two files cannot be replaced together
atomically and could disagree after a crash. Read the manifest without a skeleton with
:func:`read_manifest` (or :func:`read_meta` for just ``meta``).

:func:`load` restores the tree against a skeleton ``like`` (e.g. freshly initialised params or a
``TrainState``): the paths, shapes and dtypes must match exactly, the result has ``like``'s
structure (NamedTuples, tuples, lists, dicts, ``None``, attrs records), and each leaf gets
``like``'s leaf type (ndarray, NumPy scalar, or Python ``int`` / ``float`` / ``bool`` /
``complex``). Values round-trip bit-exactly.

Reading is bounded: the zip directory, the manifest's size and shape, each member's compression
method, flags and sizes and each leaf's own ``.npy`` header are checked against the manifest and
the skeleton before any leaf data is read, and data is decompressed in bounded chunks. A
manifest object that repeats a key is refused (``json.loads`` would keep the last value). Every
failure to read a file that exists raises :class:`fnnet.errors.FormatError` (a ``ValueError``)
naming the file and the place in it (manifest field, leaf path, zip member and its byte offset);
a file that cannot be opened at all raises the ``OSError`` of ``open`` (``FileNotFoundError``...),
and a FIFO or device given as the file a ``FormatError`` at once (the open never waits).

>>> import os, tempfile, numpy as np, fnnet
>>> params, _ = fnnet.Affine(3).init(fnnet.key(0), (4,))          # w (4, 3), b (3,)
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = os.path.join(tmp, "ckpt.npz")
...     fnnet.save(path, params, {"epoch": 5, "key": fnnet.key(0)})
...     back, meta = fnnet.load(path, like=params)
>>> bool(np.array_equal(back.w, params.w)), meta["epoch"], meta["key"]
(True, 5, Key(seed=0, path=()))
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import os
import re
import struct
import sys
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, NamedTuple

import numpy as np

from fnnet._version import __version__
from fnnet._io import atomic_write, open_regular
from fnnet.errors import FormatError
from fnnet.random import Key
from fnnet.tree import tree_flatten, tree_paths, tree_unflatten
from fnnet.typing import Array, Tree

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_MANIFEST_BYTES",
    "MAX_META_DEPTH",
    "save",
    "load",
    "read_manifest",
    "read_meta",
]

FORMAT = "fnnet-checkpoint"
"""The ``"format"`` field of every manifest.

>>> import os, tempfile, numpy as np
>>> from fnnet.checkpoint import FORMAT, FORMAT_VERSION, read_manifest, save
>>> with tempfile.TemporaryDirectory() as tmp:
...     save(os.path.join(tmp, "c.npz"), {"w": np.zeros(2)})
...     manifest = read_manifest(os.path.join(tmp, "c.npz"))
>>> manifest["format"] == FORMAT, manifest["format_version"] <= FORMAT_VERSION
(True, True)
"""
FORMAT_VERSION = 2
"""The newest manifest layout version this module writes and reads.

Version 2 adds the meta arrays (long lists of floats of ``meta`` stored as ``.npy`` members). A
checkpoint without any is written as version 1, which older fnnet reads; a version 1 file is read
as before (a ``"__fnnet_array__"`` key in its meta is an ordinary key there).

>>> import os, tempfile, numpy as np
>>> from fnnet.checkpoint import FORMAT_VERSION, read_manifest, save
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = os.path.join(tmp, "c.npz")
...     save(path, {"w": np.zeros(2)}, {"losses": [0.5] * 10})
...     short = read_manifest(path)["format_version"]
...     save(path, {"w": np.zeros(2)}, {"losses": [0.5] * 10_000})
...     long = read_manifest(path)["format_version"]
>>> FORMAT_VERSION, short, long
(2, 1, 2)
"""
MAX_MANIFEST_BYTES = 4 << 20
"""The largest manifest (JSON text, in bytes) :func:`save` writes and :func:`load` reads.

>>> import os, tempfile, numpy as np
>>> from fnnet.checkpoint import MAX_MANIFEST_BYTES, save
>>> with tempfile.TemporaryDirectory() as tmp:
...     try:
...         save(os.path.join(tmp, "c.npz"), np.zeros(1), {"notes": "x" * MAX_MANIFEST_BYTES})
...     except ValueError as err:
...         print("more than a checkpoint may hold" in str(err))
True
"""
MAX_META_DEPTH = 100
"""How many containers deep ``meta`` may nest (``meta`` itself is level 1; a ``Key`` takes 3).

>>> import os, tempfile, numpy as np
>>> from fnnet.checkpoint import MAX_META_DEPTH, save
>>> deep: dict = {}
>>> for _ in range(MAX_META_DEPTH):
...     deep = {"a": deep}
>>> with tempfile.TemporaryDirectory() as tmp:
...     try:
...         save(os.path.join(tmp, "c.npz"), np.zeros(1), deep)
...     except ValueError as err:
...         print(str(err).split(": ")[-1])
meta nests more than 100 levels deep (or contains itself)
"""

_MANIFEST_KEY = "__manifest__"
_ROOT_KEY = "__root__"  # the entry name of a tree that is a single leaf (its path is "")
_KEY_TAG = "__fnnet_key__"
_ARRAY_TAG = "__fnnet_array__"
_ARRAY_NAME = re.compile(r"__meta_[0-9]{1,9}__")
_MIN_META_ARRAY = 1024  # floats: shorter lists stay in the JSON
_MAX_META_NUMBERS = 1 << 25

# Python scalar leaf types restored from 0-d arrays; bool before int since bool is an int.
_PY_SCALARS: tuple[type, ...] = (bool, int, float, complex)

# Bounds for reading. The manifest's Python objects are estimated from its text before parsing
# (see _json_cost) and refused above _MAX_JSON_COST, which keeps a rejected file's memory within
# 64 MiB whatever its size.
_MAX_JSON_COST = 48 << 20
_MAX_JSON_DEPTH = MAX_META_DEPTH + 1  # the manifest object around meta
_MAX_INT_DIGITS = 4300  # Python's default int/str conversion limit
_MAX_NPY_HEADER = 4096  # numpy writes ~128 bytes for a plain array
_NPY_PREFIX_MAX = 6 + 2 + 4 + _MAX_NPY_HEADER  # magic, version, header length, header
_NPY_PREFIX_MIN = 6 + 2 + 2
_MAX_NDIM = 64
_MAX_DIM = 2**63 - 1
_MIN_MEMBER_BYTES = 128  # local + central zip headers and an .npy header: no member is smaller
_CHUNK = 1 << 20
_DTYPE_STR = re.compile(r"[<>|=]?[A-Za-z][A-Za-z0-9]{0,7}(?:\[[A-Za-z0-9]{1,8}\])?")

# What zipfile and numpy's .npy header reader raise on damaged input; caught only around calls
# into them and turned into FormatError. zipfile: BadZipFile, EOFError, NotImplementedError (an
# unknown method, version or flag), RuntimeError (encryption), struct.error, OverflowError and
# OSError (offsets past the end or negative), UnicodeDecodeError (names); numpy: ValueError, and
# TypeError, KeyError, IndexError, SyntaxError, tokenize.TokenError or, under -W error, the
# UserWarning its header parser can raise on a mangled header.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    SyntaxError,
    struct.error,
    tokenize.TokenError,
    OSError,
    UserWarning,
)


# --------------------------------------------------------------------------------------------
# Meta <-> JSON
# --------------------------------------------------------------------------------------------


# What the walks over meta descend into; the numbers and strings of a long list are never pushed.
_CONTAINERS = (dict, list, tuple)
_NESTING = (dict, list, tuple, Key)


def _encode(o: Any) -> Any:
    if isinstance(o, Key):
        return {_KEY_TAG: {"seed": o.seed, "path": list(o.path)}}
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        raise TypeError(f"an array of shape {o.shape} (put arrays in the tree, not in meta)")
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


def _json_name(k: Any) -> str | None:
    """The object key ``json.dumps`` writes for dict key ``k`` (None: one it refuses)."""
    if isinstance(k, str):
        return k
    if k is None or isinstance(k, bool):
        return json.dumps(k)
    if isinstance(k, int):
        return int.__repr__(k)
    if isinstance(k, float):
        return json.dumps(float(k))
    return None


def _meta_key_problem(meta: Mapping[str, Any]) -> str | None:
    """Why ``meta`` would be written as JSON that :func:`load` refuses or reads back changed, or None:
    two keys of one dict with the same JSON name (``1`` and ``"1"``), or the reserved Key tag.
    ``meta`` must not nest too deep (checked before)."""
    stack: list[Any] = [meta]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            names: dict[str, Any] = {}
            for k in o:
                name = _json_name(k)
                if name is None:
                    continue  # json.dumps refuses it, with its own message
                if name == _KEY_TAG:
                    return f"the dict key {_KEY_TAG!r} is reserved (it marks a fnnet.random.Key)"
                if name == _ARRAY_TAG:
                    return f"the dict key {_ARRAY_TAG!r} is reserved (it marks a list stored as an array)"
                if name in names:
                    first, second = _short(repr(names[name])), _short(repr(k))
                    return f"the dict keys {first} and {second} are both written as {_short(name)!r}"
                names[name] = k
            stack.extend(v for v in o.values() if isinstance(v, _CONTAINERS))
        elif isinstance(o, (list, tuple)) and _flat_depth(o) is None:
            stack.extend(v for v in o if isinstance(v, _CONTAINERS))
    return None


def _float_array(o: list[Any] | tuple[Any, ...]) -> Array | None:
    """``o`` as a float64 array when it holds at least ``_MIN_META_ARRAY`` floats and nothing else:
    1-D from floats, 2-D from lists or tuples of floats all of one length ``k >= 1``; else None."""
    if not o:
        return None
    types = set(map(type, o))
    if all(issubclass(t, float) for t in types):
        return np.array(o, dtype="<f8") if len(o) >= _MIN_META_ARRAY else None
    if not types <= {list, tuple}:
        return None
    widths = set(map(len, o))
    k = widths.pop()
    if widths or k == 0 or len(o) * k < _MIN_META_ARRAY:
        return None
    if not all(issubclass(t, float) for t in set(map(type, itertools.chain.from_iterable(o)))):
        return None
    return np.array(o, dtype="<f8")


def _split_meta(meta: dict[str, Any], taken: set[str]) -> tuple[dict[str, Any], list[tuple[str, Array]]]:
    """``meta`` with each long list of floats (see :func:`_float_array`) replaced by a record naming
    the member that stores it, and those ``(member key, array)``; member keys avoid ``taken``.
    ``meta`` must not nest too deep (checked before)."""
    arrays: list[tuple[str, Array]] = []
    names = (f"__meta_{i}__" for i in itertools.count() if f"__meta_{i}__" not in taken)

    def walk(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            a = _float_array(o)
            if a is None:
                return [walk(v) if isinstance(v, _CONTAINERS) else v for v in o]
            name = next(names)
            arrays.append((name, a))
            return {_ARRAY_TAG: name}
        return o

    return walk(meta), arrays


def _is_count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _decode(d: dict[str, Any]) -> Any:
    if _KEY_TAG not in d:
        return d
    k = d[_KEY_TAG]
    if (
        len(d) != 1
        or not isinstance(k, dict)
        or set(k) != {"seed", "path"}
        or not _is_count(k["seed"])
        or not isinstance(k["path"], list)
        or not all(_is_count(i) for i in k["path"])
    ):
        raise ValueError(f"meta: a {_KEY_TAG!r} record is not {{'seed': int, 'path': [int, ...]}}")
    return Key(k["seed"], tuple(k["path"]))


def _decode_pairs(pairs: list[tuple[str, Any]]) -> Any:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"an object repeats the key {_short(k)!r}")
        d[k] = v
    return _decode(d)


def _finite_float(s: str) -> float:
    v = float(s)
    if math.isinf(v):
        raise ValueError(f"the number {_short(s)} is out of the range of a float")
    return v


def _bounded_int(s: str) -> int:
    if len(s) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer with {len(s)} digits")
    return int(s)


def _too_deep(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests dicts/lists/tuples (a ``Key`` counts 3) more than ``limit`` deep."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, depth = stack.pop()
        if isinstance(o, Key):
            if depth + 2 > limit:
                return True
            continue
        if isinstance(o, dict):
            kids: Any = o.values()
        elif isinstance(o, (list, tuple)):
            flat = _flat_depth(o)
            if flat is not None:
                if depth + flat > limit:
                    return True
                continue
            kids = o
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in kids if isinstance(c, _NESTING))
    return False


def _flat_depth(o: list[Any] | tuple[Any, ...]) -> int | None:
    """The levels ``o`` holds below itself when it holds no containers (0) or only lists and tuples
    of no containers (1), found without a Python loop over a long history's steps; else None."""
    types = set(map(type, o))
    if not any(issubclass(t, _NESTING) for t in types):
        return 0
    if types <= {list, tuple} and not any(
        issubclass(t, _NESTING) for t in set(map(type, itertools.chain.from_iterable(o)))
    ):
        return 1
    return None


def _json_cost(text: str) -> int:
    """An upper bound on the bytes ``json.loads(text)`` allocates, text included.

    Each container, string, separator and key costs at most the size of the smallest Python
    object it can make plus its slot in the parent (an empty dict 64 + a one-key dict's table, a
    list 56, a str 49 + characters, a float or int 24-32, a pointer 8); a key also costs the
    (key, value) pair the parser builds before the dict (a tuple 56 and its list slot 8).
    """
    return (
        2 * sys.getsizeof(text)
        + 232 * text.count("{")
        + 112 * text.count("[")
        + 40 * text.count('"')
        + 40 * text.count(",")
        + 128 * text.count(":")
    )


def _short(x: Any, n: int = 60) -> str:
    r = x if isinstance(x, str) else repr(x)
    return r if len(r) <= n else r[: n - 3] + "..."


def _shown(x: Any) -> str:
    """A value read from a file, shortened, on one line (a string with a newline is shown escaped)."""
    return _short(x if isinstance(x, str) and x.isprintable() else repr(x))


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {_short(msg, 200)}" if msg else type(e).__name__


# --------------------------------------------------------------------------------------------
# Leaves
# --------------------------------------------------------------------------------------------


def _kind(leaf: Any) -> str:
    if isinstance(leaf, np.ndarray):
        return "ndarray"
    if isinstance(leaf, np.generic):
        return "numpy-scalar"
    for t in _PY_SCALARS:
        if isinstance(leaf, t):
            return t.__name__
    return ""


def _as_array(where: str, path: str, leaf: Any) -> Array:
    """The leaf as an array that ``.npy`` stores without pickle."""
    kind = _kind(leaf)
    if not kind:
        raise ValueError(
            f"{where}: leaf {path or '<root>'!r} is a {type(leaf).__name__}; leaves must be arrays, "
            "NumPy scalars or Python numbers (put other values in meta)"
        )
    try:
        a = np.asarray(leaf)
    except OverflowError as e:
        raise ValueError(f"{where}: leaf {path or '<root>'!r}: {e}") from None
    if a.dtype.hasobject:
        raise ValueError(f"{where}: leaf {path or '<root>'!r} has dtype object, which needs pickle")
    if a.dtype.names is not None:  # the manifest's dtype string ("|V8") would drop the fields
        raise ValueError(
            f"{where}: leaf {path or '<root>'!r} has the structured dtype {_short(str(a.dtype))}; a checkpoint "
            "keeps plain dtypes only (make each field a leaf of its own)"
        )
    return a


def _entry_keys(where: str, paths: list[str]) -> list[str]:
    keys = [p if p else _ROOT_KEY for p in paths]
    seen: set[str] = set()
    for path, k in zip(paths, keys):
        if k in seen or k == _MANIFEST_KEY:
            raise ValueError(f"{where}: two leaves (or a leaf and the manifest) share the path {k!r}")
        seen.add(k)
        try:
            n = len(k.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise ValueError(
                f"{where}: leaf {path!r}: its path cannot be a zip member name: {e.reason} at character {e.start}"
            ) from None
        if "\x00" in k or n + 4 > 0xFFFF:
            raise ValueError(f"{where}: leaf {_short(path)!r}: its path cannot be a zip member name (NUL or too long)")
    return keys


def _describe(shape: tuple[int, ...], dtype: np.dtype[Any]) -> str:
    return f"shape {shape} dtype {dtype}"


# --------------------------------------------------------------------------------------------
# Save
# --------------------------------------------------------------------------------------------


def _fnnet_version() -> str:
    return __version__


def _write_npy(zf: zipfile.ZipFile, name: str, a: Array) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, a, allow_pickle=False)


def save(path: str | os.PathLike[str], tree: Tree, meta: Mapping[str, Any] | None = None) -> None:
    """Save ``tree`` and ``meta`` to the ``.npz`` file ``path``, atomically.

    Args:
        path: the file to write (replaced if it exists; written as given, no suffix added).
        tree: parameters, an optimizer state, a ``TrainState``...: a tree whose leaves are arrays,
            NumPy scalars or Python numbers.
        meta: a JSON-serialisable dict (step, history, config; a ``Key`` is allowed anywhere in it),
            nested at most :data:`MAX_META_DEPTH` deep.
    Raises:
        ValueError: a leaf that cannot be stored without pickle or has a structured dtype, two
            leaves with the same path, a leaf path that cannot be a zip member name, or a ``meta``
            that is not JSON-serialisable, too deep or too large, has two keys of one dict that
            JSON writes alike (``1`` and ``"1"``) or uses the reserved key ``"__fnnet_key__"``.
            Nothing is written then.
        OSError: the file cannot be written (its ``filename`` is ``path``); the old file, if any,
            is kept. A directory as ``path`` raises ``IsADirectoryError`` before anything is
            written.

    >>> import tempfile, pathlib, numpy as np
    >>> from fnnet.checkpoint import load, save
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ck.npz"
    >>> save(path, {"w": np.arange(3.0)}, meta={"step": 7})
    >>> load(path, {"w": np.zeros(3)})
    ({'w': array([0., 1., 2.])}, {'step': 7})
    """
    where = "checkpoint.save"
    p = Path(path)
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise ValueError(f"{where}: meta must be a dict, got {type(meta).__name__}")
    leaves, _ = tree_flatten(tree)
    paths = tree_paths(tree)
    arrays = [_as_array(where, pth, leaf) for pth, leaf in zip(paths, leaves)]
    keys = _entry_keys(where, paths)
    meta = dict(meta)
    if _too_deep(meta, MAX_META_DEPTH):
        raise ValueError(f"{where}: {p}: meta nests more than {MAX_META_DEPTH} levels deep (or contains itself)")
    problem = _meta_key_problem(meta)
    if problem is not None:
        raise ValueError(f"{where}: {p}: meta cannot be stored: {problem}")
    meta, meta_arrays = _split_meta(meta, set(keys))
    numbers = sum(a.size for _, a in meta_arrays)
    if numbers > _MAX_META_NUMBERS:
        raise ValueError(
            f"{where}: {p}: meta holds {numbers} floats in long lists, more than a checkpoint may hold ({_MAX_META_NUMBERS})"
        )
    manifest = {
        "format": FORMAT,
        "format_version": 2 if meta_arrays else 1,
        "fnnet_version": _fnnet_version(),
        "leaves": [
            {"path": pth, "key": k, "shape": list(a.shape), "dtype": a.dtype.str, "kind": _kind(leaf)}
            for pth, k, a, leaf in zip(paths, keys, arrays, leaves)
        ],
        "meta": meta,
    }
    try:
        # compact, and without indent json uses its C encoder (a long history in meta is mostly floats)
        text = json.dumps(manifest, default=_encode, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {p}: meta is not JSON-serialisable: {e}") from None
    if len(text) > MAX_MANIFEST_BYTES or _json_cost(text) > _MAX_JSON_COST:
        raise ValueError(
            f"{where}: {p}: the manifest (meta and {len(arrays)} leaf records) is {len(text)} bytes of JSON, "
            f"more than a checkpoint may hold ({MAX_MANIFEST_BYTES} bytes, or fewer for many small values)"
        )
    manifest_bytes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)  # json.dumps escapes non-ASCII

    def write(f: BinaryIO) -> None:
        # The np.savez layout, written entry by entry: np.savez(f, **entries) would clash with
        # its own parameter names for leaves at paths such as "file" or "allow_pickle".
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for k, a in [*zip(keys, arrays), *meta_arrays]:
                _write_npy(zf, k, a)
            _write_npy(zf, _MANIFEST_KEY, manifest_bytes)

    if p.is_dir():  # refused before the whole archive is written into a temporary file
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    atomic_write(p, write)


# --------------------------------------------------------------------------------------------
# Load: the archive
# --------------------------------------------------------------------------------------------


class _Leaf(NamedTuple):
    """One validated leaf record of a manifest."""

    path: str
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def member(self) -> str:
        return self.key + ".npy"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def where(self) -> str:
        return f"leaf {self.path or '<root>'!r}"


class _Archive(NamedTuple):
    """An open checkpoint: its path, size, zip and members by name."""

    path: Path
    size: int
    zf: zipfile.ZipFile
    members: dict[str, zipfile.ZipInfo]

    def fail(self, where: str, reason: str) -> FormatError:
        return FormatError(self.path, where, reason)


def _zip_entry_count(f: IO[bytes], size: int) -> int | None:
    """The member count of the zip directory that ``zipfile`` will read, or None if it has none.

    Found the way ``zipfile`` finds it: the end record at the very end, else the last one in the
    final 64 KiB, and the zip64 end record just before its locator if there is one.
    """
    tail_len = min(size, 22 + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = len(tail) - 22
    if not (at >= 0 and tail[at : at + 4] == b"PK\x05\x06" and tail[-2:] == b"\x00\x00"):
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return None
    count = int.from_bytes(tail[at + 10 : at + 12], "little")
    locator = size - tail_len + at - 20
    if locator - 56 >= 0:
        f.seek(locator - 56)
        rec = f.read(76)
        if rec[56:60] == b"PK\x06\x07" and rec[:4] == b"PK\x06\x06":
            count = int.from_bytes(rec[32:40], "little")
    return count


@contextlib.contextmanager
def _open(p: Path) -> Iterator[_Archive]:
    """Open checkpoint ``p`` and read its zip directory, refusing one too large for the file."""
    with open_regular(p) as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(6) == b"\x93NUMPY":
            raise FormatError(p, "", "a single .npy array, not an .npz checkpoint")
        count = _zip_entry_count(f, size)
        if count is not None and count * _MIN_MEMBER_BYTES > size:
            raise FormatError(p, "zip directory", f"lists {count} members, more than a file of {size} bytes can hold")
        try:
            zf = zipfile.ZipFile(f)
        except _READ_ERRORS as e:
            raise FormatError(p, "", f"not a readable .npz archive (truncated or corrupt?): {_one_line(e)}") from None
        with zf:
            members: dict[str, zipfile.ZipInfo] = {}
            for info in zf.infolist():
                if info.filename in members:
                    raise FormatError(p, f"zip member {_short(info.filename)!r}", "appears twice in the zip directory")
                members[info.filename] = info
            yield _Archive(p, size, zf, members)


class _Bounded:
    """A reader of at most ``left`` bytes of ``raw``, in reads of at most ``_CHUNK`` bytes.

    Small reads keep zipfile's decompression output small whatever the caller asks for.
    """

    def __init__(self, raw: IO[bytes], left: int):
        self.raw = raw
        self.left = left
        self.pos = 0

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = self.left
        n = min(n, self.left, _CHUNK)
        if n <= 0:
            return b""
        data = self.raw.read(n)
        self.left -= len(data)
        self.pos += len(data)
        return data


_HeaderCheck = Callable[[tuple[int, ...], bool, "np.dtype[Any]"], tuple[tuple[int, ...], "np.dtype[Any]"]]


def _read_npy(ar: _Archive, info: zipfile.ZipInfo, where: str, max_data: int, check: _HeaderCheck) -> tuple[Array, bool]:
    """The data bytes of ``.npy`` member ``info`` as a flat uint8 array, and its fortran_order.

    The member's flags, method and sizes are checked first, then its header is read (at most
    ``_NPY_PREFIX_MAX`` bytes) and passed to ``check``, which raises ``FormatError`` or returns
    the trusted shape and dtype; only then is the data read, exactly as many bytes as they need.
    """
    where = f"{where} (zip member {_short(info.filename)!r} at byte {info.header_offset})"
    if info.flag_bits & 0x41:
        raise ar.fail(where, "is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ar.fail(where, f"uses compression method {info.compress_type}; .npz members are stored or deflated")
    if info.header_offset + 30 + info.compress_size > ar.size:
        raise ar.fail(where, f"extends past the end of the {ar.size}-byte file (truncated?)")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ar.fail(where, f"is stored with {info.compress_size} bytes but claims {info.file_size}")
    if info.file_size > max_data + _NPY_PREFIX_MAX:
        raise ar.fail(where, f"holds {info.file_size} bytes, more than its expected {max_data} bytes of data and a header")
    try:
        with ar.zf.open(info) as raw:
            r = _Bounded(raw, _NPY_PREFIX_MAX)
            version = np.lib.format.read_magic(r)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(r, max_header_size=_MAX_NPY_HEADER)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(r, max_header_size=_MAX_NPY_HEADER)
            else:
                raise ar.fail(where, f".npy format version {version} is not supported")
            shape, dtype = check(*header)
            nbytes = math.prod(shape) * dtype.itemsize
            if info.file_size != r.pos + nbytes:
                raise ar.fail(
                    where,
                    f"holds {info.file_size - r.pos} bytes of data after its header, "
                    f"{_describe(shape, dtype)} needs {nbytes}",
                )
            r.left = nbytes + 1
            buf = np.empty(nbytes, np.uint8)
            view = buf.data
            pos = 0
            while pos < nbytes:
                chunk = r.read(nbytes - pos)
                if not chunk:
                    raise ar.fail(where, f"data ends after {pos} of {nbytes} bytes (truncated?)")
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
            if r.read(1):  # cannot happen after the size check; reaching the end checks the CRC
                raise ar.fail(where, "has data after its array")
    except FormatError:
        raise
    except _READ_ERRORS as e:
        raise ar.fail(where, f"cannot be read (corrupt or truncated file): {_one_line(e)}") from None
    return buf, bool(header[1])


# --------------------------------------------------------------------------------------------
# Load: the manifest
# --------------------------------------------------------------------------------------------


def _parse_manifest(ar: _Archive) -> dict[str, Any]:
    """Read, bound, parse and type-check the manifest of ``ar``."""
    info = ar.members.get(_MANIFEST_KEY + ".npy")
    if info is None:
        raise ar.fail("", f"no {_MANIFEST_KEY!r} entry: not an fnnet checkpoint")

    def check(shape: tuple[int, ...], fortran: bool, dtype: np.dtype[Any]) -> tuple[tuple[int, ...], np.dtype[Any]]:
        if dtype != np.uint8 or len(shape) != 1 or not 0 <= shape[0] <= MAX_MANIFEST_BYTES:
            raise ar.fail(
                "manifest",
                f"the {_MANIFEST_KEY!r} entry holds {dtype} {shape}, expected uint8 text of at most "
                f"{MAX_MANIFEST_BYTES} bytes",
            )
        return (int(shape[0]),), np.dtype(np.uint8)

    raw, _ = _read_npy(ar, info, "manifest", MAX_MANIFEST_BYTES, check)
    try:
        text = str(raw.data, "utf-8")
    except UnicodeDecodeError as e:
        raise ar.fail(f"manifest, byte {e.start}", "not UTF-8 text") from None
    del raw
    cost = _json_cost(text)
    if cost > _MAX_JSON_COST:
        raise ar.fail("manifest", f"parsing it would take about {cost >> 20} MiB (at most {_MAX_JSON_COST >> 20} allowed)")
    try:
        m = json.loads(text, object_pairs_hook=_decode_pairs, parse_float=_finite_float, parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise ar.fail(f"manifest, character {e.pos}", f"not valid JSON: {e.msg}") from None
    except RecursionError:
        raise ar.fail("manifest", f"nests more than {_MAX_JSON_DEPTH} levels deep") from None
    except ValueError as e:
        raise ar.fail("manifest", str(e)) from None
    if _too_deep(m, _MAX_JSON_DEPTH):
        raise ar.fail("manifest", f"nests more than {_MAX_JSON_DEPTH} levels deep")
    if not isinstance(m, dict):
        raise ar.fail("manifest", f"is a JSON {type(m).__name__}, not an object")
    if m.get("format") != FORMAT:
        raise ar.fail("manifest: format", f"is {_shown(m.get('format'))}, not {FORMAT!r}: not an fnnet checkpoint")
    version = m.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise ar.fail("manifest: format_version", f"{_shown(version)} is not supported (this fnnet reads 1..{FORMAT_VERSION})")
    if not isinstance(m.get("fnnet_version", ""), str):
        raise ar.fail("manifest: fnnet_version", f"is {_shown(m['fnnet_version'])}, not a string")
    if not isinstance(m.get("meta"), dict):
        raise ar.fail("manifest: meta", f"is {_shown(m.get('meta'))}, not an object")
    if not isinstance(m.get("leaves"), list):
        raise ar.fail("manifest: leaves", f"is {_shown(m.get('leaves'))}, not a list")
    return m


def _leaf_record(ar: _Archive, i: int, e: Any) -> _Leaf:
    """Leaf record ``i`` of the manifest, type-checked."""
    where = f"manifest: leaves[{i}]"
    if not isinstance(e, dict):
        raise ar.fail(where, f"is {_shown(e)}, not an object")
    for field, t in (("path", str), ("key", str), ("shape", list), ("dtype", str)):
        if not isinstance(e.get(field), t):
            raise ar.fail(f"{where}.{field}", f"is {_shown(e.get(field))}, not a {t.__name__}")
    if not isinstance(e.get("kind", ""), str):
        raise ar.fail(f"{where}.kind", f"is {_shown(e['kind'])}, not a str")
    path, key = e["path"], e["key"]
    if key != (path or _ROOT_KEY):
        raise ar.fail(f"{where}.key", f"{_short(key)!r} does not match its path {_short(path)!r}")
    where = f"{where} (leaf {_short(path) or '<root>'!r})"
    shape = e["shape"]
    if len(shape) > _MAX_NDIM or not all(type(s) is int and 0 <= s <= _MAX_DIM for s in shape):
        raise ar.fail(f"{where}.shape", f"{_shown(shape)} is not a list of at most {_MAX_NDIM} sizes (ints >= 0)")
    dtype = e["dtype"]
    try:
        if not _DTYPE_STR.fullmatch(dtype):
            raise TypeError("not a simple dtype string")
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as err:
        raise ar.fail(f"{where}.dtype", f"{_short(dtype)!r} is not a dtype: {_one_line(err)}") from None
    if dt.hasobject:
        raise ar.fail(f"{where}.dtype", f"{dtype!r} holds Python objects, which need pickle")
    return _Leaf(path, key, tuple(shape), dt)


def _leaf_records(ar: _Archive, m: dict[str, Any], refs: list[_MetaRef]) -> list[_Leaf]:
    """The manifest's leaf records, checked against the archive's members and their sizes (the
    members of the meta arrays ``refs`` are listed too)."""
    leaves = [_leaf_record(ar, i, e) for i, e in enumerate(m["leaves"])]
    meta_members = {r.member for r in refs}
    by_member: dict[str, _Leaf] = {}
    for leaf in leaves:
        if leaf.member in by_member or leaf.key == _MANIFEST_KEY:
            raise ar.fail(f"manifest: {leaf.where}", "listed twice")
        if leaf.member in meta_members:
            raise ar.fail(f"manifest: {leaf.where}", f"its zip member {_short(leaf.member)!r} is also a meta array's")
        by_member[leaf.member] = leaf
    for name in ar.members:
        if name not in by_member and name not in meta_members and name != _MANIFEST_KEY + ".npy":
            raise ar.fail(f"zip member {_short(name)!r}", "is not listed in the manifest (not part of a checkpoint)")
    for leaf in leaves:
        info = ar.members.get(leaf.member)
        if info is None:
            raise ar.fail(leaf.where, f"its zip member {_short(leaf.member)!r} is missing")
        extra = info.file_size - leaf.nbytes
        if not _NPY_PREFIX_MIN <= extra <= _NPY_PREFIX_MAX:
            raise ar.fail(
                f"{leaf.where} (zip member {_short(leaf.member)!r})",
                f"holds {info.file_size} bytes, but the manifest's {_describe(leaf.shape, leaf.dtype)} "
                f"needs {leaf.nbytes} bytes of data and a header of at most {_NPY_PREFIX_MAX}",
            )
    return leaves


class _MetaRef(NamedTuple):
    """A meta array record of a version 2 manifest: the dict or list holding it, its key or index
    there, the member key it names and its place (``meta.history.step_loss``)."""

    parent: Any
    at: Any
    key: str
    where: str

    @property
    def member(self) -> str:
        return self.key + ".npy"


def _place_text(place: Any) -> str:
    """``meta.a[2].b`` of a place ``(parent place, key or index)`` (None: meta itself)."""
    steps = []
    while place is not None:
        place, k = place
        steps.append(f"[{k}]" if isinstance(k, int) else f".{_shown(k)}")
    return "meta" + "".join(reversed(steps))


def _meta_refs(ar: _Archive, m: dict[str, Any]) -> list[_MetaRef]:
    """The meta array records of the parsed manifest ``m`` (none before version 2), each a dict
    ``{"__fnnet_array__": "__meta_<n>__"}`` naming a member of the archive not named before."""
    if m["format_version"] < 2:
        return []
    meta = m["meta"]
    if _ARRAY_TAG in meta:
        raise ar.fail("manifest: meta", f"is a {_ARRAY_TAG!r} record, not an object of its own")
    refs: list[_MetaRef] = []
    seen: set[str] = set()
    stack: list[tuple[Any, Any]] = [(meta, None)]  # (a dict or list, its place)
    while stack:
        o, place = stack.pop()
        for k, v in o.items() if isinstance(o, dict) else enumerate(o):
            if isinstance(v, dict) and _ARRAY_TAG in v:
                where = _place_text((place, k))
                name = v[_ARRAY_TAG]
                if len(v) != 1 or not isinstance(name, str) or not _ARRAY_NAME.fullmatch(name):
                    raise ar.fail(f"manifest: {where}", f"is {_shown(v)}, not a record {{{_ARRAY_TAG!r}: '__meta_<n>__'}}")
                if name in seen:
                    raise ar.fail(f"manifest: {where}", f"names the meta array {name!r} a second time")
                if name + ".npy" not in ar.members:
                    raise ar.fail(f"manifest: {where}", f"its zip member {name + '.npy'!r} is missing")
                seen.add(name)
                refs.append(_MetaRef(o, k, name, where))
            elif isinstance(v, (dict, list)):
                stack.append((v, (place, k)))
    return refs


def _read_meta_arrays(ar: _Archive, refs: list[_MetaRef]) -> None:
    """Put the lists the meta arrays ``refs`` hold in place of their records. Each member must be
    stored (so that it holds no more than the file's bytes) and its ``.npy`` header say float64 of
    1 or 2 non-empty dimensions, at most ``_MAX_META_NUMBERS`` floats in all, before it is read."""
    left = _MAX_META_NUMBERS
    for ref in refs:
        info = ar.members[ref.member]
        where = f"{ref.where} (zip member {ref.member!r} at byte {info.header_offset})"
        if info.compress_type != zipfile.ZIP_STORED:
            raise ar.fail(where, "is compressed; a meta array is stored as it is")
        if info.file_size > 8 * left + _NPY_PREFIX_MAX:
            raise ar.fail(
                where, f"holds {info.file_size} bytes, more than the {left} floats left of the {_MAX_META_NUMBERS} the meta arrays may hold"
            )
        shapes: list[tuple[int, ...]] = []

        def check(shape: tuple[int, ...], fortran: bool, dtype: np.dtype[Any]) -> tuple[tuple[int, ...], np.dtype[Any]]:
            n = math.prod(shape)
            if dtype != np.dtype("<f8") or not 1 <= len(shape) <= 2 or min(shape) < 1:
                raise ar.fail(
                    ref.where,
                    f"its .npy header says {_short(_describe(shape, dtype), 120)}; a meta array holds float64 "
                    "of 1 or 2 dimensions, none empty",
                )
            if n > left:
                raise ar.fail(
                    ref.where,
                    f"holds {n} floats, more than the {left} left of the {_MAX_META_NUMBERS} the meta arrays may hold",
                )
            shapes.append(tuple(shape))
            return shapes[0], dtype

        buf, fortran = _read_npy(ar, info, ref.where, 8 * left, check)
        left -= buf.size // 8
        ref.parent[ref.at] = buf.view("<f8").reshape(shapes[0], order="F" if fortran else "C").tolist()


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of checkpoint ``path``: format, versions, leaves (path, shape, dtype) and meta.

    The archive's members are checked against the manifest (names and sizes), but no leaf data
    is read (the meta arrays are, to give ``meta`` its lists).

    Args:
        path: the ``.npz`` file.
    Returns:
        The manifest as a dict (``Key`` records in ``meta`` restored).
    Raises:
        OSError: the file cannot be opened (``FileNotFoundError``...).
        FormatError: naming the file and the place, if it is not a readable fnnet checkpoint.

    >>> import tempfile, pathlib, numpy as np
    >>> from fnnet.checkpoint import read_manifest, save
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ck.npz"
    >>> save(path, {"w": np.zeros((2, 3), np.float32)})
    >>> [(e["path"], e["shape"], e["dtype"]) for e in read_manifest(path)["leaves"]]
    [('w', [2, 3], '<f4')]
    """
    with _open(Path(path)) as ar:
        m = _parse_manifest(ar)
        refs = _meta_refs(ar, m)
        _leaf_records(ar, m, refs)
        _read_meta_arrays(ar, refs)
    return m


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``meta`` dict saved in checkpoint ``path`` (Keys restored), without needing a skeleton.

    Args:
        path: the ``.npz`` file.
    Returns:
        The ``meta`` given to :func:`save`.
    Raises:
        OSError, FormatError: as :func:`read_manifest`.

    >>> import tempfile, pathlib
    >>> from fnnet.checkpoint import read_meta, save
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ck.npz"
    >>> save(path, (), meta={"epoch": 3})
    >>> read_meta(path)
    {'epoch': 3}
    """
    meta: dict[str, Any] = read_manifest(path)["meta"]
    return meta


# --------------------------------------------------------------------------------------------
# Load: the tree
# --------------------------------------------------------------------------------------------


def _restore(stored: Array, like_leaf: Any) -> Any:
    """Give ``stored`` the leaf type of ``like_leaf``."""
    if isinstance(like_leaf, np.ndarray):
        return stored
    if isinstance(like_leaf, np.generic):
        return stored[()]
    for t in _PY_SCALARS:
        if isinstance(like_leaf, t):
            return t(stored[()])
    raise AssertionError(type(like_leaf))  # pragma: no cover (rejected by _as_array)


def _read_leaf(ar: _Archive, leaf: _Leaf) -> Array:
    """The array of ``leaf``, its ``.npy`` header checked against the manifest before reading."""

    def check(shape: tuple[int, ...], fortran: bool, dtype: np.dtype[Any]) -> tuple[tuple[int, ...], np.dtype[Any]]:
        if tuple(shape) != leaf.shape or dtype != leaf.dtype:
            raise ar.fail(
                leaf.where,
                f"its .npy header says {_short(_describe(shape, dtype), 120)}, "
                f"the manifest {_describe(leaf.shape, leaf.dtype)}",
            )
        return leaf.shape, leaf.dtype

    buf, fortran = _read_npy(ar, ar.members[leaf.member], leaf.where, leaf.nbytes, check)
    order: Literal["C", "F"] = "F" if fortran else "C"
    if leaf.dtype.itemsize == 0 or buf.size == 0:
        return np.empty(leaf.shape, leaf.dtype, order=order)
    return buf.view(leaf.dtype).reshape(leaf.shape, order=order)


def load(path: str | os.PathLike[str], like: Tree) -> tuple[Tree, dict[str, Any]]:
    """Load a checkpoint written by :func:`save`, validated against the skeleton ``like``.

    Everything is checked before leaf data is read: the zip directory, the manifest (size,
    nesting, types of every field), the members against the manifest, the manifest against
    ``like``, and each member's ``.npy`` header against both; a leaf's data is then read in
    bounded chunks and its CRC checked. Reading a damaged or hostile file therefore allocates
    little beyond the arrays ``like`` describes.

    Args:
        path: the ``.npz`` file.
        like: a tree of the expected structure, shapes and dtypes (its values are not used).
    Returns:
        ``(tree, meta)``: a new tree with ``like``'s structure and leaf types holding the saved
        values, and the saved ``meta`` dict.
    Raises:
        OSError: the file cannot be opened (``FileNotFoundError``, ``PermissionError``...).
        FormatError: a ``ValueError`` naming the file and the place (zip member and byte offset,
            manifest field, leaf path), if the file is truncated, corrupt, not a checkpoint, or
            its tree differs from ``like`` (then with both shapes and dtypes).
        ValueError: ``like`` itself has a leaf that a checkpoint cannot hold.

    >>> import tempfile, pathlib, numpy as np
    >>> from fnnet.checkpoint import load, save
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ck.npz"
    >>> save(path, (np.ones(2, np.float32), 5), meta={"note": "hi"})
    >>> load(path, (np.zeros(2, np.float32), 0))
    ((array([1., 1.], dtype=float32), 5), {'note': 'hi'})
    """
    where = "checkpoint.load"
    p = Path(path)
    like_leaves, treedef = tree_flatten(like)
    like_paths = tree_paths(like)
    like_arrays = [_as_array(where + " (skeleton)", pth, leaf) for pth, leaf in zip(like_paths, like_leaves)]
    like_keys = _entry_keys(where + " (skeleton)", like_paths)
    with _open(p) as ar:
        m = _parse_manifest(ar)
        refs = _meta_refs(ar, m)
        records = {leaf.key: leaf for leaf in _leaf_records(ar, m, refs)}
        only_file = sorted(set(records) - set(like_keys))
        only_like = sorted(set(like_keys) - set(records))
        if only_file or only_like:
            raise ar.fail(
                "",
                f"the saved tree differs from the skeleton: paths only in the file {_short(only_file, 400)}, "
                f"only in the skeleton {_short(only_like, 400)}",
            )
        for key, want in zip(like_keys, like_arrays):
            leaf = records[key]
            if leaf.shape != want.shape or leaf.dtype != want.dtype:
                raise ar.fail(
                    leaf.where,
                    f"file has {_describe(leaf.shape, leaf.dtype)}, skeleton has {_describe(want.shape, want.dtype)}",
                )
        out = [_restore(_read_leaf(ar, records[key]), like_leaf) for key, like_leaf in zip(like_keys, like_leaves)]
        _read_meta_arrays(ar, refs)
    return tree_unflatten(treedef, out), m["meta"]
