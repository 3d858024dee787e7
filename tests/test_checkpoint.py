"""Checkpoints: bit-exact round trips against a skeleton, validation, atomic writes, no pickle."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import numpy as np
import pytest
from _helpers import assert_bit_identical
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fnnet
from fnnet import checkpoint
from fnnet.typing import Array
from fnnet.checkpoint import load, read_manifest, read_meta, save
from fnnet.errors import FormatError
from fnnet.layers.core import AffineParams
from fnnet.optim import adam, apply_updates, momentum
from fnnet.random import Key, fold_in, key, split
from fnnet.tree import tree_flatten, tree_leaves, tree_map, tree_paths


class Pair(NamedTuple):
    a: Any
    b: Any


@attrs.frozen
class Record:
    w: Array
    n: int


def arr(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> Array:
    g = key(seed).generator()
    if np.dtype(dtype).kind == "b":
        return g.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        return g.integers(-50 if np.dtype(dtype).kind == "i" else 0, 50, shape).astype(dtype)
    if np.dtype(dtype).kind == "c":
        return (g.standard_normal(shape) + 1j * g.standard_normal(shape)).astype(dtype)
    return g.standard_normal(shape).astype(dtype)


def special_floats(dtype: Any) -> Array:
    """NaN, infinities, signed zero and a subnormal: values a lossy format would change."""
    info = np.finfo(dtype)
    return np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, info.tiny / 2, info.max, info.eps], dtype=dtype)


TREES: dict[str, Any] = {
    "affine-params": (AffineParams(arr((4, 3), np.float32), arr((3,), np.float32)), None,
                      AffineParams(arr((3, 2), np.float32, 1), arr((2,), np.float32, 1))),
    "float64-and-ints": {"w": arr((2, 5), np.float64), "count": arr((), np.int64), "idx": arr((7,), np.int32)},
    "nested-dict-list": {"layers": [arr((3,), np.float16), {"gamma": arr((2, 2), np.float64)}], "empty": ()},
    "python-and-numpy-scalars": Pair(3, Pair(2.5, (True, np.int64(7), np.float32(1.5), np.bool_(False), 1 + 2j))),
    "attrs-record": (Record(arr((2, 3), np.float64), 5), None),
    "special-values": (special_floats(np.float32), special_floats(np.float64), arr((3, 0), np.float32)),
    "all-kinds": [arr((2,), d) for d in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.uint64, np.bool_, np.complex128)],
    "single-leaf": arr((3, 3), np.float64),
    "memory-orders": (np.asfortranarray(arr((3, 4), np.float64)), arr((4, 6), np.int16)[:, ::2], arr((2, 3, 2), np.complex64).T),
    "single-scalar": 42,
    "none": None,
    "empty-tuple": (),
}


def skeleton(tree: Any) -> Any:
    """A tree of the same structure and leaf types whose values differ (what ``init`` would give)."""

    def other(leaf: Any) -> Any:
        return np.zeros_like(leaf) if isinstance(leaf, np.ndarray) else type(leaf)(0)

    return tree_map(other, tree)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TREES))
def test_round_trip_is_bit_exact(tmp_path: Path, name: str) -> None:
    tree = TREES[name]
    before = tree_map(lambda x: np.array(x, copy=True), tree)
    path = tmp_path / "ck.npz"
    save(path, tree, meta={"step": 12})
    restored, meta = load(path, skeleton(tree))
    assert_bit_identical(restored, tree)
    assert meta == {"step": 12}
    assert all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(tree_leaves(tree), tree_leaves(before)))


def test_optimizer_states_round_trip_and_resume_identically(tmp_path: Path) -> None:
    model = fnnet.serial(fnnet.Affine(6), fnnet.ReLU(), fnnet.Affine(3))
    params, _ = model.init(key(0), (4,))
    g = key(1).generator()
    for opt in (adam(0.01), momentum(0.1)):
        state = opt.init(params)
        p = params
        for _ in range(3):
            grads = tree_map(lambda w: g.standard_normal(w.shape).astype(w.dtype), p)
            updates, state = opt.update(grads, state, p)
            p = apply_updates(p, updates)
        save(tmp_path / "opt.npz", (p, state), meta={"step": 3})
        fresh = opt.init(params)
        (p2, state2), meta = load(tmp_path / "opt.npz", (params, fresh))
        assert_bit_identical((p2, state2), (p, state))
        assert type(state2) is type(state) and meta["step"] == 3
        # One more step from the restored state equals one more step from the original.
        grads = tree_map(lambda w: np.ones_like(w), p)
        u1, s1 = opt.update(grads, state, p)
        u2, s2 = opt.update(grads, state2, p2)
        assert_bit_identical((apply_updates(p, u1), s1), (apply_updates(p2, u2), s2))


def test_meta_round_trips_keys_and_numpy_scalars(tmp_path: Path) -> None:
    k = fold_in(split(key(7), 3)[2], 5)
    meta = {
        "key": k,
        "root": key(0),
        "history": {"loss": [1.5, 0.25, float("nan")], "keys": [key(1), {"nested": k}]},
        "step": np.int64(40),
        "lr": np.float32(0.5),
        "done": np.bool_(True),
        "note": "ünïcode ✓",
    }
    save(tmp_path / "m.npz", (), meta=meta)
    _, got = load(tmp_path / "m.npz", ())
    assert got["key"] == k and isinstance(got["key"], Key)
    assert got["key"].generator().random() == k.generator().random()
    assert got["root"] == key(0)
    assert got["history"]["keys"] == [key(1), {"nested": k}]
    assert got["history"]["loss"][:2] == [1.5, 0.25] and np.isnan(got["history"]["loss"][2])
    assert got["step"] == 40 and type(got["step"]) is int
    assert got["lr"] == 0.5 and got["done"] is True and got["note"] == "ünïcode ✓"
    assert read_meta(tmp_path / "m.npz")["key"] == k


@settings(max_examples=40, deadline=None)
@given(
    a=hnp.arrays(
        dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int64, np.uint16, np.bool_, np.complex64]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    )
)
def test_any_array_round_trips(a: Array) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h.npz"
        tree = {"x": a, "pair": Pair(a, None)}
        save(path, tree)
        got, _ = load(path, skeleton(tree))
    assert_bit_identical(got, tree)


# --------------------------------------------------------------------------------------------
# The file itself
# --------------------------------------------------------------------------------------------


def test_file_is_a_plain_npz_with_a_json_manifest(tmp_path: Path) -> None:
    tree = TREES["affine-params"]
    path = tmp_path / "ck.npz"
    save(path, tree, meta={"key": key(3), "epoch": 2})
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(tree_paths(tree) + ["__manifest__"])
        for p, leaf in zip(tree_paths(tree), tree_leaves(tree)):
            assert np.array_equal(npz[p], leaf)
        raw = npz["__manifest__"]
    assert raw.dtype == np.uint8
    m = json.loads(raw.tobytes().decode("utf-8"))
    assert m["format"] == checkpoint.FORMAT and m["format_version"] == 1  # no meta arrays: readable by fnnet before version 2
    assert m["fnnet_version"] == fnnet.__version__
    assert [e["path"] for e in m["leaves"]] == tree_paths(tree)
    assert [tuple(e["shape"]) for e in m["leaves"]] == [np.shape(x) for x in tree_leaves(tree)]
    assert [np.dtype(e["dtype"]) for e in m["leaves"]] == [np.asarray(x).dtype for x in tree_leaves(tree)]
    assert m["meta"] == {"key": {"__fnnet_key__": {"seed": 3, "path": []}}, "epoch": 2}
    assert read_manifest(path)["meta"] == {"key": key(3), "epoch": 2}
    assert not (tmp_path / "ck.npz.json").exists()  # one file, no sidecar
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]  # no temporary left behind


def test_leaf_at_a_path_named_like_a_savez_argument(tmp_path: Path) -> None:
    tree = {"file": arr((2,), np.float32), "allow_pickle": arr((1,), np.int64), "args": [arr((), np.float64)]}
    save(tmp_path / "s.npz", tree)
    got, _ = load(tmp_path / "s.npz", skeleton(tree))
    assert_bit_identical(got, tree)


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    save(path, {"w": np.zeros(3)}, meta={"v": 1})
    save(path, {"w": np.ones(3)}, meta={"v": 2})
    got, meta = load(path, {"w": np.zeros(3)})
    assert np.array_equal(got["w"], np.ones(3)) and meta == {"v": 2}


# --------------------------------------------------------------------------------------------
# Mismatches against the skeleton
# --------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "ck.npz"
    save(path, {"enc": AffineParams(np.ones((4, 3), np.float32), np.zeros(3, np.float32)), "step": np.int64(5)})
    return path


def like(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"enc": AffineParams(np.zeros((4, 3), np.float32), np.zeros(3, np.float32)), "step": np.int64(0)}
    base.update(changes)
    return base


@pytest.mark.parametrize(
    "skel, words",
    [
        (like(enc=AffineParams(np.zeros((4, 2), np.float32), np.zeros(3, np.float32))),
         r"leaf 'enc/w': file has shape \(4, 3\) dtype float32, skeleton has shape \(4, 2\) dtype float32"),
        (like(enc=AffineParams(np.zeros((4, 3), np.float64), np.zeros(3, np.float32))),
         r"leaf 'enc/w': file has shape \(4, 3\) dtype float32, skeleton has shape \(4, 3\) dtype float64"),
        (like(step=np.int32(0)), r"leaf 'step': file has shape \(\) dtype int64, skeleton has shape \(\) dtype int32"),
        (like(extra=np.zeros(2)), r"only in the skeleton \['extra'\]"),
        ({"enc": AffineParams(np.zeros((4, 3), np.float32), np.zeros(3, np.float32))}, r"only in the file \['step'\]"),
        (like(enc=Pair(np.zeros((4, 3), np.float32), np.zeros(3, np.float32))), r"only in the file \['enc/w'\], only in the skeleton \['enc/a'\]"),
    ],
)
def test_mismatch_names_the_path_and_both_values(saved: Path, skel: Any, words: str) -> None:
    with pytest.raises(FormatError, match=words) as info:
        load(saved, skel)
    assert str(saved) in str(info.value)


def test_restored_leaves_take_the_skeletons_types(saved: Path) -> None:
    got, _ = load(saved, like(step=np.array(0, dtype=np.int64)))
    assert type(got["step"]) is np.ndarray and got["step"].shape == () and int(got["step"]) == 5
    got, _ = load(saved, like(step=0))  # a Python int of the same dtype (int64)
    assert type(got["step"]) is int and got["step"] == 5
    assert type(got["enc"]) is AffineParams


# --------------------------------------------------------------------------------------------
# Damaged files
# --------------------------------------------------------------------------------------------

BIG: dict[str, Array] = {"w": np.arange(4096, dtype=np.float64), "b": np.arange(10, dtype=np.float32)}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz", BIG)


@pytest.mark.parametrize("keep", [0, 10, 100, 1000, 20000, -22, -1])
def test_truncated_file_is_a_clear_error(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "ck.npz"
    save(path, BIG, meta={"a": 1})
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[: len(data) + keep])
    with pytest.raises(FormatError) as info:
        load(path, BIG)
    assert str(path) in str(info.value)


def test_flipped_bytes_in_the_data_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    save(path, BIG)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("w.npy")
    off = info.header_offset  # local header: 30 fixed bytes, then the name and the extra field
    name_len, extra_len = (int.from_bytes(data[off + i : off + i + 2], "little") for i in (26, 28))
    middle = off + 30 + name_len + extra_len + info.file_size // 2
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="ck.npz: leaf 'w' .*CRC"):
        load(path, BIG)


def rewrite_entry(path: Path, name: str, data: bytes) -> None:
    """Replace one member of the zip ``path`` by raw ``data``."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


@pytest.mark.parametrize(
    "kind", ["garbage", "empty", "npy", "plain-npz", "pickle", "bad-manifest", "raw-manifest", "raw-leaf", "extra-entry"]
)
def test_foreign_or_damaged_files_are_rejected(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.npz"
    if kind == "garbage":
        path.write_bytes(b"PK\x03\x04 this is not a zip file at all" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "plain-npz":
        with open(path, "wb") as f:
            np.savez(f, w=np.zeros(3))
    elif kind == "pickle":
        with open(path, "wb") as f:
            np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif kind == "bad-manifest":
        with open(path, "wb") as f:
            np.savez(f, w=BIG["w"], b=BIG["b"], __manifest__=np.frombuffer(b'{"format": "fnnet-chec', np.uint8))
    elif kind == "raw-manifest":
        save(path, BIG)
        rewrite_entry(path, "__manifest__.npy", b"raw bytes, not an .npy array")
    elif kind == "raw-leaf":
        save(path, BIG)
        rewrite_entry(path, "w.npy", b"raw bytes, not an .npy array")
    else:
        save(path, BIG)
        with zipfile.ZipFile(path, "a") as zf:
            with zf.open("stray.npy", "w") as f:
                np.lib.format.write_array(f, np.zeros(2), allow_pickle=False)
    with pytest.raises(FormatError) as info:
        load(path, BIG)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------------
# Failing saves leave nothing behind
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tree, meta, words",
    [
        (BIG, {"bad": object()}, "meta is not JSON-serialisable"),
        (BIG, {"arr": np.zeros(3)}, "put arrays in the tree"),
        (BIG, {(1, 2): "tuple key"}, "meta is not JSON-serialisable"),
        (BIG, ["not", "a", "dict"], "meta must be a dict"),
        ({"w": np.array([object()], dtype=object)}, None, "leaf 'w' has dtype object"),
        ({"w": "a string"}, None, "leaf 'w' is a str"),
        ({"w": 2**80}, None, "leaf 'w'"),
        ({1: np.zeros(2), "1": np.zeros(2)}, None, "share the path '1'"),
        ({"__manifest__": np.zeros(2)}, None, "share the path '__manifest__'"),
    ],
)
def test_failing_save_leaves_no_file_and_keeps_the_old_one(tmp_path: Path, tree: Any, meta: Any, words: str) -> None:
    path = tmp_path / "ck.npz"
    with pytest.raises(ValueError, match=words):
        save(path, tree, meta=meta)
    assert os.listdir(tmp_path) == []
    save(path, {"w": np.ones(2)})
    old = path.read_bytes()
    with pytest.raises(ValueError, match=words):
        save(path, tree, meta=meta)
    assert os.listdir(tmp_path) == ["ck.npz"] and path.read_bytes() == old


def test_crash_while_writing_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ck.npz"
    save(path, {"w": np.ones(2)}, meta={"v": 1})
    old = path.read_bytes()
    real_write = np.lib.format.write_array
    calls = []

    def failing(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        save(path, BIG, meta={"v": 2})
    assert os.listdir(tmp_path) == ["ck.npz"] and path.read_bytes() == old
    monkeypatch.undo()
    assert load(path, {"w": np.zeros(2)})[1] == {"v": 1}


def test_save_and_load_never_touch_the_trees(tmp_path: Path) -> None:
    tree = {"w": arr((3, 2), np.float64)}
    tree["w"].flags.writeable = False
    skel = {"w": np.zeros((3, 2))}
    skel["w"].flags.writeable = False
    save(tmp_path / "ck.npz", tree)
    got, _ = load(tmp_path / "ck.npz", skel)
    assert np.array_equal(skel["w"], np.zeros((3, 2)))
    assert not np.shares_memory(got["w"], tree["w"]) and got["w"].flags.writeable
    leaves, _ = tree_flatten(got)
    assert len(leaves) == 1
