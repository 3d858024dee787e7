"""The chapter 6.5 example runs end to end as a script, in process and with a process pool."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fnnet.hparam import SearchResult

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ch06_hyperparameter_optimization.py"
LAST_LINE = re.compile(r"best val_acc (\d\.\d{4}) lr (\S+) weight_decay (\S+)")
N_TRIALS = 3


def _run(tmp_path: Path, *extra: str) -> tuple[str, SearchResult]:
    out = tmp_path / "search.json"
    args = ["--trials", str(N_TRIALS), "--epochs", "1", "--n-train", "150", "--hidden", "16", "16",
            "--batch-size", "50", "--seed", "3", "--out", str(out), *extra]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    m = LAST_LINE.fullmatch(last)
    assert m, last
    assert out.exists()
    result = SearchResult.load(out)
    assert len(result.trials) == N_TRIALS
    best = result.best
    assert float(m.group(1)) == pytest.approx(best.metrics["val_acc"], abs=5e-5)
    assert float(m.group(2)) == pytest.approx(float(best.hparams["lr"]), rel=1e-4)
    assert float(m.group(3)) == pytest.approx(float(best.hparams["weight_decay"]), rel=1e-4)
    assert 1e-6 <= float(m.group(2)) <= 1e-2 and 1e-8 <= float(m.group(3)) <= 1e-4
    return last, result


def test_example_runs_and_a_process_pool_gives_the_same_search(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    last, result = _run(tmp_path / "a")
    last2, result2 = _run(tmp_path / "b", "--workers", "2")
    assert last == last2
    assert [(t.hparams, t.metrics) for t in result.trials] == [(t.hparams, t.metrics) for t in result2.trials]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "a" / "search.png").stat().st_size > 0
