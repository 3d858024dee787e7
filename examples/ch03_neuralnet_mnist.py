"""Chapter 3: inference with the book's trained 3-layer network on the MNIST test set.

The book's ``ch03/neuralnet_mnist.py`` runs ``sigmoid(x W1 + b1) -> sigmoid(. W2 + b2) ->
softmax(. W3 + b3)`` with its trained weights (``sample_weight.pkl``, here converted to
``weights/ch03_sample_weight.npz``) over the 10,000 MNIST test images (pixels / 255, float32) in
batches of 100 and scores 0.9352. The same function built from fnnet layers must score the same.

Run: ``python examples/ch03_neuralnet_mnist.py``; the last line printed is ``accuracy 0.9352`` and
the exit status is non-zero if the figure differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import fnnet
from fnnet.typing import Array
from fnnet.datasets import batches, load_mnist_test
from fnnet.layers.core import AffineParams

WEIGHTS = Path(__file__).resolve().parent / "weights" / "ch03_sample_weight.npz"
#: The book's weights: name -> shape (784-50-100-10).
WEIGHT_SHAPES = {"W1": (784, 50), "b1": (50,), "W2": (50, 100), "b2": (100,), "W3": (100, 10), "b3": (10,)}
BATCH_SIZE = 100
#: The book's figure for these weights on the full MNIST test set.
BOOK_ACCURACY = 0.9352


def load_book_weights(path: Path) -> dict[str, Array]:
    """The book's ch03 weights, checked against :data:`WEIGHT_SHAPES` (float32 arrays)."""
    with np.load(path, allow_pickle=False) as npz:
        weights = {name: npz[name] for name in npz.files}
    if set(weights) != set(WEIGHT_SHAPES):
        raise ValueError(f"{path}: expected arrays {sorted(WEIGHT_SHAPES)}, found {sorted(weights)}")
    for name, shape in WEIGHT_SHAPES.items():
        if weights[name].shape != shape or weights[name].dtype != np.float32:
            raise ValueError(
                f"{path}: {name} should be float32 {shape}, got {weights[name].dtype} {weights[name].shape}"
            )
    return weights


def main() -> None:
    """Load the weights, score the network on the 10,000 test images and check the book's figure."""
    model = fnnet.serial(
        fnnet.Affine(50), fnnet.Sigmoid(), fnnet.Affine(100), fnnet.Sigmoid(), fnnet.Affine(10), fnnet.Softmax()
    )
    fresh, _ = model.init(fnnet.key(0), (784,))
    w = load_book_weights(WEIGHTS)
    params = (
        AffineParams(w["W1"], w["b1"]), None,
        AffineParams(w["W2"], w["b2"]), None,
        AffineParams(w["W3"], w["b3"]), None,
    )  # fmt: skip
    if fnnet.tree_structure(params) != fnnet.tree_structure(fresh):
        raise ValueError("the book's weights do not fit the model's parameter structure")

    x, t = load_mnist_test(normalize=True, flatten=True, dtype=np.float32)
    correct = 0
    for x_batch, t_batch in batches(None, x, t, BATCH_SIZE, shuffle=False):
        y = model.apply(params, x_batch)
        correct += int(np.sum(np.argmax(y, axis=1) == t_batch))
    accuracy = correct / len(x)

    print(f"test images {len(x)}, correct {correct}")
    print(f"accuracy {accuracy:.4f}")
    if f"{accuracy:.4f}" != f"{BOOK_ACCURACY:.4f}":
        print(f"expected the book's accuracy {BOOK_ACCURACY:.4f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None).parse_args()  # --help
    from _common import run_main  # here, not above: the tests load this file without examples/ on sys.path

    run_main(main)
