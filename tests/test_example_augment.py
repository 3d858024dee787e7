"""The augmentation example runs as a script, draws its grid and reports a positive pixel change."""

from __future__ import annotations

from pathlib import Path

from _examples import NUMBER, last_match, run_quick


def test_augment_figure_shows_shifted_digits(tmp_path: Path) -> None:
    out = tmp_path / "figs" / "augment.png"
    lines = run_quick("augment_figure.py", out, "--images", "4")
    (n, change) = last_match(lines, rf"augmented {NUMBER} images, mean abs change {NUMBER}")
    assert n == 4
    # a shift of up to 3 pixels moves a good share of a digit's ink, but most pixels stay black
    assert 0.02 < change < 0.4
    assert lines[0].startswith("mnist: labels [7, 2, 1, 0], augmentation RandomCrop(pad=3)")
