"""The sequel's sequence tasks: the split, the vocabulary, decoding, and hostile files."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from _helpers import global_rng_untouched

import fnnet
from fnnet.datasets import sequence as seq
from fnnet.datasets.sequence import SEQUENCE_TASKS, SequenceData, decode, encode, load_sequence, read_sequence_file
from fnnet.errors import FormatError

DATA = Path(fnnet.__file__).parent / "data" / "sequence"


@functools.lru_cache(maxsize=None)
def _load(name: str) -> SequenceData:
    """Each shipped task read once for this module (the tests only read the arrays)."""
    return load_sequence(name)


def _lines(name: str) -> list[str]:
    return (DATA / f"{name}.txt").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(("name", "vocab", "widths"), [("addition", 13, (7, 5)), ("date", 59, (29, 11))])
def test_shipped_tasks_split_as_the_sequel(name: str, vocab: int, widths: tuple[int, int]) -> None:
    with global_rng_untouched():
        data = load_sequence(name)
    assert (len(data.x_train), len(data.x_test)) == (45_000, 5_000)
    assert data.vocab_size == vocab == len(data.char_to_id)
    assert (data.x_train.shape[1], data.t_train.shape[1]) == widths == (data.x_test.shape[1], data.t_test.shape[1])
    assert all(a.dtype == np.int32 for a in data[:4])
    assert all(data.char_to_id[c] == i for i, c in enumerate(data.id_to_char))
    # the sequel's order: line perm[k] of the file is example k, the last 5,000 are the test set
    lines = _lines(name)
    perm = np.random.RandomState(1984).permutation(len(lines))
    for k, (x, t) in {0: (data.x_train, data.t_train), 45_000: (data.x_test, data.t_test)}.items():
        row = k if k < 45_000 else k - 45_000
        assert decode(x[row], data.id_to_char) + decode(t[row], data.id_to_char) == lines[perm[k]]
    assert all(data.t_train[:, 0] == data.char_to_id["_"])
    # the vocabulary in order of first appearance
    seen: dict[str, int] = {}
    for line in lines[:200]:
        for c in line:
            seen.setdefault(c, len(seen))
    assert data.id_to_char[: len(seen)] == tuple(seen)


def test_first_test_questions_are_the_sequels() -> None:
    addition, date = _load("addition"), _load("date")
    assert decode(addition.x_test[0], addition.id_to_char) == "77+85  "
    assert decode(addition.t_test[0], addition.id_to_char) == "_162 "
    assert decode(date.x_test[0], date.id_to_char).rstrip() == "10/15/94"
    assert decode(date.t_test[0], date.id_to_char) == "_1994-10-15"
    assert "".join(addition.id_to_char) == "16+75 _920384"
    assert "".join(date.id_to_char[:16]) == "septmbr 27,194_-"


def test_a_file_path_loads_and_small_files_split_alike(tmp_path: Path) -> None:
    f = tmp_path / "tiny.txt"
    f.write_text("".join(f"{i}+{i}_{2 * i % 10}\n" for i in range(1, 10)) + "9+9_9\n", encoding="utf-8")
    data = load_sequence(f)
    assert (len(data.x_train), len(data.x_test)) == (9, 1)
    assert data.id_to_char[:3] == ("1", "+", "_")
    perm = np.random.RandomState(1984).permutation(10)
    lines = f.read_text().splitlines()
    assert decode(data.x_test[0], data.id_to_char) + decode(data.t_test[0], data.id_to_char) == lines[perm[9]]
    # no final newline, and non-ASCII characters, are fine
    g = tmp_path / "greek.txt"
    g.write_text("αβ_γ\nβα_δ", encoding="utf-8")
    x, t, vocab = read_sequence_file(g)
    assert x.tolist() == [[0, 1], [1, 0]] and t.tolist() == [[2, 3], [2, 4]] and vocab == ("α", "β", "_", "γ", "δ")


def test_encode_and_decode_round_trip() -> None:
    data = _load("date")
    text = "april 1, 2001"
    ids = encode(text, data.char_to_id)
    assert ids.dtype == np.int32 and decode(ids, data.id_to_char) == text
    with pytest.raises(ValueError, match=r"^encode: character '#' is not in the vocabulary"):
        encode("#1", data.char_to_id)
    with pytest.raises(ValueError, match=r"^decode: ids must lie in \[0, 59\), got values in \[0, 59\]"):
        decode([0, 59], data.id_to_char)
    with pytest.raises(ValueError, match=r"^decode: expected a 1-D sequence of integer ids, got shape \(1, 2\)"):
        decode(np.zeros((1, 2), int), data.id_to_char)
    assert decode([], data.id_to_char) == ""
    with pytest.raises(TypeError):
        data.char_to_id["#"] = 3  # type: ignore[index]


@pytest.mark.parametrize(
    ("content", "where", "reason"),
    [
        (b"", "", "empty: no lines"),
        (b"\n", "", "empty: no lines"),
        (b"1+1_2\n12\n", "line 2", "no '_' between question and answer"),
        (b"1+1_2\n_12\n", "line 2", "empty question"),
        (b"1+1_2\n1+12_3\n", "line 2", "question/answer widths 4/2 differ from line 1's 3/2"),
        (b"1+1_2\n1+1_23\n", "line 2", "question/answer widths 3/3 differ from line 1's 3/2"),
        (b"1+1_2\n\n1+1_2\n", "line 2", "no '_'"),
        (b"1+1_2\r1+1_2\n", "line 1", "control character '\\\\r'"),
        (b"1+1_2\n1+\xff_2\n", "line 2", "not UTF-8 text"),
        (b"1+1_2\n1+1_2\n\n", "line 3", "no '_'"),
        # mixed line endings take the fast path when the file is sound, and still name the line
        (b"1+1_2\r\n2+3_5\n2+3_55\r\n", "line 3", "question/answer widths 3/3 differ from line 1's 3/2"),
        (b"1+1_2\n2+3_5\r\n23\n", "line 3", "no '_' between question and answer"),
        (b"1+1_2\r\n2+3_5\n1+1_2\r1+1_2\n", "line 3", "control character '\\\\r' \\(U\\+000D\\) at column 6"),
        (b"1+1_2\r\n2+3_5\n\xe9+1_2\r\n", "line 3", "not UTF-8 text \\(byte 13\\)"),
    ],
)
def test_hostile_files_raise_format_error_naming_file_and_line(tmp_path: Path, content: bytes, where: str, reason: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(FormatError, match=reason) as e:
        load_sequence(f)
    assert e.value.path == str(f) and e.value.where == where


def test_oversized_files_are_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seq, "MAX_SEQUENCE_FILE_BYTES", 10)
    f = tmp_path / "big.txt"
    f.write_bytes(b"1+1_2\n" * 2)
    with pytest.raises(FormatError, match=r"12 bytes, more than the 10 a sequence file may have"):
        load_sequence(f)


def test_unknown_names_and_directories(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^load_sequence: 'nope' is neither a shipped task \(addition, date\) nor a file"):
        load_sequence("nope")
    with pytest.raises(FileNotFoundError, match="neither a shipped task"):
        load_sequence(tmp_path)
    with pytest.raises(OSError):
        read_sequence_file(tmp_path)
    assert SEQUENCE_TASKS == ("addition", "date")
