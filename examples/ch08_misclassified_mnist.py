"""Chapter 8.1.1: the digits the book's DeepConvNet gets wrong.

With the book's trained weights (converted as in ``ch08_deep_convnet_mnist.py``) the network
misclassifies 203 of the 10,000 MNIST test images (accuracy 0.9797). Many of them are ambiguous
even to people, which is the book's point. The script draws the first :data:`GRID` of them with
their label and the network's guess to a PNG (when matplotlib is installed).

Run: ``python examples/ch08_misclassified_mnist.py [--out runs/ch08_misclassified.png]``; the last
line is ``misclassified 203 of 10000`` and the exit status is non-zero if the count differs from
the book's figure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _book_weights import DEEP_CONVNET_ACCURACY, deep_convnet_book, mnist_test, predict_labels
from _common import figure_path, run_main, save_figure
from fnnet.typing import Array

#: Number of misclassified digits drawn (4 rows of 5).
GRID = 20
DEFAULT_OUT = Path("runs") / "ch08_misclassified.png"


def draw(plt: Any, images: Array, labels: Array, guesses: Array) -> Any:
    """A grid of ``images`` ``(K, 1, 28, 28)`` titled ``label -> guess``, drawn with ``matplotlib.pyplot``."""
    cols = 5
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.0 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(images):
            ax.imshow(images[i, 0], cmap="gray_r", interpolation="nearest")
            ax.set_title(f"{labels[i]} -> {guesses[i]}", fontsize=10)
        else:
            ax.set_axis_off()
    fig.suptitle("misclassified: label -> guess")
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> None:
    """Classify the test set, draw the first misclassified digits and check their number."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=figure_path, default=DEFAULT_OUT, help="PNG file for the grid")
    args = parser.parse_args(argv)
    model, params = deep_convnet_book()
    x, t = mnist_test()
    guesses = predict_labels(model, params, x)
    wrong = np.flatnonzero(guesses != t)
    shown = wrong[:GRID]
    for i in shown:
        print(f"image {i:5d}: label {t[i]} guess {guesses[i]}")
    save_figure(lambda plt: draw(plt, x[shown], t[shown], guesses[shown]), args.out)
    expected = round((1.0 - DEEP_CONVNET_ACCURACY) * len(x))
    print(f"misclassified {len(wrong)} of {len(x)}")
    if len(wrong) != expected:
        print(f"expected the book's {expected} misclassified images", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
