"""Threads for training and evaluation: shards of a batch on the machine's cores, and BLAS threads.

NumPy releases the interpreter lock inside BLAS calls and elementwise loops, so two Python threads
each running the forward and backward pass of half a batch keep two cores busy, where one thread
with a multi-threaded BLAS leaves the second core idle in everything that is not a matrix product.

- The *shard count* is part of the arithmetic (it decides which rows go through the model
  together), so it is chosen from the model and the batch shape only.
- The *thread count* is speed only: shards run concurrently or take turns and give the same bits
  either way, because every cross-shard sum (:class:`ShardGroup`) is taken in shard order.
- BLAS runs with a fixed thread count inside fnnet's steps (:func:`blas_limit`), set through
  threadpoolctl, so that GEMM rounding never depends on the machine's cores.

>>> from fnnet.train.parallel import run_shards
>>> run_shards(lambda i: i * i, range(4), threads=2)
[0, 1, 4, 9]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from fnnet._validate import is_int
from fnnet.typing import Array

__all__ = [
    "THREADS_ENV",
    "ShardGroup",
    "available_cores",
    "blas_limit",
    "blas_threads",
    "default_threads",
    "run_shards",
    "shard_slices",
    "spawn",
]

T = TypeVar("T")
R = TypeVar("R")

THREADS_ENV = "FNNET_NUM_THREADS"
"""Environment variable overriding the default number of worker threads.

>>> import os
>>> from fnnet.train.parallel import THREADS_ENV, default_threads
>>> THREADS_ENV
'FNNET_NUM_THREADS'
>>> from unittest import mock
>>> with mock.patch.dict(os.environ, {THREADS_ENV: "3"}):
...     default_threads()
3
"""


# --- BLAS threads ---------------------------------------------------------------------------------


class _Blas:
    """The process's BLAS libraries (through threadpoolctl) and a reference-counted limit."""

    def __init__(self) -> None:
        from threadpoolctl import ThreadpoolController

        self.libs = [c for c in ThreadpoolController().select(user_api="blas").lib_controllers]
        self.lock = threading.Lock()
        self.users = 0  # callers inside blas_limit()
        self.limit = 0  # the thread count they run with
        self.saved: list[int] = []  # each library's count before the first of them came in

    def counts(self) -> list[int]:
        return [int(lib.num_threads) for lib in self.libs]

    def set(self, counts: Sequence[int], now: Sequence[int]) -> None:
        """Set each library's count to ``counts`` where it is not ``now`` already."""
        for lib, n, current in zip(self.libs, counts, now):
            if n != current:
                lib.set_num_threads(n)


_blas: _Blas | None = None
_blas_lock = threading.Lock()
_held = threading.local()  # .depth: how many blas_limit bodies this thread is inside


def _get_blas() -> _Blas:
    global _blas
    with _blas_lock:
        if _blas is None:
            _blas = _Blas()
        return _blas


def blas_threads() -> int | None:
    """The number of threads NumPy's BLAS uses now, or ``None`` if threadpoolctl finds no BLAS.

    >>> from fnnet.train.parallel import blas_threads
    >>> n = blas_threads()
    >>> n is None or n >= 1
    True
    """
    blas = _get_blas()
    return blas.counts()[0] if blas.libs else None


@contextmanager
def blas_limit(threads: int = 1) -> Iterator[None]:
    """Run the body with BLAS limited to ``threads``; restore the previous counts afterwards.

    Safe to nest and to enter from several threads at once with the same ``threads``: the counts
    are restored when the last caller leaves. A caller asking for a different count while others
    are inside raises ``ValueError`` (results would depend on which came first). In a child
    forked inside the body, the forking thread keeps its limit until it leaves the body.

    Args:
        threads: the BLAS thread count, a positive int.

    >>> import numpy as np
    >>> from fnnet.train.parallel import blas_limit, blas_threads
    >>> with blas_limit(1):
    ...     inside = blas_threads()
    ...     y = np.ones((64, 64)) @ np.ones((64, 64))
    >>> inside in (None, 1), float(y[0, 0])
    (True, 64.0)
    """
    blas = _get_blas()
    entered = False
    try:
        with blas.lock:
            if blas.users == 0:
                if not is_int(threads) or threads < 1:
                    raise ValueError(f"blas_limit: threads must be a positive int, got {threads!r}")
                blas.saved = blas.counts()
                blas.limit = threads
            elif blas.limit != threads:
                who = "this thread (a blas_limit around this one)" if getattr(_held, "depth", 0) else "another thread"
                raise ValueError(
                    f"blas_limit: BLAS is held at {blas.limit} thread(s) by {who}; cannot run with {threads!r} "
                    "at the same time"
                )
            # counted before the counts change, so that an interrupt from here on restores them
            blas.users += 1
            entered = True
            _held.depth = getattr(_held, "depth", 0) + 1
            if blas.users == 1:
                blas.set([threads] * len(blas.libs), blas.saved)
        yield
    finally:
        if entered:
            _leave(blas)


def _leave(blas: _Blas) -> None:
    """One caller leaves :func:`blas_limit`; the last restores the counts. Completed even when
    Ctrl-C lands inside it (the interrupt is raised afterwards)."""
    counted = last = False
    first = True

    def leave() -> None:
        nonlocal counted, last, first
        with blas.lock:
            if not counted:
                _held.depth -= 1
                if blas.users > 0:  # never below 0, whatever a fork left behind
                    blas.users -= 1
                    last = blas.users == 0
                counted = True
            if last and blas.users == 0:
                # after an interrupted attempt some libraries may be restored already
                now = [blas.limit] * len(blas.libs) if first else blas.counts()
                first = False
                blas.set(blas.saved, now)

    _uninterrupted(leave)


def _uninterrupted(fn: Callable[[], None]) -> None:
    """Run ``fn`` to its end even if Ctrl-C lands inside it, calling it again (it must be safe to
    repeat), then raise the interrupt."""
    caught: KeyboardInterrupt | None = None
    while True:
        try:
            fn()
            break
        except KeyboardInterrupt as e:
            caught = e
    if caught is not None:
        raise caught


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one).

    >>> from fnnet.train.parallel import available_cores
    >>> available_cores() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Worker threads when none is given: ``$FNNET_NUM_THREADS`` if set, else the available cores.

    Raises:
        ValueError: if ``$FNNET_NUM_THREADS`` is not a positive integer.

    >>> from fnnet.train.parallel import default_threads
    >>> default_threads() >= 1
    True
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
    return available_cores()


def shard_slices(n: int, shards: int) -> list[slice]:
    """Split ``range(n)`` into ``min(shards, n)`` contiguous slices whose lengths differ by at most 1
    (longer ones first); an empty list for ``n == 0``.

    >>> from fnnet.train.parallel import shard_slices
    >>> shard_slices(5, 2)
    [slice(0, 3, None), slice(3, 5, None)]
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


# --- the thread pool ------------------------------------------------------------------------------


class _Pool:
    """One lazily created thread pool per process, grown when more workers are asked for.

    A pool being replaced is never shut down (another thread may be submitting to it); it ends
    when the last reference goes. A forked child starts without one.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None
        self.size = 0

    def submit_all(self, fns: Sequence[Callable[[], R]], workers: int) -> list[Future[R]]:
        """Submit ``fns`` in order, with no other caller's work between them."""
        with self.lock:
            if self.executor is None or self.size < workers:
                self.executor = ThreadPoolExecutor(workers, thread_name_prefix="fnnet")
                self.size = workers
            try:
                return [self.executor.submit(fn) for fn in fns]
            except BaseException:
                # A Ctrl-C inside submit, while Thread.start waits for a new worker, leaves that
                # worker running but unknown to concurrent.futures' exit hook, so the interpreter
                # would wait for it for ever at exit: shutting the pool down wakes every worker.
                self.executor.shutdown(wait=False)
                self.executor, self.size = None, 0
                raise


_pool = _Pool()
_in_worker = threading.local()  # .flag: this thread is one of the pool's workers


def _after_fork_in_child() -> None:
    """A forked child has only the forking thread: new locks, no pool, and the parent's BLAS
    counts unless the forking thread itself is inside :func:`blas_limit` (then it keeps its limit)."""
    global _pool, _in_worker, _blas_lock
    _pool = _Pool()
    _in_worker = threading.local()
    _blas_lock = threading.Lock()
    blas = _blas
    if blas is not None:
        blas.lock = threading.Lock()
        own = getattr(_held, "depth", 0)
        if blas.users and not own:
            blas.set(blas.saved, [blas.limit] * len(blas.libs))
        blas.users = own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _work(fn: Callable[[], R]) -> R:
    _in_worker.flag = True
    try:
        return fn()
    finally:
        _in_worker.flag = False


def _outcomes(futures: Sequence[Future[R]], stop: Callable[[], None]) -> list[BaseException | None]:
    """Each future's exception (None if it succeeded), once all have finished. Ctrl-C during the
    wait calls ``stop`` (which makes the others end soon) and is raised at once."""
    try:
        return [f.exception() for f in futures]
    except KeyboardInterrupt:
        _uninterrupted(stop)
        raise


def spawn(fn: Callable[[], R]) -> Callable[[], R]:
    """Start ``fn()`` on one of the pool's threads and return a join that waits for its result
    (raising its exception). Called from a pool thread, it runs ``fn`` at once instead. A
    training step with a thread to spare passes this as :attr:`fnnet.layers.Ctx.spawn`.

    A Ctrl-C while the join waits is raised at once; ``fn`` still runs to its end on its thread.

    >>> from fnnet.train.parallel import spawn
    >>> join = spawn(lambda: sum(range(10)))
    >>> join()
    45
    """
    if getattr(_in_worker, "flag", False):
        result = fn()
        return lambda: result
    future = _pool.submit_all([lambda: _work(fn)], 1)[0]
    return future.result


class _Cancelled(Exception):
    """A Ctrl-C in another run of the same call stopped this one before its next item."""


def run_shards(fn: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """``[fn(item) for item in items]``, with up to ``threads`` items running at once.

    Items are dealt into ``threads`` runs of consecutive items; the calling thread does the first
    run itself. Results keep the order of ``items``; an exception from any item is raised after
    every run has finished. A ``KeyboardInterrupt`` (Ctrl-C in the caller) instead stops the
    other runs after their current item, and is raised once they have stopped (at once on a
    second Ctrl-C). Called from a pool thread, it runs the items one after another.

    >>> from fnnet.train.parallel import run_shards
    >>> run_shards(lambda rows: sum(rows), [range(0, 3), range(3, 6), range(6, 9)], threads=2)
    [3, 12, 21]
    """
    if threads < 1:
        raise ValueError(f"run_shards: threads must be positive, got {threads}")
    runs = [range(s.start, s.stop) for s in shard_slices(len(items), threads)]
    if len(runs) <= 1 or getattr(_in_worker, "flag", False):
        return [fn(item) for item in items]
    interrupted = threading.Event()

    def do(run: range) -> list[R]:
        out = []
        try:
            for i in run:
                if interrupted.is_set():
                    raise _Cancelled()
                out.append(fn(items[i]))
        except BaseException as e:
            if not isinstance(e, Exception):
                interrupted.set()
            raise
        return out

    def job(run: range) -> Callable[[], list[R]]:
        return lambda: _work(lambda: do(run))

    futures: list[Future[list[R]]] = []
    own: BaseException | None = None
    first: list[R] = []
    try:
        futures = _pool.submit_all([job(run) for run in runs[1:]], len(runs) - 1)
        first = do(runs[0])
    except Exception as e:
        own = e
    except BaseException as e:
        interrupted.set()  # also stops runs submitted before an interrupt cut the submission short
        own = e
    errors = [own, *_outcomes(futures, interrupted.set)]
    failures = [e for e in errors if e is not None]
    if failures:
        raise next((e for e in failures if not isinstance(e, _Cancelled)), failures[0])
    return first + [r for f in futures for r in f.result()]


class _Broken(Exception):
    """Another shard of the group failed."""


class ShardGroup:
    """The shards of one batch, run concurrently, with an ordered sum across them.

    ``group.run(fn)`` calls ``fn(s)`` for every shard ``s`` at once (each on its own thread), at
    most ``threads`` of them computing at a time. Inside, ``group.batch_sum(s)`` is shard ``s``'s
    collective: every shard passes its partial sum, and each gets back
    ``part[0] + part[1] + ...`` in shard order, so the bits do not depend on the threads.
    A group may run several times (a forward and a backward pass); every shard makes the same
    collective calls in the same order. A shard that returns having made fewer calls than another
    fails the run with ``ValueError`` instead of leaving the others waiting for ever.

    >>> import numpy as np
    >>> from fnnet.train.parallel import ShardGroup
    >>> group = ShardGroup(2, threads=2)
    >>> group.run(lambda s: group.batch_sum(s)(np.array([s + 1.0]))).__repr__()
    '[array([3.]), array([3.])]'
    """

    def __init__(self, count: int, threads: int):
        if count < 1 or threads < 1:
            raise ValueError(f"ShardGroup: count and threads must be positive, got {count} and {threads}")
        self.count = count
        self.permits = threading.Semaphore(min(threads, count))
        self.barrier = threading.Barrier(count)
        self.rounds: dict[int, list[Any]] = {}
        self.calls = [0] * count
        self.finished: list[int | None] = [None] * count  # each shard's call count when its fn returned
        self.ended = False  # some shard's fn returned in this run
        self.lock = threading.Lock()

    def batch_sum(self, shard: int) -> Callable[[Array], Array]:
        """Shard ``shard``'s collective: its partial sum in, the group's ordered sum out."""

        def total(part: Array) -> Array:
            j = self.calls[shard]
            self.calls[shard] = j + 1  # written before ``ended`` is read: see run's shard
            if self.ended and any(f is not None and f <= j for f in self.finished):
                raise self._mismatch()
            with self.lock:
                parts = self.rounds.setdefault(j, [None] * self.count)
            parts[shard] = part
            self.permits.release()  # let a waiting shard compute while this one waits
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                raise _Broken() from None
            finally:
                self.permits.acquire()
            out: Array = parts[0].copy()
            for p in parts[1:]:
                out += p
            return out

        return total

    def run(self, fn: Callable[[int], R]) -> list[R]:
        """``[fn(0), ..., fn(count - 1)]``, the shards running concurrently."""

        def shard(s: int) -> R:
            with self.permits:
                try:
                    out = fn(s)
                    # finished, then ended, written before the calls are read, while a shard
                    # counts its call before reading ended (the interpreter orders them): a
                    # shard with more calls than this one is seen here or sees this one end
                    n = self.finished[s] = self.calls[s]
                    self.ended = True
                    if max(self.calls) > n:
                        raise self._mismatch()
                    return out
                except BaseException:
                    _uninterrupted(self.barrier.abort)
                    raise

        self.finished = [None] * self.count
        self.ended = False
        if self.count == 1:
            return [shard(0)]

        def job(s: int, pooled: bool) -> Callable[[], R]:
            return (lambda: _work(lambda: shard(s))) if pooled else (lambda: shard(s))

        futures: list[Future[R]] = []
        first: list[R] = []
        error: BaseException | None = None
        try:
            if getattr(_in_worker, "flag", False):
                # a pool thread must not wait on work queued behind it
                futures = _own_threads([job(s, False) for s in range(1, self.count)])
            else:
                futures = _pool.submit_all([job(s, True) for s in range(1, self.count)], self.count - 1)
            first = [shard(0)]
        except BaseException as e:
            # Ctrl-C can land outside shard's own handler (waiting for a permit, or between
            # submissions, when a shard already runs that no one will wait for): the barrier is
            # broken so that no shard waits at it for ever
            _uninterrupted(self.barrier.abort)
            error = e
        errors = [e for e in [error, *_outcomes(futures, self.barrier.abort)] if e is not None]
        if errors:
            raise next((e for e in errors if not isinstance(e, _Broken)), errors[0])
        return first + [f.result() for f in futures]

    def _mismatch(self) -> ValueError:
        return ValueError(
            f"ShardGroup: the shards made different numbers of batch_sum calls ({self.calls}); every shard "
            "must make the same collective calls in the same order (a layer must not skip ctx.batch_sum "
            "for some inputs)"
        )


def _own_threads(fns: Sequence[Callable[[], R]]) -> list[Future[R]]:
    """Run each of ``fns`` on a new thread of its own."""
    futures: list[Future[R]] = []
    for fn in fns:
        fut: Future[R] = Future()

        def body(fn: Callable[[], R] = fn, fut: Future[R] = fut) -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:  # handed to the waiting caller
                fut.set_exception(e)

        threading.Thread(target=body, daemon=True).start()
        futures.append(fut)
    return futures
