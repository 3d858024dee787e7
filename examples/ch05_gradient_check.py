"""Chapter 5: gradient check of the two-layer net, backpropagation against numerical gradients.

The book's ``TwoLayerNet`` is ``Affine -> ReLU -> Affine -> SoftmaxWithLoss`` (784-50-10). Here it
is ``fnnet.serial(Affine(hidden), ReLU(), Affine(10))`` with the fused
``fnnet.losses.softmax_cross_entropy``, in float64. The gradients from ``backward`` are compared
with central differences of the loss, through the shared helper ``fnnet.check_grads``.

Differences from the book, to keep the run to about two seconds: a hidden layer of 10 units instead
of 50 (``--hidden 50`` gives the book's size and takes about five times longer), and a batch of 3
random "images" of the MNIST shape (784 pixels uniform in [0, 1), labels uniform in 0..9) drawn
from a fixed key instead of three training images. The numerical gradient touches every one of
the ~8,000 parameters twice, which is exactly why backpropagation is used for training.

Run: ``python examples/ch05_gradient_check.py [--hidden H] [--batch N] [--seed S]``. It prints, per
parameter, the book's mean absolute difference and the maximum relative error
``max|backprop - numerical| / max(max|backprop|, max|numerical|)``. The last line is

    max relative error <value>

(``%.3e``), the largest relative error over all parameters and the input; the exit status is
non-zero if it is above 1e-6 (float64 differences of a correct backward are around 1e-9 or less).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

import fnnet
from _common import positive_int, run_main, seed_int
from fnnet.typing import Array
from fnnet.layers.base import Layer
from fnnet.layers.combinators import serial
from fnnet.layers.core import Affine, ReLU
from fnnet.losses import softmax_cross_entropy
from fnnet.numerical import check_grads, numerical_gradient
from fnnet.tree import tree_astype, tree_leaves, tree_paths

IN_FEATURES = 28 * 28
CLASSES = 10
#: A correct backward agrees with float64 central differences far better than this.
MAX_RELATIVE_ERROR = 1e-6
#: The book's names for the parameter paths of serial(Affine, ReLU, Affine).
BOOK_NAMES = {"0/w": "W1", "0/b": "b1", "2/w": "W2", "2/b": "b2", "x": "x (input)"}


def mean_abs_differences(model: Layer, params: Any, x: Array, t: Array) -> dict[str, float]:
    """The book's check: ``mean|backprop - numerical|`` for each parameter path of ``params``."""
    logits, _, cache = model.forward(params, None, x)
    _, dlogits = softmax_cross_entropy(logits, t)
    _, grads = model.backward(params, cache, dlogits)
    numeric = numerical_gradient(lambda p: softmax_cross_entropy(model.apply(p, x), t)[0], params)
    return {
        path: float(np.mean(np.abs(a - n)))
        for path, a, n in zip(tree_paths(params), tree_leaves(grads), tree_leaves(numeric))
    }


def main() -> None:
    """Build the net, draw a batch, compare backprop with numerical gradients and check the error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hidden", type=positive_int, default=10, help="hidden units (the book uses 50)")
    parser.add_argument("--batch", type=positive_int, default=3, help="batch size (the book uses 3)")
    parser.add_argument("--seed", type=seed_int, default=0)
    args = parser.parse_args()

    k_init, k_x, k_t = fnnet.split(fnnet.key(args.seed), 3)
    model = serial(Affine(args.hidden), ReLU(), Affine(CLASSES))
    params, _ = model.init(k_init, (IN_FEATURES,))
    params = tree_astype(params, np.float64)
    x = k_x.generator().uniform(0.0, 1.0, size=(args.batch, IN_FEATURES))
    t = k_t.generator().integers(0, CLASSES, size=args.batch)
    print(f"two-layer net {IN_FEATURES}-{args.hidden}-{CLASSES}, batch {args.batch}, float64")

    mean_abs = mean_abs_differences(model, params, x, t)
    check = check_grads(model, params, x, loss=softmax_cross_entropy, t=t)

    print(f"{'':<10} {'mean |diff|':>12} {'max rel error':>14}")
    for path, error in check.errors.items():
        diff = f"{mean_abs[path]:12.3e}" if path in mean_abs else f"{'':>12}"
        print(f"{BOOK_NAMES.get(path, path):<10} {diff} {error:14.3e}")
    worst = check.max_error
    print(f"max relative error {worst:.3e}")
    if not worst <= MAX_RELATIVE_ERROR:
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
