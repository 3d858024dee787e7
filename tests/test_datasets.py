"""Data sets: the IDX reader, MNIST loading and lookup, the checked downloader, keyed batching."""

from __future__ import annotations

import gzip
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import read_only
from hypothesis import given, settings
from hypothesis import strategies as st

import fnnet
import fnnet.datasets.sources as sources
from fnnet.typing import Array
from fnnet.datasets import (
    MNIST_SMALL_TEST,
    MNIST_SMALL_TRAIN,
    NUM_CLASSES,
    batches,
    download,
    load_mnist,
    load_mnist_test,
    read_idx,
    search_paths,
    shuffle,
    train_val_split,
)
from fnnet.random import Key, key

DATA_DIR = Path(fnnet.__file__).parent / "data"
# Published MD5s of the uncompressed MNIST test files (fnnet/data/README.md).
MNIST_TEST_IMAGES_MD5 = "2646ac647ad5339dbf082846283269ea"
MNIST_TEST_LABELS_MD5 = "27ae3e4e09519cfbb04c329615203637"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

# IDX type codes, written independently of the reader's table.
CODES: dict[str, int] = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --------------------------------------------------------------------------------------------
# Building IDX files
# --------------------------------------------------------------------------------------------


def idx_bytes(a: Array) -> bytes:
    """An IDX file for ``a``: magic 00 00 code ndim, big-endian uint32 sizes, big-endian payload."""
    kind = a.dtype.kind + str(a.dtype.itemsize)
    head = bytes([0, 0, CODES[kind], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def fake_set(d: Path, n_train: int, n_test: int, *, seed: int, gz: bool = True, hw: tuple[int, int] = (28, 28)) -> dict[str, Array]:
    """Write a tiny MNIST-like set (all classes present) into ``d``; returns its arrays."""
    d.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    arrays = {
        STEMS[0]: g.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        STEMS[1]: (np.arange(n_train) % NUM_CLASSES).astype(np.uint8),
        STEMS[2]: g.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        STEMS[3]: ((np.arange(n_test) + seed) % NUM_CLASSES).astype(np.uint8),
    }
    for stem, a in arrays.items():
        write(d / (stem + (".gz" if gz else "")), idx_bytes(a))
    return arrays


# --------------------------------------------------------------------------------------------
# read_idx
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CODES))
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (0, 7)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_every_type(tmp_path: Path, kind: str, shape: tuple[int, ...], suffix: str) -> None:
    g = np.random.default_rng(len(shape))
    a = (g.standard_normal(shape) * 1000).astype(np.dtype(kind).newbyteorder("="))
    f = write(tmp_path / f"x-{kind}{suffix}", idx_bytes(a))
    b = read_idx(f)
    assert b.dtype == a.dtype and b.dtype.isnative
    assert b.shape == shape
    assert np.array_equal(a, b)
    b.flat[:1] = 0  # a fresh, writable array


def test_read_idx_real_mnist_test_set() -> None:
    images_gz, labels_gz = DATA_DIR / "t10k-images-idx3-ubyte.gz", DATA_DIR / "t10k-labels-idx1-ubyte.gz"
    raw_images, raw_labels = gzip.decompress(images_gz.read_bytes()), gzip.decompress(labels_gz.read_bytes())
    assert hashlib.md5(raw_images).hexdigest() == MNIST_TEST_IMAGES_MD5
    assert hashlib.md5(raw_labels).hexdigest() == MNIST_TEST_LABELS_MD5
    x, t = read_idx(images_gz), read_idx(labels_gz)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert t.shape == (10000,) and t.dtype == np.uint8
    assert x.tobytes() == raw_images[16:] and t.tobytes() == raw_labels[8:]
    assert set(np.unique(t)) == set(range(NUM_CLASSES))


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("cut-payload", GOOD[:-1], "truncated"),
        ("cut-header", GOOD[:9], "truncated header"),
        ("tiny", GOOD[:3], "truncated"),
        ("empty", b"", "truncated"),
        ("long-payload", GOOD + b"\x00", "too long"),
        ("nonzero-magic", b"\x01" + GOOD[1:], "bad magic"),
        ("bad-type-code", GOOD[:2] + b"\x07" + GOOD[3:], "bad magic"),
        ("zero-dims", GOOD[:3] + b"\x00", "zero dimensions"),
        ("wrong-ndim", GOOD[:3] + b"\x02" + GOOD[4:], "too long"),
        # A header claiming 4e9 x 4e9 x 4e9 elements: rejected from the byte count, no allocation.
        ("huge-header", GOOD[:4] + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1) + GOOD[16:], "truncated"),
    ],
)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_rejects_bad_files_naming_them(tmp_path: Path, name: str, data: bytes, words: str, suffix: str) -> None:
    f = write(tmp_path / f"{name}-idx3-ubyte{suffix}", data)
    with pytest.raises(ValueError, match=words) as info:
        read_idx(f)
    assert str(f) in str(info.value)


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("not-gzip.gz", GOOD, "not gzip"),
        ("cut-gzip.gz", gzip.compress(GOOD)[:-6], "gzip"),
        ("crc-gzip.gz", gzip.compress(GOOD)[:-8] + b"\x00\x00\x00\x00" + gzip.compress(GOOD)[-4:], "gzip"),
        ("garbage-gzip", b"\x1f\x8b" + bytes(range(40)), "gzip"),
    ],
)
def test_read_idx_rejects_bad_gzip_naming_the_file(tmp_path: Path, name: str, data: bytes, words: str) -> None:
    f = tmp_path / name
    f.write_bytes(data)
    with pytest.raises(ValueError, match=words) as info:
        read_idx(f)
    assert str(f) in str(info.value)


# --------------------------------------------------------------------------------------------
# load_mnist: options and the embedded split
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot", [True, False])
def test_load_mnist_options(normalize: bool, flatten: bool, one_hot: bool) -> None:
    (x_tr, t_tr), (x_te, t_te) = load_mnist("mnist-small", normalize=normalize, flatten=flatten, one_hot=one_hot)
    raw_x, raw_t = load_mnist_test(normalize=False, flatten=True, one_hot=False)
    for x, t, n, sl in [(x_tr, t_tr, MNIST_SMALL_TRAIN, slice(0, 8000)), (x_te, t_te, MNIST_SMALL_TEST, slice(8000, None))]:
        assert x.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        if normalize:
            assert x.dtype == np.float32
            assert 0.0 <= x.min() and x.max() == 1.0
            assert np.array_equal(x.reshape(n, 784), raw_x[sl].astype(np.float32) / np.float32(255))
        else:
            assert x.dtype == np.uint8 and x.max() == 255
            assert np.array_equal(x.reshape(n, 784), raw_x[sl])
        if one_hot:
            assert t.shape == (n, NUM_CLASSES) and t.dtype == np.float32
            assert np.array_equal(t.sum(axis=1), np.ones(n))
            assert set(np.unique(t)) == {0.0, 1.0}
            assert np.array_equal(t.argmax(axis=1), raw_t[sl])
        else:
            assert t.shape == (n,) and t.dtype == np.int64
            assert np.array_equal(t, raw_t[sl])


def test_load_mnist_dtype_and_fresh_arrays() -> None:
    (x, t), _ = load_mnist(dtype=np.float64, one_hot=True)
    assert x.dtype == np.float64 and t.dtype == np.float64
    x[:] = -1.0  # the caller owns the result: the next call is unaffected
    (x2, _), _ = load_mnist(dtype=np.float64)
    assert x2.min() == 0.0
    with pytest.raises(ValueError, match="floating dtype"):
        load_mnist(dtype=np.int32)


def test_mnist_small_split_is_fixed_disjoint_and_has_every_class() -> None:
    (x_tr, t_tr), (x_te, t_te) = load_mnist("mnist-small", normalize=False)
    x_all, t_all = load_mnist_test(normalize=False)
    assert (len(x_tr), len(x_te)) == (MNIST_SMALL_TRAIN, MNIST_SMALL_TEST) == (8000, 2000)
    assert np.array_equal(np.concatenate([x_tr, x_te]), x_all)
    assert np.array_equal(np.concatenate([t_tr, t_te]), t_all)
    train_images = {row.tobytes() for row in x_tr}
    assert not any(row.tobytes() in train_images for row in x_te)
    assert set(t_tr) == set(t_te) == set(range(NUM_CLASSES))


def test_load_mnist_test_is_the_whole_embedded_set() -> None:
    x, t = load_mnist_test(flatten=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32 and t.shape == (10000,)
    assert np.bincount(t, minlength=NUM_CLASSES).min() > 0


def test_load_mnist_rejects_unknown_names_and_path_with_small() -> None:
    with pytest.raises(ValueError, match="unknown data set 'kmnist'"):
        load_mnist("kmnist")
    with pytest.raises(ValueError, match="path"):
        load_mnist("mnist-small", path="/tmp")


# --------------------------------------------------------------------------------------------
# load_mnist: finding the real sets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("hw", [(28, 28), (4, 5)])
def test_load_from_fnnet_data(isolated: Path, monkeypatch: pytest.MonkeyPatch, gz: bool, hw: tuple[int, int]) -> None:
    arrays = fake_set(isolated / "env" / "mnist", 30, 20, seed=1, gz=gz, hw=hw)
    monkeypatch.setenv("FNNET_DATA", str(isolated / "env"))
    (x, t), (xt, tt) = load_mnist("mnist", normalize=False, flatten=False)
    assert x.shape == (30, 1, *hw) and xt.shape == (20, 1, *hw)
    assert np.array_equal(x[:, 0], arrays[STEMS[0]]) and np.array_equal(t, arrays[STEMS[1]])
    assert np.array_equal(xt[:, 0], arrays[STEMS[2]]) and np.array_equal(tt, arrays[STEMS[3]])


def test_lookup_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """explicit path, then $FNNET_DATA/name, then the user cache, then the system directory."""
    places = {
        "explicit": isolated / "explicit",
        "env": isolated / "env" / "fashion-mnist",
        "cache": isolated / "cache" / "fnnet" / "fashion-mnist",
        "system": isolated / "system" / "fashion-mnist",
    }
    sizes = {"explicit": 11, "env": 12, "cache": 13, "system": 14}
    for where, d in places.items():
        fake_set(d, sizes[where], 10, seed=sizes[where])
    monkeypatch.setenv("FNNET_DATA", str(isolated / "env"))
    assert search_paths("fashion-mnist", places["explicit"]) == list(places.values())

    def n_train(**kw: Any) -> int:
        (x, _), _ = load_mnist("fashion-mnist", **kw)
        return len(x)

    assert n_train(path=places["explicit"]) == sizes["explicit"]
    assert n_train() == sizes["env"]
    (places["env"] / f"{STEMS[3]}.gz").unlink()  # an incomplete set is passed over
    assert n_train() == sizes["cache"]
    monkeypatch.delenv("FNNET_DATA")
    assert n_train() == sizes["cache"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "elsewhere"))
    assert n_train() == sizes["system"]


def test_default_cache_is_home_dot_cache(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(isolated / "home"))
    fake_set(isolated / "home" / ".cache" / "fnnet" / "mnist", 9, 10, seed=3)
    (x, _), _ = load_mnist("mnist")
    assert len(x) == 9


def test_name_may_be_a_directory(isolated: Path) -> None:
    arrays = fake_set(isolated / "mine", 15, 10, seed=4, gz=False)
    (_, t), _ = load_mnist(str(isolated / "mine"))
    assert np.array_equal(t, arrays[STEMS[1]])
    (isolated / "mine" / STEMS[2]).unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-images-idx3-ubyte"):
        load_mnist(str(isolated / "mine"))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_not_found_lists_every_place_and_how_to_get_it(isolated: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("FNNET_DATA", str(isolated / "env"))
    (isolated / "explicit").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(name, path=isolated / "explicit")
    msg = str(info.value)
    places = [isolated / "explicit", isolated / "env" / name, isolated / "cache" / "fnnet" / name, isolated / "system" / name]
    positions = [msg.index(str(p) + ":") for p in places]
    assert positions == sorted(positions)  # listed in search order
    assert f"download({name!r})" in msg and "FNNET_DATA" in msg and "--data DIR" in msg
    assert ("apt-get install dataset-fashion-mnist" in msg) == (name == "fashion-mnist")


def test_not_found_mentions_unset_fnnet_data(isolated: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"\$FNNET_DATA/mnist: FNNET_DATA is not set"):
        load_mnist("mnist")


def test_inconsistent_sets_name_the_file(isolated: Path) -> None:
    d = isolated / "bad"
    fake_set(d, 10, 10, seed=5)
    write(d / f"{STEMS[1]}.gz", idx_bytes(np.zeros(9, np.uint8)))
    with pytest.raises(ValueError, match="10 images but .*train-labels.* has 9 labels"):
        load_mnist(str(d))
    write(d / f"{STEMS[1]}.gz", idx_bytes(np.full(10, NUM_CLASSES, np.uint8)))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: .*label 10 out of range"):
        load_mnist(str(d))
    write(d / f"{STEMS[1]}.gz", idx_bytes(np.zeros((10, 2), np.uint8)))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: .*expected uint8 labels"):
        load_mnist(str(d))
    (d / f"{STEMS[1]}.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: .*corrupt or truncated gzip"):
        load_mnist(str(d))


def test_debian_fashion_mnist_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not DEBIAN_FASHION.is_dir():
        pytest.skip(
            f"{DEBIAN_FASHION} is absent: install Debian's dataset-fashion-mnist package "
            "(apt-get install dataset-fashion-mnist; .ci/run does) to run this test"
        )
    monkeypatch.delenv("FNNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing cached: the system copy is used
    (x, t), (xt, tt) = load_mnist("fashion-mnist", normalize=False)
    assert x.shape == (60000, 784) and xt.shape == (10000, 784) and x.dtype == np.uint8
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert np.array_equal(np.bincount(t, minlength=NUM_CLASSES), np.full(NUM_CLASSES, 6000))
    assert np.array_equal(np.bincount(tt, minlength=NUM_CLASSES), np.full(NUM_CLASSES, 1000))
    readme = Path("/usr/share/doc/dataset-fashion-mnist/README.md.gz")
    if readme.is_file():  # the download table's MD5s are the ones the data set publishes
        text = gzip.decompress(readme.read_bytes()).decode()
        assert all(md5 in text for md5 in sources._SOURCES["fashion-mnist"].md5.values())


# --------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------


class FakeMirror:
    """A fetch double: serves files by name, can fail or corrupt some, records every URL."""

    def __init__(self, files: dict[str, bytes], *, down: str = "", corrupt: str = "") -> None:
        self.files, self.down, self.corrupt = files, down, corrupt
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        if self.down and url.startswith(self.down):
            raise OSError("connection refused")
        data = self.files[url.rsplit("/", 1)[1]]
        return data[:-1] + bytes([data[-1] ^ 1]) if self.corrupt and url.endswith(self.corrupt) else data


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Locally built .gz files and a source table for 'mnist' holding their MD5s."""
    src = tmp_path / "src"
    fake_set(src, 20, 10, seed=6)
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    table = sources._Source(("https://a.example/m/", "https://b.example/m/"), {n: hashlib.md5(b).hexdigest() for n, b in files.items()})
    monkeypatch.setitem(sources._SOURCES, "mnist", table)
    return files


def test_download_writes_verified_files(tmp_path: Path, served: dict[str, bytes]) -> None:
    fetch = FakeMirror(served)
    d = download("mnist", cache_dir=tmp_path / "cache", fetch=fetch)
    assert d == tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in d.iterdir()) == sorted(served)
    assert all((d / n).read_bytes() == b for n, b in served.items())
    assert all(u.startswith("https://a.example/m/") for u in fetch.urls) and len(fetch.urls) == 4
    (x, _), _ = load_mnist("mnist", path=d)
    assert len(x) == 20
    again = FakeMirror(served)
    download("mnist", cache_dir=tmp_path / "cache", fetch=again)
    assert again.urls == []  # verified files are kept


def test_download_default_cache_is_searched(isolated: Path, served: dict[str, bytes]) -> None:
    d = download("mnist", fetch=FakeMirror(served))
    assert d == isolated / "cache" / "fnnet" / "mnist"
    (x, _), _ = load_mnist("mnist")
    assert len(x) == 20


def test_download_falls_back_to_the_next_mirror(tmp_path: Path, served: dict[str, bytes]) -> None:
    fetch = FakeMirror(served, down="https://a.example/")
    d = download("mnist", cache_dir=tmp_path, fetch=fetch)
    assert sorted(p.name for p in d.iterdir()) == sorted(served)
    assert sum(u.startswith("https://b.example/") for u in fetch.urls) == 4


def test_download_checksum_mismatch_leaves_no_file(tmp_path: Path, served: dict[str, bytes]) -> None:
    bad = "t10k-images-idx3-ubyte.gz"
    with pytest.raises(ValueError, match=f"could not get {bad}") as info:
        download("mnist", cache_dir=tmp_path, fetch=FakeMirror(served, corrupt=bad))
    assert "https://a.example/m/" + bad in str(info.value) and "https://b.example/m/" + bad in str(info.value)
    assert "MD5" in str(info.value)
    names = [p.name for p in (tmp_path / "mnist").iterdir()] if (tmp_path / "mnist").exists() else []
    assert bad not in names and not any(n.endswith(".tmp") for n in names)


def test_download_replaces_a_corrupt_cached_file(tmp_path: Path, served: dict[str, bytes]) -> None:
    (tmp_path / "mnist").mkdir()
    stale = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    stale.write_bytes(b"half a file")
    download("mnist", cache_dir=tmp_path, fetch=FakeMirror(served))
    assert stale.read_bytes() == served[stale.name]


def test_download_rejects_unknown_names_and_the_tables_are_complete() -> None:
    with pytest.raises(ValueError, match="unknown data set"):
        download("mnist-small", fetch=lambda url: b"")
    for name in ("mnist", "fashion-mnist"):
        src = sources._SOURCES[name]
        assert sorted(src.md5) == sorted(f"{s}.gz" for s in STEMS)
        assert all(len(m) == 32 and int(m, 16) >= 0 for m in src.md5.values())
        assert src.mirrors and all(u.startswith(("https://", "http://")) and u.endswith("/") for u in src.mirrors)


# --------------------------------------------------------------------------------------------
# shuffle, train_val_split, batches
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, feature_shape", [(1, (3,)), (17, (2, 3)), (100, ())])
def test_shuffle_same_permutation_deterministic_and_pure(n: int, feature_shape: tuple[int, ...]) -> None:
    x = read_only(np.arange(n * int(np.prod(feature_shape))).reshape(n, *feature_shape))
    t = read_only(np.arange(n) * 10)
    xs, ts = shuffle(key(1), x, t)
    ids = xs.reshape(n, -1)[:, 0] // max(1, int(np.prod(feature_shape)))
    assert np.array_equal(ts, ids * 10)  # pairs kept together
    assert sorted(ids.tolist()) == list(range(n))  # a permutation
    again = shuffle(key(1), x, t)
    assert np.array_equal(again[0], xs) and np.array_equal(again[1], ts)
    if n > 5:
        assert not np.array_equal(shuffle(key(2), x, t)[1], ts)
    assert np.array_equal(t, np.arange(n) * 10)


def test_shuffle_validates() -> None:
    with pytest.raises(ValueError, match="same length"):
        shuffle(key(0), np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        shuffle(key(0))
    with pytest.raises(ValueError, match="Key"):
        shuffle(0, np.zeros(3))  # type: ignore[arg-type]


@pytest.mark.parametrize("n, val_size, n_val", [(10, 3, 3), (10, 0.25, 2), (50, 0.2, 10), (2, 1, 1), (7, 0.5, 4)])
def test_train_val_split_partitions(n: int, val_size: float, n_val: int) -> None:
    x = read_only(np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 3)))
    t = read_only(np.arange(n))
    (x_tr, t_tr), (x_val, t_val) = train_val_split(key(4), x, t, val_size=val_size)
    assert len(t_val) == n_val and len(t_tr) == n - n_val
    assert sorted(np.concatenate([t_tr, t_val]).tolist()) == list(range(n))  # each sample exactly once
    assert np.array_equal(x_tr[:, 0], t_tr) and np.array_equal(x_val[:, 2], t_val)
    (_, again), _ = train_val_split(key(4), x, t, val_size=val_size)
    assert np.array_equal(again, t_tr)


def test_train_val_split_depends_on_key() -> None:
    t = np.arange(100)
    picks = {tuple(train_val_split(k, t, t, val_size=10)[1][1]) for k in (key(0), key(1), key(0))}
    assert len(picks) == 2


@pytest.mark.parametrize("val_size", [0, 10, 11, -1, 0.0, 1.0, 0.01, True, "3"])
def test_train_val_split_rejects_bad_sizes(val_size: Any) -> None:
    with pytest.raises(ValueError, match="val_size"):
        train_val_split(key(0), np.zeros(10), np.zeros(10), val_size=val_size)


def test_train_val_split_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length.*\\[10, 9\\]"):
        train_val_split(key(0), np.zeros(10), np.zeros(9), val_size=2)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60),
    batch_size=st.integers(1, 25),
    do_shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_batches_cover_each_sample_once(n: int, batch_size: int, do_shuffle: bool, drop_last: bool, seed: int) -> None:
    x = read_only(np.arange(n * 2).reshape(n, 2))
    t = read_only(np.arange(n) + 1000)
    k: Key | None = key(seed) if do_shuffle else None
    out = list(batches(k, x, t, batch_size, shuffle=do_shuffle, drop_last=drop_last))
    sizes = [len(tb) for _, tb in out]
    full, rest = divmod(n, batch_size)
    assert sizes == [batch_size] * full + ([rest] if rest and not drop_last else [])
    seen = np.concatenate([tb for _, tb in out]) - 1000 if out else np.zeros(0, int)
    assert len(set(seen.tolist())) == len(seen)  # never twice
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n))  # every sample
    for xb, tb in out:
        assert np.array_equal(xb[:, 0] // 2, tb - 1000)  # pairs kept together
    if not do_shuffle:
        assert np.array_equal(seen, np.arange(len(seen)))
    again = [tb for _, tb in batches(k, x, t, batch_size, shuffle=do_shuffle, drop_last=drop_last)]
    assert all(np.array_equal(a, tb) for a, (_, tb) in zip(again, out))
    assert np.array_equal(t, np.arange(n) + 1000)


def test_batches_order_depends_on_key() -> None:
    t = np.arange(50)

    def first(k: Key) -> Array:
        return next(iter(batches(k, t, t, 10)))[1]

    assert np.array_equal(first(key(3)), first(key(3)))
    assert not np.array_equal(first(key(3)), first(key(4)))


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: batches(None, np.zeros(4), np.zeros(4), 2), "needs a key"),
        (lambda: batches(key(0), np.zeros(4), np.zeros(5), 2), "same length"),
        (lambda: batches(key(0), np.zeros(4), np.zeros(4), 0), "batch_size"),
        (lambda: batches(key(0), np.zeros(4), np.zeros(4), True), "batch_size"),
        (lambda: batches(key(0), np.zeros(4), np.zeros(4), 2.0), "batch_size"),  # type: ignore[arg-type]
        (lambda: batches("k", np.zeros(4), np.zeros(4), 2), "Key"),  # type: ignore[arg-type]
    ],
)
def test_batches_validate_when_called(call: Callable[[], object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        call()  # no iteration needed
