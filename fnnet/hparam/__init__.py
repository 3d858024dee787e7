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

Layout: :mod:`fnnet.hparam.space` (distributions, :func:`sample`), :mod:`fnnet.hparam.records`
(:class:`TrialResult`, :class:`SearchResult` and its JSON file), :mod:`fnnet.hparam.search` (the
runner: :func:`random_search`, :func:`run_trial`) and :mod:`fnnet.hparam.mlp_trial`
(:class:`MLPTrial`, the only part that trains networks). Every public name is importable from
``fnnet.hparam``.

fnnet itself never imports Dask. The executors pickle the objective and the trial arguments to ship
them to workers (that is their transport); results are saved as JSON, never pickled.

A small search whose objective is a formula, so it runs in milliseconds:

>>> import math, fnnet
>>> from fnnet.hparam import LogUniform, random_search
>>> def objective(hparams, key):
...     return {"val_acc": 1.0 - abs(math.log10(hparams["lr"]) + 2) / 10}   # best at lr = 1e-2
>>> result = random_search(objective, {"lr": LogUniform(1e-6, 1)}, key=fnnet.key(0), n_trials=30)
>>> len(result.trials), 1e-3 < result.best.hparams["lr"] < 1e-1
(30, True)
"""

from __future__ import annotations

from fnnet.hparam.mlp_trial import MLP_TRIAL_OPTIMIZERS, MLPTrial
from fnnet.hparam.records import SearchResult, TrialResult
from fnnet.hparam.search import Objective, SearchInterrupted, random_search, run_trial
from fnnet.hparam.space import Choice, Distribution, IntUniform, LogUniform, Uniform, Value, sample

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
    "SearchInterrupted",
    "random_search",
    "run_trial",
    "MLPTrial",
    "MLP_TRIAL_OPTIMIZERS",
]
