"""The training examples of chapters 4 and 6 run as scripts with ``--quick``, exit 0 and end with
the line they promise, whose numbers back the example's claim; plus the shared helpers."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from _examples import EXAMPLES, NUMBER, REPO, SINGLE_THREADED, last_match, load_script, run_quick

from fnnet.random import key

# These nets multiply small matrices: one BLAS thread is fastest, and on busy cores a multi-threaded
# OpenBLAS spin-waits (steps measured 100 times slower here). The examples' results don't depend on it.
ENV = SINGLE_THREADED


def test_ch04_train_neuralnet(tmp_path: Path) -> None:
    lines = run_quick("ch04_train_neuralnet.py", tmp_path / "ch04.png")
    train_acc, test_acc, speedup = last_match(lines, rf"train_acc {NUMBER} test_acc {NUMBER} backprop_speedup (\d+)")
    assert test_acc >= 0.80 and 0.0 <= train_acc <= 1.0
    assert speedup >= 100
    # one line per epoch, and the last line repeats the last epoch's accuracies
    epochs = [line for line in lines if re.match(r"epoch +\d+: ", line)]
    assert len(epochs) == 16
    assert epochs[-1].endswith(f"train_acc {train_acc:.4f} test_acc {test_acc:.4f}")


def test_ch06_optimizer_compare_mnist(tmp_path: Path) -> None:
    lines = run_quick("ch06_optimizer_compare_mnist.py", tmp_path / "opt.png")
    sgd, mom, ada, adam = last_match(
        lines, rf"final_loss SGD {NUMBER} Momentum {NUMBER} AdaGrad {NUMBER} Adam {NUMBER} beat_sgd yes"
    )
    assert max(mom, ada, adam) < sgd
    # the same initial weights and the same first batch: the four losses of step 1 are equal
    first = lines[lines.index(next(line for line in lines if line.startswith("step "))) + 1].split()
    assert first[0] == "1" and len(set(first[1:])) == 1


def test_ch06_weight_init_activation_histogram(tmp_path: Path) -> None:
    lines = run_quick("ch06_weight_init_activation_histogram.py", tmp_path / "hist.png")
    saturated, collapsed, spread, he_ratio, xavier_ratio = last_match(
        lines,
        rf"std1_saturated {NUMBER} std0.01_max_std {NUMBER} xavier_min_std {NUMBER} "
        rf"relu_std_ratio he {NUMBER} xavier {NUMBER} checks ok",
    )
    assert saturated >= 0.5 and collapsed < 0.05 and spread >= 0.08
    assert 0.5 <= he_ratio <= 2.0 and xavier_ratio < he_ratio


def test_ch06_weight_init_compare(tmp_path: Path) -> None:
    lines = run_quick("ch06_weight_init_compare.py", tmp_path / "init.png")
    small, xavier, he = last_match(lines, rf"final_loss std=0.01 {NUMBER} Xavier {NUMBER} He {NUMBER} he_xavier_learn yes")
    assert small > 0.95 * math.log(10)
    assert max(xavier, he) < 0.9 * math.log(10)


def test_ch06_batch_norm_test(tmp_path: Path) -> None:
    lines = run_quick("ch06_batch_norm_test.py", tmp_path / "bn.png")
    wins, n, bn, plain = last_match(lines, rf"bn_better (\d+)/(\d+) scales mean_final_train_acc bn {NUMBER} plain {NUMBER}")
    assert n == 4 and wins > n / 2
    assert 0.0 <= plain <= 1.0 and 0.0 <= bn <= 1.0


def test_ch06_overfit_weight_decay(tmp_path: Path) -> None:
    lines = run_quick("ch06_overfit_weight_decay.py", tmp_path / "wd.png")
    gap0, gap1, train0, train1, test0, test1 = last_match(
        lines,
        rf"gap without {NUMBER} with {NUMBER} train_acc without {NUMBER} with {NUMBER} "
        rf"test_acc without {NUMBER} with {NUMBER} gap_shrinks yes",
    )
    assert gap1 < gap0
    # each gap is its run's train minus test accuracy (all printed to 4 decimals)
    assert gap0 == pytest.approx(train0 - test0, abs=2e-4)
    assert gap1 == pytest.approx(train1 - test1, abs=2e-4)


def test_ch06_overfit_dropout(tmp_path: Path) -> None:
    lines = run_quick("ch06_overfit_dropout.py", tmp_path / "dropout.png")
    _, _, level, at0, at1 = last_match(
        lines,
        rf"final_gap without {NUMBER} with {NUMBER} gap_at_train_acc {NUMBER} without {NUMBER} with {NUMBER} "
        r"gap_shrinks yes",
    )
    assert 0.0 < level < 1.0
    assert at1 < at0


def test_without_matplotlib_an_example_says_so_and_still_checks(tmp_path: Path) -> None:
    out = tmp_path / "hist.png"
    script = EXAMPLES / "ch06_weight_init_activation_histogram.py"
    # what `python script.py` does, with matplotlib made unimportable
    code = (
        "import runpy, sys; sys.modules['matplotlib'] = None; "
        f"sys.path.insert(0, {str(EXAMPLES)!r}); sys.argv = [{str(script)!r}, '--out', {str(out)!r}]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("matplotlib is not installed") for line in lines)
    assert lines[-1].endswith("checks ok")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# The shared helpers (examples/_common.py), loaded from their file like the scripts load them
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def common() -> ModuleType:
    return load_script(EXAMPLES / "_common.py")


@pytest.mark.parametrize(("n", "window"), [(1, 1), (10, 3), (10, 10), (7, 20), (50, 1)])
def test_moving_average_is_the_mean_of_each_window(common: ModuleType, n: int, window: int) -> None:
    values = np.random.default_rng(n).standard_normal(n)
    got = common.moving_average(values, window)
    w = min(window, n)
    assert got.shape == (n - w + 1,)
    np.testing.assert_allclose(got, [values[i : i + w].mean() for i in range(n - w + 1)], rtol=1e-12, atol=1e-12)
    assert common.moving_average([], window).shape == (0,)


@pytest.mark.parametrize(("n", "batch"), [(10, 3), (12, 4)])
def test_endless_batches_run_through_shuffled_epochs_of_full_batches(common: ModuleType, n: int, batch: int) -> None:
    x = np.arange(n, dtype=np.float64)[:, None]
    t = np.arange(n)
    it = common.endless_batches(key(0), x, t, batch)
    per_epoch = n // batch
    epochs = [[next(it) for _ in range(per_epoch)] for _ in range(3)]
    seen = []
    for epoch in epochs:
        labels = np.concatenate([tb for _, tb in epoch])
        assert all(len(tb) == batch for _, tb in epoch)
        assert len(set(labels.tolist())) == len(labels)  # no sample twice within an epoch
        assert all(np.array_equal(xb[:, 0], tb) for xb, tb in epoch)  # inputs stay with their labels
        seen.append(labels)
    assert not all(np.array_equal(seen[0], s) for s in seen[1:])  # epochs are shuffled differently


@pytest.mark.parametrize("ok", [True, False])
def test_finish_prints_the_line_and_exits_1_only_on_failure(
    common: ModuleType, ok: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    if ok:
        common.finish("all good", True)
    else:
        with pytest.raises(SystemExit) as exc:
            common.finish("bad", False)
        assert exc.value.code == 1
    assert capsys.readouterr().out == ("all good\n" if ok else "bad\n")
