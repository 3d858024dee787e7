"""Data parallelism over threads: a batch split into shards that run on the machine's cores.

NumPy releases the interpreter lock inside BLAS calls and elementwise loops, so two Python threads
each running the forward and backward pass of half a batch keep two cores busy, where one thread
with a multi-threaded BLAS leaves the second core idle in everything that is not a matrix product
(patch building, ReLU, pooling), about half of a convolutional network's step.

The *shard count* is part of the maths (it decides which rows go through the layers together) and
so of the bits; the *thread count* is only speed: shards run concurrently or one after another and
give the same bits either way, because BLAS runs single-threaded inside a shard
(:func:`single_threaded_blas`).

The BLAS thread setting is process-wide. It is found by looking up OpenBLAS (the BLAS NumPy's
wheels bundle) among the loaded libraries; where it cannot be found, :func:`blas_threads` returns
``None``, shards still run but the default thread count is 1 (two threads each starting a
multi-threaded BLAS would oversubscribe the cores).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

__all__ = [
    "Shards",
    "available_cores",
    "blas_threads",
    "default_threads",
    "run_shards",
    "shard_slices",
    "single_threaded_blas",
    "THREADS_ENV",
]

T = TypeVar("T")
R = TypeVar("R")

#: Environment variable overriding the default number of worker threads.
THREADS_ENV = "FNNET_NUM_THREADS"

#: (set, get) symbol pairs of the BLAS libraries NumPy links: scipy-openblas (NumPy >= 2 wheels,
#: 64-bit and 32-bit integer builds), plain OpenBLAS (distribution builds), Intel MKL.
_BLAS_SYMBOLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
)


class _Blas:
    """The loaded BLAS's thread-count functions, looked up once."""

    def __init__(self) -> None:
        self.set: Callable[[int], object] | None = None
        self.get: Callable[[], int] | None = None
        self.lock = threading.Lock()
        self.users = 0  # threads currently inside single_threaded_blas()
        self.saved = 0  # the count to restore when the last one leaves
        for path in _loaded_blas_paths():
            try:
                lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
            except OSError:
                continue
            for set_name, get_name in _BLAS_SYMBOLS:
                setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    self.set, self.get = setter, getter
                    return


def _loaded_blas_paths() -> list[str]:
    """Paths of BLAS-looking shared libraries already in this process (never loads a new one)."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.split()[-1] if line.strip() else ""
                name = Path(path).name.lower()
                if path.startswith("/") and ("blas" in name or "mkl_rt" in name) and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    # macOS and others: the copy bundled in NumPy's wheel (opened with RTLD_NOLOAD only if loaded)
    here = Path(np.__file__).parent
    for pattern in ("../numpy.libs/*openblas*", ".dylibs/*openblas*"):
        paths.extend(p for p in sorted(glob.glob(str(here / pattern))) if p not in paths)
    return paths


_blas: _Blas | None = None
_blas_lock = threading.Lock()


def _get_blas() -> _Blas:
    global _blas
    with _blas_lock:
        if _blas is None:
            _blas = _Blas()
        return _blas


def blas_threads() -> int | None:
    """The number of threads NumPy's BLAS uses now, or ``None`` if it cannot be found."""
    blas = _get_blas()
    return None if blas.get is None else int(blas.get())


@contextmanager
def single_threaded_blas() -> Iterator[bool]:
    """Run the body with a single-threaded BLAS; restore the previous thread count afterwards.

    Safe to nest and to enter from several threads at once: the count is restored when the last
    one leaves. Yields whether the setting could be made (``False`` where the BLAS is unknown).
    """
    blas = _get_blas()
    if blas.set is None or blas.get is None:
        yield False
        return
    with blas.lock:
        if blas.users == 0:
            blas.saved = int(blas.get())
            if blas.saved != 1:
                blas.set(1)
        blas.users += 1
    try:
        yield True
    finally:
        with blas.lock:
            blas.users -= 1
            if blas.users == 0 and blas.saved != 1:
                blas.set(blas.saved)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Worker threads to use when none is given: ``$FNNET_NUM_THREADS`` if set, else the available
    cores (1 if NumPy's BLAS thread count cannot be controlled).

    Raises:
        ValueError: if ``$FNNET_NUM_THREADS`` is not a positive integer.
    """
    env = os.environ.get(THREADS_ENV)
    if env is not None and env.strip():
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {env!r}")
        return n
    return available_cores() if blas_threads() is not None else 1


def shard_slices(n: int, shards: int) -> list[slice]:
    """Split ``range(n)`` into ``min(shards, n)`` contiguous slices whose lengths differ by at most 1
    (longer ones first); an empty list for ``n == 0``.
    """
    if shards < 1:
        raise ValueError(f"shard_slices: shards must be positive, got {shards}")
    k = min(shards, n)
    if k == 0:
        return []
    base, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        end = start + base + (1 if i < extra else 0)
        out.append(slice(start, end))
        start = end
    return out


class _Pool:
    """One lazily created thread pool per process (recreated after ``fork``, whose child has no
    threads), grown when more workers are asked for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None
        self.size = 0
        self.pid = 0

    def get(self, workers: int) -> ThreadPoolExecutor:
        with self.lock:
            if self.executor is None or self.pid != os.getpid() or self.size < workers:
                if self.executor is not None and self.pid == os.getpid():
                    self.executor.shutdown(wait=False)
                self.executor = ThreadPoolExecutor(workers, thread_name_prefix="fnnet")
                self.size, self.pid = workers, os.getpid()
            return self.executor


_pool = _Pool()
_in_worker = threading.local()  # .flag: this thread is running a run of run_shards for a caller


def run_shards(fn: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """``[fn(item) for item in items]``, with up to ``threads`` items running at once.

    Items are dealt into ``threads`` runs of consecutive items; the calling thread does the first
    run itself. Results keep the order of ``items``. An exception from any item is raised after
    every run has finished. Called from inside another ``run_shards`` item running on a pool
    thread, it runs the items one after another (nested waits on one pool could deadlock).
    """
    if threads < 1:
        raise ValueError(f"run_shards: threads must be positive, got {threads}")
    runs = [range(s.start, s.stop) for s in shard_slices(len(items), threads)]
    if len(runs) <= 1 or getattr(_in_worker, "flag", False):
        # A worker that asked the pool for more help could wait on work queued behind itself.
        return [fn(item) for item in items]

    def do(run: range) -> list[R]:
        return [fn(items[i]) for i in run]

    def work(run: range) -> list[R]:
        _in_worker.flag = True
        try:
            return do(run)
        finally:
            _in_worker.flag = False

    pool = _pool.get(len(runs) - 1)
    futures = [pool.submit(work, run) for run in runs[1:]]
    try:
        first = do(runs[0])
    finally:
        errors = [f.exception() for f in futures]  # waits for every run
    for err in errors:
        if err is not None:
            raise err
    return first + [r for f in futures for r in f.result()]


class Shards:
    """A batch split into ``count`` shards of rows, run on up to ``threads`` threads.

    Handed to :meth:`fnnet.layers.base.Layer.forward_shards`, so that a layer needing the whole
    batch can still do its per-shard work in parallel.
    """

    __slots__ = ("count", "threads")

    def __init__(self, count: int, threads: int):
        self.count = count
        self.threads = threads

    def map(self, fn: Callable[[int], R]) -> list[R]:
        """``[fn(0), ..., fn(count - 1)]``, computed on the threads (see :func:`run_shards`)."""
        return run_shards(fn, range(self.count), self.threads)
