"""Audit of the data-set API as a user meets it: name and directory look-up, load options, and
download() against a real HTTP server on 127.0.0.1 (404, truncated and oversized bodies, wrong
bytes, a stalled mirror, Ctrl-C, two processes at once, an unusable cache)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import pwd
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import fnnet
import fnnet.datasets.sources as sources
from fnnet.datasets import download, load_mnist, search_paths
from fnnet.errors import FormatError
from fnnet.typing import Array

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
ROOT = Path(fnnet.__file__).resolve().parent.parent


def idx(a: Array) -> bytes:
    """An uint8 IDX file: magic 00 00 08 ndim, big-endian uint32 sizes, the bytes."""
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def make_set(d: Path, n_train: int, n_test: int, *, gz: tuple[bool, ...] = (True,) * 4) -> dict[str, Array]:
    """Four small IDX files in ``d`` (file i gzip-compressed when ``gz[i]``); returns the arrays."""
    d.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(n_train)
    arrays = {
        STEMS[0]: g.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        STEMS[1]: (np.arange(n_train) % 10).astype(np.uint8),
        STEMS[2]: g.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        STEMS[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }
    for (stem, a), z in zip(arrays.items(), gz):
        (d / (stem + ".gz" if z else stem)).write_bytes(gzip.compress(idx(a), mtime=0) if z else idx(a))
    return arrays


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No FNNET_DATA, an empty user cache and an empty system dir, all under ``tmp_path``."""
    monkeypatch.delenv("FNNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "_SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path


def no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """$HOME and $XDG_CACHE_HOME unset, and no entry for the user in the password database."""

    def unknown(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", unknown)


# --------------------------------------------------------------------------------------------
# Look-up
# --------------------------------------------------------------------------------------------


def test_no_home_directory_leaves_the_other_places_usable(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A container running an arbitrary uid: $HOME unset and no passwd entry (Path.home() raises).
    make_set(isolated / "mine", 7, 3)
    no_home(monkeypatch)
    (x, _), _ = load_mnist("mnist", path=isolated / "mine")
    assert len(x) == 7
    assert search_paths("mnist") == [isolated / "system" / "mnist"]
    with pytest.raises(FileNotFoundError, match=r"~/\.cache/fnnet/mnist: no home directory") as info:
        load_mnist("mnist")
    assert "download('mnist', cache_dir=DIR)" in str(info.value)
    with pytest.raises(ValueError, match="no user cache.*cache_dir="):
        download("mnist", fetch=lambda url: b"")
    monkeypatch.setenv("HOME", "relative/home")  # not a place to write a cache into
    assert search_paths("mnist") == [isolated / "system" / "mnist"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "xdg"))  # an absolute XDG cache needs no home
    assert search_paths("mnist")[0] == isolated / "xdg" / "fnnet" / "mnist"


def test_fnnet_data_mistakes_are_explained(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated / "a-file").write_bytes(b"")
    monkeypatch.setenv("FNNET_DATA", str(isolated / "a-file"))
    with pytest.raises(FileNotFoundError, match=f"a-file/mnist: no such directory \\({isolated / 'a-file'} is not a directory\\)"):
        load_mnist("mnist")
    (isolated / "empty").mkdir()
    monkeypatch.setenv("FNNET_DATA", str(isolated / "empty"))
    with pytest.raises(FileNotFoundError, match="empty/mnist: no such directory\n"):
        load_mnist("mnist")
    # FNNET_DATA set to the set itself instead of the directory above it.
    make_set(isolated / "sets" / "mnist", 5, 2)
    monkeypatch.setenv("FNNET_DATA", str(isolated / "sets" / "mnist"))
    with pytest.raises(FileNotFoundError, match=r"FNNET_DATA itself holds the four files.*directory above mnist/"):
        load_mnist("mnist")
    monkeypatch.setenv("FNNET_DATA", str(isolated / "sets"))
    assert len(load_mnist("mnist")[0][0]) == 5


def test_names_that_are_paths_or_near_misses(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_set(isolated / "mine", 6, 2)
    assert len(load_mnist(str(isolated / "mine") + "/")[0][0]) == 6  # a trailing slash is still the directory
    with pytest.raises(FileNotFoundError, match=f"no such directory '{isolated / 'nope'}'"):
        load_mnist(str(isolated / "nope"))
    (isolated / "a-file").write_bytes(b"")
    with pytest.raises(ValueError, match="'.*a-file' is not a directory"):
        load_mnist(str(isolated / "a-file"))
    with pytest.raises(ValueError, match="unknown data set 'MNIST'.*did you mean 'mnist'"):
        load_mnist("MNIST")
    with pytest.raises(ValueError, match="did you mean 'fashion-mnist'"):
        load_mnist("Fashion-MNIST")
    monkeypatch.chdir(isolated)  # no directory "mnist" here
    with pytest.raises(FileNotFoundError, match="no such directory 'mnist/'.*did you mean 'mnist'"):
        load_mnist("mnist/")


def test_incomplete_directory_names_each_missing_file(isolated: Path) -> None:
    make_set(isolated / "part", 6, 2)
    for stem in (STEMS[1], STEMS[3]):
        (isolated / "part" / f"{stem}.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(str(isolated / "part"))
    missing = str(info.value).splitlines()[-1]
    assert f"missing {STEMS[1]}[.gz], {STEMS[3]}[.gz]" in missing
    assert STEMS[0] not in missing and STEMS[2] not in missing


def test_swapped_train_and_test_images_are_one_format_error(isolated: Path) -> None:
    d = isolated / "swapped"
    make_set(d, 12, 5)
    a, b = d / f"{STEMS[0]}.gz", d / f"{STEMS[2]}.gz"
    a.rename(d / "x"), b.rename(a), (d / "x").rename(b)
    with pytest.raises(FormatError, match="5 images but .* has 12 labels") as info:
        load_mnist(str(d))
    assert str(a) in str(info.value) and str(d / f"{STEMS[1]}.gz") in str(info.value)


def test_gzip_and_raw_files_may_be_mixed(isolated: Path) -> None:
    arrays = make_set(isolated / "mixed", 8, 4, gz=(True, False, False, True))
    (x, t), (xt, tt) = load_mnist(str(isolated / "mixed"), normalize=False, flatten=False)
    assert np.array_equal(x[:, 0], arrays[STEMS[0]]) and np.array_equal(t, arrays[STEMS[1]])
    assert np.array_equal(xt[:, 0], arrays[STEMS[2]]) and np.array_equal(tt, arrays[STEMS[3]])


def test_a_dtype_that_is_not_one_is_a_value_error() -> None:
    for normalize in (True, False):
        with pytest.raises(ValueError, match="load_mnist: dtype 'bogus' is not a NumPy dtype"):
            load_mnist(dtype="bogus", normalize=normalize)
