"""The API reference and the guide build with zero warnings, and a docs problem fails the build.

Needs pdoc (in the ``dev`` and ``docs`` extras); CI also runs
``docs/build.py`` as a step of its own. Each build runs in a subprocess, so pdoc's global
configuration and the annotations it resolves never reach the other tests.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fnnet

pytest.importorskip("pdoc")

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "docs" / "build.py"


def _build(*args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [path, REPO] if p is not None)
    return subprocess.run(
        [sys.executable, str(BUILD), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_reference_and_guide_build_with_zero_problems(tmp_path: Path) -> None:
    out = tmp_path / "html"
    done = _build("--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # Every public module has a page, not only the submodules pdoc would find through __all__.
    for info in pkgutil.walk_packages(fnnet.__path__, "fnnet."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            assert (out / (info.name.replace(".", "/") + ".html")).is_file(), info.name
    # Every guide page is rendered, and guide pages link names to their reference entries.
    for page in (REPO / "docs" / "guide").glob("*.md"):
        name = "guide.html" if page.stem == "index" else f"guide/{page.stem}.html"
        assert (out / name).is_file(), name
    assert 'href="../fnnet.html#Conv2D"' in (out / "guide" / "ch07_cnn.html").read_text()
    assert 'href="guide/ch07_cnn.html"' in (out / "guide.html").read_text()
    # A re-exported constant shows the docstring written where it is assigned.
    assert "Number of classes in MNIST" in (out / "fnnet" / "datasets.html").read_text()


BROKEN = {
    "reference": ('"""See `docsprobe.nowhere` for details."""\n', "`docsprobe.nowhere` does not name"),
    "all": ('"""A module."""\n__all__ = ["ghost"]\n', "ghost"),
    "annotation": (
        '"""A module."""\nfrom __future__ import annotations\n\n\n'
        'def f(x: Undefined) -> int:\n    """Doc."""\n    return 0\n',
        "Error parsing type annotation",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_docs_problem_fails_the_build(tmp_path: Path, kind: str) -> None:
    source, message = BROKEN[kind]
    (tmp_path / "docsprobe").mkdir()
    (tmp_path / "docsprobe" / "__init__.py").write_text(source)
    done = _build("--out", str(tmp_path / "html"), "--no-guide", "docsprobe", path=tmp_path)
    assert done.returncode == 1
    assert message in done.stderr


def test_a_guide_page_naming_a_missing_example_fails_the_build(tmp_path: Path) -> None:
    pages = tmp_path / "guide"
    pages.mkdir()
    (pages / "index.md").write_text(
        textwrap.dedent(
            """\
            # Guide
            `docsprobe` is run by `examples/ch02_perceptron.py` and by `examples/no_such_example.py`.
            """
        )
    )
    (tmp_path / "docsprobe").mkdir()
    (tmp_path / "docsprobe" / "__init__.py").write_text('"""A module."""\n')
    done = _build("--out", str(tmp_path / "html"), "--guide", str(pages), "docsprobe", path=tmp_path)
    assert done.returncode == 1
    assert "examples/no_such_example.py" in done.stderr
    assert "ch02_perceptron" not in done.stderr
