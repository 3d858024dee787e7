"""Second audit of the combinators, summary, the model builders and the search runner's executors:
copies of PathError, summary's table with wide columns and NumPy ints, builder argument checks,
refused executors."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import fnnet
from fnnet.hparam import Distribution, LogUniform, MLPTrial, TrialResult, Value, random_search, run_trial
from fnnet.layers.combinators import PathError, summary

_M: Any = fnnet.models  # the builders, called with arguments their annotations forbid


def _broken_once_deep() -> fnnet.Layer:
    return fnnet.serial(fnnet.Affine(3), fnnet.residual(fnnet.Affine(4)))


def _raise_path_error() -> None:
    _broken_once_deep().out_shape((3,))


def test_path_error_copies_keep_path_kind_and_reason() -> None:
    with pytest.raises(PathError) as info:
        _raise_path_error()
    e = info.value
    for c in (copy.copy(e), copy.deepcopy(e)):
        assert isinstance(c, PathError)
        assert (c.path, c.kind, c.reason, str(c)) == (e.path, e.kind, e.reason, str(e))


def test_path_error_from_a_worker_process_arrives_whole() -> None:
    with ProcessPoolExecutor(1) as ex:
        with pytest.raises(PathError) as info:
            ex.submit(_raise_path_error).result()
    assert info.value.path == ("layer 1",) and info.value.kind == "Residual"


def test_deep_tree_error_is_one_line_naming_every_step() -> None:
    model = _broken_once_deep()
    for _ in range(50):
        model = fnnet.serial(model)
    with pytest.raises(PathError) as info:
        model.out_shape((3,))
    assert "\n" not in str(info.value)
    assert info.value.path == ("layer 0",) * 50 + ("layer 1",)


def test_summary_table_widens_for_long_shapes_and_counts() -> None:
    model = fnnet.serial(fnnet.Conv2D(1024, 1), fnnet.Conv2D(1024, 1))
    lines = str(summary(model, (1, 1000, 1000))).splitlines()
    rows = lines[2:4]
    # the params column ends at the same place on the header and every row, a space before it
    assert len({len(line) for line in [lines[0], *rows]}) == 1
    shape = "('N', 1024, 1000, 1000)"
    for line in rows:  # the shape column starts under its header and is not run into the count
        assert line.index(shape) == lines[0].index("output shape")
        assert line[line.index(shape) + len(shape)] == " "
    assert rows[1].endswith(" 1,049,600")


def test_summary_takes_numpy_ints_and_rejects_non_shapes() -> None:
    s = summary(fnnet.Affine(2), (np.int64(3),))  # type: ignore[arg-type]
    assert s.in_shape == (3,) and type(s.in_shape[0]) is int
    assert "('N', 3)" in str(s).splitlines()[1]
    assert summary(fnnet.Affine(2), np.array([3])).in_shape == (3,)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="summary: in_shape must be a tuple of ints"):
        summary(fnnet.Affine(2), 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="summary: model must be a Layer"):
        summary("Affine", (3,))  # type: ignore[arg-type]


def test_same_layer_twice_has_separate_params_and_counts() -> None:
    a = fnnet.Affine(3)
    model = fnnet.serial(a, a)
    params, _ = model.init(fnnet.key(0), (3,))
    assert not np.array_equal(params[0].w, params[1].w)
    assert summary(model, (3,)).total_params == 24


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: _M.mlp(5), "mlp: hidden_sizes must be a sequence of positive ints"),
        (lambda: _M.mlp("12"), "mlp: hidden_sizes must be a sequence"),
        (lambda: _M.mlp((4, 0)), r"mlp: hidden_sizes\[1\] must be a positive int"),
        (lambda: _M.mlp((4,), activation=["relu"]), "mlp: activation must be one of"),
        (lambda: _M.mlp((4,), dropout="0.5"), r"mlp: dropout must be in \[0, 1\)"),
        (lambda: _M.mlp((4,), dropout=1.0), r"mlp: dropout must be in \[0, 1\)"),
        (lambda: _M.mlp((4,), batchnorm="no"), "mlp: batchnorm must be True or False"),
        (lambda: _M.mlp((4,), w_init="he"), "mlp: w_init must be an initializer"),
        (lambda: _M.mlp((4,), w_init=fnnet.initializers.HeNormal), r"an instance: HeNormal\(\)"),
        (lambda: _M.simple_convnet(w_init=fnnet.initializers.HeNormal), "simple_convnet: w_init must be"),
        (lambda: _M.simple_convnet(pool_first="no"), "simple_convnet: pool_first must be True or False"),
        (lambda: _M.deep_convnet(blocks=((16,),)), r"deep_convnet: blocks must be .* int pairs"),
        (lambda: _M.deep_convnet(blocks=((16, 1, 1),)), r"deep_convnet: blocks must be .* int pairs"),
        (lambda: _M.deep_convnet(dropout="a"), r"deep_convnet: dropout must be in \[0, 1\)"),
        (lambda: _M.deep_convnet(batchnorm="yes"), "deep_convnet: batchnorm must be True or False"),
        (lambda: _M.resnet(widths=()), "resnet: widths must be a non-empty sequence"),
        (lambda: _M.resnet(blocks=0), "resnet: blocks must be a positive int"),
    ],
)
def test_builders_reject_bad_arguments_in_one_line(build: Callable[[], Any], words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        build()
    assert "\n" not in str(info.value)


def test_mlp_edge_values_build_working_models() -> None:
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    linear = _M.mlp((), 3)  # no hidden layer: one Affine
    assert [type(layer).__name__ for layer in linear.layers] == ["Affine"]
    one = _M.mlp((1,), 3, batchnorm=np.bool_(True), dropout=np.float32(0.5))
    params, out = one.init(fnnet.key(0), (4,))
    y, state, _ = one.forward(params, one.init_state((4,)), x, fnnet.Ctx(True, fnnet.key(1)))
    assert out == (3,) and y.shape == (5, 3) and np.isfinite(y).all()
    assert summary(one, (4,)).total_params == (4 + 1) * 1 + 2 + (1 + 1) * 3
    assert _M.mlp(np.array([3, 2]), 4).out_shape((5,)) == (4,)  # a 1-D array of sizes, as before
    assert _M.resnet(widths=(2, 2, 2), blocks=1).out_shape((1, 1, 1)) == (10,)
    assert _M.basic_block(4, projection=np.bool_(True)).out_shape((2, 3, 3)) == (4, 3, 3)


# --------------------------------------------------------------------------- the search runner

SPACE: dict[str, Distribution] = {"lr": LogUniform(1e-4, 1e-1)}


def _score(hparams: dict[str, Value], key: fnnet.Key) -> dict[str, float]:
    return {"val_acc": 1.0 - float(hparams["lr"]), "noise": float(key.generator().uniform())}


def _metrics(trials: tuple[TrialResult, ...]) -> list[tuple[int, dict[str, Value], dict[str, float]]]:
    return [(t.index, t.hparams, t.metrics) for t in trials]


def test_thread_pool_trials_finishing_out_of_order_are_reported_once_and_kept_in_order() -> None:
    search_key, n = fnnet.key(5), 4
    first_key = fnnet.random.fold_in(search_key, 0)
    release = threading.Event()

    def slow_first(hparams: dict[str, Value], key: fnnet.Key) -> dict[str, float]:
        if key == first_key:
            assert release.wait(10), "trial 0 was never released"
        return _score(hparams, key)

    seen: list[int] = []

    def on_trial(t: TrialResult) -> None:
        seen.append(t.index)
        release.set()  # trial 0 finishes only after another trial has been reported

    with ThreadPoolExecutor(2) as ex:
        res = random_search(slow_first, SPACE, key=search_key, n_trials=n, executor=ex, on_trial=on_trial)
    ref = random_search(_score, SPACE, key=search_key, n_trials=n)
    assert seen[0] != 0 and sorted(seen) == list(range(n))
    assert _metrics(res.trials) == _metrics(ref.trials)


def test_a_shut_down_executor_is_refused_before_any_trial() -> None:
    ex = ThreadPoolExecutor(1)
    ex.shutdown()
    seen: list[TrialResult] = []
    with pytest.raises(RuntimeError, match="random_search: the executor refused the first trial .*shut down"):
        random_search(_score, SPACE, key=fnnet.key(0), n_trials=3, executor=ex, on_trial=seen.append)
    assert seen == []


class _RefusesAfterOne(Executor):
    """Runs the first submission inline, then refuses, as a pool that broke mid-search."""

    def __init__(self) -> None:
        self.count = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.count += 1
        if self.count > 1:
            raise RuntimeError("pool broke")
        fut: Future[Any] = Future()
        fut.set_result(fn(*args))
        return fut


def test_an_executor_that_breaks_mid_search_fails_only_the_later_trials() -> None:
    res = random_search(_score, SPACE, key=fnnet.key(0), n_trials=3, executor=_RefusesAfterOne())
    assert [t.status for t in res.trials] == ["ok", "failed", "failed"]
    assert res.trials[1].error == "RuntimeError: pool broke"


TINY = MLPTrial(n_train=60, hidden_sizes=(8,), epochs=1, batch_size=20)


@pytest.mark.parametrize("hparams", [{"lr": "0.1"}, {"lr": True}, {"lr": 0.1, "weight_decay": "0"}])
def test_mlp_trial_refuses_hparams_that_are_not_numbers(hparams: dict[str, Value]) -> None:
    r = run_trial(TINY, 0, hparams, fnnet.key(0))
    assert r.status == "failed" and "must be a number" in str(r.error)


def test_mlp_trial_checks_its_data_name_when_built() -> None:
    with pytest.raises(ValueError, match="MLPTrial: data must be"):
        MLPTrial(data=5)


def test_mlp_trial_gives_the_same_bits_in_a_thread_pool() -> None:
    with ThreadPoolExecutor(2) as ex:
        pooled = random_search(TINY, SPACE, key=fnnet.key(2), n_trials=3, executor=ex)
    ref = random_search(TINY, SPACE, key=fnnet.key(2), n_trials=3)
    assert all(t.ok for t in ref.trials)
    assert _metrics(pooled.trials) == _metrics(ref.trials)


def _multi_line_failure(hparams: dict[str, Value], key: fnnet.Key) -> dict[str, float]:
    if float(hparams["lr"]) > 1e-2:
        raise AssertionError("line one\n  line two\n")
    if float(hparams["lr"]) > 1e-3:
        raise RuntimeError()
    return {"val_acc": 0.5}


def test_failed_trials_record_one_line_errors_and_the_table_keeps_one_row_each() -> None:
    res = random_search(_multi_line_failure, SPACE, key=fnnet.key(0), n_trials=12)
    errors = {t.error for t in res.failed}
    assert errors == {"AssertionError: line one line two", "RuntimeError"}
    assert len(res.table().splitlines()) == 1 + len(res.trials)


@pytest.mark.parametrize(
    "layer",
    [fnnet.add_branches(fnnet.Identity(), fnnet.Flatten()), fnnet.residual(fnnet.Flatten())],
    ids=["add_branches", "residual"],
)
def test_fan_outs_refuse_broadcastable_outputs_at_forward_time(layer: fnnet.Layer) -> None:
    params, _ = layer.init(fnnet.key(0), (3,))  # (3,) and (3,) agree at init ...
    x = np.ones((2, 1, 3), np.float32)  # ... but (1, 3) + (3,) would broadcast
    with pytest.raises(ValueError, match=r"gives \(3,\) but branch 0 gives \(1, 3\)|maps \(1, 3\) to \(3,\)"):
        layer.apply(params, x)


def test_concat_cannot_reach_the_batch_axis() -> None:
    layer = fnnet.concat(fnnet.Conv2D(2, 1), fnnet.Conv2D(2, 1), axis=-4)
    with pytest.raises(ValueError, match="Concat: axis -4 is out of range for branch outputs of rank 3"):
        layer.out_shape((1, 4, 4))
    assert fnnet.concat(fnnet.Conv2D(2, 1), fnnet.Conv2D(3, 1), axis=-3).out_shape((1, 4, 4)) == (5, 4, 4)


@pytest.mark.parametrize(
    "bad, words",
    [({"executor": object()}, "executor must be a concurrent.futures.Executor"), ({"on_trial": "print"}, "on_trial")],
)
def test_random_search_refuses_a_non_executor_before_running_anything(bad: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=f"random_search: {words}"):
        random_search(_score, SPACE, key=fnnet.key(0), n_trials=2, **bad)
