"""Every docstring example runs as copied into a fresh interpreter.

``--doctest-modules`` runs an example in its module's namespace, so one that uses ``predict`` after
only ``import fnnet`` passes there and raises NameError for a reader who copies it from ``help()``
or the API reference. Here every example found as pytest finds them (``doctest.DocTestFinder`` over
every fnnet module) runs with empty globals, with pytest's option flags, so such a name fails;
so do the variable docstrings' examples, which only ``test_api_reference.py`` finds.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import numpy as np
import pytest
from test_api_reference import _variable_examples

import fnnet
from fnnet.datasets.sequence import encode

# pyproject's [tool.pytest.ini_options] doctest_optionflags; ELLIPSIS is per example there too.
FLAGS = doctest.NORMALIZE_WHITESPACE


def all_modules() -> list[str]:
    """fnnet and every submodule, private ones too (``help()`` shows their examples); pytest does
    not collect ``__main__.py`` and neither does this."""
    found = ["fnnet"]
    for info in pkgutil.walk_packages(fnnet.__path__, "fnnet."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            found.append(info.name)
    return sorted(found)


def docstring_tests(modname: str) -> list[doctest.DocTest]:
    module = importlib.import_module(modname)
    return [t for t in doctest.DocTestFinder().find(module, modname) if t.examples]


def run_fresh(test: doctest.DocTest) -> tuple[int, str]:
    """(failed examples, report) of ``test`` run with empty globals."""
    test.globs = {}
    out: list[str] = []
    result = doctest.DocTestRunner(optionflags=FLAGS).run(test, out=out.append, clear_globs=True)
    return result.failed, "".join(out)


@pytest.mark.parametrize("modname", all_modules())
def test_examples_run_with_empty_globals(modname: str) -> None:
    failures = []
    for test in docstring_tests(modname):
        failed, report = run_fresh(test)
        if failed:
            failures.append(report)
    assert not failures, f"{len(failures)} docstrings of {modname} fail in a fresh namespace:\n" + "".join(
        failures
    )


@pytest.mark.parametrize(
    ("modname", "name", "doc"),
    _variable_examples(),
    ids=lambda v: str(v) if "\n" not in str(v) else "",
)
def test_variable_docstring_examples_run_with_empty_globals(modname: str, name: str, doc: str) -> None:
    # DocTestFinder does not see these (pdoc's variable docstrings); test_api_reference runs them
    # in their module's namespace.
    module = importlib.import_module(modname)
    test = doctest.DocTestParser().get_doctest(doc, {}, f"{modname}.{name}", module.__file__, 0)
    failed, report = run_fresh(test)
    assert failed == 0, report


def test_the_walk_finds_the_examples() -> None:
    modules = all_modules()
    assert {"fnnet", "fnnet.functions", "fnnet.optim.aliases", "fnnet._io"} <= set(modules)
    assert "fnnet.__main__" not in modules
    assert sum(len(t.examples) for m in modules for t in docstring_tests(m)) > 1000


def test_a_bare_name_fails_and_skip_is_respected() -> None:
    parser = doctest.DocTestParser()
    bare = parser.get_doctest(">>> tree_map(abs, [-1])\n[1]\n", {}, "bare", None, 0)
    assert run_fresh(bare)[0] == 1
    imported = parser.get_doctest(
        ">>> from fnnet.tree import tree_map\n>>> tree_map(abs, [-1])\n[1]\n", {}, "imported", None, 0
    )
    assert run_fresh(imported)[0] == 0
    skipped = parser.get_doctest(">>> undefined_name  # doctest: +SKIP\n1\n", {}, "skipped", None, 0)
    assert run_fresh(skipped)[0] == 0


@pytest.mark.parametrize("text", [["12+3"], ("1", "2"), b"12", 12, None, np.array(["1"])])
def test_encode_refuses_what_is_not_a_string(text: object) -> None:
    with pytest.raises(TypeError, match=r"^encode: text must be a str, not ") as info:
        encode(text, {"1": 0, "2": 1, "+": 2, "3": 3})  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and "vocabulary" not in str(info.value)


def test_encode_still_names_an_unknown_character() -> None:
    with pytest.raises(ValueError, match=r"^encode: character '\?' is not in the vocabulary$"):
        encode("1?", {"1": 0})
    assert encode("", {"1": 0}).tolist() == []
