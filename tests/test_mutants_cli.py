"""Regression tests from a third mutation-testing pass over fnnet.cli: a failed rename puts the
previous run back, the temporaries of a live run to the same --out are kept, and what
metrics.json and the checkpoint record."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import write_image_set

import fnnet
from fnnet import checkpoint, cli, models, optim
from fnnet.cli import main
from fnnet.train import init_train_state

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


def test_sigterm_during_training_exits_143_and_ctrl_c_130(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for signal_as, code, word in ((cli._Terminated, 143, "terminated"), (KeyboardInterrupt, 130, "interrupted")):

        def fit(*args: Any, **kwargs: Any) -> None:
            raise signal_as

        monkeypatch.setattr(cli, "fit", fit)
        out = tmp_path / word
        assert _train(tiny, out) == code
        assert capsys.readouterr().err == f"fnnet: {word}; --out {out} untouched\n"
        assert not out.exists() and not list(tmp_path.glob(f".{word}.*"))


def test_evaluate_refuses_a_checkpoint_whose_model_state_is_not_finite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    data = write_image_set(tmp_path / "data", 10, 10, 8)
    state = init_train_state(models.resnet(), optim.adam(0.001), fnnet.key(0), (1, 8, 8))
    mean = state.model_state[1].mean
    state = state._replace(model_state=(state.model_state[0], state.model_state[1]._replace(mean=np.full_like(mean, np.nan)),
                                        *state.model_state[2:]))
    config = {"model": "resnet", "optimizer": "adam", "lr": 0.001, "in_shape": [1, 8, 8], "data": str(data)}
    checkpoint.save(tmp_path / "ck.npz", state, meta={"config": config})
    assert main(["evaluate", str(tmp_path / "ck.npz")]) == 3
    assert "parameter model_state/1/mean holds NaN or infinite values; refusing to evaluate" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names an open directory through /proc")
def test_the_new_run_is_synced_whole_before_it_is_renamed_into_place(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")  # so that the learning curve is among the files
    synced: list[tuple[str, bool]] = []  # (directory, whether it held all the outputs then)
    files: list[str] = []  # the files synced, under their final names
    real = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append((os.path.basename(path), set(os.listdir(path)) >= set(cli.OUTPUT_FILES)))
        else:  # a temporary ".NAME.PID.XXXXXXXX.tmp"
            files.append(os.path.basename(path)[1:].split(".")[0])
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert _train(tiny, tmp_path / "run") == 0
    assert {f.split(".")[0] for f in cli.OUTPUT_FILES} <= set(files)  # the learning curve too
    whole = [i for i, (name, full) in enumerate(synced) if name.startswith(".run.fnnet-new-") and full]
    assert whole and synced[-1][0] == tmp_path.name and whole[-1] < len(synced) - 1
