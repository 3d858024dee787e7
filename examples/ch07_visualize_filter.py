"""Chapter 7.6.1: the first-layer filters of a SimpleConvNet before and after training.

Before training the 30 filters (5x5) are noise from the initialiser (the book's N(0, 0.01²));
after training they are smooth blobs and edge detectors. The script draws both sets as two grids
to a PNG (when matplotlib is installed) and measures the difference with one number per set:

    the mean neighbour correlation: for each filter, the correlation between every pixel and its
    right and lower neighbours (40 pairs in a 5x5 filter), averaged over the filters.

Independent random pixels give about 0; smooth, structured filters give clearly positive values.
The trained filters come from the book's weights (``--trained book``, the default) or from a quick
``fnnet.fit`` of the same network on the embedded ``mnist-small`` set (``--trained fit``, one epoch
of Adam, a few seconds), which starts from exactly the "before" filters.

Run: ``python examples/ch07_visualize_filter.py [--trained book|fit] [--out runs/ch07_filters.png]``;
the last line is ``neighbour correlation random <r> trained <s>`` and the exit status is non-zero
unless the trained filters exceed the random ones by at least :data:`MIN_GAIN`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _book_weights import IN_SHAPE, SIMPLE_CONVNET_FILE, SIMPLE_CONVNET_SHAPES, load_weights
from _common import figure_path, positive_int, run_main, save_figure, seed_int
from fnnet import models, optim
from fnnet.typing import Array
from fnnet.datasets import load_mnist
from fnnet.initializers import Normal
from fnnet.random import key as make_key, split
from fnnet.train import fit, init_train_state

#: The book's SimpleConvNet initialisation (``weight_init_std=0.01``).
BOOK_INIT_STD = 0.01
#: Required gain of the mean neighbour correlation from random to trained filters. Random filters
#: score 0 ± about 0.03 (the mean of 30 correlations of 40 independent pairs, each ± 0.16).
MIN_GAIN = 0.2
DEFAULT_OUT = Path("runs") / "ch07_filters.png"


def neighbour_correlation(filters: Array) -> float:
    """Mean over filters of the correlation between horizontally and vertically adjacent pixels.

    Args:
        filters: ``(FN, 1, FH, FW)`` (or ``(FN, FH, FW)``) first-layer weights.
    Returns:
        A number in [-1, 1]: about 0 for independent noise, near 1 for smooth filters.
    """
    f = np.asarray(filters, dtype=np.float64).reshape(filters.shape[0], filters.shape[-2], filters.shape[-1])
    n = len(f)
    left = np.concatenate([f[:, :, :-1].reshape(n, -1), f[:, :-1, :].reshape(n, -1)], axis=1)
    right = np.concatenate([f[:, :, 1:].reshape(n, -1), f[:, 1:, :].reshape(n, -1)], axis=1)
    a = left - left.mean(axis=1, keepdims=True)
    b = right - right.mean(axis=1, keepdims=True)
    r = np.sum(a * b, axis=1) / np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1))
    return float(np.mean(r))


def trained_filters(how: str, seed: int, epochs: int) -> tuple[Array, Array]:
    """``(before, after)`` first-layer filters ``(30, 1, 5, 5)``.

    ``before`` is the book's random initialisation from ``seed``; ``after`` is the book's trained
    W1 (``how == "book"``) or the result of training from ``before`` on mnist-small (``"fit"``).
    """
    model = models.simple_convnet(w_init=Normal(BOOK_INIT_STD))
    opt = optim.adam(0.001)
    init_key, fit_key = split(make_key(seed))
    state = init_train_state(model, opt, init_key, IN_SHAPE)
    before: Array = state.params[0].w
    if how == "book":
        return before, load_weights(SIMPLE_CONVNET_FILE, SIMPLE_CONVNET_SHAPES)["W1"]
    (x, t), _ = load_mnist("mnist-small", flatten=False)
    result = fit(model, opt, (x, t), key=fit_key, epochs=epochs, state=state, eval_train=False, progress="lines")
    after: Array = result.state.params[0].w
    return before, after


def draw(plt: Any, before: Array, after: Array, labels: tuple[str, str]) -> Any:
    """Both filter sets as grids (6 x 5 each) in one figure, drawn with ``matplotlib.pyplot``."""
    rows, cols = 6, 5
    fig = plt.figure(figsize=(10, 6.5))
    halves = fig.add_gridspec(1, 2)
    for k, (filters, label) in enumerate(zip((before, after), labels)):
        sub = fig.add_subfigure(halves[0, k])
        sub.suptitle(label)
        axes = sub.subplots(rows, cols)
        for i, ax in enumerate(axes.flat):
            ax.set_xticks([])
            ax.set_yticks([])
            if i < len(filters):
                ax.imshow(filters[i, 0], cmap="gray_r", interpolation="nearest")
            else:
                ax.set_axis_off()
    return fig


def main(argv: Sequence[str] | None = None) -> None:
    """Compare the filters before and after training; draw them; check they gained structure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trained", choices=("book", "fit"), default="book", help="source of the trained filters")
    parser.add_argument("--epochs", type=positive_int, default=1, help="epochs of training with --trained fit")
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--out", type=figure_path, default=DEFAULT_OUT, help="PNG file for the two grids")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    before, after = trained_filters(args.trained, args.seed, args.epochs)
    source = "the book's weights" if args.trained == "book" else f"fnnet.fit, {args.epochs} epoch(s) on mnist-small"
    r_before, r_after = neighbour_correlation(before), neighbour_correlation(after)
    print(f"filters {before.shape}: random init N(0, {BOOK_INIT_STD}^2) vs trained ({source})")
    labels = ("before training (random)", f"after training ({args.trained})")
    save_figure(lambda plt: draw(plt, before, after, labels), args.out)
    print(f"neighbour correlation random {r_before:.3f} trained {r_after:.3f}")
    if not r_after >= r_before + MIN_GAIN:
        print(f"trained filters should be smoother than random ones by at least {MIN_GAIN}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
