"""Hostile checkpoints: only FormatError comes out, memory stays bounded, writes leave no litter."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fnnet
from fnnet import _io
from fnnet.checkpoint import MAX_MANIFEST_BYTES, MAX_META_DEPTH, load, read_manifest, read_meta, save
from fnnet.errors import FormatError
from fnnet.random import key

REPO = Path(fnnet.__file__).resolve().parent.parent
MiB = 1 << 20

TREE: dict[str, Any] = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2), "n": 3}
META: dict[str, Any] = {"k": key(3), "h": [1.5, float("nan")], "s": "x"}


def skel() -> dict[str, Any]:
    return {"w": np.zeros((2, 3), np.float32), "b": np.zeros(2), "n": 0}


def assert_equal_to_saved(got: Any, meta: dict[str, Any]) -> None:
    assert np.array_equal(got["w"], TREE["w"]) and got["w"].dtype == np.float32
    assert np.array_equal(got["b"], TREE["b"]) and got["n"] == 3 and type(got["n"]) is int
    assert meta["k"] == META["k"] and meta["h"][0] == 1.5 and np.isnan(meta["h"][1]) and meta["s"] == "x"


def only_format_error(path: Path, same_meta: bool = True) -> FormatError | None:
    """Load ``path``: a one-line FormatError naming it (returned), or, if it loads, the saved data."""
    for read in (lambda: read_manifest(path), lambda: load(path, skel())):
        try:
            result = read()
        except FormatError as e:
            assert e.path == str(path) and str(e).startswith(f"{path}: ") and "\n" not in str(e)
            return e
        if isinstance(result, tuple):
            got, meta = result
            assert_equal_to_saved(got, meta if same_meta else META)
    return None


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("good") / "ck.npz"
    save(path, TREE, meta=META)
    return path.read_bytes()


# --------------------------------------------------------------------------------------------
# Crafting files
# --------------------------------------------------------------------------------------------


def npy(shape: Any, descr: Any = "<f8", data: bytes | None = None, fortran: Any = False) -> bytes:
    """An .npy member whose header declares ``shape`` and ``descr``, followed by ``data``."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"shape": shape, "fortran_order": fortran, "descr": descr})
    if data is None:
        data = np.zeros(shape, np.dtype(descr)).tobytes()
    return f.getvalue() + data


def npy_raw_header(header: bytes, data: bytes = b"") -> bytes:
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def manifest(leaves: list[tuple[str, tuple[int, ...], str]], meta: Any = None) -> dict[str, Any]:
    return {
        "format": "fnnet-checkpoint",
        "format_version": 1,
        "fnnet_version": "0",
        "leaves": [
            {"path": p, "key": p or "__root__", "shape": list(s), "dtype": d, "kind": "ndarray"} for p, s, d in leaves
        ],
        "meta": {} if meta is None else meta,
    }


def manifest_member(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return npy((len(raw),), "|u1", raw)


def write_zip(path: Path, members: list[tuple[str, bytes]], deflated: set[str] | None = None) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name in (deflated or set()) else zipfile.ZIP_STORED)


W16 = np.arange(16, dtype=np.float64)
SKEL16 = {"w": np.zeros(16)}


def one_leaf_file(path: Path, w_member: bytes, text: str | None = None, deflated: set[str] | None = None) -> None:
    text = json.dumps(manifest([("w", (16,), "<f8")])) if text is None else text
    write_zip(path, [("w.npy", w_member), ("__manifest__.npy", manifest_member(text))], deflated)


def central_entries(data: bytes) -> Iterator[int]:
    """Offsets of the central directory entries of zip ``data``."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        yield at
        at = data.find(b"PK\x01\x02", at + 4)


def local_headers(data: bytes) -> list[int]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [i.header_offset for i in zf.infolist()]


def patched(data: bytes, offsets: list[int], field: int, value: int, size: int) -> bytes:
    out = bytearray(data)
    for at in offsets:
        out[at + field : at + field + size] = value.to_bytes(size, "little")
    return bytes(out)


def zeros_deflated(zf: zipfile.ZipFile, name: str, nbytes: int, prefix: bytes = b"") -> None:
    """A deflated member of ``prefix`` and ``nbytes`` zeros, written without holding it in memory."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w") as f:
        f.write(prefix)
        block = bytes(MiB)
        for _ in range(nbytes // MiB):
            f.write(block)
        f.write(bytes(nbytes % MiB))


# --------------------------------------------------------------------------------------------
# The failures the issue lists, one by one
# --------------------------------------------------------------------------------------------


def _flip_method(d: bytes, v: int) -> bytes:
    return patched(patched(d, list(central_entries(d)), 10, v, 2), local_headers(d), 8, v, 2)


ZIP_DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "method-unknown": (lambda d: _flip_method(d, 99), "compression method 99"),
    "method-bzip2": (lambda d: _flip_method(d, zipfile.ZIP_BZIP2), "compression method 12"),
    "method-lzma": (lambda d: _flip_method(d, zipfile.ZIP_LZMA), "compression method 14"),
    "encrypted": (lambda d: patched(patched(d, list(central_entries(d)), 8, 1, 2), local_headers(d), 6, 1, 2), "encrypted"),
    "strong-encryption": (lambda d: patched(d, list(central_entries(d)), 8, 0x40, 2), "encrypted"),
    "patched-data": (lambda d: patched(d, list(central_entries(d)), 8, 0x20, 2), "flag bit 5"),
    "version-needed": (lambda d: patched(d, list(central_entries(d)), 6, 0xFF, 2), "version"),
    "crc": (lambda d: patched(d, list(central_entries(d))[:1], 16, 0x12345678, 4), "CRC"),
    "name-differs": (lambda d: d.replace(b"PK\x01\x02", b"PK\x01\x02", 1).replace(b"b.npy", b"c.npy", 1), "header"),
    "offset-past-end": (lambda d: patched(d, list(central_entries(d))[:1], 42, 0x7FFFFFF0, 4), "byte"),
}


@pytest.mark.parametrize("name", sorted(ZIP_DAMAGE))
def test_zip_header_damage_is_a_format_error(tmp_path: Path, good: bytes, name: str) -> None:
    damage, words = ZIP_DAMAGE[name]
    path = tmp_path / "ck.npz"
    path.write_bytes(damage(good))
    with pytest.raises(FormatError, match=words) as info:
        load(path, skel())
    assert str(path) in str(info.value) and "zip" in str(info.value)


def with_manifest(
    good: bytes, edit: Callable[[dict[str, Any]], Any] | None = None, text: str | bytes | None = None
) -> bytes:
    """``good`` with its manifest replaced by ``edit(manifest)`` or by ``text``."""
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    m = json.loads(dict(members)["__manifest__.npy"][128:].decode())
    if edit is not None:
        edit(m)
    if text is None:
        text = json.dumps(m)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in members:
            zf.writestr(n, manifest_member(text) if n == "__manifest__.npy" else b)
    return out.getvalue()


def set_field(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        node = m
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return edit


MANIFEST_DAMAGE: list[tuple[str, Callable[[dict[str, Any]], Any] | None, str | bytes | None, str]] = [
    ("shape-infinity", None, '{"format": "fnnet-checkpoint", "format_version": 1, "leaves": [{"path": "w", "key": "w", '
     '"shape": [Infinity], "dtype": "<f4"}], "meta": {}}', r"leaves\[0\] \(leaf 'w'\)\.shape"),
    ("shape-1e400", None, '{"format": "fnnet-checkpoint", "format_version": 1, "leaves": [{"path": "w", "key": "w", '
     '"shape": [1e400], "dtype": "<f4"}], "meta": {}}', "1e400 is out of the range of a float"),
    ("shape-nan", set_field(["leaves", 0, "shape"], [float("nan")]), None, r"\.shape"),
    ("shape-float", set_field(["leaves", 0, "shape"], [2.0]), None, r"\.shape"),
    ("shape-bool", set_field(["leaves", 0, "shape"], [True]), None, r"\.shape"),
    ("shape-negative", set_field(["leaves", 0, "shape"], [-1]), None, r"\.shape"),
    ("shape-string", set_field(["leaves", 0, "shape"], "2,3"), None, r"leaves\[0\]\.shape.*not a list"),
    ("shape-huge", set_field(["leaves", 1, "shape"], [2**40, 2**40]), None, r"holds \d+ bytes, but"),
    ("shape-too-many-dims", set_field(["leaves", 0, "shape"], [1] * 65), None, r"\.shape"),
    ("dtype-number", set_field(["leaves", 0, "dtype"], 3), None, r"\.dtype.*not a str"),
    ("dtype-object", set_field(["leaves", 0, "dtype"], "|O"), None, "need pickle"),
    ("dtype-garbage", set_field(["leaves", 0, "dtype"], "<f4'); import os"), None, "not a dtype"),
    ("dtype-unknown", set_field(["leaves", 0, "dtype"], "<q7"), None, "not a dtype"),
    ("path-number", set_field(["leaves", 0, "path"], 1), None, r"\.path.*not a str"),
    ("key-mismatch", set_field(["leaves", 0, "key"], "other"), None, r"\.key"),
    ("leaf-string", set_field(["leaves", 0], "w"), None, r"leaves\[0\].*not an object"),
    ("leaves-dict", set_field(["leaves"], {}), None, "manifest: leaves.*not a list"),
    ("leaves-duplicated", lambda m: m["leaves"].append(m["leaves"][0]), None, "listed twice"),
    ("leaf-missing", lambda m: m["leaves"].pop(0), None, "not listed in the manifest"),
    ("meta-list", set_field(["meta"], [1]), None, "manifest: meta.*not an object"),
    ("version-string", set_field(["format_version"], "1"), None, "format_version"),
    ("version-bool", set_field(["format_version"], True), None, "format_version"),
    ("version-3", set_field(["format_version"], 3), None, "format_version"),
    ("format", set_field(["format"], "other"), None, "not an fnnet checkpoint"),
    ("fnnet-version", set_field(["fnnet_version"], 1), None, "fnnet_version"),
    ("kind", set_field(["leaves", 0, "kind"], []), None, r"\.kind"),
    ("key-record", set_field(["meta", "k"], {"__fnnet_key__": {"seed": "3", "path": []}}), None, "__fnnet_key__"),
    ("key-record-inf", None, '{"meta": {"__fnnet_key__": {"seed": Infinity, "path": []}}}', "__fnnet_key__"),
    ("not-object", None, "[1, 2]", "is a JSON list"),
    ("not-json", None, '{"format": ', r"manifest, character \d+: not valid JSON"),
    ("not-utf8", None, b'{"a": "\xff"}', r"manifest, byte 7: not UTF-8"),
    ("deep-100000", None, "[" * 100_000 + "]" * 100_000, "levels deep"),
    ("deep-150", None, '{"meta": ' + "[" * 150 + "]" * 150 + "}", "levels deep"),
    ("long-int", None, '{"meta": ' + "9" * 5000 + "}", "5000 digits"),
    ("empty", None, "", "not valid JSON"),
]


@pytest.mark.parametrize("name, edit, text, words", MANIFEST_DAMAGE, ids=[c[0] for c in MANIFEST_DAMAGE])
def test_hostile_manifest_is_a_format_error(
    tmp_path: Path, good: bytes, name: str, edit: Any, text: str | bytes | None, words: str
) -> None:
    path = tmp_path / "ck.npz"
    path.write_bytes(with_manifest(good, edit, text))
    with pytest.raises(FormatError, match=words) as info:
        load(path, skel())
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    with pytest.raises(FormatError):
        read_meta(path)


def test_hostile_npy_headers_are_format_errors(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    cases = {
        "huge shape": (npy((2**40,), "<f8", W16.tobytes()), r"\.npy header says shape \(1099511627776,\)"),
        "other dtype": (npy((16,), "<f4", bytes(64)), r"header says shape \(16,\) dtype float32"),
        "object dtype": (npy((16,), "|O", bytes(128)), r"\.npy header says shape \(16,\) dtype object"),
        "short data": (npy((16,), "<f8", bytes(120)), "holds 120 bytes of data after its header"),
        "version 3": (b"\x93NUMPY\x03\x00" + npy((16,), "<f8", W16.tobytes())[8:], "version"),
        "not npy": (b"x" * 256, "magic string"),
        "header is code": (npy_raw_header(b"__import__('os').system('echo hi')" + b" " * 90, bytes(128)), "cannot be read"),
        "header too long": (npy_raw_header(b"{" + b" " * 5000 + b"}", bytes(128)), "holds 5140 bytes, but"),
        "header length lies": (b"\x93NUMPY\x01\x00\xff\xff" + bytes(246), "EOF"),
    }
    for what, (member, words) in cases.items():
        one_leaf_file(path, member)
        with pytest.raises(FormatError, match=words) as info:
            load(path, SKEL16)
        assert "leaf 'w'" in str(info.value), what


@pytest.mark.parametrize("kind", ["extra-member", "non-npy-member", "duplicate-member", "single-npy", "directory-count"])
def test_members_are_checked_before_reading(tmp_path: Path, good: bytes, kind: str) -> None:
    path = tmp_path / "ck.npz"
    if kind == "extra-member":
        path.write_bytes(good)
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("stray.npy", npy((2,)))
        words = "zip member 'stray.npy': is not listed"
    elif kind == "non-npy-member":
        path.write_bytes(good)
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("notes.txt", b"hello")
        words = "zip member 'notes.txt'"
    elif kind == "duplicate-member":
        path.write_bytes(good)
        with pytest.warns(UserWarning), zipfile.ZipFile(path, "a") as zf:
            zf.writestr("w.npy", npy((2, 3), "<f4"))
        words = "appears twice"
    elif kind == "single-npy":
        path.write_bytes(npy((16,)))
        words = "a single .npy array"
    else:  # the end record claims more members than the file could hold
        i = good.rfind(b"PK\x05\x06")
        path.write_bytes(good[: i + 8] + struct.pack("<HH", 0xFFFF, 0xFFFF) + good[i + 12 :])
        words = "lists 65535 members"
    with pytest.raises(FormatError, match=words):
        load(path, skel())


def test_a_directory_or_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz", skel())
    with pytest.raises(IsADirectoryError):
        read_meta(tmp_path)


def test_flags_and_methods_that_are_allowed_still_load(tmp_path: Path, good: bytes) -> None:
    """A deflated checkpoint (as np.savez_compressed writes) and a data-descriptor flag load fine."""
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    path = tmp_path / "z.npz"
    write_zip(path, members, deflated={n for n, _ in members})
    assert_equal_to_saved(*load(path, skel()))
    path.write_bytes(patched(good, list(central_entries(good)), 8, 0x800, 2))  # UTF-8 names flag
    assert_equal_to_saved(*load(path, skel()))


# --------------------------------------------------------------------------------------------
# Memory while rejecting crafted bombs
# --------------------------------------------------------------------------------------------


def peak_rejecting(path: Path, like: Any) -> tuple[int, str]:
    """Peak traced bytes while ``load`` rejects ``path``, and the message."""
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as info:
            load(path, like)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, str(info.value)


def bound(path: Path) -> int:
    return max(64 * MiB, 8 * path.stat().st_size)


@pytest.mark.parametrize("kind", ["128-kib-of-data", "exact-size", "manifest-agrees"])
def test_bomb_huge_npy_header(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bomb.npz"
    huge = (1 << 24,)  # 128 MiB of float64
    if kind == "128-kib-of-data":
        one_leaf_file(path, npy(huge, "<f8", bytes(128 * 1024)))
        assert path.stat().st_size > 128 * 1024
    elif kind == "exact-size":  # the member holds the 128 bytes the manifest expects
        one_leaf_file(path, npy(huge, "<f8", W16.tobytes()))
    else:
        one_leaf_file(path, npy(huge, "<f8", bytes(128 * 1024)), json.dumps(manifest([("w", huge, "<f8")])))
    peak, msg = peak_rejecting(path, SKEL16)
    assert peak < bound(path) and "leaf 'w'" in msg


def test_bomb_manifest_declaring_a_huge_shape(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    one_leaf_file(path, npy((16,), "<f8", W16.tobytes()), json.dumps(manifest([("w", (2**20, 2**20), "<f8")])))
    for read in (lambda: read_manifest(path), lambda: load(path, SKEL16)):
        tracemalloc.start()
        try:
            with pytest.raises(FormatError, match="leaf 'w'"):
                read()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < bound(path)


@pytest.mark.parametrize("kind", ["declared-1gib", "deflated-100mib", "many-empty-lists", "deep-nesting"])
def test_bomb_huge_manifest(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bomb.npz"
    w = npy((16,), "<f8", W16.tobytes())
    if kind == "declared-1gib":
        write_zip(path, [("w.npy", w), ("__manifest__.npy", npy((2**30,), "|u1", b"{}" * 60_000))])
    elif kind == "deflated-100mib":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("w.npy", w)
            f = io.BytesIO()
            np.lib.format.write_array_header_1_0(f, {"shape": (100 * MiB + 2,), "fortran_order": False, "descr": "|u1"})
            zeros_deflated(zf, "__manifest__.npy", 100 * MiB, f.getvalue() + b"[")
    elif kind == "many-empty-lists":  # 3.9 MB of "[]," would make ~90 MB of lists
        one_leaf_file(path, w, '{"meta": [' + "[]," * 1_300_000 + "[]]}", deflated={"__manifest__.npy"})
    else:
        one_leaf_file(path, w, "[" * 1_900_000 + "]" * 1_900_000, deflated={"__manifest__.npy"})
    assert path.stat().st_size < 2 * MiB
    peak, msg = peak_rejecting(path, SKEL16)
    assert peak < bound(path) and ": manifest" in msg


@pytest.mark.parametrize("kind", ["honest-size", "lying-size", "non-npy-member"])
def test_bomb_deflated_member(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bomb.npz"
    text = json.dumps(manifest([("w", (16,), "<f8")]))
    header = npy((16,), "<f8", b"")
    with zipfile.ZipFile(path, "w", compresslevel=1) as zf:
        zf.writestr("__manifest__.npy", manifest_member(text))
        if kind == "non-npy-member":
            zf.writestr("w.npy", header + W16.tobytes())
            zeros_deflated(zf, "payload.bin", 100 * MiB)
        else:
            zeros_deflated(zf, "w.npy", 100 * MiB, header)
    if kind == "lying-size":  # the directory says the member is the 128 data bytes it should be
        data = path.read_bytes()
        entry = next(at for at in central_entries(data) if data[at + 46 : at + 51] == b"w.npy")
        path.write_bytes(patched(data, [entry], 24, len(header) + 128, 4))
    assert path.stat().st_size < MiB
    peak, msg = peak_rejecting(path, SKEL16)
    assert peak < bound(path)
    assert {"honest-size": "holds 104857728 bytes", "lying-size": "CRC", "non-npy-member": "payload.bin"}[kind] in msg


def test_bomb_directory_of_many_tiny_members(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(20_000):
            zf.writestr(f"{i:x}", b"")
    peak, msg = peak_rejecting(path, SKEL16)
    assert peak < 4 * path.stat().st_size and "members, more than a file" in msg


# --------------------------------------------------------------------------------------------
# Properties: truncation, bit flips, hostile manifests and headers give only FormatError
# --------------------------------------------------------------------------------------------

PROPS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPS
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncation_is_only_a_format_error(tmp_path: Path, good: bytes, cut: float) -> None:
    path = tmp_path / "t.npz"
    path.write_bytes(good[: int(cut * len(good))])
    assert only_format_error(path) is not None


@PROPS
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=4))
def test_bit_flips_give_a_format_error_or_the_same_data(
    tmp_path: Path, good: bytes, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(good)
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    path = tmp_path / "f.npz"
    path.write_bytes(bytes(data))
    only_format_error(path)


def _zip_header_bytes(good: bytes) -> list[int]:
    """Offsets of every byte of every zip header (local, central, end record)."""
    spans = [(at, 30) for at in local_headers(good)] + [(at, 46) for at in central_entries(good)]
    spans.append((good.rfind(b"PK\x05\x06"), 22))
    return [at + i for at, n in spans for i in range(n)]


@PROPS
@given(data=st.data())
def test_zip_header_bytes_overwritten_give_a_format_error_or_the_same_data(
    tmp_path: Path, good: bytes, data: st.DataObject
) -> None:
    out = bytearray(good)
    for at in data.draw(st.lists(st.sampled_from(_zip_header_bytes(good)), min_size=1, max_size=3)):
        out[at] = data.draw(st.integers(0, 255))
    path = tmp_path / "h.npz"
    path.write_bytes(bytes(out))
    only_format_error(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=12,
)
FIELDS: list[list[Any]] = [
    [], ["format"], ["format_version"], ["fnnet_version"], ["leaves"], ["meta"], ["meta", "k"],
    ["meta", "k", "__fnnet_key__"], ["meta", "k", "__fnnet_key__", "seed"], ["meta", "k", "__fnnet_key__", "path"],
    ["leaves", 0], ["leaves", 1, "path"], ["leaves", 1, "key"], ["leaves", 2, "shape"], ["leaves", 2, "shape", 0],
    ["leaves", 0, "dtype"], ["leaves", 0, "kind"],
]  # fmt: skip


@PROPS
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_hostile_manifest_values_give_a_format_error_or_the_same_data(
    tmp_path: Path, good: bytes, field: list[Any], value: Any
) -> None:
    path = tmp_path / "m.npz"
    if field:
        path.write_bytes(with_manifest(good, set_field(field, value)))
    else:
        path.write_bytes(with_manifest(good, text=json.dumps(value)))
    only_format_error(path, same_meta=False)


DESCRS = st.sampled_from(["<f8", "<f4", ">f8", "|O", "|u1", "<U4", "|V8", "f8", [("a", "<f8")], [("a", "|O")], 5, None])


@PROPS
@given(
    shape=st.one_of(st.lists(st.integers(-(2**64), 2**64), max_size=3).map(tuple), st.just((16,)), JSON),
    descr=DESCRS | JSON,
    fortran=st.booleans() | JSON,
    raw=st.none() | st.binary(max_size=120),
)
def test_hostile_npy_headers_give_only_a_format_error(
    tmp_path: Path, shape: Any, descr: Any, fortran: Any, raw: bytes | None
) -> None:
    if raw is None:
        header = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode("latin1", "replace")
    else:
        header = raw
    path = tmp_path / "n.npz"
    one_leaf_file(path, npy_raw_header(header + b" " * 8 + b"\n", W16.tobytes()))
    try:
        got, _ = load(path, SKEL16)
    except FormatError as e:
        assert "leaf 'w'" in str(e)
    else:
        assert np.array_equal(got["w"], W16)


# --------------------------------------------------------------------------------------------
# Save: clear errors, nothing written
# --------------------------------------------------------------------------------------------


def nested(depth: int, inner: Any = 1) -> Any:
    v: Any = inner
    for _ in range(depth):
        v = [v]
    return v


def test_meta_nesting_limit(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    deepest = {"a": nested(MAX_META_DEPTH - 1)}
    save(path, (), meta=deepest)
    assert load(path, ())[1] == deepest
    with_key = {"a": nested(MAX_META_DEPTH - 4, key(1))}  # a Key takes 3 levels
    save(path, (), meta=with_key)
    assert load(path, ())[1] == with_key
    for bad in ({"a": nested(MAX_META_DEPTH)}, {"a": nested(100_000)}, {"a": nested(MAX_META_DEPTH - 3, key(1))}):
        with pytest.raises(ValueError, match=f"meta nests more than {MAX_META_DEPTH} levels"):
            save(tmp_path / "deep.npz", (), meta=bad)
    with pytest.raises(ValueError, match="meta nests"):
        save(tmp_path / "deep.npz", (), meta=types.MappingProxyType({"a": nested(100_000)}))
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="meta nests .* contains itself"):
        save(tmp_path / "deep.npz", (), meta=loop)
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]


def test_meta_too_large(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more than a checkpoint may hold"):
        save(tmp_path / "ck.npz", (), meta={"h": "x" * MAX_MANIFEST_BYTES})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad_key, words", [("\ud800", r"leaf '\\ud800': its path cannot be a zip member name"),
                                            ("a\x00b", r"leaf 'a\\x00b': its path cannot"),
                                            ("x" * 70_000, "too long")])  # fmt: skip
def test_leaf_paths_that_cannot_be_member_names(tmp_path: Path, bad_key: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        save(tmp_path / "ck.npz", {"ok": np.zeros(1), bad_key: np.zeros(2)})
    assert os.listdir(tmp_path) == []


def test_meta_keys_and_strings_with_any_characters_round_trip(tmp_path: Path) -> None:
    meta = {"\ud800": "\udfff", "nul\x00": "é✓\U0001f600"}
    save(tmp_path / "ck.npz", (), meta=meta)
    assert read_meta(tmp_path / "ck.npz") == meta


def test_full_disk_is_an_os_error_naming_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ck.npz"
    save(path, TREE, meta=META)
    old = path.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as info:
        save(path, {"w": np.ones(3)})
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path) and str(path) in str(info.value)
    assert os.listdir(tmp_path) == ["ck.npz"] and path.read_bytes() == old


def test_unwritable_target_is_an_os_error_naming_the_path(tmp_path: Path) -> None:
    for path, kind in ((tmp_path / "missing" / "ck.npz", FileNotFoundError),
                       (tmp_path / "file" / "ck.npz", NotADirectoryError)):  # fmt: skip
        (tmp_path / "file").write_bytes(b"")
        with pytest.raises(kind) as info:
            save(path, TREE)
        assert info.value.filename == str(path) and str(path) in str(info.value)


def test_an_os_error_about_another_file_keeps_its_name(tmp_path: Path) -> None:
    def write(f: Any) -> None:
        open(tmp_path / "source.bin", "rb")

    with pytest.raises(FileNotFoundError) as info:
        _io.atomic_write(tmp_path / "out.bin", write)
    assert info.value.filename == str(tmp_path / "source.bin")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# Atomic writes: killed writers, leftover temporary files
# --------------------------------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(proc.stdout)


def temps(d: Path, name: str = "ck.npz") -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp"))


def test_next_save_removes_temps_of_dead_or_stale_writers_only(tmp_path: Path) -> None:
    dead = dead_pid()
    old = time.time() - _io.STALE_AFTER - 60
    names = {
        f".ck.npz.{dead}.abcdefgh.tmp": True,  # a killed writer's
        ".ck.npz.k2j4h5g6.tmp": True,  # an older fnnet's, untouched for long
        f".ck.npz.{os.getppid()}.abcdefgh.tmp": True,  # a live PID, untouched for long (reused PID)
        f".ck.npz.{os.getppid()}.zzzzzzzz.tmp": False,  # a live writer's, recent
        ".ck.npz.recent00.tmp": False,  # an older fnnet's, recent
        f".other.npz.{dead}.abcdefgh.tmp": False,  # another target's
        f".ck.npz.{dead}.abcdefgh.tmp.keep": False,  # not a temporary file name
        f".ck.npz.{dead}.abcdefgh.dir.tmp": False,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    for name in (".ck.npz.k2j4h5g6.tmp", f".ck.npz.{os.getppid()}.abcdefgh.tmp"):
        os.utime(tmp_path / name, (old, old))
    save(tmp_path / "ck.npz", TREE, meta=META)
    left = set(os.listdir(tmp_path))
    assert left == {"ck.npz"} | {n for n, removed in names.items() if not removed}
    assert_equal_to_saved(*load(tmp_path / "ck.npz", skel()))


WRITER = """
import sys, time
import numpy as np
from fnnet import _io
from fnnet.checkpoint import save
path, mode = sys.argv[1], sys.argv[2]
if mode == "loop":
    i = 0
    while True:
        i += 1
        save(path, {"w": np.full(100_000, i, np.float64)}, meta={"i": i})
        if i == 1:
            print("ready", flush=True)
else:
    def write(f):
        f.write(b"PK\\x03\\x04 half a file")
        f.flush()
        print("ready", flush=True)
        time.sleep(60)
    _io.atomic_write(path, write)
"""


def killed_writer(path: Path, mode: str, delay: float) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.skipif(os.name != "posix", reason="kill -9")
def test_kill_9_leaves_the_old_or_new_file_and_the_next_save_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    like = {"w": np.zeros(100_000)}
    save(path, {"w": np.zeros(100_000)}, meta={"i": 0})
    # Killed mid-write for certain: the old file stays, its temporary file is left, then removed.
    before = path.read_bytes()
    killed_writer(path, "block", 0.0)
    assert path.read_bytes() == before and len(temps(tmp_path)) == 1
    save(path, {"w": np.full(100_000, -1.0)}, meta={"i": -1})
    assert temps(tmp_path) == [] and load(path, like)[1] == {"i": -1}
    # Killed at arbitrary moments of repeated saves.
    g = key(0).generator()
    for _ in range(4):
        killed_writer(path, "loop", float(g.uniform(0.0, 0.05)))
        got, meta = load(path, like)
        assert np.all(got["w"] == meta["i"]) and meta["i"] >= 1
        save(path, {"w": np.full(100_000, -2.0)}, meta={"i": -2})
        assert temps(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]


@pytest.mark.parametrize("field", [["meta"], ["format"], ["leaves"]])
def test_a_manifest_string_with_a_newline_still_gives_a_one_line_error(tmp_path: Path, good: bytes, field: list[Any]) -> None:
    """A string value was put into the message raw: "manifest: meta: is \\n, not an object"."""
    path = tmp_path / "m.npz"
    path.write_bytes(with_manifest(good, set_field(field, "a\nb\r")))
    with pytest.raises(FormatError) as e:
        read_manifest(path)
    assert "\n" not in str(e.value) and "\r" not in str(e.value) and "'a\\nb\\r'" in str(e.value), str(e.value)
