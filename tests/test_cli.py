"""The command line: `fnnet train` (the main job) and `fnnet evaluate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fnnet import checkpoint
from fnnet.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_train_quick_writes_outputs_and_evaluate_agrees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    printed = _last_line(capsys.readouterr().out)
    assert printed.startswith("test accuracy ")
    acc = float(printed.split()[-1])
    assert 0.8 < acc <= 1.0  # two epochs of the book's net on 8,000 digits already classify most
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc"] == pytest.approx(acc, abs=5e-5)
    assert len(metrics["history"]["epochs"]) == 2
    assert metrics["config"]["seed"] == 3
    meta = checkpoint.read_meta(out / "checkpoint.npz")
    assert meta["config"]["model"] == "two-layer-net"
    assert main(["evaluate", str(out)]) == 0
    assert _last_line(capsys.readouterr().out) == printed


def test_train_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    for _ in range(2):
        assert main(["train", "--epochs", "1", "--seed", "5", "--quiet"]) == 0
        lines.append(_last_line(capsys.readouterr().out))
    assert lines[0] == lines[1]


def test_threads_change_nothing_but_speed(capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    for threads in ("1", "2"):
        assert main(["train", "--epochs", "1", "--seed", "2", "--quiet", "--threads", threads]) == 0
        lines.append(_last_line(capsys.readouterr().out))
    assert lines[0] == lines[1]


def test_bad_thread_environment_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FNNET_NUM_THREADS", "many")
    assert main(["train", "--epochs", "1", "--quiet"]) == 2
    assert "FNNET_NUM_THREADS must be a positive integer" in capsys.readouterr().err


def test_train_shows_progress_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "1", "--optimizer", "adam", "--lr", "0.001"]) == 0
    captured = capsys.readouterr()
    assert "total params: 39,760" in captured.out  # 784*50+50 + 50*10+10
    assert "epoch 1/1" in captured.err
    assert "adam lr 0.001" in captured.out


def test_bad_arguments_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="--lr must be positive"):
        main(["train", "--lr", "-1"])
    with pytest.raises(SystemExit, match="--epochs"):
        main(["train", "--epochs", "0"])
    with pytest.raises(SystemExit, match="--threads must be positive"):
        main(["train", "--threads", "0"])
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.npz")]) == 2
    assert "cannot evaluate" in capsys.readouterr().err


def test_evaluate_rejects_a_corrupted_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    data = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    assert main(["evaluate", str(out)]) == 2
    assert "checkpoint.npz" in capsys.readouterr().err


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fnnet", "train", "--epochs", "1", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert _last_line(proc.stdout).startswith("test accuracy 0.")
    assert proc.stderr == ""  # --quiet: no progress display


def test_readme_commands_are_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = [b.strip() for b in readme.split("```")[1::2]]
    install_and_test = next(b for b in blocks if "pytest" in b and b.startswith("python3 -m venv"))
    main_job = next(b for b in blocks if b.startswith("python3 -m venv") and "fnnet train" in b)
    assert install_and_test in ci.splitlines()
    assert "fnnet train" in main_job and "pip install" in main_job
    assert np.all([cmd.count("\n") == 0 for cmd in (install_and_test, main_job)])
