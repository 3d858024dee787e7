"""Left over from the CLI and export audits: ``--help`` and ``--version`` into a full disk, output
locations that only root's ``os.access`` calls writable, and float64 LayerNorm and GroupNorm
graphs whose ``eps`` no float32 attribute can hold."""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import FailingStream, normal, onnx_session, rng

import fnnet
from fnnet import cli
from fnnet.export import MIN_OPSET, to_onnx
from fnnet.layers.base import Layer
from fnnet.tree import tree_astype, tree_map
from fnnet.typing import Shape

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
FULL = "fnnet: cannot write to standard output: No space left on device\n"


# --- --help and --version into a full disk ---------------------------------------------------------



@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["evaluate", "-h"], ["export", "--help"], ["--version"]]
)
@pytest.mark.parametrize(
    ("error", "code", "message"),
    [(OSError(errno.ENOSPC, "No space left on device"), 4, FULL), (BrokenPipeError(errno.EPIPE, "Broken pipe"), 141, "")],
    ids=["full-disk", "closed-pipe"],
)  # fmt: skip
def test_help_and_version_that_cannot_be_written_fail_as_other_output_does(
    argv: list[str], error: OSError, code: int, message: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(sys, "stdout", FailingStream(error))
    assert cli.main(argv) == code
    assert capsys.readouterr().err == message


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_help_into_dev_full_exits_4_with_one_line() -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "fnnet", "--help"], stdout=full, stderr=subprocess.PIPE,
                              text=True, env=ENV, timeout=120)  # fmt: skip
    assert (proc.returncode, proc.stderr) == (4, FULL)


def test_help_and_version_still_print_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: fnnet export ")
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("fnnet ")


# --- --out probed by writing, not by os.access -----------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
@pytest.mark.parametrize(("command", "name"), [("export", "model.onnx"), ("evaluate", "matrix.png")])
def test_an_out_no_file_can_be_created_in_fails_before_the_checkpoint_is_read(
    command: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``os.access(W_OK)`` is true for root on /proc, where no file can be created: only a write
    finds out, before the checkpoint (missing here: exit 3 had it been read) is looked at."""
    target = f"/proc/{name}"
    assert cli.main([command, str(tmp_path / "missing.npz"), "--out", target]) == 4
    assert capsys.readouterr().err.startswith(f"fnnet: --out {target}: cannot write in /proc: ")


def test_the_probe_reports_a_refused_create_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.onnx"
    cli._probe_writable(target, target)
    assert list(tmp_path.iterdir()) == []

    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(cli._Fail) as caught:
        cli._probe_writable(target, Path("m.onnx"))
    assert caught.value.code == 4 and str(caught.value) == f"--out m.onnx: cannot write in {tmp_path}: Read-only file system"


# --- float64 LayerNorm and GroupNorm: eps in float64 -----------------------------------------------

HAVE_ORT = all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))
NEWEST = int(importlib.import_module("onnx").defs.onnx_opset_version()) if HAVE_ORT else MIN_OPSET
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="needs onnx and onnxruntime")

# eps values that float32 rounds (0.1 by 1.5e-9, 1e-5 + 1e-12 by about 2.5e-13)
NORMS: list[tuple[Layer, Shape]] = [
    (fnnet.LayerNorm(eps=0.1), (5,)),
    (fnnet.LayerNorm(eps=1e-5 + 1e-12), (2, 3, 4)),
    (fnnet.GroupNorm(2, eps=0.1), (4, 3, 3)),
    (fnnet.GroupNorm(3, eps=1e-5 + 1e-12), (6, 7)),
]


@needs_ort
@pytest.mark.parametrize("opset", [MIN_OPSET, NEWEST])  # ReduceMean's axes: an attribute, then an input (18)
@pytest.mark.parametrize(("layer", "in_shape"), NORMS, ids=lambda v: repr(v)[:40] if isinstance(v, Layer) else str(v))
def test_float64_layernorm_and_groupnorm_keep_eps_in_float64(layer: Layer, in_shape: Shape, opset: int) -> None:
    g = rng(5)
    params = tree_map(lambda a: a + 0.3 * g.standard_normal(np.shape(a)), tree_astype(layer.init(fnnet.key(0), in_shape)[0], np.float64))
    x = 0.003 * normal((4, *in_shape), 6)  # a variance near eps, so that eps's last bits show
    got = onnx_session(to_onnx(layer, params, in_shape, opset=opset, dtype=np.float64)).run(None, {"input": x})[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, layer.apply(params, x), rtol=1e-12, atol=1e-12)


@needs_ort
def test_float32_layernorm_and_groupnorm_stay_one_normalization_node() -> None:
    for layer, in_shape in NORMS:
        params = layer.init(fnnet.key(0), in_shape)[0]
        m = to_onnx(layer, params, in_shape)
        ops = [n.op_type for n in m.graph.node]
        assert ops.count("LayerNormalization") == 1 and "ReduceMean" not in ops, ops
        x = normal((3, *in_shape), 7, dtype=np.float32)
        np.testing.assert_allclose(onnx_session(m).run(None, {"input": x})[0], layer.apply(params, x), rtol=1e-5, atol=1e-5)
