"""Regression tests from a third mutation-testing pass over fnnet.hparam.search: on an executor,
on_trial sees trials in completion order, a refused or unserialisable submission after the first
fails only its own trial, and Ctrl-C cancels the trials not started."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import pytest

import fnnet
from fnnet.hparam import SearchInterrupted, TrialResult, Uniform, random_search, run_trial

SPACE = {"x": Uniform(0.0, 1.0)}


def _score(hparams: dict[str, Any], key: fnnet.Key) -> dict[str, float]:
    return {"val_acc": float(hparams["x"])}


class _Scripted(Executor):
    """Holds every submission; ``refuse`` maps a submission number to the exception submit raises;
    after ``n`` submissions it completes the held ones in ``order`` (unless ``run`` is False)."""

    def __init__(self, n: int, order: list[int], refuse: dict[int, Exception] | None = None, run: bool = True):
        self.n, self.order, self.refuse, self.run = n, order, refuse or {}, run
        self.jobs: list[tuple[Future[Any], Callable[[], Any]]] = []
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        k = self.submitted
        self.submitted += 1
        if k in self.refuse:
            raise self.refuse[k]
        fut: Future[Any] = Future()
        self.jobs.append((fut, lambda: fn(*args, **kwargs)))
        if self.submitted == self.n and self.run:
            for j in self.order:
                fut_j, call = self.jobs[j]
                fut_j.set_result(call())
        return fut


def test_on_trial_sees_the_trials_in_completion_order() -> None:
    seen: list[int] = []
    handled = threading.Semaphore(0)
    ex = _Scripted(4, [], run=False)

    def finish_in_order() -> None:  # each trial completes once on_trial has seen the one before
        for j in [2, 0, 3, 1]:
            fut, call = ex.jobs[j]
            fut.set_result(call())
            handled.acquire(timeout=0.5)

    def on_trial(t: TrialResult) -> None:
        seen.append(t.index)
        handled.release()

    original = ex.submit

    def submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut = original(fn, *args, **kwargs)
        if ex.submitted == 4:
            threading.Thread(target=finish_in_order, daemon=True).start()
        return fut

    ex.submit = submit  # type: ignore[method-assign]
    res = random_search(_score, SPACE, key=fnnet.key(0), n_trials=4, executor=ex, on_trial=on_trial)
    assert seen == [2, 0, 3, 1]
    assert [t.index for t in res.trials] == [0, 1, 2, 3] and all(t.ok for t in res.trials)


@pytest.mark.parametrize("refusal", [RuntimeError("cannot schedule new futures after shutdown"),
                                     TypeError("cannot pickle 'generator' object")])
def test_a_submission_refused_after_the_first_fails_only_its_trial(refusal: Exception) -> None:
    res = random_search(_score, SPACE, key=fnnet.key(0), n_trials=3, executor=_Scripted(3, [0, 1], refuse={1: refusal}))
    assert [t.status for t in res.trials] == ["ok", "failed", "ok"]
    assert res.trials[1].error == f"{type(refusal).__name__}: {refusal}"
    ref = random_search(_score, SPACE, key=fnnet.key(0), n_trials=3)
    assert res.trials[1].hparams == ref.trials[1].hparams


class _FirstDone(_Scripted):
    """Completes the first submission at once and holds the others, as a busy executor does."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut = super().submit(fn, *args, **kwargs)
        if self.submitted == 1:
            fut.set_result(fn(*args, **kwargs))
        return fut


def _stop(t: TrialResult) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_cancels_the_trials_the_executor_has_not_started() -> None:
    ex = _FirstDone(3, [], run=False)
    with pytest.raises(SearchInterrupted) as info:
        random_search(_score, SPACE, key=fnnet.key(0), n_trials=3, executor=ex, on_trial=_stop)
    assert [t.index for t in info.value.trials] == [0]
    assert [f.cancelled() for f, _ in ex.jobs] == [False, True, True]


def test_search_interrupted_keeps_the_traceback_of_the_interrupt() -> None:
    def objective_pressed_ctrl_c(hparams: dict[str, Any], key: fnnet.Key) -> dict[str, float]:
        raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted) as info:
        random_search(objective_pressed_ctrl_c, SPACE, key=fnnet.key(0), n_trials=2)
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "objective_pressed_ctrl_c" in names


def test_a_multi_line_error_is_recorded_on_one_line() -> None:
    def objective(hparams: dict[str, Any], key: fnnet.Key) -> dict[str, float]:
        raise ValueError("first line\n  second line\n")

    r = run_trial(objective, 0, {"x": 0.5}, fnnet.key(0))
    assert r.error == "ValueError: first line second line"


def test_an_interrupt_after_done_trials_keeps_them_and_the_new_ones() -> None:
    full = random_search(_score, SPACE, key=fnnet.key(0), n_trials=5)

    def stop_after_3(t: TrialResult) -> None:
        if t.index == 3:
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted) as info:
        random_search(_score, SPACE, key=fnnet.key(0), n_trials=5, done=full.trials[:3], on_trial=stop_after_3)
    assert [t.index for t in info.value.trials] == [0, 1, 2, 3]
    assert info.value.trials[:3] == full.trials[:3]
