"""How the command line fails: early, in one ``fnnet: ...`` line, with a documented exit code,
leaving ``--out`` untouched or complete."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import TINY_TEST, TINY_TRAIN

from fnnet import checkpoint, cli, datasets, models, optim
from fnnet.cli import main
from fnnet.random import key
from fnnet.train import TrainState, init_train_state
from fnnet.tree import tree_map

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = TINY_TRAIN, TINY_TEST



def _fails(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``fnnet argv``; assert it exited ``code`` with one ``fnnet:`` line on stderr; that line."""
    assert main(argv) == code
    captured = capsys.readouterr()
    assert re.fullmatch(r"fnnet: [^\n]+\n", captured.err), captured.err
    return captured.err


def _listing(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


# --------------------------------------------------------------------------------------------
# Arguments, help, version
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--lr", "inf"], ["train", "--lr", "1e400"], ["train", "--lr", "nan"], ["train", "--lr", "-0.1"],
        ["train", "--lr", "0"], ["train", "--lr", "1e-400"], ["train", "--lr", "fast"], ["train", "--epochs", "0"],
        ["train", "--epochs", "2.5"], ["train", "--batch-size", "0"], ["train", "--seed", "-1"],
        ["train", "--threads", "-2"], ["train", "--model", "alexnet"], ["train", "--optimizer", "lbfgs"],
        ["train", "--bogus"], ["evaluate"], [],
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails(argv, 2, capsys)
    assert "--help" in err and "usage:" not in err
    if "--lr" in argv:
        assert f"argument --lr: must be a finite number > 0, got {argv[-1]!r}" in err or "expected a number" in err


def test_help_shows_every_default_and_the_exit_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # no line breaks inside the texts looked for
    parser = cli._parser()
    subs = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(subs, dict) and set(subs) == {"train", "evaluate", "export"}
    for name, sub in subs.items():
        for action in sub._actions:
            assert action.help, (name, action.dest)  # every option says what it does
            if action.dest not in ("help", "checkpoint", "quiet"):
                assert "default" in action.help, (name, action.dest)
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "learning rate, a finite number > 0 (default per model: two-layer-net 0.05, mlp 0.001, simple-convnet" in text
    assert "(default per model: two-layer-net 20, mlp 10, simple-convnet 5, deep-convnet 5, resnet 2)" in text
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for code, meaning in cli.EXIT_CODES.items():
        assert f"{code:>3}  {meaning}" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"fnnet \d+\.\d+\S*\n", out), out


def test_a_bad_thread_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tiny: Path
) -> None:
    monkeypatch.setenv("FNNET_NUM_THREADS", "0")
    assert "FNNET_NUM_THREADS must be a positive integer, got '0'" in _fails(["train", "--data", str(tiny)], 2, capsys)


# --------------------------------------------------------------------------------------------
# Data and model, checked before training
# --------------------------------------------------------------------------------------------


def test_a_model_too_big_for_the_images_fails_before_training(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--model", "simple-convnet", "--data", str(tiny), "--out", str(out)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing was trained
    assert re.fullmatch(r"fnnet: --model simple-convnet cannot take the 1x4x4 inputs of --data .*Conv2D.*\n", captured.err)
    assert list(tmp_path.iterdir()) == []


def test_bad_data_is_one_line_and_exit_3(tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "is neither a data set name nor a directory" in _fails(["train", "--data", str(tmp_path / "no")], 3, capsys)
    (tmp_path / "f").write_text("x")
    assert "is a file, not a directory" in _fails(["train", "--data", str(tmp_path / "f")], 3, capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "train-images-idx3-ubyte" in _fails(["train", "--data", str(empty)], 3, capsys)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny.iterdir():
        data = f.read_bytes()
        (broken / f.name).write_bytes(data[: len(data) // 2] if f.name.startswith("t10k-images") else data)
    assert "t10k-images-idx3-ubyte" in _fails(["train", "--data", str(broken)], 3, capsys)


def test_a_missing_named_data_set_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FNNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if any(p.exists() for p in datasets.search_paths("mnist")):
        pytest.skip("MNIST is installed on this machine")
    err = _fails(["train", "--data", "mnist"], 3, capsys)
    assert "data set 'mnist' not found" in err and "pass --data DIR" in err and str(tmp_path / "fnnet" / "mnist") in err


# --------------------------------------------------------------------------------------------
# --out
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "dir-named-metrics.json", "foreign-file"])
def test_an_out_that_cannot_hold_a_run_fails_before_training(
    kind: str, tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    if kind == "file":
        out.write_text("keep me")
    else:
        out.mkdir()
        (out / "checkpoint.npz").write_bytes(b"old")
        if kind == "foreign-file":
            (out / "notes.txt").write_text("keep me")
        else:
            (out / "metrics.json").mkdir()
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    err = _fails(["train", "--data", str(tiny), "--out", str(out)], 2, capsys)
    assert err.startswith(f"fnnet: --out {out}: ")
    assert "is a file" in err if kind == "file" else "holds" in err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert (out.read_text() if kind == "file" else (out / "checkpoint.npz").read_text()) in ("keep me", "old")


def test_an_out_that_cannot_be_created_fails_before_training(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("x")
    err = _fails(["train", "--data", str(tiny), "--out", str(tmp_path / "f" / "run")], 4, capsys)
    assert "cannot write beside it" in err
    assert capsys.readouterr().out == ""


def test_a_previous_run_is_replaced_whole_and_stale_temporaries_go(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny), "--epochs", "1", "--seed", "1", "--out", str(out), "--quiet"]) == 0
    stale = tmp_path / ".run.fnnet-new-999999999-0badc0de"  # left by a killed run (no such process)
    stale.mkdir()
    (stale / "checkpoint.npz").write_bytes(b"half")
    assert main(["train", "--data", str(tiny), "--epochs", "1", "--seed", "2", "--out", str(out), "--quiet"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 2
    assert set(os.listdir(out)) <= set(cli.OUTPUT_FILES) and "checkpoint.npz" in os.listdir(out)


@pytest.mark.parametrize("left", [("new",), ("new", "old")])
def test_temporaries_of_a_killed_first_run_go_unless_they_hold_the_only_copies(
    left: tuple[str, ...], tmp_path: Path, tiny: Path
) -> None:
    for kind in left:  # "old" and "new" together: killed between its two renames, --out missing
        (tmp_path / f".run.fnnet-{kind}-999999999-0badc0de").mkdir()
    assert main(["train", "--data", str(tiny), "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name != "run")
    assert kept == ([] if left == ("new",) else [".run.fnnet-new-999999999-0badc0de", ".run.fnnet-old-999999999-0badc0de"])


def _interrupt(*args: Any, **kwargs: Any) -> None:
    raise KeyboardInterrupt


def _disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    ("target", "fault", "code", "words"),
    [
        ("fit", _interrupt, 130, "interrupted; --out {out} untouched"),
        ("_plot", _interrupt, 130, "interrupted; --out {out} untouched"),
        ("_plot", _disk_full, 4, "--out {out}: cannot write the outputs: [Errno 28] No space left on device"),
    ],
)
def test_a_run_stopped_during_training_or_writing_leaves_the_previous_run(
    target: str, fault: Any, code: int, words: str, tmp_path: Path, tiny: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "run"
    argv = ["train", "--data", str(tiny), "--epochs", "1", "--out", str(out), "--quiet"]
    assert main([*argv, "--seed", "1"]) == 0
    before = _listing(out)
    capsys.readouterr()
    monkeypatch.setattr(cli, target, fault)
    assert _fails([*argv, "--seed", "2"], code, capsys) == f"fnnet: {words.format(out=out)}\n"
    assert _listing(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_divergence_is_one_line_exit_5_without_numpy_warnings(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = _fails(["train", "--data", str(tiny), "--optimizer", "sgd", "--lr", "1e30", "--out", str(out), "--quiet"],
                     5, capsys)  # fmt: skip
    assert err.startswith("fnnet: training diverged in epoch 1, step ") and err.endswith("; lower --lr (it is 1e+30)\n")
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny: Path) -> Path:
    """A checkpoint of the two-layer net trained one epoch on ``tiny``."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--data", str(tiny), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    return out / "checkpoint.npz"


def _state(path: Path) -> TrainState:
    like = init_train_state(models.two_layer_net(), optim.momentum(0.05), key(0), (16,))
    state, _ = checkpoint.load(path, like)
    assert isinstance(state, TrainState)
    return state


def test_evaluate_uses_the_recorded_data_set_and_counts_its_items(
    trained: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(trained.parent)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    info, acc = lines[0], lines[-1]
    assert re.fullmatch(r"test loss \d+\.\d{4}", lines[1])
    assert info.endswith(f"(two-layer-net) on {tiny} as recorded in the checkpoint: all {N_TEST} test items")
    assert re.fullmatch(r"test accuracy [01]\.\d{4}", acc)
    err = _fails(["evaluate", str(trained), "--data", "mnist-small"], 3, capsys)
    assert "two-layer-net was trained on 16 inputs, but mnist-small (as given by --data) has 784" in err


def test_evaluate_refuses_non_finite_parameters(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _state(trained)
    bad = state._replace(params=tree_map(lambda a: np.full_like(a, np.nan), state.params))
    path = tmp_path / "nan.npz"
    checkpoint.save(path, bad, meta=checkpoint.read_meta(trained))
    err = _fails(["evaluate", str(path)], 3, capsys)
    assert "parameter params/0/w holds NaN or infinite values; refusing to evaluate" in err
    assert "test accuracy" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"in_shape": "16"}, "'in_shape' must be a list of 1 positive ints"),
        ({"in_shape": [10**12]}, "'in_shape' must be"),
        ({"in_shape": [16, 1]}, "'in_shape' must be"),
        ({"in_shape": [True]}, "'in_shape' must be"),
        ({"lr": "fast"}, "'lr' must be a finite number > 0"),
        ({"lr": float("nan")}, "'lr' must be a finite number > 0"),
        ({"model": 3}, "'model' must be one of two-layer-net"),
        ({"optimizer": None}, "'optimizer' must be one of"),
        ({"data": 5}, "'data' must be a data set name or directory"),
        ({"data": None}, "records no data set; pass --data"),
        (None, "meta has no 'config' dict"),
    ],
)
def test_evaluate_checks_the_meta_before_building_anything(
    change: dict[str, Any] | None, words: str, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = checkpoint.read_meta(trained)
    meta = {} if change is None else {"config": {**meta["config"], **change}}
    path = tmp_path / "meta.npz"
    checkpoint.save(path, _state(trained), meta=meta)
    assert words in _fails(["evaluate", str(path)], 3, capsys)


def test_evaluate_rejects_files_that_are_no_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.npz"
    text.write_text("a text file\n")
    err = _fails(["evaluate", str(text)], 3, capsys)
    assert "not an fnnet checkpoint" in err and "pickle" not in err
    np.save(tmp_path / "array.npy", np.zeros(3))
    assert "not an fnnet checkpoint" in _fails(["evaluate", str(tmp_path / "array.npy")], 3, capsys)
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    assert "plain.npz" in _fails(["evaluate", str(tmp_path / "plain.npz")], 3, capsys)
    assert "no such file" in _fails(["evaluate", str(tmp_path)], 3, capsys)  # a directory without checkpoint.npz


# --------------------------------------------------------------------------------------------
# Ctrl-C on a real process
# --------------------------------------------------------------------------------------------


def _train(seed: int, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fnnet", "train", "--epochs", "1", "--seed", str(seed), "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
             "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints every thread's Python stack
    )  # fmt: skip


#: What faulthandler prints on stderr when the watchdog aborts a child.
ABORTED = "Fatal Python error: Aborted"


@contextlib.contextmanager
def _watchdog(proc: subprocess.Popen[str], seconds: float = 120.0) -> Iterator[None]:
    """Abort ``proc`` with SIGABRT if it still runs after ``seconds`` (a run takes about a second,
    far more on a loaded machine): its stderr then holds the Python stack of every thread, where a
    hung run waits, and reading its output ends instead of blocking for ever."""

    def abort() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGABRT)

    timer = threading.Timer(seconds, abort)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _wait_for(proc: subprocess.Popen[str], prefix: str) -> None:
    """Read ``proc``'s stdout up to a line starting with ``prefix``."""
    assert proc.stdout is not None
    seen: list[str] = []
    while not (line := proc.stdout.readline()).startswith(prefix):
        assert line, "".join(seen) + (proc.stderr.read() if proc.stderr else "")
        seen.append(line)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_at_a_random_moment_leaves_out_untouched_or_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    t0 = time.perf_counter()
    assert main(["train", "--epochs", "1", "--seed", "1", "--out", str(out), "--quiet"]) == 0  # the previous run
    took = time.perf_counter() - t0
    capsys.readouterr()
    previous = _listing(out)
    rng = random.Random()
    # a random moment in training (after the header line that ends the checks; a run may also be
    # over first), and one while the outputs are written (after the accuracy line), which completes
    for after, delay in [("model ", rng.uniform(0, took / 2)), ("test accuracy", rng.uniform(0, 0.5))]:
        proc = _train(2, out)
        with _watchdog(proc):
            _wait_for(proc, after)
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            stdout, err = proc.communicate()
        lines = err.strip().splitlines()
        where = f"SIGINT {delay:.2f}s after {after!r}: exit {proc.returncode}, stderr {err!r}"
        assert ABORTED not in err, f"hung, aborted by the watchdog: {where}"
        assert "Traceback" not in err, where
        now = _listing(out)
        if now == previous:
            assert after != "test accuracy", where
            assert proc.returncode == 130 and lines[-1] == f"fnnet: interrupted; --out {out} untouched", where
        else:  # complete: all of the new run
            assert proc.returncode == 0 and err.count("fnnet:") == 0, where
            assert set(now) == set(cli.OUTPUT_FILES) or set(now) == {"checkpoint.npz", "metrics.json"}, where
            assert json.loads(now["metrics.json"])["config"]["seed"] == 2, where
            assert checkpoint.read_meta(out / "checkpoint.npz")["config"]["seed"] == 2, where
            previous = now
        assert [p.name for p in tmp_path.iterdir()] == ["run"], where


def test_evaluate_and_export_refuse_a_fifo_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Opening a FIFO for reading waits for a writer: the CLI would hang for ever."""
    fifo = tmp_path / "run.npz"
    os.mkfifo(fifo)
    for command in ("evaluate", "export"):
        err = _fails([command, str(fifo)], 3, capsys)
        assert "run.npz: not a regular file (a FIFO)" in err
