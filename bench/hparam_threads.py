"""BLAS threads in the chapter 6.5 hyperparameter search: one per process against the default.

Times the whole command ``examples/ch06_hyperparameter_optimization.py`` (its default search:
30 trials of a six-layer MLP on 500 MNIST samples, 50 epochs each) in four configurations: in
this process or in a pool of 2 worker processes (``--workers 2``), each with OpenBLAS (and OpenMP,
MKL) at 1 thread or at every core. The example sets one thread unless the environment says
otherwise; this benchmark says otherwise explicitly.

Run: ``python bench/hparam_threads.py`` (several minutes on 2 cores); ``--quick`` runs 4 trials of
2 epochs per configuration, to check that it works.

Measured (2 shared cores, 30 trials): in process, 72 s with OpenBLAS's default 2 threads and 12 s
with 1; a 2-process pool took 306 s with 2-thread workers and 7 s with 1-thread workers. These
small matrix products run several times faster on one thread, hence the example's default.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench_cli import positive_int, run_main

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ch06_hyperparameter_optimization.py"
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def run_search(blas_threads: int, workers: int, extra: list[str]) -> float:
    """Wall seconds of one run of the example with ``blas_threads`` BLAS threads per process."""
    env = {**os.environ, **{v: str(blas_threads) for v in BLAS_VARS}}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, str(SCRIPT), "--out", str(Path(out) / "search.json"), *extra]
        cmd += ["--workers", str(workers)] if workers else []
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            sys.exit(f"error: {SCRIPT.name} failed ({blas_threads} BLAS threads, {workers} workers): {last}")
        return time.perf_counter() - t0


def main() -> None:
    """Time the four configurations and print one line each."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--trials", type=positive_int, default=30, help="trials per configuration (default 30)")
    ap.add_argument("--quick", action="store_true", help="4 trials of 2 epochs, to check that it runs")
    args = ap.parse_args()
    extra = ["--trials", "4", "--epochs", "2"] if args.quick else ["--trials", str(args.trials)]
    cores = os.cpu_count() or 1
    print(f"ch06 hyperparameter search, {' '.join(extra)}, {cores} cores")
    for workers in (0, 2):
        for threads in sorted({cores, 1}, reverse=True):
            where = f"pool of {workers} processes" if workers else "in process"
            print(f"  {where:<20} BLAS threads {threads}: {run_search(threads, workers, extra):7.1f} s", flush=True)


if __name__ == "__main__":
    run_main(main)
