"""PyTorch reference timings for the book's SimpleConvNet and DeepConvNet (train step, CPU).

Runs in a separate virtual environment that has torch (torch is never a dependency of fnnet):

    /work/torchvenv/bin/python bench/torch_reference.py --arch both --repeats 7

Same layer sizes as ``bench/conv_layers.py``: batch 100, float32, plain SGD, 2 threads. Prints the
median samples/s of a full train step (forward, softmax cross-entropy, backward, SGD update).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

BATCH = 100
N_CLASSES = 10
IN_SHAPE = (1, 28, 28)
LEARNING_RATE = 0.01


def build(arch: str) -> Any:
    """The architecture ``arch`` ("simple" or "deep") as a ``torch.nn.Sequential``."""
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
    raise ValueError(f"unknown architecture {arch!r}; expected 'simple' or 'deep'")


def time_step(arch: str, repeats: int, steps: int, warmup: int, seed: int) -> list[float]:
    """Samples/s of ``repeats`` timed runs of ``steps`` train steps each (after ``warmup`` steps)."""
    import torch  # type: ignore[import-not-found, unused-ignore]

    torch.manual_seed(seed)
    model = build(arch)
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

    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(BATCH * steps / (time.perf_counter() - t0))
    return rates


def main() -> None:
    """Parse arguments, time the chosen architectures and print median samples/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--arch", choices=("simple", "deep", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs (the median is reported)")
    parser.add_argument("--steps", type=int, default=10, help="train steps per timed run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch  # type: ignore[import-not-found, unused-ignore]

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}, float32")
    archs = ("simple", "deep") if args.arch == "both" else (args.arch,)
    for arch in archs:
        rates = time_step(arch, args.repeats, args.steps, args.warmup, args.seed)
        print(
            f"torch {arch:<6} train step: median {statistics.median(rates):9.0f} samples/s "
            f"(min {min(rates):.0f}, max {max(rates):.0f}, {args.repeats} x {args.steps} steps)"
        )


if __name__ == "__main__":
    main()
