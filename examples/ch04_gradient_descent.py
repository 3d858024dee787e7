"""Chapter 4: gradient descent with numerical gradients on ``f(x0, x1) = x0² + x1²``.

Starting from ``(-3.0, 4.0)`` with learning rate 0.1, ``fnnet.gradient_descent`` takes 100 steps
``x <- x - lr * grad f(x)`` using central-difference gradients (the book's Figure 4-10). Since
``grad f(x) = 2x``, every step multiplies ``x`` by ``1 - 2 * lr = 0.8``, so the exact path is
``x_k = 0.8^k * x_0`` and after 100 steps ``|x| = 5 * 0.8^100 ≈ 1e-9``: the minimum at the origin.

Run: ``python examples/ch04_gradient_descent.py [--out path.png]``. It prints some points of the
path; with ``--out`` it also draws the path over the contours of ``f`` into a PNG when matplotlib
is installed (``pip install 'fnnet[plot]'``), and says so when it is not. The last line is

    final x [<x0> <x1>] norm <|x|>

with numbers in ``%.3e`` format; the exit status is non-zero unless ``|x| < 1e-6`` and the path
agrees with the exact path ``0.8^k * x_0`` (central differences are exact for a quadratic up to
rounding, so to 1e-9 relative).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from _common import figure_path, run_main, write_figure
from fnnet.typing import Array
from fnnet.numerical import gradient_descent

INIT_X = (-3.0, 4.0)
LR = 0.1
STEPS = 100
#: Distance from the minimum that counts as converged.
TOLERANCE = 1e-6
#: How closely the numerical-gradient path must follow the exact path 0.8^k x_0 (relative to |x_0|).
PATH_RTOL = 1e-9
SHOWN_STEPS = (0, 1, 2, 3, 5, 10, 20, 50, 100)


def function_2(x: Array) -> float:
    """The book's ``f(x0, x1) = x0² + x1²`` for ``x`` of shape ``(2,)``."""
    return float(np.sum(x**2))


def save_plot(path: Array, out: Path) -> bool:
    """Draw the descent ``path`` (shape ``(steps + 1, 2)``) over contours of f; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-4.5, 4.5, 181)
    g0, g1 = np.meshgrid(grid, grid)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.contour(g0, g1, g0**2 + g1**2, levels=12, colors="0.8")
    ax.plot(path[:, 0], path[:, 1], "o-", markersize=3)
    ax.plot([0], [0], "+", color="k")
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_title(f"gradient descent, lr={LR}, {STEPS} steps")
    ax.set_aspect("equal")
    write_figure(plt, fig, out)
    return True


def main(argv: Sequence[str] | None = None) -> None:
    """Run the descent, print the path, optionally plot it, and check convergence."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=figure_path, default=None, help="write the path as a PNG here (needs matplotlib)")
    args = parser.parse_args(argv)

    x0 = np.array(INIT_X)
    x, path = gradient_descent(function_2, x0, lr=LR, step_num=STEPS)
    for k in SHOWN_STEPS:
        print(f"step {k:>3}: x = [{path[k, 0]: .6e} {path[k, 1]: .6e}]  f = {function_2(path[k]):.6e}")

    if args.out is not None:
        if save_plot(path, args.out):
            print(f"path saved to {args.out}")
        else:
            print("matplotlib is not installed: no plot (pip install 'fnnet[plot]')")

    exact = (1 - 2 * LR) ** np.arange(STEPS + 1)[:, None] * x0
    path_error = float(np.abs(path - exact).max() / np.abs(x0).max())
    norm = float(np.linalg.norm(x))
    if path_error > PATH_RTOL:
        print(f"path differs from the exact path 0.8^k x_0 by {path_error:.3e} (relative)")
    print(f"final x [{x[0]:.3e} {x[1]:.3e}] norm {norm:.3e}")
    if not (norm < TOLERANCE and path_error <= PATH_RTOL):
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
