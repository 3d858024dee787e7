"""The course examples (output-layer pairings, the small network, vanishing gradients, early stopping)
run as scripts with ``--quick``, exit 0 and end with the line they promise, whose numbers back the
example's claim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _examples import NUMBER, last_match, run_quick



def test_course_regression(tmp_path: Path) -> None:
    lines = run_quick("course_regression.py", tmp_path / "reg.png")
    online, mini, full, linear, bound = last_match(
        lines, rf"rmse online {NUMBER} minibatch {NUMBER} fullbatch {NUMBER} linear {NUMBER} all_below {NUMBER} yes"
    )
    assert max(online, mini, full) < bound <= linear
    assert min(online, mini, full) > 0.05  # the test targets carry noise of std 0.1: no fit gets far below it
    # the same number of epochs: 150 over 100 points gives 15000 updates online, 150 full batch
    found = (re.match(r"(\w+) +batch +\d+: +(\d+) updates", line) for line in lines)
    updates = {m.group(1): int(m.group(2)) for m in found if m}
    assert updates == {"online": 15000, "minibatch": 150 * 7, "fullbatch": 150}


def test_course_binary_mnist(tmp_path: Path) -> None:
    lines = run_quick("course_binary_mnist.py", tmp_path / "bin.png")
    acc, tn, fp, fn, tp, n = last_match(
        lines, rf"binary test_acc {NUMBER} confusion \[\[(\d+) (\d+)\] \[(\d+) (\d+)\]\] n_test (\d+)"
    )
    assert acc >= 0.90
    assert tn + fp + fn + tp == n > 0
    # the accuracy is the confusion matrix's diagonal over all test images, not an argmax over one column
    assert acc == pytest.approx((tn + tp) / n, abs=1e-4)
    assert fp + fn > 0 or acc == 1.0
    assert tn > 0 and tp > 0


def test_course_small_network(tmp_path: Path) -> None:
    lines = run_quick("course_small_network.py", tmp_path / "small.png")
    params, loss, acc = last_match(lines, rf"small_network params (\d+) test_loss {NUMBER} test_acc {NUMBER}")
    assert params == 25
    assert acc >= 0.9 and 0.0 < loss < 0.5
    # the summary table lists the layers and the same total
    assert "total params: 25" in lines
    assert sum(1 for line in lines if re.match(r" +\d+ +Affine", line)) == 3


def test_vanishing_gradients(tmp_path: Path) -> None:
    lines = run_quick("vanishing_gradients.py", tmp_path / "vg.png")
    sig, relu, factor = last_match(
        lines, rf"grad_ratio first/last sigmoid {NUMBER} relu {NUMBER} factor {NUMBER} sigmoid_vanishes yes"
    )
    assert 0.0 < sig < 1.0 <= relu
    assert factor == pytest.approx(relu / sig, abs=0.06)
    assert factor >= 4.0
    # ten Affine layers' norms are printed for each net, all positive
    per_layer = [line.split() for line in lines if re.fullmatch(r"  (\d\.\d\de[-+]\d+ ?){10}", line)]
    assert len(per_layer) == 2
    assert all(float(v) > 0 for row in per_layer for v in row)


def test_early_stopping_overfit(tmp_path: Path) -> None:
    lines = run_quick("early_stopping_overfit.py", tmp_path / "es.png")
    stopped, best, epochs, restored, last, plateau, scale = last_match(
        lines,
        rf"stopped_epoch (\d+) best_epoch (\d+) of (\d+) test_acc restored {NUMBER} last_epoch {NUMBER} "
        rf"plateau {NUMBER} lr_scale {NUMBER}",
    )
    assert best < stopped < epochs == 80
    assert restored >= last - 0.04
    assert 0.0 < plateau <= 1.0 and 0.0 < scale < 1.0
    # the runs share their key, so the returned epoch is the plain run's lowest validation loss,
    # unless that run's loss fell lower still after the early run had stopped
    lowest = re.search(r"lowest validation loss \S+ at epoch (\d+)", "\n".join(lines))
    assert lowest and (int(lowest.group(1)) == best or int(lowest.group(1)) > stopped)
