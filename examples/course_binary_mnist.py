"""Binary classification with a sigmoid output and cross-entropy: MNIST's 3s against its 8s.

The course's output layer for two classes: one output unit whose sigmoid ``σ(z)`` is the
probability of the positive class, trained with the binary cross-entropy
``-[t log σ(z) + (1 - t) log(1 - σ(z))]``. Here the net outputs the logit ``z`` and the loss is
``fnnet.losses.binary_cross_entropy_with_logits``, the same function computed without overflow
(the sigmoid is folded into the loss, as softmax is into ``softmax_cross_entropy``); its gradient
with respect to ``z`` is ``(σ(z) - t) / N``. A sample is predicted positive where ``z > 0``, i.e.
``σ(z) > 0.5``, which is what ``fnnet.metrics.binary_accuracy`` (the metric ``fit`` chooses for this
loss) counts.

The data are the 3s and 8s of ``mnist-small`` (about 1,600 training and 400 test images), the
label ``t = 1`` for an 8; the net is ``784 -> 50 (ReLU) -> 1``, trained with SGD (learning rate 0.1,
mini-batches of 100) for 20 epochs (5 with ``--quick``). Binary accuracy on the training and test
images is printed after every epoch, then the test set's 2x2 confusion matrix (rows: true class,
columns: predicted class); the accuracy curves and the confusion matrix are drawn to a PNG when
matplotlib is installed.

The last line is::

    binary test_acc <a> confusion [[<tn> <fp>] [<fn> <tp>]] n_test <n>

The exit status is 1 unless the test accuracy reaches 0.95 (0.90 with ``--quick``) and the
confusion matrix accounts for every test image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _common import example_parser, finish, run_main, save_figure

from fnnet.datasets import load_mnist
from fnnet.losses import binary_cross_entropy_with_logits
from fnnet.metrics import binary_accuracy, confusion_matrix
from fnnet.models import mlp
from fnnet.optim import sgd
from fnnet.random import key as make_key
from fnnet.train import History, fit, predict
from fnnet.typing import Array

NEGATIVE, POSITIVE = 3, 8
HIDDEN = 50
LEARNING_RATE = 0.1
BATCH_SIZE = 100
EPOCHS, QUICK_EPOCHS = 20, 5
MIN_TEST_ACC, QUICK_MIN_TEST_ACC = 0.95, 0.90


def two_digits(x: Array, t: Array) -> tuple[Array, Array]:
    """The images of the two digits, with targets ``(n, 1)`` float32: 1 for ``POSITIVE``, 0 for ``NEGATIVE``."""
    keep = (t == NEGATIVE) | (t == POSITIVE)
    return x[keep], (t[keep] == POSITIVE).astype(np.float32)[:, None]


def draw(history: History, cm: Array) -> Any:
    """A ``save_figure`` drawer: binary accuracy per epoch, and the test confusion matrix."""

    def make(plt: Any) -> Any:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        epochs = np.arange(1, len(history.epochs) + 1)
        ax1.plot(epochs, history.metric("train_acc"), label="train")
        ax1.plot(epochs, history.metric("test_acc"), "--", label="test")
        ax1.set_xlabel("epochs")
        ax1.set_ylabel("binary accuracy")
        ax1.set_title(f"{NEGATIVE} (t=0) against {POSITIVE} (t=1)")
        ax1.legend(loc="lower right")
        ax2.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax2.text(j, i, str(v), ha="center", va="center", color="red")
        ticks = [str(NEGATIVE), str(POSITIVE)]
        ax2.set_xticks([0, 1], ticks)
        ax2.set_yticks([0, 1], ticks)
        ax2.set_xlabel("predicted")
        ax2.set_ylabel("true")
        ax2.set_title("test confusion matrix")
        fig.tight_layout()
        return fig

    return make


def main(argv: list[str] | None = None) -> None:
    """Train the one-output classifier, print its accuracy and confusion matrix, and check them."""
    args = example_parser(__doc__, "course_binary_mnist.png").parse_args(argv)
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    (x, t), (x_test, t_test) = load_mnist("mnist-small")
    train, test = two_digits(x, t), two_digits(x_test, t_test)
    print(
        f"{NEGATIVE} (t=0) against {POSITIVE} (t=1): {len(train[0])} training images "
        f"({int(train[1].sum())} of them {POSITIVE}s), {len(test[0])} test images"
    )
    print(f"784-{HIDDEN}-1 net, sigmoid output with binary cross-entropy, SGD lr {LEARNING_RATE}, {epochs} epochs")

    def report(_state: Any, history: History) -> None:
        m = history.epochs[-1]
        print(
            f"epoch {len(history.epochs):>2}: loss {m['loss']:.4f} "
            f"train_acc {m['train_acc']:.4f} test_acc {m['test_acc']:.4f}"
        )

    model = mlp((HIDDEN,), 1)
    result = fit(
        model,
        sgd(LEARNING_RATE),
        train,
        key=make_key(args.seed),
        epochs=epochs,
        batch_size=BATCH_SIZE,
        loss=binary_cross_entropy_with_logits,
        test=test,
        progress="quiet",
        on_epoch=report,
    )
    logits = predict(model, result.state.params, test[0])
    acc = binary_accuracy(logits, test[1])
    cm = confusion_matrix(logits, test[1])
    print(f"test confusion matrix (rows: true {NEGATIVE}, {POSITIVE}; columns: predicted {NEGATIVE}, {POSITIVE}):")
    print(f"  true {NEGATIVE}: {cm[0, 0]:>5} {cm[0, 1]:>5}")
    print(f"  true {POSITIVE}: {cm[1, 0]:>5} {cm[1, 1]:>5}")
    save_figure(draw(result.history, cm), args.out)

    min_acc = QUICK_MIN_TEST_ACC if args.quick else MIN_TEST_ACC
    counted = int(cm.sum()) == len(test[0]) and int(cm[1].sum()) == int(test[1].sum())
    ok = acc >= min_acc and counted
    if acc < min_acc:
        print(f"check failed: test accuracy {acc:.4f} below {min_acc}")
    if not counted:
        print("check failed: the confusion matrix does not count every test image once")
    finish(
        f"binary test_acc {acc:.4f} confusion [[{cm[0, 0]} {cm[0, 1]}] [{cm[1, 0]} {cm[1, 1]}]] n_test {len(test[0])}",
        ok,
    )


if __name__ == "__main__":
    run_main(main)
