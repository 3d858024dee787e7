"""Section 6.3.2: training with and without Batch Normalization over a range of weight scales.

As the book's ``batch_norm_test.py``: the first 1,000 training images (of ``mnist-small``), a ReLU
network with five hidden layers of 100 units, plain SGD with learning rate 0.01, mini-batches of
100 and 20 epochs, for 16 initial weight scales ``w`` from 1 down to 1e-4 (weights N(0, w²)). For
each scale the same net is trained twice: plain, and with BatchNorm after every hidden Affine
(``mlp(..., batchnorm=True)``). Both start from the same root key and see the same mini-batches;
their weight draws differ, since the BatchNorm net has more layers to split the key over (the book
draws independent weights for the two nets too).

As in the book, the accuracy on the 1,000 training images is measured after every epoch; the
curves of each scale are drawn to a PNG (solid: BatchNorm, dashed: plain) when matplotlib is
installed. ``--quick`` uses 4 scales (1, 0.1, 0.01, 0.001) and 8 epochs.

The last line is::

    bn_better <k>/<n> scales mean_final_train_acc bn <a> plain <b>

where ``k`` counts the scales at which the BatchNorm net's final training accuracy is higher than
the plain net's, and ``a``, ``b`` are the final accuracies averaged over the scales (4 decimals).
The exit status is 1 unless BatchNorm wins at more than half of the scales.

Where the book's plain net at the largest scales overflows and silently trains on NaN (its curve
sits at chance level), ``fnnet.train.fit`` stops with ``NonFiniteLossError``. Such a run is
reported as diverged, with the training accuracy of its last parameters whose loss was finite.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from _common import example_parser, finish, run_main, save_figure

from fnnet.datasets import load_mnist
from fnnet.initializers import Normal
from fnnet.models import mlp
from fnnet.optim import sgd
from fnnet.random import fold_in, key as make_key
from fnnet.random import Key
from fnnet.train import NonFiniteLossError, evaluate, fit

TRAIN_SIZE = 1000
HIDDEN = (100,) * 5
LEARNING_RATE = 0.01
BATCH_SIZE = 100
EPOCHS, QUICK_EPOCHS = 20, 8
#: The book's scales: 16 values evenly spaced in log10 from 1 to 1e-4.
SCALES = tuple(float(w) for w in np.logspace(0, -4, num=16))
QUICK_SCALES = (1.0, 0.1, 0.01, 0.001)


class Run(NamedTuple):
    """One training run: training accuracy per epoch, the final accuracy, and where it diverged."""

    curve: list[float]
    final_acc: float
    diverged_at: int | None  # the step whose loss was not finite, or None


def train_run(scale: float, batchnorm: bool, data: tuple[Any, Any], key: Key, epochs: int) -> Run:
    """Train the 5-hidden-layer net with initial weights N(0, scale²), measuring training accuracy.

    A run whose loss overflows (the plain net at the largest scales) stops there: its final
    accuracy is that of the last parameters with a finite loss.
    """
    model = mlp(HIDDEN, 10, activation="relu", w_init=Normal(scale), batchnorm=batchnorm)
    # an overflow makes the loss non-finite; fit detects that and it is reported, not warned about
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            history = fit(
                model, sgd(LEARNING_RATE), data, key=key, epochs=epochs, batch_size=BATCH_SIZE, progress="quiet"
            ).history
        except NonFiniteLossError as e:
            curve = e.history.metric("train_acc") if e.history is not None else []
            acc = evaluate(model, e.state.params, data[0], data[1], state=e.state.model_state)["acc"]
            return Run(curve, acc, e.step)
    curve = history.metric("train_acc")
    return Run(curve, curve[-1], None)


def draw(runs: dict[float, tuple[Run, Run]]) -> Any:
    """A ``save_figure`` drawer: one panel of training accuracy per weight scale (x: a diverged run)."""

    def make(plt: Any) -> Any:
        cols = 4
        rows = -(-len(runs) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), sharex=True, sharey=True, squeeze=False)
        for ax, (scale, pair) in zip(axes.flat, runs.items()):
            for run, style, label in zip(pair, ("-", "--"), ("BatchNorm", "plain")):
                line = ax.plot(np.arange(1, len(run.curve) + 1), run.curve, style, label=label)[0]
                if run.diverged_at is not None:
                    ax.plot([len(run.curve) + 1], [run.final_acc], "x", color=line.get_color())
            ax.set_title(f"w = {scale:.2g}", fontsize=9)
            ax.set_ylim(0, 1.0)
        for ax in axes.flat[len(runs) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=8, loc="lower right")
        fig.supxlabel("epochs")
        fig.supylabel("training accuracy")
        fig.tight_layout()
        return fig

    return make


def _show(run: Run) -> str:
    note = f" (diverged at step {run.diverged_at})" if run.diverged_at is not None else ""
    return f"{run.final_acc:.4f}{note}"


def main(argv: list[str] | None = None) -> None:
    """Train both nets at every scale, print the final accuracies, draw and check them."""
    args = example_parser(__doc__, "ch06_batch_norm_test.png").parse_args(argv)
    scales, epochs = (QUICK_SCALES, QUICK_EPOCHS) if args.quick else (SCALES, EPOCHS)
    (x, t), _ = load_mnist("mnist-small")
    data = (x[:TRAIN_SIZE], t[:TRAIN_SIZE])
    root = make_key(args.seed)
    print(f"{TRAIN_SIZE} training images, 784-{'-'.join(map(str, HIDDEN))}-10 ReLU, SGD lr {LEARNING_RATE}, {epochs} epochs")
    print("final training accuracy:")
    print(f"{'weight scale':>12}  {'BatchNorm':<10} plain")
    runs: dict[float, tuple[Run, Run]] = {}
    for i, scale in enumerate(scales):
        key = fold_in(root, i)
        bn = train_run(scale, True, data, key, epochs)
        plain = train_run(scale, False, data, key, epochs)
        runs[scale] = (bn, plain)
        print(f"{scale:>12.3g}  {_show(bn):<10} {_show(plain)}")
    save_figure(draw(runs), args.out)

    final_bn = [bn.final_acc for bn, _ in runs.values()]
    final_plain = [plain.final_acc for _, plain in runs.values()]
    wins = sum(b > p for b, p in zip(final_bn, final_plain))
    ok = wins > len(scales) / 2
    if not ok:
        print("check failed: BatchNorm did not win at more than half of the scales")
    finish(
        f"bn_better {wins}/{len(scales)} scales mean_final_train_acc bn {np.mean(final_bn):.4f} "
        f"plain {np.mean(final_plain):.4f}",
        ok,
    )


if __name__ == "__main__":
    run_main(main)
