"""The chapter 7-8 examples run as scripts and reproduce the book's figures with its CNN weights."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from _examples import EXAMPLES, HAS_MATPLOTLIB, SINGLE_THREADED, last_match, load_script, run_example, run_quick

import fnnet
from fnnet.layers.combinators import Serial
from fnnet.layers.conv import Conv2D



def _run(script: str, *args: str, cwd: Path) -> list[str]:
    """Run an example single-threaded (see SINGLE_THREADED) in ``cwd``; its stdout lines."""
    return run_example(script, *args, cwd=cwd, env=SINGLE_THREADED, timeout=300)


def test_ch07_simple_convnet_scores_the_books_accuracy(tmp_path: Path) -> None:
    lines = _run("ch07_simple_convnet_mnist.py", cwd=tmp_path)
    assert lines[-1] == "accuracy 0.9600"
    assert any(line.startswith("test images 10000, correct 9600") for line in lines)


def test_ch08_deep_convnet_scores_the_books_accuracy(tmp_path: Path) -> None:
    lines = _run("ch08_deep_convnet_mnist.py", cwd=tmp_path)
    assert lines[-1] == "accuracy 0.9797"
    assert any(line.startswith("test images 10000, correct 9797") for line in lines)


def test_ch08_half_float_agrees_with_float32(tmp_path: Path) -> None:
    lines = _run("ch08_half_float.py", "--n", "100", cwd=tmp_path)
    m = re.fullmatch(r"accuracy float32 (\S+) float16 (\S+)", lines[-1])
    assert m is not None, lines[-1]
    acc32, acc16 = float(m.group(1)), float(m.group(2))
    assert 0.9 < acc32 <= 1.0 and abs(acc16 - acc32) <= 0.01
    assert "test images 100 (the first 100 of 10000)" in lines


def test_ch07_visualize_filter_with_the_books_weights(tmp_path: Path) -> None:
    out = tmp_path / "figs" / "filters.png"
    lines = _run("ch07_visualize_filter.py", "--trained", "book", "--out", str(out), cwd=tmp_path)
    m = re.fullmatch(r"neighbour correlation random (\S+) trained (\S+)", lines[-1])
    assert m is not None, lines[-1]
    assert abs(float(m.group(1))) < 0.15 and float(m.group(2)) > float(m.group(1)) + 0.2
    assert out.exists() == HAS_MATPLOTLIB
    if HAS_MATPLOTLIB:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ch08_misclassified_counts_the_books_errors(tmp_path: Path) -> None:
    out = tmp_path / "wrong.png"
    lines = _run("ch08_misclassified_mnist.py", "--out", str(out), cwd=tmp_path)
    assert lines[-1] == "misclassified 203 of 10000"
    shown = [line for line in lines if line.startswith("image ")]
    assert len(shown) == 20
    for line in shown:
        m = re.fullmatch(r"image\s+\d+: label (\d) guess (\d)", line)
        assert m is not None and m.group(1) != m.group(2)
    assert out.exists() == HAS_MATPLOTLIB
    assert not (tmp_path / "runs").exists()  # --out was honoured


# --- the shared loader, in process --------------------------------------------------------------


@pytest.fixture()
def book_weights(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield load_script(EXAMPLES / "_book_weights.py")


def _save(path: Path, weights: dict[str, Any]) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **weights)
    return path


def _book(module: ModuleType) -> dict[str, np.ndarray]:
    with np.load(module.SIMPLE_CONVNET_FILE, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_loader_rejects_missing_extra_and_misshapen_arrays(book_weights: ModuleType, tmp_path: Path) -> None:
    good = _book(book_weights)
    shapes = book_weights.SIMPLE_CONVNET_SHAPES
    loaded = book_weights.load_weights(_save(tmp_path / "ok.npz", good), shapes)
    assert all(v.dtype == np.float32 for v in loaded.values())
    np.testing.assert_allclose(loaded["W2"], good["W2"], rtol=1e-6)
    cases = {
        "missing": ({k: v for k, v in good.items() if k != "b3"}, "expected arrays"),
        "extra": ({**good, "W4": np.zeros((10, 10))}, "expected arrays"),
        "shape": ({**good, "W1": np.zeros((30, 1, 3, 3))}, r"W1 should be a float array \(30, 1, 5, 5\)"),
        "dtype": ({**good, "b1": np.zeros(30, np.int64)}, "b1 should be a float array"),
        "nan": ({**good, "b2": np.full(100, np.nan)}, "b2 holds non-finite values"),
    }
    for name, (weights, words) in cases.items():
        with pytest.raises(ValueError, match=words):
            book_weights.load_weights(_save(tmp_path / f"{name}.npz", weights), shapes)


def test_book_params_checks_the_fit(book_weights: ModuleType) -> None:
    weights = book_weights.load_weights(book_weights.SIMPLE_CONVNET_FILE, book_weights.SIMPLE_CONVNET_SHAPES)
    with pytest.raises(ValueError, match="stands where the model has"):
        book_weights.book_params(fnnet.models.simple_convnet(filters=20), weights)
    with pytest.raises(ValueError, match="weights go on to W3"):
        book_weights.book_params(fnnet.serial(Conv2D(30, 5), fnnet.Affine(100)), weights)


def test_dropout_conversion_gives_the_books_evaluation(book_weights: ModuleType) -> None:
    """With W8 scaled by 1 - rate, fnnet's logits are the book's evaluation logits over (1 - rate).

    The book's evaluation: ``h -> (1 - r) h -> (.) @ W8 + b8 -> (1 - r) (.)``, written out here
    from the raw archive with the network's first layers computing ``h``.
    """
    model, params = book_weights.deep_convnet_book()
    assert isinstance(model, Serial)
    raw = book_weights.load_weights(book_weights.DEEP_CONVNET_FILE, book_weights.DEEP_CONVNET_SHAPES)
    x, _ = book_weights.mnist_test()
    x = x[:8]
    body = Serial(model.layers[:17])  # up to the ReLU after Affine(50)
    h = body.apply(params[:17], x)
    rate = 0.5
    book_logits = (1 - rate) * (((1 - rate) * h) @ raw["W8"] + raw["b8"])
    ours = model.apply(params, x)
    np.testing.assert_allclose((1 - rate) * ours, book_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(ours, axis=1), np.argmax(book_logits, axis=1))
    np.testing.assert_array_equal(params[15].w, raw["W7"])  # only the layer after a Dropout changes


def test_resnet_fashion_mnist_quick_run_learns(tmp_path: Path) -> None:
    lines = run_quick("resnet_fashion_mnist.py", tmp_path / "resnet.png")
    (acc,) = last_match(lines, r"test accuracy (\d\.\d{4})")
    assert 0.30 <= acc <= 1.0
    assert lines[0] == "fashion-mnist: 1000 training images, 1000 test images, 1 epoch(s)"
