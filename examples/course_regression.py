"""Regression with an identity output and squared error, trained by online, mini-batch and full-batch descent.

The course's regression output layer: the network's last Affine layer is the prediction itself (the
identity output) and the loss is the mean squared error (``fnnet.losses.mean_squared_error``,
whose gradient with respect to the output is ``2 (y - t) / n``). The data are 200 points
``x ~ U(-2, 2)`` with targets ``t = sin(2x) + ε``, ``ε ~ N(0, 0.1²)``; a straight line cannot follow
them (its RMSE is printed), a small MLP ``1 -> 20 -> 20 -> 1`` with tanh hidden units can.

The same net, from the same initial weights (the same key), is trained three ways with plain
gradient descent at the same learning rate 0.05 and for the **same number of epochs** (300), so
each sees every training point equally often:

- online: batch size 1, one update per point (200 updates per epoch, 60,000 in all);
- mini-batch: batches of 16 (13 updates per epoch);
- full batch: the whole set at once (one update per epoch, 300 in all).

The per-epoch training loss and the RMSE on 400 fresh noisy test points (``val_rmse``, the metric
``fit`` reports for a squared-error loss) are drawn next to the fitted curves when matplotlib is
installed. ``--quick`` uses 100 training points and 150 epochs.

The last line is::

    rmse online <a> minibatch <b> fullbatch <c> linear <d> all_below <bound> yes

(test RMSE, 4 decimals). The noise alone gives an RMSE of about 0.1. The exit status is 1 unless
all three nets reach an RMSE below ``bound`` (0.25; 0.35 with ``--quick``) while the best straight
line stays above it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _common import example_parser, finish, run_main, save_figure

from fnnet.losses import mean_squared_error
from fnnet.metrics import rmse
from fnnet.models import mlp
from fnnet.optim import sgd
from fnnet.random import Key, key as make_key, split
from fnnet.train import History, fit, predict
from fnnet.typing import Array

HIDDEN = (20, 20)
LEARNING_RATE = 0.05
NOISE = 0.1
X_RANGE = 2.0
TRAIN_SIZE, QUICK_TRAIN_SIZE = 200, 100
TEST_SIZE = 400
EPOCHS, QUICK_EPOCHS = 300, 150
MINI_BATCH = 16
BOUND, QUICK_BOUND = 0.25, 0.35


def target(x: Array) -> Array:
    """The noise-free function the nets learn: ``sin(2x)``."""
    out: Array = np.sin(2.0 * x)
    return out


def make_data(key: Key, n: int) -> tuple[Array, Array]:
    """``n`` points ``x ~ U(-2, 2)``, shape ``(n, 1)``, with targets ``sin(2x) + N(0, 0.1²)`` of the same shape."""
    rng = key.generator()
    x = rng.uniform(-X_RANGE, X_RANGE, size=(n, 1))
    t = target(x) + NOISE * rng.standard_normal((n, 1))
    return x.astype(np.float32), t.astype(np.float32)


def linear_fit(x: Array, t: Array) -> Array:
    """Least-squares ``(slope, intercept)`` of a straight line through ``(x, t)``."""
    design = np.concatenate([x, np.ones_like(x)], axis=1).astype(np.float64)
    coef: Array = np.linalg.lstsq(design, t.astype(np.float64), rcond=None)[0][:, 0]
    return coef


def draw(
    train: tuple[Array, Array], curves: dict[str, Array], grid: Array, histories: dict[str, History]
) -> Any:
    """A ``save_figure`` drawer: the data and each fitted curve; the training loss per epoch."""

    def make(plt: Any) -> Any:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        ax1.scatter(train[0][:, 0], train[1][:, 0], s=8, color="0.6", label="training data")
        ax1.plot(grid[:, 0], target(grid)[:, 0], "k--", linewidth=1, label="sin(2x)")
        for name, y in curves.items():
            ax1.plot(grid[:, 0], y, label=name)
        ax1.set_xlabel("x")
        ax1.set_ylabel("y")
        ax1.set_title("fits")
        ax1.legend(fontsize=8)
        for name, h in histories.items():
            ax2.plot(np.arange(1, len(h.epochs) + 1), h.metric("loss"), label=name)
        ax2.set_yscale("log")
        ax2.set_xlabel("epochs (the same for all three)")
        ax2.set_ylabel("mean squared error (training)")
        ax2.set_title("loss per epoch")
        ax2.legend()
        fig.tight_layout()
        return fig

    return make


def main(argv: list[str] | None = None) -> None:
    """Train the three ways, draw the fits and the curves, and check the RMSEs."""
    args = example_parser(__doc__, "course_regression.png").parse_args(argv)
    quick = bool(args.quick)
    n, epochs = (QUICK_TRAIN_SIZE, QUICK_EPOCHS) if quick else (TRAIN_SIZE, EPOCHS)
    bound = QUICK_BOUND if quick else BOUND
    data_key, test_key, train_key = split(make_key(args.seed), 3)
    train = make_data(data_key, n)
    test = make_data(test_key, TEST_SIZE)

    slope, intercept = linear_fit(*train)
    linear_rmse = rmse(slope * test[0] + intercept, test[1])
    print(f"{n} training points, {TEST_SIZE} test points; noise std {NOISE}")
    print(f"best straight line y = {slope:.3f} x + {intercept:.3f}: test RMSE {linear_rmse:.4f}")
    print(f"MLP 1-{'-'.join(map(str, HIDDEN))}-1 (tanh), SGD lr {LEARNING_RATE}, {epochs} epochs each")

    model = mlp(HIDDEN, 1, activation="tanh")
    grid = np.linspace(-X_RANGE, X_RANGE, 200, dtype=np.float32)[:, None]
    ways = {"online": 1, "minibatch": MINI_BATCH, "fullbatch": n}
    histories: dict[str, History] = {}
    curves: dict[str, Array] = {}
    results: dict[str, float] = {}
    for name, batch in ways.items():
        result = fit(
            model,
            sgd(LEARNING_RATE),
            train,
            key=train_key,
            epochs=epochs,
            batch_size=batch,
            loss=mean_squared_error,
            val=test,
            eval_train=False,
            progress="quiet",
        )
        histories[name] = result.history
        curves[name] = predict(model, result.state.params, grid)[:, 0]
        results[name] = result.history.metric("val_rmse")[-1]
        updates = int(result.state.step)
        print(
            f"{name:<10} batch {batch:>3}: {updates:>6} updates, final training loss "
            f"{result.history.metric('loss')[-1]:.4f}, test RMSE {results[name]:.4f}"
        )
    save_figure(draw(train, curves, grid, histories), args.out)

    nets_below = all(r < bound for r in results.values())
    ok = nets_below and linear_rmse >= bound
    if not nets_below:
        print(f"check failed: not every net reached a test RMSE below {bound}")
    if linear_rmse < bound:
        print(f"check failed: a straight line already reaches {linear_rmse:.4f} < {bound}")
    finish(
        f"rmse online {results['online']:.4f} minibatch {results['minibatch']:.4f} "
        f"fullbatch {results['fullbatch']:.4f} linear {linear_rmse:.4f} all_below {bound} {'yes' if ok else 'no'}",
        ok,
    )


if __name__ == "__main__":
    run_main(main)
