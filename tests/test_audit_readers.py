"""Reader hardening found by an audit: FIFOs and devices, duplicate JSON keys, quadratic work.

Every reader must fail fast with one FormatError naming the file and the place; these are the
cases the other hostile tests did not reach.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tempfile
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fnnet
import fnnet.datasets.sequence as sequence_module
from fnnet import checkpoint
from fnnet._io import open_regular
from fnnet._json import read_json
from fnnet.datasets import decode, read_idx, read_sequence_file
from fnnet.errors import FormatError
from fnnet.typing import Array
from fnnet.hparam import Choice, Distribution, LogUniform, SearchResult, random_search

READERS: dict[str, Callable[[Path], Any]] = {
    "read_idx": read_idx,
    "read_idx_gz": lambda p: read_idx(p.with_name(p.name + ".gz")),
    "read_sequence_file": read_sequence_file,
    "SearchResult.load": SearchResult.load,
    "checkpoint.load": lambda p: checkpoint.load(p, {"w": np.zeros(2)}),
    "checkpoint.read_meta": checkpoint.read_meta,
}


def _outcome_on_fifo(call: Callable[[], Any], fifo: Path, seconds: float) -> BaseException | None:
    """Run ``call`` in a thread; the exception it raised, or None if it returned.

    Fails if it still runs after ``seconds`` (a reader waiting for a writer), after releasing it.
    """
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        with open(fifo, "wb"):  # the writer the reader waits for; closing it ends the read
            pass
        t.join(seconds)
        pytest.fail(f"reading the FIFO {fifo} blocked for {seconds} s")
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_fifo_is_refused_at_once(tmp_path: Path, reader: str) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    if reader == "read_idx_gz":
        fifo = tmp_path / "pipe.gz"
        os.mkfifo(fifo)
    err = _outcome_on_fifo(lambda: READERS[reader](tmp_path / "pipe"), fifo, 3.0)
    assert isinstance(err, FormatError), repr(err)
    assert str(err) == f"{fifo}: not a regular file (a FIFO)"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
@pytest.mark.parametrize("reader", ["SearchResult.load", "read_idx", "checkpoint.read_meta"])
def test_a_device_is_refused(reader: str) -> None:
    with pytest.raises(FormatError, match=r"^/dev/null: not a regular file \(a character device\)$"):
        READERS[reader](Path("/dev/null"))


def test_open_regular_reads_in_blocking_mode(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    with open_regular(f) as r:
        assert os.get_blocking(r.fileno()) and r.read() == b"abc"
    with pytest.raises(IsADirectoryError):
        open_regular(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "nope")


# --------------------------------------------------------------------------------------------
# Sequence files: vocabulary in linear-ish time, clear messages
# --------------------------------------------------------------------------------------------


def test_many_late_distinct_characters_do_not_take_quadratic_time(tmp_path: Path) -> None:
    # 2 MB of "a" and then 20,000 distinct CJK characters: ranking each distinct character by
    # str.find scanned the whole text once per character (about 6 s here); it must stay linear.
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 20_000)]
    lines = ["aaaa_aaaa"] * 200_000 + ["".join(cjk[i : i + 4]) + "_aaaa" for i in range(0, len(cjk), 4)]
    f = tmp_path / "wide.txt"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    start = time.perf_counter()
    x, t, vocab = read_sequence_file(f)
    seconds = time.perf_counter() - start
    assert vocab == ("a", "_", *cjk) and x.shape == (len(lines), 4) and t.shape == (len(lines), 5)
    assert x[-1].tolist() == list(range(len(vocab) - 4, len(vocab)))
    assert seconds < 2.5, seconds


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.tuples(st.text("ab+_ é中\U0001F600", min_size=2, max_size=2), st.text("xy_中", min_size=2, max_size=2)),
                  min_size=1, max_size=30),
    chunk=st.sampled_from([1, 3, 7, 1 << 16]),
)
def test_vocabulary_is_in_order_of_first_appearance(rows: list[tuple[str, str]], chunk: int) -> None:
    lines = [("q" + q.replace("_", "q") + "_" + a) for q, a in rows]
    joined = "".join(lines)
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setattr(sequence_module, "_VOCAB_CHUNK", chunk)
        f = Path(d) / "s.txt"
        f.write_bytes(("\n".join(lines) + "\n").encode())
        x, t, vocab = read_sequence_file(f)
    assert vocab == tuple(sorted(set(joined), key=joined.find))
    assert [decode(q, vocab) + decode(a, vocab) for q, a in zip(x, t)] == lines


@pytest.mark.parametrize(
    "content, where, reason",
    [
        ("\ufeff1+1_2\n", "line 1", "starts with a byte-order mark (U+FEFF); save the file as UTF-8 without one"),
        ("1+1_2\n1\u00a01_2\n", "line 2", "non-printable character '\\xa0' (U+00A0) at column 2"),
        ("1+1_2\n1\t1_2\n", "line 2", "control character '\\t' (U+0009) at column 2"),
        ("1+1_2\n1+1_\u200b\n", "line 2", "non-printable character '\\u200b' (U+200B) at column 5"),
    ],
)
def test_bom_and_non_printable_characters_are_named_with_their_column(
    tmp_path: Path, content: str, where: str, reason: str
) -> None:
    f = tmp_path / "s.txt"
    f.write_bytes(content.encode())
    with pytest.raises(FormatError) as info:
        read_sequence_file(f)
    assert (info.value.where, info.value.reason) == (where, reason)


# --------------------------------------------------------------------------------------------
# JSON: repeated keys, byte-order marks, the offset of bad UTF-8
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, where, reason",
    [
        (b'{"a": 1, "b": [{"c": 2, "c": 3}], "d": 4}', "byte 24", "duplicate key 'c' in an object"),
        (b'{"' + b"k" * 100 + b'": 1,\n"' + b"k" * 100 + b'": 1}', "byte 108", "duplicate key '" + "k" * 57 + "'... in an object"),
        (b'\xef\xbb\xbf{}', "byte 0", "expected a JSON value, found a UTF-8 byte-order mark (the file must be UTF-8 without one)"),
        (b'\xff\xfe{\x00}\x00', "byte 0", "expected a JSON value, found a UTF-16 byte-order mark (the file must be UTF-8 without one)"),
        (b'["ok", "caf\xe9"]', "byte 11", "not UTF-8 text (byte 0xe9 in a string)"),
        (b'["ok", "\\n caf\xe9"]', "byte 14", "not UTF-8 text (byte 0xe9 in a string)"),
    ],
)
def test_read_json_refuses_repeated_keys_and_names_boms_and_bad_bytes(
    tmp_path: Path, text: bytes, where: str, reason: str
) -> None:
    f = tmp_path / "x.json"
    f.write_bytes(text)
    with pytest.raises(FormatError) as info:
        read_json(f, max_bytes=1 << 20, max_depth=8)
    assert (info.value.where, info.value.reason) == (where, reason)


def test_search_result_with_a_repeated_field_is_refused(tmp_path: Path) -> None:
    result = random_search(lambda h, k: {"val_acc": 0.5}, {"lr": LogUniform(1e-3, 1.0)}, key=fnnet.key(0), n_trials=2)
    text = json.dumps(result.to_json())
    f = tmp_path / "search.json"
    f.write_text(text.replace('"trials": [', '"trials": [], "trials": [', 1))
    assert json.loads(f.read_text()) == result.to_json()  # what the standard library makes of it
    with pytest.raises(FormatError, match=r"^.*search\.json: byte \d+: duplicate key 'trials' in an object$"):
        SearchResult.load(f)


def _with_manifest_text(good: bytes, text: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    npy = io.BytesIO()
    np.lib.format.write_array(npy, np.frombuffer(text.encode(), np.uint8))
    members["__manifest__.npy"] = npy.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return out.getvalue()


@pytest.mark.parametrize(
    "old, new, words",
    [
        ('"leaves": [', '"leaves": [], "leaves": [', "an object repeats the key 'leaves'"),
        ('"meta": {', '"meta": {"step": 1, "step": 2, ', "an object repeats the key 'step'"),
        ('"meta": {', '"meta": {"k": {"__fnnet_key__": {"seed": 1, "seed": 2, "path": []}}, ', "an object repeats the key 'seed'"),
    ],
)
def test_checkpoint_manifest_with_a_repeated_key_is_refused(tmp_path: Path, old: str, new: str, words: str) -> None:
    path = tmp_path / "ck.npz"
    checkpoint.save(path, {"w": np.arange(2.0)}, {"epoch": 1})
    text = json.dumps(checkpoint.read_manifest(path))
    assert old in text
    path.write_bytes(_with_manifest_text(path.read_bytes(), text.replace(old, new, 1)))
    with pytest.raises(FormatError, match=f"^{re.escape(str(path))}: manifest: {words}") as info:
        checkpoint.load(path, {"w": np.zeros(2)})
    assert "\n" not in str(info.value)


def _search_result() -> SearchResult:
    space: dict[str, Distribution] = {"lr": LogUniform(1e-3, 1.0), "c": Choice(["a", "b"])}
    return random_search(lambda h, k: {"val_acc": 0.5}, space, key=fnnet.key(0), n_trials=2)


def _search_json() -> dict[str, Any]:
    return _search_result().to_json()  # its trials draw "a" or "b", never o0..o29999 below


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: Any) -> None:
        for name in path[:-1]:
            d = d[name]
        d[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    "edit, where",
    [
        (_set(("space", "k-" * 50_000), {"type": "Nope"}), '$.space["' + "k-" * 20 + '..."]'),
        (_set(("trials", 0, "metrics", "m\n" * 50_000), "x"), '$.trials[0].metrics["' + "m\\n" * 20 + '..."]'),
        (_set(("space", "c"), {"type": "Choice", "options": [f"o{i}" for i in range(30_000)]}), "$.trials[0].hparams.c"),
        (_set(("key", "seed"), "x" * 100_000), "$.key.seed"),
        (_set(("key", "path"), [0] * 30_000 + [-1]), "$.key.path[30000]"),
        (_set(("key", "path"), ["a"] * 30_000), "$.key.path[0]"),
    ],
)
def test_search_result_errors_stay_short_whatever_the_file_holds(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], where: str
) -> None:
    d = _search_json()
    edit(d)
    f = tmp_path / "search.json"
    f.write_text(json.dumps(d))
    with pytest.raises(FormatError) as info:
        SearchResult.load(f)
    assert info.value.where == where
    assert len(str(info.value)) < len(str(f)) + 250 and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# Fuzz: the gzip wrapper of IDX files, the member structure of checkpoints
# --------------------------------------------------------------------------------------------


def _gzip_member(payload: bytes, flags: int, fields: bytes, crc_delta: int, size_delta: int, level: int) -> bytes:
    """One gzip member with header flags ``flags`` (the optional fields' bytes are ``fields``)."""
    extra, name, comment = fields[:6], fields[6:12], fields[12:]
    head = bytearray(b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\x00\xff")
    if flags & 0x04:
        head += len(extra).to_bytes(2, "little") + extra
    if flags & 0x08:
        head += name
    if flags & 0x10:
        head += comment
    if flags & 0x02:
        head += b"\x12\x34"  # a header CRC, which readers may ignore
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = c.compress(payload) + c.flush()
    crc = (zlib.crc32(payload) + crc_delta) & 0xFFFFFFFF
    return bytes(head) + body + crc.to_bytes(4, "little") + ((len(payload) + size_delta) & 0xFFFFFFFF).to_bytes(4, "little")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    flags=st.integers(0, 255),
    fields=st.binary(max_size=20),
    crc_delta=st.sampled_from([0, 0, 0, 1]),
    size_delta=st.sampled_from([0, 0, 0, 1, -1]),
    split=st.integers(0, 100),
    tail=st.sampled_from([b"", b"", b"\0\0\0", b"\x1f", b"\x1f\x8b", b"garbage", b"\x1f\x8b\x08\0" + bytes(6)]),
    level=st.integers(0, 9),
)
def test_gzip_wrapper_damage_gives_format_error_or_the_data(
    shape: list[int], flags: int, fields: bytes, crc_delta: int, size_delta: int, split: int, tail: bytes, level: int
) -> None:
    """Header flags and fields, two members, bad CRC or size, trailing bytes: as gzip reads it, or FormatError."""
    a = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    raw = bytes([0, 0, 0x08, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape) + a.tobytes()
    cut = split % (len(raw) + 1)
    data = _gzip_member(raw[:cut], flags, fields, crc_delta, size_delta, level)
    if cut < len(raw):
        data += gzip.compress(raw[cut:], mtime=0)
    data += tail
    try:
        reference: bytes | None = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        reference = None
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "x-idx-ubyte.gz"
        f.write_bytes(data)
        try:
            got = read_idx(f)
        except FormatError as e:
            assert e.path == str(f) and "\n" not in str(e)
            return
    assert reference == raw
    assert got.shape == a.shape and np.array_equal(got, a)


_W = np.arange(6.0).reshape(2, 3)
_B = np.array([1, 2], np.int32)


def _npy(a: Array, version: tuple[int, int] | None = None, allow_pickle: bool = False) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, a, version=version, allow_pickle=allow_pickle)
    return f.getvalue()


_MEMBER: dict[str, Callable[[], bytes]] = {
    "good": lambda: _npy(_W),
    "fortran": lambda: _npy(np.asfortranarray(_W)),
    "v2-header": lambda: _npy(_W, version=(2, 0)),
    "v3-header": lambda: _npy(_W, version=(3, 0)),
    "float32": lambda: _npy(_W.astype(np.float32)),
    "big-endian": lambda: _npy(_W.astype(">f8")),
    "transposed": lambda: _npy(_W.T.copy()),
    "object": lambda: _npy(np.array([[1, 2, 3], [4, 5, {}]], dtype=object), allow_pickle=True),
    "structured": lambda: _npy(np.zeros((2, 3), dtype=[("a", "<f4"), ("b", "<f4")])),
    "datetime": lambda: _npy(np.zeros((2, 3), "datetime64[s]")),
    "unicode": lambda: _npy(np.full((2, 3), "a")),
    "truncated": lambda: _npy(_W)[:-5],
    "padded": lambda: _npy(_W) + bytes(8),
    "not-npy": lambda: b"hello world" * 10,
    "empty": lambda: b"",
}
_MANIFEST_EDIT: dict[str, Callable[[dict[str, Any]], None]] = {
    "none": lambda m: None,
    "dtype-object": lambda m: m["leaves"][1].update(dtype="|O"),
    "dtype-void": lambda m: m["leaves"][1].update(dtype="|V8"),
    "dtype-datetime": lambda m: m["leaves"][1].update(dtype="<M8[s]"),
    "dtype-float32": lambda m: m["leaves"][1].update(dtype="<f4"),
    "shape-3-2": lambda m: m["leaves"][1].update(shape=[3, 2]),
    "extra-leaf": lambda m: m["leaves"].append({"path": "z", "key": "z", "shape": [1], "dtype": "<f8", "kind": "ndarray"}),
    "no-leaf": lambda m: m["leaves"].pop(1),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    member=st.sampled_from(sorted(_MEMBER)),
    edit=st.sampled_from(sorted(_MANIFEST_EDIT)),
    extra=st.sampled_from(["none", "npy", "txt", "dir"]),
    deflate=st.booleans(),
)
def test_checkpoint_members_of_any_kind_give_format_error_or_the_data(
    member: str, edit: str, extra: str, deflate: bool
) -> None:
    """Swapped members (pickled objects, other dtypes, shapes, headers) and edited manifests."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ck.npz"
        checkpoint.save(path, {"b": _B, "w": _W}, {"epoch": 1})
        manifest = checkpoint.read_manifest(path)
        assert [e["path"] for e in manifest["leaves"]] == ["b", "w"]
        _MANIFEST_EDIT[edit](manifest)
        members = {"b.npy": _npy(_B), "w.npy": _MEMBER[member](),
                   "__manifest__.npy": _npy(np.frombuffer(json.dumps(manifest).encode(), np.uint8))}
        if extra == "npy":
            members["z.npy"] = _npy(np.zeros(1))
        elif extra == "txt":
            members["notes.txt"] = b"hi"
        elif extra == "dir":
            members["sub/"] = b""
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        try:
            tree, meta = checkpoint.load(path, {"b": np.zeros(2, np.int32), "w": np.zeros((2, 3))})
        except FormatError as e:
            assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
            return
    assert member in ("good", "fortran", "v2-header", "v3-header") and edit == "none" and extra == "none"
    assert np.array_equal(tree["w"], _W) and tree["w"].dtype == _W.dtype and np.array_equal(tree["b"], _B)
    assert meta == {"epoch": 1}


# --------------------------------------------------------------------------------------------
# Atomic writes keep the permissions a plain write would give
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_atomic_write_keeps_the_old_mode_and_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        checkpoint.save(tmp_path / "private.npz", {"w": np.zeros(2)})  # a new file under umask 077
        assert (tmp_path / "private.npz").stat().st_mode & 0o777 == 0o600
        os.umask(0o022)
        checkpoint.save(tmp_path / "private.npz", {"w": np.ones(2)})  # replacing keeps 0o600
        assert (tmp_path / "private.npz").stat().st_mode & 0o777 == 0o600
        (tmp_path / "shared.json").write_bytes(b"{}")
        os.chmod(tmp_path / "shared.json", 0o664)
        _search_result().save(tmp_path / "shared.json")
        assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o664
        _search_result().save(tmp_path / "new.json")
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_a_small_sequence_file_is_read_without_allocating_the_size_cap(tmp_path: Path) -> None:
    f = tmp_path / "tiny.txt"
    f.write_bytes(b"1+1_2\n2+3_5\n")
    tracemalloc.start()
    try:
        read_sequence_file(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # it read MAX_SEQUENCE_FILE_BYTES + 1 (64 MiB allocated) for any file


def test_sequence_files_with_windows_line_endings_read_as_the_sequel_reads_them(tmp_path: Path) -> None:
    """The sequel opens the file in text mode, so CRLF lines are its questions too; a lone CR is
    still refused as a control character."""
    from fnnet.datasets.sequence import read_sequence_file

    unix, dos, lone = tmp_path / "unix.txt", tmp_path / "dos.txt", tmp_path / "lone.txt"
    unix.write_bytes(b"1+1_2\n2+3_5\n")
    dos.write_bytes(b"1+1_2\r\n2+3_5\r\n")
    lone.write_bytes(b"1+1_2\r2+3_5\n")
    (x1, t1, v1), (x2, t2, v2) = read_sequence_file(unix), read_sequence_file(dos)
    assert np.array_equal(x1, x2) and np.array_equal(t1, t2) and v1 == v2 == ("1", "+", "_", "2", "3", "5")
    with pytest.raises(FormatError, match=r"lone\.txt: line 1: control character '\\r' \(U\+000D\) at column 6"):
        read_sequence_file(lone)
