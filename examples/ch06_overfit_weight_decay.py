"""Section 6.4.1-6.4.2: overfitting 300 images, and the book's L2 weight decay that reduces it.

As the book's ``overfit_weight_decay.py``: only the first 300 training images (of
``mnist-small``), a ReLU network with six hidden layers of 100 units (7 Affine layers, He
initialisation), plain SGD with learning rate 0.01, mini-batches of 100, 201 epochs. The same net
is trained twice from the same key on the same mini-batches: without weight decay, and with the
book's coupled L2 decay λ = 0.1 (``fit(..., weight_decay=0.1)`` adds ``0.5·λ·ΣW²`` over the Affine
weights to the loss and ``λ·W`` to their gradients; biases are not decayed). Train and test
accuracy (on the 2,000 test images) are measured after every epoch, printed every 20 epochs and
drawn to a PNG when matplotlib is installed. ``--quick`` trains 60 epochs.

The last line is::

    gap without <g0> with <g1> train_acc without <a0> with <a1> test_acc without <b0> with <b1> gap_shrinks <yes|no>

where a gap is train minus test accuracy; every number is the mean over the last 10 epochs (4
decimals). The exit status is 1 unless the gap with weight decay is smaller than without.
"""

from __future__ import annotations

from _common import (
    OVERFIT_HIDDEN,
    OVERFIT_LR,
    OVERFIT_TRAIN_SIZE,
    draw_overfit,
    example_parser,
    final_gap,
    final_mean,
    finish,
    overfit_data,
    overfit_model,
    run_main,
    save_figure,
    train_overfit,
)

from fnnet.random import key as make_key

#: The book's λ.
WEIGHT_DECAY = 0.1
EPOCHS, QUICK_EPOCHS = 201, 60
REPORT_EVERY = 20


def main(argv: list[str] | None = None) -> None:
    """Train with and without weight decay, draw the curves and check that the gap shrinks."""
    args = example_parser(__doc__, "ch06_overfit_weight_decay.png").parse_args(argv)
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    data = overfit_data()
    key = make_key(args.seed)
    print(
        f"{OVERFIT_TRAIN_SIZE} training images, 784-{'-'.join(map(str, OVERFIT_HIDDEN))}-10 ReLU, "
        f"SGD lr {OVERFIT_LR}, {epochs} epochs"
    )
    histories = {
        "without": train_overfit("without", overfit_model(), data, key=key, epochs=epochs, report_every=REPORT_EVERY),
        "with": train_overfit(
            "with", overfit_model(), data, key=key, epochs=epochs, weight_decay=WEIGHT_DECAY, report_every=REPORT_EVERY
        ),
    }
    save_figure(draw_overfit(histories, f"weight decay λ={WEIGHT_DECAY}"), args.out)

    gaps = {name: final_gap(h) for name, h in histories.items()}
    shrinks = gaps["with"] < gaps["without"]
    if not shrinks:
        print("check failed: weight decay did not shrink the train-test gap")
    line = [f"gap without {gaps['without']:.4f} with {gaps['with']:.4f}"]
    for metric in ("train_acc", "test_acc"):
        w0, w1 = (final_mean(histories[name], metric) for name in ("without", "with"))
        line.append(f"{metric} without {w0:.4f} with {w1:.4f}")
    finish(" ".join(line) + f" gap_shrinks {'yes' if shrinks else 'no'}", shrinks)


if __name__ == "__main__":
    run_main(main)
