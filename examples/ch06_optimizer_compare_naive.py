"""The book's section 6.1.7: SGD, Momentum, AdaGrad and Adam on f(x, y) = x²/20 + y².

Each optimizer starts at (-7, 2) and takes 30 steps with the book's learning rate. The script
prints each final point and its distance to the minimum (0, 0), draws the four paths over the
contour lines of f to a PNG when matplotlib is installed, and ends with ``optimizers ok`` (it exits
with status 1 if any optimizer diverges)::

    python examples/ch06_optimizer_compare_naive.py --out optimizer_compare.png
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fnnet import optim
from fnnet.optim import GradientTransformation

Array = np.ndarray[Any, Any]

#: The file types ``--out`` may have (matplotlib picks the format from it; none is PNG).
FIGURE_SUFFIXES = ("", ".png", ".pdf", ".svg", ".jpg", ".jpeg")
START = np.array([-7.0, 2.0])
STEPS = 30
#: name -> the optimizer with the book's learning rate for this function.
OPTIMIZERS: dict[str, GradientTransformation] = {
    "SGD": optim.sgd(0.95),
    "Momentum": optim.momentum(0.1),
    "AdaGrad": optim.adagrad(1.5),
    "Adam": optim.adam(0.3),
}


def f(p: Array) -> Array:
    """f(x, y) = x²/20 + y² for points ``p`` of shape ``(..., 2)``."""
    z: Array = p[..., 0] ** 2 / 20.0 + p[..., 1] ** 2
    return z


def grad_f(p: Array) -> Array:
    """∇f(x, y) = (x/10, 2y), shape ``(2,)``."""
    return np.array([p[0] / 10.0, 2.0 * p[1]])


def descend(opt: GradientTransformation, start: Array, steps: int) -> Array:
    """The points visited by ``opt`` from ``start``: shape ``(steps + 1, 2)``."""
    p, state = start, opt.init(start)
    path = [p]
    for _ in range(steps):
        p, state = optim.apply_optimizer(opt, grad_f(p), state, p)
        path.append(p)
    return np.stack(path)


def draw(paths: dict[str, Array], out: Path) -> bool:
    """Draw the paths over the contour lines of f to ``out``; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    xs, ys = np.meshgrid(np.linspace(-10, 10, 201), np.linspace(-5, 5, 101))
    z = f(np.stack([xs, ys], axis=-1))
    fig, axes = plt.subplots(2, 2, figsize=(9, 7))
    for ax, (name, path) in zip(axes.flat, paths.items()):
        # levels evenly spaced in √f give evenly spaced ellipses
        ax.contour(xs, ys, z, levels=np.linspace(0.3, 5.0, 12) ** 2, colors="0.7", linewidths=0.8)
        ax.plot(path[:, 0], path[:, 1], "o-", color="red", markersize=3, linewidth=1)
        ax.plot(0, 0, "+", color="black", markersize=10)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-5, 5)
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.tight_layout()
    from _common import write_figure  # here, not above, as run_main in main(); written atomically

    write_figure(plt, fig, out)
    return True


def main() -> None:
    """Run the comparison, print the final points, draw the figure and check for divergence."""
    parser = argparse.ArgumentParser(description="Compare SGD, Momentum, AdaGrad and Adam (book 6.1.7).")
    parser.add_argument("--out", type=Path, default=Path("optimizer_compare.png"), help="PNG to draw the paths to")
    args = parser.parse_args()
    if args.out.suffix.lower() not in FIGURE_SUFFIXES:
        parser.error(f"--out {args.out}: a figure must end in .png (or .pdf, .svg, .jpg)")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a directory, not a file name")

    start_dist = float(np.linalg.norm(START))
    paths = {name: descend(opt, START, STEPS) for name, opt in OPTIMIZERS.items()}
    diverged = []
    for name, path in paths.items():
        x, y = path[-1]
        dist = float(np.linalg.norm(path[-1]))
        print(f"{name:<9} final ({x: .4f}, {y: .4f})  distance to minimum {dist:.4f}  f = {float(f(path[-1])):.3e}")
        if not math.isfinite(dist) or dist >= start_dist:
            diverged.append(name)
    if draw(paths, args.out):
        print(f"figure written to {args.out}")
    if diverged:
        print(f"diverged: {', '.join(diverged)}", file=sys.stderr)
        sys.exit(1)
    print("optimizers ok")


if __name__ == "__main__":
    from _common import run_main  # here, not above: the tests load this file without examples/ on sys.path

    run_main(main)
