"""The chapter 3 example reproduces the book's accuracy with the book's weights."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from _examples import EXAMPLES, load_script, run_example

SCRIPT = EXAMPLES / "ch03_neuralnet_mnist.py"


def test_ch03_example_prints_the_books_accuracy() -> None:
    lines = run_example(SCRIPT.name)
    assert lines[-1] == "accuracy 0.9352"


def test_weights_ship_with_their_notice() -> None:
    notice = (EXAMPLES / "weights" / "NOTICE.md").read_text()
    assert "Copyright (c) 2016 Koki Saitoh" in notice and "MIT License" in notice
    for npz in sorted((EXAMPLES / "weights").glob("*.npz")):
        assert npz.name in notice
        with np.load(npz, allow_pickle=False) as weights:
            assert weights.files and all(k[0] in "Wb" for k in weights.files)


def _example_module() -> ModuleType:
    return load_script(SCRIPT)


def _write_weights(path: Path, **changes: np.ndarray | None) -> Path:
    with np.load(EXAMPLES / "weights" / "ch03_sample_weight.npz", allow_pickle=False) as npz:
        weights = {k: npz[k] for k in npz.files}
    for k, v in changes.items():
        if v is None:
            del weights[k]
        else:
            weights[k] = v
    with open(path, "wb") as f:
        np.savez(f, **weights)
    return path


def test_ch03_example_fails_loudly_on_other_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _example_module()
    # A bias that favours class 0 changes the predictions, so the accuracy differs from the book's.
    biased = np.zeros(10, np.float32)
    biased[0] = 5.0
    monkeypatch.setattr(module, "WEIGHTS", _write_weights(tmp_path / "biased.npz", b3=biased))
    with pytest.raises(SystemExit) as info:
        module.main()
    assert info.value.code not in (0, None)
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1]
    assert last.startswith("accuracy ") and last != "accuracy 0.9352"
    assert "0.9352" in out.err


@pytest.mark.parametrize(
    "change, words",
    [({"b3": None}, "expected arrays"), ({"W2": np.zeros((50, 99), np.float32)}, "W2 should be float32 \\(50, 100\\)")],
)
def test_ch03_example_validates_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, np.ndarray | None], words: str
) -> None:
    module = _example_module()
    monkeypatch.setattr(module, "WEIGHTS", _write_weights(tmp_path / "bad.npz", **change))
    with pytest.raises(ValueError, match=words):
        module.main()
