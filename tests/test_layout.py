"""The package is laid out by floors, and imports only run downward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fnnet

ROOT = Path(fnnet.__file__).parent

#: Each module's floor; a module may import only from its own floor or those below.
FLOORS: dict[str, int] = {
    "typing": 0, "_version": 0, "_json": 0, "random": 0, "tree": 0, "_validate": 0, "errors": 0, "_io": 0, "runtime": 0,
    "functions": 1, "losses": 1, "graph": 1, "initializers": 1, "metrics": 1,
    "layers": 2, "numerical": 2,
    "optim": 3,
    "datasets": 4,
    "train": 5,
    "checkpoint": 6, "models": 6, "seq2seq": 6, "hparam": 7, "export": 7, "cli": 8, "__main__": 9, "__init__": 9,
}  # fmt: skip


def _floor(module: str) -> int:
    top = module.split(".")[1] if module.startswith("fnnet.") else module
    return FLOORS[top]


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fnnet")}
        elif isinstance(node, ast.ImportFrom) and node.module == "fnnet":
            out |= {f"fnnet.{a.name}" for a in node.names}  # from fnnet import functions
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fnnet"):
            out.add(node.module)
    return out


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_run_downward(path: Path) -> None:
    rel = path.relative_to(ROOT).with_suffix("")
    own = "fnnet." + ".".join(rel.parts)
    mine = _floor(own)
    for target in _imports(path):
        if target == "fnnet":
            assert mine >= FLOORS["__init__"], f"{own} imports the whole package"
            continue
        assert _floor(target) <= mine, f"{own} (floor {mine}) imports {target} (floor {_floor(target)})"


def test_layers_never_import_threads_or_training_and_optim_never_imports_layers() -> None:
    for path in (ROOT / "layers").rglob("*.py"):
        assert not any(m.startswith(("fnnet.train", "fnnet.optim", "fnnet.cli", "fnnet.hparam")) for m in _imports(path))
    for path in (ROOT / "optim").rglob("*.py") if (ROOT / "optim").is_dir() else [ROOT / "optim.py"]:
        assert not any(m.startswith("fnnet.layers") for m in _imports(path))


def test_every_module_has_a_floor() -> None:
    tops = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in _modules()}
    assert tops <= set(FLOORS), tops - set(FLOORS)


def test_the_layer_base_class_is_small_and_knows_no_threads() -> None:
    public = [n for n in dir(fnnet.Layer) if not n.startswith("_")]
    assert len(public) <= 6, public
    assert not any("shard" in n or "thread" in n for n in public)
