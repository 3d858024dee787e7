"""`fnnet train --augment`: image models train on augmented batches, reproducibly; flat models refuse it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from _helpers import write_image_set

from fnnet import checkpoint
from fnnet.cli import main


@pytest.fixture(scope="module")
def small_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data set directory of 8x8 images (the smallest a simple-convnet takes): 60 train, 20 test."""
    d: Path = write_image_set(tmp_path_factory.mktemp("small"), 60, 20, 8)
    return d


def _train(data: Path, out: Path, augment: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    argv = ["train", "--model", "simple-convnet", "--data", str(data), "--epochs", "1", "--batch-size", "20"]
    assert main([*argv, "--augment", augment, "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert capsys.readouterr().out.startswith("test accuracy ")
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    return metrics


def test_augment_changes_training_reproducibly_and_is_recorded(
    small_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _train(small_images, tmp_path / "a", "crop-flip", capsys)
    b = _train(small_images, tmp_path / "b", "crop-flip", capsys)
    plain = _train(small_images, tmp_path / "plain", "none", capsys)
    assert a["config"]["augment"] == "crop-flip" and plain["config"]["augment"] == "none"
    assert checkpoint.read_meta(tmp_path / "a" / "checkpoint.npz")["config"]["augment"] == "crop-flip"
    untimed = [[{k: v for k, v in e.items() if k != "time"} for e in m["history"]["epochs"]] for m in (a, b)]
    assert untimed[0] == untimed[1] and a["history"]["step_loss"] == b["history"]["step_loss"]
    assert a["test_loss"] == b["test_loss"]
    assert a["history"]["step_loss"] != plain["history"]["step_loss"]


def test_augment_of_a_flat_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--model", "two-layer-net", "--augment", "crop", "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert re.fullmatch(r"fnnet: --augment crop needs an image model \(.*simple-convnet.*\); two-layer-net takes flat vectors\n", err)
    assert captured.out == ""
