"""A small residual network on Fashion-MNIST, trained briefly with augmentation.

:func:`fnnet.models.resnet` (a 3x3 stem, three stages of two basic blocks with 16, 32 and 64
channels, projection shortcuts where a stage halves the resolution, global average pooling) is
trained on the first ``--train`` Fashion-MNIST training images for ``--epochs`` epochs with
Adam (learning rate 0.002 decayed to 0 along a cosine), batch 100, and
``fit(augment=compose(RandomCrop(2), HorizontalFlip()))``: only the training batches are
augmented. The learning curve (loss and test accuracy per epoch) is drawn to a PNG when
matplotlib is installed. The full benchmark (all 60,000 images) is ``bench/fashion_mnist_resnet.py``.

Run: ``python examples/resnet_fashion_mnist.py [--train 5000] [--epochs 3] [--data fashion-mnist]``;
the last line is ``test accuracy <a>`` on the 10,000 test images (``--quick``: 1,000 training
images, one epoch, the first 1,000 test images), and the exit status is non-zero when ``a`` is
below :data:`FULL_TARGET` (:data:`QUICK_TARGET` with ``--quick``).

Measured (seed 0, 2 cores shared with other work): the default run scored 0.7936 (test accuracy
0.7270 and 0.7739 after epochs 1 and 2) in 6.5 minutes; ``--quick`` scored 0.3460.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from _common import example_parser, finish, mnist_data, positive_int, run_main, save_figure
from fnnet import models, optim
from fnnet.datasets import HorizontalFlip, RandomCrop, compose, load_mnist
from fnnet.random import key as make_key, split
from fnnet.train import History, evaluate, fit

#: Test accuracy the default run (5,000 images, 3 epochs) must reach.
FULL_TARGET = 0.75
#: Test accuracy the ``--quick`` run (1,000 images, one epoch) must reach: well above chance (0.1).
QUICK_TARGET = 0.30
BATCH_SIZE = 100


def draw(history: History) -> Callable[[Any], Any]:
    """The loss and test accuracy per epoch, side by side."""

    def figure(plt: Any) -> Any:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
        epochs = range(1, len(history.epochs) + 1)
        ax1.plot(epochs, [e["loss"] for e in history.epochs], marker="o")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("training loss (augmented batches)")
        ax2.plot(epochs, [e["test_acc"] for e in history.epochs], marker="o", color="tab:green")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("test accuracy")
        fig.suptitle("fnnet.models.resnet on Fashion-MNIST")
        fig.tight_layout()
        return fig

    return figure


def main(argv: Sequence[str] | None = None) -> None:
    """Train the ResNet briefly, report the test accuracy and check it."""
    parser = example_parser(__doc__, "resnet_fashion_mnist.png")
    parser.add_argument("--train", type=positive_int, default=5000, help="training images used (default 5000)")
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--data", type=mnist_data, default="fashion-mnist", help="data set name or IDX directory")
    args = parser.parse_args(argv)
    n_train, epochs = (1000, 1) if args.quick else (args.train, args.epochs)
    if n_train < BATCH_SIZE or epochs < 1:
        parser.error(f"need --train >= {BATCH_SIZE} and --epochs >= 1")

    (x_train, t_train), (x_test, t_test) = load_mnist(args.data, flatten=False)
    x_train, t_train = x_train[:n_train], t_train[:n_train]
    if args.quick:
        x_test, t_test = x_test[:1000], t_test[:1000]
    model = models.resnet()
    per_epoch = -(-len(x_train) // BATCH_SIZE)
    steps = epochs * per_epoch
    schedule = optim.CosineDecay(0.002, steps)
    run_key = split(make_key(args.seed))[1]
    print(f"{args.data}: {len(x_train)} training images, {len(x_test)} test images, {epochs} epoch(s)")
    result = fit(
        model,
        optim.adam(schedule),
        (x_train, t_train),
        key=run_key,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        augment=compose(RandomCrop(2), HorizontalFlip()),
        test=(x_test, t_test),
        eval_train=False,
        eval_sample=len(x_test),
        progress="lines",
    )
    save_figure(draw(result.history), args.out)
    acc = evaluate(model, result.state.params, x_test, t_test, state=result.state.model_state)["acc"]
    target = QUICK_TARGET if args.quick else FULL_TARGET
    finish(f"test accuracy {acc:.4f}", acc >= target)


if __name__ == "__main__":
    run_main(main)
