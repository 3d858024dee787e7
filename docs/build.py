"""Build the HTML API reference and the user's guide with pdoc; any warning fails the build.

    python docs/build.py                 # writes docs/_build/index.html
    python docs/build.py --out DIR       # elsewhere
    python docs/build.py --no-guide pkg  # another package, without the guide (used by the tests)

The reference covers every public module: each one whose dotted name has no part starting with
``_`` (pdoc alone would follow a package's ``__all__``, which lists only some submodules). The
guide is ``docs/guide/*.md``: each page becomes a module of a ``guide`` package rendered in the
same site, so a backticked full name such as `fnnet.optim.adam` links to its reference entry.

The build fails (exit status 1, one line per problem) when anything warns while pdoc imports and
renders (for example an annotation it cannot resolve, or a name in ``__all__`` that does not
exist), when a backticked dotted name under a documented package (`fnnet.something`) does not
resolve to a documented object (names with a private part, such as `fnnet._io`, are code, not
references, and are not checked), or when a guide page names an example file
(`examples/NAME.py`) that does not exist.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
import tempfile
import time
import types
import typing
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pdoc
import pdoc.doc
import pdoc.render

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
GUIDE = DOCS / "guide"
GUIDE_PACKAGE = "guide"

_SPAN = re.compile(r"`+([^`\n]+?)`+")
_FILE = re.compile(r"^(?:examples|bench|tests|docs)/[\w./-]+\.py$")


def guide_package(pages: Path, into: Path) -> Path:
    """Write the pages ``*.md`` of ``pages`` as the modules of a package ``guide`` under ``into``.

    ``index.md`` becomes the package docstring, every other page a submodule of the same name.
    """
    package = into / GUIDE_PACKAGE
    package.mkdir()
    for page in sorted(pages.glob("*.md")):
        stem = "__init__" if page.stem == "index" else page.stem
        if not stem.isidentifier():
            raise SystemExit(f"{page}: a page name must be a Python identifier")
        text = page.read_text(encoding="utf-8")
        (package / f"{stem}.py").write_text(f"__doc__ = {text!r}\n", encoding="utf-8")
    if not (package / "__init__.py").exists():
        raise SystemExit(f"{pages / 'index.md'} is missing")
    return package


def public_modules(root: str) -> list[str]:
    """``root`` and every submodule without a ``_``-prefixed part, importable or not.

    pdoc alone follows a package's ``__all__``, which lists only some submodules; the reference
    documents every public one (``fnnet.random``, ``fnnet.datasets.idx``, ...).
    """
    package = importlib.import_module(root)
    found = [root]
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), f"{root}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(info.name)
    return found


def _resolve_generated_constructors(modules: Sequence[pdoc.doc.Module]) -> None:
    """Resolve the string annotations of generated ``__init__``/``__new__`` methods in place.

    NamedTuple and attrs write these methods in a synthetic namespace (their code comes from
    ``"<string>"`` or ``"<attrs generated ...>"``), so pdoc looks their annotations up in the wrong
    module and warns. They are evaluated here in the namespace of the module that defines the
    class (plus ``typing``); hand-written functions are left alone, so pdoc still warns for those.
    """
    for module in modules:
        for cls in _classes(module):
            namespace = {**vars(typing), **vars(sys.modules[cls.__module__])}
            for attr in ("__init__", "__new__"):
                function = getattr(vars(cls).get(attr), "__func__", vars(cls).get(attr))
                if not inspect.isfunction(function) or not function.__code__.co_filename.startswith("<"):
                    continue
                try:
                    function.__annotations__ = typing.get_type_hints(function, namespace, namespace)
                except Exception:  # noqa: BLE001 - pdoc reports what still does not resolve
                    continue


def _inherit_reexported_variable_docs(modules: dict[str, pdoc.doc.Module]) -> None:
    """Give a re-exported variable the docstring written where it is assigned.

    pdoc reads variable docstrings (the string after an assignment) from the module's own source
    only, so ``fnnet.datasets.NUM_CLASSES``, imported from ``fnnet.datasets.sources``, would show
    none. The ``from ... import`` statements of the module are followed to the assignment.
    """

    def lookup(modname: str, name: str, depth: int = 0) -> str:
        module = modules.get(modname) or pdoc.doc.Module.from_name(modname)
        member = module.members.get(name)
        if member is not None and member.docstring:
            return member.docstring
        origin = _imported_from(module.obj, name)
        return lookup(*origin, depth + 1) if origin and depth < 10 else ""

    for module in modules.values():
        for name, member in module.members.items():
            if isinstance(member, pdoc.doc.Variable) and not member.docstring:
                origin = _imported_from(module.obj, name)
                if origin:
                    member.docstring = lookup(*origin)


def _imported_from(module: types.ModuleType, name: str) -> tuple[str, str] | None:
    """``(source module, its name)`` when ``module`` binds ``name`` by ``from source import ...``."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return None
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = importlib.util.resolve_name("." * node.level + node.module, package)
                    return source, alias.name
    return None


def _classes(module: pdoc.doc.Module) -> Iterator[type]:
    for member in module.members.values():
        if isinstance(member, pdoc.doc.Class) and member.modulename == module.modulename:
            yield member.obj


def _docs(namespace: pdoc.doc.Namespace[typing.Any]) -> Iterator[pdoc.doc.Doc[typing.Any]]:
    yield namespace
    for member in namespace.own_members:
        if isinstance(member, pdoc.doc.Class):
            yield from _docs(member)
        else:
            yield member


def broken_references(modules: dict[str, pdoc.doc.Module], roots: set[str]) -> list[str]:
    """Backticked dotted names under ``roots`` that name nothing documented, and missing files."""
    problems = []
    for module in modules.values():
        for doc in _docs(module):
            for span in _SPAN.findall(doc.docstring):
                target = span.strip().removesuffix("()").removeprefix("~")
                parts = target.split(".")
                private = any(part.startswith("_") for part in parts)
                if parts[0] in roots and len(parts) > 1 and re.fullmatch(r"[\w.]+", target) and not private:
                    if _lookup(modules, target) is None:
                        problems.append(f"{doc.fullname}: `{span}` does not name a documented object")
                elif module.modulename.split(".")[0] == GUIDE_PACKAGE and _FILE.match(target):
                    if not (REPO / target).is_file():
                        problems.append(f"{doc.fullname}: `{span}` is not a file of the repository")
    return problems


def _lookup(modules: dict[str, pdoc.doc.Module], dotted: str) -> object | None:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = modules.get(".".join(parts[:cut]))
        if module is not None:
            return module if cut == len(parts) else module.get(".".join(parts[cut:]))
    return None


def _write(out: Path, modules: dict[str, pdoc.doc.Module]) -> None:
    # pdoc.pdoc() would walk each package again and add its submodules twice; render the list given.
    for module in modules.values():
        page = out / f"{module.fullname.replace('.', '/')}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(pdoc.render.html_module(module, modules), encoding="utf-8")
    (out / "index.html").write_text(pdoc.render.html_index(modules), encoding="utf-8")
    (out / "search.js").write_text(pdoc.render.search_index(modules), encoding="utf-8")


def build(out: Path, module_names: Sequence[str], *, guide: Path | None = GUIDE) -> list[str]:
    """Render the reference (and the guide) into ``out``; return the problems found (empty: success)."""
    pdoc.render.configure(docformat="google", search=True, show_source=False)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        roots = list(module_names)
        if guide is not None:
            guide_package(guide, Path(tmp))
            sys.path.insert(0, tmp)
            roots.append(GUIDE_PACKAGE)
        try:
            names = [name for root in roots for name in public_modules(root)]
            modules = {name: pdoc.doc.Module.from_name(name) for name in names}
            _resolve_generated_constructors(list(modules.values()))
            _inherit_reexported_variable_docs(modules)
            _write(out, modules)
            problems = broken_references(modules, {name.split(".")[0] for name in module_names})
        finally:
            if guide is not None:
                sys.path.remove(tmp)
                for name in [m for m in sys.modules if m.split(".")[0] == GUIDE_PACKAGE]:
                    del sys.modules[name]
    return [f"warning: {w.message} ({Path(w.filename).name}:{w.lineno})" for w in caught] + problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("modules", nargs="*", default=["fnnet"], help="packages to document (default: fnnet)")
    parser.add_argument("--out", type=Path, default=DOCS / "_build", help="output directory (default: docs/_build)")
    parser.add_argument("--guide", type=Path, default=GUIDE, help="directory of guide pages (default: docs/guide)")
    parser.add_argument("--no-guide", action="store_true", help="leave the guide out")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    problems = build(args.out, args.modules, guide=None if args.no_guide else args.guide)
    for problem in problems:
        print(f"docs: {problem}", file=sys.stderr)
    if problems:
        print(f"docs: {len(problems)} problem(s); the build fails", file=sys.stderr)
        return 1
    print(f"docs: wrote {args.out / 'index.html'} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
