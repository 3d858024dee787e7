"""The sequel's seq2seq examples run as scripts: its trained attention model answers every test
date, and the addition comparison prints its per-epoch and final lines."""

from __future__ import annotations

import re
from pathlib import Path

from _examples import HAS_MATPLOTLIB, PNG_MAGIC, SINGLE_THREADED, last_match, run_example

NUM = r"(\d\.\d{4})"


def test_the_sequels_attention_weights_answer_all_5000_test_dates(tmp_path: Path) -> None:
    out = tmp_path / "attention.png"
    lines = run_example("seq_attention_date.py", "--out", str(out), cwd=tmp_path, env=SINGLE_THREADED, timeout=300)
    assert lines[-1] == "accuracy 1.0000"
    assert any(line.startswith("test dates 5000, right 5000") for line in lines)
    assert any(re.fullmatch(r"\s+10/15/94\s+-> 1994-10-15", line) for line in lines)
    if HAS_MATPLOTLIB:
        assert out.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC


def test_addition_trains_three_models_and_reports_each(tmp_path: Path) -> None:
    out = tmp_path / "addition.png"
    lines = run_example("seq2seq_addition.py", "--epochs", "2", "--lines", "384", "--out", str(out),
                        cwd=tmp_path, env=SINGLE_THREADED)  # fmt: skip
    accs = last_match(lines, rf"accuracy plain {NUM} reversed {NUM} reversed\+peeky {NUM}")
    assert all(0.0 <= a <= 1.0 for a in accs)
    epochs = [line.split()[0] for line in lines if re.fullmatch(rf"\S+\s+epoch\s+[12]  test accuracy {NUM}  \(\d+s\)", line)]
    assert epochs == ["plain"] * 2 + ["reversed"] * 2 + ["reversed+peeky"] * 2
    assert lines[0] == "train 384 questions, test 42, vocabulary 13, epochs 2"
    if HAS_MATPLOTLIB:
        assert out.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC
