"""Trial and search records, and the search-result file (JSON, never pickle)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import attrs

from fnnet._io import atomic_write_bytes
from fnnet.hparam.space import Distribution, Value, _check_space, _dist_from_json, _dist_to_json
from fnnet.random import Key

__all__ = ["SCORE", "TrialResult", "SearchResult"]

#: The metric every objective reports and searches rank by.
SCORE = "val_acc"

_FORMAT = "fnnet.hparam.SearchResult"
_VERSION = 1


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
