"""The book's section 6.5: random search for the learning rate and the weight decay.

A six-layer MLP (100 units each) is trained on 500 MNIST samples of which 20 % are held out for
validation; ``lr ~ 10^U(-6, -2)`` and ``weight_decay ~ 10^U(-8, -4)``. The best trials are printed,
all of them saved as JSON, and validation accuracy is drawn against both hyperparameters when
matplotlib is installed. Run the trials in parallel with ``--workers N`` (a process pool) or on a
Dask cluster with ``--scheduler tcp://host:8786`` (needs ``pip install 'dask[distributed]'``)::

    python examples/ch06_hyperparameter_optimization.py --trials 100 --workers 2

The last line reads ``best val_acc <v> lr <lr> weight_decay <wd>``.

One BLAS thread per process. Unless you set them, the script sets ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` to 1 before NumPy loads (and ``FNNET_NUM_THREADS`` to 1,
so fnnet's evaluation does not add threads of its own in each worker), for two reasons: these small
matrix products run several times faster on one thread than on several (``bench/hparam_threads.py``
times both), and Dask starts its workers with one thread, so all three ways of running give the
same bits only with the same setting (OpenBLAS sums in a different order for another thread count).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FNNET_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy is imported (see the module docstring)

import argparse
import importlib
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fnnet
from _common import (
    figure_path, nonnegative_int, output_path, positive_int, run_main, seed_int, write_figure,
)
from fnnet.hparam import Distribution, LogUniform, MLPTrial, SearchResult, TrialResult, random_search

#: The book's search space.
SPACE: dict[str, Distribution] = {"lr": LogUniform(1e-6, 1e-2), "weight_decay": LogUniform(1e-8, 1e-4)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trials", type=positive_int, default=30, help="number of random trials (the book: 100)")
    p.add_argument("--epochs", type=positive_int, default=50, help="epochs per trial (the book: 50)")
    p.add_argument("--n-train", type=positive_int, default=500, help="training samples, validation included")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[100] * 6, help="hidden layer sizes")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--top", type=positive_int, default=20, help="rows of the printed table")
    p.add_argument("--out", type=output_path, default=Path("ch06_hparam_search.json"), help="JSON results")
    p.add_argument("--plot", type=figure_path, default=None, help="PNG figure (default: --out with .png)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=nonnegative_int, default=0, help="run trials in N worker processes")
    group.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    return p.parse_args(argv)


@contextmanager
def make_executor(workers: int, scheduler: str | None) -> Iterator[Executor | None]:
    """``None`` (in-process), a process pool, or a Dask cluster's executor."""
    if scheduler is not None:
        try:
            distributed: Any = importlib.import_module("distributed")
        except ImportError:
            sys.exit("--scheduler needs Dask: pip install 'dask[distributed]'")
        with distributed.Client(scheduler) as client:
            yield client.get_executor()
    elif workers > 0:
        with ProcessPoolExecutor(workers) as pool:
            yield pool
    else:
        yield None


def plot(result: SearchResult, path: Path) -> bool:
    """Validation accuracy against lr and weight decay (log axes); False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = result.ok
    acc = [t.metrics["val_acc"] for t in ok]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, name in zip(axes[:2], ("lr", "weight_decay")):
        ax.scatter([float(t.hparams[name]) for t in ok], acc, s=14)
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("validation accuracy")
        ax.grid(True, alpha=0.3)
    sc = axes[2].scatter([float(t.hparams["lr"]) for t in ok], [float(t.hparams["weight_decay"]) for t in ok],
                         c=acc, cmap="viridis", s=20)
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("lr")
    axes[2].set_ylabel("weight_decay")
    fig.colorbar(sc, ax=axes[2], label="validation accuracy")
    fig.suptitle(f"random search, {len(result.trials)} trials ({len(result.failed)} failed)")
    fig.tight_layout()
    write_figure(plt, fig, path)
    return True


def main() -> None:
    """Run the search, print the best trials, save JSON (and a PNG), print the best line last."""
    args = parse_args()
    try:
        objective = MLPTrial(n_train=args.n_train, hidden_sizes=tuple(args.hidden), epochs=args.epochs,
                             batch_size=args.batch_size)
    except ValueError as e:  # sizes that do not fit together, before any trial runs
        sys.exit(f"error: {e}")
    done = 0

    def report(t: TrialResult) -> None:
        nonlocal done
        done += 1
        what = f"val_acc {t.metrics['val_acc']:.4f}" if t.ok else f"failed ({t.error})"
        hps = " ".join(f"{k} {float(v):.3e}" for k, v in t.hparams.items())
        print(f"[{done}/{args.trials}] trial {t.index}: {what} {hps} ({t.seconds:.1f}s)", file=sys.stderr)

    where = args.scheduler or (f"{args.workers} processes" if args.workers else "this process")
    print(f"random search: {args.trials} trials of {objective!r} in {where}")
    t0 = time.perf_counter()
    with make_executor(args.workers, args.scheduler) as executor:
        result = random_search(objective, SPACE, key=fnnet.key(args.seed), n_trials=args.trials,
                               executor=executor, on_trial=report)
    elapsed = time.perf_counter() - t0
    print(result.table(top=args.top))
    print(f"{len(result.ok)} ok, {len(result.failed)} failed, {elapsed:.1f}s")
    result.save(args.out)
    print(f"saved {args.out}")
    if not result.ok:  # nothing to plot or to report
        first = result.failed[0].error
        sys.exit(f"every trial failed (the first: {first})")
    png = args.plot if args.plot is not None else args.out.with_suffix(".png")
    if plot(result, png):
        print(f"saved {png}")
    best: dict[str, Any] = {"val_acc": result.best.metrics["val_acc"], **result.best.hparams}
    print(f"best val_acc {best['val_acc']:.4f} lr {float(best['lr']):.4e} weight_decay {float(best['weight_decay']):.4e}")


if __name__ == "__main__":
    run_main(main)
