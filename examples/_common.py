"""Helpers shared by the training examples of chapters 4 and 6 (not part of the fnnet package).

The examples import this file as ``from _common import ...``: ``python examples/<name>.py`` puts the
script's own directory first on ``sys.path``, so this works from any working directory and without
a development install. (Importing it as ``examples._common`` would make mypy see this file under
two module names.)

What is here: the command line every training example shares (``--seed``, ``--quick``, ``--out``)
and argument types that refuse bad sizes, data names and unwritable outputs before any work,
``run_main`` (Ctrl-C and missing files end in one line), optional matplotlib figures written
atomically to PNG, a moving average for noisy loss curves, training
several variants of a model on the very same mini-batches (sections 6.1 and 6.2), and the
overfitting set-up of section 6.4 (300 training images, a 7-layer net, plain SGD).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fnnet.errors import FormatError
from fnnet.typing import Array
from fnnet.datasets import batches, load_mnist
from fnnet.layers.base import Layer
from fnnet.models import mlp
from fnnet.optim import GradientTransformation, sgd
from fnnet.random import Key, fold_in, split
from fnnet.train import History, fit, init_train_state, make_train_step

#: Figures go here by default (the directory is git-ignored).
RUNS_DIR = Path("runs")
#: MNIST images are 28 x 28 pixels, flattened.
IN_FEATURES = 28 * 28
#: Loss of a classifier that gives all ten classes the same probability: ln 10.
CHANCE_LOSS = math.log(10)


# --------------------------------------------------------------------------------------------
# Command line, figures, the last line
# --------------------------------------------------------------------------------------------


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


#: An ``argparse`` type: an integer of at least 1 (a size, a count of epochs or images).
positive_int = _int_at_least(1, "a positive integer")
#: An ``argparse`` type: an integer of at least 0.
nonnegative_int = _int_at_least(0, "an integer >= 0")


def seed_int(text: str) -> int:
    """An ``argparse`` type: a seed for :func:`fnnet.random.key`, an integer in ``[0, 2**128)``
    (refused as a usage error rather than a traceback from ``key``)."""
    value = nonnegative_int(text)
    if value >= 2**128:
        raise argparse.ArgumentTypeError(f"expected a seed below 2**128, got {text!r}")
    return value


def output_path(text: str) -> Path:
    """An ``argparse`` type: a file path that can be written (checked before any work is done).

    The path must not be a directory, and its nearest existing ancestor must be a writable
    directory (missing parents are created when the file is written).
    """
    path = Path(text)
    if text == "" or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file name")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: directory {parent} is not writable")
    return path


#: The data sets :func:`fnnet.datasets.load_mnist` knows by name.
MNIST_NAMES = ("mnist-small", "mnist", "fashion-mnist")


def mnist_data(text: str) -> str:
    """An ``argparse`` type: a name in :data:`MNIST_NAMES` or an existing directory of IDX files."""
    if text not in MNIST_NAMES and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a data set ({', '.join(MNIST_NAMES)}) nor a directory")
    return text


#: Figure formats the examples write (matplotlib picks the writer from the suffix; none is PNG).
FIGURE_SUFFIXES = ("", ".png", ".pdf", ".svg", ".jpg", ".jpeg")


def figure_path(text: str) -> Path:
    """An ``argparse`` type: a writable :func:`output_path` for a figure (``.png``, or ``.pdf``,
    ``.svg``, ``.jpg``)."""
    path = output_path(text)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r}: a figure must end in .png (or .pdf, .svg, .jpg)")
    return path


def example_parser(doc: str | None, figure: str) -> argparse.ArgumentParser:
    """The options every training example takes.

    Args:
        doc: the example's module docstring; its first line describes the command.
        figure: the file name of the default figure, written under ``runs/``.
    Returns:
        A parser with ``--seed`` (int, default 0: the one root key of the run), ``--quick`` (a
        smaller run that takes seconds) and ``--out`` (the PNG path, checked to be writable).
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the one root key (default 0)")
    parser.add_argument("--quick", action="store_true", help="a much smaller run (seconds), e.g. for tests")
    parser.add_argument(
        "--out", type=figure_path, default=RUNS_DIR / figure, help=f"PNG figure to write (default {RUNS_DIR / figure})"
    )
    return parser


def save_figure(draw: Callable[[Any], Any], out: Path) -> bool:
    """Draw a figure with matplotlib and write it as a PNG; print where, or why not.

    Args:
        draw: called with ``matplotlib.pyplot`` (Agg backend); returns the figure to save.
        out: the PNG path (its suffix picks another format); missing parent directories are
            created and the file is replaced atomically (a temporary file beside it, then a
            rename), so an error or Ctrl-C never leaves half a figure.
    Returns:
        ``True`` if the file was written, ``False`` (after printing a note) without matplotlib.
    """
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no figure (pip install 'fnnet[plot]')")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_figure(plt, draw(plt), out)
    print(f"figure saved to {out}")
    return True


def write_figure(plt: Any, fig: Any, out: Path, dpi: int = 100) -> None:
    """Write the matplotlib figure ``fig`` to ``out`` atomically and close it.

    Missing parent directories are created; the format follows ``out``'s suffix (PNG without one).
    ``out`` is written through a temporary file beside it and a rename, so an error or Ctrl-C
    leaves the old file (or none), never half a figure.
    """
    fmt = out.suffix[1:].lower() or "png"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        except OSError as e:  # name the figure, not the temporary file the user never asked for
            raise OSError(e.errno, f"cannot write {out}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                fig.savefig(f, format=fmt, dpi=dpi)
            os.replace(tmp, out)
        except BaseException:
            os.unlink(tmp)
            raise
    finally:
        plt.close(fig)


def run_main(main: Callable[[], None]) -> None:
    """Run an example's ``main``; turn Ctrl-C and unreadable or unwritable files into one line.

    Ctrl-C exits with status 130 after the line ``interrupted``; a missing or damaged data file
    (``OSError``, :class:`fnnet.errors.FormatError`) exits with status 1 after ``error: <reason>``
    (the reason of a missing data set goes on to say where to get it).
    Output files are written atomically, so neither leaves a half-written one.
    """
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (OSError, FormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def finish(line: str, ok: bool) -> None:
    """Print the example's checkable last line, then exit with status 1 unless ``ok``."""
    print(line)
    if not ok:
        sys.exit(1)


def moving_average(values: Sequence[float] | Array, window: int) -> Array:
    """Means of every ``window`` consecutive values: shape ``(len(values) - window + 1,)``.

    ``window`` is clipped to ``[1, len(values)]``; an empty input gives an empty array.
    """
    v = np.asarray(values, dtype=np.float64)
    w = max(1, min(window, len(v)))
    if len(v) == 0:
        return v
    c = np.concatenate([[0.0], np.cumsum(v)])
    out: Array = (c[w:] - c[:-w]) / w
    return out


# --------------------------------------------------------------------------------------------
# Several variants on the same mini-batches (sections 6.1.8 and 6.2.4)
# --------------------------------------------------------------------------------------------


class Variant(NamedTuple):
    """One curve of a comparison: a name, a model and its optimizer."""

    name: str
    model: Layer
    optimizer: GradientTransformation


def endless_batches(key: Key, x: Array, t: Array, batch_size: int) -> Iterator[tuple[Array, Array]]:
    """Full mini-batches of shuffled epochs, one after another (epoch ``e`` shuffled by ``fold_in(key, e)``)."""
    epoch = 0
    while True:
        yield from batches(fold_in(key, epoch), x, t, batch_size, drop_last=True)
        epoch += 1


def train_variants(
    variants: Sequence[Variant],
    train: tuple[Array, Array],
    *,
    key: Key,
    steps: int,
    batch_size: int,
    report_every: int,
) -> dict[str, Array]:
    """Train every variant for ``steps`` steps on the same mini-batches from the same initial key.

    Every model is initialised from the same key (equal layer lists then get equal weight draws)
    and sees the same sequence of batches, so the curves differ only by what the variants change.
    The losses are printed as a table every ``report_every`` steps.

    Args:
        variants: what to compare.
        train: ``(x, t)`` with ``x`` of shape ``(N, 784)`` and labels ``(N,)``.
        key: the key of the comparison (split into an init key and a shuffling key).
        steps, batch_size: the length of training and the mini-batch size.
        report_every: print the losses every this many steps.
    Returns:
        ``{name: losses}`` with the loss of every step, shape ``(steps,)``.
    """
    init_key, shuffle_key, step_key = split(key, 3)
    in_shape = tuple(train[0].shape[1:])
    states = [init_train_state(v.model, v.optimizer, init_key, in_shape) for v in variants]
    step_fns = [make_train_step(v.model, optimizer=v.optimizer) for v in variants]
    losses = np.zeros((len(variants), steps))
    print("step  " + " ".join(f"{v.name:>10}" for v in variants))
    data = endless_batches(shuffle_key, train[0], train[1], batch_size)
    for s in range(steps):
        xb, tb = next(data)
        k = fold_in(step_key, s)
        for i, fn in enumerate(step_fns):
            states[i], m = fn(states[i], xb, tb, k)
            losses[i, s] = m.loss
        if (s + 1) % report_every == 0 or s == 0:
            print(f"{s + 1:<5} " + " ".join(f"{loss:>10.4f}" for loss in losses[:, s]))
    return {v.name: losses[i] for i, v in enumerate(variants)}


def draw_loss_curves(losses: dict[str, Array], window: int, title: str) -> Callable[[Any], Any]:
    """A ``save_figure`` drawer: the moving average (over ``window`` steps) of each loss curve."""

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, curve in losses.items():
            smooth = moving_average(curve, window)
            ax.plot(np.arange(len(smooth)) + len(curve) - len(smooth) + 1, smooth, label=name)
        ax.set_xlabel("iterations")
        ax.set_ylabel(f"loss (mean of {window} steps)")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.legend()
        return fig

    return draw


# --------------------------------------------------------------------------------------------
# Overfitting (section 6.4)
# --------------------------------------------------------------------------------------------

#: The book's overfitting set-up: 300 training images, 6 hidden layers of 100 ReLU units (7 Affine
#: layers in all, He initialisation), plain SGD with learning rate 0.01, mini-batches of 100.
OVERFIT_TRAIN_SIZE = 300
OVERFIT_HIDDEN = (100,) * 6
OVERFIT_LR = 0.01
OVERFIT_BATCH = 100
#: The train-test gap is averaged over this many final epochs (single epochs are noisy).
GAP_EPOCHS = 10


def overfit_data() -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """The first 300 images of ``mnist-small``'s training part, and its whole 2,000-image test part."""
    (x, t), test = load_mnist("mnist-small")
    return (x[:OVERFIT_TRAIN_SIZE], t[:OVERFIT_TRAIN_SIZE]), test


def overfit_model(dropout: float = 0.0) -> Layer:
    """The 7-layer ReLU net of section 6.4 (with Dropout after each hidden ReLU if ``dropout > 0``)."""
    return mlp(OVERFIT_HIDDEN, 10, activation="relu", dropout=dropout)


def train_overfit(
    name: str,
    model: Layer,
    data: tuple[tuple[Array, Array], tuple[Array, Array]],
    *,
    key: Key,
    epochs: int,
    weight_decay: float = 0.0,
    report_every: int = 10,
) -> History:
    """Train one overfitting run with SGD, measuring train and test accuracy after every epoch.

    Args:
        name: printed in the progress lines.
        model: the network; data: ``((x_train, t_train), (x_test, t_test))``.
        key: the run's key; epochs: how long.
        weight_decay: the book's coupled L2 coefficient λ (0 for none).
        report_every: print the accuracies every this many epochs.
    Returns:
        The :class:`fnnet.train.History` with ``train_acc`` and ``test_acc`` per epoch.
    """
    train, test = data

    def report(_state: Any, history: History) -> None:
        e = len(history.epochs)
        if e % report_every == 0 or e == 1 or e == epochs:
            m = history.epochs[-1]
            print(f"{name:<10} epoch {e:>4}: train_acc {m['train_acc']:.4f} test_acc {m['test_acc']:.4f}")

    result = fit(
        model,
        sgd(OVERFIT_LR),
        train,
        key=key,
        epochs=epochs,
        batch_size=OVERFIT_BATCH,
        test=test,
        weight_decay=weight_decay,
        progress="quiet",
        on_epoch=report,
    )
    return result.history


def final_gap(history: History) -> float:
    """Train accuracy minus test accuracy, averaged over the last ``GAP_EPOCHS`` epochs."""
    train = history.metric("train_acc")[-GAP_EPOCHS:]
    test = history.metric("test_acc")[-GAP_EPOCHS:]
    return float(np.mean(train) - np.mean(test))


def final_mean(history: History, metric: str) -> float:
    """``metric`` averaged over the last ``GAP_EPOCHS`` epochs."""
    return float(np.mean(history.metric(metric)[-GAP_EPOCHS:]))


def draw_overfit(histories: dict[str, History], title: str) -> Callable[[Any], Any]:
    """A ``save_figure`` drawer: train (solid) and test (dashed) accuracy per epoch, one panel per run."""

    def draw(plt: Any) -> Any:
        fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 4), sharey=True)
        for ax, (name, h) in zip(np.atleast_1d(axes), histories.items()):
            epochs = np.arange(1, len(h.epochs) + 1)
            ax.plot(epochs, h.metric("train_acc"), label="train")
            ax.plot(epochs, h.metric("test_acc"), "--", label="test")
            ax.set_title(f"{title}: {name}")
            ax.set_xlabel("epochs")
            ax.set_ylabel("accuracy")
            ax.set_ylim(0, 1.02)
            ax.legend(loc="lower right")
        return fig

    return draw
