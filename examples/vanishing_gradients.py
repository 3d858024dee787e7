"""Vanishing gradients: a 10-layer sigmoid net with N(0, 1) weights against a ReLU net with He initialisation.

Backpropagation multiplies the gradient, layer by layer from the output down, by each activation's
derivative and each layer's transposed weight matrix. The sigmoid's derivative
``σ'(a) = σ(a)(1 - σ(a))`` is at most 0.25, and with weights drawn from N(0, 1) the pre-activations
of 100-unit layers have standard deviations of several units, so most units saturate and ``σ'`` is
far smaller still. The same large weights multiply the gradient back up (a 100 x 100 N(0, 1) matrix
scales a vector by about 10), so the net effect per layer is a shrinking by a modest factor, which
compounds over the nine hidden layers: the first layer's gradient ends up several times smaller
than the last layer's. ReLU's derivative is 1 on the units it passes and He initialisation
(``std = sqrt(2 / fan_in)``) keeps the signal's scale from layer to layer, so the gradient does not
shrink on its way down (the first layer's is even larger, as it has 784 inputs).

Both nets have ten Affine layers, ``784 -> 100 x 9 -> 10`` (``fnnet.models.mlp``), and are trained
with SGD (learning rate 0.01, mini-batches of 100) on ``mnist-small`` for 20 steps (10 with
``--quick``), with ``fit(..., grad_norms=True)``: ``History.grad_norms`` holds, for every step, the L2
norm of the gradient of each layer's parameters. The norms of the ten Affine layers are printed
for the first step and drawn (log scale, per layer, for the first and the last recorded step) to a
PNG when matplotlib is installed. The ratio ``|grad layer 1| / |grad layer 10|`` is averaged (as a
geometric mean) over the recorded steps.

The last line is::

    grad_ratio first/last sigmoid <r_s> relu <r_r> factor <f> sigmoid_vanishes yes

(the ratios in ``%.3e`` form, ``f = r_r / r_s`` with one decimal). The exit status is 1 unless the
sigmoid net's gradient shrinks towards the input (``r_s < 1``) while the ReLU net's does not
(``r_r >= 1``), and ``r_s`` is at least 4 times smaller than ``r_r``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from _common import example_parser, finish, run_main, save_figure

from fnnet.datasets import load_mnist
from fnnet.initializers import Normal
from fnnet.layers import Affine, Serial
from fnnet.models import mlp
from fnnet.optim import sgd
from fnnet.random import key as make_key
from fnnet.train import fit
from fnnet.typing import Array

DEPTH = 10
WIDTH = 100
LEARNING_RATE = 0.01
BATCH_SIZE = 100
STEPS, QUICK_STEPS = 20, 10
#: The sigmoid net's first-to-last ratio must be at least this many times smaller than ReLU's.
MIN_FACTOR = 4.0


def nets() -> dict[str, Serial]:
    """The two 10-Affine-layer nets: sigmoid with N(0, 1) weights, ReLU with He weights."""
    hidden = (WIDTH,) * (DEPTH - 1)
    return {
        "sigmoid N(0,1)": mlp(hidden, 10, activation="sigmoid", w_init=Normal(1.0)),
        "ReLU He": mlp(hidden, 10, activation="relu"),
    }


def affine_norms(model: Serial, grad_norms: tuple[tuple[float, ...], ...]) -> Array:
    """The recorded gradient norms of ``model``'s Affine layers only: shape ``(steps, DEPTH)``."""
    at = [i for i, layer in enumerate(model.layers) if isinstance(layer, Affine)]
    return np.array([[step[i] for i in at] for step in grad_norms], dtype=np.float64)


def mean_ratio(norms: Array) -> float:
    """The geometric mean over steps of the first Affine layer's norm over the last one's."""
    return float(np.exp(np.mean(np.log(norms[:, 0]) - np.log(norms[:, -1]))))


def draw(norms: dict[str, Array]) -> Any:
    """A ``save_figure`` drawer: gradient norm per layer, first and last recorded step, per net."""

    def make(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        layers = np.arange(1, DEPTH + 1)
        for (name, n), color in zip(norms.items(), ("tab:red", "tab:blue")):
            ax.plot(layers, n[0], "o-", color=color, label=f"{name}, step 1")
            ax.plot(layers, n[-1], "s--", color=color, alpha=0.6, label=f"{name}, step {len(n)}")
        ax.set_yscale("log")
        ax.set_xticks(layers)
        ax.set_xlabel("Affine layer (1 = next to the input)")
        ax.set_ylabel("gradient L2 norm")
        ax.set_title("per-layer gradient norms, 10-layer nets on MNIST")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    return make


def main(argv: list[str] | None = None) -> None:
    """Record per-layer gradient norms of both nets, print the ratios and check that sigmoid's vanish."""
    args = example_parser(__doc__, "vanishing_gradients.png").parse_args(argv)
    steps = QUICK_STEPS if args.quick else STEPS
    (x, t), _ = load_mnist("mnist-small")
    train = (x[: steps * BATCH_SIZE], t[: steps * BATCH_SIZE])  # one epoch of `steps` full batches
    print(f"784-{WIDTH}x{DEPTH - 1}-10 nets, SGD lr {LEARNING_RATE}, batch {BATCH_SIZE}, {steps} steps")

    norms: dict[str, Array] = {}
    ratios: dict[str, float] = {}
    for name, model in nets().items():
        result = fit(
            model,
            sgd(LEARNING_RATE),
            train,
            key=make_key(args.seed),
            epochs=1,
            batch_size=BATCH_SIZE,
            eval_train=False,
            grad_norms=True,
            progress="quiet",
        )
        norms[name] = affine_norms(model, result.history.grad_norms)
        ratios[name] = mean_ratio(norms[name])
        print(f"{name}: gradient norm per layer at step 1 (layer 1 first):")
        print("  " + " ".join(f"{v:.2e}" for v in norms[name][0]))
        print(f"  layer 1 / layer {DEPTH}: {ratios[name]:.3e} (geometric mean over {len(norms[name])} steps)")
    save_figure(draw(norms), args.out)

    sig, relu = ratios["sigmoid N(0,1)"], ratios["ReLU He"]
    finite = all(math.isfinite(r) and r > 0 for r in (sig, relu))
    factor = relu / sig if finite else float("nan")
    checks = {
        "the sigmoid net's gradient shrinks towards the input (ratio < 1)": finite and sig < 1.0,
        "the ReLU net's gradient does not (ratio >= 1)": finite and relu >= 1.0,
        f"the sigmoid ratio is at least {MIN_FACTOR:.0f} times below the ReLU ratio": factor >= MIN_FACTOR,
    }
    for what, passed in checks.items():
        if not passed:
            print(f"check failed: {what}")
    ok = all(checks.values())
    finish(
        f"grad_ratio first/last sigmoid {sig:.3e} relu {relu:.3e} factor {factor:.1f} "
        f"sigmoid_vanishes {'yes' if ok else 'no'}",
        ok,
    )


if __name__ == "__main__":
    run_main(main)
