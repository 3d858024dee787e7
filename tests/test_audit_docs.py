"""The README and the guide tell the truth: their code blocks run and their tables follow the code.

Cheap checks of claims no other test pins: the exit-code table against ``fnnet.cli.EXIT_CODES``, the
usage block against the CLI's parser, the layout bullet against the package's modules, the files the
tables name, the ResNet's counts, and the code blocks of the README and the guide, run as written
(the training one with one epoch).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import read_only

import fnnet
from fnnet import cli
from fnnet.errors import FormatError
from fnnet.tree import tree_leaves

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
GUIDE = REPO / "docs" / "guide"


def _code_blocks(text: str, lang: str = "") -> list[str]:
    """The fenced code blocks of ``text`` whose info string is ``lang``."""
    blocks: list[str] = []
    current: list[str] | None = None
    info = ""
    for line in text.splitlines(keepends=True):
        if current is None and line.startswith("```"):
            current, info = [], line[3:].strip()
        elif current is not None and line.rstrip() == "```":
            if info == lang:
                blocks.append("".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _section(start: str, end: str) -> str:
    """The README text from the first ``start`` up to the next ``end`` after it."""
    i = README.index(start)
    return README[i : README.index(end, i + len(start))]


def _run(code: str, namespace: dict[str, Any]) -> list[str]:
    """Execute ``code`` in ``namespace``; the lines it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<docs>", "exec"), namespace)
    return out.getvalue().splitlines()


# --- the command line ---------------------------------------------------------------------------


def test_the_exit_code_table_lists_exactly_the_clis_codes() -> None:
    table = _section("**The command line.**", "`fnnet train --out DIR` writes")
    codes = [int(c) for c in re.findall(r"^\| (\d+) \|", table, flags=re.M)]
    assert codes == sorted(cli.EXIT_CODES)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_the_usage_block_names_every_option_and_choice_of_each_command() -> None:
    (usage,) = [b for b in _code_blocks(README) if b.startswith("fnnet train [")]
    commands = re.split(r"^(?=fnnet )", usage, flags=re.M)
    documented = {c.split()[1]: c for c in commands if c.strip()}
    parsers = _subparsers()
    assert set(documented) == set(parsers)
    for name, text in documented.items():
        shown = dict(re.findall(r"\[(--[a-z-]+)(?: ([^\]]+))?\]", text))
        actions = {a.option_strings[-1]: a for a in parsers[name]._actions if a.option_strings and a.dest != "help"}
        assert set(shown) == set(actions), name
        for flag, action in actions.items():
            if action.choices is not None:
                assert shown[flag].split("|") == list(action.choices), f"{name} {flag}"


# --- the layout ---------------------------------------------------------------------------------


def _layout_bullet() -> str:
    return _section("- **Layout by role", "\n- **")


def test_the_layout_bullet_names_every_module_on_its_floor() -> None:
    from test_layout import FLOORS

    bullet = _layout_bullet()
    named = re.findall(r"`([\w/]+)`", bullet)
    root = Path(fnnet.__file__).parent
    tops = {p.stem if p.is_file() else p.name for p in root.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    for top in sorted(tops - {"__init__", "__main__", "_version"}):
        assert top in named or f"{top}/" in named, top
        pkg = root / top
        if pkg.is_dir():
            for sub in sorted(pkg.glob("[!_]*.py")):
                assert sub.stem != "__init__" and sub.stem in named, f"{top}/{sub.stem}"
    # named in the order of their floors
    floors = [FLOORS[n.rstrip("/")] for n in named if n.rstrip("/") in FLOORS and n.rstrip("/") in tops]
    assert floors == sorted(floors)


def test_the_resnet_counts_in_the_readme_are_the_models() -> None:
    summary = str(fnnet.summary(fnnet.models.resnet(), (1, 28, 28)))
    kinds = [line.split()[1] for line in summary.splitlines()[2:-1]]
    (claim,) = re.findall(r"\(175,530 parameters,\s+(\d+)\s+BatchNorms,\s+(\d+)\s+projection\s+shortcuts\)", README)
    assert (int(claim[0]), int(claim[1])) == (kinds.count("BatchNorm"), summary.count("/shortcut "))


@pytest.mark.parametrize(
    ("widths", "figure"), [((16, 32, 64), "175,530"), ((24, 48, 96), "393,082"), ((20, 40, 80), "273,490")]
)
def test_the_resnet_parameter_counts_in_the_readme(widths: tuple[int, ...], figure: str) -> None:
    assert f"{figure} parameters" in README
    assert f"{fnnet.summary(fnnet.models.resnet(widths), (1, 28, 28)).total_params:,}" == figure


def test_every_file_the_readme_and_the_guide_name_exists() -> None:
    texts = [README] + [p.read_text(encoding="utf-8") for p in sorted(GUIDE.glob("*.md"))]
    paths = {m for t in texts for m in re.findall(r"\b((?:examples|bench|tests)/[\w/.-]+\.py)\b", t)}
    bare = {m for m in re.findall(r"`(ch\d\d_\w+\.py)`", README)}
    assert len(paths) > 30 and bare
    missing = [p for p in sorted(paths) if not (REPO / p).is_file()]
    missing += [b for b in sorted(bare) if not (REPO / "examples" / b).is_file()]
    assert not missing


# --- the code blocks ----------------------------------------------------------------------------


def test_a_model_in_a_few_lines_runs_as_written() -> None:
    (block,) = [b for b in _code_blocks(README, "python") if "load_mnist(" in b]
    assert "epochs=17" in block
    namespace: dict[str, Any] = {}
    lines = _run(block.replace("epochs=17", "epochs=1").replace("test=", "progress='quiet', test="), namespace)
    x_train, t_train = namespace["x_train"], namespace["t_train"]
    assert x_train.shape == (8000, 784) and x_train.dtype == np.float32 and t_train.shape == (8000,)
    assert "total params: 39,760" in lines
    assert 0.5 < float(lines[-1]) <= 1.0


def test_one_training_step_spelled_out_runs_and_mutates_nothing() -> None:
    """The step block continues the first one, as it says: run both as written, the step on
    read-only params."""
    (first,) = [b for b in _code_blocks(README, "python") if "load_mnist(" in b]
    (block,) = [b for b in _code_blocks(README, "python") if "step_key" in b]
    namespace: dict[str, Any] = {}
    _run(first.replace("epochs=17", "epochs=1").replace("test=", "progress='quiet', test="), namespace)
    setup, step = block.split("\nctx = ", 1)
    _run(setup, namespace)
    given = namespace["params"] = read_only(namespace["params"])
    before = [a.copy() for a in tree_leaves(given)]
    _run("ctx = " + step, namespace)
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(given), before))
    assert not all(np.array_equal(a, b) for a, b in zip(tree_leaves(namespace["params"]), before))
    assert np.isfinite(namespace["loss"])


def test_the_export_block_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    (block,) = [b for b in _code_blocks(README, "python") if "to_onnx(" in b]
    model = fnnet.models.simple_convnet(filters=4, hidden=8)
    params, _ = model.init(fnnet.key(0), (1, 28, 28))
    monkeypatch.chdir(tmp_path)
    arrays: dict[str, Any] = fnnet.export.to_torch_state_dict(model, params)
    np.savez("weights.npz", **arrays)
    namespace: dict[str, Any] = {"fnnet": fnnet, "model": model, "params": params, "model_state": None}
    _run(block, namespace)
    graph = namespace["m"].graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["output"]
    assert (tmp_path / "model.onnx").is_file()
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(namespace["params"]), tree_leaves(params)))


@pytest.mark.parametrize("page", sorted(p.name for p in GUIDE.glob("*.md") if "```python" in p.read_text()))
def test_guide_snippets_print_what_their_comments_say(page: str) -> None:
    for block in _code_blocks((GUIDE / page).read_text(encoding="utf-8"), "python"):
        lines = _run(block, {})
        promised = re.findall(r"^print\(.*\)\s+#\s*(.+)$", block, flags=re.M)
        assert promised and lines == promised


# --- "A FIFO, socket or device given as a file is refused at once with FormatError" -------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_load_sequence_refuses_a_fifo_as_a_format_error(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match=r"pipe\.txt: not a regular file \(a FIFO\)$"):
        fnnet.datasets.load_sequence(fifo)
    with pytest.raises(FileNotFoundError, match="neither a shipped task"):
        fnnet.datasets.load_sequence(tmp_path / "missing.txt")


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_load_sequence_refuses_a_device_as_a_format_error() -> None:
    with pytest.raises(FormatError, match=r"^/dev/null: not a regular file \(a character device\)$"):
        fnnet.datasets.load_sequence("/dev/null")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_from_torch_state_dict_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "weights.npz"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            fnnet.export.from_torch_state_dict(fnnet.Affine(2), (3,), fifo)
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(2.0)
    if reader.is_alive():
        with open(fifo, "wb"):  # the writer the reader waits for; closing it ends the read
            pass
        reader.join(2.0)
        pytest.fail(f"reading the FIFO {fifo} blocked")
    err = outcome[0]
    assert isinstance(err, FormatError) and str(err).startswith(str(fifo)) and "not a regular file (a FIFO)" in str(err)
