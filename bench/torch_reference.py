"""PyTorch reference timings for the book's SimpleConvNet and DeepConvNet and a small ResNet (train step, CPU).

Runs in a separate virtual environment that has torch (torch is never a dependency of fnnet):

    /work/torchvenv/bin/python bench/torch_reference.py --arch both --repeats 7

Same layer sizes as ``bench/conv_layers.py``: batch 100, float32, plain SGD, 2 threads. Prints the
median samples/s of a full train step (forward, softmax cross-entropy, backward, SGD update).
``--arch resnet`` is :func:`fnnet.models.resnet` with its defaults: a 3x3 stem of 16 channels, three
stages of two basic blocks (16, 32, 64 channels; the later stages start with a stride-2 block whose
shortcut is a 1x1 convolution with BatchNorm), global average pooling and a linear layer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _bench_cli import nonnegative_int, positive_int, run_main

BATCH = 100
N_CLASSES = 10
IN_SHAPE = (1, 28, 28)
LEARNING_RATE = 0.01

def keep_heap() -> bool:
    """fnnet's :func:`fnnet.runtime.keep_heap`, loaded from its file: this interpreter (the torch
    environment) has no fnnet installed, and the module needs only ctypes."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "fnnet" / "runtime.py"
    spec = importlib.util.spec_from_file_location("fnnet_runtime", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return bool(module.keep_heap())


def build(arch: str, pool_first: bool = False) -> Any:
    """The architecture ``arch`` ("simple" or "deep") as a ``torch.nn.Sequential``.

    ``pool_first`` swaps each ReLU with the max pool after it: the same function (as fnnet's
    builders do by default), for a like-for-like comparison.
    """
    import torch.nn as nn  # type: ignore[import-not-found, unused-ignore]

    net = _build(arch)
    if not pool_first:
        return net
    mods = list(net)
    for i in range(len(mods) - 1):
        if isinstance(mods[i], nn.ReLU) and isinstance(mods[i + 1], nn.MaxPool2d):
            mods[i], mods[i + 1] = mods[i + 1], mods[i]
    return nn.Sequential(*mods)


def _build(arch: str) -> Any:
    import torch.nn as nn  # type: ignore[import-not-found, unused-ignore]

    if arch == "simple":
        return nn.Sequential(
            nn.Conv2d(1, 30, 5, stride=1, padding=0),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(30 * 12 * 12, 100),
            nn.ReLU(),
            nn.Linear(100, N_CLASSES),
        )
    if arch == "deep":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 50),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(50, N_CLASSES),
        )
    if arch == "resnet":
        return _resnet()
    raise ValueError(f"unknown architecture {arch!r}; expected 'simple', 'deep' or 'resnet'")


def _resnet(widths: tuple[int, ...] = (16, 32, 64), blocks: int = 2) -> Any:
    """The network of ``fnnet.models.resnet()`` written with torch modules."""
    import torch.nn as nn  # type: ignore[import-not-found, unused-ignore]

    class Block(nn.Module):  # type: ignore[misc, unused-ignore]
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.BatchNorm2d(c_out),
            )
            self.shortcut = (
                nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride), nn.BatchNorm2d(c_out))
                if stride != 1 or c_in != c_out
                else nn.Identity()
            )
            self.relu = nn.ReLU()

        def forward(self, x: Any) -> Any:
            return self.relu(self.body(x) + self.shortcut(x))

    layers: list[Any] = [nn.Conv2d(IN_SHAPE[0], widths[0], 3, padding=1), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    c = widths[0]
    for s, w in enumerate(widths):
        for b in range(blocks):
            stride = 2 if s > 0 and b == 0 else 1
            layers.append(Block(c, w, stride))
            c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, N_CLASSES)]
    return nn.Sequential(*layers)


def make_step(arch: str, seed: int, pool_first: bool = False) -> Any:
    """A closure running one train step of ``arch`` on a fixed random batch."""
    import torch  # type: ignore[import-not-found, unused-ignore]

    torch.manual_seed(seed)
    model = build(arch, pool_first)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand((BATCH, *IN_SHAPE), dtype=torch.float32)
    t = torch.randint(0, N_CLASSES, (BATCH,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()

    return step


def time_block(step: Any, steps: int, batch: int = BATCH) -> float:
    """Samples/s of ``steps`` consecutive calls of ``step`` on batches of ``batch``."""
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def cpu_block(step: Any, steps: int) -> float:
    """CPU seconds of this process per call of ``step``, over ``steps`` consecutive calls."""
    t0 = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - t0) / steps


def serve(arch: str, warmup: int, seed: int, pool_first: bool = False, cpu_time: bool = False) -> None:
    """Answer each line ``STEPS`` on stdin with the samples/s of that many steps (until EOF), or
    with ``cpu_time`` the CPU seconds per step.

    Lets ``bench/throughput.py`` and ``bench/step_cpu.py`` interleave PyTorch blocks with their
    own, so that machine noise hits both alike.
    """
    serve_step(make_step(arch, seed, pool_first), warmup, cpu_time)


def serve_step(step: Any, warmup: int, cpu_time: bool = False, batch: int = BATCH) -> None:
    """The loop of :func:`serve` for any train-step closure on batches of ``batch``."""
    import sys

    for _ in range(warmup):
        step()
    print("ready", flush=True)
    for line in sys.stdin:
        if cpu_time:
            print(f"{cpu_block(step, int(line)):.6f}", flush=True)
        else:
            print(f"{time_block(step, int(line), batch):.1f}", flush=True)


def time_step(arch: str, repeats: int, steps: int, warmup: int, seed: int) -> list[float]:
    """Samples/s of ``repeats`` timed runs of ``steps`` train steps each (after ``warmup`` steps)."""
    step = make_step(arch, seed)
    for _ in range(warmup):
        step()
    return [time_block(step, steps) for _ in range(repeats)]


def main() -> None:
    """Parse arguments, time the chosen architectures and print median samples/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--arch", choices=("simple", "deep", "resnet", "both"), default="both")
    parser.add_argument("--repeats", type=positive_int, default=7, help="timed runs (the median is reported)")
    parser.add_argument("--steps", type=positive_int, default=10, help="train steps per timed run")
    parser.add_argument("--warmup", type=nonnegative_int, default=3, help="untimed steps before timing")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool-first", action="store_true", help="max pool before ReLU (the same function)")
    parser.add_argument("--serve", action="store_true", help="time blocks on request (one arch; see serve)")
    parser.add_argument("--cpu-time", action="store_true", help="with --serve: answer with CPU-s per step")
    parser.add_argument(
        "--keep-heap", action="store_true", help="set glibc malloc to keep freed memory (see keep_heap)"
    )
    args = parser.parse_args()
    if args.serve and args.arch == "both":
        parser.error("--serve needs one architecture: --arch simple, deep or resnet")
    if args.cpu_time and not args.serve:
        parser.error("--cpu-time only applies with --serve")
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        parser.exit(1, f"error: no torch in {sys.executable}: run this script with the python of a venv that has torch\n")
    if args.keep_heap and not keep_heap():
        print("--keep-heap: mallopt not available; running with the default allocator")

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}, float32")
    if args.serve:
        serve(args.arch, args.warmup, args.seed, args.pool_first, args.cpu_time)
        return
    archs = ("simple", "deep") if args.arch == "both" else (args.arch,)
    for arch in archs:
        rates = time_step(arch, args.repeats, args.steps, args.warmup, args.seed)
        print(
            f"torch {arch:<6} train step: median {statistics.median(rates):9.0f} samples/s "
            f"(min {min(rates):.0f}, max {max(rates):.0f}, {args.repeats} x {args.steps} steps)"
        )


if __name__ == "__main__":
    run_main(main)
