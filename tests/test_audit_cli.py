"""The command line and the training loop as a user meets them: odd inputs, interrupts, resuming."""

from __future__ import annotations

import io
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import FailingStream, assert_bit_identical, blob_task, call_unchanged

import fnnet
from fnnet import checkpoint, cli, models
from fnnet.optim import adam
from fnnet.train import EarlyStopping, FitResult, History, ReduceOnPlateau, fit, init_train_state
from fnnet.train._progress import Progress
from fnnet.typing import Array

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _run(epochs: int, **kw: object) -> FitResult:
    train, val = blob_task()
    kw.setdefault("val", val)
    return fit(models.mlp((64, 64), 3), adam(0.01), train, key=fnnet.key(0), epochs=epochs, batch_size=20,
               eval_train=False, progress="quiet", **kw)  # type: ignore[arg-type]  # fmt: skip


# --------------------------------------------------------------------------------------------
# fit: edge cases of its arguments and rules
# --------------------------------------------------------------------------------------------


def test_drop_last_with_a_batch_larger_than_the_data_is_refused_instead_of_training_nothing() -> None:
    (x, t), _ = blob_task()
    with pytest.raises(ValueError, match=r"^fit: batch_size 61 is larger than the 60 training samples and "
                                         r"drop_last=True drops that one short batch, so no step would run"):  # fmt: skip
        fit(models.mlp((8,), 3), adam(0.01), (x, t), key=fnnet.key(0), epochs=1, batch_size=61, drop_last=True,
            progress="quiet")  # fmt: skip
    res = fit(models.mlp((8,), 3), adam(0.01), (x, t), key=fnnet.key(0), epochs=1, batch_size=60, drop_last=True,
              progress="quiet")  # fmt: skip
    assert int(res.state.step) == 1 and math.isfinite(res.history.epochs[0]["loss"])


@pytest.mark.parametrize("cut", [1, 2])
def test_early_stopping_resumed_from_a_state_without_its_history_restores_the_true_best(cut: int) -> None:
    rule = EarlyStopping(patience=3)
    full = _run(40, early_stopping=rule)
    assert full.best_epoch is not None and full.best_epoch > cut + 1
    rest = _run(40, early_stopping=rule, state=_run(cut).state)  # no history: it decides from epochs cut+1, ...
    assert rest.best_epoch == full.best_epoch and rest.stopped_epoch == full.stopped_epoch
    assert int(rest.state.epoch) == full.best_epoch
    assert_bit_identical(rest.state, full.state)
    assert full.stopped_epoch is not None and len(rest.history.epochs) == full.stopped_epoch - cut


def test_a_validation_loss_that_is_always_nan_restores_no_epoch() -> None:
    _, (xv, tv) = blob_task()
    xv = xv.copy()
    xv[0] = np.nan  # one bad validation item: every val_loss is NaN
    res = _run(10, val=(xv, tv), early_stopping=EarlyStopping(patience=2), plateau=ReduceOnPlateau(patience=1))
    assert all(math.isnan(v) for v in res.history.metric("val_loss"))
    assert res.stopped_epoch == 3 and res.best_epoch is None
    assert_bit_identical(res.state, _run(3).state)  # the last state, not epoch 1's
    assert res.history.metric("lr_scale") == [1.0, 1.0, 1.0]


def test_a_validation_set_of_one_sample_drives_the_rules() -> None:
    _, (xv, tv) = blob_task()
    one = (xv[:1], tv[:1])
    res = _run(4, val=one, early_stopping=EarlyStopping(patience=1), plateau=ReduceOnPlateau(patience=1))
    h = res.history
    assert h.metric("lr_scale") == [ReduceOnPlateau(patience=1).scale(History(epochs=h.epochs[:k])) for k in range(len(h.epochs))]
    vals = res.history.metric("val_loss")
    assert all(math.isfinite(v) for v in vals) and res.history.metric("val_acc")[0] in (0.0, 1.0)
    assert res.best_epoch == 1 + int(np.argmin(vals))


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"val": "X"}, r"fit: val must be a pair \(x, t\) of arrays, got str"),
        ({"val": (np.zeros((5, 12), np.float32), np.zeros(4, np.int64))}, r"fit: val x has 5 samples but t has 4"),
        ({"test": (np.zeros((0, 12), np.float32), np.zeros(0, np.int64))}, r"fit: test must hold at least one sample"),
        ({"val": (np.zeros((5, 6), np.float32), np.zeros(5, np.int64))},
         r"fit: the model cannot take the val samples of shape \(6,\): .*Affine"),
        ({"eval_sample": 0}, r"fit: eval_sample must be a positive int, got 0"),
        ({"on_epoch": 3}, r"fit: on_epoch must be callable as on_epoch\(state, history\), got int"),
        ({"history": {"step_loss": [], "epochs": []}}, r"fit: history must be a fnnet.train.History, got dict; "
                                                       r"History.from_json\(d\) reads a saved one"),
        ({"state": "checkpoint"}, r"fit: state must be a fnnet.train.TrainState, got str$"),
    ],
)  # fmt: skip
def test_fit_refuses_mistaken_arguments_in_one_line_before_training(kw: dict[str, object], words: str) -> None:
    (x, t), _ = blob_task()
    trained: list[int] = []
    with pytest.raises(ValueError, match=f"^{words}"):
        fit(models.mlp((8,), 3), adam(0.01), (x, t), key=fnnet.key(0), epochs=1, batch_size=20, progress="quiet",
            augment=None, **{"on_epoch": lambda s, h: trained.append(1), **kw})  # type: ignore[arg-type]  # fmt: skip
    assert trained == []


def test_fit_says_what_checkpoint_load_returns_when_given_its_pair(tmp_path: Path) -> None:
    (x, t), _ = blob_task()
    model = models.mlp((8,), 3)
    part = fit(model, adam(0.01), (x, t), key=fnnet.key(0), epochs=1, batch_size=20, progress="quiet")
    checkpoint.save(tmp_path / "ck.npz", part.state)
    loaded = checkpoint.load(tmp_path / "ck.npz", init_train_state(model, adam(0.01), fnnet.key(1), (12,)))
    with pytest.raises(ValueError, match=r"^fit: state must be a fnnet.train.TrainState, got tuple; "
                                         r"fnnet.checkpoint.load returns \(state, meta\)$"):  # fmt: skip
        fit(model, adam(0.01), (x, t), key=fnnet.key(0), epochs=2, batch_size=20, state=loaded,  # type: ignore[arg-type]
            progress="quiet")  # fmt: skip
    assert fit(model, adam(0.01), (x, t), key=fnnet.key(0), epochs=2, batch_size=20, state=loaded[0],
               progress="quiet").state.epoch == 2  # fmt: skip


@pytest.mark.parametrize(
    ("d", "words"),
    [
        ([1.0], "expected the dict of History.to_json(), got list"),
        ({"step_loss": [1.0]}, "no 'epochs' in the dict (it has 'step_loss')"),
        ({"step_loss": [None], "epochs": []}, "'step_loss' must be a list of numbers, got [None]"),
        ({"step_loss": [], "epochs": [{"loss": "x"}]}, "'epochs' must be a list of dicts of numbers"),
        ({"step_loss": [], "epochs": [], "grad_norms": [1.0]}, "'grad_norms' must be a list of lists of numbers"),
    ],
)
def test_history_from_json_refuses_what_to_json_cannot_have_written(d: object, words: str) -> None:
    with pytest.raises(ValueError, match=f"^History.from_json: {re.escape(words)}"):
        History.from_json(d)  # type: ignore[arg-type]
    h = History((0.5,), ({"loss": float(np.float64(0.5)), "val_loss": math.nan},), ((1.0,),))
    again = History.from_json(h.to_json())
    assert again.step_loss == (0.5,) and math.isnan(again.epochs[0]["val_loss"]) and again.grad_norms == ((1.0,),)


def test_fit_writes_into_no_array_it_is_given() -> None:
    g = fnnet.key(1).generator()
    x = g.normal(size=(30, 1, 6, 6)).astype(np.float32)
    t = g.integers(0, 3, 30)
    model = fnnet.serial(fnnet.Conv2D(4, 3), fnnet.BatchNorm(), fnnet.ReLU(), fnnet.Flatten(), fnnet.Affine(3))
    start = init_train_state(model, adam(0.01), fnnet.key(0), (1, 6, 6))

    def run(x: Array, t: Array, xv: Array, tv: Array, state: object) -> FitResult:
        return fit(model, adam(0.01), (x, t), key=fnnet.key(2), epochs=2, batch_size=8, val=(xv, tv),
                   state=state, early_stopping=EarlyStopping(patience=1), progress="quiet",  # type: ignore[arg-type]
                   augment=fnnet.compose(fnnet.RandomCrop(pad=1), fnnet.HorizontalFlip()))  # fmt: skip

    frozen = call_unchanged(run, x, t, x[:5], t[:5], start, readonly=True)
    assert_bit_identical(frozen.state, call_unchanged(run, x, t, x[:5], t[:5], start).state)


def test_an_interrupted_fit_ends_its_progress_bar_line() -> None:
    (x, t), _ = blob_task()
    stream = io.StringIO()

    def augment_then_interrupt(key: fnnet.Key, xb: Array) -> Array:
        if stream.getvalue():  # the bar is drawn
            raise KeyboardInterrupt
        return xb

    bar = Progress(3, 3, "bar", stream=stream)
    with pytest.raises(KeyboardInterrupt):
        fit(models.mlp((8,), 3), adam(0.01), (x[:, None, :, None], t), key=fnnet.key(0), epochs=3, batch_size=20,
            progress=bar, augment=augment_then_interrupt)  # fmt: skip
    assert stream.getvalue().endswith("\n") and not bar.mid_line


# --------------------------------------------------------------------------------------------
# fit with a checkpoint per epoch, stopped by a signal at a random moment, then resumed
# --------------------------------------------------------------------------------------------

_CHILD = """
import sys
import numpy as np
import fnnet
from fnnet import checkpoint, cli, models
from fnnet.optim import adam
from fnnet.train import fit

g = fnnet.key(5).generator()
x = g.normal(size=(64, 12)).astype(np.float32)
t = (x[:, 0] > 0).astype(np.int64)

def save(state, history):
    checkpoint.save(sys.argv[1], state, meta={"history": history.to_json()})
    print(int(state.epoch), flush=True)

fit(models.mlp((32, 32), 2, dropout=0.2), adam(0.01), (x, t), key=fnnet.key(3), epochs=100000, batch_size=16,
    progress="quiet", on_epoch=save)
"""


def _child_data() -> tuple[Array, Array]:
    g = fnnet.key(5).generator()
    x = g.normal(size=(64, 12)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _fit_child(k: int, **kw: object) -> FitResult:
    """What the child above trains, in this process, for ``k`` epochs."""
    return fit(models.mlp((32, 32), 2, dropout=0.2), adam(0.01), _child_data(), key=fnnet.key(3), epochs=k,
               batch_size=16, progress="quiet", **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_fit_leaves_the_last_checkpoint_readable_and_resuming_is_bit_exact(
    signum: int, tmp_path: Path
) -> None:
    script, ck = tmp_path / "child.py", tmp_path / "ck.npz"
    script.write_text(_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(ck)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    delay = random.uniform(0.0, 0.3)
    time.sleep(delay)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    where = f"signal {signum} {delay:.2f}s after the first checkpoint: exit {proc.returncode}, {err[-300:]!r}"
    assert first == "1\n" and proc.returncode != 0, where
    like = init_train_state(models.mlp((32, 32), 2, dropout=0.2), adam(0.01), fnnet.key(9), (12,))
    state, meta = checkpoint.load(ck, like)
    done = int(state.epoch)
    assert done >= 1, where
    hist = History.from_json(meta["history"])
    assert len(hist.epochs) == done, where
    full = _fit_child(done + 2)
    rest = _fit_child(done + 2, state=state, history=hist)
    assert_bit_identical(rest.state, full.state)
    assert rest.history.step_loss == full.history.step_loss, where



# --------------------------------------------------------------------------------------------
# fnnet train / evaluate: SIGTERM, closed or full standard output, messages
# --------------------------------------------------------------------------------------------



@pytest.fixture
def no_plot(monkeypatch: pytest.MonkeyPatch) -> None:
    """No learning curve in --out (importing matplotlib would take most of a test's time)."""
    monkeypatch.setattr(cli, "_pyplot", lambda: None)


def _listing(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}



@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (BrokenPipeError(32, "Broken pipe"), 141, ""),
        (OSError(28, "No space left on device"), 4, "fnnet: cannot write to standard output: No space left on device\n"),
    ],
)
def test_a_closed_or_full_stdout_is_no_traceback_and_leaves_out_untouched(
    error: OSError, code: int, message: str, tmp_path: Path, tiny: Path, no_plot: None,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "run"
    argv = ["train", "--data", str(tiny), "--epochs", "1", "--out", str(out)]
    assert cli.main([*argv, "--quiet"]) == 0
    before = _listing(out)
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(sys, "stdout", FailingStream(error))
        assert cli.main([*argv, "--seed", "2"]) == code
        assert cli.main(["evaluate", str(out)]) == code
    assert capsys.readouterr().err == message * 2
    assert _listing(out) == before and [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_fnnet_piped_into_a_reader_that_quits_exits_141_without_a_word(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fnnet", "train", "--data", str(tiny), "--epochs", "100",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("model two-layer-net")
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, err
    assert "fnnet:" not in err and "Traceback" not in err and "Exception ignored" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_training_leaves_out_untouched_and_no_temporary_and_exits_143(
    tiny: Path, tmp_path: Path, no_plot: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", str(tiny), "--out", str(out)]
    assert cli.main([*argv, "--epochs", "1", "--quiet"]) == 0  # the previous run
    capsys.readouterr()
    previous = _listing(out)
    proc = subprocess.Popen([sys.executable, "-m", "fnnet", *argv, "--epochs", "300", "--seed", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("model ")  # checks done, training about to start
    delay = random.uniform(0, 0.5)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    where = f"SIGTERM {delay:.2f}s into training: exit {proc.returncode}, stderr {err!r}"
    assert "Traceback" not in err, where
    if _listing(out) == previous:
        assert proc.returncode == 143 and err.splitlines()[-1] == f"fnnet: terminated; --out {out} untouched", where
    else:  # it finished first: the new run, complete
        assert proc.returncode == 0 and "fnnet:" not in err, where
        assert checkpoint.read_meta(out / "checkpoint.npz")["config"]["seed"] == 2, where
    assert [p.name for p in tmp_path.iterdir()] == ["run"], where  # no temporary directory left


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_is_an_interrupt_during_a_command_and_held_off_while_outputs_are_written() -> None:
    with cli._sigterm_as_interrupt():
        with cli._sigint_held():
            os.kill(os.getpid(), signal.SIGTERM)  # dropped: the outputs' writing completes
            time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert type(caught.value) is cli._Terminated


def test_sigterm_outside_a_command_is_restored_and_an_ignored_one_stays_ignored(tiny: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["train", "--data", str(tiny), "--epochs", "1", "--quiet"]) == 0
    assert signal.getsignal(signal.SIGTERM) == before
    old = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with cli._sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            with cli._sigint_held():
                assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, old)


def test_the_final_evaluation_is_announced_before_it_runs(
    tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []
    real = fnnet.train.evaluate

    def spy(*args: Any, **kwargs: Any) -> dict[str, float]:
        seen.append(capsys.readouterr().out)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "evaluate", spy)
    assert cli.main(["train", "--data", str(tiny), "--epochs", "1"]) == 0
    assert len(seen) == 1 and seen[0].splitlines()[-1].endswith("; final evaluation on all 30 test items")
    assert capsys.readouterr().out.startswith("test accuracy ")


def test_messages_and_help_say_what_happens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert cli.main(["train", "--data", str(tmp_path / "empty")]) == 3
    err = capsys.readouterr().err
    assert ":;" not in err and err.count("t10k-labels-idx1-ubyte[.gz]") == 1 and err.count("\n") == 1
    assert cli.main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "seed of the initial weights, the shuffles, dropout and --augment" in text
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "  141  standard output was closed early" in text and "  143  terminated (SIGTERM)" in text


def test_a_run_with_the_confusion_matrix_evaluate_drew_into_it_can_be_replaced(
    tiny: Path, tmp_path: Path, no_plot: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(tiny), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    (out / cli.CONFUSION_FILE).write_bytes(b"\x89PNG")  # as `fnnet evaluate run --out run` leaves it
    assert cli.main(["train", "--data", str(tiny), "--epochs", "1", "--seed", "2", "--out", str(out), "--quiet"]) == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.json"]  # the old matrix went with its run
    (out / "notes.txt").write_text("mine")
    assert cli.main(["train", "--data", str(tiny), "--epochs", "1", "--out", str(out)]) == 2
    assert "confusion_matrix.png" in capsys.readouterr().err


def test_a_closed_stderr_silences_the_progress_but_not_the_run(
    tiny: Path, tmp_path: Path, no_plot: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as m:  # as after `fnnet train 2>&-`: every write to stderr fails
        m.setattr(sys, "stderr", FailingStream(OSError(9, "Bad file descriptor")))
        assert cli.main(["train", "--data", str(tiny), "--epochs", "2", "--out", str(out)]) == 0
        assert cli.main(["train", "--data", str(tmp_path / "nowhere")]) == 3  # the message is lost, the code is not
    assert capsys.readouterr().out.splitlines()[-1].startswith("test accuracy ")
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.json"]
    bar = Progress(2, 3, "bar", stream=FailingStream(OSError(28, "No space left on device")))
    bar.batch(0, 0, 1.0)
    bar.epoch(0, {"loss": 1.0})
    bar.break_line()
    assert bar.mode == "quiet" and not bar.mid_line


def test_a_batch_larger_than_the_data_is_reported_as_the_whole_set(
    tiny: Path, no_plot: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The header said 'batch 100000' for a run whose every step took all 120 items."""
    assert cli.main(["train", "--data", str(tiny), "--epochs", "1", "--batch-size", "100000", "--seed", "0"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "batch 120 (the whole training set; --batch-size 100000)," in header, header
