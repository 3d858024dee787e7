"""Shared by the example tests: where the examples are and how to run one as a script."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
#: One BLAS thread: on a busy 2-core machine OpenBLAS's threads wait for cores and small products
#: get several times slower.
SINGLE_THREADED = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_example(
    script: str, *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 120
) -> list[str]:
    """Run ``examples/<script> <args>``; assert it exited 0 and printed something; its stdout lines."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines, result.stderr
    return lines


#: A number as the examples print it, captured.
NUMBER = r"(-?\d+(?:\.\d+)?(?:e[-+]\d+)?)"


def run_quick(script: str, out: Path, *args: str, env: dict[str, str] | None = SINGLE_THREADED) -> list[str]:
    """Run ``examples/<script> --quick --out <out> <args>``; check its figure (a PNG when matplotlib
    is installed, none otherwise); return its stdout lines."""
    lines = run_example(script, "--quick", "--out", str(out), *args, env=env)
    if HAS_MATPLOTLIB:
        assert f"figure saved to {out}" in lines
        assert out.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC
    else:
        assert not out.exists()
    return lines


def last_match(lines: list[str], pattern: str) -> tuple[float, ...]:
    """The numbers captured by ``pattern`` from the last line (which must match it whole)."""
    match = re.fullmatch(pattern, lines[-1])
    assert match, lines[-1]
    return tuple(float(v) for v in match.groups())


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """Import the script at ``path`` as a module (named after its file unless ``name``), without
    running its ``__main__`` part."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
