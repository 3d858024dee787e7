"""Training loops: a seeded, resumable ``fit``, and batched ``evaluate`` / ``predict``.

``fit`` repeats the training step (:mod:`fnnet.train.step`) over keyed shuffles. The epoch and step
counters live in the :class:`fnnet.train.step.TrainState`, so training N epochs equals training k,
saving, loading and training N-k, bit for bit. After every epoch it evaluates the loss and the
task's metrics (:func:`fnnet.metrics.default_metrics` of the loss) on the train/val/test sets;
early stopping and a reduce-on-plateau rule (:mod:`fnnet.train.stopping`) decide from that
history alone.

>>> import numpy as np, fnnet
>>> from fnnet.train import fit
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 2)).astype(np.float32)
>>> t = (x[:, 0] > 0).astype(np.int64)
>>> model = fnnet.serial(fnnet.Affine(8), fnnet.ReLU(), fnnet.Affine(2))
>>> result = fit(model, fnnet.sgd(0.5), (x, t), key=fnnet.key(0), epochs=20, batch_size=20, progress="quiet")
>>> result.history.epochs[-1]["train_acc"] > 0.9
True
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import numpy as np

from fnnet.errors import _interrupt_class
from fnnet.metrics import Metric, check_metrics, default_metrics
from fnnet._validate import check_positive_int, is_int, shape_text
from fnnet.datasets import Augmentation, batches
from fnnet.layers.base import EVAL, Ctx, Layer
from fnnet.losses import _ignored_target, loss_value, scored_targets, softmax_cross_entropy
from fnnet.optim import GradientTransformation
from fnnet.random import Key, fold_in, split
from fnnet.train._progress import Progress
from fnnet.train.history import History
from fnnet.train.stopping import EarlyStopping, ReduceOnPlateau, StopDecision
from fnnet.train.parallel import blas_limit, default_threads, run_shards
from fnnet.train.step import (
    LossFn,
    NonFiniteLossError,
    TrainState,
    all_finite,
    counter,
    init_train_state,
    make_train_step,
)
from fnnet.tree import tree_map_with_path
from fnnet.typing import Array, Tree

__all__ = [
    "History",
    "FitResult",
    "EarlyStopping",
    "ReduceOnPlateau",
    "TrainingInterrupted",
    "evaluate",
    "predict",
    "fit",
]


def _thread_count(threads: int | None, fn: str) -> int:
    return default_threads() if threads is None else check_positive_int(fn, "threads", threads)


def _eval_outputs(
    model: Layer, params: Tree, x: Array, state: Tree, batch_size: int, threads: int | None, fn: str
) -> Array:
    """Evaluation-mode outputs of ``x``, consecutive batches spread over threads, each written into
    the one result array as it comes (no list of batch outputs beside it). Through ``model.apply``,
    which keeps no layer's cache longer than that layer runs."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be a positive int, got {batch_size!r}")
    n_threads = _thread_count(threads, fn)
    rows = [slice(i, min(i + batch_size, len(x))) for i in range(0, len(x), batch_size)]
    result: list[Array] = []  # the output array, made by the first batch to finish
    lock = threading.Lock()

    def fill(r: slice) -> None:
        y = model.apply(params, x[r], state=state, ctx=EVAL)
        with lock:
            if not result:
                result.append(np.empty((len(x), *y.shape[1:]), dtype=y.dtype))
        out = result[0]
        if y.shape[1:] != out.shape[1:] or y.dtype != out.dtype:
            raise ValueError(
                f"{fn}: the model gave outputs {y.shape[1:]} {y.dtype} for samples {r.start}-{r.stop - 1} "
                f"but {out.shape[1:]} {out.dtype} for others"
            )
        out[r] = y

    with blas_limit(1):
        run_shards(fill, rows, n_threads)
    return result[0] if result else np.zeros((0,))


def predict(
    model: Layer, params: Tree, x: Array, *, state: Tree = None, batch_size: int = 250, threads: int | None = None
) -> Array:
    """Evaluation-mode outputs for ``x`` (``(N, *in_shape)``), computed in batches; shape ``(N, *out)``.

    Batches run on up to ``threads`` threads (default :func:`fnnet.train.parallel.default_threads`),
    each with single-threaded BLAS; the result does not depend on ``threads``. It may depend on
    ``batch_size`` in the last bits (BLAS's kernels block a product by its size, so a row's sums
    can be taken in another order). The default, 250, keeps a convolutional network's activations
    in the CPU's caches and gives two threads work on as few as 500 samples.

    >>> import numpy as np, fnnet
    >>> from fnnet.train import predict
    >>> model = fnnet.serial(fnnet.Affine(3), fnnet.Softmax())
    >>> params, _ = model.init(fnnet.key(0), (5,))
    >>> y = predict(model, params, np.ones((2500, 5), np.float32), batch_size=1000)   # 3 batches
    >>> y.shape, bool(np.allclose(y.sum(axis=1), 1.0))
    ((2500, 3), True)
    """
    return _eval_outputs(model, params, x, state, batch_size, threads, "predict")


def evaluate(
    model: Layer,
    params: Tree,
    x: Array,
    t: Array,
    *,
    state: Tree = None,
    loss: LossFn = softmax_cross_entropy,
    metrics: Mapping[str, Metric] | None = None,
    batch_size: int = 250,
    threads: int | None = None,
) -> dict[str, float]:
    """Mean loss and the task's metrics of ``model`` in evaluation mode on ``(x, t)``.

    The loss and the metrics are computed once on all outputs, so they are those of the whole set
    whatever ``batch_size`` (RMSE and R², and a loss that skips padding tokens, which averages over
    the tokens it scores across the whole set, not batch by batch). A set in which such a loss
    scores nothing (every target its ``ignore_index``, see :func:`fnnet.losses.scored_targets`) is
    a ValueError naming that ``ignore_index``: its loss would be 0, the best any epoch could show.
    Batches run as in :func:`predict`; the result does not depend on ``threads`` (it may on
    ``batch_size``, in the last bits).

    Args:
        model, params, state: the model, its parameters and its state (BatchNorm statistics).
        x: inputs ``(N, *in_shape)``; t: targets of ``N`` samples, as ``loss`` takes them.
        loss: ``loss(y, t) -> (value, grad)``. Only its value is taken, through
            :func:`fnnet.losses.loss_value`: a loss that takes the keyword ``grad`` (every
            built-in one) is called with ``grad=False`` and computes no gradient.
        metrics: ``name -> metric(y, t)``; default :func:`fnnet.metrics.default_metrics` of ``loss``
            (``{"acc": accuracy}`` for softmax cross-entropy). A metric that does not fit the
            outputs is a ValueError (see :func:`fnnet.metrics.check_metrics`).
    Returns:
        ``{"loss": ..., name: ... for each metric}``, e.g. ``{"loss": 0.31, "acc": 0.91}``.

    >>> import numpy as np, fnnet
    >>> from fnnet.train import evaluate
    >>> model = fnnet.Affine(1)
    >>> params, _ = model.init(fnnet.key(0), (3,))
    >>> x = np.ones((4, 3), np.float32)
    >>> sorted(evaluate(model, params, x, np.zeros(4, np.float32), loss=fnnet.mean_squared_error))
    ['loss', 'mae', 'r2', 'rmse']
    """
    n = len(x)
    if n == 0:
        raise ValueError("evaluate: empty data set")
    if len(t) != n:
        raise ValueError(f"evaluate: x has {n} samples but t has {len(t)}")
    if scored_targets(loss, t) == 0:
        raise ValueError(f"evaluate: {_nothing_to_score(loss, '')}")
    chosen = default_metrics(loss) if metrics is None else dict(metrics)
    y_all = _eval_outputs(model, params, x, state, batch_size, threads, "evaluate")
    result = {"loss": loss_value(loss, y_all, t)}
    if chosen:
        check_metrics(chosen, tuple(y_all.shape[1:]), loss=loss)
        for name, metric in chosen.items():
            result[name] = float(metric(y_all, t))
    return result


@attrs.frozen
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        state: the final training state, or with ``EarlyStopping(restore_best=True)`` the state
            after the best epoch (bit for bit what a run of exactly ``best_epoch`` epochs returns).
        history: every step's loss and every epoch's figures, up to the last epoch trained.
        stopped_epoch: the epoch count at which early stopping ended training; None if it ran
            all epochs.
        best_epoch: the 1-based epoch whose state ``state`` is, with ``restore_best``; else None
            (also when the best epoch lies before a resumed run's start and ``fit`` was not given
            its ``best_state``, and when the monitored figure was NaN in every epoch, so that none
            was best).
        last_state: the state after the last epoch trained (``state`` itself unless
            ``restore_best`` returned an earlier one). To train on, resume from it with
            ``history`` and, when ``best_epoch`` is set, ``best_state=state``.

    >>> import numpy as np, fnnet
    >>> from fnnet.train import FitResult, fit
    >>> x, t = np.ones((8, 2), np.float32), np.zeros(8, np.int64)
    >>> result = fit(fnnet.Affine(2), fnnet.optim.sgd(0.1), (x, t), key=fnnet.key(0), epochs=2,
    ...              batch_size=4, progress="quiet")
    >>> isinstance(result, FitResult), result.stopped_epoch, len(result.history.epochs)
    (True, None, 2)
    >>> result.last_state is result.state
    True
    """

    state: TrainState
    history: History
    stopped_epoch: int | None = None
    best_epoch: int | None = None
    last_state: TrainState = attrs.field(kw_only=True)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`fit`; the training it had done is kept here.

    It is a ``KeyboardInterrupt`` (``except KeyboardInterrupt`` and the interpreter's handling are
    unchanged) with the traceback of the interrupt it replaces; when that interrupt was of a
    subclass of ``KeyboardInterrupt`` (a SIGTERM handler's, say) it is an instance of that class too.

    Attributes:
        state: the state after the last step that completed (the interrupted step left no trace):
            to inspect, evaluate or save.
        epoch_state: the state after the last epoch ``history`` records (the starting state if
            no epoch completed in this run).
        history: the history of the epochs up to ``epoch_state``.
        best_state: with ``EarlyStopping(restore_best=True)``, the best epoch's state so far when
            known (None otherwise).
        step_loss: every step's loss up to ``state``: ``history.step_loss`` followed by those of
            the interrupted epoch.

    ``fit(..., state=err.epoch_state, history=err.history, best_state=err.best_state)`` with
    otherwise the same arguments continues to the bits of a run that was never interrupted.

    >>> import numpy as np, fnnet
    >>> from fnnet.train import TrainingInterrupted, fit
    >>> x = fnnet.key(0).generator().normal(size=(60, 3)).astype(np.float32)
    >>> t = (x[:, 0] > 0).astype(np.int64)
    >>> def run(**kw):
    ...     return fit(fnnet.Affine(2), fnnet.sgd(0.1), (x, t), key=fnnet.key(1), epochs=4, batch_size=20,
    ...                progress="quiet", **kw)
    >>> def ctrl_c_after_epoch_2(state, history):    # as if Ctrl-C were pressed there
    ...     if int(state.epoch) == 2:
    ...         raise KeyboardInterrupt
    >>> try:
    ...     run(on_epoch=ctrl_c_after_epoch_2)
    ... except TrainingInterrupted as e:
    ...     err = e
    >>> int(err.epoch_state.epoch), len(err.history.epochs), len(err.step_loss), isinstance(err, KeyboardInterrupt)
    (2, 2, 6, True)
    >>> rest, full = run(state=err.epoch_state, history=err.history, best_state=err.best_state), run()
    >>> all(np.array_equal(a, b) for a, b in zip(fnnet.tree_leaves(rest.state), fnnet.tree_leaves(full.state)))
    True
    """

    def __init__(
        self,
        message: str,
        *,
        state: TrainState,
        epoch_state: TrainState,
        history: History,
        best_state: TrainState | None,
        step_loss: tuple[float, ...],
    ):
        KeyboardInterrupt.__init__(self, message)
        self.state = state
        self.epoch_state = epoch_state
        self.history = history
        self.best_state = best_state
        self.step_loss = step_loss


def _evaluation_state(fresh: Tree, current: Tree) -> Tree:
    """The model state a set is evaluated from: ``current``, with every part that ``init_state``
    leaves ``None`` (a stateful layer's carried hidden state) back at ``None`` (zeros), so that
    evaluation starts afresh while learned statistics (BatchNorm's) stay."""
    if fresh is None:
        return None
    if type(fresh) is tuple and type(current) is tuple and len(fresh) == len(current):
        return tuple(_evaluation_state(f, c) for f, c in zip(fresh, current))
    return current


def _sample_index(key: Key, size: int, n: int | None) -> Array | None:
    """The sorted indices of the keyed evaluation sample of ``n`` of ``size`` items; None for all."""
    if n is None or n >= size:
        return None
    idx: Array = np.sort(key.generator().choice(size, n, replace=False))
    return idx


def _sample(key: Key, x: Array, t: Array, n: int | None) -> tuple[Array, Array]:
    idx = _sample_index(key, len(x), n)
    return (x, t) if idx is None else (x[idx], t[idx])


def _nothing_to_score(loss: LossFn, name: str) -> str:
    """Why a set (``name``, e.g. ``"val "``, or ``""``) in which ``loss`` scores no target is refused."""
    return (
        f"every {name}target equals the loss's ignore_index={_ignored_target(loss)!r}, "
        f"so the {name}set has no token to score"
    )


def _check_scored(
    loss: LossFn, sets: list[tuple[str, Any]], eval_key: Key, epochs: range, eval_sample: int | None
) -> None:
    """Each set that fit evaluates holds a target that ``loss`` scores, in every epoch's evaluation
    sample, else a one-line ValueError before training (:func:`evaluate` would refuse it after an
    epoch). Only a loss that skips targets (an ``ignore_index``) is checked."""
    if _ignored_target(loss) is None:
        return
    for j, (name, data) in enumerate(sets):
        if data is None:
            continue
        ts = data[1]
        hint = "; pass eval_train=False to train on it without evaluating it" if name == "train" else ""
        if scored_targets(loss, ts) == 0:
            raise ValueError(f"fit: {_nothing_to_score(loss, name + ' ')}{hint}")
        for epoch in epochs if eval_sample is not None and eval_sample < len(ts) else ():
            idx = _sample_index(fold_in(fold_in(eval_key, epoch), j), len(ts), eval_sample)
            if scored_targets(loss, ts[idx]) == 0:
                raise ValueError(
                    f"fit: every {name} target in epoch {epoch + 1}'s evaluation sample of {eval_sample} equals the "
                    f"loss's ignore_index={_ignored_target(loss)!r}, so that sample has no token to score; raise eval_sample"
                )


def _augmented(augment: Augmentation, key: Key, xb: Array) -> Array:
    xa = augment(key, xb)
    if not isinstance(xa, np.ndarray) or xa.shape != xb.shape or xa.dtype != xb.dtype:
        got = f"{xa.shape} {xa.dtype}" if isinstance(xa, np.ndarray) else type(xa).__name__
        raise ValueError(
            f"fit: augment must return an array of the batch's shape and dtype {xb.shape} {xb.dtype}, got {got}"
        )
    return xa


def _check_eval_set(name: str, data: Any) -> None:
    """``val`` / ``test`` must be a pair of arrays of equal length (checked before training rather
    than found after the first epoch; :func:`_check_takes` tries its first item on the model)."""
    if data is None:
        return
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(f"fit: {name} must be a pair (x, t) of arrays, got {type(data).__name__}")
    xs, ts = data
    if not isinstance(xs, np.ndarray) or not isinstance(ts, np.ndarray):
        raise ValueError(f"fit: {name} x and t must be NumPy arrays, got {type(xs).__name__} and {type(ts).__name__}")
    if xs.ndim < 1 or len(xs) == 0:
        raise ValueError(f"fit: {name} must hold at least one sample, got x of shape {xs.shape}")
    if len(xs) != len(ts):
        raise ValueError(f"fit: {name} x has {len(xs)} samples but t has {len(ts)}")


def _batch(a: Array) -> str:
    """``a``'s shape with its batch axis written ``N``: ``(N, 5)``."""
    return shape_text((None, *a.shape[1:]))


def _check_takes(
    model: Layer, state: TrainState, loss: LossFn, train: tuple[Array, Array], sets: list[tuple[str, Any]]
) -> None:
    """The model in evaluation mode takes the first sample of each set, and the loss takes its
    output with that sample's target, else a one-line ValueError (before training, not after it).

    Nothing is judged when the model does not take the first training sample alone (a stateful
    layer holding another batch size's state, BatchNorm before its first statistics): then
    training tells.
    """
    x, t = train
    try:
        y = model.forward(state.params, state.model_state, x[:1], EVAL)[0]
    except ValueError:
        return
    try:
        loss(y, t[:1])
    except ValueError as e:
        raise ValueError(f"fit: the model's outputs {_batch(y)} do not fit the train targets {_batch(t)}: {e}") from None
    for name, data in sets:
        if data is not None:
            xs, ts = data
            try:
                ys = model.forward(state.params, state.model_state, xs[:1], EVAL)[0]
            except ValueError as e:
                raise ValueError(
                    f"fit: the model cannot take the {name} samples of shape {tuple(xs.shape[1:])}: {e}"
                ) from None
            try:
                loss(ys, ts[:1])
            except ValueError as e:
                raise ValueError(f"fit: the model's outputs {_batch(ys)} do not fit the {name} targets {_batch(ts)}: {e}") from None



def _skeleton_difference(like: TrainState, other: TrainState) -> str | None:
    """Where ``other`` differs from ``like`` in tree structure or a leaf's shape or dtype; None if nowhere."""
    found: list[str] = []

    def leaf(path: str, a: Any, b: Any) -> None:
        sa, sb, da, db = np.shape(a), np.shape(b), np.asarray(a).dtype, np.asarray(b).dtype
        if not found and (sa != sb or da != db):
            found.append(f"{path} is {sb} {db} but the state's is {sa} {da}")

    try:
        tree_map_with_path(leaf, like, other)
    except ValueError as e:
        return str(e).removeprefix("tree_map_with_path: ")
    return found[0] if found else None


def _check_best_state(best_state: TrainState, state: TrainState, best_at: int | None, monitor: str) -> None:
    """``best_state`` fits ``state``'s model and optimizer and is of the history's best epoch
    ``best_at`` (counted as the state counts epochs; None when no epoch was best), else a one-line
    ValueError. When ``state`` is itself the best epoch's, an older best state is accepted: a crash
    between saving the checkpoint and saving the best leaves one."""
    diff = _skeleton_difference(state, best_state)
    if diff is not None:
        raise ValueError(f"fit: best_state does not match the starting state's model and optimizer: {diff}")
    for part in ("params", "opt_state", "model_state"):
        if not all_finite(getattr(best_state, part)):
            raise ValueError(f"fit: best_state's {part} holds NaN or infinite values")
    e, start = int(best_state.epoch), int(state.epoch)
    if best_at is None:
        raise ValueError(
            f"fit: best_state was given but the history has no best epoch (no epochs, or {monitor} NaN in every one)"
        )
    if e > start:
        raise ValueError(f"fit: best_state is of epoch {e}, after the starting state's epoch {start}")
    if best_at < start and e != best_at:
        raise ValueError(
            f"fit: best_state is of epoch {e} but the history's best epoch by {monitor} is {best_at}; "
            f"pass the state saved after epoch {best_at}"
        )
    if int(best_state.step) > int(state.step):
        raise ValueError(
            f"fit: best_state has taken {int(best_state.step)} steps, more than the starting state's {int(state.step)}"
        )


@contextlib.contextmanager
def _kept_on_interrupt(kept: Callable[[KeyboardInterrupt], KeyboardInterrupt]) -> Iterator[None]:
    """Raise ``kept(interrupt)`` in place of a ``KeyboardInterrupt`` from the body, with the
    interrupt's own traceback (which shows where it landed)."""
    try:
        yield
    except KeyboardInterrupt as e:
        raise kept(e).with_traceback(e.__traceback__) from None


@contextlib.contextmanager
def _line_ended_on_error(bar: Progress) -> Iterator[None]:
    """End a half-drawn progress bar when training stops with an exception (Ctrl-C included), so
    that the traceback or message starts on its own line."""
    try:
        yield
    except BaseException:
        bar.break_line()
        raise


def fit(
    model: Layer,
    optimizer: GradientTransformation,
    train: tuple[Array, Array],
    *,
    key: Key,
    epochs: int,
    batch_size: int = 100,
    drop_last: bool = False,
    shuffle: bool = True,
    loss: LossFn = softmax_cross_entropy,
    state: TrainState | None = None,
    history: History | None = None,
    best_state: TrainState | None = None,
    val: tuple[Array, Array] | None = None,
    test: tuple[Array, Array] | None = None,
    eval_train: bool = True,
    eval_sample: int | None = None,
    metrics: Mapping[str, Metric] | None = None,
    early_stopping: EarlyStopping | None = None,
    plateau: ReduceOnPlateau | None = None,
    grad_norms: bool = False,
    weight_decay: float = 0.0,
    decay_mask: Any = None,
    progress: str | Progress = "auto",
    on_epoch: Callable[[TrainState, History], None] | None = None,
    shards: int | None = None,
    threads: int | None = None,
    blas_threads: int | None = None,
    augment: Augmentation | None = None,
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs of shuffled mini-batches.

    Args:
        model: any layer; optimizer: a gradient transformation.
        train: ``(x, t)`` with ``x`` of shape ``(N, *in_shape)`` and targets as ``loss`` takes
            them (labels ``(N,)`` or one-hot for softmax; 0/1 labels or values ``(N,)`` or
            ``(N, 1)`` for one output).
        key: the one seed of the run. Params are initialised from ``split(key)[0]``; the shuffle of
            epoch ``e`` uses ``fold_in(shuffle_key, e)`` and step ``s`` uses ``fold_in(step_key, s)``.
        batch_size: samples per step (1: online, ``N``: full batch); ``drop_last`` skips an
            epoch's final short batch (useful with BatchNorm, which cannot normalise a batch of one).
        shuffle: visit the training samples in a keyed random order each epoch (the default), or
            with ``False`` in their order every epoch, as the sequel trains a stateful language
            model on consecutive windows (see :mod:`fnnet.layers.recurrent`).
        epochs: total epochs to reach; when resuming from ``state`` (whose ``epoch`` counts the
            epochs already done), only the remaining ones run.
        loss: ``loss(y, t) -> (value, dvalue/dy)``; the evaluations take its value alone (see
            :func:`evaluate`).
        state, history: resume from these (e.g. loaded with :func:`fnnet.load`); a history of
            epochs without a state is refused.
        best_state: with ``EarlyStopping(restore_best=True)``, when resuming after the history's
            best epoch, that epoch's state (saved in ``on_epoch`` when
            :meth:`fnnet.train.stopping.EarlyStopping.is_best`, or a previous result's ``state``
            resumed from its ``last_state``): the run then returns the bits of an uninterrupted one.
            It must match ``state``'s model and optimizer (tree, shapes, dtypes) and be of that
            best epoch; when ``state`` is itself the best epoch's it is not needed, and an older
            one (left by a crash between saving the checkpoint and saving the best) is ignored.
            Without it such a run warns and, unless a later epoch is better, returns its last
            state with ``best_epoch=None``.
        val, test: ``(x, t)`` pairs evaluated after every epoch (``val_loss``, ``val_acc``, ...);
            checked before training (equal lengths, the model takes their first sample); ``eval_train``
            evaluates the training set too (``train_loss``, ``train_acc``); ``eval_sample``
            evaluates on a keyed random sample of that many items. With a loss that skips an
            ``ignore_index``, a set evaluated with every target ``ignore_index`` (in whole, or in
            an epoch's sample) is a ValueError before the first step, as :func:`evaluate` would
            refuse it; training on such a set is fine (its steps' loss is 0) with
            ``eval_train=False``.
        metrics: ``name -> metric(y, t)`` recorded as ``NAME_<name>`` for each evaluated set;
            default :func:`fnnet.metrics.default_metrics` of ``loss``. Checked against the
            model's output shape before training (accuracy of a one-output model is an error).
        early_stopping: an :class:`fnnet.train.stopping.EarlyStopping` rule, decided after each
            epoch from the history alone; with ``restore_best`` the result holds the best
            epoch's state. A run resumed from ``state`` without its ``history`` decides from the
            epochs it trains.
        plateau: a :class:`fnnet.train.stopping.ReduceOnPlateau` rule: each epoch's updates are
            multiplied by its :meth:`fnnet.train.stopping.ReduceOnPlateau.scale` of the history
            so far, recorded as ``lr_scale``.
        grad_norms: record in ``history.grad_norms``, per step, the norm of the gradient of each
            top-level params entry (one per layer of a serial).
        weight_decay, decay_mask: the book's coupled L2 (see :func:`make_train_step`).
        progress: ``"auto"``, ``"bar"``, ``"lines"`` or ``"quiet"``, or a
            :class:`fnnet.train._progress.Progress` of the caller's. Per-epoch figures measured on
            an ``eval_sample`` are labelled so, e.g. ``test_acc(sample 2000)``.
        on_epoch: called with the state and history after each epoch (e.g. to checkpoint; with
            early stopping, ``early_stopping.is_best(history)`` says whether the state is the best
            so far, to save as ``best_state``: save the checkpoint first, then the best).
        shards, threads, blas_threads: how each batch runs (see :func:`make_train_step`);
            ``threads`` also runs the evaluation batches in parallel and changes no result.
        augment: ``augment(key, x_batch) -> x_batch'`` of the same shape and dtype (e.g.
            ``fnnet.compose(fnnet.RandomCrop(4), fnnet.HorizontalFlip())``), applied to each
            training batch before its step with key ``fold_in(augment_key, step)``, where
            ``augment_key = split(key, 5)[4]`` and ``step`` is the state's step counter (so a
            resumed run sees the same images as an uninterrupted one). Needs image inputs
            ``x`` of shape ``(N, C, H, W)``. Evaluation and :func:`predict` never see it.
    Returns:
        A :class:`FitResult` with the state, the history, and where early stopping stopped and
        which epoch it restored. The epoch dicts hold ``loss`` (the mean training-step loss),
        ``NAME_loss`` and ``NAME_<metric>`` per evaluated set, ``lr_scale`` with a plateau rule,
        and ``time``. On a NaN/inf loss, parameter or optimizer state raises
        :class:`NonFiniteLossError` whose ``state`` is the last state whose loss, parameters and
        optimizer state were all finite, and whose ``history`` ends there (its epochs are those
        that state completed). On Ctrl-C (a ``KeyboardInterrupt`` anywhere in the loop: a step,
        an evaluation, ``on_epoch``) raises :class:`TrainingInterrupted`, a ``KeyboardInterrupt``
        holding the last step's state, and the last epoch's state with its history to resume from.

    >>> import numpy as np, fnnet
    >>> from fnnet.train import EarlyStopping, fit
    >>> x = fnnet.key(0).generator().normal(size=(100, 2)).astype(np.float32)   # (N, 2)
    >>> t = (x[:, 0] > x[:, 1]).astype(np.int64)                                   # (N,) labels
    >>> model = fnnet.serial(fnnet.Affine(16), fnnet.ReLU(), fnnet.Affine(2))
    >>> result = fit(model, fnnet.optim.adam(0.05), (x, t), key=fnnet.key(1), epochs=20,
    ...              batch_size=20, progress="quiet")
    >>> int(result.state.epoch), result.history.metric("train_acc")[-1] > 0.9
    (20, True)

    Resuming after the best epoch with its state gives the uninterrupted run's result:

    >>> xv = fnnet.key(2).generator().normal(size=(100, 2)).astype(np.float32)
    >>> val = (xv, (xv[:, 0] > xv[:, 1]).astype(np.int64))
    >>> def run(epochs, **kw):
    ...     return fit(model, fnnet.optim.adam(0.05), (x, t), key=fnnet.key(1), epochs=epochs, batch_size=20,
    ...                val=val, early_stopping=EarlyStopping(patience=3), progress="quiet", **kw)
    >>> full = run(30)
    >>> part = run(full.best_epoch + 2)          # e.g. interrupted two epochs after the best
    >>> rest = run(30, state=part.last_state, history=part.history, best_state=part.state)
    >>> same = all(np.array_equal(a, b) for a, b in zip(fnnet.tree_leaves(rest.state), fnnet.tree_leaves(full.state)))
    >>> (full.best_epoch, full.stopped_epoch), (rest.best_epoch, rest.stopped_epoch), same
    ((4, 7), (4, 7), True)
    """
    if not isinstance(key, Key):
        raise ValueError(f"fit: key must be a fnnet.Key (e.g. fnnet.key(0)), got {type(key).__name__}")
    if not (isinstance(train, (tuple, list)) and len(train) == 2):
        raise ValueError(f"fit: train must be a pair (x, t) of arrays, got {type(train).__name__}")
    x, t = train
    if not isinstance(x, np.ndarray) or not isinstance(t, np.ndarray):
        raise ValueError(
            f"fit: x and t must be NumPy arrays, got {type(x).__name__} and {type(t).__name__}; "
            "convert with np.asarray(..., dtype=np.float32)"
        )
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"fit: x must hold at least one sample of shape (N, ...), got shape {x.shape}")
    if len(x) != len(t):
        raise ValueError(f"fit: x has {len(x)} samples but t has {len(t)}")
    if not is_int(epochs) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    batch_size = check_positive_int("fit", "batch_size", batch_size)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise ValueError(f"fit: shuffle must be True or False, got {shuffle!r}")
    if drop_last and batch_size > len(x):
        raise ValueError(
            f"fit: batch_size {batch_size} is larger than the {len(x)} training samples and drop_last=True drops "
            "that one short batch, so no step would run; lower batch_size or pass drop_last=False"
        )
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise ValueError(f"fit: early_stopping must be a fnnet.train.EarlyStopping, got {type(early_stopping).__name__}")
    if plateau is not None and not isinstance(plateau, ReduceOnPlateau):
        raise ValueError(f"fit: plateau must be a fnnet.train.ReduceOnPlateau, got {type(plateau).__name__}")
    for name, data in (("val", val), ("test", test)):
        _check_eval_set(name, data)
    if eval_sample is not None:
        check_positive_int("fit", "eval_sample", eval_sample)
    if state is not None and not isinstance(state, TrainState):
        raise ValueError(
            f"fit: state must be a fnnet.train.TrainState, got {type(state).__name__}"
            + ("; fnnet.checkpoint.load returns (state, meta)" if isinstance(state, tuple) else "")
        )
    if best_state is not None:
        if not isinstance(best_state, TrainState):
            raise ValueError(f"fit: best_state must be a fnnet.train.TrainState, got {type(best_state).__name__}")
        if early_stopping is None or not early_stopping.restore_best:
            raise ValueError("fit: best_state is used only with early_stopping=EarlyStopping(restore_best=True)")
    if history is not None and not isinstance(history, History):
        raise ValueError(
            f"fit: history must be a fnnet.train.History, got {type(history).__name__}"
            + ("; History.from_json(d) reads a saved one" if isinstance(history, dict) else "")
        )
    if state is None and history is not None and history.epochs:
        # the rules would decide from epochs a fresh state never trained (with early stopping the
        # old stop decision held at epoch 0, and nothing was trained)
        raise ValueError(
            f"fit: a history of {len(history.epochs)} epochs was given without the state saved with it; "
            "pass state=... too, or no history to start afresh"
        )
    if on_epoch is not None and not callable(on_epoch):
        raise ValueError(f"fit: on_epoch must be callable as on_epoch(state, history), got {type(on_epoch).__name__}")
    if augment is not None:
        if not callable(augment):
            raise ValueError(f"fit: augment must be callable as augment(key, x), got {type(augment).__name__}")
        if x.ndim != 4:
            raise ValueError(f"fit: augment needs image inputs x of shape (N, C, H, W), got shape {x.shape}")
    chosen = default_metrics(loss) if metrics is None else dict(metrics)
    check_metrics(chosen, tuple(model.out_shape(tuple(x.shape[1:]))), loss=loss)
    sets = [("train", (x, t) if eval_train else None), ("val", val), ("test", test)]
    figures = ["loss"] + [f"{name}_{m}" for name, data in sets if data is not None for m in ("loss", *chosen)]
    for rule, what in ((early_stopping, "early_stopping"), (plateau, "plateau")):
        if rule is not None and rule.monitor not in figures:
            raise ValueError(
                f"fit: {what} monitors {rule.monitor!r}, which this run does not record "
                f"(it records {', '.join(figures)}); pass val=(x, t) to monitor val_* figures"
            )
    # split(key, 5)[:4] == split(key, 4): adding the augmentation key changed no earlier stream
    init_key, shuffle_key, step_key, eval_key, augment_key = split(key, 5)
    if state is None:
        state = init_train_state(model, optimizer, init_key, tuple(x.shape[1:]))
    _check_takes(model, state, loss, (x, t), [("val", val), ("test", test)])
    _check_scored(loss, sets, eval_key, range(int(state.epoch), epochs), eval_sample)
    for part in ("params", "opt_state", "model_state"):
        if not all_finite(getattr(state, part)):
            raise ValueError(
                f"fit: the starting state's {part} holds NaN or infinite values"
                + ("; a learning-rate schedule returned one?" if part == "opt_state" else "")
            )
    hist = history if history is not None else History()
    fresh_state = model.init_state(tuple(x.shape[1:]))
    train_step = make_train_step(
        model,
        loss,
        optimizer,
        weight_decay=weight_decay,
        decay_mask=decay_mask,
        shards=shards,
        threads=threads,
        blas_threads=blas_threads,
        grad_norms=grad_norms,
    )
    batches_per_epoch = len(x) // batch_size if drop_last else math.ceil(len(x) / batch_size)
    if isinstance(progress, Progress):
        bar = progress
    else:
        labels = {
            f"{name}_{m}": f"{name}_{m}(sample {eval_sample})"
            for name, data in sets
            if data is not None and eval_sample is not None and eval_sample < len(data[0])
            for m in ("loss", *chosen)
        }
        bar = Progress(epochs, batches_per_epoch, progress, labels=labels)
    good = state  # the latest state whose loss, params and optimizer state were all finite
    start = int(state.epoch)
    stopped: int | None = None
    best: TrainState | None = None  # the state of the best epoch so far, when known
    best_at: int | None = None  # the history's best epoch at the start, counted as the state counts epochs
    # The history's epoch k (1-based) is the state's epoch k + offset: 0 when the history covers the
    # state's epochs, more for a run resumed from a state without its history.
    offset = max(0, start - len(hist.epochs))

    def best_of(decision: StopDecision, h: History) -> int | None:
        """The rule's best epoch counted as the state counts epochs; None if its figure is NaN."""
        k = decision.best_epoch
        assert early_stopping is not None
        return k + offset if k >= 1 and not math.isnan(float(h.epochs[k - 1][early_stopping.monitor])) else None

    if early_stopping is not None and hist.epochs:
        decision = early_stopping.decide(hist)
        best_at = best_of(decision, hist)
        if best_at == start:
            best = state
        if decision.stop and start < epochs:
            stopped = start  # a resumed run that had already stopped trains no further
    if best_state is not None:
        assert early_stopping is not None
        _check_best_state(best_state, state, best_at, early_stopping.monitor)
        if best_at is not None and best_at < start:
            best = best_state

    # the last epoch boundary and its history, replaced as one value so that an interrupt finds
    # them consistent
    saved = (state, hist)
    losses: list[float] = []
    norms: list[tuple[float, ...]] = []

    def interrupted(caught: KeyboardInterrupt) -> TrainingInterrupted:
        assert state is not None
        epoch_state, epoch_hist = saved
        # a step's loss is appended before its state is taken: the losses beyond the state's steps
        # are of a step an interrupt cut short
        n = max(0, int(state.step) - int(epoch_state.step))
        kept = best
        if early_stopping is not None and epoch_hist.epochs:
            # an interrupt inside on_epoch comes before the rule has judged that epoch
            if best_of(early_stopping.decide(epoch_hist), epoch_hist) == int(epoch_state.epoch):
                kept = epoch_state
        restore = early_stopping is not None and early_stopping.restore_best
        resume = "state=err.epoch_state, history=err.history" + (", best_state=err.best_state" if restore else "")
        return _interrupt_class(TrainingInterrupted, caught)(
            f"fit interrupted after step {int(state.step)}: err.state is the state after that step, "
            f"err.epoch_state and err.history those after epoch {int(epoch_state.epoch)}; "
            f"resume bit for bit with fit(..., {resume})",
            state=state,
            epoch_state=epoch_state,
            history=epoch_hist,
            best_state=kept if restore else None,
            step_loss=epoch_hist.step_loss + tuple(losses[:n]),
        )

    # one BLAS switch for the whole loop when steps and evaluation agree on one thread; with more,
    # each step sets its own count and evaluation keeps one
    with (
        _kept_on_interrupt(interrupted),
        blas_limit(1) if blas_threads in (None, 1) else contextlib.nullcontext(),
        _line_ended_on_error(bar),
    ):
        for epoch in range(start, epochs if stopped is None else start):
            t0 = time.perf_counter()
            scale = plateau.scale(hist) if plateau is not None else 1.0
            losses, norms = [], []
            epoch_batches = batches(fold_in(shuffle_key, epoch), x, t, batch_size, shuffle=bool(shuffle), drop_last=drop_last)
            for i, (xb, tb) in enumerate(epoch_batches):
                if augment is not None:
                    xb = _augmented(augment, fold_in(augment_key, int(state.step)), xb)
                try:
                    new, m = train_step(state, xb, tb, fold_in(step_key, int(state.step)), scale)
                except NonFiniteLossError as e:
                    bar.break_line()
                    last = e.state if e.loss_finite else good
                    # the last good state may lie before the previous epoch's last step: keep only
                    # the epochs it completed, so that it resumes with this history
                    done = hist.epochs[: max(0, int(last.epoch) - offset)]
                    hist = History(hist.step_loss + tuple(losses), done, hist.grad_norms + tuple(norms))
                    raise NonFiniteLossError(
                        f"{e} (the error's state is the last good one, from step {int(last.step)})",
                        e.step,
                        last,
                        hist,
                        loss=e.loss,
                        epoch=e.epoch,
                    ) from None
                losses.append(m.loss)
                if grad_norms:
                    norms.append(m.grad_norms)
                good, state = state, new
                bar.batch(epoch, i, m.loss)
            state = state._replace(epoch=counter(epoch + 1))
            figs: dict[str, float] = {"loss": float(np.mean(losses)) if losses else float("nan")}
            ek = fold_in(eval_key, epoch)
            for j, (name, data) in enumerate(sets):
                if data is not None:
                    xs, ts = _sample(fold_in(ek, j), data[0], data[1], eval_sample)
                    res = evaluate(
                        model,
                        state.params,
                        xs,
                        ts,
                        state=_evaluation_state(fresh_state, state.model_state),
                        loss=loss,
                        metrics=chosen,
                        threads=threads,
                    )
                    figs.update({f"{name}_{k}": v for k, v in res.items()})
            if plateau is not None:
                figs["lr_scale"] = scale
            figs["time"] = time.perf_counter() - t0
            hist = History(hist.step_loss + tuple(losses), hist.epochs + (figs,), hist.grad_norms + tuple(norms))
            saved = (state, hist)
            bar.epoch(epoch, {k: v for k, v in figs.items() if k != "time"})
            if on_epoch is not None:
                on_epoch(state, hist)
            if early_stopping is not None:
                decision = early_stopping.decide(hist)
                if best_of(decision, hist) == epoch + 1:
                    best = state
                if decision.stop and epoch + 1 < epochs:
                    stopped = epoch + 1
                    break
    last, best_epoch = state, None
    if early_stopping is not None and early_stopping.restore_best:
        if best is not None:
            state, best_epoch = best, int(best.epoch)
        elif best_at is not None and best_at < start:
            warnings.warn(
                f"fit: the history's best epoch {best_at} lies before this run's start (epoch {start}) and "
                "best_state was not given, so restore_best returns the last state with best_epoch=None; "
                "save the state in on_epoch when early_stopping.is_best(history) and pass it as best_state",
                UserWarning,
                stacklevel=2,
            )
    return FitResult(state, hist, stopped, best_epoch, last_state=last)
