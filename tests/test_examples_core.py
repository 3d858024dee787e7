"""The chapter 2, 4 and 5 examples run as scripts, exit 0 and end with the line they promise."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(script: str, *args: str) -> list[str]:
    """Run ``examples/<script>`` from the repository root; return its stdout lines after asserting exit 0."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines, result.stderr
    return lines


def test_ch02_perceptron() -> None:
    lines = _run("ch02_perceptron.py")
    assert lines[-1] == "perceptrons ok"
    # the printed XOR table is XOR's truth table
    start = lines.index("XOR")
    rows = [tuple(int(v) for v in re.findall(r"\d", line)) for line in lines[start + 2 : start + 6]]
    assert sorted(rows) == sorted((a, b, int(a != b)) for a in (0, 1) for b in (0, 1))


def test_ch04_gradient_descent(tmp_path: Path) -> None:
    out = tmp_path / "path.png"
    lines = _run("ch04_gradient_descent.py", "--out", str(out))
    match = re.fullmatch(r"final x \[(\S+) (\S+)\] norm (\S+)", lines[-1])
    assert match, lines[-1]
    x0, x1, norm = (float(v) for v in match.groups())
    assert norm < 1e-6
    # each step multiplies x by (1 - 2 lr) = 0.8; the line is printed to 4 significant figures
    assert x0 == pytest.approx(-3.0 * 0.8**100, rel=1e-3)
    assert x1 == pytest.approx(4.0 * 0.8**100, rel=1e-3)
    if importlib.util.find_spec("matplotlib") is not None:
        assert f"path saved to {out}" in lines
        assert out.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC
    else:
        assert not out.exists()
        assert any(line.startswith("matplotlib is not installed") for line in lines)


def test_ch05_gradient_check() -> None:
    lines = _run("ch05_gradient_check.py")
    match = re.fullmatch(r"max relative error (\S+)", lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) < 1e-6
    for name in ("W1", "b1", "W2", "b2"):
        assert any(line.startswith(name) for line in lines), name
