"""What a new user of ``fnnet`` reads: the help's exit codes, the header, the divergence message,
what happens without matplotlib, the learning curve's ticks, usage errors and a data directory
without a data set (found by an audit of the command line's texts)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from _helpers import write_image_set

import fnnet
from fnnet import cli, datasets
from fnnet.cli import main
from fnnet.train import History, NonFiniteLossError, init_train_state

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")



@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import matplotlib`` fails (and ``find_spec`` finds nothing), as when it is not installed."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert re.fullmatch(r"fnnet: [^\n]+\n", err), err
    return err


# --- 1. the exit codes in --help ------------------------------------------------------------------


def test_the_help_says_an_interrupt_leaves_out_untouched_or_complete(capsys: pytest.CaptureFixture[str]) -> None:
    """It said 'untouched' for 130 and 143; a signal just after the renames leaves the new run."""
    assert main(["--help"]) == 0
    lines = {int(m[1]): m[2] for m in re.finditer(r"^ +(\d+)  (.*)$", capsys.readouterr().out, flags=re.M)}
    assert sorted(lines) == sorted(cli.EXIT_CODES)
    for code in (130, 143):
        assert lines[code].endswith("--out is untouched or complete"), lines[code]
    assert lines[141].endswith("--out is untouched")  # the final accuracy line comes before --out is written


# --- 2. counts ------------------------------------------------------------------------------------


def test_the_header_counts_one_epoch_and_one_test_item_in_the_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_image_set(tmp_path, 120, 1, 4)
    assert main(["train", "--data", str(data), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert ", 1 epoch, seed 0" in out.splitlines()[0], out
    assert "final evaluation on the 1 test item\n" in out
    assert "epochs" not in out.splitlines()[0] and "test items" not in out


# --- 3. divergence ---------------------------------------------------------------------------------


def test_divergence_names_the_epoch_and_step_as_the_bar_counts_and_the_lr_to_lower(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It ended '(the error's state is the last good one, from step 0) (--lr is 1e+30)'."""
    assert main(["train", "--data", str(tiny), "--optimizer", "sgd", "--lr", "1e30", "--quiet"]) == 5
    err = _one_error_line(capsys)
    assert re.fullmatch(r"fnnet: training diverged in epoch 1, step [12]/2: the loss is -?(nan|inf); "
                        r"lower --lr \(it is 1e\+30\)\n", err), err  # fmt: skip


def test_divergence_of_the_parameters_is_numbered_from_one_within_its_epoch() -> None:
    state = init_train_state(fnnet.Affine(2), fnnet.optim.sgd(0.1), fnnet.key(0), (3,))
    e = NonFiniteLossError("non-finite parameters or optimizer state after the update at step 5 (epoch 3); "
                           "lower the learning rate or check the data", 5, state)  # fmt: skip
    assert cli._diverged(e, 2, 0.5) == (
        "training diverged in epoch 3, step 2/2: the parameters or optimizer state became NaN or infinite; "
        "lower --lr (it is 0.5)"
    )


# --- 4. without matplotlib ----------------------------------------------------------------------------


def test_train_without_matplotlib_says_once_that_out_gets_no_learning_curve(
    tiny: Path, tmp_path: Path, no_matplotlib: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"fnnet: note: matplotlib is not installed, so --out {out} gets no learning_curve.png "
                            "(pip install 'fnnet[plot]')\n")  # fmt: skip
    assert captured.out.startswith("test accuracy ")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "metrics.json"]


def test_train_says_so_after_the_run_when_matplotlib_is_found_but_does_not_import(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_pyplot", lambda: None)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err.count("matplotlib is not installed") == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "metrics.json"]


def test_evaluate_out_without_matplotlib_is_a_usage_error_before_anything_is_read(
    tiny: Path, tmp_path: Path, no_matplotlib: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """It evaluated, printed 'note: ... no confusion-matrix PNG written' and exited 0."""
    png = tmp_path / "cm.png"
    # a checkpoint that is not there: exit 3 had it been looked at
    assert main(["evaluate", str(tmp_path / "missing.npz"), "--out", str(png)]) == 2
    err = _one_error_line(capsys)
    assert err == "fnnet: evaluate --out draws with matplotlib, which is not installed: pip install 'fnnet[plot]'\n"
    assert not png.exists()
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny), "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--out", str(png)]) == 2
    assert capsys.readouterr().out == ""  # nothing evaluated
    assert not png.exists()


# --- 5. the learning curve ------------------------------------------------------------------------


def test_the_learning_curve_of_one_epoch_has_whole_ticks_and_accuracy_within_0_and_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    figures: list[Any] = []
    close = plt.close

    def record(fig: Any) -> None:
        figures.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", record)
    history = History((2.3,), ({"loss": 2.3, "train_loss": 0.01, "train_acc": 1.0, "test_loss": 0.02, "test_acc": 1.0},))
    assert cli._plot(history, tmp_path / "curve.png", {})
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
    (fig,) = figures
    steps, epochs = fig.axes
    for ax in (steps, epochs):
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks == [1.0], (ax.get_xlabel(), ticks)
    low, high = epochs.get_ylim()
    assert 0 <= low < 1 and high == 1, (low, high)
    assert all(0 <= t <= 1 for t in epochs.get_yticks() if low <= t <= high)


# --- 6. usage errors name the command's help ------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--bogus"], "train: unrecognized arguments: --bogus (see fnnet train --help)"),
        (["evaluate", "a.npz", "b.npz"], "evaluate: unrecognized arguments: b.npz (see fnnet evaluate --help)"),
        (["export", "a.npz", "--bogus", "1"], "export: unrecognized arguments: --bogus 1 (see fnnet export --help)"),
        (["--bogus", "train"], "unrecognized arguments: --bogus (see fnnet --help)"),
        ([], "no command given: expected one of train, evaluate, export (see fnnet --help)"),
    ],
)
def test_an_unknown_argument_points_to_the_help_of_its_command(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert _one_error_line(capsys) == f"fnnet: {message}\n"


# --- 7. a directory without a data set ------------------------------------------------------------


def test_an_empty_data_directory_names_each_missing_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_mnist(str(empty))
    message = str(info.value)
    assert message == f"load_mnist: no data set in directory {str(empty)!r}: missing " + ", ".join(
        f"{s}[.gz]" for s in STEMS
    )
    assert main(["train", "--data", str(empty)]) == 3
    err = _one_error_line(capsys)
    assert all(err.count(s) == 1 for s in STEMS) and "load_mnist" not in err, err
    assert err.startswith(f"fnnet: --data {empty}: no data set in directory ")


def test_a_data_directory_lacking_one_file_names_only_that_one(tmp_path: Path) -> None:
    d = write_image_set(tmp_path, 12, 3, 4)
    (d / STEMS[3]).unlink()
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_mnist(str(d))
    assert str(info.value).endswith(f": missing {STEMS[3]}[.gz]")
    assert all(s not in str(info.value) for s in STEMS[:3])
