"""Chapter 4: train the book's two-layer net with mini-batch SGD, after timing numerical gradients.

The net is the book's chapter 4 ``TwoLayerNet``: ``Affine(50) -> sigmoid -> Affine(10)`` with
weights drawn from N(0, 0.01²), zero biases and a softmax cross-entropy loss; here
``fnnet.models.mlp((50,), activation="sigmoid", w_init=Normal(0.01))``. (``fnnet.models.two_layer_net``
is the chapter 5 version with ReLU.)

Part 1 shows why chapter 4 already trains with a backprop ``gradient`` instead of its
``numerical_gradient``. It times ONE numerical gradient (``fnnet.numerical_gradient``: two forward
passes per parameter) and ONE backprop gradient (forward + backward, the mean of many repetitions,
since one pass is too short to time) of the same net on the same 3 training images, in float64,
and prints the ratio. To keep this part to about a second the timed net has 10 hidden units
(``--grad-hidden``; the book's 50 take about five times longer and give a larger ratio). The two
gradients must also agree (max relative difference below 1e-6), or the timing would compare
different things; the smooth sigmoid keeps central differences exact to that level (a ReLU kink
within ``h`` of a pre-activation would not).

Part 2 is the book's ``train_neuralnet.py``: SGD with learning rate 0.1, mini-batches of 100 and
10,000 iterations, on ``mnist-small`` (8,000 training / 2,000 test images; the book uses the full
60,000 / 10,000, so its 10,000 iterations are 16.7 epochs and here they are 125 epochs of 80
iterations). Train and test accuracy are printed after every epoch, and the loss and accuracy
curves are drawn to a PNG when matplotlib is installed.

Run: ``python examples/ch04_train_neuralnet.py [--seed S] [--quick] [--out PATH]``. ``--quick``
trains 16 epochs (1,280 iterations). The last line is::

    train_acc <a> test_acc <b> backprop_speedup <x>

(accuracies after the last epoch with 4 decimals, the speed ratio numerical/backprop as an
integer). The exit status is 1 unless the gradients agree, backprop is at least 100 times faster,
and the test accuracy reaches 0.92 (the book ends near 0.95; 0.80 with ``--quick``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from _common import example_parser, finish, positive_int, run_main, save_figure

from fnnet.typing import Array
from fnnet.datasets import load_mnist
from fnnet.layers.base import Layer
from fnnet.losses import softmax_cross_entropy
from fnnet.initializers import Normal
from fnnet.models import mlp
from fnnet.numerical import numerical_gradient
from fnnet.optim import sgd
from fnnet.random import Key, key as make_key, split
from fnnet.train import History, TrainState, fit
from fnnet.tree import tree_astype, tree_leaves

HIDDEN = 50
#: The book's ``weight_init_std``.
WEIGHT_STD = 0.01
LEARNING_RATE = 0.1
BATCH_SIZE = 100
#: 10,000 iterations of 100 images over 8,000 training images.
EPOCHS = 125
QUICK_EPOCHS = 16
#: Part 1: the timed net's hidden size and batch.
GRAD_HIDDEN = 10
GRAD_BATCH = 3
#: How many backprop gradients are averaged for the timing.
BACKPROP_REPEATS = 200
#: Float64 backprop and central differences of a correct backward agree far better than this.
MAX_GRAD_ERROR = 1e-6
#: The numerical gradient costs 2 forward passes per parameter (~16,000 here) against one forward
#: and one backward pass, so the ratio is in the thousands; 100 leaves room for timing noise.
MIN_SPEEDUP = 100.0
MIN_TEST_ACC = 0.92
QUICK_MIN_TEST_ACC = 0.80


def two_layer_net(hidden: int) -> Layer:
    """The book's chapter 4 TwoLayerNet: ``Affine(hidden) -> sigmoid -> Affine(10)``, weights N(0, 0.01²)."""
    return mlp((hidden,), 10, activation="sigmoid", w_init=Normal(WEIGHT_STD))


def loss_of(model: Layer, x: Array, t: Array) -> Any:
    """The training loss as a function of the parameters: ``params -> softmax_cross_entropy(model(x), t)``."""
    return lambda params: softmax_cross_entropy(model.apply(params, x), t)[0]


def backprop_gradient(model: Layer, params: Any, x: Array, t: Array) -> Any:
    """One backpropagation gradient: forward, loss gradient, backward."""
    y, _, cache = model.forward(params, None, x)
    _, dy = softmax_cross_entropy(y, t)
    return model.backward(params, cache, dy)[1]


def time_gradients(key: Key, x: Array, t: Array, hidden: int) -> tuple[float, float, float]:
    """Time one numerical and one backprop gradient of a 784-``hidden``-10 net on ``(x, t)``.

    Returns:
        ``(numerical seconds, backprop seconds, max relative difference of the two gradients)``.
    """
    model = two_layer_net(hidden)
    params = tree_astype(model.init(key, (x.shape[1],))[0], np.float64)
    t0 = time.perf_counter()
    numeric = numerical_gradient(loss_of(model, x, t), params)
    t_numeric = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(BACKPROP_REPEATS):
        analytic = backprop_gradient(model, params, x, t)
    t_backprop = (time.perf_counter() - t0) / BACKPROP_REPEATS
    error = max(
        float(np.abs(a - n).max() / max(np.abs(a).max(), np.abs(n).max(), 1e-12))
        for a, n in zip(tree_leaves(analytic), tree_leaves(numeric))
    )
    return t_numeric, t_backprop, error


def draw(history: History) -> Any:
    """A ``save_figure`` drawer: loss per iteration and train/test accuracy per epoch."""

    def make(plt: Any) -> Any:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        ax1.plot(np.arange(1, len(history.step_loss) + 1), history.step_loss, linewidth=0.7)
        ax1.set_xlabel("iterations")
        ax1.set_ylabel("loss")
        ax1.set_title("training loss")
        epochs = np.arange(1, len(history.epochs) + 1)
        ax2.plot(epochs, history.metric("train_acc"), label="train acc")
        ax2.plot(epochs, history.metric("test_acc"), "--", label="test acc")
        ax2.set_xlabel("epochs")
        ax2.set_ylabel("accuracy")
        ax2.set_ylim(0, 1.0)
        ax2.legend(loc="lower right")
        ax2.set_title("accuracy")
        return fig

    return make


def main(argv: list[str] | None = None) -> None:
    """Time the gradients, train the two-layer net, draw the curves and check the results."""
    parser = example_parser(__doc__, "ch04_train_neuralnet.png")
    parser.add_argument("--grad-hidden", type=positive_int, default=GRAD_HIDDEN, help="hidden units of the timed net")
    args = parser.parse_args(argv)
    grad_key, train_key = split(make_key(args.seed), 2)
    (x, t), (x_test, t_test) = load_mnist("mnist-small")

    xg, tg = x[:GRAD_BATCH].astype(np.float64), t[:GRAD_BATCH]
    t_num, t_back, grad_error = time_gradients(grad_key, xg, tg, args.grad_hidden)
    speedup = t_num / t_back
    n_params = (x.shape[1] + 1) * args.grad_hidden + (args.grad_hidden + 1) * 10
    print(f"gradient of a 784-{args.grad_hidden}-10 net ({n_params} parameters) on {GRAD_BATCH} images, float64:")
    print(f"  numerical {t_num:.3f} s, backprop {t_back * 1e6:.1f} us, max relative difference {grad_error:.2e}")
    print(f"  backprop is {speedup:.0f} times faster")

    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    print(f"training 784-{HIDDEN}-10 (sigmoid) with SGD lr {LEARNING_RATE}, batch {BATCH_SIZE}, {epochs} epochs of {len(x)}")

    def report(_state: TrainState, history: History) -> None:
        m = history.epochs[-1]
        print(f"epoch {len(history.epochs):>2}: train_acc {m['train_acc']:.4f} test_acc {m['test_acc']:.4f}")

    result = fit(
        two_layer_net(HIDDEN),
        sgd(LEARNING_RATE),
        (x, t),
        key=train_key,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        test=(x_test, t_test),
        progress="quiet",
        on_epoch=report,
    )
    history = result.history
    save_figure(draw(history), args.out)

    train_acc, test_acc = history.metric("train_acc")[-1], history.metric("test_acc")[-1]
    min_acc = QUICK_MIN_TEST_ACC if args.quick else MIN_TEST_ACC
    checks = {
        f"gradients agree (max relative difference {grad_error:.2e} <= {MAX_GRAD_ERROR})": grad_error <= MAX_GRAD_ERROR,
        f"backprop at least {MIN_SPEEDUP:.0f} times faster": speedup >= MIN_SPEEDUP,
        f"test accuracy at least {min_acc}": test_acc >= min_acc,
    }
    for what, ok in checks.items():
        if not ok:
            print(f"check failed: {what}")
    finish(f"train_acc {train_acc:.4f} test_acc {test_acc:.4f} backprop_speedup {speedup:.0f}", all(checks.values()))


if __name__ == "__main__":
    run_main(main)
