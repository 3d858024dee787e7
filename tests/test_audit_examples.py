"""User mistakes on the command lines of the examples and benchmarks end in one line, not a traceback.

Every case here exits before any training: arguments are checked (sizes, rates, data, output
paths) before the work starts. The shared helpers (``examples/_common.py``) are tested directly:
the argument types, the atomic figure write and the Ctrl-C / missing-file exit of ``run_main``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _examples import EXAMPLES, REPO, load_script

BENCH = REPO / "bench"
HAS_TORCH = importlib.util.find_spec("torch") is not None


common = load_script(EXAMPLES / "_common.py")


def _run(path: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(path), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# (script, arguments, expected exit status, a piece of the error line)
MISTAKES = [
    (EXAMPLES / "augment_figure.py", ["--images", "-1"], 2, "--images: expected a positive integer"),
    (EXAMPLES / "seq2seq_addition.py", ["--lines", "-5"], 2, "--lines: expected an integer >= 0"),
    (EXAMPLES / "seq2seq_addition.py", ["--lines", "100"], 2, "at least the batch size 128"),
    (EXAMPLES / "resnet_fashion_mnist.py", ["--data", "no/such/dir"], 2, "neither a data set"),
    (EXAMPLES / "ch02_perceptron.py", ["--bogus"], 2, "unrecognized arguments: --bogus"),
    (EXAMPLES / "ch04_gradient_descent.py", ["--out", "plot.txt"], 2, "a figure must end in .png"),
    (EXAMPLES / "ch06_hyperparameter_optimization.py", ["--n-train", "1", "--out", "s.json"], 1, "n_train 1"),
    (BENCH / "fashion_mnist_cnn.py", ["--n-train", "-1"], 2, "--n-train: expected a positive integer"),
    (BENCH / "fashion_mnist_mlp.py", ["--lr", "nan"], 2, "--lr: expected a finite number"),
    (BENCH / "throughput.py", ["--torch", sys.executable], 2, "two-layer-net is compared with plain NumPy"),
    (BENCH / "step_cpu.py", ["--torch", "no/such/python"], 2, "is not an executable file"),
]


@pytest.mark.parametrize(("script", "args", "status", "message"), MISTAKES, ids=lambda v: getattr(v, "name", None))
def test_mistake_gives_one_error_line(tmp_path: Path, script: Path, args: list[str], status: int, message: str) -> None:
    result = _run(script, *args, cwd=tmp_path)
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert not any(tmp_path.iterdir()), "nothing may be written before the arguments are checked"


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed here")
def test_torch_scripts_without_torch_say_so(tmp_path: Path) -> None:
    for script in ("torch_reference.py", "torch_seq2seq.py"):
        result = _run(BENCH / script, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: no torch in {sys.executable}: run this script with the python of a venv that has torch"
        ]


def test_output_path_is_checked_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(argparse.ArgumentTypeError, match="is not a directory"):
        common.output_path(str(blocker / "sub" / "fig.png"))
    with pytest.raises(argparse.ArgumentTypeError, match="is a directory"):
        common.output_path(str(tmp_path))
    assert common.output_path(str(tmp_path / "new" / "dir" / "fig.png")) == tmp_path / "new" / "dir" / "fig.png"
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "x"])
def test_positive_int_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="positive integer"):
        common.positive_int(text)
    if text != "0":
        with pytest.raises(argparse.ArgumentTypeError, match="integer >= 0"):
            common.nonnegative_int(text)
    else:
        assert common.nonnegative_int(text) == 0


class _Figure:
    """Stands in for a matplotlib figure whose ``savefig`` is interrupted half way."""

    def savefig(self, f: Any, format: str, dpi: int) -> None:  # noqa: A002 - matplotlib's name
        f.write(b"\x89PNG half a figure")
        raise KeyboardInterrupt


class _Pyplot:
    def __init__(self) -> None:
        self.closed: list[object] = []

    def close(self, fig: object) -> None:
        self.closed.append(fig)


def test_interrupted_figure_leaves_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "fig.png"
    out.write_bytes(b"old figure")
    plt, fig = _Pyplot(), _Figure()
    with pytest.raises(KeyboardInterrupt):
        common.write_figure(plt, fig, out)
    assert out.read_bytes() == b"old figure"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]
    assert plt.closed == [fig]


def test_run_main_turns_interrupts_and_missing_files_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    def missing() -> None:
        raise FileNotFoundError(2, "No such file or directory", "data/train.idx")

    with pytest.raises(SystemExit) as exit_info:
        common.run_main(interrupted)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"
    with pytest.raises(SystemExit) as exit_info:
        common.run_main(missing)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: [Errno 2] No such file or directory: 'data/train.idx'\n"


def test_search_where_every_trial_fails_says_so_without_plotting(tmp_path: Path) -> None:
    script = EXAMPLES / "ch06_hyperparameter_optimization.py"
    result = _run(script, "--n-train", "9000", "--trials", "2", "--epochs", "1", "--out", "s.json", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("every trial failed (the first: ValueError: MLPTrial")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # the failures are recorded; no figure
