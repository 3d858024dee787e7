"""examples/export_onnx.py: the exported graph predicts in ONNX Runtime what fnnet predicts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from _examples import SINGLE_THREADED, last_match, run_example

ORT = importlib.util.find_spec("onnxruntime") is not None

pytest.importorskip("onnx")


def test_book_convnet_exported_agrees_with_fnnet(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "convnet.onnx"
    lines = run_example("export_onnx.py", "--n", "1000", "--out", str(out), cwd=tmp_path, env=SINGLE_THREADED)
    assert out.read_bytes()[:2] == b"\x08\x08"  # an ONNX ModelProto starts with its ir_version field (8)
    if ORT:
        (acc,) = last_match(lines, r"onnxruntime accuracy (\d\.\d{4})")
        assert "predictions agree with fnnet's on 1000 of 1000 images" in lines[-2]
    else:
        (acc,) = last_match(lines, r"fnnet accuracy (\d\.\d{4})")
    assert 0.95 < acc <= 1.0  # the book's weights on the first 1000 test digits

