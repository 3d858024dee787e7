"""Regression tests for the readers' problems left by the last audit: hostile gzip headers of IDX
files, the memory a sequence file costs to read, what a failed download leaves in the cache, and
the not-found hint when there is no usable user cache."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import no_home, peak_bytes
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fnnet.datasets import decode, download, load_mnist, load_sequence, read_idx, read_sequence_file, sources
from fnnet.datasets import sequence as sequence_module
from fnnet.errors import FormatError
from fnnet.typing import Array

# --------------------------------------------------------------------------------------------
# IDX .gz: the gzip header is parsed with bounds, not a byte at a time
# --------------------------------------------------------------------------------------------

_IDX = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
_ARRAY = np.arange(6, dtype=np.uint8).reshape(2, 3)


def _member(payload: bytes, flags: int = 0, fields: bytes = b"", header_crc: int | None = None) -> bytes:
    """One gzip member: the 10 fixed header bytes with ``flags``, then ``fields`` as given (and a
    correct header CRC when FHCRC is set, unless ``header_crc`` gives another)."""
    head = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\x00\xff" + fields
    if flags & 0x02:
        crc = zlib.crc32(head) & 0xFFFF if header_crc is None else header_crc
        head += crc.to_bytes(2, "little")
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(payload) + c.flush()
    return head + body + zlib.crc32(payload).to_bytes(4, "little") + len(payload).to_bytes(4, "little")


def _write(tmp_path: Path, data: bytes) -> Path:
    f = tmp_path / "x-idx2-ubyte.gz"
    f.write_bytes(data)
    return f


@pytest.mark.parametrize("flag, what", [(0x08, "file name"), (0x10, "comment")])
def test_a_huge_gzip_name_or_comment_is_refused_at_once(tmp_path: Path, flag: int, what: str) -> None:
    # 8 MB without a NUL: gzip accepts it after reading it a byte at a time (about a second).
    f = _write(tmp_path, _member(_IDX, flag, b"a" * (8 << 20) + b"\0"))
    t0 = time.perf_counter()
    with pytest.raises(FormatError) as info:
        read_idx(f)
    assert time.perf_counter() - t0 < 0.5
    assert info.value.path == str(f) and info.value.where == "gzip header, byte 10"
    assert info.value.reason.startswith(f"{what} longer than 4095 bytes")


def test_gzip_names_up_to_the_bound_are_read(tmp_path: Path) -> None:
    name, comment, extra = b"n" * 4095 + b"\0", b"c" * 4095 + b"\0", b"\xff\xff" + bytes(65535)
    data = _member(_IDX, 0x04 | 0x08 | 0x10 | 0x02, extra + name + comment)
    assert gzip.decompress(data) == _IDX
    assert np.array_equal(read_idx(_write(tmp_path, data)), _ARRAY)
    with pytest.raises(FormatError, match="byte 10: file name longer than 4095"):
        read_idx(_write(tmp_path, _member(_IDX, 0x08, b"n" * 4096 + b"\0")))


def test_a_huge_name_in_a_second_member_is_refused(tmp_path: Path) -> None:
    first = _member(_IDX)
    f = _write(tmp_path, first + _member(b"", 0x08, b"a" * (8 << 20) + b"\0"))
    with pytest.raises(FormatError) as info:
        read_idx(f)
    assert info.value.where == f"gzip header, byte {len(first) + 10}"


def test_header_crc_and_reserved_flags_are_checked(tmp_path: Path) -> None:
    assert np.array_equal(read_idx(_write(tmp_path, _member(_IDX, 0x02))), _ARRAY)
    bad = _member(_IDX, 0x02, header_crc=0x1234)
    assert gzip.decompress(bad) == _IDX  # Python's gzip does not look at the header CRC
    with pytest.raises(FormatError, match=r"gzip header, byte 10: .*header CRC 1234 does not match"):
        read_idx(_write(tmp_path, bad))
    with pytest.raises(FormatError, match=r"gzip header, byte 3: .*reserved header flags set \(0x20\)"):
        read_idx(_write(tmp_path, _member(_IDX, 0x20)))
    with pytest.raises(FormatError, match=r"gzip header, byte 2: .*compression method 7"):
        read_idx(_write(tmp_path, b"\x1f\x8b\x07" + _member(_IDX)[3:]))


def test_members_padding_and_trailers(tmp_path: Path) -> None:
    # Two members with NUL padding between and after them read as gzip reads them (which skips
    # the padding a byte at a time: about 1.2 s per 8 MiB).
    data = _member(_IDX[:5]) + bytes(16 << 20) + _member(_IDX[5:]) + bytes(100)
    assert gzip.decompress(data[: 1 << 20] + data[-200:]) == _IDX
    f = _write(tmp_path, data)
    t0 = time.process_time()
    assert np.array_equal(read_idx(f), _ARRAY)
    assert time.process_time() - t0 < 0.5
    good = _member(_IDX)
    bad_crc = good[:-8] + bytes(4) + good[-4:]
    with pytest.raises(FormatError, match=rf"gzip trailer, byte {len(good) - 8}: .*CRC-32 00000000 in the trailer"):
        read_idx(_write(tmp_path, bad_crc))
    bad_size = good[:-4] + (len(_IDX) + 1).to_bytes(4, "little")
    with pytest.raises(FormatError, match=rf"gzip trailer, byte {len(good) - 4}: .*size 19 in the trailer, 18"):
        read_idx(_write(tmp_path, bad_size))
    with pytest.raises(FormatError, match=rf"gzip member, byte {len(good)}: .*7a7a where a gzip member"):
        read_idx(_write(tmp_path, good + b"zz"))
    for cut in (5, 12, len(good) - 9, len(good) - 3):
        with pytest.raises(FormatError, match="corrupt or truncated gzip data"):
            read_idx(_write(tmp_path, good[:cut]))


# --------------------------------------------------------------------------------------------
# Sequence files: read through a strided view, the ids the only large arrays made
# --------------------------------------------------------------------------------------------


def _sequence_file(tmp_path: Path, lines: int, eol: str = "\n", plus: str = "+") -> Path:
    """``lines`` lines of the addition task's shape (7 + 5 characters, ``plus`` for ``+``), the
    last one ended too."""
    g = np.random.default_rng(lines)
    a, b = g.integers(0, 1000, lines), g.integers(0, 1000, lines)
    f = tmp_path / "sums.txt"
    f.write_bytes("".join(f"{i}{plus}{j}".ljust(7) + f"_{i + j}".ljust(5) + eol for i, j in zip(a, b)).encode())
    return f


@pytest.mark.parametrize(("eol", "plus"), [("\n", "+"), ("\r\n", "+"), ("\n", "é"), ("\n", "中")])
def test_reading_a_sequence_file_peaks_at_a_few_times_its_size(tmp_path: Path, eol: str, plus: str) -> None:
    # The ids (int32, 4 bytes per character) are about 3.7 times an addition file; reading it as
    # Python strings, one per line, peaked at 16 to 18 times.
    f = _sequence_file(tmp_path, 80_000, eol, plus)
    size = f.stat().st_size
    reads: list[Callable[[], object]] = [lambda: read_sequence_file(f), lambda: load_sequence(f)]
    for read in reads:
        peak = peak_bytes(read)
        assert peak < 6.5 * size, (peak / size, eol, plus)
    x, t, vocab = read_sequence_file(f)
    lines = f.read_text(encoding="utf-8").splitlines()
    assert [decode(q, vocab) + decode(a, vocab) for q, a in zip(x[:50], t[:50])] == lines[:50]
    assert x.flags.c_contiguous and x.flags.owndata and t.flags.c_contiguous and t.flags.owndata


def test_load_sequence_splits_as_a_permutation_of_the_file_rows(tmp_path: Path) -> None:
    f = _sequence_file(tmp_path, 1_003)
    x, t, vocab = read_sequence_file(f)
    data = load_sequence(f)
    perm = np.random.RandomState(1984).permutation(1_003)
    assert np.array_equal(data.x_train, x[perm][:903]) and np.array_equal(data.x_test, x[perm][903:])
    assert np.array_equal(data.t_train, t[perm][:903]) and np.array_equal(data.t_test, t[perm][903:])
    assert data.id_to_char == vocab and all(a.dtype == np.int32 for a in data[:4])


def _outcome(read: Callable[[], tuple[Array, Array, tuple[str, ...]]]) -> tuple[Any, ...]:
    try:
        x, t, vocab = read()
    except FormatError as e:
        return ("error", e.where, e.reason)
    return (x.shape, x.tolist(), t.shape, t.tolist(), vocab, x.dtype, t.dtype)


@settings(max_examples=150, deadline=None)
@given(
    widths=st.tuples(st.sampled_from([0, 1, 1, 2, 2, 3, 3]), st.integers(0, 3)),
    n=st.integers(1, 5),
    chars=st.data(),
    eols=st.lists(st.sampled_from(["\n", "\n", "\n", "\r\n", "\r\n", "\r", ""]), min_size=5, max_size=5),
    uniform=st.integers(0, 3),
    final=st.sampled_from(["", "\n", "\r\n", "\n\n"]),
)
def test_the_strided_reading_agrees_with_reading_line_by_line(
    widths: tuple[int, int], n: int, chars: st.DataObject, eols: list[str], uniform: int, final: str
) -> None:
    clean, answers = st.sampled_from("ab1 é中\U0001f600"), st.sampled_from("ab1 _é中")
    any_char = st.sampled_from("ab1 _é中\U0001f600\t\ufeff\xa0")
    q, a = widths
    lines = []
    for _ in range(n):
        damaged = chars.draw(st.integers(0, 9)) == 0
        question = chars.draw(st.text(any_char if damaged else clean, min_size=q, max_size=q))
        answer = chars.draw(st.text(any_char if damaged else answers, min_size=a, max_size=a))
        lines.append(question + ("" if chars.draw(st.integers(0, 19)) == 0 else "_") + answer)
    ends = [eols[0]] * n if uniform else eols[:n]  # mixed line endings one time in four
    text = "".join(line + end for line, end in zip(lines[:-1], ends)) + lines[-1] + final
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "s.txt"
        f.write_bytes(text.encode())
        got = _outcome(lambda: read_sequence_file(f))
        want = _outcome(lambda: sequence_module._read_lines(f, f.read_bytes().decode()))
    event("refused" if got[0] == "error" else "read")
    assert got == want


# --------------------------------------------------------------------------------------------
# download(): a failure leaves no directory it made
# --------------------------------------------------------------------------------------------

_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Four tiny .gz files and a source table for 'mnist' holding their MD5s (in this order)."""
    g = np.random.default_rng(3)
    shapes = {_STEMS[0]: (4, 28, 28), _STEMS[1]: (4,), _STEMS[2]: (2, 28, 28), _STEMS[3]: (2,)}
    files = {}
    for stem, shape in shapes.items():
        a = g.integers(0, 10, shape, dtype=np.uint8)
        raw = bytes([0, 0, 0x08, a.ndim]) + b"".join(s.to_bytes(4, "big") for s in shape) + a.tobytes()
        files[f"{stem}.gz"] = gzip.compress(raw, mtime=0)
    md5 = {n: hashlib.md5(b).hexdigest() for n, b in files.items()}
    monkeypatch.setitem(sources._SOURCES, "mnist", sources._Source(("https://a.example/", "https://b.example/"), md5))
    return files


def _fetch(files: dict[str, bytes], fail_from: int, error: BaseException = OSError("connection refused")) -> Callable[[str], bytes]:
    """Serves ``files`` by name until the ``fail_from``-th distinct file (0-based), which raises ``error``."""
    order = list(files)

    def fetch(url: str) -> bytes:
        name = url.rsplit("/", 1)[1]
        if order.index(name) >= fail_from:
            raise error
        return files[name]

    return fetch


def _tree(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))


def test_a_failed_download_removes_the_directories_it_made(tmp_path: Path, served: dict[str, bytes]) -> None:
    root = tmp_path / "new" / "cache"
    with pytest.raises(ValueError, match="could not get train-images-idx3-ubyte.gz"):
        download("mnist", cache_dir=root, fetch=_fetch(served, 0))
    assert _tree(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        download("mnist", cache_dir=root, fetch=_fetch(served, 0, KeyboardInterrupt()))
    assert _tree(tmp_path) == []


def test_the_default_cache_is_removed_too_when_the_call_made_it(isolated: Path, served: dict[str, bytes]) -> None:
    with pytest.raises(ValueError, match="could not get"):
        download("mnist", fetch=_fetch(served, 0))
    assert not (isolated / "cache").exists()


def test_a_failed_download_keeps_what_was_there_and_what_it_verified(tmp_path: Path, served: dict[str, bytes]) -> None:
    (tmp_path / "mine").mkdir()
    with pytest.raises(ValueError):
        download("mnist", cache_dir=tmp_path / "mine", fetch=_fetch(served, 0))
    assert _tree(tmp_path) == ["mine"]  # the user's directory stays, the set's is gone
    (tmp_path / "mine" / "mnist").mkdir()
    (tmp_path / "mine" / "mnist" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError):
        download("mnist", cache_dir=tmp_path / "mine", fetch=_fetch(served, 0))
    assert _tree(tmp_path) == ["mine", "mine/mnist", "mine/mnist/notes.txt"]
    (tmp_path / "mine" / "mnist" / "notes.txt").unlink()
    (tmp_path / "mine" / "mnist").rmdir()
    with pytest.raises(ValueError, match="could not get train-labels-idx1-ubyte.gz"):
        download("mnist", cache_dir=tmp_path / "new", fetch=_fetch(served, 1))
    assert _tree(tmp_path / "new") == ["mnist", f"mnist/{_STEMS[0]}.gz"]  # the verified file is kept


def test_a_failed_write_removes_the_directories_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: dict[str, bytes]) -> None:
    def full(path: str | os.PathLike[str], data: bytes) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(sources, "atomic_write_bytes", full)
    with pytest.raises(OSError, match="No space left on device"):
        download("mnist", cache_dir=tmp_path / "c", fetch=_fetch(served, 4))
    assert _tree(tmp_path) == []


# --------------------------------------------------------------------------------------------
# The not-found hint: what works without a usable user cache
# --------------------------------------------------------------------------------------------


def _get_it(name: str = "mnist") -> str:
    """The first way to get the set that load_mnist's not-found error suggests."""
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(name)
    return str(info.value).split("Get it with one of:\n  - ", 1)[1].splitlines()[0]



def test_with_a_writable_user_cache_the_hint_is_a_plain_download(isolated: Path) -> None:
    hint = _get_it()
    assert hint.startswith("fnnet.datasets.download('mnist') in Python (downloads into ")
    assert str(isolated / "cache" / "fnnet" / "mnist") in hint


def test_a_cache_root_may_not_write_is_not_offered_and_the_cli_says_so(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """/proc refuses new files even to root, for whom os.access says yes: the hint must not
    suggest a download that would fail, in Python or from the command line."""
    from fnnet import cli

    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/fnnet-test-no-such")
    assert _get_it().startswith("set FNNET_DATA to a writable directory DIR")
    assert cli.main(["train", "--data", "mnist", "--quiet"]) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "download it once: set FNNET_DATA to a writable directory DIR" in err


@pytest.mark.parametrize("place", ["no home", "unwritable cache"])
def test_without_a_usable_user_cache_the_hint_is_fnnet_data(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, served: dict[str, bytes], place: str
) -> None:
    if place == "no home":
        no_home(monkeypatch)
    else:  # the cache would have to go below a regular file
        (isolated / "a-file").write_bytes(b"")
        monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "a-file" / "xdg"))
    with pytest.raises((OSError, ValueError)):  # what the plain hint would have run
        download("mnist", fetch=_fetch(served, 4))
    hint = _get_it()
    assert hint.startswith("set FNNET_DATA to a writable directory DIR, then run fnnet.datasets.download('mnist', cache_dir=DIR)")
    assert ("no home directory" if place == "no home" else f"the user cache {isolated / 'a-file' / 'xdg' / 'fnnet'} cannot be written") in hint
    # Following it works, and with FNNET_DATA set (and writable) the hint names that directory.
    data = isolated / "data"
    monkeypatch.setenv("FNNET_DATA", str(data))
    assert _get_it().startswith(f"fnnet.datasets.download('mnist', cache_dir={str(data)!r}) in Python")
    download("mnist", cache_dir=data, fetch=_fetch(served, 4))
    (x, _), _ = load_mnist("mnist")
    assert len(x) == 4
