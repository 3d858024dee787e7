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
    assert metrics["test_items"] == 2000
    assert metrics["per_epoch_sample"] == {"train_loss": 2000, "train_acc": 2000, "test_loss": None, "test_acc": None}
    last = metrics["history"]["epochs"][-1]
    assert {"loss", "train_loss", "train_acc", "test_loss", "test_acc"} <= set(last)
    assert last["test_acc"] == pytest.approx(acc, abs=5e-5)  # the per-epoch test figures are on the whole set
    assert last["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-9)
    meta = checkpoint.read_meta(out / "checkpoint.npz")
    assert meta["config"]["model"] == "two-layer-net" and meta["config"]["data"] == "mnist-small"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary directory left beside it
    assert main(["evaluate", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == printed
    assert "mnist-small as recorded in the checkpoint: all 2000 test items" in lines[0]
    assert lines[1] == f"test loss {metrics['test_loss']:.4f}"
    assert lines[2] == "confusion matrix (rows: true class, columns: predicted class):"
    assert lines[3].split() == [str(k) for k in range(10)]
    rows = [[int(v) for v in line.split(":")[1].split()] for line in lines[4:14]]
    cm = np.array(rows)
    assert [line.split(":")[0].strip() for line in lines[4:14]] == [str(k) for k in range(10)]
    assert cm.sum() == 2000 and np.trace(cm) / 2000 == pytest.approx(acc, abs=5e-5)
    (_, _), (_, t_test) = __import__("fnnet").datasets.load_mnist("mnist-small")
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(t_test, minlength=10))  # rows are the true classes


def test_evaluate_draws_the_confusion_matrix_with_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    png = tmp_path / "cm.png"
    assert main(["evaluate", str(run), "--out", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert f"confusion matrix drawn to {png}" in out and _last_line(out).startswith("test accuracy 0.")
    assert main(["evaluate", str(run), "--out", str(tmp_path)]) == 0  # a directory: confusion_matrix.png in it
    assert (tmp_path / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--out", str(tmp_path / "nowhere" / "cm.png")]) == 4
    err = capsys.readouterr().err
    assert err.startswith("fnnet: --out ") and "does not exist" in err and err.count("\n") == 1


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
    err = capsys.readouterr().err
    assert err.startswith("fnnet: $FNNET_NUM_THREADS must be a positive integer") and err.count("\n") == 1


def test_train_shows_progress_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "1", "--optimizer", "adam", "--lr", "0.001"]) == 0
    captured = capsys.readouterr()
    assert "total params: 39,760" in captured.out  # 784*50+50 + 50*10+10
    assert "adam lr 0.001" in captured.out
    # 8,000 training items are sampled for the per-epoch figure, the 2,000 test items are not
    assert "epoch 1/1 loss " in captured.err and " train_acc(sample 2000) 0." in captured.err
    assert " test_acc 0." in captured.err
    assert "final evaluation on all 2000 test items" in captured.out


def test_bad_arguments_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, words in [
        (["--lr", "-1"], "argument --lr: must be a finite number > 0, got '-1'"),
        (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
    ]:
        assert main(["train", *argv]) == 2
        assert capsys.readouterr().err == f"fnnet: train: {words} (see fnnet train --help)\n"
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--quiet"]) == 3
    assert "nowhere" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.npz")]) == 3
    assert capsys.readouterr().err == f"fnnet: {tmp_path / 'missing.npz'}: no such file\n"


def test_evaluate_rejects_a_corrupted_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    data = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    assert main(["evaluate", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("fnnet: ") and "checkpoint.npz" in err and err.count("\n") == 1


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
