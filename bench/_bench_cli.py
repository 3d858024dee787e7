"""Argument types and the entry point shared by the benchmark scripts (not part of the fnnet package).

The scripts import this file as ``from _bench_cli import ...``: ``python bench/<name>.py`` puts the
script's own directory first on ``sys.path``. It imports nothing but the standard library, so
``torch_reference.py`` and ``torch_seq2seq.py`` can use it from a virtual environment without fnnet.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    """An ``argparse`` type: an integer of at least ``low``; ``what`` names it in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


#: An ``argparse`` type: an integer of at least 1 (a count of repeats, steps, epochs, a size).
positive_int = _int_at_least(1, "a positive integer")
#: An ``argparse`` type: an integer of at least 0.
nonnegative_int = _int_at_least(0, "an integer >= 0")


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number above 0 (a learning rate)."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """An ``argparse`` type: a finite number of at least 0 (a weight decay, a pause in seconds)."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """An ``argparse`` type: a number in [0, 1) (a drop rate, a probability of erasing)."""
    value = _finite(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """An ``argparse`` type: a number in [0, 1] (an accuracy to reach)."""
    value = _finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def python_executable(text: str) -> str:
    """An ``argparse`` type: a Python interpreter that exists and can be executed (``--torch``)."""
    if not (os.path.isfile(text) and os.access(text, os.X_OK)):
        raise argparse.ArgumentTypeError(f"{text!r} is not an executable file (the python of a venv with torch)")
    return text


#: The data sets ``fnnet.datasets.load_mnist`` knows by name.
MNIST_NAMES = ("mnist-small", "mnist", "fashion-mnist")


def mnist_data(text: str) -> str:
    """An ``argparse`` type: a name in :data:`MNIST_NAMES` or an existing directory of IDX files."""
    if text not in MNIST_NAMES and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a data set ({', '.join(MNIST_NAMES)}) nor a directory")
    return text


def run_main(main: Callable[[], int | None]) -> None:
    """Run a benchmark's ``main`` and exit with the status it returns (0 for ``None``).

    Ctrl-C exits with status 130 after one line, without a traceback; a missing data file or
    directory (``OSError``) exits with status 1 after ``error: <reason>``.
    """
    try:
        status = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(status)
