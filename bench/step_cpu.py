"""CPU time of one train step, fnnet against PyTorch, both on one thread (robust on a busy machine).

    python bench/step_cpu.py --model resnet --torch /path/to/torch-venv/bin/python --rounds 7
    python bench/step_cpu.py --model resnet --profile

Wall-clock throughput on a shared machine measures the machine as much as the code. CPU time
(``time.process_time``) of the process running the step does not count time spent waiting for a
core, so it compares the work each library does. fnnet runs the step unsharded (``shards=1``)
with BLAS on one thread; PyTorch runs ``bench/torch_reference.py --serve --cpu-time`` with
``torch.set_num_threads(1)``. Rounds alternate between the two; every round is printed, then the
medians and their ratio (PyTorch CPU-s / fnnet CPU-s: above 1 means fnnet does less work).

fnnet's train step keeps freed memory for reuse (:func:`fnnet.runtime.prepare_training`; run
with ``FNNET_KEEP_HEAP=0`` to turn it off); ``--keep-heap`` sets the same in the PyTorch process:
without it every step's arrays are fresh pages whose faults count as CPU time. ``--profile`` instead splits fnnet's step into CPU time per layer kind (forward and backward,
exclusive of sub-layers) and the rest of the step (loss, optimizer, finiteness check).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import fnnet
from _bench_cli import positive_int, python_executable, run_main
from fnnet import models
from fnnet.layers import Layer
from fnnet.optim import sgd
from fnnet.runtime import keep_heap
from fnnet.train import TrainState, init_train_state, make_train_step
from throughput import TorchReference

BATCH = 100
LR = 0.01
ARCH = {"simple-convnet": "simple", "deep-convnet": "deep", "resnet": "resnet"}


def _model(name: str) -> Layer:
    builder = getattr(models, name.replace("-", "_"))
    model: Layer = builder()
    return model


def fnnet_step(name: str, batch: int = BATCH) -> Callable[[], object]:
    """One unsharded fnnet train step with BLAS on one thread, new state each call."""
    model = _model(name)
    g = fnnet.key(1).generator()
    x = g.random((batch, 1, 28, 28), dtype=np.float32)
    t = g.integers(0, 10, batch)
    opt = sgd(LR)
    step = make_train_step(model, optimizer=opt, shards=1, blas_threads=1)
    holder: list[TrainState] = [init_train_state(model, opt, fnnet.key(0), (1, 28, 28))]
    k = fnnet.key(2)

    def run() -> object:
        holder[0], m = step(holder[0], x, t, k)
        return m

    return run


def cpu_per_step(step: Callable[[], object], steps: int) -> float:
    """CPU seconds per call of ``step``, over ``steps`` calls."""
    t0 = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - t0) / steps


# --- profile: CPU time per layer kind -------------------------------------------------------------


@contextmanager
def layer_timers(totals: dict[str, float]) -> Iterator[None]:
    """Wrap every Layer subclass's forward/backward so that ``totals["Kind.forward"]`` collects its
    CPU time exclusive of nested layers; restores the classes on exit."""
    stack: list[float] = []  # time spent in children of each open call

    def wrap(cls: type, name: str) -> Callable[..., Any]:
        orig = cls.__dict__[name]

        def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            stack.append(0.0)
            t0 = time.process_time()
            try:
                return orig(self, *args, **kwargs)
            finally:
                dt = time.process_time() - t0
                child = stack.pop()
                totals[f"{type(self).__name__}.{name}"] += dt - child
                if stack:
                    stack[-1] += dt

        return timed

    saved: list[tuple[type, str, Any]] = []
    todo: list[type] = [Layer]
    seen: set[type] = set()
    while todo:
        cls = todo.pop()
        subs: list[type] = cls.__subclasses__()
        for sub in subs:
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
        for name in ("forward", "backward"):
            if name in cls.__dict__ and cls is not Layer:
                saved.append((cls, name, cls.__dict__[name]))
    for cls, name, _ in saved:
        setattr(cls, name, wrap(cls, name))
    try:
        yield
    finally:
        for cls, name, orig in saved:
            setattr(cls, name, orig)


def profile(name: str, steps: int, batch: int) -> None:
    step = fnnet_step(name, batch)
    for _ in range(2):
        step()
    totals: dict[str, float] = defaultdict(float)
    with layer_timers(totals):
        t0 = time.process_time()
        for _ in range(steps):
            step()
        whole = (time.process_time() - t0) / steps
    per = {k: v / steps * 1e3 for k, v in totals.items()}
    kinds = sorted({k.split(".")[0] for k in per}, key=lambda k: -(per.get(k + ".forward", 0) + per.get(k + ".backward", 0)))
    print(f"model {name}, batch {batch}, CPU ms per step (exclusive of sub-layers), {steps} steps")
    print(f"  {'kind':<18} {'forward':>8} {'backward':>9}")
    for k in kinds:
        print(f"  {k:<18} {per.get(k + '.forward', 0):8.1f} {per.get(k + '.backward', 0):9.1f}")
    layers = sum(per.values())
    print(f"  layers total {layers:.1f} ms; whole step {whole * 1e3:.1f} ms; rest {whole * 1e3 - layers:.1f} ms")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet", choices=sorted(ARCH))
    ap.add_argument("--rounds", type=positive_int, default=7)
    ap.add_argument("--steps", type=positive_int, default=3, help="steps per round and side")
    ap.add_argument("--batch", type=positive_int, default=BATCH, help="batch size of the fnnet step (--profile)")
    ap.add_argument("--torch", type=python_executable, default=None, help="python of a venv with torch==2.13.0")
    ap.add_argument("--profile", action="store_true", help="fnnet CPU time per layer kind instead")
    ap.add_argument("--keep-heap", action="store_true", help="the PyTorch process keeps freed memory too "
                    "(fnnet.runtime.keep_heap; fnnet's train step does so by default, FNNET_KEEP_HEAP=0 turns it off)")
    args = ap.parse_args(argv)
    if args.batch != BATCH and not args.profile:
        ap.error(f"--batch only applies with --profile (the comparison with PyTorch runs batch {BATCH})")
    if args.keep_heap and not keep_heap():
        print("--keep-heap: mallopt not available; default allocator")
    if args.profile:
        profile(args.model, args.steps, args.batch)
        return
    fn = fnnet_step(args.model)
    for _ in range(2):
        fn()
    torch = (
        TorchReference(args.torch, args.model, args.keep_heap, threads=1, cpu_time=True) if args.torch else None
    )
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(args.rounds):
        ours.append(cpu_per_step(fn, args.steps))
        line = f"round {r + 1}: fnnet {ours[-1] * 1e3:7.1f} CPU-ms/step"
        if torch is not None:
            theirs.append(torch.block(args.steps))
            line += f"   PyTorch {theirs[-1] * 1e3:7.1f} CPU-ms/step   ratio {theirs[-1] / ours[-1]:.2f}"
        print(line, flush=True)
    if torch is not None:
        print(torch.banner)
        torch.close()
    mo = statistics.median(ours)
    heap = "keep-heap" if args.keep_heap else "default allocator"
    print(f"model {args.model}, batch {BATCH}, float32, one thread, median of {args.rounds} rounds x {args.steps} steps, {heap}")
    print(f"  fnnet   {mo * 1e3:7.1f} CPU-ms/step")
    if theirs:
        mt = statistics.median(theirs)
        print(f"  PyTorch {mt * 1e3:7.1f} CPU-ms/step")
        print(f"ratio fnnet / PyTorch (throughput per CPU-s): {mt / mo:.2f}")


if __name__ == "__main__":
    run_main(main)
