"""The course's small network: 2 inputs, hidden layers of 3 and 3 units, 1 output, on a circle in a square.

The network is built layer by layer, ``Affine(3) -> sigmoid -> Affine(3) -> sigmoid -> Affine(1)
-> sigmoid``, and summarised with ``fnnet.summary``: its parameters are the weights and biases of
the three Affine layers, ``(2·3 + 3) + (3·3 + 3) + (3·1 + 1) = 9 + 12 + 4 = 25``. Its output is a
probability, so it is trained with the binary cross-entropy on probabilities
(``fnnet.losses.binary_cross_entropy``, the course's and the book's form with a small ``δ`` inside
the log).

The toy problem: points ``x ~ U(-1, 1)²`` labelled 1 inside the circle of radius 0.7 (38% of
them). No straight line separates the classes (the best line only predicts the majority class,
62% accuracy); three hidden units already bound a triangle around the circle, and the second
hidden layer smooths it. The net is trained with Adam (learning rate 0.05, mini-batches of 32) on
500 points for 300 epochs (100 with ``--quick``) and scored on 1,000 fresh points. The data and
the learnt decision region are drawn to a PNG when matplotlib is installed.

The last line is::

    small_network params <p> test_loss <l> test_acc <a>

The exit status is 1 unless ``p`` is 25 and the test accuracy reaches 0.9.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _common import example_parser, finish, run_main, save_figure

from fnnet.layers import Affine, Layer, Sigmoid, serial, summary
from fnnet.losses import binary_cross_entropy
from fnnet.optim import adam
from fnnet.random import Key, key as make_key, split
from fnnet.train import History, evaluate, fit, predict
from fnnet.typing import Array

IN_FEATURES = 2
HIDDEN = (3, 3)
#: Weights and biases of 2->3, 3->3 and 3->1.
EXPECTED_PARAMS = (2 * 3 + 3) + (3 * 3 + 3) + (3 * 1 + 1)
TRAIN_SIZE, TEST_SIZE = 500, 1000
LEARNING_RATE = 0.05
BATCH_SIZE = 32
EPOCHS, QUICK_EPOCHS = 300, 100
RADIUS = 0.7
MIN_TEST_ACC = 0.9


def small_network() -> Layer:
    """The course's 2-3-3-1 network with sigmoid hidden units and a sigmoid output (a probability)."""
    return serial(Affine(HIDDEN[0]), Sigmoid(), Affine(HIDDEN[1]), Sigmoid(), Affine(1), Sigmoid())


def circle_data(key: Key, n: int) -> tuple[Array, Array]:
    """``n`` points of ``U(-1, 1)²``, shape ``(n, 2)``, and targets ``(n, 1)``: 1 inside the circle of radius 0.7."""
    x = key.generator().uniform(-1.0, 1.0, size=(n, IN_FEATURES))
    t = (np.hypot(x[:, 0], x[:, 1]) < RADIUS).astype(np.float32)[:, None]
    return x.astype(np.float32), t


def draw(model: Layer, params: Any, train: tuple[Array, Array], history: History) -> Any:
    """A ``save_figure`` drawer: the predicted probability over the square with the training points; the loss."""

    def make(plt: Any) -> Any:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.3))
        g = np.linspace(-1.0, 1.0, 101, dtype=np.float32)
        gx, gy = np.meshgrid(g, g)
        p = predict(model, params, np.stack([gx.ravel(), gy.ravel()], axis=1))[:, 0].reshape(gx.shape)
        ax1.contourf(gx, gy, p, levels=np.linspace(0, 1, 11), cmap="coolwarm", alpha=0.6)
        ax1.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1)
        ax1.add_patch(plt.Circle((0.0, 0.0), RADIUS, fill=False, linestyle=":", color="0.2"))
        colors = np.where(train[1][:, 0] > 0.5, "red", "blue")
        ax1.scatter(train[0][:, 0], train[0][:, 1], c=colors, s=6)
        ax1.set_title("2-3-3-1 net: P(t=1) and the 0.5 boundary")
        ax1.set_aspect("equal")
        epochs = np.arange(1, len(history.epochs) + 1)
        ax2.plot(epochs, history.metric("loss"), label="training loss")
        ax2.plot(epochs, history.metric("test_loss"), "--", label="test loss")
        ax2.set_xlabel("epochs")
        ax2.set_ylabel("binary cross-entropy")
        ax2.legend()
        fig.tight_layout()
        return fig

    return make


def main(argv: list[str] | None = None) -> None:
    """Build, summarise and train the small network; check its parameter count and accuracy."""
    args = example_parser(__doc__, "course_small_network.png").parse_args(argv)
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    data_key, test_key, train_key = split(make_key(args.seed), 3)
    train, test = circle_data(data_key, TRAIN_SIZE), circle_data(test_key, TEST_SIZE)

    model = small_network()
    s = summary(model, (IN_FEATURES,))
    print(s)
    print(f"parameter count: {s.total_params} (expected {EXPECTED_PARAMS} = (2*3+3) + (3*3+3) + (3*1+1))")
    print(
        f"circle of radius {RADIUS}, {TRAIN_SIZE} training / {TEST_SIZE} test points; "
        f"Adam lr {LEARNING_RATE}, batch {BATCH_SIZE}, {epochs} epochs"
    )

    result = fit(
        model,
        adam(LEARNING_RATE),
        train,
        key=train_key,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        loss=binary_cross_entropy,
        test=test,
        progress="quiet",
    )
    h = result.history
    for e in sorted({1, *range(max(1, epochs // 5), epochs + 1, max(1, epochs // 5))}):
        m = h.epochs[e - 1]
        print(f"epoch {e:>3}: loss {m['loss']:.4f} train_acc {m['train_acc']:.4f} test_acc {m['test_acc']:.4f}")
    final = evaluate(model, result.state.params, test[0], test[1], loss=binary_cross_entropy)
    save_figure(draw(model, result.state.params, train, h), args.out)

    ok_params = s.total_params == EXPECTED_PARAMS
    ok_acc = final["acc"] >= MIN_TEST_ACC
    if not ok_params:
        print(f"check failed: {s.total_params} parameters, expected {EXPECTED_PARAMS}")
    if not ok_acc:
        print(f"check failed: test accuracy {final['acc']:.4f} below {MIN_TEST_ACC}")
    finish(
        f"small_network params {s.total_params} test_loss {final['loss']:.4f} test_acc {final['acc']:.4f}",
        ok_params and ok_acc,
    )


if __name__ == "__main__":
    run_main(main)
