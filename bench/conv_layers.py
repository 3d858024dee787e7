"""Micro-benchmark of fnnet's convolution and pooling layers on the book's two CNNs.

    .venv/bin/python bench/conv_layers.py --arch both --repeats 7
    .venv/bin/python bench/conv_layers.py --arch deep --layers     # per-layer forward/backward times
    .venv/bin/python bench/conv_layers.py --arch deep --profile    # cProfile of the train step
    .venv/bin/python bench/conv_layers.py --conv1d --repeats 7     # Conv1D/MaxPool1D against 2-D
    .venv/bin/python bench/conv_layers.py --groups --repeats 7     # grouped and depthwise Conv2D

Times, at batch 100 in float32: forward+backward of the conv/pool stack alone, and a full train
step (forward in training mode, softmax cross-entropy gradient ``(softmax(y) - onehot) / N``
written inline, backward, plain SGD), as the median samples/s over repeats. Peak memory of one
train step is measured with ``tracemalloc`` (NumPy reports its array allocations to it): the peak
of traced allocations during the step above what was allocated before it (inputs and parameters).

``--conv1d`` times forward+backward (with the input gradient) of ``Conv1D(32, 5)`` and
``MaxPool1D(2)`` on ``(100, 16, 256)`` against ``Conv2D(32, (1, 5))`` and ``MaxPool2D((1, 2))`` on the
same numbers as ``(100, 16, 1, 256)``, with one BLAS thread, interleaved (the order alternates each round) and prints
every round and the median ratio. ``--groups`` times ``Conv2D(64, 3, pad=1, groups=G)`` on
``(100, 64, 14, 14)`` for a few ``G`` the same way.

The pieces (``build``, ``conv_stack``, ``train_step``, ``time_samples_per_s``, ``step_peak_bytes``)
are importable by other benchmarks. ``bench/torch_reference.py`` times the same architectures
with PyTorch.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from _bench_cli import nonnegative_int, positive_int, run_main
from fnnet.typing import Array
from fnnet.functions import softmax
from fnnet.layers.base import Ctx, Layer
from fnnet.layers.combinators import Serial, serial
from fnnet.layers.conv import Conv1D, Conv2D, ConvParams
from fnnet.layers.core import Affine, ReLU
from fnnet.layers.dropout import Dropout
from fnnet.layers.pool import MaxPool1D, MaxPool2D
from fnnet.random import Key, fold_in, key as make_key
from fnnet.runtime import keep_heap
from fnnet.train.parallel import blas_limit
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


def layer_fwd_bwd(layer: Layer, params: Any, x: Array) -> None:
    """Forward and backward (with ``dx``) of one layer, ``dout = 1``."""
    y, _, cache = layer.forward(params, None, x, Ctx(train=True))
    layer.backward(params, cache, np.ones_like(y))


def interleaved_ms(cases: Sequence[Callable[[], None]], rounds: int, steps: int) -> list[list[float]]:
    """Milliseconds per call of each case in each round; the cases run one after the other within a
    round, in an order that alternates between rounds, after one untimed call each."""
    for fn in cases:
        fn()
    out: list[list[float]] = [[] for _ in cases]
    for r in range(rounds):
        order = range(len(cases)) if r % 2 == 0 else reversed(range(len(cases)))
        for i in order:
            t0 = time.perf_counter()
            for _ in range(steps):
                cases[i]()
            out[i].append(1e3 * (time.perf_counter() - t0) / steps)
    return out


def conv1d_pairs(n: int = BATCH, c: int = 16, length: int = 256, k: int = 5, filters: int = 32) -> list[tuple[str, Layer, Any, Array, Layer, Any, Array]]:
    """``(name, 1-D layer, params, x, 2-D layer, params, x)``: the same maths in 1-D and in 2-D of height 1."""
    rng = make_key(11).generator()
    x1 = rng.standard_normal((n, c, length), dtype=np.float32)
    conv1 = Conv1D(filters, k)
    p1, _ = conv1.init(make_key(12), (c, length))
    conv2 = Conv2D(filters, (1, k))
    p2 = ConvParams(p1.w[:, :, None, :].copy(), p1.b)
    y1 = conv1.apply(p1, x1)  # the pool's input as it comes out of the convolution (channels-last strides)
    return [
        (f"conv  k={k}", conv1, p1, x1, conv2, p2, x1[:, :, None, :]),
        ("maxpool 2", MaxPool1D(2), None, y1, MaxPool2D((1, 2)), None, y1[:, :, None, :]),
    ]


def print_conv1d(rounds: int, steps: int) -> None:
    """Print every round of Conv1D/MaxPool1D against Conv2D/MaxPool2D and the median ratio."""
    for name, l1, p1, x1, l2, p2, x2 in conv1d_pairs():
        ms1, ms2 = interleaved_ms(
            [lambda: layer_fwd_bwd(l1, p1, x1), lambda: layer_fwd_bwd(l2, p2, x2)], rounds, steps
        )
        print(f"{name} fwd+bwd on {tuple(x1.shape)}: 1-D ms " + " ".join(f"{v:.2f}" for v in ms1))
        print(f"{name} fwd+bwd on {tuple(x2.shape)}: 2-D ms " + " ".join(f"{v:.2f}" for v in ms2))
        ratios = [a / b for a, b in zip(ms1, ms2)]
        print(f"{name}: median 1-D {statistics.median(ms1):.2f} ms, 2-D {statistics.median(ms2):.2f} ms, "
              f"1-D/2-D per round " + " ".join(f"{r:.3f}" for r in ratios) + f", median {statistics.median(ratios):.3f}")


def print_groups(rounds: int, steps: int, groups: tuple[int, ...] = (1, 4, 64)) -> None:
    """Print every round of ``Conv2D(64, 3, pad=1, groups=G)`` forward+backward on ``(100, 64, 14, 14)``."""
    x = make_key(13).generator().standard_normal((BATCH, 64, 14, 14), dtype=np.float32)
    layers = [Conv2D(64, 3, pad=1, groups=g) for g in groups]
    params = [layer.init(make_key(14), (64, 14, 14))[0] for layer in layers]
    cases = [functools.partial(layer_fwd_bwd, layer, p, x) for layer, p in zip(layers, params)]
    for g, ms in zip(groups, interleaved_ms(cases, rounds, steps)):
        print(f"Conv2D(64, 3, pad=1, groups={g:>2}) fwd+bwd on {x.shape}: median {statistics.median(ms):.2f} ms, "
              "rounds " + " ".join(f"{v:.2f}" for v in ms))


def main() -> None:
    """Parse arguments and print the timings."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--arch", choices=(*ARCHS, "both"), default="both")
    parser.add_argument("--repeats", type=positive_int, default=7, help="timed runs (the median is reported)")
    parser.add_argument("--steps", type=positive_int, default=10, help="calls per timed run")
    parser.add_argument("--warmup", type=nonnegative_int, default=3, help="untimed calls before timing")
    parser.add_argument("--layers", action="store_true", help="also print per-layer forward/backward times")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of train steps instead")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc peak measurement")
    parser.add_argument(
        "--keep-heap", action="store_true", help="set glibc malloc to keep freed memory (see keep_heap)"
    )
    parser.add_argument("--conv1d", action="store_true", help="Conv1D/MaxPool1D against Conv2D/MaxPool2D instead")
    parser.add_argument("--groups", action="store_true", help="grouped and depthwise Conv2D instead")
    args = parser.parse_args()
    if args.keep_heap and not keep_heap():
        print("--keep-heap: mallopt not available; running with the default allocator")

    print(f"numpy {np.__version__}, batch {BATCH}, float32")
    if args.conv1d or args.groups:
        with blas_limit(1):  # as the training step runs (one BLAS thread): steadier on a busy machine
            if args.conv1d:
                print_conv1d(args.repeats, args.steps)
            if args.groups:
                print_groups(args.repeats, args.steps)
        return
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
    run_main(main)
