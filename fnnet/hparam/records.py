"""Trial and search records, and the search-result file (JSON, never pickle)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import attrs

from fnnet._io import atomic_write_bytes
from fnnet._json import read_json
from fnnet.errors import FormatError
from fnnet.hparam.space import Distribution, Value, _check_space, _dist_from_json, _dist_to_json, _short
from fnnet.random import Key

__all__ = ["SCORE", "TrialResult", "SearchResult"]

SCORE = "val_acc"
"""The metric every objective reports and searches rank by.

>>> from fnnet.hparam.records import SCORE, TrialResult
>>> SCORE
'val_acc'
>>> TrialResult(0, {"lr": 0.1}, {SCORE: 0.9}, "ok", None, 1.0).ok
True
"""

_FORMAT = "fnnet.hparam.SearchResult"
_VERSION = 1
_RESULT_FIELDS = frozenset({"format", "version", "key", "space", "objective", "trials"})
_TRIAL_FIELDS = frozenset({"index", "hparams", "metrics", "status", "error", "seconds"})
# A result file is about 300 bytes per trial and 4 levels deep; these bounds leave room to spare.
_MAX_FILE_BYTES = 256 << 20
_MAX_DEPTH = 8
_MAX_NAME_SHOWN = 40  # characters of a key shown in a JSON path


def _check_trial(inst: TrialResult) -> None:
    where = f"TrialResult {inst.index}"
    if isinstance(inst.index, bool) or not isinstance(inst.index, int) or inst.index < 0:
        raise ValueError(f"TrialResult: index must be a non-negative int, got {_short(inst.index)}")
    if not isinstance(inst.hparams, dict) or not all(isinstance(k, str) for k in inst.hparams):
        raise ValueError(f"{where}: hparams must be a dict with str keys, got {_short(inst.hparams)}")
    if not isinstance(inst.metrics, dict):
        raise ValueError(f"{where}: metrics must be a dict, got {_short(inst.metrics)}")
    for k, v in inst.metrics.items():
        if not isinstance(k, str) or not isinstance(v, float) or not math.isfinite(v):
            raise ValueError(f"{where}: metrics must map str to finite floats, got {_short(k)}: {_short(v)}")
    if inst.status == "ok":
        if SCORE not in inst.metrics:
            raise ValueError(f"{where}: an ok trial needs metric {SCORE!r}, got {_short(sorted(inst.metrics))}")
        if inst.error is not None:
            raise ValueError(f"{where}: an ok trial has no error, got {_short(inst.error)}")
    elif inst.status == "failed":
        if not isinstance(inst.error, str):
            raise ValueError(f"{where}: a failed trial needs an error message, got {_short(inst.error)}")
    else:
        raise ValueError(f"{where}: status must be 'ok' or 'failed', got {_short(inst.status)}")
    if not isinstance(inst.seconds, float) or not (inst.seconds >= 0 and math.isfinite(inst.seconds)):
        raise ValueError(f"{where}: seconds must be a finite float >= 0, got {_short(inst.seconds)}")


@attrs.frozen
class TrialResult:
    """One trial: its hyperparameters and metrics, or the error that stopped it.

    Attributes:
        index: the trial number ``i`` (its key is ``fold_in(search_key, i)``).
        hparams: the drawn hyperparameters.
        metrics: what the objective returned (finite floats, including ``"val_acc"``); empty if failed.
        status: ``"ok"`` or ``"failed"``.
        error: ``"ErrorType: message"`` (just ``"ErrorType"`` for an empty message, on one line) for a failed trial, else ``None``.
        seconds: the time the objective ran (0.0 if it never started).

    >>> from fnnet.hparam import TrialResult
    >>> t = TrialResult(3, {"lr": 0.01}, {"val_acc": 0.92}, "ok", None, 1.5)
    >>> t.ok, TrialResult.from_json(t.to_json()) == t
    (True, True)
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
        """Inverse of :meth:`to_json` (validated: raises ``ValueError`` naming the field)."""
        try:
            return _trial_from_json(d, "$")
        except _Invalid as e:
            raise ValueError(f"TrialResult.from_json: {e.where}: {e.reason}") from None


def _check_result(inst: SearchResult) -> None:
    _check_space(inst.space, "SearchResult")
    if not isinstance(inst.key, Key):
        raise ValueError(f"SearchResult: key must be a Key, got {_short(inst.key)}")
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
                raise ValueError(f"SearchResult: trial {i}: {name}={_short(value)} is outside {_short(inst.space[name])}")


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

    >>> import fnnet
    >>> from fnnet.hparam import LogUniform, SearchResult, TrialResult
    >>> trials = [TrialResult(i, {"lr": lr}, {"val_acc": acc}, "ok", None, 0.1)
    ...           for i, (lr, acc) in enumerate([(0.1, 0.8), (0.01, 0.9)])]
    >>> result = SearchResult(trials, {"lr": LogUniform(1e-3, 1.0)}, fnnet.key(0))
    >>> result.best.index, SearchResult.from_json(result.to_json()) == result
    (1, True)
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
            ValueError: naming the JSON path of what is wrong (``$.trials[3].seconds``).
        """
        try:
            return _result_from_json(d)
        except _Invalid as e:
            raise ValueError(f"SearchResult.from_json: {e.where}: {e.reason}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` atomically (a temporary file, then a rename)."""
        path = Path(path)
        text = json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SearchResult:
        """Read a result written by :meth:`save`, refusing anything else.

        The file is parsed within bounds (at most 256 MiB, nesting at most 8 deep, finite numbers
        only) and then validated field by field.

        Raises:
            FormatError: naming the file and the byte offset (bad JSON) or the JSON path (a field
                of the wrong type or value, e.g. ``$.trials[3].seconds``).
            OSError: the file cannot be opened or read.

        >>> import os, tempfile, fnnet
        >>> from fnnet.hparam import LogUniform, SearchResult, random_search
        >>> def objective(hparams, key):
        ...     return {"val_acc": 1.0 - hparams["lr"]}
        >>> result = random_search(objective, {"lr": LogUniform(1e-4, 1e-1)}, key=fnnet.key(0), n_trials=3)
        >>> path = os.path.join(tempfile.mkdtemp(), "search.json")
        >>> result.save(path)
        >>> SearchResult.load(path) == result
        True
        """
        d = read_json(path, max_bytes=_MAX_FILE_BYTES, max_depth=_MAX_DEPTH)
        try:
            return _result_from_json(d)
        except _Invalid as e:
            raise FormatError(path, e.where, e.reason) from None


# --------------------------------------------------------------------------- reading records


class _Invalid(Exception):
    """A record that does not validate at JSON path ``where``."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def _at(where: str, name: str | int) -> str:
    """The JSON path of member ``name`` (an index or a key, shortened) of the value at ``where``."""
    if isinstance(name, int):
        return f"{where}[{name}]"
    if len(name) > _MAX_NAME_SHOWN:
        return f"{where}[{json.dumps(name[:_MAX_NAME_SHOWN])[:-1]}...\"]"
    return f"{where}.{name}" if name.isidentifier() else f"{where}[{json.dumps(name)}]"


def _object(d: Any, where: str, fields: frozenset[str]) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise _Invalid(where, f"expected an object, got {_short(d)}")
    if set(d) != fields:
        missing, extra = sorted(fields - set(d)), sorted(set(d) - fields)
        raise _Invalid(where, f"expected fields {sorted(fields)}" + (f"; missing {missing}" if missing else "")
                       + (f"; unexpected {_short(extra)}" if extra else ""))
    return d


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _trial_from_json(d: Any, where: str) -> TrialResult:
    t = _object(d, where, _TRIAL_FIELDS)
    if not isinstance(t["index"], int) or isinstance(t["index"], bool) or t["index"] < 0:
        raise _Invalid(_at(where, "index"), f"must be a non-negative int, got {_short(t['index'])}")
    for name in ("hparams", "metrics"):
        if not isinstance(t[name], dict):
            raise _Invalid(_at(where, name), f"must be an object, got {_short(t[name])}")
    for name, value in t["hparams"].items():
        if not (isinstance(value, str) or (_is_number(value) and math.isfinite(value))):
            raise _Invalid(_at(_at(where, "hparams"), name), f"must be a string or a finite number, got {_short(value)}")
    for name, value in t["metrics"].items():
        if not isinstance(value, float) or not math.isfinite(value):
            raise _Invalid(_at(_at(where, "metrics"), name), f"must be a finite float, got {_short(value)}")
    if t["status"] not in ("ok", "failed"):
        raise _Invalid(_at(where, "status"), f"must be 'ok' or 'failed', got {_short(t['status'])}")
    if t["error"] is not None and not isinstance(t["error"], str):
        raise _Invalid(_at(where, "error"), f"must be a string or null, got {_short(t['error'])}")
    seconds = t["seconds"]
    if not _is_number(seconds) or not (math.isfinite(seconds) and seconds >= 0):
        raise _Invalid(_at(where, "seconds"), f"must be a finite number >= 0, got {_short(seconds)}")
    try:
        return TrialResult(t["index"], t["hparams"], t["metrics"], t["status"], t["error"], float(seconds))
    except ValueError as e:
        raise _Invalid(where, str(e).removeprefix(f"TrialResult {t['index']}: ")) from None


def _result_from_json(d: Any) -> SearchResult:
    if not isinstance(d, dict):
        raise _Invalid("$", f"expected an object, got {_short(d)}")
    if d.get("format") != _FORMAT:
        raise _Invalid("$.format", f"not a {_FORMAT} record (format {_short(d.get('format'))})")
    version = d.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version != _VERSION:
        raise _Invalid("$.version", f"version {_short(version)}; this fnnet reads version {_VERSION}")
    r = _object(d, "$", _RESULT_FIELDS)
    k = _object(r["key"], "$.key", frozenset({"seed", "path"}))
    if not _is_count(k["seed"]):
        raise _Invalid("$.key.seed", f"must be a non-negative int, got {_short(k['seed'])}")
    if not isinstance(k["path"], list):
        raise _Invalid("$.key.path", f"must be a list, got {_short(k['path'])}")
    for i, index in enumerate(k["path"]):
        if not _is_count(index):
            raise _Invalid(_at("$.key.path", i), f"must be a non-negative int, got {_short(index)}")
    key = Key(k["seed"], tuple(k["path"]))
    if not isinstance(r["space"], dict) or not r["space"]:
        raise _Invalid("$.space", f"must be a non-empty object, got {_short(r['space'])}")
    space: dict[str, Distribution] = {}
    for name, v in r["space"].items():
        try:
            space[name] = _dist_from_json(v)
        except ValueError as e:
            raise _Invalid(_at("$.space", name), str(e)) from None
    if not isinstance(r["objective"], str):
        raise _Invalid("$.objective", f"must be a string, got {_short(r['objective'])}")
    if not isinstance(r["trials"], list):
        raise _Invalid("$.trials", f"must be a list, got {_short(r['trials'])}")
    trials = []
    for i, t in enumerate(r["trials"]):
        where = _at("$.trials", i)
        trial = _trial_from_json(t, where)
        if trial.index != i:
            raise _Invalid(_at(where, "index"), f"trials must be in order: index {trial.index} at position {i}")
        if list(trial.hparams) != list(space):
            raise _Invalid(_at(where, "hparams"),
                           f"has {_short(list(trial.hparams))}, the space has {_short(list(space))}")
        for name, value in trial.hparams.items():
            if not space[name].contains(value):
                raise _Invalid(_at(_at(where, "hparams"), name), f"{_short(value)} is outside {_short(space[name])}")
        trials.append(trial)
    try:
        return SearchResult(tuple(trials), space, key, r["objective"])
    except ValueError as e:
        raise _Invalid("$", str(e)) from None
