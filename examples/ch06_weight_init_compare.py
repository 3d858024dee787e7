"""Section 6.2.4: initial weights N(0, 0.01²), Xavier and He training the same 5-layer ReLU net.

As the book's ``weight_init_compare.py``: a ReLU network with four hidden layers of 100 units
(5 Affine layers), plain SGD with learning rate 0.01, mini-batches of 128 and 2,000 iterations on
``mnist-small``'s 8,000 training images. The three runs differ only in the weights' standard
deviation: 0.01, the book's "Xavier" ``1/sqrt(n)`` (``fnnet.initializers.LeCunNormal``) and He
``sqrt(2/n)``; they draw from the same keys (so their weights are scaled copies of each other) and
see the same mini-batches. With std 0.01 the activations vanish layer by layer (see
``ch06_weight_init_activation_histogram.py``), the output is nearly 0 for every image and the
gradients are tiny: the loss stays at the chance level ln 10 ≈ 2.30.

The losses are printed every 100 iterations and their moving averages over 100 iterations drawn
to a PNG when matplotlib is installed. ``--quick`` runs 400 iterations (losses every 50, averages
over 50).

The last line is::

    final_loss std=0.01 <l> Xavier <l> He <l> he_xavier_learn <yes|no>

with each loss averaged over the last 100 iterations (50 with ``--quick``), 4 decimals.
``he_xavier_learn`` is ``yes`` when std 0.01 barely moves (its loss stays above 0.95 ln 10) while
He and Xavier learn (their losses end below half of ln 10; with ``--quick`` below 0.9 ln 10, since
Xavier only starts to descend after a few hundred iterations); otherwise the exit status is 1.
"""

from __future__ import annotations

from _common import (
    CHANCE_LOSS,
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
from fnnet.initializers import HeNormal, LeCunNormal, Normal
from fnnet.models import mlp
from fnnet.optim import sgd
from fnnet.random import key as make_key

HIDDEN = (100, 100, 100, 100)
LEARNING_RATE = 0.01
BATCH_SIZE = 128
STEPS, QUICK_STEPS = 2000, 400
WINDOW, QUICK_WINDOW = 100, 50
#: "Barely moves": the final loss of std 0.01 stays above this share of the chance loss ln 10.
STUCK_SHARE = 0.95
#: "Learns": He's and Xavier's final losses end below this share of ln 10 (full run, quick run).
LEARNED_SHARE, QUICK_LEARNED_SHARE = 0.5, 0.9


def main(argv: list[str] | None = None) -> None:
    """Train the three initialisations side by side, draw the curves and check who learns."""
    args = example_parser(__doc__, "ch06_weight_init_compare.png").parse_args(argv)
    steps, window = (QUICK_STEPS, QUICK_WINDOW) if args.quick else (STEPS, WINDOW)
    learned_share = QUICK_LEARNED_SHARE if args.quick else LEARNED_SHARE
    (x, t), _ = load_mnist("mnist-small")
    optimizer = sgd(LEARNING_RATE)
    variants = [
        Variant(name, mlp(HIDDEN, 10, activation="relu", w_init=init), optimizer)
        for name, init in (("std=0.01", Normal(0.01)), ("Xavier", LeCunNormal()), ("He", HeNormal()))
    ]
    print(f"784-{'-'.join(map(str, HIDDEN))}-10 ReLU net, SGD lr {LEARNING_RATE}, batch {BATCH_SIZE}, {steps} iterations")
    losses = train_variants(
        variants, (x, t), key=make_key(args.seed), steps=steps, batch_size=BATCH_SIZE, report_every=window
    )
    save_figure(draw_loss_curves(losses, window, "weight initialisation, ReLU (book Figure 6-15)"), args.out)

    final = {name: float(moving_average(curve, window)[-1]) for name, curve in losses.items()}
    stuck = final["std=0.01"] > STUCK_SHARE * CHANCE_LOSS
    learned = all(final[name] < learned_share * CHANCE_LOSS for name in ("Xavier", "He"))
    if not stuck:
        print(f"check failed: std=0.01 moved below {STUCK_SHARE} ln 10")
    if not learned:
        print(f"check failed: Xavier or He did not get below {learned_share} ln 10")
    parts = " ".join(f"{name} {value:.4f}" for name, value in final.items())
    finish(f"final_loss {parts} he_xavier_learn {'yes' if stuck and learned else 'no'}", stuck and learned)


if __name__ == "__main__":
    run_main(main)
