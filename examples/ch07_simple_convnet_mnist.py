"""Chapter 7: the book's trained SimpleConvNet on the MNIST test set.

The book's ``ch07/train_convnet.py`` trains ``Conv(30 filters 5x5) -> ReLU -> MaxPool(2) ->
Affine(100) -> ReLU -> Affine(10)`` and saves ``params.pkl`` (here ``weights/ch07_simple_convnet.npz``);
its own code scores those weights 0.9600 on the 10,000 test images (pixels / 255, float32).
:func:`fnnet.models.simple_convnet` computes the same function, so loaded with the same weights it
must score the same.

Run: ``python examples/ch07_simple_convnet_mnist.py``; the last line printed is
``accuracy 0.9600`` and the exit status is non-zero if the figure differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from _book_weights import SIMPLE_CONVNET_ACCURACY, mnist_test, predict_labels, simple_convnet_book
from _common import run_main
from fnnet.layers.combinators import summary


def main(argv: Sequence[str] | None = None) -> None:
    """Load the weights, score the network on the test images and check the book's figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args(argv)
    model, params = simple_convnet_book()
    x, t = mnist_test()
    print(summary(model, tuple(x.shape[1:])))
    t0 = time.perf_counter()
    correct = int(np.sum(predict_labels(model, params, x) == t))
    accuracy = correct / len(x)
    print(f"test images {len(x)}, correct {correct} ({time.perf_counter() - t0:.1f}s)")
    print(f"accuracy {accuracy:.4f}")
    if f"{accuracy:.4f}" != f"{SIMPLE_CONVNET_ACCURACY:.4f}":
        print(f"expected the book's accuracy {SIMPLE_CONVNET_ACCURACY:.4f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
