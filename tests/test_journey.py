"""What a new user trying the README's commands ran into, kept fixed.

The examples refuse a seed that :func:`fnnet.key` cannot take as a usage error (exit status 2,
one line naming ``--seed``) instead of a traceback from inside the run, and a figure that cannot be
written is named in the error, not the temporary file beside it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _examples import EXAMPLES, load_script

#: Every example script that takes ``--seed`` (its own option or the shared ``example_parser``).
SEEDED = sorted(
    p for p in EXAMPLES.glob("[!_]*.py") if '"--seed"' in p.read_text() or "example_parser(" in p.read_text()
)


@pytest.fixture(scope="module")
def examples_on_path() -> Iterator[None]:
    """The examples import their helpers as ``_common``, from their own directory."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))


def test_the_seeded_examples_are_found() -> None:
    names = {p.name for p in SEEDED}
    assert {"ch04_train_neuralnet.py", "ch05_gradient_check.py", "seq2seq_addition.py", "export_onnx.py"} <= names


@pytest.mark.parametrize("seed", ["-1", str(2**128), "x"])
@pytest.mark.parametrize("script", SEEDED, ids=lambda p: p.stem)
def test_a_bad_seed_is_a_usage_error(
    script: Path, seed: str, examples_on_path: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load_script(script, name=f"journey_{script.stem}")
    monkeypatch.setattr(sys, "argv", [str(script), "--seed", seed])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "argument --seed" in err[-1] and seed in err[-1], err


def test_the_largest_seed_is_accepted(examples_on_path: None) -> None:
    common = load_script(EXAMPLES / "_common.py", name="journey_common")
    assert common.seed_int("0") == 0
    assert common.seed_int(str(2**128 - 1)) == 2**128 - 1


class _Figure:
    def savefig(self, f: Any, format: str, dpi: int) -> None:
        f.write(b"figure")


class _Plt:
    def __init__(self) -> None:
        self.closed: list[Any] = []

    def close(self, fig: Any) -> None:
        self.closed.append(fig)


def test_an_unwritable_figure_is_named_in_the_error(tmp_path: Path) -> None:
    common = load_script(EXAMPLES / "_common.py", name="journey_common")
    # The figure's own name fits the file system; the temporary name beside it does not.
    out = tmp_path / ("f" * 240 + ".png")
    plt, fig = _Plt(), _Figure()
    with pytest.raises(OSError, match="cannot write .*f{240}\\.png") as err:
        common.write_figure(plt, fig, out)
    assert ".tmp" not in str(err.value)
    assert plt.closed == [fig]
    assert list(tmp_path.iterdir()) == []
    common.write_figure(plt, fig, tmp_path / "ok.png")
    assert (tmp_path / "ok.png").read_bytes() == b"figure"
