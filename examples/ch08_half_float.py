"""Chapter 8.3.4: the book's DeepConvNet in half precision (float16) predicts as well as in float32.

The book's ``ch08/half_float_network.py`` casts its trained parameters to float16 and shows that
the accuracy barely moves: 16 bits are plenty for inference. Here the book's weights (loaded and
converted as in ``ch08_deep_convnet_mnist.py``) run once in float32 and once with every parameter
cast by ``fnnet.astype(params, np.float16)`` and float16 images, so every activation is float16 too.

NumPy has no BLAS for float16: its float16 matrix products are scalar loops, far slower than
float32 ones. The float16 pass therefore uses the first ``--n`` test images (default 1000); both
accuracies are computed on those same images. ``--n 10000`` scores the whole test set (ten times
as long), where the float32 figure is the book's 0.9797.

Run: ``python examples/ch08_half_float.py [--n 10000]``; the last line is
``accuracy float32 <a> float16 <b>`` and the exit status is non-zero if they differ by more than
:data:`TOLERANCE`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

import fnnet
from _book_weights import deep_convnet_book, mnist_test, predict_labels
from _common import positive_int, run_main

#: Largest accepted accuracy drop (or gain) from float32 to float16.
TOLERANCE = 0.01
#: Images per forward pass.
BATCH_SIZE = 100


def main(argv: Sequence[str] | None = None) -> None:
    """Score the network in float32 and in float16 on the first ``--n`` test images; compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=positive_int, default=1000, help="number of test images (1..10000)")
    args = parser.parse_args(argv)
    model, params32 = deep_convnet_book()
    x, t = mnist_test()
    if not 1 <= args.n <= len(x):
        parser.error(f"--n must be in 1..{len(x)}, got {args.n}")
    x, t = x[: args.n], t[: args.n]
    params16 = fnnet.astype(params32, np.float16)
    x16 = x.astype(np.float16)

    t0 = time.perf_counter()
    guess32 = predict_labels(model, params32, x, BATCH_SIZE)
    t32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    guess16 = predict_labels(model, params16, x16, BATCH_SIZE)
    t16 = time.perf_counter() - t0
    logits16 = model.apply(params16, x16[:BATCH_SIZE])
    if logits16.dtype != np.float16:
        raise TypeError(f"expected float16 activations, got {logits16.dtype}")

    acc32, acc16 = float(np.mean(guess32 == t)), float(np.mean(guess16 == t))
    print(f"test images {len(x)} (the first {len(x)} of 10000)")
    print(f"float32: accuracy {acc32:.4f} ({t32:.1f}s)")
    print(f"float16: accuracy {acc16:.4f} ({t16:.1f}s)")
    print(f"difference {acc16 - acc32:+.4f}; predictions differ on {int(np.sum(guess32 != guess16))} images")
    print(f"accuracy float32 {acc32:.4f} float16 {acc16:.4f}")
    if not abs(acc16 - acc32) <= TOLERANCE:
        print(f"float16 accuracy differs from float32 by more than {TOLERANCE}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
