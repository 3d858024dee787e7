"""Section 6.2.2-6.2.3: how the initial weight scale shapes the activations of a deep net.

As the book's ``weight_init_activation_histogram.py``: 1,000 random inputs of 100 values (standard
normal) pass through 5 layers of 100 units (``Affine`` with zero bias, then the activation), for
several initial weight distributions:

- sigmoid with weights N(0, 1), N(0, 0.01²) and "Xavier", the book's ``1/sqrt(n)`` standard
  deviation (``fnnet.initializers.LeCunNormal``; Glorot's ``sqrt(2/(n_in + n_out))`` is the same
  here, since every layer has 100 inputs and 100 outputs) — the book's Figures 6-10 to 6-13;
- ReLU with N(0, 0.01²), Xavier and He (``sqrt(2/n)``) — Figure 6-14.

All initialisers draw from the same keys, so the weights of one layer differ only by their scale.
The script prints the standard deviation of each layer's activations (and, for the sigmoid, the
share of activations within 0.1 of 0 or 1) and draws a histogram per layer to a PNG when
matplotlib is installed. ``--quick`` is accepted for uniformity with the other examples and
changes nothing (the whole experiment takes a fraction of a second).

The checks, one per claim of the book:

- sigmoid, std 1: the activations saturate: at least half of them lie within 0.1 of 0 or 1 in
  every layer (gradients vanish there);
- sigmoid, std 0.01: they collapse: their standard deviation stays below 0.05 in every layer
  (values spread uniformly over [0, 1] would have 0.29): the units all say the same thing;
- sigmoid, Xavier: they keep a spread: a standard deviation of at least 0.08 in every layer, with
  less than 10% saturated;
- ReLU: He keeps the spread from layer 1 to layer 5 (the ratio of their standard deviations is
  between 0.5 and 2) while Xavier's shrinks with depth (a smaller ratio than He's).

The last line is::

    std1_saturated <s> std0.01_max_std <a> xavier_min_std <b> relu_std_ratio he <r> xavier <q> checks <ok|failed>

(``s``: the smallest saturated share over the layers; ``a``: the largest standard deviation;
``b``: the smallest; ``r``, ``q``: last-layer over first-layer standard deviation; 4 decimals).
The exit status is 1 unless every check holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _common import example_parser, finish, run_main, save_figure

from fnnet.typing import Array
from fnnet.initializers import HeNormal, Initializer, LeCunNormal, Normal
from fnnet.layers.base import Layer
from fnnet.layers.core import Affine, ReLU, Sigmoid
from fnnet.random import Key, key as make_key, split

N_SAMPLES = 1000
UNITS = 100
LAYERS = 5
BINS = 30
#: A sigmoid output within this distance of 0 or 1 counts as saturated (its slope is below 0.09).
SATURATION_MARGIN = 0.1
MIN_SATURATED_SHARE = 0.5
MAX_COLLAPSED_STD = 0.05
MIN_SPREAD_STD = 0.08
MAX_XAVIER_SATURATED_SHARE = 0.1
#: He keeps the ReLU activations' spread within this factor from the first to the last layer.
HE_RATIO_RANGE = (0.5, 2.0)
#: ReLU histograms show the positive activations (the zeros are about half of all) up to this value.
RELU_HIST_MAX = 2.0

SIGMOID_INITS: dict[str, Initializer] = {"std=1": Normal(1.0), "std=0.01": Normal(0.01), "Xavier": LeCunNormal()}
RELU_INITS: dict[str, Initializer] = {"std=0.01": Normal(0.01), "Xavier": LeCunNormal(), "He": HeNormal()}


def activations(x: Array, init: Initializer, activation: Layer, keys: tuple[Key, ...]) -> list[Array]:
    """The activations of each layer for inputs ``x`` (``(N, UNITS)``); one ``(N, UNITS)`` array per key."""
    out = []
    a = x
    for k in keys:
        layer = Affine(UNITS, w_init=init)
        params, _ = layer.init(k, (a.shape[1],))
        a = activation.apply(None, layer.apply(params, a))
        out.append(a)
    return out


def saturated_share(a: Array) -> float:
    """The share of sigmoid outputs within ``SATURATION_MARGIN`` of 0 or 1."""
    return float(np.mean((a < SATURATION_MARGIN) | (a > 1 - SATURATION_MARGIN)))


def draw(rows: dict[str, list[Array]]) -> Any:
    """A ``save_figure`` drawer: one row of per-layer histograms per (activation, initialisation)."""

    def make(plt: Any) -> Any:
        fig, axes = plt.subplots(len(rows), LAYERS, figsize=(2.4 * LAYERS, 1.9 * len(rows)), squeeze=False)
        for r, (name, acts) in enumerate(rows.items()):
            relu = name.startswith("ReLU")
            for i, a in enumerate(acts):
                ax = axes[r, i]
                values = a[a > 0] if relu else a.ravel()
                ax.hist(values, BINS, range=(0.0, RELU_HIST_MAX if relu else 1.0))
                ax.set_yticks([])
                ax.set_title(f"{name}: layer {i + 1}" if i == 0 else f"layer {i + 1}", fontsize=8)
                ax.tick_params(labelsize=7)
        fig.tight_layout()
        return fig

    return make


def main(argv: list[str] | None = None) -> None:
    """Push random inputs through the 5-layer nets, print the spreads, draw and check them."""
    args = example_parser(__doc__, "ch06_weight_init_activation_histogram.png").parse_args(argv)
    x_key, w_key = split(make_key(args.seed), 2)
    x = x_key.generator().standard_normal((N_SAMPLES, UNITS)).astype(np.float32)
    layer_keys = split(w_key, LAYERS)

    rows: dict[str, list[Array]] = {}
    for act_name, act, inits in (("sigmoid", Sigmoid(), SIGMOID_INITS), ("ReLU", ReLU(), RELU_INITS)):
        for init_name, init in inits.items():
            rows[f"{act_name} {init_name}"] = activations(x, init, act, layer_keys)

    print(f"{N_SAMPLES} inputs through {LAYERS} layers of {UNITS} units")
    header = " ".join(f"{'layer ' + str(i + 1):>8}" for i in range(LAYERS))
    print(f"{'std of the activations':<22} {header}")
    std = {name: [float(a.std()) for a in acts] for name, acts in rows.items()}
    for name, s in std.items():
        print(f"{name:<22} " + " ".join(f"{v:>8.4f}" for v in s))
    print(f"{'saturated share':<22} {header}")
    sat = {name: [saturated_share(a) for a in acts] for name, acts in rows.items() if name.startswith("sigmoid")}
    for name, s in sat.items():
        print(f"{name:<22} " + " ".join(f"{v:>8.4f}" for v in s))
    save_figure(draw(rows), args.out)

    std1_saturated = min(sat["sigmoid std=1"])
    collapsed_std = max(std["sigmoid std=0.01"])
    xavier_std = min(std["sigmoid Xavier"])
    he_ratio = std["ReLU He"][-1] / std["ReLU He"][0]
    xavier_ratio = std["ReLU Xavier"][-1] / std["ReLU Xavier"][0]
    checks = {
        "sigmoid std=1 saturates": std1_saturated >= MIN_SATURATED_SHARE,
        "sigmoid std=0.01 collapses": collapsed_std < MAX_COLLAPSED_STD,
        "sigmoid Xavier keeps a spread": xavier_std >= MIN_SPREAD_STD
        and max(sat["sigmoid Xavier"]) < MAX_XAVIER_SATURATED_SHARE,
        "ReLU He keeps the spread over depth": HE_RATIO_RANGE[0] <= he_ratio <= HE_RATIO_RANGE[1],
        "ReLU Xavier's spread shrinks more than He's": xavier_ratio < he_ratio,
    }
    for what, ok in checks.items():
        if not ok:
            print(f"check failed: {what}")
    ok = all(checks.values())
    finish(
        f"std1_saturated {std1_saturated:.4f} std0.01_max_std {collapsed_std:.4f} xavier_min_std {xavier_std:.4f} "
        f"relu_std_ratio he {he_ratio:.4f} xavier {xavier_ratio:.4f} checks {'ok' if ok else 'failed'}",
        ok,
    )


if __name__ == "__main__":
    run_main(main)
