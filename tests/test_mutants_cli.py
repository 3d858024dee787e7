"""Regression tests from a third mutation-testing pass over fnnet.cli: a failed rename puts the
previous run back, the temporaries of a live run to the same --out are kept, and what
metrics.json and the checkpoint record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from _helpers import write_image_set

from fnnet import checkpoint, cli
from fnnet.cli import main

N_TRAIN, N_TEST = 40, 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d: Path = write_image_set(tmp_path_factory.mktemp("tiny"), N_TRAIN, N_TEST, 4)
    return d


def _train(data: Path | str, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--epochs", "1", "--batch-size", "20", "--out", str(out), "--quiet", *extra])


def test_a_failed_rename_into_place_puts_the_previous_run_back(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(tiny, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = os.rename

    def rename(src: Any, dst: Any) -> None:
        if os.fspath(dst) == os.fspath(out) and ".fnnet-new-" in os.fspath(src):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    capsys.readouterr()
    assert _train(tiny, out, "--seed", "5") == 4
    assert "cannot put the run in place: No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_the_temporaries_of_a_live_run_to_the_same_out_are_kept(tmp_path: Path, tiny: Path) -> None:
    live = tmp_path / f".run.fnnet-new-{os.getppid()}-0badc0de"  # a running process's
    live.mkdir()
    assert _train(tiny, tmp_path / "run") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "run"]


def test_metrics_json_and_the_checkpoint_record_the_run(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny.parent)
    out = tmp_path / "run"
    assert _train(tiny.name, out) == 0  # a relative directory: recorded as an absolute path
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    assert config["data"] == str(tiny) and config["augment"] == "none" and config["lr"] == cli.MODEL_DEFAULTS[config["model"]][3]
    assert (metrics["train_items"], metrics["test_items"]) == (N_TRAIN, N_TEST)
    assert set(metrics["per_epoch_sample"].values()) == {None}  # both sets smaller than the sample
    assert checkpoint.read_meta(out / "checkpoint.npz") == {"config": config}


def test_evaluate_prints_the_loss_training_measured_on_a_test_set_of_uneven_batches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    data = write_image_set(tmp_path / "data", N_TRAIN, 1001, 4)  # batches of 1000 and 1
    out = tmp_path / "run"
    assert _train(data, out) == 0
    measured = json.loads((out / "metrics.json").read_text())["test_loss"]
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    assert f"test loss {measured:.4f}\n" in capsys.readouterr().out


def test_export_writes_the_opset_asked_for_up_to_the_newest(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = pytest.importorskip("onnx")
    from fnnet.export import MIN_OPSET

    out = tmp_path / "run"
    assert _train(tiny, out) == 0
    for opset in (MIN_OPSET, int(onnx.defs.onnx_opset_version())):
        target = tmp_path / f"m{opset}.onnx"
        assert main(["export", str(out), "--out", str(target), "--opset", str(opset)]) == 0, capsys.readouterr().err
        assert [o.version for o in onnx.load(str(target)).opset_import if o.domain in ("", "ai.onnx")] == [opset]


def test_the_temporaries_of_another_users_live_process_are_kept(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = 999_999_999
    real = os.kill

    def kill(pid: int, sig: int) -> None:
        if pid == other:
            raise PermissionError(1, "Operation not permitted")  # alive, but not ours to signal
        real(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    theirs = tmp_path / f".run.fnnet-new-{other}-0badc0de"
    theirs.mkdir()
    assert _train(tiny, tmp_path / "run") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name, "run"]
