"""Other projects get fnnet's types: ``py.typed`` is shipped and mypy follows the installed package.

Two small modules are written outside the source tree and checked by ``mypy --strict`` run from
there, so mypy finds fnnet the way a downstream project does: through the installed distribution.
With setuptools' default editable install (an import hook) mypy cannot see fnnet at all; install
for development with ``pip install -e '.[dev]' --config-settings editable_mode=compat``. These tests
then fail loudly (they never skip) if fnnet's types are not visible.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

GOOD = textwrap.dedent(
    """\
    \"\"\"A downstream user of fnnet: build, run and differentiate a small model.\"\"\"

    import numpy as np
    from typing_extensions import assert_type

    import fnnet
    from fnnet.layers.core import AffineParams


    def run() -> float:
        root = fnnet.key(0)
        assert_type(root, fnnet.Key)
        k_init, k_data = fnnet.split(root, 2)
        model = fnnet.serial(fnnet.Affine(8), fnnet.ReLU(), fnnet.Affine(3))
        assert_type(model, fnnet.Serial)
        params, out_shape = model.init(k_init, (4,))
        assert_type(out_shape, tuple[int, ...])
        assert model.out_shape((4,)) == out_shape
        first: AffineParams = params[0]
        x = k_data.generator().standard_normal((5, 4)).astype(first.w.dtype)
        state = model.init_state((4,))
        y, state, cache = model.forward(params, state, x, fnnet.Ctx(train=True, key=k_data))
        dx, grads = model.backward(params, cache, np.ones_like(y))
        assert dx.shape == x.shape and len(grads) == 3
        skipped, _ = model.backward(params, cache, np.ones_like(y), input_grad=False)
        assert not skipped.any()
        return float(model.apply(params, x, state=state).sum())


    if __name__ == "__main__":
        print(f"downstream ok {run():.6f}")
    """
)

# Each wrong call sits on its own line; the test looks the line numbers up in this text.
BAD = textwrap.dedent(
    """\
    import numpy as np
    import fnnet

    k = fnnet.key("zero")
    a, b = fnnet.split(fnnet.key(0), "2")
    layer = fnnet.Affine(4)
    params, out_shape = layer.init(fnnet.key(1), 4)
    y, cache = layer.forward(params, np.ones((2, 3), np.float32))  # the old forward(params, x)
    """
)


def _line_of(source: str, fragment: str) -> int:
    [line] = [i for i, text in enumerate(source.splitlines(), start=1) if fragment in text]
    return line


def _mypy(tmp_path: Path, filename: str, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / filename).write_text(source)
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")  # shields the check from any project or user mypy configuration
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file", str(config), filename],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_fnnet_visible(output: str) -> None:
    unseen = [line for line in output.splitlines() if "import-not-found" in line or "import-untyped" in line]
    assert not unseen, (
        "mypy cannot see fnnet's types from outside the source tree; install with\n"
        "  pip install -e '.[dev]' --config-settings editable_mode=compat\n"
        "(or a regular install) and check that fnnet/py.typed is shipped:\n" + output
    )


def test_downstream_module_type_checks_strictly(tmp_path: Path) -> None:
    result = _mypy(tmp_path, "downstream_good.py", GOOD)
    output = result.stdout + result.stderr
    _assert_fnnet_visible(output)
    assert result.returncode == 0, output
    assert "Success: no issues found in 1 source file" in result.stdout


def test_downstream_module_runs_against_installed_fnnet(tmp_path: Path) -> None:
    (tmp_path / "downstream_good.py").write_text(GOOD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "downstream_good.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"downstream ok -?\d+\.\d{6}\n", result.stdout), result.stdout


def test_downstream_wrong_calls_are_reported(tmp_path: Path) -> None:
    result = _mypy(tmp_path, "downstream_bad.py", BAD)
    output = result.stdout + result.stderr
    _assert_fnnet_visible(output)
    assert result.returncode == 1, output
    expected = [
        (_line_of(BAD, 'fnnet.key("zero")'), r'Argument 1 to "key" has incompatible type "str"; expected "int"'),
        (_line_of(BAD, 'split(fnnet.key(0), "2")'), r'Argument 2 to "split" has incompatible type "str"; expected "int"'),
        (_line_of(BAD, "layer.init("), r'Argument 2 to "init" of "Affine" has incompatible type "int"; expected "tuple'),
        (_line_of(BAD, "layer.forward("), r'Missing positional argument "x" in call to "forward" of "Affine"'),
        (_line_of(BAD, "layer.forward("), r"Too many values to unpack \(2 expected, 3 provided\)"),
        (_line_of(BAD, "layer.forward("), r'Argument 2 to "forward" of "Affine" has incompatible type ".*"; expected "None"'),
    ]
    for line, message in expected:
        assert re.search(rf"downstream_bad\.py:{line}: error: {message}", output), output
    assert f"Found {len(expected)} errors in 1 file" in output, output
