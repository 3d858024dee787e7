"""The command line: ``fnnet train`` (the main job), ``fnnet evaluate CHECKPOINT`` and ``fnnet export
CHECKPOINT --out model.onnx``.

``python -m fnnet train`` trains the book's two-layer net on the embedded ``mnist-small`` data set
with seed 0, prints progress, and ends with the test accuracy on the whole test set.

Every argument, the data, the model's shapes and the ``--out`` target are checked before training
starts. Every failure is one line ``fnnet: ...`` on stderr (none for a closed stdout, 141) with one of
these exit codes:

====  ========================================================================================
code  meaning
====  ========================================================================================
0     success
1     an unexpected error, i.e. a bug in fnnet: the only failure that prints a Python traceback
2     usage: an unknown or malformed option, a value out of range (``--lr inf``, ``--epochs 0``),
      a bad ``$FNNET_NUM_THREADS``, an ``--out`` that is a file or holds anything other than
      fnnet's outputs, ``fnnet export`` without the onnx package or ``fnnet evaluate --out`` without
      matplotlib; found before any data is read
3     bad input: the data set or checkpoint is missing, unreadable or not what it should be, its
      images do not fit the model (too small for a convolutional net, or another size than the
      checkpoint was trained on), or the checkpoint's parameters are not all finite
4     ``--out`` cannot be written (permissions, a full disk, a read-only or virtual file system);
      tried before training by creating the run's temporary directory, and before ``evaluate``
      or ``export`` read anything by creating and removing a file beside their ``--out``. Also
      standard output, when writing to it fails (a full disk), ``--help`` and ``--version`` too
5     training failed: the loss or the parameters became NaN or infinite (lower ``--lr``), or
      memory ran out (lower ``--batch-size``)
130   interrupted (Ctrl-C, SIGINT): ``--out`` is untouched or complete
141   standard output was closed before the end (``fnnet ... | head -1``); nothing more is printed
143   terminated (SIGTERM), handled as Ctrl-C is: ``--out`` is untouched or complete
====  ========================================================================================

``--out DIR`` is left either untouched or complete. ``DIR`` must be new, empty, or a previous run
(a directory holding only ``checkpoint.npz``, ``metrics.json``, ``learning_curve.png`` and the
``confusion_matrix.png`` that ``fnnet evaluate DIR --out DIR`` draws, which goes with its run). The
outputs are written into a new sibling directory ``.DIR.fnnet-new-PID-XXXXXXXX`` and renamed to
``DIR`` at the end; a previous run is first renamed aside to ``.DIR.fnnet-old-PID-XXXXXXXX`` and
deleted once the new run is in place. SIGINT and SIGTERM are held off from the moment the final
accuracy is printed, while the outputs are written and renamed (about a second), so Ctrl-C either
leaves the previous run (exit 130; SIGTERM: 143) or lets the new one complete (exit 0; 130 or 143
when the signal comes after the renames, which the message says). After a
failure, an interrupt or SIGTERM the temporary directory is removed. A process killed outright
(``kill -9``) may leave it behind; the next run to the same ``DIR`` deletes it. Only a kill between the two renames
leaves ``DIR`` missing, with the previous run in ``.DIR.fnnet-old-*`` and the complete new one in
``.DIR.fnnet-new-*``; the next run then keeps both. A Ctrl-C in the first half second, while
``python -m fnnet`` is still importing NumPy, ends with Python's own traceback (``--out`` untouched).

The per-epoch ``train_loss``, ``train_acc``, ``test_loss`` and ``test_acc`` are measured on random
samples of at most :data:`EVAL_SAMPLE` items and labelled ``(sample N)`` when the set is larger;
the final figures are on the whole test set. ``fnnet evaluate`` prints the test loss, the
confusion matrix (rows: true class, columns: predicted class) and, last, the test accuracy;
``--out FILE.png`` also draws the confusion matrix (with matplotlib). ``fnnet export`` writes a
checkpoint's model as an ONNX inference graph (see :func:`fnnet.export.to_onnx`; needs
``pip install 'fnnet[export]'``), for the input shape recorded in the checkpoint.

>>> from fnnet.cli import main
>>> main(["--version"])  # doctest: +ELLIPSIS
fnnet ...
0
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import re
import reprlib
import secrets
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from fnnet._version import __version__
from fnnet import checkpoint, datasets, export, models, optim
from fnnet.datasets.sources import _download_hint as download_hint
from fnnet._io import _fsync_dir, atomic_write_bytes, open_regular, probe_write
from fnnet.errors import FormatError
from fnnet.train._progress import Progress
from fnnet._validate import is_int, is_real
from fnnet.layers.base import Ctx, Layer
from fnnet.layers.combinators import Serial, summary
from fnnet.losses import loss_value, softmax_cross_entropy
from fnnet.metrics import confusion_matrix, default_metrics
from fnnet.random import key as make_key
from fnnet.train import FitResult, History, NonFiniteLossError, TrainState, evaluate, fit, init_train_state, predict
from fnnet.tree import tree_leaves, tree_paths
from fnnet.typing import Array

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["main", "MODEL_DEFAULTS", "OPTIMIZERS", "AUGMENTATIONS", "EXIT_CODES", "EVAL_SAMPLE"]

MODEL_DEFAULTS: dict[str, tuple[Callable[[], Serial], bool, str, float, int]] = {
    "two-layer-net": (models.two_layer_net, True, "momentum", 0.05, 20),
    "mlp": (lambda: models.mlp((100, 100, 100, 100), batchnorm=False), True, "adam", 0.001, 10),
    # CNNs take unflattened (N, 1, 28, 28) images; about 3 s (simple) and 12 s (deep) per epoch on mnist-small
    "simple-convnet": (models.simple_convnet, False, "adam", 0.001, 5),
    "deep-convnet": (models.deep_convnet, False, "adam", 0.001, 5),
    # a small residual network with BatchNorm: fewer epochs suffice, each costs more
    "resnet": (models.resnet, False, "adam", 0.001, 2),
}
"""``--model`` name -> (builder, flat input?, default optimizer, default lr, default epochs).

>>> from fnnet.cli import MODEL_DEFAULTS
>>> sorted(MODEL_DEFAULTS)
['deep-convnet', 'mlp', 'resnet', 'simple-convnet', 'two-layer-net']
>>> build, flat, optimizer, lr, epochs = MODEL_DEFAULTS["simple-convnet"]
>>> build().out_shape((1, 28, 28)), flat
((10,), False)
"""

OPTIMIZERS: dict[str, Callable[[float], optim.GradientTransformation]] = {
    "sgd": optim.sgd,
    "momentum": optim.momentum,
    "nesterov": optim.nesterov,
    "adagrad": optim.adagrad,
    "rmsprop": optim.rmsprop,
    "adam": optim.adam,
    "adamw": optim.adamw,
}
"""``--optimizer`` name -> the optimizer's constructor, called with the learning rate (``--lr``).

>>> import numpy as np, fnnet
>>> from fnnet.cli import OPTIMIZERS
>>> sorted(OPTIMIZERS)
['adagrad', 'adam', 'adamw', 'momentum', 'nesterov', 'rmsprop', 'sgd']
>>> opt = OPTIMIZERS["sgd"](0.5)
>>> params = np.array([1.0, 2.0])
>>> updates, state = opt.update(np.array([1.0, -2.0]), opt.init(params), params)
>>> fnnet.optim.apply_updates(params, updates).tolist()
[0.5, 3.0]
"""

AUGMENTATIONS: dict[str, datasets.Augmentation | None] = {
    "none": None,
    "crop": datasets.RandomCrop(pad=2),
    "crop-flip": datasets.compose(datasets.RandomCrop(pad=2), datasets.HorizontalFlip(p=0.5)),
}
"""``--augment`` name -> the augmentation of the training batches (image models only).

>>> import numpy as np, fnnet
>>> from fnnet.cli import AUGMENTATIONS
>>> sorted(AUGMENTATIONS), AUGMENTATIONS["none"]
(['crop', 'crop-flip', 'none'], None)
>>> AUGMENTATIONS["crop-flip"](fnnet.key(0), np.ones((2, 1, 28, 28), np.float32)).shape
(2, 1, 28, 28)
"""

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_INPUT, EXIT_OUTPUT, EXIT_TRAINING, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
EXIT_PIPE, EXIT_TERMINATED = 141, 143  # 128 + SIGPIPE, 128 + SIGTERM: what a shell shows for a process they end

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_BUG: "unexpected error (a bug in fnnet; the only failure that prints a traceback)",
    EXIT_USAGE: "bad option or value, bad $FNNET_NUM_THREADS, an --out that cannot hold a run, "
                "no onnx (export) or matplotlib (evaluate --out)",
    EXIT_INPUT: "data set or checkpoint missing, unreadable, not fitting the model, or not finite",
    EXIT_OUTPUT: "--out or standard output cannot be written",
    EXIT_TRAINING: "training diverged (NaN/inf loss or parameters) or ran out of memory",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); --out is untouched or complete",
    EXIT_PIPE: "standard output was closed early (piped into head); no message, --out is untouched",
    EXIT_TERMINATED: "terminated (SIGTERM), handled as Ctrl-C is; --out is untouched or complete",
}
"""Exit code -> its meaning (the table of the module docstring, also shown by ``fnnet --help``).

>>> from fnnet.cli import EXIT_CODES
>>> sorted(EXIT_CODES), EXIT_CODES[0]
([0, 1, 2, 3, 4, 5, 130, 141, 143], 'success')
"""

EVAL_SAMPLE = 2000
"""Per-epoch accuracies are measured on a keyed random sample of at most this many items.

>>> from fnnet.cli import EVAL_SAMPLE
>>> EVAL_SAMPLE
2000
"""

CHECKPOINT_FILE = "checkpoint.npz"
CONFUSION_FILE = "confusion_matrix.png"
#: The metrics of every ``--model`` (all softmax classifiers).
_METRICS = default_metrics(softmax_cross_entropy)
METRICS_FILE = "metrics.json"
PLOT_FILE = "learning_curve.png"
#: Everything ``fnnet train --out`` writes; a directory holding only these is a previous run.
OUTPUT_FILES = (CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE)
#: What a previous run may hold: its outputs and the confusion matrix ``fnnet evaluate DIR --out DIR`` drew into it.
_RUN_FILES = (*OUTPUT_FILES, CONFUSION_FILE)

_DATA_NAMES = ("mnist-small", "mnist", "fashion-mnist")
_THREADS_ENV = "FNNET_NUM_THREADS"
# Images larger than this many values per item are not what a checkpoint of these models holds;
# a bigger declared in_shape is rejected before anything is built from it.
_MAX_IN_SIZE = 1 << 24
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class _Fail(Exception):
    """A failure reported as one ``fnnet: ...`` line with an exit code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _one_line(text: str) -> str:
    return "; ".join(s for s in (line.strip() for line in text.splitlines()) if s).replace(":; ", ": ")


def _out(text: str) -> None:
    """Print a line on stdout; a failure to write it (not a closed pipe) is exit 4 in one line."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        raise
    except OSError as e:
        raise _Fail(EXIT_OUTPUT, f"cannot write to standard output: {e.strerror or e}") from None


def _silence_broken_streams() -> None:
    """Point stdout or stderr at /dev/null when writing to it fails, so that the flush at exit
    neither fails again nor prints Python's 'Exception ignored' lines."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(null, stream.fileno())
                finally:
                    os.close(null)
            except (OSError, ValueError, AttributeError):
                pass


def _version() -> str:
    try:
        return importlib.metadata.version("fnnet")
    except importlib.metadata.PackageNotFoundError:
        return __version__


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``fnnet: ...`` line (exit 2) instead of usage + error, and
    ``--help`` or ``--version`` that cannot be written to standard output fails as other output does."""

    #: The parser of each command (on the top-level parser only).
    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]  # "train" in "fnnet train"
        raise _Fail(EXIT_USAGE, f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's own text is "argument {train,evaluate,export}: invalid choice: 'x' (choose from 'train', ...)"
        if action.choices is None or value in action.choices:
            return
        choices = [str(c) for c in action.choices]
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if isinstance(action, argparse._SubParsersAction):
            message = f"unknown command {value!r}: the commands are {', '.join(choices)}{hint}"
        else:
            option = "/".join(action.option_strings) or action.dest
            message = f"{option} {value!r} is not one of {', '.join(choices)}{hint}"
        raise argparse.ArgumentError(None, message)

    def parse_command(self, argv: Sequence[str] | None) -> argparse.Namespace:
        """``parse_args``, but an argument no parser knows is reported by the command it follows
        (``fnnet train --bogus``: see ``fnnet train --help``), and a missing command by name."""
        given = list(sys.argv[1:] if argv is None else argv)
        args, extras = self.parse_known_args(given)
        command = args.command
        if command is None:
            self.error(f"unrecognized arguments: {' '.join(extras)}" if extras
                       else f"no command given: expected one of {', '.join(self.commands)}")
        if extras:
            at = given.index(command) if command in given else 0
            by = self.commands[command] if not set(extras) & set(given[:at]) else self
            by.error(f"unrecognized arguments: {' '.join(extras)}")
        return args

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse ignores a failed write, so `fnnet --help > /dev/full` would exit 0 having printed nothing
        if not message or file is None or file is not sys.stdout:
            super()._print_message(message, file)
            return
        try:
            print(message, end="", file=file, flush=True)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _Fail(EXIT_OUTPUT, f"cannot write to standard output: {e.strerror or e}") from None


def _finite_positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if math.isnan(v):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    if math.isinf(v):
        why = "" if text.strip().lower().lstrip("+-") in ("inf", "infinity") else ", which is infinite as a float"
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}{why}")
    if v <= 0:
        why = ", which rounds to 0" if v == 0 and any(c in "123456789" for c in text.split("e")[0]) else ""
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}{why}")
    return v


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {reprlib.repr(text)}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {v}")
        return v

    parse.__name__ = "int"
    return parse


def _per_model(i: int) -> str:
    return ", ".join(f"{name} {d[i]}" for name, d in MODEL_DEFAULTS.items())


def _parser() -> _Parser:
    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    p = _Parser(
        prog="fnnet",
        description="Pure-function neural networks on NumPy: train the book's models, evaluate checkpoints.",
        epilog=f"exit codes (every failure is one line 'fnnet: ...' on stderr):\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"fnnet {_version()}")
    sub = p.add_subparsers(dest="command", metavar="{train,evaluate,export}")  # a missing command: parse_command
    tr = sub.add_parser(
        "train", help="train a model and report its test accuracy",
        description="Train a model; the last line printed is its accuracy on the whole test set.",
    )
    tr.add_argument("--model", choices=list(MODEL_DEFAULTS), default="two-layer-net",
                    help="the network to train (default: %(default)s)")
    tr.add_argument("--data", default="mnist-small",
                    help="mnist-small (embedded), mnist, fashion-mnist, or a directory holding the four "
                         "MNIST-format IDX files (default: %(default)s)")
    tr.add_argument("--epochs", type=_int_at_least(1), default=None, metavar="N",
                    help=f"passes over the training set (default per model: {_per_model(4)})")
    tr.add_argument("--batch-size", type=_int_at_least(1), default=100, metavar="N",
                    help="samples per training step (default: %(default)s)")
    tr.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None,
                    help=f"the update rule (default per model: {_per_model(2)})")
    tr.add_argument("--lr", type=_finite_positive, default=None, metavar="LR",
                    help=f"learning rate, a finite number > 0 (default per model: {_per_model(3)})")
    tr.add_argument("--seed", type=_int_at_least(0), default=0, metavar="S",
                    help="seed of the initial weights, the shuffles, dropout and --augment; the same seed "
                         "gives the same bits (default: %(default)s)")
    tr.add_argument("--out", type=Path, default=None, metavar="DIR",
                    help="write checkpoint.npz, metrics.json and learning_curve.png (with matplotlib) into "
                         "DIR, which must be new, empty or a previous run; it is replaced only when the "
                         "run completes (default: write nothing)")
    tr.add_argument("--quiet", action="store_true", help="print only the final accuracy (default: progress "
                    "on stderr, a bar per step on a terminal and a line per epoch)")
    tr.add_argument("--augment", choices=list(AUGMENTATIONS), default="none",
                    help="augment the training batches of a convolutional model: crop pads 2 zero pixels "
                         "each side and crops back at a random offset, crop-flip also mirrors with "
                         "probability 1/2 (for clothes; a mirrored digit is another symbol); evaluation "
                         "sees the raw images (default: %(default)s)")
    tr.add_argument("--threads", type=_int_at_least(1), default=None, metavar="N",
                    help=f"worker threads; changes speed, never results (default: ${_THREADS_ENV} if set, "
                         "else the available cores)")
    ev = sub.add_parser(
        "evaluate", help="report a checkpoint's test accuracy",
        description="Evaluate a checkpoint written by 'fnnet train --out' on a whole test set.",
    )
    ev.add_argument("checkpoint", type=Path, help="a checkpoint.npz written by fnnet train --out, or its directory")
    ev.add_argument("--data", default=None,
                    help="the data set to evaluate on, as for train (default: the one recorded in the checkpoint)")
    ev.add_argument("--out", type=Path, default=None, metavar="PNG",
                    help="also draw the confusion matrix into this PNG file (replaced atomically; needs "
                         "matplotlib), or into confusion_matrix.png in this directory (default: draw nothing)")
    ex = sub.add_parser(
        "export", help="write a checkpoint's model as an ONNX file",
        description="Write the model of a checkpoint written by 'fnnet train --out' as an ONNX inference graph "
                    "(needs the onnx package: pip install 'fnnet[export]').",
    )
    ex.add_argument("checkpoint", type=Path, help="a checkpoint.npz written by fnnet train --out, or its directory")
    ex.add_argument("--out", type=Path, default=Path("model.onnx"), metavar="FILE",
                    help="the ONNX file to write, replaced atomically (default: %(default)s)")
    ex.add_argument("--opset", type=_int_at_least(export.MIN_OPSET), default=export.DEFAULT_OPSET, metavar="N",
                    help="the ONNX operator set version (default: %(default)s)")
    p.commands = dict(sub.choices)
    return p


def _threads(given: int | None) -> int | None:
    """``--threads``, else a validated ``$FNNET_NUM_THREADS``, else None (fit picks the cores)."""
    if given is not None:
        return given
    env = os.environ.get(_THREADS_ENV, "").strip()
    if not env:
        return None
    try:
        n = int(env)
    except ValueError:
        n = 0
    if n < 1:
        raise _Fail(EXIT_USAGE, f"${_THREADS_ENV} must be a positive integer, got {reprlib.repr(env)}")
    return n


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _load_data(name: str, flat: bool, what: str = "") -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """The data set ``name`` (called ``what`` in messages, default ``--data NAME``); failures as
    one-line :class:`_Fail` (exit 3)."""
    what = what or f"--data {name}"
    if name not in _DATA_NAMES and not os.path.isdir(name):
        why = "is a file, not a directory" if os.path.exists(name) else "is neither a data set name nor a directory"
        raise _Fail(EXIT_INPUT, f"{what}: {why} (names: {', '.join(_DATA_NAMES)})")
    try:
        (x_train, t_train), (x_test, t_test) = datasets.load_mnist(name, flatten=flat, normalize=True)
    except FileNotFoundError as e:
        if name not in _DATA_NAMES:
            raise _Fail(EXIT_INPUT, f"{what}: {_loader_message(e)}") from None
        places = ", ".join(str(d) for d in datasets.search_paths(name))
        how = "" if name != "fashion-mnist" else ", or on Debian: apt-get install dataset-fashion-mnist"
        raise _Fail(
            EXIT_INPUT,
            f"data set {name!r} not found (looked in {places}); pass --data DIR for a directory holding its "
            f"four IDX files, set $FNNET_DATA, or download it once: {download_hint(name)}{how}",
        ) from None
    except (ValueError, OSError) as e:
        raise _Fail(EXIT_INPUT, f"{what}: {_loader_message(e)}") from None
    for part, x in (("training", x_train), ("test", x_test)):
        if len(x) == 0:
            raise _Fail(EXIT_INPUT, f"{what}: the {part} set is empty")
    return (x_train, t_train), (x_test, t_test)


def _loader_message(e: Exception) -> str:
    """A data set loader's error in one line, without the Python function's name it starts with."""
    return _one_line(str(e)).removeprefix("load_mnist: ")


def _data_record(name: str) -> str:
    """How the data set is recorded in a checkpoint: its name, or a directory's absolute path."""
    return name if name in _DATA_NAMES else os.path.abspath(name)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _count(n: int, noun: str) -> str:
    """``"1 epoch"``, ``"2 epochs"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _all_test_items(n: int) -> str:
    """``"all 2000 test items"``, or ``"the 1 test item"``."""
    return "the 1 test item" if n == 1 else f"all {n} test items"


# --------------------------------------------------------------------------------------------
# Signals and numerics
# --------------------------------------------------------------------------------------------


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C's KeyboardInterrupt is, so that the same clean-up runs."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (``kill``, ``timeout``, a service manager) into :class:`_Terminated` while a
    command runs, instead of ending the process on the spot with ``--out``'s temporary directory
    left behind, or between its two renames. A SIGTERM that was ignored stays ignored; only the
    main thread can set a handler, elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _sigterm_handled_by(_raise_terminated):
        yield


@contextlib.contextmanager
def _sigterm_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGTERM goes to ``handler`` in the body (main thread only), unless it was ignored, which it stays."""
    old = signal.getsignal(signal.SIGTERM)
    if old != signal.SIG_IGN:
        signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if old != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C (and SIGTERM) off around work that must not be cut in half: a signal meanwhile is
    dropped, since the work it would cut then completes.

    A SIGINT that arrived just before is raised on entry, before the work starts (``signal.signal``
    runs pending handlers first). Only the main thread can set a handler; elsewhere this does
    nothing. (Blocking the signal in this thread would not do: the kernel hands a process's SIGINT
    to any thread not blocking it, such as BLAS or evaluation workers.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, _drop)
    try:
        with _sigterm_handled_by(_drop):
            yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.SIG_DFL)


def _drop(signum: int, frame: FrameType | None) -> None:
    """A signal handler that does nothing."""


@contextlib.contextmanager
def _quiet_numerics() -> Iterator[None]:
    """No NumPy floating-point warnings (with source lines) on stderr: non-finite results are
    detected and reported as one line instead. ``np.errstate`` covers this thread; the warnings
    filter covers the worker threads, whose NumPy error state is the default one."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _first_nonfinite(state: TrainState) -> str | None:
    """The path of the first leaf of the parameters or model state holding NaN or inf, else None."""
    for path, leaf in zip(tree_paths(state), tree_leaves(state)):
        a = np.asarray(leaf)
        if path.startswith(("params/", "model_state/")) and a.dtype.kind in "fc" and not np.isfinite(a).all():
            return path
    return None


# --------------------------------------------------------------------------------------------
# --out: checked before training, written beside, renamed into place
# --------------------------------------------------------------------------------------------


class _OutDir:
    """The ``--out`` target: checked up front, written in a sibling directory, swapped in at the end."""

    def __init__(self, given: Path):
        self.given = given
        self.path = Path(os.path.realpath(given))  # a symlink: replace the directory it names
        self.tmp: Path | None = None
        self.done = False
        if not self.path.name or self.path.parent == self.path:
            raise _Fail(EXIT_USAGE, f"--out {given}: cannot be replaced; name a directory below it")
        if self.path.exists() and not self.path.is_dir():
            raise _Fail(EXIT_USAGE, f"--out {given}: is a file, not a directory")
        if self.path.is_dir():
            try:
                entries = sorted(os.scandir(self.path), key=lambda e: e.name)
            except OSError as e:
                raise _Fail(EXIT_OUTPUT, f"--out {given}: cannot be read: {e.strerror}") from None
            for entry in entries:
                if entry.name not in _RUN_FILES or not entry.is_file(follow_symlinks=False):
                    what = "a directory" if entry.is_dir(follow_symlinks=False) else "not an fnnet output file"
                    raise _Fail(
                        EXIT_USAGE,
                        f"--out {given}: holds {entry.name!r} ({what}); fnnet replaces --out as a whole, so give a "
                        f"new or empty directory or a previous run (only {', '.join(_RUN_FILES)})",
                    )

    def _prefix(self, kind: str) -> str:
        return f".{self.path.name}.fnnet-{kind}-"

    def begin(self) -> Path:
        """Create the temporary sibling directory (exit 4 if that fails); returns it."""
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale()
            tmp = parent / f"{self._prefix('new')}{os.getpid()}-{secrets.token_hex(4)}"
            tmp.mkdir()
        except OSError as e:
            raise _Fail(EXIT_OUTPUT, f"--out {self.given}: cannot write beside it in {parent}: {e.strerror or e}") from None
        self.tmp = tmp
        return tmp

    def _remove_stale(self) -> None:
        """Delete temporary directories of earlier runs to this ``--out`` whose process is gone.

        All are kept if ``--out`` is missing and a previous run was renamed aside: a run killed
        between its two renames, whose directories hold the only copies.
        """
        pattern = re.compile(re.escape(f".{self.path.name}.fnnet-") + r"(new|old)-(\d+)-[0-9a-f]+\Z")
        stale = []
        for entry in os.scandir(self.path.parent):
            m = pattern.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and not _alive(int(m.group(2))):
                stale.append((m.group(1), entry.path))
        if not self.path.exists() and any(kind == "old" for kind, _ in stale):
            return
        for _, path in stale:
            shutil.rmtree(path, ignore_errors=True)

    def commit(self) -> None:
        """Put the finished run in place of ``--out`` (renaming a previous run aside, then deleting it)."""
        assert self.tmp is not None
        parent = self.path.parent
        new, target = os.fspath(self.tmp), os.fspath(self.path)
        aside = os.fspath(parent / f"{self._prefix('old')}{os.getpid()}-{secrets.token_hex(4)}")
        _fsync_dir(self.tmp)
        with _sigint_held():
            moved = False
            try:
                if os.path.lexists(target):
                    os.rename(target, aside)
                    moved = True
                os.rename(new, target)
            except OSError as e:
                message = f"--out {self.given}: cannot put the run in place: {e.strerror or e}"
                if moved:
                    try:
                        os.rename(aside, target)
                    except OSError:
                        message += f"; the previous run is in {aside}, this one in {new}"
                        self.tmp = None  # keep it
                raise _Fail(EXIT_OUTPUT, message) from None
            self.tmp = None
            self.done = True
            _fsync_dir(parent)
            if moved:
                shutil.rmtree(aside, ignore_errors=True)

    def discard(self) -> None:
        """Remove the temporary directory, if any (``--out`` stays as it was)."""
        if self.tmp is not None:
            with _sigint_held():
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


# --------------------------------------------------------------------------------------------
# fnnet train
# --------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``fnnet train``: check everything, train, print the accuracy, write ``--out``."""
    builder, flat, opt_name, lr, epochs = MODEL_DEFAULTS[args.model]
    opt_name = args.optimizer or opt_name
    lr = args.lr if args.lr is not None else lr
    epochs = args.epochs if args.epochs is not None else epochs
    threads = _threads(args.threads)
    if args.augment != "none" and flat:
        images = ", ".join(name for name, d in MODEL_DEFAULTS.items() if not d[1])
        raise _Fail(EXIT_USAGE, f"--augment {args.augment} needs an image model ({images}); {args.model} takes flat vectors")
    out = _OutDir(args.out) if args.out is not None else None

    (x_train, t_train), (x_test, t_test) = _load_data(args.data, flat)
    model = builder()
    in_shape = tuple(int(s) for s in x_train.shape[1:])
    try:
        shapes = summary(model, in_shape)
    except ValueError as e:
        raise _Fail(
            EXIT_INPUT,
            f"--model {args.model} cannot take the {_shape_text(in_shape)} inputs of --data {args.data}: {_one_line(str(e))}",
        ) from None
    _check_single_sample_batch(model, args, x_train)

    sizes = (("train", len(x_train)), ("test", len(x_test)))
    sampled = {f"{name}_{m}": EVAL_SAMPLE < n for name, n in sizes for m in ("loss", *_METRICS)}
    labels = {k: f"{k}(sample {EVAL_SAMPLE})" for k, s in sampled.items() if s}
    steps = math.ceil(len(x_train) / args.batch_size)
    batch_text = (f"batch {args.batch_size}" if args.batch_size <= len(x_train)
                  else f"batch {len(x_train)} (the whole training set; --batch-size {args.batch_size})")  # fmt: skip
    display = Progress(epochs, steps, "quiet" if args.quiet else "auto", labels=labels)

    def say(text: str) -> None:
        if not args.quiet:
            _out(text)

    # told before training rather than found missing after it
    no_curve = out is not None and not _have_matplotlib()
    try:
        if out is not None:
            out.begin()
        if no_curve:
            _note_no_curve(args.out)
        say(f"model {args.model} on {args.data}: {len(x_train)} train / {len(x_test)} test, "
            f"{opt_name} lr {lr}, {batch_text}, {_count(epochs, 'epoch')}, seed {args.seed}"
            + ("" if args.augment == "none" else f", augment {args.augment}"))
        say(str(shapes))
        if labels:
            say(f"per-epoch {', '.join(labels)} on random samples of {EVAL_SAMPLE}; the final figures on "
                f"{_all_test_items(len(x_test))}")
        t0 = time.perf_counter()
        with _quiet_numerics():
            try:
                result = fit(
                    model, OPTIMIZERS[opt_name](lr), (x_train, t_train),
                    key=make_key(args.seed), epochs=epochs, batch_size=args.batch_size,
                    test=(x_test, t_test), eval_sample=EVAL_SAMPLE, progress=display, threads=threads,
                    augment=AUGMENTATIONS[args.augment],
                )
            except NonFiniteLossError as e:
                raise _Fail(EXIT_TRAINING, _diverged(e, steps, lr)) from None
            except MemoryError:
                raise _Fail(EXIT_TRAINING, f"out of memory while training; try a --batch-size below {args.batch_size}") from None
            wall = time.perf_counter() - t0
            bad = _first_nonfinite(result.state)
            if bad is not None:
                raise _Fail(EXIT_TRAINING, f"training diverged: parameter {bad} is NaN or infinite after the "
                                           f"last step; lower --lr (it is {lr})")
            say(f"trained in {wall:.1f}s; final evaluation on {_all_test_items(len(x_test))}")  # before it: it can take a while
            final = evaluate(model, result.state.params, x_test, t_test, state=result.state.model_state, threads=threads)
        _out(f"test accuracy {final['acc']:.4f}")
        if out is not None:
            config = {"model": args.model, "data": _data_record(args.data), "in_shape": list(in_shape),
                      "optimizer": opt_name, "lr": lr, "epochs": epochs, "batch_size": args.batch_size,
                      "seed": args.seed, "augment": args.augment}
            # Ctrl-C waits: the run is over, and an interrupt inside an import (matplotlib's) can surface as an
            # ImportError
            with _sigint_held():
                drawn = _write_outputs(out, config, result, final, len(x_train), len(x_test), wall)
                out.commit()
            if not drawn and not no_curve:  # matplotlib is there but does not import
                _note_no_curve(args.out)
    except KeyboardInterrupt as e:
        display.break_line()
        where = "" if out is None else f"; --out {args.out} {'is complete' if out.done else 'untouched'}"
        if isinstance(e, _Terminated):
            raise _Fail(EXIT_TERMINATED, f"terminated{where}") from None
        raise _Fail(EXIT_INTERRUPTED, f"interrupted{where}") from None
    except BaseException:
        display.break_line()
        raise
    finally:
        if out is not None:
            out.discard()
    return EXIT_OK


def _check_single_sample_batch(model: Layer, args: argparse.Namespace, x_train: Array) -> None:
    """Exit 3 before training if a training batch of one sample is coming that the model cannot
    train on (BatchNorm after the image has shrunk to 1x1 needs more than one value per channel).

    Batches of two or more samples always give BatchNorm two values per channel, so only a batch
    of one (the last of an epoch, or ``--batch-size 1``) is tried: one training forward pass.
    """
    n, size = len(x_train), args.batch_size
    if min(n, size) != 1 and n % size != 1:
        return
    try:
        params, _ = model.init(make_key(0), tuple(x_train.shape[1:]))
        model.forward(params, model.init_state(tuple(x_train.shape[1:])), x_train[:1], Ctx(True, make_key(0)))
    except ValueError as e:
        if n == 1:
            which = "the training set holds only one"
        elif size == 1:
            which = "--batch-size 1 gives only such batches; choose a larger one"
        else:
            which = f"the last batch of each epoch holds one ({n} % {size}); choose another --batch-size"
        raise _Fail(
            EXIT_INPUT,
            f"--model {args.model} cannot train on a batch of one {_shape_text(tuple(x_train.shape[1:]))} "
            f"sample, and {which}: {_one_line(str(e))}",
        ) from None


def _diverged(e: NonFiniteLossError, steps: int, lr: float) -> str:
    """The command line's message for a divergence in step ``e.step`` (counted from 0 over the whole
    run; ``steps`` per epoch), numbered as the progress bar counts: the epoch, and the step in it."""
    epoch, i = divmod(e.step, steps)
    what = f"the loss is {e.loss}" if e.loss is not None else "the parameters or optimizer state became NaN or infinite"
    return f"training diverged in epoch {epoch + 1}, step {i + 1}/{steps}: {what}; lower --lr (it is {lr})"


def _write_outputs(
    out: _OutDir,
    config: dict[str, Any],
    result: FitResult,
    final: dict[str, float],
    n_train: int,
    n_test: int,
    wall: float,
) -> bool:
    """Write the run's files into ``out.tmp``; whether the learning curve was drawn (needs matplotlib)."""
    assert out.tmp is not None
    sample = {f"{name}_{m}": EVAL_SAMPLE if EVAL_SAMPLE < n else None
              for name, n in (("train", n_train), ("test", n_test)) for m in ("loss", *_METRICS)}
    metrics = {
        "config": config, **{f"test_{k}": v for k, v in final.items()}, "test_items": n_test,
        "train_items": n_train, "wall_seconds": wall, "per_epoch_sample": sample,
        "note": "the top-level test_* figures are on all test_items; history.epochs[].train_* and test_* are on "
                "a keyed random sample of per_epoch_sample items of their set (null: the whole set); "
                "history.epochs[].loss is the mean training-step loss of the epoch",
        "history": result.history.to_json(),
    }
    try:
        checkpoint.save(out.tmp / CHECKPOINT_FILE, result.state, meta={"config": config})
        atomic_write_bytes(out.tmp / METRICS_FILE, json.dumps(metrics, indent=1).encode("utf-8"))
        return _plot(result.history, out.tmp / PLOT_FILE, sample)
    except OSError as e:
        raise _Fail(EXIT_OUTPUT, f"--out {out.given}: cannot write the outputs: {_one_line(str(e))}") from None


def _have_matplotlib() -> bool:
    """Whether matplotlib is installed (found, not imported: that takes a while)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def _note_no_curve(out: Path) -> None:
    _note(f"fnnet: note: matplotlib is not installed, so --out {out} gets no {PLOT_FILE} (pip install 'fnnet[plot]')")


def _note(line: str) -> None:
    """A line on stderr in the middle of a run; nothing if stderr cannot be written. (Not
    :func:`_say_error`: that points a failing stdout at /dev/null, which would hide a closed pipe.)"""
    if sys.stderr is None:
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _plot(history: History, path: Path, sample: dict[str, int | None]) -> bool:
    """The learning curve: the loss of every step and each set's loss after every epoch (left),
    each set's metrics after every epoch (right)."""
    plt = _pyplot()
    if plt is None:
        return False
    from matplotlib.ticker import MaxNLocator

    def label(name: str) -> str:
        n = sample.get(name)
        return name if n is None else f"{name} (sample {n})"

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = len(history.step_loss)
    epochs = len(history.epochs)
    ax1.plot(range(1, steps + 1), history.step_loss, lw=0.5, color="0.6", label="step loss",
             marker="." if steps == 1 else None)  # a line of one point is not drawn
    per_epoch = steps / epochs if epochs else 0.0
    for name in ("train_loss", "val_loss", "test_loss"):
        vals = history.metric(name)
        if vals:
            ax1.plot([per_epoch * (e + 1) for e in range(len(vals))], vals, marker="o", label=label(name))
    ax1.set_xlabel("step")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # steps are whole numbers
    ax1.set_ylabel("loss")
    ax1.legend()
    shown = [k for k in (history.epochs[0] if history.epochs else {})
             if k.startswith(("train_", "val_", "test_")) and not k.endswith("_loss")]
    accuracies = all(k.endswith("_acc") for k in shown)
    for name in shown:
        vals = history.metric(name)
        # clip_on=False: a marker at accuracy 0 or 1 sits on the frame, drawn whole
        ax2.plot(range(1, len(vals) + 1), vals, marker="o", label=label(name), clip_on=not accuracies)
    ax2.set_xlabel("epoch")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs are whole numbers, even one
    if shown and accuracies:
        low, high = ax2.get_ylim()
        ax2.set_ylim(max(low, 0.0), min(high, 1.0))
    ax2.set_ylabel("accuracy" if accuracies else "metric")
    if shown:
        ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())  # synced to disk like the run's other files
    return True


def _draw_confusion(plt: Any, cm: Array, title: str) -> bytes:
    """The confusion matrix as PNG bytes (counts in the cells), drawn with pyplot ``plt``."""
    k = cm.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.6 + 0.55 * k))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > top / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _matrix_text(cm: Array) -> str:
    """A confusion matrix as aligned text with class numbers on both axes."""
    k = cm.shape[0]
    width = max(len(str(int(cm.max()))) if cm.size else 1, len(str(k - 1)))
    head = " " * (width + 2) + " ".join(f"{j:>{width}}" for j in range(k))
    rows = [f"{i:>{width}}: " + " ".join(f"{int(v):>{width}}" for v in cm[i]) for i in range(k)]
    return "\n".join([head, *rows])


# --------------------------------------------------------------------------------------------
# fnnet evaluate
# --------------------------------------------------------------------------------------------


def _config(path: Path, meta: dict[str, Any]) -> tuple[str, str, float, tuple[int, ...], str | None]:
    """``(model, optimizer, lr, in_shape, data)`` of a checkpoint's meta, each type-checked."""

    def bad(field: str, want: str, got: Any) -> _Fail:
        return _Fail(EXIT_INPUT, f"{path}: meta config {field!r} must be {want}, got {reprlib.repr(got)}")

    config = meta.get("config")
    if not isinstance(config, dict):
        raise _Fail(EXIT_INPUT, f"{path}: meta has no 'config' dict: not written by fnnet train")
    model = config.get("model")
    if not isinstance(model, str) or model not in MODEL_DEFAULTS:
        raise bad("model", f"one of {', '.join(MODEL_DEFAULTS)}", model)
    opt = config.get("optimizer")
    if not isinstance(opt, str) or opt not in OPTIMIZERS:
        raise bad("optimizer", f"one of {', '.join(OPTIMIZERS)}", opt)
    lr: Any = config.get("lr")
    if not is_real(lr) or not (math.isfinite(lr) and lr > 0):
        raise bad("lr", "a finite number > 0", lr)
    shape: Any = config.get("in_shape")
    rank = 1 if MODEL_DEFAULTS[model][1] else 3
    if (
        not isinstance(shape, list) or len(shape) != rank or not all(is_int(s) and 0 < s <= _MAX_IN_SIZE for s in shape)
        or math.prod(shape) > _MAX_IN_SIZE
    ):
        raise bad("in_shape", f"a list of {rank} positive ints of product at most {_MAX_IN_SIZE} for {model}", shape)
    data = config.get("data")
    if data is not None and not isinstance(data, str):
        raise bad("data", "a data set name or directory", data)
    return model, opt, float(lr), tuple(int(s) for s in shape), data


def _read_checkpoint_meta(path: Path) -> dict[str, Any]:
    try:
        with open_regular(path) as f:
            head = f.read(4)
    except FileNotFoundError:
        raise _Fail(EXIT_INPUT, f"{path}: no such file") from None
    except FormatError as e:
        raise _Fail(EXIT_INPUT, _one_line(str(e))) from None
    except OSError as e:
        raise _Fail(EXIT_INPUT, f"{path}: cannot read: {e.strerror or e}") from None
    if head not in _ZIP_MAGIC:
        raise _Fail(EXIT_INPUT, f"{path}: not an fnnet checkpoint (an .npz file starts with 'PK', this with {head!r})")
    try:
        return checkpoint.read_meta(path)
    except (ValueError, OSError) as e:
        raise _Fail(EXIT_INPUT, _one_line(str(e))) from None


def _restore(
    path: Path, model_name: str, opt_name: str, lr: float, in_shape: tuple[int, ...], verb: str
) -> tuple[Layer, TrainState]:
    """The checkpoint's model and training state, refused (exit 3) when unreadable or not finite."""
    model = MODEL_DEFAULTS[model_name][0]()
    try:
        like = init_train_state(model, OPTIMIZERS[opt_name](lr), make_key(0), in_shape)
        state, _ = checkpoint.load(path, like)
    except (ValueError, OSError) as e:
        raise _Fail(EXIT_INPUT, _one_line(str(e))) from None
    bad = _first_nonfinite(state)
    if bad is not None:
        raise _Fail(EXIT_INPUT, f"{path}: parameter {bad} holds NaN or infinite values; refusing to {verb}")
    return model, state


def _probe_writable(target: Path, given: Path) -> None:
    """:func:`fnnet._io.probe_write` of ``target``, exit 4 if it fails."""
    try:
        probe_write(target)
    except OSError as e:
        raise _Fail(EXIT_OUTPUT, f"--out {given}: cannot write in {target.parent}: {e.strerror or e}") from None


def _png_target(given: Path) -> Path:
    """The file ``fnnet evaluate --out`` writes: ``given``, or ``confusion_matrix.png`` in a directory."""
    path = given / CONFUSION_FILE if given.is_dir() else given
    if not path.parent.is_dir():
        raise _Fail(EXIT_OUTPUT, f"--out {given}: the directory {path.parent} does not exist")
    _probe_writable(path, given)
    return path


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run ``fnnet evaluate``: the checkpoint's loss, confusion matrix and accuracy on a whole test set."""
    plt = None
    if args.out is not None:
        plt = _pyplot()
        if plt is None:
            raise _Fail(EXIT_USAGE, "evaluate --out draws with matplotlib, which is not installed: "
                                    "pip install 'fnnet[plot]'")
    png = _png_target(args.out) if args.out is not None else None
    path: Path = args.checkpoint
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    meta = _read_checkpoint_meta(path)
    model_name, opt_name, lr, in_shape, recorded = _config(path, meta)
    if args.data is not None:
        data, source, what = args.data, "as given by --data", ""
    elif recorded is not None:
        data, source, what = recorded, "as recorded in the checkpoint", f"{path}: recorded data set {recorded}"
    else:
        raise _Fail(EXIT_INPUT, f"{path}: records no data set; pass --data")
    (_, _), (x_test, t_test) = _load_data(data, MODEL_DEFAULTS[model_name][1], what)
    data_shape = tuple(int(s) for s in x_test.shape[1:])
    if data_shape != in_shape:
        raise _Fail(
            EXIT_INPUT,
            f"{path}: {model_name} was trained on {_shape_text(in_shape)} inputs, but {data} ({source}) has "
            f"{_shape_text(data_shape)}",
        )
    model, state = _restore(path, model_name, opt_name, lr, in_shape, "evaluate")
    _out(f"evaluating {path} ({model_name}) on {data} {source}: {_all_test_items(len(x_test))}")
    loss = softmax_cross_entropy
    with _quiet_numerics():
        y = predict(model, state.params, x_test, state=state.model_state)
        # the loss as evaluate() takes it: the mean over batches of 1000, weighted by their sizes
        total = sum(loss_value(loss, y[i : i + 1000], t_test[i : i + 1000]) * len(t_test[i : i + 1000])
                    for i in range(0, len(y), 1000))
        figures = {name: metric(y, t_test) for name, metric in _METRICS.items()}
        cm = confusion_matrix(y, t_test)
    _out(f"test loss {total / len(y):.4f}")
    _out("confusion matrix (rows: true class, columns: predicted class):")
    _out(_matrix_text(cm))
    for name, value in figures.items():
        if name != "acc":
            _out(f"test {name} {value:.4f}")
    if png is not None:
        drawn = _draw_confusion(plt, cm, f"{model_name} on {data}: accuracy {figures['acc']:.4f}")
        try:
            atomic_write_bytes(png, drawn)
        except OSError as e:
            raise _Fail(EXIT_OUTPUT, f"--out {args.out}: cannot write {png}: {e.strerror or e}") from None
        _out(f"confusion matrix drawn to {png}")
    _out(f"test accuracy {figures['acc']:.4f}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# fnnet export
# --------------------------------------------------------------------------------------------


def _onnx_target(given: Path) -> Path:
    """The file ``fnnet export --out`` writes, checked writable before anything is read."""
    if given.is_dir():
        raise _Fail(EXIT_USAGE, f"--out {given}: is a directory; name the .onnx file to write")
    parent = given.parent
    if not parent.is_dir():
        raise _Fail(EXIT_OUTPUT, f"--out {given}: the directory {parent} does not exist")
    _probe_writable(given, given)
    return given


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``fnnet export``: the checkpoint's model, parameters and state as an ONNX file."""
    if importlib.util.find_spec("onnx") is None:
        raise _Fail(EXIT_USAGE, "export needs the onnx package: pip install 'fnnet[export]'")
    import onnx

    newest = int(onnx.defs.onnx_opset_version())
    if args.opset > newest:
        raise _Fail(EXIT_USAGE, f"export: --opset {args.opset} is newer than the installed onnx knows ({newest})")
    target = _onnx_target(args.out)
    path: Path = args.checkpoint
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    meta = _read_checkpoint_meta(path)
    model_name, opt_name, lr, in_shape, _ = _config(path, meta)
    model, state = _restore(path, model_name, opt_name, lr, in_shape, "export")
    try:
        proto = export.to_onnx(model, state.params, in_shape, state=state.model_state, opset=args.opset)
    except ImportError as e:
        raise _Fail(EXIT_USAGE, _one_line(str(e))) from None
    except ValueError as e:
        raise _Fail(EXIT_INPUT, f"{path}: cannot export {model_name}: {_one_line(str(e))}") from None
    data = proto.SerializeToString()
    try:
        atomic_write_bytes(target, data)
    except OSError as e:
        raise _Fail(EXIT_OUTPUT, f"--out {args.out}: cannot write: {e.strerror or e}") from None
    out_shape = model.out_shape(in_shape)
    _out(f"exported {path} ({model_name}: input (N, {', '.join(map(str, in_shape))}) -> output "
          f"(N, {', '.join(map(str, out_shape))}), ONNX opset {args.opset}) to {target}, {len(data):,} bytes")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fnnet`` console script and ``python -m fnnet``.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).
    Returns:
        The exit code (see the module docstring); failures print one ``fnnet: ...`` line on stderr.

    >>> from fnnet.cli import main
    >>> main(["train", "--lr", "inf"])
    2
    """
    try:
        with _sigterm_as_interrupt():
            try:
                args = _parser().parse_command(argv)
            except SystemExit as e:  # --help, --version
                return e.code if isinstance(e.code, int) else EXIT_OK if e.code is None else EXIT_USAGE
            if args.command == "train":
                return cmd_train(args)
            if args.command == "export":
                return cmd_export(args)
            return cmd_evaluate(args)
    except _Fail as e:
        _say_error(f"fnnet: {e}")
        return e.code
    except _Terminated:
        _say_error("fnnet: terminated")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        _say_error("fnnet: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout (or stderr) has gone: say nothing more, as head's writers do
        _silence_broken_streams()
        return EXIT_PIPE


def _say_error(line: str) -> None:
    """The one ``fnnet: ...`` line on stderr (nothing if stderr itself cannot be written, or is closed)."""
    if sys.stderr is None:
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass
    _silence_broken_streams()
