"""Every public name carries a runnable example, so the API reference shows one for each.

Public names are everything in ``__all__`` of ``fnnet`` and of each public submodule (a module is
private when a part of its dotted name starts with ``_``); a module without ``__all__`` exports its
names that do not start with ``_`` and are defined in it. Functions and classes are documented by
their ``__doc__`` (a class may instead carry its example on ``__call__``); everything else
(constants, type aliases, instances such as ``fnnet.EVAL``) by a variable docstring in the source
of the module that assigns it, in pdoc's convention: a string literal right after the assignment,
or ``#:`` comments right before it. Variable docstrings are invisible to ``--doctest-modules``, so
this file runs their examples itself.
"""

from __future__ import annotations

import ast
import doctest
import functools
import importlib
import importlib.util
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import fnnet


def public_modules() -> list[str]:
    """The dotted names of fnnet and of every public submodule."""
    found = ["fnnet"]
    for info in pkgutil.walk_packages(fnnet.__path__, "fnnet."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(info.name)
    return sorted(found)


def public_names(module: ModuleType) -> list[str]:
    """The names a module exports: its ``__all__``, or its own public definitions."""
    declared = getattr(module, "__all__", None)
    if declared is not None:
        return list(declared)
    own = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if getattr(value, "__module__", None) == module.__name__ or _assigned_in(module.__name__, name):
            own.append(name)
    return own


@functools.cache
def _tree(modname: str) -> ast.Module:
    path = importlib.import_module(modname).__file__
    assert path is not None
    return ast.parse(Path(path).read_text())


@functools.cache
def _source_lines(modname: str) -> list[str]:
    path = importlib.import_module(modname).__file__
    assert path is not None
    return Path(path).read_text().splitlines()


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _assigned_in(modname: str, name: str) -> bool:
    return any(name in _targets(node) for node in _tree(modname).body)


def variable_docstring(modname: str, name: str, depth: int = 0) -> str | None:
    """The variable docstring of ``modname.name``, following ``from x import name`` re-exports."""
    if depth > 10:
        return None
    body = _tree(modname).body
    for i, node in enumerate(body):
        if name in _targets(node):
            after = body[i + 1] if i + 1 < len(body) else None
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                return inspect.cleandoc(after.value.value)
            lines = _source_lines(modname)
            comments: list[str] = []
            row = node.lineno - 2
            while row >= 0 and lines[row].lstrip().startswith("#:"):
                comments.insert(0, lines[row].lstrip()[2:].removeprefix(" "))
                row -= 1
            return "\n".join(comments) if comments else None
    for node in body:
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    package = modname if _is_package(modname) else modname.rpartition(".")[0]
                    source = importlib.util.resolve_name("." * node.level + node.module, package)
                    return variable_docstring(source, alias.name, depth + 1)
    return None


def _is_package(modname: str) -> bool:
    return hasattr(importlib.import_module(modname), "__path__")


def _is_own_definition(value: object) -> bool:
    """A function or class written in fnnet, which therefore carries its own ``__doc__``."""
    if not (inspect.isfunction(value) or inspect.isclass(value)):
        return False
    return str(getattr(value, "__module__", "")).startswith("fnnet")


def documentation(modname: str, name: str) -> str:
    """What the reference shows for ``modname.name`` (empty when nothing)."""
    value = getattr(importlib.import_module(modname), name)
    if inspect.ismodule(value):
        return value.__doc__ or ""
    if _is_own_definition(value):
        doc = value.__doc__ or ""
        if inspect.isclass(value) and ">>>" not in doc:
            call = vars(value).get("__call__")
            doc += "\n" + (getattr(call, "__doc__", None) or "")
        return doc
    return variable_docstring(modname, name) or ""


def all_public() -> list[tuple[str, str]]:
    pairs = []
    for modname in public_modules():
        module = importlib.import_module(modname)
        pairs += [(modname, name) for name in public_names(module)]
    return pairs


def qualified(modname: str, name: str) -> str:
    return f"{modname}.{name}"


def test_every_public_name_has_a_runnable_example() -> None:
    missing = sorted(
        qualified(m, n) for m, n in all_public() if ">>>" not in documentation(m, n)
    )
    assert not missing, f"{len(missing)} public names without a '>>>' example:\n" + "\n".join(missing)


def test_the_walk_sees_the_whole_api() -> None:
    # A walk that silently found nothing would pass the tests above.
    names = {qualified(m, n) for m, n in all_public()}
    assert {"fnnet.Affine", "fnnet.optim.adam", "fnnet.typing.Tree", "fnnet.random.split"} <= names
    assert not any(part.startswith("_") for q in names for part in q.split(".")[:-1])
    assert len(names) > 300


def _variable_examples() -> list[tuple[str, str, str]]:
    out = []
    for modname, name in all_public():
        value = getattr(importlib.import_module(modname), name)
        if inspect.ismodule(value) or _is_own_definition(value):
            continue
        doc = variable_docstring(modname, name)
        if doc and ">>>" in doc:
            out.append((modname, name, doc))
    # A re-export shows the same docstring; run each text once, under its first public name.
    unique = {doc: (m, n, doc) for m, n, doc in reversed(out)}
    return sorted(unique.values())


@pytest.mark.parametrize(
    ("modname", "name", "doc"), _variable_examples(), ids=lambda v: str(v) if "\n" not in str(v) else ""
)
def test_variable_docstring_examples_run(modname: str, name: str, doc: str) -> None:
    module = importlib.import_module(modname)
    test = doctest.DocTestParser().get_doctest(doc, dict(vars(module)), f"{modname}.{name}", module.__file__, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    failures: list[str] = []
    runner.run(test, out=failures.append)
    assert runner.failures == 0 and test.examples, "".join(failures)


def test_variable_docstrings_are_found_through_re_exports() -> None:
    # fnnet.datasets re-exports NUM_CLASSES from fnnet.datasets.sources by a relative import.
    assert variable_docstring("fnnet.datasets", "NUM_CLASSES") == variable_docstring(
        "fnnet.datasets.sources", "NUM_CLASSES"
    )
    assert "batch" in (variable_docstring("fnnet.typing", "Shape") or "")
    assert variable_docstring("fnnet.typing", "nope") is None
