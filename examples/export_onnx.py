"""Export a trained network to ONNX and run it in ONNX Runtime: the same predictions as fnnet's.

By default the book's trained SimpleConvNet (``weights/ch07_simple_convnet.npz``, as in
``ch07_simple_convnet_mnist.py``) is exported; with ``--train`` a small MLP with BatchNorm is
trained on ``mnist-small`` first, so its running statistics go into the graph too.
:func:`fnnet.export.to_onnx` writes the inference graph (input ``"input"`` ``(N, ...)``, output
``"output"`` logits ``(N, 10)``, any batch size ``N``) to ``--out``. If ``onnxruntime`` is
installed the graph then classifies the test images there, and every prediction is checked
against fnnet's own. Exporting needs ``pip install 'fnnet[export]'``; running it, ``pip install
onnxruntime``.

Run: ``python examples/export_onnx.py [--train] [--n N] [--out FILE]``. The last line is
``onnxruntime accuracy 0.9600`` for the book's weights on all 10,000 test images
(``fnnet accuracy ...`` without onnxruntime); the exit status is non-zero if ONNX Runtime and
fnnet disagree on any image, or if the book's figure is not reproduced.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fnnet
from _book_weights import SIMPLE_CONVNET_ACCURACY, mnist_test, predict_labels, simple_convnet_book
from _common import output_path, positive_int, run_main, seed_int
from fnnet.export import to_onnx
from fnnet.typing import Array

#: The ONNX file written unless ``--out`` says otherwise (``runs/`` is git-ignored).
DEFAULT_OUT = Path("runs") / "model.onnx"
#: ``--train``: hidden layers of the MLP, epochs and learning rate (Adam).
TRAIN_HIDDEN = (100, 50)
TRAIN_EPOCHS = 2
TRAIN_LR = 0.001
#: Images per ONNX Runtime run.
EVAL_BATCH = 1000


def trained_mlp(seed: int, epochs: int) -> tuple[fnnet.Serial, Any, Any, tuple[Array, Array]]:
    """A BatchNorm MLP trained on ``mnist-small``: ``(model, params, state, (x_test, t_test))``."""
    (x, t), test = fnnet.datasets.load_mnist("mnist-small")
    model = fnnet.models.mlp(TRAIN_HIDDEN, batchnorm=True)
    result = fnnet.train.fit(model, fnnet.adam(TRAIN_LR), (x, t), key=fnnet.key(seed), epochs=epochs, progress="quiet")
    return model, result.state.params, result.state.model_state, test


def main(argv: Sequence[str] | None = None) -> None:
    """Train or load, export, run in onnxruntime, compare with fnnet, print the checked last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--train", action="store_true", help="train a BatchNorm MLP instead of loading the book's convnet")
    parser.add_argument("--n", type=positive_int, default=None, help="use the first N test images (default: all)")
    parser.add_argument("--out", type=output_path, default=DEFAULT_OUT, help=f"the ONNX file to write (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of --train (default 0)")
    parser.add_argument("--epochs", type=positive_int, default=TRAIN_EPOCHS, help=f"epochs of --train (default {TRAIN_EPOCHS})")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("onnx") is None:  # before any training
        parser.exit(1, "error: exporting needs the onnx package: pip install 'fnnet[export]'\n")

    if args.train:
        model, params, state, (x, t) = trained_mlp(args.seed, args.epochs)
        print(f"trained an MLP {TRAIN_HIDDEN} with BatchNorm for {args.epochs} epoch{'' if args.epochs == 1 else 's'} on mnist-small")
    else:
        (model, params), state = simple_convnet_book(), None
        x, t = mnist_test()
        print("loaded the book's trained SimpleConvNet")
    if args.n is not None:
        if not 1 <= args.n <= len(x):
            parser.error(f"--n must be in 1..{len(x)}, got {args.n}")
        x, t = x[: args.n], t[: args.n]
    in_shape = tuple(int(s) for s in x.shape[1:])

    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx_model = to_onnx(model, params, in_shape, state=state, path=args.out)
    ops = ", ".join(dict.fromkeys(node.op_type for node in onnx_model.graph.node))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): {len(onnx_model.graph.node)} nodes ({ops})")

    ours = predict_labels(model, params, x) if state is None else np.argmax(model.apply(params, x, state=state), axis=1)
    fnnet_accuracy = float(np.mean(ours == t))
    book = not args.train and len(x) == 10000
    if importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime is not installed: the graph was written but not run (pip install onnxruntime)")
        ok = not book or f"{fnnet_accuracy:.4f}" == f"{SIMPLE_CONVNET_ACCURACY:.4f}"
        finish(f"fnnet accuracy {fnnet_accuracy:.4f}", ok)
        return
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    # runs of EVAL_BATCH images: one run of all 10,000 would hold gigabytes of activations
    logits = np.concatenate([session.run(None, {"input": x[i : i + EVAL_BATCH]})[0] for i in range(0, len(x), EVAL_BATCH)])
    theirs = np.argmax(logits, axis=1)
    print(f"onnxruntime: {len(x)} images in {time.perf_counter() - t0:.1f}s")
    agree = int(np.sum(theirs == ours))
    print(f"predictions agree with fnnet's on {agree} of {len(x)} images (fnnet accuracy {fnnet_accuracy:.4f})")
    accuracy = float(np.mean(theirs == t))
    ok = agree == len(x) and (not book or f"{accuracy:.4f}" == f"{SIMPLE_CONVNET_ACCURACY:.4f}")
    finish(f"onnxruntime accuracy {accuracy:.4f}", ok)


def finish(line: str, ok: bool) -> None:
    """Print the checkable last line, then exit with status 1 unless ``ok``."""
    print(line)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
