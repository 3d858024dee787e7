"""The same random search on a real Dask cluster (two worker processes on loopback) gives the same bits.

Needs the optional extra ``dask[distributed]`` (CI installs it).

BLAS threads. Dask's nanny starts its workers with ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` set to 1, while this process runs OpenBLAS with its default thread count
(one per core). OpenBLAS picks a different blocking of a matrix product for another thread count,
which changes the order of the floating-point sums: with 1 vs 2 threads a (64, 784) @ (784, 64)
float32 product differs in the last bits, and so do the trained metrics (measured: loss
2.422072260695151 vs 2.422072275596312 after two epochs). Rather than loosen the comparison, the
cluster below drops those three variables from the workers' pre-spawn environment, so the workers
inherit this process's environment and run the same thread count: then every bit agrees.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import outcome

import fnnet
from fnnet.hparam import Distribution, LogUniform, MLPTrial, SearchResult, random_search, sample
from fnnet.random import fold_in

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

SPACE: dict[str, Distribution] = {"lr": LogUniform(1e-3, 1e-1), "weight_decay": LogUniform(1e-8, 1e-4)}
# Big enough that the products are real multi-block GEMMs (a 64x784 batch times 784x64 weights).
TRIAL = MLPTrial(n_train=320, hidden_sizes=(64, 64), epochs=2, batch_size=64)
N_TRIALS = 4


BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # None removes a variable from the nanny's pre-spawn environment (it would also be written into
    # this process's os.environ, which every later subprocess of the test session would inherit).
    same_threads = {f"distributed.nanny.pre-spawn-environ.{v}": None for v in BLAS_THREAD_VARS}
    with dask.config.set(same_threads):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
        c = distributed.Client(cluster)
        try:
            yield c
        finally:
            c.close()
            cluster.close()


def test_workers_run_blas_with_this_process_thread_settings(client: Any) -> None:
    ours = {v: os.environ.get(v) for v in BLAS_THREAD_VARS}
    theirs = client.run(lambda: {v: os.environ.get(v) for v in BLAS_THREAD_VARS})
    assert len(theirs) == 2 and all(env == ours for env in theirs.values())


def test_dask_search_equals_in_process(client: Any) -> None:
    with distributed.get_task_stream(client) as stream:
        dask_run = random_search(TRIAL, SPACE, key=fnnet.key(2024), n_trials=N_TRIALS,
                                 executor=client.get_executor())
    local = random_search(TRIAL, SPACE, key=fnnet.key(2024), n_trials=N_TRIALS)
    assert all(t.ok for t in local.trials), [t.error for t in local.trials]
    assert [t.hparams for t in dask_run.trials] == [t.hparams for t in local.trials]
    assert [outcome(t) for t in dask_run.trials] == [outcome(t) for t in local.trials]
    # the trials really ran in the workers (both of them when the scheduler spread them)
    ran = [task for task in stream.data if "run_trial" in task["key"]]
    assert len(ran) == N_TRIALS
    assert {task["worker"] for task in ran} <= set(client.scheduler_info()["workers"])


def test_dask_failures_are_recorded(client: Any) -> None:
    bad = random_search(TRIAL, {"learning_rate": LogUniform(1e-3, 1e-1)}, key=fnnet.key(0), n_trials=2,
                        executor=client.get_executor())
    assert [t.status for t in bad.trials] == ["failed", "failed"]
    assert all(str(t.error).startswith("ValueError: MLPTrial") for t in bad.trials)


def test_example_runs_on_the_cluster(client: Any, tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "ch06_hyperparameter_optimization.py"
    out = tmp_path / "search.json"
    args = ["--trials", "3", "--epochs", "1", "--n-train", "150", "--hidden", "16", "--batch-size", "50",
            "--seed", "5", "--out", str(out), "--scheduler", client.scheduler.address]
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"best val_acc \d\.\d{4} lr \S+ weight_decay \S+", proc.stdout.strip().splitlines()[-1])
    assert client.scheduler.address in proc.stdout
    result = SearchResult.load(out)
    space = {"lr": LogUniform(1e-6, 1e-2), "weight_decay": LogUniform(1e-8, 1e-4)}
    assert [t.hparams for t in result.trials] == [sample(space, fold_in(fnnet.key(5), i)) for i in range(3)]
    assert all(t.ok for t in result.trials)
