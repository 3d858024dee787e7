"""Section 6.1.8: SGD, Momentum, AdaGrad and Adam training the same 5-layer net on MNIST.

As the book's ``optimizer_compare_mnist.py``: a ReLU network with four hidden layers of 100 units
(5 Affine layers, He initialisation), mini-batches of 128 and 2,000 iterations, with the book's
learning rates (SGD 0.01, Momentum 0.01 with μ = 0.9, AdaGrad 0.01, Adam 0.001). Unlike the book,
the four networks start from the *same* weights and see the *same* mini-batches (shuffled epochs of
``mnist-small``'s 8,000 training images), so the curves differ only by the optimizer.

The losses are printed every 100 iterations, and their moving averages over 100 iterations are
drawn to a PNG when matplotlib is installed. ``--quick`` runs 150 iterations (losses every 25,
averages over 25).

The last line is::

    final_loss SGD <l> Momentum <l> AdaGrad <l> Adam <l> beat_sgd <yes|no>

with each optimizer's loss averaged over the last 100 iterations (25 with ``--quick``), 4 decimals.
``beat_sgd`` is ``yes`` when Momentum, AdaGrad and Adam all end below SGD, as in the book's
Figure 6-9; otherwise the exit status is 1.
"""

from __future__ import annotations

from _common import (
    Variant,
    draw_loss_curves,
    example_parser,
    finish,
    moving_average,
    run_main,
    save_figure,
    train_variants,
)

from fnnet.datasets import load_mnist
from fnnet.models import mlp
from fnnet.optim import adagrad, adam, momentum, sgd
from fnnet.random import key as make_key

HIDDEN = (100, 100, 100, 100)
BATCH_SIZE = 128
STEPS, QUICK_STEPS = 2000, 150
#: Print every / average the final loss over this many iterations.
WINDOW, QUICK_WINDOW = 100, 25


def main(argv: list[str] | None = None) -> None:
    """Train the four optimizers side by side, draw the curves and check that SGD is the slowest."""
    args = example_parser(__doc__, "ch06_optimizer_compare_mnist.png").parse_args(argv)
    steps, window = (QUICK_STEPS, QUICK_WINDOW) if args.quick else (STEPS, WINDOW)
    (x, t), _ = load_mnist("mnist-small")
    model = mlp(HIDDEN, 10, activation="relu")
    variants = [
        Variant("SGD", model, sgd(0.01)),
        Variant("Momentum", model, momentum(0.01, 0.9)),
        Variant("AdaGrad", model, adagrad(0.01)),
        Variant("Adam", model, adam(0.001)),
    ]
    print(f"784-{'-'.join(map(str, HIDDEN))}-10 ReLU net, batch {BATCH_SIZE}, {steps} iterations on {len(x)} images")
    losses = train_variants(
        variants, (x, t), key=make_key(args.seed), steps=steps, batch_size=BATCH_SIZE, report_every=window
    )
    save_figure(draw_loss_curves(losses, window, "optimizers on mnist-small (book Figure 6-9)"), args.out)

    final = {name: float(moving_average(curve, window)[-1]) for name, curve in losses.items()}
    beat = all(final[name] < final["SGD"] for name in ("Momentum", "AdaGrad", "Adam"))
    parts = " ".join(f"{name} {value:.4f}" for name, value in final.items())
    finish(f"final_loss {parts} beat_sgd {'yes' if beat else 'no'}", beat)


if __name__ == "__main__":
    run_main(main)
