"""Hyperparameter search: distributions, keyed sampling, random_search in and out of process, results."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import outcome

import fnnet
import fnnet.optim
from fnnet.errors import FormatError
from fnnet import hparam
from fnnet.hparam import (
    Choice,
    Distribution,
    IntUniform,
    LogUniform,
    MLPTrial,
    SearchResult,
    TrialResult,
    Uniform,
    Value,
    random_search,
    sample,
)
from fnnet.random import Key, fold_in
from fnnet.train import NonFiniteLossError, TrainState

SPACE: dict[str, Distribution] = {"lr": LogUniform(1e-6, 1e-2), "weight_decay": LogUniform(1e-8, 1e-4)}
FAIL_ABOVE_LR = 3e-3  # the fake objective raises for learning rates above this


def fake_objective(hparams: dict[str, Value], key: Key) -> dict[str, float]:
    """A cheap stand-in for training: a score peaked at lr = 1e-4, noise from the key, some failures."""
    lr = float(hparams["lr"])
    if lr > FAIL_ABOVE_LR:
        # train.NonFiniteLossError carries a state and cannot be rebuilt from its message alone: a
        # process pool could not even send it back, so the trial must be recorded in the worker.
        last_good = TrainState((), (), (), np.asarray(2, np.int64), np.asarray(0, np.int64))
        raise NonFiniteLossError(f"non-finite loss at lr {lr}", 3, last_good)
    noise = float(key.generator().uniform(0, 0.01))
    return {"val_acc": 0.9 - abs(math.log10(lr) + 4) / 10 + noise, "train_acc": 0.95 + noise}


def bad_metrics_objective(hparams: dict[str, Value], key: Key) -> Any:
    """Returns something that is not a valid metrics dict, depending on the trial."""
    kind = int(hparams["kind"])
    return [{"train_acc": 0.5}, {"val_acc": float("nan")}, ["val_acc"], {"val_acc": "high"}, {"val_acc": 0.5}][kind]


def _search(n: int = 12, seed: int = 0, **kw: Any) -> SearchResult:
    return random_search(fake_objective, SPACE, key=fnnet.key(seed), n_trials=n, **kw)


# --------------------------------------------------------------------------- distributions


@pytest.mark.parametrize(
    "dist",
    [LogUniform(1e-6, 1e-2), LogUniform(1e-8, 1e-4), LogUniform(0.5, 2), Uniform(-1, 3), Uniform(0.1, 0.2),
     IntUniform(1, 4), IntUniform(-3, -3), Choice(["sgd", "adam"]), Choice((1, 2.5, "x"))],
)
def test_draws_lie_in_range_and_are_keyed(dist: Distribution) -> None:
    keys = [fold_in(fnnet.key(7), i) for i in range(300)]
    draws = [dist.draw(k) for k in keys]
    assert all(dist.contains(v) for v in draws)
    assert draws == [dist.draw(k) for k in keys]  # a key is a value: same key, same draw
    if isinstance(dist, (LogUniform, Uniform)):
        assert all(isinstance(v, float) and dist.low <= v <= dist.high for v in draws)
        assert len(set(draws)) == len(draws)
    if isinstance(dist, IntUniform):
        assert set(draws) == set(range(dist.low, dist.high + 1))  # both ends are reachable
    if isinstance(dist, Choice):
        assert set(draws) == set(dist.options)


@pytest.mark.parametrize("low_exp, high_exp", [(-6, -2), (-8, -4), (0, 1)])
def test_log_uniform_is_uniform_in_the_exponent(low_exp: int, high_exp: int) -> None:
    dist = LogUniform(10.0**low_exp, 10.0**high_exp)
    exps = np.log10([dist.draw(fold_in(fnnet.key(1), i)) for i in range(2000)])
    width = high_exp - low_exp
    # U(a, b) has mean (a+b)/2 and std w/sqrt(12); 2000 draws put the sample mean within 4 sigma.
    assert abs(exps.mean() - (low_exp + high_exp) / 2) < 4 * width / math.sqrt(12 * 2000)
    hist, _ = np.histogram(exps, bins=4, range=(low_exp, high_exp))
    assert hist.min() > 2000 / 4 * 0.8


def test_contains_rejects_values_outside_or_of_the_wrong_type() -> None:
    assert not LogUniform(1e-6, 1e-2).contains(0.1)
    assert not LogUniform(1e-6, 1e-2).contains("0.001")
    assert not Uniform(0, 1).contains(1.5)
    assert not IntUniform(1, 3).contains(2.0)
    assert not IntUniform(1, 3).contains(True)
    assert not Choice([1, 2]).contains(1.0)
    assert Choice([1, 2]).contains(2)


@pytest.mark.parametrize(
    "build, record, field",
    [
        (lambda: LogUniform(0, 1), "LogUniform", "low"),
        (lambda: LogUniform(-1e-3, 1e-2), "LogUniform", "low"),
        (lambda: LogUniform(1e-2, 1e-6), "LogUniform", "low"),
        (lambda: LogUniform(1e-6, float("inf")), "LogUniform", "high"),
        (lambda: LogUniform("1e-6", 1e-2), "LogUniform", "low"),
        (lambda: Uniform(1, 1), "Uniform", "low"),
        (lambda: Uniform(float("nan"), 1), "Uniform", "low"),
        (lambda: Uniform(0, True), "Uniform", "high"),
        (lambda: IntUniform(3, 2), "IntUniform", "low"),
        (lambda: IntUniform(0.5, 2), "IntUniform", "low"),
        (lambda: Choice([]), "Choice", "options"),
        (lambda: Choice("abc"), "Choice", "options"),
        (lambda: Choice([1, None]), "Choice", "options"),
        (lambda: Choice([float("nan")]), "Choice", "options"),
    ],
)
def test_bad_distributions_fail_when_built(build: Callable[[], object], record: str, field: str) -> None:
    with pytest.raises(ValueError, match=record) as info:
        build()
    assert field in str(info.value)


def test_distributions_are_frozen_and_normalise_numbers() -> None:
    d = LogUniform(np.float32(1e-3), 1)
    assert isinstance(d.low, float) and isinstance(d.high, float)
    assert IntUniform(np.int64(1), 3).low == 1 and type(IntUniform(np.int64(1), 3).low) is int
    with pytest.raises(AttributeError):
        d.low = 0.5  # type: ignore[misc]


# --------------------------------------------------------------------------- sample


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_sample_is_pure_and_keyed(seed: int) -> None:
    space: dict[str, Distribution] = {**SPACE, "opt": Choice(["sgd", "adam"]), "layers": IntUniform(1, 6),
                                      "dropout": Uniform(0, 0.5)}
    k = fnnet.key(seed)
    a, b = sample(space, k), sample(space, k)
    assert a == b and list(a) == list(space)
    assert all(space[n].contains(v) for n, v in a.items())
    others = [sample(space, fold_in(k, i)) for i in range(5)]
    assert all(o["lr"] != a["lr"] for o in others)
    assert len({o["lr"] for o in others}) == 5
    # each dimension has its own stream: removing, adding or reordering dimensions changes no draw
    assert sample({"lr": space["lr"]}, k)["lr"] == a["lr"]
    assert sample(dict(reversed(list(space.items()))), k) == a
    # two dimensions with the same distribution still draw different values
    twin = sample({"a": Uniform(0, 1), "b": Uniform(0, 1)}, k)
    assert twin["a"] != twin["b"]


@pytest.mark.parametrize("space", [{}, {"lr": (1e-6, 1e-2)}, {"": Uniform(0, 1)}, [("lr", Uniform(0, 1))]])
def test_sample_rejects_bad_spaces(space: Any) -> None:
    with pytest.raises(ValueError, match="space"):
        sample(space, fnnet.key(0))


# --------------------------------------------------------------------------- random_search


def test_trial_i_uses_fold_in_key_i_and_runs_in_order() -> None:
    n = 12
    res = _search(n)
    assert [t.index for t in res.trials] == list(range(n))
    assert [t.hparams for t in res.trials] == [sample(SPACE, fold_in(fnnet.key(0), i)) for i in range(n)]
    for t in res.ok:  # the objective got the trial key: its noise is reproducible from fold_in(key, i)
        assert t.metrics == fake_objective(t.hparams, fold_in(fnnet.key(0), t.index))
    assert res.key == fnnet.key(0) and res.space == SPACE
    assert [outcome(t) for t in res.trials] == [outcome(t) for t in _search(n).trials]
    assert [t.hparams for t in _search(n, seed=1).trials] != [t.hparams for t in res.trials]


def test_failures_are_recorded_and_the_search_goes_on() -> None:
    res = _search(16)
    failed = [t for t in res.trials if float(t.hparams["lr"]) > FAIL_ABOVE_LR]
    assert failed, "the seed should draw some learning rates above the failure threshold"
    assert list(res.failed) == failed
    assert len(res.ok) == 16 - len(failed) > 0
    for t in failed:
        assert t.status == "failed" and not t.ok and t.metrics == {}
        assert t.error is not None and t.error.startswith("NonFiniteLossError: non-finite loss at lr")
    assert all(t.error is None and set(t.metrics) == {"val_acc", "train_acc"} for t in res.ok)


def test_invalid_metrics_fail_the_trial() -> None:
    space: dict[str, Distribution] = {"kind": Choice([0, 1, 2, 3, 4])}
    res = random_search(bad_metrics_objective, space, key=fnnet.key(0), n_trials=30)
    by_kind = {int(t.hparams["kind"]): t for t in res.trials}
    assert set(by_kind) == {0, 1, 2, 3, 4}
    assert "val_acc" in str(by_kind[0].error) and "ValueError" in str(by_kind[0].error)
    assert "non-finite" in str(by_kind[1].error)
    assert "TypeError" in str(by_kind[2].error)
    assert "non-numeric" in str(by_kind[3].error)
    assert by_kind[4].ok and by_kind[4].metrics == {"val_acc": 0.5}


@pytest.mark.parametrize("bad", [{"n_trials": 0}, {"n_trials": 2.0}, {"key": 0}])
def test_random_search_validates_arguments(bad: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"key": fnnet.key(0), "n_trials": 3, **bad}
    with pytest.raises(ValueError, match="random_search"):
        random_search(fake_objective, SPACE, **kw)


class _ReversingExecutor(Executor):
    """Runs nothing until all ``n`` trials are submitted, then finishes them last-first.

    Trial ``broken`` ends with an exception, as when its worker dies.
    """

    def __init__(self, n: int, broken: int):
        self.n, self.broken = n, broken
        self.jobs: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self.jobs.append((fut, fn, args))
        if len(self.jobs) == self.n:
            for i, (f, g, a) in reversed(list(enumerate(self.jobs))):
                if i == self.broken:
                    f.set_exception(RuntimeError("worker lost"))
                else:
                    f.set_result(g(*a))
        return fut


def test_results_come_back_in_trial_order_whatever_the_completion_order() -> None:
    n = 8
    seen: list[int] = []
    res = _search(n, executor=_ReversingExecutor(n, broken=2), on_trial=lambda t: seen.append(t.index))
    assert sorted(seen) == list(range(n))
    ref = _search(n)
    assert [t.index for t in res.trials] == list(range(n))
    assert res.trials[2].status == "failed" and res.trials[2].error == "RuntimeError: worker lost"
    assert res.trials[2].hparams == ref.trials[2].hparams
    others = [i for i in range(n) if i != 2]
    assert [outcome(res.trials[i]) for i in others] == [outcome(ref.trials[i]) for i in others]


def test_process_pool_equals_in_process() -> None:
    n = 10
    with ProcessPoolExecutor(2) as ex:
        pooled = _search(n, executor=ex)
    ref = _search(n)
    assert pooled.failed, "the seed should include failing trials (their errors must travel back)"
    assert [outcome(t) for t in pooled.trials] == [outcome(t) for t in ref.trials]
    assert pooled.to_json()["trials"][0]["hparams"] == ref.to_json()["trials"][0]["hparams"]


def test_an_objective_that_cannot_travel_fails_its_trials() -> None:
    with ProcessPoolExecutor(1) as ex:
        res = random_search(lambda h, k: {"val_acc": 1.0}, SPACE, key=fnnet.key(0), n_trials=2, executor=ex)
    assert [t.status for t in res.trials] == ["failed", "failed"]
    assert all("pickle" in str(t.error).lower() for t in res.trials)


# --------------------------------------------------------------------------- results


def test_sorted_best_and_table() -> None:
    res = _search(16)
    ranked = res.sorted()
    ok_scores = [t.metrics["val_acc"] for t in ranked if t.ok]
    assert ok_scores == sorted(ok_scores, reverse=True) and len(ranked) == 16
    assert all(t.ok for t in ranked[: len(res.ok)]) and not any(t.ok for t in ranked[len(res.ok):])
    assert res.best is ranked[0] and res.best.metrics["val_acc"] == max(ok_scores)
    table = res.table(top=5).splitlines()
    assert len(table) == 6 and table[0].split()[:3] == ["rank", "trial", "val_acc"]
    assert table[1].split()[1] == str(res.best.index)
    assert "lr" in table[0] and "weight_decay" in table[0]
    full = res.table().splitlines()
    assert len(full) == 17 and "failed: NonFiniteLossError" in full[-1]


def test_sorted_breaks_ties_by_index_and_best_needs_a_success() -> None:
    space: dict[str, Distribution] = {"x": IntUniform(0, 0)}
    trials = [TrialResult(0, {"x": 0}, {}, "failed", "E: e"), TrialResult(1, {"x": 0}, {"val_acc": 0.5}, "ok"),
              TrialResult(2, {"x": 0}, {"val_acc": 0.7}, "ok"), TrialResult(3, {"x": 0}, {"val_acc": 0.5}, "ok")]
    res = SearchResult(tuple(trials), space, fnnet.key(0))
    assert [t.index for t in res.sorted()] == [2, 1, 3, 0]
    with pytest.raises(ValueError, match="all 1 trials failed"):
        _ = SearchResult((trials[0],), space, fnnet.key(0)).best


def test_json_round_trip() -> None:
    space: dict[str, Distribution] = {**SPACE, "opt": Choice(["sgd", 2, 0.5]), "n": IntUniform(1, 3),
                                      "p": Uniform(0, 1)}
    res = random_search(fake_objective, space, key=fnnet.key(5), n_trials=10)
    text = json.dumps(res.to_json())
    back = SearchResult.from_json(json.loads(text))
    assert back == res
    assert [type(v) for v in back.trials[0].hparams.values()] == [type(v) for v in res.trials[0].hparams.values()]


def test_save_is_atomic_and_load_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = _search(6)
    path = tmp_path / "search.json"
    res.save(path)
    assert SearchResult.load(path) == res
    assert os.listdir(tmp_path) == ["search.json"]
    before = path.read_bytes()

    def crash(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        _search(7).save(path)
    assert path.read_bytes() == before  # the old file is untouched
    assert os.listdir(tmp_path) == ["search.json"]  # and no temporary file is left behind


def _corrupt(d: dict[str, Any], how: str) -> None:
    t0 = d["trials"][0]
    if how == "format":
        d["format"] = "something else"
    elif how == "version":
        d["version"] = 99
    elif how == "extra field":
        d["extra"] = 1
    elif how == "order":
        d["trials"] = d["trials"][::-1]
    elif how == "outside space":
        t0["hparams"]["lr"] = 0.5
    elif how == "missing hparam":
        del t0["hparams"]["weight_decay"]
    elif how == "ok without val_acc":
        ok = next(t for t in d["trials"] if t["status"] == "ok")
        del ok["metrics"]["val_acc"]
    elif how == "status":
        t0["status"] = "maybe"
    elif how == "failed without error":
        bad = next(t for t in d["trials"] if t["status"] == "failed")
        bad["error"] = None
    elif how == "metric type":
        ok = next(t for t in d["trials"] if t["status"] == "ok")
        ok["metrics"]["val_acc"] = "0.9"
    elif how == "distribution":
        d["space"]["lr"] = {"type": "Gaussian", "mean": 0}
    elif how == "distribution values":
        d["space"]["lr"]["low"] = -1
    elif how == "key":
        d["key"] = {"seed": -1, "path": []}
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["format", "version", "extra field", "order", "outside space", "missing hparam", "ok without val_acc", "status",
     "failed without error", "metric type", "distribution", "distribution values", "key"],
)
def test_load_validates(tmp_path: Path, how: str) -> None:
    res = _search(12)
    assert res.ok and res.failed
    d = res.to_json()
    _corrupt(d, how)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(FormatError) as info:
        SearchResult.load(path)
    assert info.value.path == str(path) and info.value.where.startswith("$")


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": NaN}', "null"])
def test_load_rejects_non_records(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(FormatError) as info:
        SearchResult.load(path)
    assert info.value.path == str(path) and str(path) in str(info.value)


# --------------------------------------------------------------------------- MLPTrial


TINY = MLPTrial(n_train=200, hidden_sizes=(16, 16), epochs=2, batch_size=40)


def test_mlp_trial_is_deterministic_in_its_key() -> None:
    hp: dict[str, Value] = {"lr": 0.05, "weight_decay": 1e-4}
    a, b = TINY(hp, fnnet.key(3)), TINY(hp, fnnet.key(3))
    assert a == b and set(a) == {"val_acc", "train_acc", "loss"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in a.values())
    assert 0.0 <= a["val_acc"] <= 1.0
    assert TINY(hp, fnnet.key(4)) != a
    assert TINY({"lr": 0.05, "weight_decay": 1e-1}, fnnet.key(3))["loss"] != a["loss"]  # the decay is used
    # 40 validation samples: accuracies are multiples of 1/40 and 1/160
    assert round(a["val_acc"] * TINY.n_val) == pytest.approx(a["val_acc"] * TINY.n_val, abs=1e-9)
    assert TINY.n_val == 40


def test_mlp_trial_learns_with_a_good_learning_rate() -> None:
    trial = MLPTrial(n_train=300, hidden_sizes=(32,), epochs=5, batch_size=30)
    good = trial({"lr": 0.1}, fnnet.key(0))
    tiny = trial({"lr": 1e-6}, fnnet.key(0))
    assert good["val_acc"] > 0.5 > tiny["val_acc"]
    assert good["train_acc"] > tiny["train_acc"]


def test_mlp_trial_splits_with_the_trial_key_or_a_fixed_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    import fnnet.datasets

    seen: list[tuple[Key, int, int]] = []
    real = fnnet.datasets.train_val_split

    def spy(key: Key, x: Any, t: Any, **kw: Any) -> Any:
        seen.append((key, len(x), kw["val_size"]))
        return real(key, x, t, **kw)

    monkeypatch.setattr(fnnet.datasets, "train_val_split", spy)
    one = MLPTrial(n_train=100, hidden_sizes=(4,), epochs=1, batch_size=50)
    for trial in (one, attrs_evolve(one, split_seed=9)):
        for k in (fnnet.key(1), fnnet.key(2)):
            trial({"lr": 0.01}, k)
    (k1, n1, v1), (k2, _, _), (f1, _, _), (f2, _, _) = seen
    assert (n1, v1) == (100, 20)  # the first n_train training samples, val_fraction of them held out
    assert k1 != k2 and f1 == f2 == fnnet.key(9)


def attrs_evolve(trial: MLPTrial, **changes: Any) -> MLPTrial:
    import attrs

    return attrs.evolve(trial, **changes)


def test_mlp_trial_failures_are_recorded_by_the_search() -> None:
    # weight decay 1e308 makes the L2 term 0.5·λ·ΣW² overflow to inf at the first step
    space: dict[str, Distribution] = {"lr": Choice([0.05]), "weight_decay": Choice([0.0, -1.0, 1e308])}
    with np.errstate(over="ignore", invalid="ignore"):
        res = random_search(MLPTrial(n_train=100, hidden_sizes=(8,), epochs=2, batch_size=50), space,
                            key=fnnet.key(0), n_trials=12)
    errors = {t.hparams["weight_decay"]: t.error for t in res.trials}
    assert set(errors) == {0.0, -1.0, 1e308}
    assert errors[0.0] is None
    assert str(errors[-1.0]).startswith("ValueError") and "weight_decay" in str(errors[-1.0])
    assert str(errors[1e308]).startswith("NonFiniteLossError: non-finite loss")
    bad = random_search(TINY, {"learning_rate": Uniform(0, 1)}, key=fnnet.key(0), n_trials=1).trials[0]
    assert "MLPTrial: hparams must have 'lr'" in str(bad.error)


@pytest.mark.parametrize(
    "kw, field",
    [({"n_train": 0}, "n_train"), ({"val_fraction": 1.0}, "val_fraction"), ({"val_fraction": 0.001}, "val_fraction"),
     ({"hidden_sizes": (10, 0)}, "hidden_sizes"), ({"epochs": 0}, "epochs"), ({"optimizer": "lbfgs"}, "optimizer"),
     ({"split_seed": -1}, "split_seed"), ({"batch_size": 2.5}, "batch_size")],
)
def test_mlp_trial_validates_when_built(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match="MLPTrial") as info:
        MLPTrial(**kw)
    assert field in str(info.value)


def test_mlp_trial_in_a_process_pool_gives_the_same_bits() -> None:
    space: dict[str, Distribution] = {"lr": LogUniform(1e-3, 1e-1), "weight_decay": LogUniform(1e-8, 1e-4)}
    with ProcessPoolExecutor(2) as ex:
        pooled = random_search(TINY, space, key=fnnet.key(11), n_trials=3, executor=ex)
    ref = random_search(TINY, space, key=fnnet.key(11), n_trials=3)
    assert all(t.ok for t in ref.trials)
    assert [outcome(t) for t in pooled.trials] == [outcome(t) for t in ref.trials]
    assert pooled.objective == repr(TINY) and "MLPTrial" in pooled.objective


def test_module_exports_resolve() -> None:
    assert all(hasattr(hparam, name) for name in hparam.__all__)
    assert set(hparam.MLP_TRIAL_OPTIMIZERS) <= set(dir(fnnet.optim))
