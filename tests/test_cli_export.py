"""`fnnet export`: a run's checkpoint as an ONNX file that scores in ONNX Runtime what training printed."""

from __future__ import annotations

import re
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import normal

import fnnet
from fnnet import checkpoint
from fnnet.cli import main
from fnnet.train import init_train_state
from fnnet.typing import Array

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _session(path: Path) -> Any:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _fails(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert re.fullmatch(r"fnnet: [^\n]+\n", err), err
    return err


def _idx(path: Path, a: Array) -> None:
    path.write_bytes(bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 1000 training and 300 test digits of mnist-small as a data set directory."""
    d = tmp_path_factory.mktemp("small")
    (x, t), (xt, tt) = fnnet.datasets.load_mnist("mnist-small", normalize=False, flatten=False, dtype=np.uint8)
    for part, images, labels, n in (("train", x, t, 1000), ("t10k", xt, tt, 300)):
        _idx(d / f"{part}-images-idx3-ubyte", images[:n, 0])
        _idx(d / f"{part}-labels-idx1-ubyte", labels[:n])
    return d


def test_export_a_trained_run_scores_what_training_printed(
    tmp_path: Path, small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["--data", str(small), "--epochs", "3", "--optimizer", "adam", "--lr", "0.003", "--seed", "2"]
    assert main(["train", *argv, "--out", str(run), "--quiet"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    target = tmp_path / "net.onnx"
    assert main(["export", str(run), "--out", str(target)]) == 0
    line = capsys.readouterr().out.strip()
    what = "(two-layer-net: input (N, 784) -> output (N, 10), ONNX opset 17)"
    assert line.startswith(f"exported {run / 'checkpoint.npz'} {what} to {target}, ")
    (_, _), (x, t) = fnnet.datasets.load_mnist(str(small))
    assert len(x) == 300
    logits = _session(target).run(None, {"input": x})[0]
    assert 0.6 < float(printed.split()[-1]) <= 1.0
    assert printed == f"test accuracy {np.mean(logits.argmax(axis=1) == t):.4f}"


def test_export_a_saved_convnet_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = fnnet.models.simple_convnet()
    state = init_train_state(model, fnnet.adam(0.001), fnnet.key(4), (1, 28, 28))
    config = {"model": "simple-convnet", "data": "mnist-small", "in_shape": [1, 28, 28], "optimizer": "adam", "lr": 0.001}
    checkpoint.save(tmp_path / "checkpoint.npz", state, meta={"config": config})
    target = tmp_path / "convnet.onnx"
    assert main(["export", str(tmp_path / "checkpoint.npz"), "--out", str(target), "--opset", "20"]) == 0
    assert "(simple-convnet: input (N, 1, 28, 28) -> output (N, 10), ONNX opset 20)" in capsys.readouterr().out
    x = normal((3, 1, 28, 28), 1, dtype=np.float32)
    got = _session(target).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.apply(state.params, x), rtol=1e-5, atol=1e-5)


def test_export_failures_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.npz"
    assert _fails(["export", str(missing), "--out", str(tmp_path / "m.onnx")], 3, capsys) == f"fnnet: {missing}: no such file\n"
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    junk = str(tmp_path / "junk.npz")
    assert "not an fnnet checkpoint" in _fails(["export", junk, "--out", str(tmp_path / "m.onnx")], 3, capsys)
    assert "is a directory" in _fails(["export", str(missing), "--out", str(tmp_path)], 2, capsys)
    assert "does not exist" in _fails(["export", str(missing), "--out", str(tmp_path / "no" / "m.onnx")], 4, capsys)
    assert "must be at least 17" in _fails(["export", str(missing), "--opset", "11"], 2, capsys)
    assert "newer than the installed onnx" in _fails(["export", str(missing), "--opset", "999"], 2, capsys)
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    err = _fails(["export", str(missing), "--out", str(tmp_path / "m.onnx")], 2, capsys)
    assert err == "fnnet: export needs the onnx package: pip install 'fnnet[export]'\n"
    assert not (tmp_path / "m.onnx").exists()
