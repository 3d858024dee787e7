"""The default execution policy against every configuration it could have picked.

For each model, one training step at batch 100 (float32) is timed under the default policy
(:func:`fnnet.train.choose_policy`) and under every fixed configuration: shards 1 or 2, BLAS
threads 1 or all cores. Rounds are interleaved (each round times every configuration once, in a
rotating order) so that the machine's background load hits all of them alike; the table gives the
median step time per configuration (the one the default picks in bold) and the ratio of the
chosen configuration's median (the default's timer and the explicit one pooled: they run the same
configuration) to the best. A second part times
``fnnet train`` (the README's main job) with and without a busy-loop process holding one core.

Run: ``python bench/policy.py`` (about 8 minutes on 2 cores); ``--rounds`` and ``--quick``.
Results are recorded in the README ("Execution policy").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

import fnnet
from _bench_cli import positive_int, run_main
from fnnet import models
from fnnet.layers import Conv2D, Layer, ReLU, serial
from fnnet.runtime import keep_heap
from fnnet.train import choose_policy, init_train_state, make_train_step
from fnnet.train.parallel import available_cores
from fnnet.typing import Array, Shape


def small_cnn() -> Layer:
    """Three (1, 5)-kernel convolutions with stride (1, 2) on (1, 1, 40) signals."""
    return serial(*[layer for _ in range(3) for layer in (Conv2D(25, (1, 5), stride=(1, 2), pad=(0, 1)), ReLU())],
                  fnnet.Flatten(), fnnet.Affine(10))  # fmt: skip


MODELS: dict[str, tuple[Callable[[], Layer], Shape]] = {
    "two-layer-net": (lambda: models.two_layer_net(), (784,)),
    "simple-convnet": (lambda: models.simple_convnet(), (1, 28, 28)),
    "deep-convnet": (lambda: models.deep_convnet(), (1, 28, 28)),
    "deep-convnet-bn": (lambda: models.deep_convnet(batchnorm=True), (1, 28, 28)),
    "small-1xk-cnn": (small_cnn, (1, 1, 40)),
}


def step_timer(model: Layer, in_shape: Shape, shards: int | None, blas: int | None, n: int) -> Callable[[], float]:
    """A function timing ``n`` training steps of ``model`` at batch 100 in one configuration."""
    opt = fnnet.sgd(0.01)
    g = fnnet.key(1).generator()
    x: Array = g.random((100, *in_shape), dtype=np.float32)
    t = g.integers(0, 10, 100)
    state = init_train_state(model, opt, fnnet.key(0), in_shape)
    train_step = make_train_step(model, optimizer=opt, shards=shards, blas_threads=blas)
    state, _ = train_step(state, x, t, fnnet.key(2))  # warm-up: the policy probe and first allocations

    def run() -> float:
        # OpenBLAS's worker threads spin for a while after a multi-threaded call: let them sleep,
        # so that they do not take a core from the configuration timed next
        time.sleep(0.3)
        s, _ = train_step(state, x, t, fnnet.key(2))
        t0 = time.perf_counter()
        for i in range(n):
            s, _ = train_step(s, x, t, fnnet.key(3 + i))
        return (time.perf_counter() - t0) / n

    return run


def policy_table(rounds: int, names: list[str]) -> None:
    cores = available_cores()
    print(f"# step time at batch 100, median of {rounds} interleaved rounds, ms; {cores} cores")
    print("| model | default (shards, BLAS) | " + " | ".join(f"s{s} b{b}" for s in (1, 2) for b in (1, cores)) +
          " | chosen / best |")  # fmt: skip
    print("|---" * 7 + "|")
    for name in names:
        build, shape = MODELS[name]
        model = build()
        params, _ = model.init(fnnet.key(0), shape)
        chosen = choose_policy(model, params, model.init_state(shape), np.zeros((100, *shape), np.float32))
        n = {"two-layer-net": 200, "small-1xk-cnn": 50}.get(name, 3)
        configs: dict[str, Callable[[], float]] = {"default": step_timer(model, shape, None, None, n)}
        for s in (1, 2):
            for b in (1, cores):
                configs[f"s{s} b{b}"] = step_timer(model, shape, s, b, n)
        times: dict[str, list[float]] = {k: [] for k in configs}
        keys = list(configs)
        for r in range(rounds):
            for k in keys[r % len(keys):] + keys[: r % len(keys)]:
                times[k].append(configs[k]())
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        best = min(v for k, v in med.items() if k != "default")
        # the default runs the chosen configuration: both timers measure it, so both count
        mine = f"s{chosen.shards} b{cores if chosen.blas_threads > 1 else 1}"
        pooled = statistics.median(times["default"] + times[mine]) * 1e3
        cells = " | ".join(f"**{med[k]:.2f}**" if k == mine else f"{med[k]:.2f}" for k in keys[1:])
        print(f"| {name} | {med['default']:.2f} ({chosen.shards}, {chosen.blas_threads}) | {cells} | "
              f"{pooled / best:.2f} |", flush=True)  # fmt: skip


def busy_loop() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def train_time() -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fnnet", "train", "--quiet", "--out", os.path.join(out, "run")],
                       check=True, capture_output=True)  # fmt: skip
        return time.perf_counter() - t0


def busy_table(rounds: int) -> None:
    quiet, busy = [], []
    for _ in range(rounds):
        quiet.append(train_time())
        hog = busy_loop()
        try:
            time.sleep(0.5)
            busy.append(train_time())
        finally:
            hog.kill()
            hog.wait()
    print(f"# fnnet train (two-layer-net), whole command, s: quiet {[round(v, 2) for v in quiet]}, "
          f"one core busy {[round(v, 2) for v in busy]}")  # fmt: skip
    print(f"busy / quiet median: {statistics.median(busy) / statistics.median(quiet):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=positive_int, default=7)
    ap.add_argument("--quick", action="store_true", help="three rounds, no busy-machine part")
    ap.add_argument("--no-busy", action="store_true", help="skip the busy-machine part")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--keep-heap", action="store_true",
                    help="glibc keeps freed memory from the start (fnnet's train steps set this when built)")
    args = ap.parse_args()
    if args.keep_heap:
        keep_heap()
    rounds = min(3, args.rounds) if args.quick else args.rounds
    policy_table(rounds, args.models)
    if not (args.quick or args.no_busy):
        busy_table(3)


if __name__ == "__main__":
    run_main(main)
