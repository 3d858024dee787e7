"""Hyperparameter search (the book's section 6.5): keyed random search that scales out.

The book tunes the learning rate and the weight decay of a six-layer MLP by random search: draw
``lr = 10^U(-6, -2)`` and ``weight_decay = 10^U(-8, -4)``, train on 500 samples of which 20 % are
held out for validation, and keep the settings with the best validation accuracy. Here::

    space = {"lr": LogUniform(1e-6, 1e-2), "weight_decay": LogUniform(1e-8, 1e-4)}
    result = random_search(MLPTrial(epochs=50), space, key=fnnet.key(0), n_trials=100)
    print(result.table(top=20))
    result.save("search.json")

Trial ``i`` draws its hyperparameters from ``fold_in(key, i)`` and trains with that key, so a search
is a pure function of its key: the same seed gives the same trials, however they are run.

Scaling out. ``random_search`` accepts any :class:`concurrent.futures.Executor`; it only calls
``executor.submit``. The objective must then be picklable: a module-level function or a frozen
attrs record with ``__call__`` (like :class:`MLPTrial`, which loads its data by name inside the
worker, so no arrays travel). On one machine::

    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(4) as ex:
        result = random_search(MLPTrial(), space, key=fnnet.key(0), n_trials=100, executor=ex)

On a Dask cluster (optional extra: ``pip install 'fnnet[dask]'``, i.e. ``dask[distributed]``; the
workers need fnnet installed too), the same call with the client's executor::

    from distributed import Client
    with Client("tcp://scheduler:8786") as client:
        result = random_search(MLPTrial(), space, key=fnnet.key(0), n_trials=100,
                               executor=client.get_executor())

Bits and BLAS threads. A trial's result is a function of its key and of the floating-point
order of its matrix products, which OpenBLAS changes with its thread count. Dask's workers run one
BLAS thread (``OPENBLAS_NUM_THREADS=1``, set by the nanny); a process pool's workers inherit the
parent's setting. To reproduce a cluster's trials bit for bit locally, or a local search in a
pool, run every process with the same setting, preferably 1: set ``OPENBLAS_NUM_THREADS=1``
(and ``OMP_``/``MKL_NUM_THREADS``) before NumPy is imported. For these small MLPs one thread is
also several times faster than several, and oversubscribing cores with multi-threaded workers
is far slower still (see ``examples/ch06_hyperparameter_optimization.py`` for measurements).
In pool workers also set ``FNNET_NUM_THREADS=1``: fnnet otherwise spreads evaluation batches
(and the shards of convolutional models) over threads in every worker; that changes speed only.

fnnet itself never imports Dask. The executors pickle the objective and the trial arguments to ship
them to workers (that is their transport); results are saved as JSON, never pickled.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, as_completed
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union

import attrs
import numpy as np

from fnnet._io import atomic_write_bytes
from fnnet.typing import Array
from fnnet.random import Key, fold_in, split
from fnnet.random import key as make_key

__all__ = [
    "LogUniform",
    "Uniform",
    "IntUniform",
    "Choice",
    "Distribution",
    "Value",
    "Objective",
    "sample",
    "TrialResult",
    "SearchResult",
    "random_search",
    "run_trial",
    "MLPTrial",
    "MLP_TRIAL_OPTIMIZERS",
]

#: A hyperparameter value: what a distribution draws (JSON scalars).
Value = Union[float, int, str]

#: ``objective(hparams, key) -> metrics``; the metrics must include ``"val_acc"``.
Objective = Callable[[dict[str, Value], Key], Mapping[str, float]]

#: The metric every objective reports and searches rank by.
SCORE = "val_acc"

_FORMAT = "fnnet.hparam.SearchResult"
_VERSION = 1


# --------------------------------------------------------------------------- distributions


def _real(value: Any) -> Any:
    """Convert int/float/NumPy reals to float; leave anything else for the validator to reject."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return value


def _integer(value: Any) -> Any:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    return value


def _finite(inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, float) or not math.isfinite(value):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a finite number, got {value!r}")


def _int_field(inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be an int, got {value!r}")


def _check_order(inst: Any, strict: bool) -> None:
    if (inst.low >= inst.high) if strict else (inst.low > inst.high):
        rel = "<" if strict else "<="
        raise ValueError(f"{type(inst).__name__}: need low {rel} high, got low={inst.low!r}, high={inst.high!r}")


@attrs.frozen
class LogUniform:
    """``10^U(log10 low, log10 high)``: uniform in the exponent, for scales such as learning rates.

    The book's ``10 ** np.random.uniform(-6, -2)`` is ``LogUniform(1e-6, 1e-2)``. Draws lie in
    ``[low, high]``; needs ``0 < low < high``.
    """

    low: float = attrs.field(converter=_real, validator=_finite)
    high: float = attrs.field(converter=_real, validator=_finite)

    def __attrs_post_init__(self) -> None:
        if self.low <= 0:
            raise ValueError(f"LogUniform: low must be > 0, got {self.low!r}")
        _check_order(self, strict=True)

    def draw(self, key: Key) -> float:
        """One draw (a float in ``[low, high]``) from ``key``."""
        exponent = key.generator().uniform(math.log10(self.low), math.log10(self.high))
        # 10**x can round past an end point by one ulp; keep draws inside the stated range.
        return min(max(float(10.0**exponent), self.low), self.high)

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a possible draw."""
        return isinstance(value, float) and self.low <= value <= self.high


@attrs.frozen
class Uniform:
    """``U(low, high)``: a float in ``[low, high)``; needs ``low < high``."""

    low: float = attrs.field(converter=_real, validator=_finite)
    high: float = attrs.field(converter=_real, validator=_finite)

    def __attrs_post_init__(self) -> None:
        _check_order(self, strict=True)

    def draw(self, key: Key) -> float:
        """One draw (a float in ``[low, high)``) from ``key``."""
        return float(key.generator().uniform(self.low, self.high))

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a possible draw."""
        return isinstance(value, float) and self.low <= value <= self.high


@attrs.frozen
class IntUniform:
    """A uniform integer in ``[low, high]`` (both ends included); needs ``low <= high``."""

    low: int = attrs.field(converter=_integer, validator=_int_field)
    high: int = attrs.field(converter=_integer, validator=_int_field)

    def __attrs_post_init__(self) -> None:
        _check_order(self, strict=False)

    def draw(self, key: Key) -> int:
        """One draw (an int in ``[low, high]``) from ``key``."""
        return int(key.generator().integers(self.low, self.high, endpoint=True))

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a possible draw."""
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


def _to_options(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_integer(_real(v)) if not isinstance(v, (int, float, str)) else v for v in value)
    return value


def _check_options(inst: object, attribute: attrs.Attribute[tuple[Value, ...]], value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise ValueError(f"Choice: options must be a non-empty list or tuple, got {value!r}")
    for v in value:
        ok = isinstance(v, (str, int)) or (isinstance(v, float) and math.isfinite(v))
        if not ok or isinstance(v, bool):
            raise ValueError(f"Choice: options must be str, int or finite float, got {v!r}")


@attrs.frozen
class Choice:
    """One of ``options`` (str, int or float), each equally likely."""

    options: tuple[Value, ...] = attrs.field(converter=_to_options, validator=_check_options)

    def draw(self, key: Key) -> Value:
        """One draw (an element of ``options``) from ``key``."""
        return self.options[int(key.generator().integers(len(self.options)))]

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a possible draw (same value and type as an option)."""
        return any(type(value) is type(o) and value == o for o in self.options)


#: A search-space dimension.
Distribution = Union[LogUniform, Uniform, IntUniform, Choice]
_DISTRIBUTIONS: dict[str, type[Distribution]] = {
    "LogUniform": LogUniform,
    "Uniform": Uniform,
    "IntUniform": IntUniform,
    "Choice": Choice,
}


def _check_space(space: Mapping[str, Distribution], where: str) -> None:
    if not isinstance(space, Mapping) or not space:
        raise ValueError(f"{where}: space must be a non-empty dict of name -> distribution, got {space!r}")
    for name, dist in space.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: space names must be non-empty strings, got {name!r}")
        if not isinstance(dist, tuple(_DISTRIBUTIONS.values())):
            raise ValueError(
                f"{where}: space[{name!r}] must be one of {sorted(_DISTRIBUTIONS)}, got {type(dist).__name__}"
            )


def _name_stream(name: str) -> int:
    # A stable hash of the name (not Python's salted hash()): each hyperparameter has its own
    # stream, so adding or reordering dimensions leaves the other draws unchanged.
    return zlib.crc32(name.encode("utf-8"))


def sample(space: Mapping[str, Distribution], key: Key) -> dict[str, Value]:
    """Draw one point of ``space`` (pure: the same key gives the same point).

    Args:
        space: ``{name: distribution}``, e.g. ``{"lr": LogUniform(1e-6, 1e-2)}``.
        key: the random key; ``space[name]`` draws from ``fold_in(key, crc32(name))``, so objectives
            that need randomness should ``split`` the key rather than ``fold_in`` small ints.
    Returns:
        ``{name: value}`` in the order of ``space``.
    """
    _check_space(space, "sample")
    return {name: dist.draw(fold_in(key, _name_stream(name))) for name, dist in space.items()}


def _dist_to_json(dist: Distribution) -> dict[str, Any]:
    return {"type": type(dist).__name__, **{k: list(v) if isinstance(v, tuple) else v for k, v in
                                            attrs.asdict(dist).items()}}


def _dist_from_json(d: Any) -> Distribution:
    if not isinstance(d, dict) or d.get("type") not in _DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {d!r}")
    cls = _DISTRIBUTIONS[d["type"]]
    fields = {k: v for k, v in d.items() if k != "type"}
    names = {a.name for a in attrs.fields(cls)}
    if set(fields) != names:
        raise ValueError(f"{d['type']} needs fields {sorted(names)}, got {sorted(fields)}")
    return cls(**fields)


# --------------------------------------------------------------------------- results


def _check_trial(inst: TrialResult) -> None:
    where = f"TrialResult {inst.index}"
    if isinstance(inst.index, bool) or not isinstance(inst.index, int) or inst.index < 0:
        raise ValueError(f"TrialResult: index must be a non-negative int, got {inst.index!r}")
    if not isinstance(inst.hparams, dict) or not all(isinstance(k, str) for k in inst.hparams):
        raise ValueError(f"{where}: hparams must be a dict with str keys, got {inst.hparams!r}")
    if not isinstance(inst.metrics, dict):
        raise ValueError(f"{where}: metrics must be a dict, got {inst.metrics!r}")
    for k, v in inst.metrics.items():
        if not isinstance(k, str) or not isinstance(v, float) or not math.isfinite(v):
            raise ValueError(f"{where}: metrics must map str to finite floats, got {k!r}: {v!r}")
    if inst.status == "ok":
        if SCORE not in inst.metrics:
            raise ValueError(f"{where}: an ok trial needs metric {SCORE!r}, got {sorted(inst.metrics)}")
        if inst.error is not None:
            raise ValueError(f"{where}: an ok trial has no error, got {inst.error!r}")
    elif inst.status == "failed":
        if not isinstance(inst.error, str):
            raise ValueError(f"{where}: a failed trial needs an error message, got {inst.error!r}")
    else:
        raise ValueError(f"{where}: status must be 'ok' or 'failed', got {inst.status!r}")
    if not isinstance(inst.seconds, float) or not (inst.seconds >= 0 and math.isfinite(inst.seconds)):
        raise ValueError(f"{where}: seconds must be a finite float >= 0, got {inst.seconds!r}")


@attrs.frozen
class TrialResult:
    """One trial: its hyperparameters and metrics, or the error that stopped it.

    Attributes:
        index: the trial number ``i`` (its key is ``fold_in(search_key, i)``).
        hparams: the drawn hyperparameters.
        metrics: what the objective returned (finite floats, including ``"val_acc"``); empty if failed.
        status: ``"ok"`` or ``"failed"``.
        error: ``"ErrorType: message"`` for a failed trial, else ``None``.
        seconds: the time the objective ran (0.0 if it never started).
    """

    index: int
    hparams: dict[str, Value]
    metrics: dict[str, float]
    status: Literal["ok", "failed"]
    error: str | None = None
    seconds: float = 0.0

    def __attrs_post_init__(self) -> None:
        _check_trial(self)

    @property
    def ok(self) -> bool:
        """Whether the trial finished and reported metrics."""
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "index": self.index,
            "hparams": dict(self.hparams),
            "metrics": dict(self.metrics),
            "status": self.status,
            "error": self.error,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, d: Any) -> TrialResult:
        """Inverse of :meth:`to_json` (validated: raises ``ValueError``)."""
        if not isinstance(d, dict) or set(d) != {"index", "hparams", "metrics", "status", "error", "seconds"}:
            raise ValueError(f"not a trial record: {d!r}")
        seconds = d["seconds"]
        return cls(d["index"], d["hparams"], d["metrics"], d["status"], d["error"],
                   float(seconds) if isinstance(seconds, int) and not isinstance(seconds, bool) else seconds)


def _check_result(inst: SearchResult) -> None:
    _check_space(inst.space, "SearchResult")
    if not isinstance(inst.key, Key):
        raise ValueError(f"SearchResult: key must be a Key, got {inst.key!r}")
    for i, trial in enumerate(inst.trials):
        if not isinstance(trial, TrialResult):
            raise ValueError(f"SearchResult: trials[{i}] must be a TrialResult, got {type(trial).__name__}")
        if trial.index != i:
            raise ValueError(f"SearchResult: trials must be in order, trials[{i}] has index {trial.index}")
        if list(trial.hparams) != list(inst.space):
            raise ValueError(
                f"SearchResult: trial {i} has hyperparameters {list(trial.hparams)}, the space has {list(inst.space)}"
            )
        for name, value in trial.hparams.items():
            if not inst.space[name].contains(value):
                raise ValueError(f"SearchResult: trial {i}: {name}={value!r} is outside {inst.space[name]!r}")


def _to_trials(trials: Any) -> tuple[TrialResult, ...]:
    return tuple(trials)


def _fmt_value(v: Value) -> str:
    if isinstance(v, float):
        return f"{v:.3e}" if v != 0 and not 1e-2 <= abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


@attrs.frozen
class SearchResult:
    """All trials of a search, in trial order.

    Attributes:
        trials: one :class:`TrialResult` per trial, ``trials[i].index == i``.
        space: the search space the trials were drawn from.
        key: the search's key.
        objective: a description of the objective (its repr).
    """

    trials: tuple[TrialResult, ...] = attrs.field(converter=_to_trials)
    space: dict[str, Distribution]
    key: Key
    objective: str = ""

    def __attrs_post_init__(self) -> None:
        _check_result(self)

    @property
    def ok(self) -> tuple[TrialResult, ...]:
        """The trials that finished."""
        return tuple(t for t in self.trials if t.ok)

    @property
    def failed(self) -> tuple[TrialResult, ...]:
        """The trials that raised."""
        return tuple(t for t in self.trials if not t.ok)

    def sorted(self) -> tuple[TrialResult, ...]:
        """All trials by ``val_acc`` descending (ties: lower index first), failed trials last."""
        return tuple(sorted(self.ok, key=lambda t: (-t.metrics[SCORE], t.index))) + self.failed

    @property
    def best(self) -> TrialResult:
        """The trial with the highest ``val_acc`` (the earliest on ties).

        Raises:
            ValueError: if every trial failed.
        """
        if not self.ok:
            raise ValueError(f"SearchResult.best: all {len(self.trials)} trials failed")
        return self.sorted()[0]

    def table(self, top: int | None = None) -> str:
        """A text table of the trials, best first (at most ``top`` rows), for printing."""
        rows = self.sorted()[:top] if top is not None else self.sorted()
        metric_names = sorted({m for t in self.ok for m in t.metrics},
                              key=lambda m: (m != SCORE, not m.endswith("_acc"), m))
        header = ["rank", "trial", *metric_names, *self.space, "seconds", "status"]
        body = []
        for rank, t in enumerate(rows, 1):
            metrics = [f"{t.metrics[m]:.4f}" if m in t.metrics else "-" for m in metric_names]
            status = "ok" if t.ok else f"failed: {t.error}"
            if len(status) > 60:
                status = status[:57] + "..."
            hps = [_fmt_value(t.hparams[n]) for n in self.space]
            body.append([str(rank), str(t.index), *metrics, *hps, f"{t.seconds:.2f}", status])
        widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header) - 1)]
        lines = []
        for r in [header, *body]:
            cells = [c.rjust(w) if j >= 2 else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))]
            lines.append("  ".join([*cells, r[-1]]))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the file format of :meth:`save`)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "key": {"seed": self.key.seed, "path": list(self.key.path)},
            "space": {name: _dist_to_json(d) for name, d in self.space.items()},
            "objective": self.objective,
            "trials": [t.to_json() for t in self.trials],
        }

    @classmethod
    def from_json(cls, d: Any) -> SearchResult:
        """Inverse of :meth:`to_json`; validates everything.

        Raises:
            ValueError: naming what is wrong.
        """
        try:
            if not isinstance(d, dict):
                raise ValueError(f"expected a JSON object, got {type(d).__name__}")
            if d.get("format") != _FORMAT or d.get("version") != _VERSION:
                raise ValueError(f"not a {_FORMAT} version {_VERSION} record "
                                 f"(format={d.get('format')!r}, version={d.get('version')!r})")
            if set(d) != {"format", "version", "key", "space", "objective", "trials"}:
                raise ValueError(f"unexpected fields {sorted(d)}")
            k = d["key"]
            if not isinstance(k, dict) or set(k) != {"seed", "path"} or not isinstance(k["path"], list):
                raise ValueError(f"bad key {k!r}")
            key = Key(k["seed"], tuple(k["path"]))
            if not isinstance(d["space"], dict):
                raise ValueError(f"space must be an object, got {d['space']!r}")
            space = {name: _dist_from_json(v) for name, v in d["space"].items()}
            if not isinstance(d["trials"], list):
                raise ValueError(f"trials must be a list, got {type(d['trials']).__name__}")
            if not isinstance(d["objective"], str):
                raise ValueError(f"objective must be a string, got {d['objective']!r}")
            trials = tuple(TrialResult.from_json(t) for t in d["trials"])
            return cls(trials, space, key, d["objective"])
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"SearchResult.from_json: {e}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` atomically (a temporary file, then a rename)."""
        path = Path(path)
        text = json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SearchResult:
        """Read a result written by :meth:`save` (validated: raises ``ValueError`` naming the file)."""

        def no_constants(name: str) -> Any:
            raise ValueError(f"non-finite number {name}")

        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=no_constants)
            return cls.from_json(d)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"SearchResult.load: {os.fspath(path)}: {e}") from None


# --------------------------------------------------------------------------- the search


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def run_trial(objective: Objective, index: int, hparams: dict[str, Value], key: Key) -> TrialResult:
    """Run one trial and catch what it raises (this is what workers execute).

    Args:
        objective: ``objective(hparams, key) -> {"val_acc": ..., ...}``.
        index: the trial number; hparams: its hyperparameters; key: its key.
    Returns:
        An ok :class:`TrialResult`, or a failed one recording the exception's type and message
        (also when the objective returns no ``val_acc`` or a non-finite metric).
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
) -> SearchResult:
    """Random search: ``n_trials`` independent draws from ``space``, each trained and scored.

    Args:
        objective: picklable when an executor is used (module-level function or frozen attrs
            record with ``__call__``); ``objective(hparams, key)`` returns at least ``val_acc``.
        space: ``{name: distribution}``.
        key: the search's key; trial ``i`` draws from and runs with ``fold_in(key, i)``.
        n_trials: number of trials (>= 1).
        executor: any ``concurrent.futures.Executor`` (process pool, Dask's
            ``client.get_executor()``, ...); ``None`` runs the trials here, one after another.
        on_trial: called in this process with each finished trial, in completion order (progress).
    Returns:
        A :class:`SearchResult` with the trials in trial order, whatever order they finished in.
        A trial that raises, or whose worker fails, is recorded as failed and the search goes on.
    """
    _check_space(space, "random_search")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"random_search: n_trials must be a positive int, got {n_trials!r}")
    if not isinstance(key, Key):
        raise ValueError(f"random_search: key must be a fnnet Key, got {key!r}")
    space = dict(space)
    keys = [fold_in(key, i) for i in range(n_trials)]
    points = [sample(space, k) for k in keys]
    results: list[TrialResult | None] = [None] * n_trials

    def done(r: TrialResult) -> None:
        results[r.index] = r
        if on_trial is not None:
            on_trial(r)

    if executor is None:
        for i in range(n_trials):
            done(run_trial(objective, i, points[i], keys[i]))
    else:
        pending: dict[Future[TrialResult], int] = {}
        for i in range(n_trials):
            try:
                pending[executor.submit(run_trial, objective, i, points[i], keys[i])] = i
            except Exception as e:  # e.g. the objective cannot be serialised
                done(TrialResult(i, points[i], {}, "failed", _error_text(e)))
        for fut in as_completed(pending):
            i = pending[fut]
            try:
                r = fut.result()
            except Exception as e:  # the worker died or the result could not travel back
                r = TrialResult(i, points[i], {}, "failed", _error_text(e))
            done(r)
    return SearchResult(tuple(r for r in results if r is not None), space, key, repr(objective))


# --------------------------------------------------------------------------- the book's experiment

#: Optimizer names :class:`MLPTrial` accepts (functions of ``fnnet.optim`` taking the learning rate).
MLP_TRIAL_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")

_MLP_HPARAMS = frozenset({"lr", "weight_decay"})


def _positive_int(inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a positive int, got {value!r}")


def _to_sizes(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _check_hidden(inst: object, attribute: attrs.Attribute[tuple[int, ...]], value: tuple[int, ...]) -> None:
    if not isinstance(value, tuple) or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in value):
        raise ValueError(f"MLPTrial: hidden_sizes must be positive ints, got {value!r}")


def _check_fraction(inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, float) or not 0.0 < value < 1.0:
        raise ValueError(f"MLPTrial: val_fraction must be in (0, 1), got {value!r}")


def _check_optimizer(inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in MLP_TRIAL_OPTIMIZERS:
        raise ValueError(f"MLPTrial: optimizer must be one of {MLP_TRIAL_OPTIMIZERS}, got {value!r}")


def _check_split_seed(inst: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"MLPTrial: split_seed must be None or a non-negative int, got {value!r}")


@lru_cache(maxsize=4)
def _training_data(name: str) -> tuple[Array, Array]:
    """The training part of data set ``name``, read once per process (read-only arrays)."""
    from fnnet.datasets import load_mnist

    (x, t), _ = load_mnist(name)
    x, t = np.array(x), np.array(t)
    x.flags.writeable = False
    t.flags.writeable = False
    return x, t


@attrs.frozen
class MLPTrial:
    """The book's experiment as a picklable objective: an MLP trained on a few samples.

    ``trial(hparams, key)`` takes the first ``n_train`` training samples of data set ``data``
    (loaded by name inside the worker; the test set is never touched), holds out
    ``round(val_fraction * n_train)`` of them for validation, trains ``mlp(hidden_sizes)`` with
    ``optimizer(hparams["lr"])`` and the coupled L2 ``hparams.get("weight_decay", 0)`` for ``epochs``
    epochs, and returns the final ``{"val_acc", "train_acc", "loss"}``. Deterministic in ``key``.

    Attributes:
        data: a ``fnnet.datasets.load_mnist`` name.
        n_train: samples used, validation included (the book: 500).
        val_fraction: the held-out share (the book: 0.2).
        hidden_sizes: the MLP's hidden layers (the book: six of 100).
        activation: the hidden activation (He init for ReLU, as the book).
        epochs, batch_size: training length (the book: 50 epochs of 100).
        optimizer: one of :data:`MLP_TRIAL_OPTIMIZERS` (the book: SGD).
        split_seed: ``None`` (default): each trial carves its own validation split from its key;
            an int: every trial uses the same split from ``key(split_seed)``, as the book does.
    """

    data: str = "mnist-small"
    n_train: int = attrs.field(default=500, validator=_positive_int)
    val_fraction: float = attrs.field(default=0.2, converter=_real, validator=_check_fraction)
    hidden_sizes: tuple[int, ...] = attrs.field(default=(100,) * 6, converter=_to_sizes, validator=_check_hidden)
    activation: str = "relu"
    epochs: int = attrs.field(default=50, validator=_positive_int)
    batch_size: int = attrs.field(default=100, validator=_positive_int)
    optimizer: str = attrs.field(default="sgd", validator=_check_optimizer)
    split_seed: int | None = attrs.field(default=None, validator=_check_split_seed)

    def __attrs_post_init__(self) -> None:
        n_val = self.n_val
        if not 1 <= n_val < self.n_train:
            raise ValueError(
                f"MLPTrial: val_fraction {self.val_fraction} of n_train {self.n_train} leaves "
                f"{n_val} validation and {self.n_train - n_val} training samples; need at least 1 each"
            )

    @property
    def n_val(self) -> int:
        """Number of held-out validation samples."""
        return int(round(self.val_fraction * self.n_train))

    def __call__(self, hparams: Mapping[str, Value], key: Key) -> dict[str, float]:
        """Train with ``hparams`` (``"lr"``, optional ``"weight_decay"``) and key ``key``.

        Returns:
            ``{"val_acc": ..., "train_acc": ..., "loss": ...}`` after the last epoch.
        """
        from fnnet import optim
        from fnnet.datasets import train_val_split
        from fnnet.models import mlp
        from fnnet.train import fit

        unknown = set(hparams) - _MLP_HPARAMS
        if unknown or "lr" not in hparams:
            raise ValueError(
                f"MLPTrial: hparams must have 'lr' and may have 'weight_decay', got {sorted(hparams)}"
            )
        lr, wd = float(hparams["lr"]), float(hparams.get("weight_decay", 0.0))
        x_all, t_all = _training_data(self.data)
        if self.n_train > len(x_all):
            raise ValueError(f"MLPTrial: n_train {self.n_train} exceeds the {len(x_all)} samples of {self.data!r}")
        x, t = x_all[: self.n_train], t_all[: self.n_train]
        split_key, fit_key = split(key)
        if self.split_seed is not None:
            split_key = make_key(self.split_seed)
        (x_tr, t_tr), (x_val, t_val) = train_val_split(split_key, x, t, val_size=self.n_val)
        make_optimizer: Callable[[float], Any] = getattr(optim, self.optimizer)
        model = mlp(self.hidden_sizes, 10, activation=self.activation)
        res = fit(model, make_optimizer(lr), (x_tr, t_tr), key=fit_key, epochs=self.epochs,
                  batch_size=self.batch_size, val=(x_val, t_val), weight_decay=wd, progress="quiet")
        last = res.history.epochs[-1]
        return {"val_acc": last["val_acc"], "train_acc": last["train_acc"], "loss": last["loss"]}
