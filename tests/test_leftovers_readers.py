"""Readers: sequence files with mixed line endings read in bounded memory, and checkpoints holding
the history of a long run (its per-step lists stored as .npy members, not as manifest JSON)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fnnet.datasets import decode, load_sequence, read_sequence_file
from fnnet.errors import FormatError

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
        tracemalloc.start()
        try:
            result = read()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 6.5 * size, (peak / size, plus)
        del result


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


@pytest.mark.parametrize(
    ("content", "where", "reason"),
    [
        (b"1+1_2\r\n2+3_5\n2+3_55\r\n", "line 3", "question/answer widths 3/3 differ from line 1's 3/2"),
        (b"1+1_2\n2+3_5\r\n23\n", "line 3", "no '_' between question and answer"),
        (b"1+1_2\r\n2+3_5\n1+1_2\r1+1_2\n", "line 3", "control character '\\\\r' \\(U\\+000D\\) at column 6"),
        (b"1+1_2\r\n2+3_5\n\xe9+1_2\r\n", "line 3", "not UTF-8 text \\(byte 13\\)"),
    ],
)
def test_faults_in_a_file_with_mixed_line_endings_are_named_by_line(
    tmp_path: Path, content: bytes, where: str, reason: str
) -> None:
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(FormatError, match=reason) as e:
        read_sequence_file(f)
    assert e.value.path == str(f) and e.value.where == where
