"""Readers: sequence files with mixed line endings read in bounded memory, and checkpoints holding
the history of a long run (its per-step lists stored as .npy members, not as manifest JSON)."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import peak_bytes

import fnnet
from fnnet import checkpoint
from fnnet.checkpoint import load, read_manifest, read_meta, save
from fnnet.datasets import decode, load_sequence, read_sequence_file
from fnnet.errors import FormatError
from fnnet.train import History

# --------------------------------------------------------------------------------------------
# Sequence files with mixed line endings
# --------------------------------------------------------------------------------------------


def _mixed_file(tmp_path: Path, lines: int, plus: str = "+") -> tuple[Path, list[str]]:
    """``lines`` lines of the addition task's shape, ended by ``\\n`` or ``\\r\\n`` at random."""
    g = np.random.default_rng(lines)
    a, b, crlf = g.integers(0, 1000, lines), g.integers(0, 1000, lines), g.integers(0, 2, lines)
    text = [f"{i}{plus}{j}".ljust(7) + f"_{i + j}".ljust(5) for i, j in zip(a, b)]
    f = tmp_path / "mixed.txt"
    f.write_bytes("".join(line + ("\r\n" if c else "\n") for line, c in zip(text, crlf)).encode())
    return f, text


def _as_the_sequel_reads(f: Path) -> tuple[list[str], list[str]]:
    """The sequel's loader: text mode (universal newlines), each line split at its first ``_``,
    the line's last character (its newline) dropped from the answer."""
    questions, answers = [], []
    with open(f, encoding="utf-8") as lines:
        for line in lines:
            at = line.find("_")
            questions.append(line[:at])
            answers.append(line[at:-1])
    return questions, answers


@pytest.mark.parametrize("plus", ["+", "é", "中"])
def test_a_file_with_mixed_line_endings_is_read_in_a_few_times_its_size(tmp_path: Path, plus: str) -> None:
    # It was read line by line as Python strings: 17.7 to 19.6 times the file.
    f, _ = _mixed_file(tmp_path, 80_000, plus)
    size = f.stat().st_size
    reads: list[Callable[[], object]] = [lambda: read_sequence_file(f), lambda: load_sequence(f)]
    for read in reads:
        peak = peak_bytes(read)
        assert peak < 6.5 * size, (peak / size, plus)


def test_a_file_with_mixed_line_endings_reads_as_the_sequel_reads_it(tmp_path: Path) -> None:
    f, lines = _mixed_file(tmp_path, 3_000, "é")
    x, t, vocab = read_sequence_file(f)
    questions, answers = _as_the_sequel_reads(f)
    assert [decode(q, vocab) for q in x] == questions and [decode(a, vocab) for a in t] == answers
    assert [q + a for q, a in zip(questions, answers)] == lines
    unix = tmp_path / "unix.txt"
    unix.write_bytes("".join(line + "\n" for line in lines).encode())
    x2, t2, vocab2 = read_sequence_file(unix)
    assert np.array_equal(x, x2) and np.array_equal(t, t2) and vocab == vocab2
    assert x.flags.c_contiguous and x.flags.owndata and t.flags.c_contiguous and t.flags.owndata


# --------------------------------------------------------------------------------------------
# Checkpoints holding a long history: its per-step lists as .npy members
# --------------------------------------------------------------------------------------------


def _history(steps: int, norms: int = 0) -> History:
    g = np.random.default_rng(steps)
    loss = g.random(steps) * 2.3
    loss[[3, 7, 11]] = [np.nan, np.inf, -0.0]
    grad = tuple(map(tuple, g.random((steps, norms)).tolist())) if norms else ()
    return History(tuple(loss.tolist()), ({"loss": 0.5, "train_acc": 0.9},) * (steps // 500), grad)


def _same(a: History, b: History) -> bool:
    """Equal bit for bit (NaN included) with Python floats throughout."""
    return (
        np.array_equal(np.array(a.step_loss), np.array(b.step_loss), equal_nan=True)
        and str(a.step_loss[11]) == str(b.step_loss[11]) == "-0.0"
        and a.epochs == b.epochs
        and a.grad_norms == b.grad_norms
        and {type(v) for v in b.step_loss} == {float}
        and {type(v) for g in b.grad_norms for v in g} <= {float}
    )


def test_a_checkpoint_round_trips_the_history_of_a_million_steps_in_a_second(tmp_path: Path) -> None:
    # Its manifest was 20 MB of JSON, over MAX_MANIFEST_BYTES: save refused it.
    history = _history(1_000_000)
    state = {"w": np.ones((3, 2), np.float32)}
    path = tmp_path / "ck.npz"
    t0 = time.perf_counter()
    save(path, state, meta={"history": history.to_json(), "key": fnnet.key(3)})
    loaded, meta = load(path, state)
    back = History.from_json(meta["history"])
    seconds = time.perf_counter() - t0
    assert _same(history, back) and meta["key"] == fnnet.key(3) and np.array_equal(loaded["w"], state["w"])
    assert seconds < 5, seconds
    assert path.stat().st_size < 8.2e6  # 8 bytes a step and headers
    m = read_manifest(path)
    assert m["format_version"] == 2 and _same(back, History.from_json(m["meta"]["history"]))
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["__manifest__", "__meta_0__", "w"]
        assert npz["__meta_0__"].dtype == np.float64 and npz["__meta_0__"].shape == (1_000_000,)


def test_gradient_norms_and_other_long_lists_of_floats_round_trip_as_lists(tmp_path: Path) -> None:
    history = _history(20_000, norms=3)
    meta = {
        "history": history.to_json(),
        "runs": [{"curve": tuple(float(i) for i in range(2000))}, [0.5] * 1023, [1, 2.0] * 600],
        "rows": [[0.5, 1.5]] * 600,
        "ragged": [[0.5, 1.5], [0.5]] * 600,
        "empty_rows": [[]] * 2000,
    }
    path = tmp_path / "ck.npz"
    save(path, {"__meta_0__": np.zeros(2)}, meta)  # a leaf at a meta array's usual name
    tree, got = load(path, {"__meta_0__": np.zeros(2)})
    assert _same(history, History.from_json(got["history"]))
    assert got["runs"] == [{"curve": [float(i) for i in range(2000)]}, [0.5] * 1023, [1, 2.0] * 600]
    assert got["rows"] == [[0.5, 1.5]] * 600 and got["ragged"] == [[0.5, 1.5], [0.5]] * 600
    assert got["empty_rows"] == [[]] * 2000 and type(got["runs"][2][0]) is int
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name].shape for name in npz.files if name.startswith("__meta_")}
    assert sorted(arrays.values()) == [(2,), (600, 2), (2000,), (20_000,), (20_000, 3)]


def test_a_small_meta_is_still_written_as_version_1(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    save(path, {"w": np.zeros(2)}, {"history": _history(1000).to_json()})
    assert read_manifest(path)["format_version"] == 1
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["__manifest__", "w"]


def test_the_array_tag_is_reserved_in_meta(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'__fnnet_array__' is reserved"):
        save(tmp_path / "ck.npz", {"w": np.zeros(2)}, {"a": [{"__fnnet_array__": "__meta_0__"}]})
    assert not (tmp_path / "ck.npz").exists()


def test_a_version_1_file_keeps_an_array_tag_as_an_ordinary_key(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    text = json.dumps(_manifest(1, {"a": {"__fnnet_array__": "__meta_0__"}}))
    _write(path, [("w.npy", _npy(np.zeros(2))), ("__manifest__.npy", _npy(np.frombuffer(text.encode(), np.uint8)))])
    assert load(path, {"w": np.zeros(2)})[1] == {"a": {"__fnnet_array__": "__meta_0__"}}


def _npy(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, a, allow_pickle=False)
    return f.getvalue()


def _manifest(version: int, meta: Any) -> dict[str, Any]:
    leaves = [{"path": "w", "key": "w", "shape": [2], "dtype": "<f8", "kind": "ndarray"}]
    return {"format": "fnnet-checkpoint", "format_version": version, "fnnet_version": "0", "leaves": leaves, "meta": meta}


def _write(path: Path, members: list[tuple[str, bytes]], deflated: tuple[str, ...] = ()) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)


def _hostile(path: Path, meta: Any, arrays: dict[str, bytes], deflated: tuple[str, ...] = ()) -> None:
    text = json.dumps(_manifest(2, meta))
    members = [("w.npy", _npy(np.zeros(2))), *arrays.items(), ("__manifest__.npy", _npy(np.frombuffer(text.encode(), np.uint8)))]
    _write(path, members, deflated)


def _header(shape: tuple[int, ...], descr: str, data: bytes) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"shape": shape, "fortran_order": False, "descr": descr})
    return f.getvalue() + data


_REF = {"__fnnet_array__": "__meta_0__"}
_GOOD = {"__meta_0__.npy": _npy(np.arange(4.0))}

HOSTILE_META_ARRAYS: list[tuple[str, Any, dict[str, bytes], tuple[str, ...], str, str]] = [
    ("missing member", {"h": {"s": _REF}}, {}, (), "manifest: meta.h.s", "its zip member '__meta_0__.npy' is missing"),
    ("not listed", {"h": 1}, _GOOD, (), "zip member '__meta_0__.npy'", "is not listed in the manifest"),
    ("named twice", {"a": [_REF, _REF]}, _GOOD, (), r"manifest: meta.a\[1\]", "a second time"),
    ("extra key", {"a": {**_REF, "b": 1}}, _GOOD, (), "manifest: meta.a", "not a record"),
    ("name a number", {"a": {"__fnnet_array__": 3}}, _GOOD, (), "manifest: meta.a", "not a record"),
    ("name a path", {"a": {"__fnnet_array__": "../w"}}, _GOOD, (), "manifest: meta.a", "not a record"),
    ("name the manifest", {"a": {"__fnnet_array__": "__manifest__"}}, _GOOD, (), "manifest: meta.a", "not a record"),
    ("meta itself", _REF, _GOOD, (), "manifest: meta", "not an object of its own"),
    ("ints", {"a": _REF}, {"__meta_0__.npy": _npy(np.arange(4))}, (), "meta.a", "dtype int64; a meta array holds float64"),
    ("3-d", {"a": _REF}, {"__meta_0__.npy": _npy(np.zeros((2, 2, 2)))}, (), "meta.a", "of 1 or 2 dimensions"),
    ("empty", {"a": _REF}, {"__meta_0__.npy": _npy(np.zeros((5, 0)))}, (), "meta.a", "none empty"),
    ("huge shape", {"a": _REF}, {"__meta_0__.npy": _header((2**40,), "<f8", bytes(32))}, (), "meta.a", "holds 1099511627776 floats, more than"),
    ("short data", {"a": _REF}, {"__meta_0__.npy": _header((8,), "<f8", bytes(32))}, (), "meta.a", "holds 32 bytes of data after its header"),
    ("object", {"a": _REF}, {"__meta_0__.npy": _header((4,), "|O", bytes(32))}, (), "meta.a", "dtype object"),
    ("deflated", {"a": _REF}, _GOOD, ("__meta_0__.npy",), "meta.a", "is compressed"),
]


@pytest.mark.parametrize(("name", "meta", "arrays", "deflated", "where", "reason"), HOSTILE_META_ARRAYS,
                         ids=[c[0] for c in HOSTILE_META_ARRAYS])  # fmt: skip
def test_hostile_meta_arrays_are_format_errors_naming_file_and_place(
    tmp_path: Path, name: str, meta: Any, arrays: dict[str, bytes], deflated: tuple[str, ...], where: str, reason: str
) -> None:
    path = tmp_path / "ck.npz"
    _hostile(path, meta, arrays, deflated)
    for read in (lambda: load(path, {"w": np.zeros(2)}), lambda: read_meta(path)):
        with pytest.raises(FormatError, match=reason) as e:
            read()
        assert e.value.path == str(path) and re.match(where, e.value.where), (e.value.where, where)
        assert "\n" not in str(e.value)


def test_a_leaf_cannot_be_a_meta_array(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    text = json.dumps(_manifest(2, {"a": {"__fnnet_array__": "__meta_0__"}}) | {
        "leaves": [{"path": "__meta_0__", "key": "__meta_0__", "shape": [2], "dtype": "<f8", "kind": "ndarray"}]
    })
    _write(path, [("__meta_0__.npy", _npy(np.zeros(2))), ("__manifest__.npy", _npy(np.frombuffer(text.encode(), np.uint8)))])
    with pytest.raises(FormatError, match="is also a meta array's") as e:
        load(path, {"__meta_0__": np.zeros(2)})
    assert e.value.where == "manifest: leaf '__meta_0__'"


def test_the_meta_arrays_are_bounded_in_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "_MAX_META_NUMBERS", 3000)
    path = tmp_path / "ck.npz"
    with pytest.raises(ValueError, match="meta holds 4000 floats in long lists, more than a checkpoint may hold"):
        save(path, {"w": np.zeros(2)}, {"a": [0.5] * 2000, "b": [0.5] * 2000})
    _hostile(path, {"a": _REF, "b": {"__fnnet_array__": "__meta_1__"}},
             {"__meta_0__.npy": _npy(np.zeros(2000)), "__meta_1__.npy": _npy(np.zeros(2000))})  # fmt: skip
    with pytest.raises(FormatError, match="more than the 1000 floats left of the 3000 the meta arrays may hold") as e:
        read_meta(path)
    assert e.value.where.startswith(("meta.a (zip member '__meta_0__.npy' at byte ", "meta.b (zip member '__meta_1__.npy' at byte "))
