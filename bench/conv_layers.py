"""Micro-benchmark of fnnet's convolution and pooling layers on the book's two CNNs.

    .venv/bin/python bench/conv_layers.py --arch both --repeats 7
    .venv/bin/python bench/conv_layers.py --arch deep --layers     # per-layer forward/backward times
    .venv/bin/python bench/conv_layers.py --arch deep --profile    # cProfile of the train step

Times, at batch 100 in float32: forward+backward of the conv/pool stack alone, and a full train
step (forward in training mode, softmax cross-entropy gradient ``(softmax(y) - onehot) / N``
written inline, backward, plain SGD), as the median samples/s over repeats. Peak memory of one
train step is measured with ``tracemalloc`` (NumPy reports its array allocations to it): the peak
of traced allocations during the step above what was allocated before it (inputs and parameters).

The pieces (``build``, ``conv_stack``, ``train_step``, ``time_samples_per_s``, ``step_peak_bytes``)
are importable by other benchmarks. ``bench/torch_reference.py`` times the same architectures
with PyTorch.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fnnet.typing import Array
from fnnet.functions import softmax
from fnnet.layers.base import Ctx, Layer
from fnnet.layers.combinators import Serial, serial
from fnnet.layers.conv import Conv2D
from fnnet.layers.core import Affine, ReLU
from fnnet.layers.dropout import Dropout
from fnnet.layers.pool import MaxPool2D
from fnnet.random import Key, fold_in, key as make_key
from fnnet.runtime import keep_heap
from fnnet.tree import tree_astype, tree_map

BATCH = 100
N_CLASSES = 10
IN_SHAPE = (1, 28, 28)
LEARNING_RATE = 0.01
ARCHS = ("simple", "deep")


def conv_stack(arch: str) -> list[Layer]:
    """The convolution/pooling part of ``arch`` ("simple": the book's SimpleConvNet, ch. 7;
    "deep": its DeepConvNet, ch. 8), ReLUs included."""
    if arch == "simple":
        return [Conv2D(30, 5, stride=1, pad=0), ReLU(), MaxPool2D(2)]
    if arch == "deep":
        layers: list[Layer] = []
        for i, (fn, pad) in enumerate(((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))):
            layers += [Conv2D(fn, 3, stride=1, pad=pad), ReLU()]
            if i % 2 == 1:
                layers.append(MaxPool2D(2))
        return layers
    raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")


def build(arch: str) -> Serial:
    """The whole network ``arch``: its conv stack followed by the book's fully connected head."""
    if arch == "simple":
        head: list[Layer] = [Affine(100), ReLU(), Affine(N_CLASSES)]
    elif arch == "deep":
        head = [Affine(50), ReLU(), Dropout(0.5), Affine(N_CLASSES)]
    else:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")
    return serial(*conv_stack(arch), *head)


class Problem(NamedTuple):
    """A model with float32 parameters and one batch of inputs and labels."""

    model: Serial
    params: Any
    x: Array
    t: Array


def make_problem(model: Serial, seed: int = 0, batch: int = BATCH) -> Problem:
    """Initialise ``model`` for MNIST-shaped inputs and draw a random float32 batch."""
    params, _ = model.init(make_key(seed), IN_SHAPE)
    params = tree_astype(params, np.float32)
    rng = make_key(seed + 1).generator()
    x = rng.random((batch, *IN_SHAPE), dtype=np.float32)
    t = rng.integers(0, N_CLASSES, batch)
    return Problem(model, params, x, t)


def train_step(model: Serial, params: Any, x: Array, t: Array, key: Key, lr: float = LEARNING_RATE) -> Any:
    """One SGD step on softmax cross-entropy; returns the new params.

    Args:
        x: ``(N, 1, 28, 28)`` float32; t: ``(N,)`` integer labels; key: this step's dropout key.
    """
    y, _, cache = model.forward(params, None, x, Ctx(train=True, key=key))
    n = y.shape[0]
    onehot = np.zeros_like(y)
    onehot[np.arange(n), t] = 1
    dy = (softmax(y) - onehot) / y.dtype.type(n)
    _, grads = model.backward(params, cache, dy, input_grad=False)
    step = np.float32(lr)
    return tree_map(lambda p, g: p - step * g, params, grads)


def stack_fwd_bwd(model: Serial, params: Any, x: Array, key: Key) -> None:
    """Forward and backward through ``model`` with ``dout = 1`` (the cost of the layers alone)."""
    y, _, cache = model.forward(params, None, x, Ctx(train=True, key=key))
    model.backward(params, cache, np.ones_like(y), input_grad=False)


def time_samples_per_s(fn: Callable[[int], object], batch: int, repeats: int, steps: int, warmup: int) -> list[float]:
    """Samples/s of ``repeats`` timed runs of ``steps`` calls ``fn(i)`` each, after ``warmup`` calls."""
    for i in range(warmup):
        fn(i)
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            fn(warmup + r * steps + i)
        rates.append(batch * steps / (time.perf_counter() - t0))
    return rates


def step_peak_bytes(problem: Problem) -> int:
    """Peak traced bytes allocated during one train step, above the level before it."""
    key = make_key(7)
    train_step(*problem, key)  # warm up (imports, caches) outside the trace
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        train_step(*problem, key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - base


def layer_times(problem: Problem, repeats: int) -> list[tuple[str, float, float]]:
    """Median forward and backward milliseconds of each layer in ``problem.model`` (one batch)."""
    model, params, x, _ = problem
    ctx_key = make_key(3)
    rows = []
    for i, layer in enumerate(model.layers):
        ctx = Ctx(train=True, key=fold_in(ctx_key, i))
        fwd, bwd = [], []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            y, _, cache = layer.forward(params[i], None, x, ctx)
            t1 = time.perf_counter()
            dout = np.ones_like(y)
            t2 = time.perf_counter()
            layer.backward(params[i], cache, dout, input_grad=i > 0)
            t3 = time.perf_counter()
            fwd.append(t1 - t0)
            bwd.append(t3 - t2)
        rows.append((f"{i:>2} {type(layer).__name__}{tuple(y.shape[1:])}", 1e3 * statistics.median(fwd[1:]), 1e3 * statistics.median(bwd[1:])))
        x = y
    return rows


def main() -> None:
    """Parse arguments and print the timings."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--arch", choices=(*ARCHS, "both"), default="both")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs (the median is reported)")
    parser.add_argument("--steps", type=int, default=10, help="calls per timed run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    parser.add_argument("--layers", action="store_true", help="also print per-layer forward/backward times")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of train steps instead")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc peak measurement")
    parser.add_argument(
        "--keep-heap", action="store_true", help="set glibc malloc to keep freed memory (see keep_heap)"
    )
    args = parser.parse_args()
    if args.keep_heap and not keep_heap():
        print("--keep-heap: mallopt not available; running with the default allocator")

    print(f"numpy {np.__version__}, batch {BATCH}, float32")
    for arch in ARCHS if args.arch == "both" else (args.arch,):
        problem = make_problem(build(arch))
        model, params, x, t = problem
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for i in range(args.steps):
                train_step(model, params, x, t, make_key(i))
            prof.disable()
            print(f"--- {arch}: cProfile of {args.steps} train steps")
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
            continue
        n_stack = len(conv_stack(arch))
        stack = serial(*model.layers[:n_stack])
        stack_params = params[:n_stack]
        rates = time_samples_per_s(
            lambda i: stack_fwd_bwd(stack, stack_params, x, make_key(i)), BATCH, args.repeats, args.steps, args.warmup
        )
        print(f"fnnet {arch:<6} conv stack fwd+bwd: median {statistics.median(rates):9.0f} samples/s "
              f"(min {min(rates):.0f}, max {max(rates):.0f})")
        rates = time_samples_per_s(
            lambda i: train_step(model, params, x, t, make_key(i)), BATCH, args.repeats, args.steps, args.warmup
        )
        print(f"fnnet {arch:<6} train step:         median {statistics.median(rates):9.0f} samples/s "
              f"(min {min(rates):.0f}, max {max(rates):.0f}, {args.repeats} x {args.steps} steps)")
        if not args.no_memory:
            peak = step_peak_bytes(problem)
            print(f"fnnet {arch:<6} train step peak memory (tracemalloc, above inputs+params): {peak / 2**20:.1f} MiB")
        if args.layers:
            print(f"  {'layer':<28} {'fwd ms':>8} {'bwd ms':>8}")
            for name, f_ms, b_ms in layer_times(problem, args.repeats):
                print(f"  {name:<28} {f_ms:8.2f} {b_ms:8.2f}")


if __name__ == "__main__":
    main()
