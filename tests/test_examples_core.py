"""The chapter 2, 4 and 5 examples run as scripts, exit 0 and end with the line they promise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _examples import HAS_MATPLOTLIB, PNG_MAGIC, run_example


def test_ch02_perceptron() -> None:
    lines = run_example("ch02_perceptron.py")
    assert lines[-1] == "perceptrons ok"
    # the printed XOR table is XOR's truth table
    start = lines.index("XOR")
    rows = [tuple(int(v) for v in re.findall(r"\d", line)) for line in lines[start + 2 : start + 6]]
    assert sorted(rows) == sorted((a, b, int(a != b)) for a in (0, 1) for b in (0, 1))


def test_ch04_gradient_descent(tmp_path: Path) -> None:
    out = tmp_path / "path.png"
    lines = run_example("ch04_gradient_descent.py", "--out", str(out))
    match = re.fullmatch(r"final x \[(\S+) (\S+)\] norm (\S+)", lines[-1])
    assert match, lines[-1]
    x0, x1, norm = (float(v) for v in match.groups())
    assert norm < 1e-6
    # each step multiplies x by (1 - 2 lr) = 0.8; the line is printed to 4 significant figures
    assert x0 == pytest.approx(-3.0 * 0.8**100, rel=1e-3)
    assert x1 == pytest.approx(4.0 * 0.8**100, rel=1e-3)
    if HAS_MATPLOTLIB:
        assert f"path saved to {out}" in lines
        assert out.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC
    else:
        assert not out.exists()
        assert any(line.startswith("matplotlib is not installed") for line in lines)


def test_ch05_gradient_check() -> None:
    lines = run_example("ch05_gradient_check.py")
    match = re.fullmatch(r"max relative error (\S+)", lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) < 1e-6
    for name in ("W1", "b1", "W2", "b2"):
        assert any(line.startswith(name) for line in lines), name
