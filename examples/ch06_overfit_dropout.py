"""Section 6.4.3: overfitting 300 images, and Dropout that reduces it.

As the book's ``overfit_dropout.py``: only the first 300 training images (of ``mnist-small``), a
ReLU network with six hidden layers of 100 units (7 Affine layers, He initialisation), plain SGD
with learning rate 0.01, mini-batches of 100, 301 epochs. The net is trained twice from the same
key on the same mini-batches: without Dropout, and with the book's ``dropout_ratio`` 0.2 after
every hidden ReLU (``mlp(..., dropout=0.2)``). The weight draws of the two nets differ, since the
Dropout layers shift the layers the key is split over (the book draws independent weights too).
Train and test accuracy (on the 2,000 test images) are measured after every epoch in evaluation
mode (nothing dropped), printed every 30 epochs and drawn to a PNG when matplotlib is installed.
``--quick`` trains 110 epochs.

What is compared. fnnet's Dropout is *inverted*: kept units are scaled by 1/(1 - rate) in training
and evaluation is the identity; the book's passes kept units unscaled and multiplies by
(1 - rate) in evaluation. The two compute the same functions up to a rescaling of the weights of
the layers after each Dropout, but plain SGD is not invariant to that rescaling: with the same
learning rate and initialisation, the book's version takes steps (1 - rate)² = 0.64 times as large
in those layers and learns much more slowly (its net ends near 0.6-0.7 training accuracy after 301
epochs, fnnet's near 0.99). Much of the smaller final train-test gap in the book's Figure 6-23 is
that slowness; with inverted Dropout the final gap (last 10 epochs) is about the same as without
Dropout, smaller for some seeds and larger for others. What Dropout does do, reliably, is
generalise better *at the same training accuracy*: the check compares the gap (train minus test
accuracy) averaged over the epochs whose training accuracy lies within 0.05 of 0.9 (0.6 with
``--quick``, which does not train that far), where the Dropout net's test accuracy is higher.

The last line is::

    final_gap without <g0> with <g1> gap_at_train_acc <L> without <h0> with <h1> gap_shrinks <yes|no>

(``g``: train minus test accuracy averaged over the last 10 epochs; ``h``: averaged over the
epochs whose training accuracy is within 0.05 of ``L``; 4 decimals, ``L`` with 2). The exit status
is 1 unless the gap at the same training accuracy is smaller with Dropout (also when a run never
reaches that training accuracy: then there is no gap to compare).
"""

from __future__ import annotations

import numpy as np
from _common import (
    OVERFIT_HIDDEN,
    OVERFIT_LR,
    OVERFIT_TRAIN_SIZE,
    draw_overfit,
    example_parser,
    final_gap,
    finish,
    overfit_data,
    overfit_model,
    run_main,
    save_figure,
    train_overfit,
)

from fnnet.random import key as make_key
from fnnet.train import History

#: The book's ``dropout_ratio``.
DROPOUT = 0.2
EPOCHS, QUICK_EPOCHS = 301, 110
REPORT_EVERY = 30
#: The gaps are compared at this training accuracy (full run, quick run), within ±BAND.
LEVEL, QUICK_LEVEL = 0.9, 0.6
BAND = 0.05


def gap_at_train_acc(history: History, level: float) -> float:
    """Train minus test accuracy averaged over the epochs whose train accuracy is within ``BAND`` of
    ``level``; NaN if there are none."""
    train = np.array(history.metric("train_acc"))
    test = np.array(history.metric("test_acc"))
    near = np.abs(train - level) <= BAND
    return float(np.mean(train[near] - test[near])) if near.any() else float("nan")


def main(argv: list[str] | None = None) -> None:
    """Train with and without Dropout, draw the curves and check that the gap shrinks."""
    args = example_parser(__doc__, "ch06_overfit_dropout.png").parse_args(argv)
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    data = overfit_data()
    key = make_key(args.seed)
    print(
        f"{OVERFIT_TRAIN_SIZE} training images, 784-{'-'.join(map(str, OVERFIT_HIDDEN))}-10 ReLU, "
        f"SGD lr {OVERFIT_LR}, {epochs} epochs"
    )
    histories = {
        "without": train_overfit("without", overfit_model(), data, key=key, epochs=epochs, report_every=REPORT_EVERY),
        "with": train_overfit("with", overfit_model(DROPOUT), data, key=key, epochs=epochs, report_every=REPORT_EVERY),
    }
    save_figure(draw_overfit(histories, f"Dropout {DROPOUT}"), args.out)

    level = QUICK_LEVEL if args.quick else LEVEL
    gaps = {name: final_gap(h) for name, h in histories.items()}
    at_level = {name: gap_at_train_acc(h, level) for name, h in histories.items()}
    for name in histories:
        print(f"{name:<8} Dropout: final gap {gaps[name]:.4f}, gap at training accuracy {level:.2f}: {at_level[name]:.4f}")
    shrinks = at_level["with"] < at_level["without"]  # False if either is NaN
    if not shrinks:
        print(f"check failed: Dropout did not shrink the train-test gap at training accuracy {level:.2f}")
    finish(
        f"final_gap without {gaps['without']:.4f} with {gaps['with']:.4f} gap_at_train_acc {level:.2f} "
        f"without {at_level['without']:.4f} with {at_level['with']:.4f} gap_shrinks {'yes' if shrinks else 'no'}",
        shrinks,
    )


if __name__ == "__main__":
    run_main(main)
