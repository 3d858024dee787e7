"""Chapter 2: logic gates as perceptrons, and XOR as a two-layer perceptron.

A perceptron fires when its weighted sum passes the threshold: ``y = step(x @ w + b)``. With the
book's weights and biases

    AND:  w = (0.5, 0.5),   b = -0.7
    NAND: w = (-0.5, -0.5), b = 0.7
    OR:   w = (0.5, 0.5),   b = -0.2

one perceptron draws one straight line through the input plane, which is enough for AND, NAND and
OR but not for XOR. Stacking two layers is: ``XOR(x) = AND(NAND(x), OR(x))``. Here the first layer
is one affine map with two output units (the NAND and OR weights side by side), the second the AND
perceptron, both evaluated on the whole truth table at once.

Run: ``python examples/ch02_perceptron.py``. It prints the four truth tables; the last line is
``perceptrons ok`` when every gate matches its Boolean definition, and the exit status is non-zero
otherwise (after a line naming the gate that failed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import numpy as np

from _common import run_main
from fnnet.typing import Array
from fnnet.functions import step_function
from fnnet.layers.core import Affine, AffineParams

#: The four input pairs (x1, x2), one per row.
INPUTS = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float64)

#: The book's weights and biases for each single-layer gate.
GATES: dict[str, AffineParams] = {
    "AND": AffineParams(np.array([[0.5], [0.5]]), np.array([-0.7])),
    "NAND": AffineParams(np.array([[-0.5], [-0.5]]), np.array([0.7])),
    "OR": AffineParams(np.array([[0.5], [0.5]]), np.array([-0.2])),
}

#: The Boolean definitions the perceptrons must reproduce.
TRUTH: dict[str, Callable[[bool, bool], bool]] = {
    "AND": lambda a, b: a and b,
    "NAND": lambda a, b: not (a and b),
    "OR": lambda a, b: a or b,
    "XOR": lambda a, b: a != b,
}

def perceptron(params: AffineParams, x: Array) -> Array:
    """Fire where ``x @ w + b > 0``: an :class:`~fnnet.layers.core.Affine` map, then ``step_function``.

    Args:
        params: ``w`` of shape ``(2, units)`` and ``b`` of shape ``(units,)``.
        x: inputs of shape ``(N, 2)``.
    Returns:
        ``(N, units)`` array of 0.0 / 1.0.
    """
    units = params.b.shape[0]
    return step_function(Affine(units).apply(params, x))


def xor(x: Array) -> Array:
    """Two layers: NAND and OR side by side on ``x`` of shape ``(N, 2)``, then AND; returns ``(N, 1)``."""
    nand, or_ = GATES["NAND"], GATES["OR"]
    hidden = AffineParams(np.concatenate([nand.w, or_.w], axis=1), np.concatenate([nand.b, or_.b]))
    s = perceptron(hidden, x)  # s[:, 0] = NAND(x), s[:, 1] = OR(x)
    return perceptron(GATES["AND"], s)


def truth_table(name: str, y: Array) -> list[str]:
    """The rows ``x1 x2 | y`` of gate ``name`` with outputs ``y`` of shape ``(4, 1)``."""
    rows = [f"{name}", " x1 x2 | y"]
    rows += [f"  {int(a)}  {int(b)} | {int(out)}" for (a, b), out in zip(INPUTS, y[:, 0])]
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Evaluate every gate on the truth table, print it and check it against Boolean logic."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None).parse_args(argv)
    outputs = {name: perceptron(params, INPUTS) for name, params in GATES.items()}
    outputs["XOR"] = xor(INPUTS)
    failed = []
    for name, y in outputs.items():
        print("\n".join(truth_table(name, y)))
        expected = np.array([[float(TRUTH[name](bool(a), bool(b)))] for a, b in INPUTS])
        if y.shape != expected.shape or not np.array_equal(y, expected):
            failed.append(name)
    if failed:
        print(f"perceptrons FAILED: {', '.join(failed)}")
        sys.exit(1)
    print("perceptrons ok")


if __name__ == "__main__":
    run_main(main)
