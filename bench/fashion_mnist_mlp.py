"""Benchmark: an MLP with BatchNorm and Dropout on the full Fashion-MNIST must reach 0.89 test accuracy.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/fashion_mnist_mlp.py [--seed 0] [--epochs 20] ...

The data set's own benchmark table lists 0.8833 for an MLP 256-128-100; this one must reach 0.89.
Fashion-MNIST (60,000 training / 10,000 test images, 28 x 28, 10 classes) is looked up by
``fnnet.datasets.load_mnist("fashion-mnist")`` (Debian: ``apt-get install dataset-fashion-mnist``).

The recipe (defaults; each one a flag):

- data: pixels / 255; a keyed random 5,000 of the 60,000 training images are held out as a
  validation set; the net trains on the other 55,000. The test set is evaluated exactly once, at
  the end: it is never used for a choice.
- net: 784-512-256-10, each hidden block ``Affine -> BatchNorm -> ReLU -> Dropout(0.2)``
  (``fnnet.models.mlp((512, 256), batchnorm=True, dropout=0.2)``, He initialisation).
- training: AdamW (decoupled weight decay 0.01 on the Affine weights; not on biases or BatchNorm's
  scale and shift), learning rate 0.001 after a one-epoch linear warm-up, then a cosine decay to 0
  at the end of epoch 20; mini-batches of 128; softmax cross-entropy.

Choices: the architecture and dropout rate follow the task's suggestion (512-256 with BatchNorm
and Dropout 0.2-0.3) and the optimizer settings are common defaults, all fixed before the first
run; the validation split then confirmed the length: on seed 0 the validation accuracy flattens
out at about 0.91 over the last five epochs of the cosine decay (measured: 0.9112 best, 0.9104
final; test 0.9067 in 82 s with one OpenBLAS thread on a shared 2-core machine, 13,700 training
images/s). No choice looked at the test set.

Every epoch prints the mean training loss, the accuracy on a keyed sample of 5,000 training images,
the validation accuracy, the learning rate and the time. Then come the test accuracy, the wall
time and the training throughput (training images per second over the whole ``fit``, per-epoch
evaluations included). The last line is::

    test_acc <a> wall_time <s>s samples_per_s <n> PASS|FAIL

and the exit status is 1 on FAIL (test accuracy below ``--target``, 0.89).

The nets multiply 128 x 784 x 512 matrices: on a busy machine a multi-threaded OpenBLAS can spin
and run many times slower; ``OPENBLAS_NUM_THREADS=1`` gives steady timings.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from _bench_cli import (
    mnist_data,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    probability,
    run_main,
    unit_interval,
)
from fnnet.datasets import load_mnist, train_val_split
from fnnet.models import mlp
from fnnet.optim import WarmupCosine, adamw, current_lr
from fnnet.random import key as make_key, split
from fnnet.train import History, TrainState, evaluate, fit

TARGET = 0.89
VAL_SIZE = 5000
#: Training accuracy is measured on a keyed sample of this many training images per epoch.
TRAIN_EVAL_SAMPLE = 5000


def main(argv: list[str] | None = None) -> None:
    """Train the MLP on Fashion-MNIST, evaluate it once on the test set and compare with the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0, help="seed of the one root key")
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=[512, 256], help="hidden layer sizes")
    parser.add_argument("--dropout", type=probability, default=0.2, help="drop rate after each hidden ReLU")
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=nonnegative_float, default=0.01, help="AdamW's decoupled weight decay")
    parser.add_argument("--warmup-epochs", type=nonnegative_int, default=1)
    parser.add_argument("--target", type=unit_interval, default=TARGET, help="test accuracy to reach")
    parser.add_argument("--data", type=mnist_data, default="fashion-mnist", help="data set name or directory for load_mnist")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    (x_all, t_all), (x_test, t_test) = load_mnist(args.data)
    split_key, fit_key = split(make_key(args.seed), 2)
    try:
        train, val = train_val_split(split_key, x_all, t_all, val_size=VAL_SIZE)
    except ValueError as e:  # a data set of at most VAL_SIZE training images
        parser.error(f"--data {args.data}: {e}")
    n_train = len(train[0])
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    schedule = WarmupCosine(args.lr, min(args.warmup_epochs * steps_per_epoch, total_steps - 1), total_steps)
    model = mlp(tuple(args.hidden), 10, activation="relu", batchnorm=True, dropout=args.dropout)
    optimizer = adamw(schedule, args.weight_decay)
    arch = "-".join(map(str, (x_all.shape[1], *args.hidden, 10)))
    print(
        f"Fashion-MNIST: {n_train} train / {len(val[0])} validation / {len(x_test)} test images "
        f"(loaded in {time.perf_counter() - t_start:.1f}s)"
    )
    print(
        f"MLP {arch}, BatchNorm, Dropout {args.dropout}; AdamW lr {args.lr} (warm-up {args.warmup_epochs} "
        f"epoch, cosine to 0), weight decay {args.weight_decay}, batch {args.batch_size}, {args.epochs} epochs, "
        f"seed {args.seed}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )

    def report(state: TrainState, history: History) -> None:
        m = history.epochs[-1]
        print(
            f"epoch {len(history.epochs):>3}/{args.epochs}: loss {m['loss']:.4f} train_acc {m['train_acc']:.4f} "
            f"val_acc {m['val_acc']:.4f} lr {current_lr(state.opt_state):.2e} ({m['time']:.1f}s)",
            flush=True,
        )

    t_fit = time.perf_counter()
    result = fit(
        model,
        optimizer,
        train,
        key=fit_key,
        epochs=args.epochs,
        batch_size=args.batch_size,
        val=val,
        eval_sample=TRAIN_EVAL_SAMPLE,
        progress="quiet",
        on_epoch=report,
    )
    fit_time = time.perf_counter() - t_fit
    state = result.state
    test_acc = evaluate(model, state.params, x_test, t_test, state=state.model_state)["acc"]
    wall = time.perf_counter() - t_start
    samples_per_s = args.epochs * n_train / fit_time
    passed = test_acc >= args.target
    print(f"best validation accuracy {max(result.history.metric('val_acc')):.4f}, final {result.history.metric('val_acc')[-1]:.4f}")
    print(f"test accuracy {test_acc:.4f} (target {args.target})")
    print(f"training {fit_time:.1f}s, {samples_per_s:.0f} training images/s; total wall time {wall:.1f}s")
    print(f"test_acc {test_acc:.4f} wall_time {wall:.1f}s samples_per_s {samples_per_s:.0f} {'PASS' if passed else 'FAIL'}")
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
