"""The search runner: keyed random search over a space, in this process or on any executor."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed

import numpy as np

from fnnet.errors import _interrupt_class
from fnnet.hparam.records import SCORE, SearchResult, TrialResult
from fnnet.hparam.space import Distribution, Value, _check_space, sample
from fnnet.random import Key, fold_in

__all__ = ["Objective", "SearchInterrupted", "run_trial", "random_search"]

Objective = Callable[[dict[str, Value], Key], Mapping[str, float]]
"""``objective(hparams, key) -> metrics``; the metrics must include ``"val_acc"``.

>>> import fnnet
>>> from fnnet.hparam import Objective, run_trial
>>> def score(hparams: dict, key: fnnet.Key) -> dict[str, float]:
...     return {"val_acc": 1.0 - hparams["lr"]}
>>> objective: Objective = score
>>> run_trial(objective, 0, {"lr": 0.25}, fnnet.key(0)).metrics
{'val_acc': 0.75}
"""


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`random_search`; the trials that had finished are kept here.

    It is a ``KeyboardInterrupt`` (``except KeyboardInterrupt`` and the interpreter's handling are
    unchanged) with the traceback of the interrupt it replaces.

    Attributes:
        trials: the finished trials (ok or failed), in trial order; with an executor there may be
            gaps. ``random_search(..., done=err.trials)`` with the same objective, space, key and
            ``n_trials`` runs only the others and returns the trials of an uninterrupted search.

    >>> import fnnet
    >>> from fnnet.hparam import SearchInterrupted, Uniform, random_search
    >>> def objective(hparams, key):
    ...     if 0.45 < hparams["x"] < 0.55:              # as if Ctrl-C were pressed during this trial
    ...         raise KeyboardInterrupt
    ...     return {"val_acc": hparams["x"]}
    >>> try:
    ...     random_search(objective, {"x": Uniform(0.0, 1.0)}, key=fnnet.key(0), n_trials=10)
    ... except SearchInterrupted as e:
    ...     err = e
    >>> [t.index for t in err.trials]
    [0, 1, 2, 3]
    >>> def objective(hparams, key):
    ...     return {"val_acc": hparams["x"]}
    >>> result = random_search(objective, {"x": Uniform(0.0, 1.0)}, key=fnnet.key(0), n_trials=10, done=err.trials)
    >>> len(result.trials), result.trials[:4] == err.trials
    (10, True)
    """

    def __init__(self, message: str, *, trials: tuple[TrialResult, ...]):
        KeyboardInterrupt.__init__(self, message)
        self.trials = trials


def _error_text(e: BaseException) -> str:
    """``"Type: message"`` on one line (a multi-line message would break ``SearchResult.table``)."""
    message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def run_trial(objective: Objective, index: int, hparams: dict[str, Value], key: Key) -> TrialResult:
    """Run one trial and catch what it raises (this is what workers execute).

    Args:
        objective: ``objective(hparams, key) -> {"val_acc": ..., ...}``.
        index: the trial number; hparams: its hyperparameters; key: its key.
    Returns:
        An ok :class:`TrialResult`, or a failed one recording the exception's type and message
        (also when the objective returns no ``val_acc`` or a non-finite metric).

    >>> import fnnet
    >>> from fnnet.hparam import run_trial
    >>> bad = run_trial(lambda hparams, key: {"loss": 1.0}, 7, {"lr": 0.1}, fnnet.key(7))
    >>> bad.index, bad.status, bad.error
    (7, 'failed', "ValueError: objective must return 'val_acc', got ['loss']")
    """
    t0 = time.perf_counter()
    try:
        out = objective(dict(hparams), key)
        if not isinstance(out, Mapping):
            raise TypeError(f"objective must return a dict of metrics, got {type(out).__name__}")
        metrics: dict[str, float] = {}
        for name, value in out.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"objective returned non-numeric metric {name}={value!r}")
            if not math.isfinite(value):
                raise ValueError(f"objective returned non-finite metric {name}={value!r}")
            metrics[str(name)] = float(value)
        if SCORE not in metrics:
            raise ValueError(f"objective must return {SCORE!r}, got {sorted(metrics)}")
    except Exception as e:
        return TrialResult(index, dict(hparams), {}, "failed", _error_text(e), time.perf_counter() - t0)
    return TrialResult(index, dict(hparams), metrics, "ok", None, time.perf_counter() - t0)


def random_search(
    objective: Objective,
    space: Mapping[str, Distribution],
    *,
    key: Key,
    n_trials: int,
    executor: Executor | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
    done: Sequence[TrialResult] = (),
) -> SearchResult:
    """Random search: ``n_trials`` independent draws from ``space``, each trained and scored.

    Args:
        objective: picklable when an executor is used (module-level function or frozen attrs
            record with ``__call__``); ``objective(hparams, key)`` returns at least ``val_acc``.
        space: ``{name: distribution}``.
        key: the search's key; trial ``i`` draws from and runs with ``fold_in(key, i)``.
        n_trials: number of trials (a Python or NumPy int >= 1).
        executor: any ``concurrent.futures.Executor`` (process pool, Dask's
            ``client.get_executor()``, ...); ``None`` runs the trials here, one after another.
        on_trial: called in this process with each finished trial, in completion order (progress).
        done: trials of this same search finished before (an interrupted search's
            :attr:`SearchInterrupted.trials`, or a saved result's ``trials``): kept as they are and
            not run again (nor passed to ``on_trial``). A trial whose index is not below
            ``n_trials``, or whose hyperparameters are not the ones this search draws for its
            index, is a ValueError.
    Returns:
        A :class:`SearchResult` with the trials in trial order, whatever order they finished in.
        A trial that raises, or whose worker fails, is recorded as failed and the search goes on.
    Raises:
        RuntimeError: the executor refuses the first trial (it is shut down, or a process pool
            broken by an earlier worker's death); nothing has run.
        SearchInterrupted: Ctrl-C stops the search (it does not fail one trial); the exception,
            a ``KeyboardInterrupt``, holds the trials that finished (also passed to
            ``on_trial``), to go on with ``done=err.trials``. The trials an executor has not
            started are cancelled. An exception from ``on_trial`` stops the search as it is.

    >>> import fnnet
    >>> from fnnet.hparam import LogUniform, random_search
    >>> def objective(hparams, key):
    ...     return {"val_acc": 1.0 - abs(hparams["lr"] - 1e-3)}
    >>> result = random_search(objective, {"lr": LogUniform(1e-5, 1e-1)}, key=fnnet.key(0), n_trials=20)
    >>> len(result.trials), result.best.ok, result.best.metrics["val_acc"] > 0.99
    (20, True, True)
    """
    _check_space(space, "random_search")
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"random_search: n_trials must be a positive int, got {n_trials!r}")
    n_trials = int(n_trials)
    if not isinstance(key, Key):
        raise ValueError(f"random_search: key must be a fnnet Key, got {key!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ValueError(f"random_search: executor must be a concurrent.futures.Executor or None, got {executor!r}")
    if on_trial is not None and not callable(on_trial):
        raise ValueError(f"random_search: on_trial must be callable or None, got {on_trial!r}")
    space = dict(space)
    keys = [fold_in(key, i) for i in range(n_trials)]
    points = [sample(space, k) for k in keys]
    results: list[TrialResult | None] = [None] * n_trials
    for r in done:
        if not isinstance(r, TrialResult):
            raise ValueError(f"random_search: done must hold TrialResults, got {type(r).__name__}")
        if not r.index < n_trials:
            raise ValueError(f"random_search: done holds trial {r.index}, beyond this search's {n_trials} trials")
        if r.hparams != points[r.index]:
            raise ValueError(
                f"random_search: done's trial {r.index} has hyperparameters {r.hparams}, but this search draws "
                f"{points[r.index]} for it: it is of another search (key or space)"
            )
        if results[r.index] is not None:
            raise ValueError(f"random_search: done holds trial {r.index} twice")
        results[r.index] = r
    todo = [i for i in range(n_trials) if results[i] is None]

    def finished(r: TrialResult) -> None:
        results[r.index] = r
        if on_trial is not None:
            on_trial(r)

    pending: dict[Future[TrialResult], int] = {}
    try:
        if executor is None:
            for i in todo:
                finished(run_trial(objective, i, points[i], keys[i]))
        else:
            for n, i in enumerate(todo):
                try:
                    pending[executor.submit(run_trial, objective, i, points[i], keys[i])] = i
                except RuntimeError as e:
                    if n == 0:  # shut down or broken before the search: no trial of ours failed
                        raise RuntimeError(
                            f"random_search: the executor refused the first trial ({_error_text(e)}); "
                            "is it shut down or broken?"
                        ) from e
                    finished(TrialResult(i, points[i], {}, "failed", _error_text(e)))
                except Exception as e:  # e.g. the objective cannot be serialised
                    finished(TrialResult(i, points[i], {}, "failed", _error_text(e)))
            for fut in as_completed(pending):
                i = pending[fut]
                try:
                    r = fut.result()
                except Exception as e:  # the worker died or the result could not travel back
                    r = TrialResult(i, points[i], {}, "failed", _error_text(e))
                finished(r)
    except BaseException as e:
        # Ctrl-C, or on_trial raised: drop the trials not started yet, or the executor's
        # shutdown would wait for all of them to run
        for fut in pending:
            fut.cancel()
        if not isinstance(e, KeyboardInterrupt):
            raise
        kept = tuple(r for r in results if r is not None)
        raise _interrupt_class(SearchInterrupted, e)(
            f"random_search interrupted: kept err.trials ({len(kept)} of {n_trials} trials finished); "
            "run the others with random_search(..., done=err.trials)",
            trials=kept,
        ).with_traceback(e.__traceback__) from None
    return SearchResult(tuple(r for r in results if r is not None), space, key, repr(objective))
