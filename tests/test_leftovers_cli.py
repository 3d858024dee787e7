"""The command line's usage errors in its own words, and its divergence message built from the
exception's attributes rather than from the library's error text."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import fnnet
from fnnet import cli
from fnnet.cli import main
from fnnet.train import NonFiniteLossError, fit, init_train_state, make_train_step


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert re.fullmatch(r"fnnet: [^\n]+\n", err), err
    return err


# --- usage errors ------------------------------------------------------------------------------


def test_an_unknown_command_is_named_with_the_valid_ones_and_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    """It printed argparse's "argument {train,evaluate,export}: invalid choice: 'nosuchcommand'
    (choose from 'train', 'evaluate', 'export')"."""
    assert main(["nosuchcommand"]) == 2
    assert _one_error_line(capsys) == (
        "fnnet: unknown command 'nosuchcommand': the commands are train, evaluate, export (see fnnet --help)\n"
    )
    assert main(["trian", "--epochs", "1"]) == 2
    err = _one_error_line(capsys)
    assert "unknown command 'trian'" in err and "did you mean 'train'?" in err and err.endswith("(see fnnet --help)\n")


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["train", "--model", "nope"],
         "fnnet: train: --model 'nope' is not one of two-layer-net, mlp, simple-convnet, deep-convnet, resnet "
         "(see fnnet train --help)\n"),
        (["train", "--optimizer", "adma"],
         "fnnet: train: --optimizer 'adma' is not one of sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw; "
         "did you mean 'adam'? (see fnnet train --help)\n"),
        (["train", "--augment", "flip"],
         "fnnet: train: --augment 'flip' is not one of none, crop, crop-flip; did you mean 'crop-flip'? "
         "(see fnnet train --help)\n"),
        (["train", "--epochs", "x"], "fnnet: train: argument --epochs: expected a whole number, got 'x' (see fnnet train --help)\n"),
        (["export", "ck.npz", "--opset", "1.5"],
         "fnnet: export: argument --opset: expected a whole number, got '1.5' (see fnnet export --help)\n"),
    ],
)
def test_other_usage_errors_are_one_line_exit_2(argv: list[str], want: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = _one_error_line(capsys)
    assert err == want and "choose from" not in err and "invalid choice" not in err


def test_the_help_still_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "{train,evaluate,export}" in capsys.readouterr().out


# --- divergence --------------------------------------------------------------------------------


def _state() -> fnnet.train.TrainState:
    return init_train_state(fnnet.Affine(2), fnnet.optim.sgd(0.1), fnnet.key(0), (3,))


def test_the_divergence_message_takes_the_loss_from_the_exception_not_its_text() -> None:
    """It matched r"non-finite loss (\\S+) at " in str(e): another wording lost the loss."""
    e = NonFiniteLossError("the loss went to infinity", 4, _state(), loss=math.inf)
    assert cli._diverged(e, 3, 0.5) == "training diverged in epoch 2, step 2/3: the loss is inf; lower --lr (it is 0.5)"
    e = NonFiniteLossError("non-finite loss nan at step 4 (epoch 2)", 4, _state())  # no loss attribute: not the loss
    assert "parameters or optimizer state became NaN or infinite" in cli._diverged(e, 3, 0.5)


def test_the_train_step_and_fit_raise_the_loss_and_epoch_as_attributes() -> None:
    model, opt = fnnet.Affine(1), fnnet.optim.sgd(0.1)
    step = make_train_step(model, lambda y, t: (float("-inf"), np.zeros_like(y)), opt)
    state = init_train_state(model, opt, fnnet.key(0), (2,))._replace(epoch=np.array(3, dtype=np.int64))
    with pytest.raises(NonFiniteLossError) as info:
        step(state, np.ones((3, 2), np.float32), np.zeros(3))
    e = info.value
    assert isinstance(e, FloatingPointError) and isinstance(e, ArithmeticError)
    assert e.loss == -math.inf and type(e.loss) is float and e.epoch == 3 and e.step == 0
    assert str(e) == "non-finite loss -inf at step 0 (epoch 4); lower the learning rate or check the data"

    x = np.ones((8, 2), np.float32)
    calls = iter(range(100))

    def loss(y: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        return (0.5 if next(calls) < 5 else math.nan), np.zeros_like(y)

    with pytest.raises(NonFiniteLossError) as info:
        fit(model, opt, (x, np.zeros(8)), key=fnnet.key(0), epochs=3, batch_size=2, loss=loss, progress="quiet")
    e = info.value
    assert e.step >= 4 and e.epoch == e.step // 4 == 1 and e.loss is not None and math.isnan(e.loss)
    assert str(e).startswith(f"non-finite loss nan at step {e.step} (epoch 2); ")


def test_a_parameter_divergence_has_no_loss() -> None:
    model, opt = fnnet.Affine(1), fnnet.optim.sgd(1e308)
    step = make_train_step(model, lambda y, t: (1.0, np.full_like(y, 1e308)), opt)
    state = init_train_state(model, opt, fnnet.key(0), (2,))
    with np.errstate(over="ignore"), pytest.raises(NonFiniteLossError) as info:
        step(state, np.full((3, 2), 1e30, np.float32), np.zeros(3))
    assert info.value.loss is None and info.value.epoch == 0 and "parameters or optimizer state" in str(info.value)


def test_the_cli_reports_the_loss_of_a_diverged_run(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tiny), "--optimizer", "sgd", "--lr", "1e30", "--quiet"]) == 5
    err = _one_error_line(capsys)
    assert re.fullmatch(r"fnnet: training diverged in epoch 1, step [12]/2: the loss is -?(nan|inf); "
                        r"lower --lr \(it is 1e\+30\)\n", err), err  # fmt: skip
