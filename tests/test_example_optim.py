"""The section 6.1.7 example runs as a script and reports all four optimizers converging."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from _examples import EXAMPLES, HAS_MATPLOTLIB, load_script, run_example

from fnnet import optim

SCRIPT = EXAMPLES / "ch06_optimizer_compare_naive.py"
LINE = re.compile(r"(\w+)\s+final \(\s*(\S+),\s*(\S+)\)\s+distance to minimum (\S+)\s+f = (\S+)")


def test_example_runs_and_every_optimizer_gets_closer(tmp_path: Path) -> None:
    out = tmp_path / "fig" / "paths.png"
    lines = run_example(SCRIPT.name, "--out", str(out), cwd=tmp_path)
    assert lines[-1] == "optimizers ok"
    found = {m.group(1): m for m in map(LINE.match, lines) if m}
    assert sorted(found) == ["AdaGrad", "Adam", "Momentum", "SGD"]
    start = float(np.hypot(-7.0, 2.0))
    for m in found.values():
        x, y, dist, fval = (float(m.group(i)) for i in range(2, 6))
        assert abs(dist - np.hypot(x, y)) < 1e-3  # the printed distance belongs to the printed point
        assert abs(fval - (x * x / 20 + y * y)) <= 1e-3 * max(fval, 1e-3) + 1e-4
        assert dist < start
    if HAS_MATPLOTLIB:
        assert out.stat().st_size > 0
    else:
        assert not out.exists()


def _load_example() -> ModuleType:
    return load_script(SCRIPT)


def test_without_matplotlib_the_figure_is_skipped_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _load_example()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    out = tmp_path / "paths.png"
    monkeypatch.setattr(sys, "argv", ["prog", "--out", str(out)])
    example.main()
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == "optimizers ok"
    assert "figure" not in captured.out and captured.err == ""
    assert not out.exists()


def test_a_diverging_optimizer_makes_the_script_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _load_example()
    # |1 - lr * 2| > 1 on the y axis for lr > 1: plain SGD with lr 1.2 blows up
    monkeypatch.setattr(example, "OPTIMIZERS", {"SGD": optim.sgd(0.95), "SGD-too-fast": optim.sgd(1.2)})
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(sys, "argv", ["prog", "--out", str(tmp_path / "p.png")])
    with pytest.raises(SystemExit) as exc:
        example.main()
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert "diverged: SGD-too-fast" in captured.err
    assert "optimizers ok" not in captured.out
