"""Checkpoints: a tree of arrays and a metadata dict in one ``.npz`` file, never pickle.

:func:`save` writes one standard ``.npz`` archive (the format of ``np.savez``: a zip of ``.npy``
files, readable with ``np.load(path, allow_pickle=False)``) holding

- every leaf of the tree under its tree path (``"params/0/w"``, ``"opt_state/1/mu/0/w"``, ...; a
  tree that is a single leaf uses ``"__root__"``), and
- ``"__manifest__"``: a uint8 array of UTF-8 JSON with the format name and version, the fnnet
  version, each leaf's path, shape, dtype and kind, and the user's ``meta`` dict.

``meta`` is for what is not an array: the step, the run's key, the training history, the
configuration. It must be JSON-serialisable, with two additions: a :class:`fnnet.random.Key` is
stored as ``{"__fnnet_key__": {"seed": s, "path": [...]}}`` and comes back as a ``Key`` (so that
object key is reserved), and NumPy scalars are stored as plain numbers (they come back as Python
``int`` / ``float`` / ``bool``). JSON turns tuples into lists and dict keys into strings; ``NaN``
and infinities are kept (Python's ``json`` reads them back).

The file is written atomically (a temporary file in the same directory, flushed and fsynced, then
``os.replace``), so a crash or an error leaves either the old file or the new one, never a partial
one. There is deliberately no ``<path>.json`` sidecar: two files cannot be replaced together
atomically and could disagree after a crash. Read the manifest without a skeleton with
:func:`read_manifest` (or :func:`read_meta` for just ``meta``).

:func:`load` restores the tree against a skeleton ``like`` (e.g. freshly initialised params or a
``TrainState``): the paths, shapes and dtypes must match exactly, the result has ``like``'s
structure (NamedTuples, tuples, lists, dicts, ``None``, attrs records), and each leaf gets
``like``'s leaf type (ndarray, NumPy scalar, or Python ``int`` / ``float`` / ``bool`` /
``complex``). Values round-trip bit-exactly.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fnnet._io import atomic_write
from fnnet.typing import Array, Tree
from fnnet.random import Key
from fnnet.tree import tree_flatten, tree_paths, tree_unflatten

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load", "read_manifest", "read_meta"]

#: The ``"format"`` field of every manifest.
FORMAT = "fnnet-checkpoint"
#: The manifest layout version this module writes (and the newest it reads).
FORMAT_VERSION = 1

_MANIFEST_KEY = "__manifest__"
_ROOT_KEY = "__root__"  # the entry name of a tree that is a single leaf (its path is "")
_KEY_TAG = "__fnnet_key__"

# Python scalar leaf types restored from 0-d arrays; bool before int since bool is an int.
_PY_SCALARS: tuple[type, ...] = (bool, int, float, complex)

# What reading a damaged archive can raise, besides our own checks.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, UnicodeDecodeError)


# --------------------------------------------------------------------------------------------
# Meta <-> JSON
# --------------------------------------------------------------------------------------------


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


def _decode(d: dict[str, Any]) -> Any:
    if set(d) == {_KEY_TAG}:
        k = d[_KEY_TAG]
        return Key(int(k["seed"]), tuple(int(i) for i in k["path"]))
    return d


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
    return a


def _entry_keys(where: str, paths: list[str]) -> list[str]:
    keys = [p if p else _ROOT_KEY for p in paths]
    seen: set[str] = set()
    for k in keys:
        if k in seen or k == _MANIFEST_KEY:
            raise ValueError(f"{where}: two leaves (or a leaf and the manifest) share the path {k!r}")
        seen.add(k)
    return keys


def _what(x: Any) -> str:
    return f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else f"a {type(x).__name__}"


def _describe(shape: tuple[int, ...], dtype: np.dtype[Any]) -> str:
    return f"shape {shape} dtype {dtype}"


# --------------------------------------------------------------------------------------------
# Save
# --------------------------------------------------------------------------------------------


def _fnnet_version() -> str:
    import fnnet  # at call time: fnnet imports this module

    return str(getattr(fnnet, "__version__", "unknown"))


def _write_npy(zf: zipfile.ZipFile, name: str, a: Array) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, a, allow_pickle=False)


def save(path: str | os.PathLike[str], tree: Tree, meta: Mapping[str, Any] | None = None) -> None:
    """Save ``tree`` and ``meta`` to the ``.npz`` file ``path``, atomically.

    Args:
        path: the file to write (replaced if it exists; written as given, no suffix added).
        tree: parameters, an optimizer state, a ``TrainState``...: a tree whose leaves are arrays,
            NumPy scalars or Python numbers.
        meta: a JSON-serialisable dict (step, history, config; a ``Key`` is allowed anywhere in it).
    Raises:
        ValueError: a leaf that cannot be stored without pickle, two leaves with the same path, or a
            ``meta`` that is not JSON-serialisable. Nothing is written then.
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
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fnnet_version": _fnnet_version(),
        "leaves": [
            {"path": pth, "key": k, "shape": list(a.shape), "dtype": a.dtype.str, "kind": _kind(leaf)}
            for pth, k, a, leaf in zip(paths, keys, arrays, leaves)
        ],
        "meta": dict(meta),
    }
    try:
        text = json.dumps(manifest, default=_encode, indent=1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {p}: meta is not JSON-serialisable: {e}") from None
    manifest_bytes = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def write(f: BinaryIO) -> None:
        # The np.savez layout, written entry by entry: np.savez(f, **entries) would clash with
        # its own parameter names for leaves at paths such as "file" or "allow_pickle".
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for k, a in zip(keys, arrays):
                _write_npy(zf, k, a)
            _write_npy(zf, _MANIFEST_KEY, manifest_bytes)

    atomic_write(p, write)


# --------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------


def _open(where: str, p: Path) -> Any:
    try:
        npz = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise
    except _READ_ERRORS as e:
        raise ValueError(f"{where}: {p}: not a readable .npz checkpoint (truncated or corrupt?): {e}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{where}: {p}: is a single .npy array, not an .npz checkpoint")
    return npz


def _manifest(where: str, p: Path, npz: Any) -> dict[str, Any]:
    if _MANIFEST_KEY not in npz.files:
        raise ValueError(f"{where}: {p}: no {_MANIFEST_KEY!r} entry: not an fnnet checkpoint")
    try:
        raw = npz[_MANIFEST_KEY]
        if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"the manifest entry is {_what(raw)}, expected a 1-d uint8 array")
        m = json.loads(raw.tobytes().decode("utf-8"), object_hook=_decode)
    except _READ_ERRORS as e:
        raise ValueError(f"{where}: {p}: corrupt manifest: {e}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ValueError(f"{where}: {p}: manifest format is not {FORMAT!r}")
    version = m.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(
            f"{where}: {p}: manifest format_version {version!r} is not supported (this fnnet reads 1..{FORMAT_VERSION})"
        )
    leaves = m.get("leaves")
    ok = isinstance(leaves, list) and all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("key"), str)
        and isinstance(e.get("shape"), list) and isinstance(e.get("dtype"), str)
        for e in leaves
    )
    if not ok or not isinstance(leaves, list) or not isinstance(m.get("meta"), dict):
        raise ValueError(f"{where}: {p}: corrupt manifest: bad 'leaves' or 'meta' entries")
    stored = sorted(e["key"] for e in leaves)
    in_zip = sorted(f for f in npz.files if f != _MANIFEST_KEY)
    if stored != in_zip:
        raise ValueError(f"{where}: {p}: corrupt file: the manifest lists {stored}, the archive holds {in_zip}")
    return m


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of checkpoint ``path``: format, versions, leaves (path, shape, dtype) and meta.

    Raises:
        ValueError: naming the file, if it is not a readable fnnet checkpoint.
    """
    p = Path(path)
    with _open("checkpoint.read_manifest", p) as npz:
        return _manifest("checkpoint.read_manifest", p, npz)


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``meta`` dict saved in checkpoint ``path`` (Keys restored), without needing a skeleton."""
    meta: dict[str, Any] = read_manifest(path)["meta"]
    return meta


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


def load(path: str | os.PathLike[str], like: Tree) -> tuple[Tree, dict[str, Any]]:
    """Load a checkpoint written by :func:`save`, validated against the skeleton ``like``.

    Args:
        path: the ``.npz`` file.
        like: a tree of the expected structure, shapes and dtypes (its values are not used).
    Returns:
        ``(tree, meta)``: a new tree with ``like``'s structure and leaf types holding the saved
        values, and the saved ``meta`` dict.
    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file, if it is truncated or corrupt, or its tree differs from
            ``like`` (the message names the leaf path and both shapes and dtypes).
    """
    where = "checkpoint.load"
    p = Path(path)
    like_leaves, treedef = tree_flatten(like)
    like_paths = tree_paths(like)
    like_arrays = [_as_array(where + " (skeleton)", pth, leaf) for pth, leaf in zip(like_paths, like_leaves)]
    like_keys = _entry_keys(where + " (skeleton)", like_paths)
    with _open(where, p) as npz:
        m = _manifest(where, p, npz)
        entries = {e["key"]: e for e in m["leaves"]}
        only_file = sorted(set(entries) - set(like_keys))
        only_like = sorted(set(like_keys) - set(entries))
        if only_file or only_like:
            raise ValueError(
                f"{where}: {p}: the saved tree differs from the skeleton: paths only in the file "
                f"{only_file}, only in the skeleton {only_like}"
            )
        out = []
        for key, pth, want, like_leaf in zip(like_keys, like_paths, like_arrays, like_leaves):
            e = entries[key]
            try:
                saved_shape, saved_dtype = tuple(int(s) for s in e["shape"]), np.dtype(e["dtype"])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: {p}: corrupt manifest entry for {pth!r}: {err}") from None
            if saved_shape != want.shape or saved_dtype != want.dtype:
                raise ValueError(
                    f"{where}: {p}: leaf {pth or '<root>'!r}: file has {_describe(saved_shape, saved_dtype)}, "
                    f"skeleton has {_describe(want.shape, want.dtype)}"
                )
            try:
                a = npz[key]
            except _READ_ERRORS as err:
                raise ValueError(f"{where}: {p}: cannot read leaf {pth or '<root>'!r} (corrupt file?): {err}") from None
            if not isinstance(a, np.ndarray):
                raise ValueError(f"{where}: {p}: corrupt file: leaf {pth or '<root>'!r} is {_what(a)}, not an .npy array")
            if a.shape != saved_shape or a.dtype != saved_dtype:
                raise ValueError(
                    f"{where}: {p}: corrupt file: leaf {pth or '<root>'!r} holds {_describe(a.shape, a.dtype)}, "
                    f"the manifest says {_describe(saved_shape, saved_dtype)}"
                )
            out.append(_restore(a, like_leaf))
    return tree_unflatten(treedef, out), m["meta"]
