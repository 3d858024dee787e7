"""Chapter 8: the book's trained DeepConvNet on the MNIST test set.

The book's ``ch08/deep_convnet.py`` stacks six 3x3 convolutions (16, 16, 32, 32, 64, 64 filters;
pad 1 except pad 2 on the fourth) with ReLUs and a 2x2 max pool after every second, then
``Affine(50) -> ReLU -> Dropout(0.5) -> Affine(10) -> Dropout(0.5)``. Its own code scores the
trained ``deep_convnet_params.pkl`` (here ``weights/ch08_deep_convnet.npz``) 0.9797 on the 10,000
test images (pixels / 255, float32).

The book's Dropout is not inverted: in evaluation it outputs ``(1 - 0.5) * h``, so the book's last
Affine sees ``0.5 * h``. fnnet's Dropout is the identity in evaluation, so the weights are converted
when loading: ``W8`` is multiplied by ``1 - 0.5`` (``b8`` is not), which makes the last Affine
compute exactly the book's ``(0.5 * h) @ W8 + b8``. The book's final Dropout then halves its
logits, which changes no argmax, so nothing needs to absorb it.

Run: ``python examples/ch08_deep_convnet_mnist.py``; the last line printed is
``accuracy 0.9797`` and the exit status is non-zero if the figure differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from _book_weights import DEEP_CONVNET_ACCURACY, EVAL_BATCH, deep_convnet_book, mnist_test, predict_labels
from _common import positive_int, run_main
from fnnet.layers.combinators import summary


def main(argv: Sequence[str] | None = None) -> None:
    """Load the weights, score the network on the test images and check the book's figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batch-size", type=positive_int, default=EVAL_BATCH, help="images per forward pass")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    model, params = deep_convnet_book()
    x, t = mnist_test()
    print(summary(model, tuple(x.shape[1:])))
    t0 = time.perf_counter()
    correct = int(np.sum(predict_labels(model, params, x, args.batch_size) == t))
    accuracy = correct / len(x)
    print(f"test images {len(x)}, correct {correct} ({time.perf_counter() - t0:.1f}s)")
    print(f"accuracy {accuracy:.4f}")
    if f"{accuracy:.4f}" != f"{DEEP_CONVNET_ACCURACY:.4f}":
        print(f"expected the book's accuracy {DEEP_CONVNET_ACCURACY:.4f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
