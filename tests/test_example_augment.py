"""The augmentation example runs as a script: its grid, a positive pixel change, and a quick CNN comparison."""

from __future__ import annotations

from pathlib import Path

from _examples import NUMBER, last_match, run_quick


def test_augment_figure_shows_shifted_digits_and_trains_with_them(tmp_path: Path) -> None:
    out = tmp_path / "figs" / "augment.png"
    lines = run_quick("augment_figure.py", out, "--images", "4", "--compare")
    (n, change) = last_match(lines, rf"augmented {NUMBER} images, mean abs change {NUMBER}")
    assert n == 4
    # a shift of up to 3 pixels moves a good share of a digit's ink, but most pixels stay black
    assert 0.02 < change < 0.4
    assert lines[0].startswith("mnist: labels [7, 2, 1, 0], augmentation RandomCrop(pad=3)")
    plain, augmented, n_test = last_match(
        lines[-2:-1],
        rf"SimpleConvNet on 100 training images, 2 epochs: test accuracy {NUMBER} without augmentation, "
        rf"{NUMBER} with RandomCrop\(pad=2\) \({NUMBER} test images\)",
    )
    assert n_test == 200
    # two epochs on 100 digits already beat chance (0.1) by far, with or without crops
    assert 0.3 < plain <= 1 and 0.3 < augmented <= 1
