"""The command line: ``fnnet train`` (the main job) and ``fnnet evaluate CHECKPOINT``.

``python -m fnnet train`` trains the book's two-layer net on the embedded ``mnist-small`` data set
with seed 0 and prints progress and the final test accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any



from fnnet import checkpoint, datasets, models, optim
from fnnet._io import atomic_write_bytes
from fnnet.typing import Array
from fnnet.layers.combinators import Serial, summary
from fnnet.random import key as make_key
from fnnet.train.parallel import default_threads
from fnnet.runtime import keep_heap
from fnnet.train import FitResult, History, NonFiniteLossError, evaluate, fit

#: ``--model`` name -> (builder, flat input?, default optimizer, default lr, default epochs).
MODEL_DEFAULTS: dict[str, tuple[Callable[[], Serial], bool, str, float, int]] = {
    "two-layer-net": (models.two_layer_net, True, "momentum", 0.05, 20),
    "mlp": (lambda: models.mlp((100, 100, 100, 100), batchnorm=False), True, "adam", 0.001, 10),
    # CNNs take unflattened (N, 1, 28, 28) images; about 3 s (simple) and 12 s (deep) per epoch on mnist-small
    "simple-convnet": (models.simple_convnet, False, "adam", 0.001, 5),
    "deep-convnet": (models.deep_convnet, False, "adam", 0.001, 5),
}

OPTIMIZERS: dict[str, Callable[[float], optim.GradientTransformation]] = {
    "sgd": optim.sgd,
    "momentum": optim.momentum,
    "nesterov": optim.nesterov,
    "adagrad": optim.adagrad,
    "rmsprop": optim.rmsprop,
    "adam": optim.adam,
    "adamw": optim.adamw,
}

CHECKPOINT_FILE = "checkpoint.npz"


def _load_data(name: str, flat: bool) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    return datasets.load_mnist(name, flatten=flat, normalize=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fnnet", description="Pure-function neural networks on NumPy.")
    sub = p.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a model and report its test accuracy")
    tr.add_argument("--model", choices=sorted(MODEL_DEFAULTS), default="two-layer-net")
    tr.add_argument("--data", default="mnist-small", help="mnist-small (embedded), mnist, fashion-mnist or a directory")
    tr.add_argument("--epochs", type=int, default=None, help="default depends on the model")
    tr.add_argument("--batch-size", type=int, default=100)
    tr.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", type=Path, default=None, help="directory for checkpoint, metrics.json and plot")
    tr.add_argument("--quiet", action="store_true", help="print only the final accuracy")
    tr.add_argument("--threads", type=int, default=None,
                    help="worker threads (default: the cores, or $FNNET_NUM_THREADS); changes speed, not results")
    ev = sub.add_parser("evaluate", help="report a checkpoint's accuracy")
    ev.add_argument("checkpoint", type=Path, help="a checkpoint.npz written by fnnet train --out, or its directory")
    ev.add_argument("--data", default="mnist-small")
    return p


def _positive(name: str, v: float) -> None:
    if not v > 0:
        raise SystemExit(f"fnnet: --{name} must be positive, got {v}")


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``fnnet train``."""
    builder, flat, opt_name, lr, epochs = MODEL_DEFAULTS[args.model]
    opt_name = args.optimizer or opt_name
    lr = args.lr if args.lr is not None else lr
    epochs = args.epochs if args.epochs is not None else epochs
    _positive("lr", lr)
    _positive("batch-size", args.batch_size)
    if epochs < 1:
        raise SystemExit(f"fnnet: --epochs must be at least 1, got {epochs}")
    if args.seed < 0:
        raise SystemExit(f"fnnet: --seed must be non-negative, got {args.seed}")
    if args.threads is not None:
        _positive("threads", args.threads)
    try:
        threads = args.threads if args.threads is not None else default_threads()
    except ValueError as e:  # a bad $FNNET_NUM_THREADS
        print(f"fnnet: {e}", file=sys.stderr)
        return 2
    try:
        (x_train, t_train), (x_test, t_test) = _load_data(args.data, flat)
    except (FileNotFoundError, ValueError) as e:
        print(f"fnnet: {e}", file=sys.stderr)
        return 2
    keep_heap()  # an application setting: reuse freed memory across steps (see fnnet.runtime)
    model = builder()
    in_shape = tuple(int(s) for s in x_train.shape[1:])

    def say(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    say(f"model {args.model} on {args.data}: {len(x_train)} train / {len(x_test)} test, "
        f"{opt_name} lr {lr}, batch {args.batch_size}, {epochs} epochs, seed {args.seed}")
    say(str(summary(model, in_shape)))
    t0 = time.perf_counter()
    try:
        result = fit(
            model,
            OPTIMIZERS[opt_name](lr),
            (x_train, t_train),
            key=make_key(args.seed),
            epochs=epochs,
            batch_size=args.batch_size,
            test=(x_test, t_test),
            eval_sample=2000,
            progress="quiet" if args.quiet else "auto",
            threads=threads,
        )
    except NonFiniteLossError as e:
        print(f"fnnet: training stopped: {e}", file=sys.stderr)
        return 3
    wall = time.perf_counter() - t0
    final = evaluate(model, result.state.params, x_test, t_test, state=result.state.model_state, threads=threads)
    if args.out is not None:
        _write_outputs(args, result, final, in_shape, opt_name, lr, epochs, wall)
    say(f"trained in {wall:.1f}s")
    print(f"test accuracy {final['acc']:.4f}")
    return 0


def _write_outputs(
    args: argparse.Namespace,
    result: FitResult,
    final: dict[str, float],
    in_shape: tuple[int, ...],
    opt_name: str,
    lr: float,
    epochs: int,
    wall: float,
) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    config = {"model": args.model, "data": args.data, "in_shape": list(in_shape), "optimizer": opt_name,
              "lr": lr, "epochs": epochs, "batch_size": args.batch_size, "seed": args.seed}
    checkpoint.save(out / CHECKPOINT_FILE, result.state, meta={"config": config})
    metrics = {"config": config, "test_acc": final["acc"], "test_loss": final["loss"], "wall_seconds": wall,
               "history": result.history.to_json()}
    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=1).encode("utf-8"))
    _plot(result.history, out / "learning_curve.png")


def _plot(history: History, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(history.step_loss, lw=0.5)
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    for name in ("train_acc", "val_acc", "test_acc"):
        vals = history.metric(name)
        if vals:
            ax2.plot(range(1, len(vals) + 1), vals, marker="o", label=name)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run ``fnnet evaluate``."""
    path: Path = args.checkpoint
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    try:
        meta = checkpoint.read_meta(path)
        config: dict[str, Any] = meta["config"]
        builder, flat, opt_name, lr, _ = MODEL_DEFAULTS[config["model"]]
        model = builder()
        in_shape = tuple(int(s) for s in config["in_shape"])
        from fnnet.train import init_train_state

        like = init_train_state(model, OPTIMIZERS[config["optimizer"]](float(config["lr"])), make_key(0), in_shape)
        state, _ = checkpoint.load(path, like)
        (_, _), (x_test, t_test) = _load_data(args.data, flat)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"fnnet: cannot evaluate {path}: {e}", file=sys.stderr)
        return 2
    res = evaluate(model, state.params, x_test, t_test, state=state.model_state)
    print(f"test accuracy {res['acc']:.4f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fnnet`` console script and ``python -m fnnet``."""
    args = _parser().parse_args(argv)
    if args.command == "train":
        return cmd_train(args)
    return cmd_evaluate(args)


