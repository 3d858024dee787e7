"""Training throughput: fnnet's train step against a hand-written NumPy step (and PyTorch).

    python bench/throughput.py --model two-layer-net
    python bench/throughput.py --model simple-convnet --torch /path/to/torch-venv/bin/python
    python bench/throughput.py --model seq2seq-peeky --torch /tmp/torchenv/bin/python

Reports the median train-step samples/s at batch 100 in float32 over ``--repeats`` timed blocks,
the peak memory of one step (tracemalloc: NumPy reports its array allocations to it), and ratios
measured in this one run. For ``two-layer-net`` the reference is a plain-NumPy step of the same
maths (forward, softmax cross-entropy, backward, SGD), with NumPy's default BLAS threads and with
one (fnnet's steps run BLAS single-threaded: see ``bench/policy.py``). With ``--torch PYTHON`` (any
model but ``two-layer-net``) it also runs
``bench/torch_reference.py --serve`` under that interpreter (a separate virtual environment with
``torch==2.13.0``; torch is never a dependency of fnnet), alternating its timed blocks with
fnnet's, and prints fnnet / PyTorch. fnnet's step uses its defaults: the convolutional models
split each batch into 2 shards on ``fnnet.train.parallel.default_threads()`` threads (see
``fnnet.train.step.choose_policy``); PyTorch uses 2 threads. fnnet's CNN builders pool before the ReLU (the same function, see
``fnnet.models.simple_convnet``); ``--torch-pool-first`` also times PyTorch with that swap.

``resnet`` is :func:`fnnet.models.resnet` with its defaults, against the same network written with
torch modules (``bench/torch_reference.py --arch resnet``). Measured on a quiet 2-core Intel
machine: 306 against 502 samples/s (ratio 0.61; fnnet's blocks 392, 337, 304, 306, 302, PyTorch's
606, 450, 516, 502, 502); peak memory of a step 104.5 MB. With the blocks settled (below): 0.64
(376 against 587) and 0.63 (440 against 701); later 0.65, 0.68, 0.59 (598 against 1,015) and 0.64 (416 against
649).

Every timed block starts after ``--settle`` seconds of idle (0.5 by default): PyTorch's OpenMP
workers spin for a while after each parallel region, and without the pause they took a core from
the fnnet block that followed (seq2seq-peeky: fnnet's blocks fell to 5,415-10,827 samples/s
against 10,529 with no PyTorch process; deep-convnet 0.70-0.72 unsettled against 0.77-0.85
settled, one session).

fnnet's train step keeps freed memory for reuse (:func:`fnnet.runtime.prepare_training`, run with
``FNNET_KEEP_HEAP=0`` to turn it off); the PyTorch process runs with glibc's defaults unless
``--keep-heap``. Alternating whole runs of deep-convnet (9 settled blocks each, one session):
fnnet's default 0.78, 0.76, 0.92 (fnnet at 1,416, 1,399, 1,574 samples/s) against
``FNNET_KEEP_HEAP=0`` 0.74, 0.72, 0.73 (1,277, 1,333, 1,291); six more runs of the default the
same day 0.84, 0.80, 0.79, 0.86, 0.77, 0.85 (all nine: median 0.80); the next session 0.74 and
0.83 (all eleven: median 0.80); the one after 0.73 and 0.78 (all thirteen: median 0.79); the next 0.86, 0.82 and 0.85 (all sixteen: median
0.81). Both processes fault in fresh pages
without it: deep-convnet's fnnet step about 6,200 minor faults and 13-19 ms of system time per
step, PyTorch's 2,400-10,000 faults and 3-21 ms.

``seq2seq-peeky`` is the sequel's reversed peeky seq2seq on the addition task's shapes (batch 128,
embedding 16, hidden 128, source length 7, decoder length 4, vocabulary 13; Adam with gradient
clipping at norm 5), against ``bench/torch_seq2seq.py --serve``. Two runs in one later session
(13 settled blocks each): 0.77 (fnnet 9,324 against 12,070 samples/s) and 0.77 (8,618 against
11,129); the next session 0.85 (12,506 against 14,762), 0.87 (12,254 against 14,033) and, after
the clipping norm became cheaper, 0.79 (9,080 against 11,424); the next session 0.82 (9,624 against
11,754) and 0.71 (8,448 against 11,876); the ways of using the second core
tried for it, and their figures, are in the README's sequel section. Since the step hands the
decoder's weight products to its spare thread while the encoder's scan runs (``Ctx.spawn``), with
every other process on the machine stopped during the runs: 1.16 (10,847 against 9,346; 7
blocks), then 13 blocks each: 0.93 (9,769 / 10,519), 1.10 (9,763 / 8,884), 0.95 (11,228 /
11,780), 0.96 (11,599 / 12,141), 0.93 (9,127 / 9,835), 1.07 (11,234 / 10,485), 1.01 (11,833 /
11,744), 0.97 (11,466 / 11,805), 0.97 (11,132 / 11,494), 0.93 (9,248 / 9,991); median of the
eleven 0.97.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

import fnnet
from _bench_cli import nonnegative_float, nonnegative_int, positive_int, python_executable, run_main
from fnnet import models
from fnnet.optim import sgd
from fnnet.runtime import keep_heap
from fnnet.train import TrainState, init_train_state, make_train_step
from fnnet.train.parallel import blas_limit

BATCH = 100
LR = 0.01


def _model(name: str) -> tuple[fnnet.Serial, tuple[int, ...]]:
    if name == "two-layer-net":
        return models.two_layer_net(), (784,)
    builder = getattr(models, name.replace("-", "_"), None)
    if builder is None:
        raise SystemExit(f"unknown model {name}")
    return builder(), (1, 28, 28)


def _time(step: Callable[[], object], repeats: int, block: int, batch: int = BATCH) -> list[float]:
    """Samples/s of ``block`` calls, ``repeats`` times (after one warm-up block)."""
    for _ in range(max(1, block // 4)):
        step()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(block):
            step()
        rates.append(block * batch / (time.perf_counter() - t0))
    return rates


def _peak_mb(step: Callable[[], object]) -> float:
    tracemalloc.start()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def fnnet_step(name: str) -> Callable[[], object]:
    """A closure running one fnnet train step (new state each call, as in training)."""
    model, in_shape = _model(name)
    g = fnnet.key(1).generator()
    x = g.random((BATCH, *in_shape), dtype=np.float32)
    t = g.integers(0, 10, BATCH)
    opt = sgd(LR)
    step = make_train_step(model, optimizer=opt)
    holder: list[TrainState] = [init_train_state(model, opt, fnnet.key(0), in_shape)]
    k = fnnet.key(2)

    def run() -> object:
        holder[0], m = step(holder[0], x, t, k)
        return m

    return run


def numpy_two_layer_step() -> Callable[[], object]:
    """The same two-layer net step written directly in NumPy (the reference)."""
    g = fnnet.key(1).generator()
    x = g.random((BATCH, 784), dtype=np.float32)
    t = g.integers(0, 10, BATCH)
    p = {
        "w1": (g.standard_normal((784, 50)) * 0.01).astype(np.float32),
        "b1": np.zeros(50, np.float32),
        "w2": (g.standard_normal((50, 10)) * 0.01).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }
    rows = np.arange(BATCH)

    def run() -> object:
        a1 = x @ p["w1"] + p["b1"]
        z1 = np.maximum(a1, 0)
        a2 = z1 @ p["w2"] + p["b2"]
        e = np.exp(a2 - a2.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        loss = -np.log(y[rows, t]).mean()
        dy = y
        dy[rows, t] -= 1
        dy /= BATCH
        da1 = (dy @ p["w2"].T) * (a1 > 0)
        grads = {"w2": z1.T @ dy, "b2": dy.sum(axis=0), "w1": x.T @ da1, "b1": da1.sum(axis=0)}
        for k in p:
            p[k] = p[k] - LR * grads[k]
        return loss

    return run


#: The addition task's shapes for ``--model seq2seq-peeky``.
SEQ_BATCH, SEQ_VOCAB, SEQ_SRC, SEQ_TGT = 128, 13, 7, 4


def seq2seq_peeky_step() -> Callable[[], object]:
    """A closure running one fnnet train step of the reversed peeky seq2seq (see the docstring)."""
    from fnnet.losses import time_softmax_cross_entropy
    from fnnet.optim import adam, chain, clip_by_global_norm
    from fnnet.seq2seq import Seq2seq

    model = Seq2seq(SEQ_VOCAB, 16, 128, src_len=SEQ_SRC, reverse=True, peeky=True)
    g = fnnet.key(1).generator()
    x = g.integers(0, SEQ_VOCAB, (SEQ_BATCH, SEQ_SRC + SEQ_TGT))
    t = g.integers(0, SEQ_VOCAB, (SEQ_BATCH, SEQ_TGT))
    opt = chain(clip_by_global_norm(5.0), adam(0.001))
    step = make_train_step(model, time_softmax_cross_entropy, opt)
    holder: list[TrainState] = [init_train_state(model, opt, fnnet.key(0), (SEQ_SRC + SEQ_TGT,))]

    def run() -> object:
        holder[0], m = step(holder[0], x, t)
        return m

    return run


class TorchReference:
    """``bench/torch_reference.py --serve`` under another interpreter: a PyTorch train step that
    times a block of steps whenever asked, so its blocks interleave with fnnet's."""

    def __init__(
        self, python: str, name: str, keep: bool, pool_first: bool = False, threads: int = 2, cpu_time: bool = False
    ):
        if name == "seq2seq-peeky":
            cmd = [python, str(Path(__file__).with_name("torch_seq2seq.py")), "--serve", "--threads", str(threads)]
        else:
            script = Path(__file__).with_name("torch_reference.py")
            arch = {"simple-convnet": "simple", "deep-convnet": "deep", "resnet": "resnet"}[name]
            cmd = [python, str(script), "--arch", arch, "--serve", "--threads", str(threads)]
            cmd += ["--keep-heap"] if keep else []
        cmd += ["--pool-first"] if pool_first else []
        cmd += ["--cpu-time"] if cpu_time else []
        self.script = Path(cmd[1]).name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.banner = self._line()  # "torch 2.13.0, threads 2, ..."
        self._line()  # "ready" after the warm-up

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.script} stopped (exit code {self.proc.wait()})")
        return line.strip()

    def block(self, steps: int) -> float:
        """Samples/s of ``steps`` PyTorch train steps (with ``cpu_time``: CPU seconds per step)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def main(argv: list[str] | None = None) -> None:
    """Measure and print throughput and ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="two-layer-net",
                    choices=["two-layer-net", "simple-convnet", "deep-convnet", "resnet", "seq2seq-peeky"])
    ap.add_argument("--repeats", type=positive_int, default=7, help="timed blocks per side (default 7)")
    ap.add_argument("--block", type=nonnegative_int, default=0, help="steps per timed block (default by model)")
    ap.add_argument("--torch", type=python_executable, default=None, help="python of a venv with torch==2.13.0, for the comparison")
    ap.add_argument("--torch-threads", type=positive_int, default=2, help="torch.set_num_threads of the reference")
    ap.add_argument("--torch-pool-first", action="store_true",
                    help="also time PyTorch with each max pool moved before its ReLU (fnnet's order)")
    ap.add_argument("--settle", type=nonnegative_float, default=0.5,
                    help="seconds of idle before every timed block, so the other side's spinning threads sleep")
    ap.add_argument("--keep-heap", action="store_true", help="the PyTorch process keeps freed memory too "
                    "(fnnet.runtime.keep_heap; fnnet's train step does so by default, FNNET_KEEP_HEAP=0 turns it off)")
    args = ap.parse_args(argv)
    if args.torch and args.model == "two-layer-net":
        ap.error("--torch: two-layer-net is compared with plain NumPy; PyTorch runs the other models")
    if args.torch_pool_first and not (args.torch and args.model in ("simple-convnet", "deep-convnet")):
        ap.error("--torch-pool-first needs --torch and --model simple-convnet or deep-convnet")
    if args.keep_heap and not keep_heap():
        print("--keep-heap: mallopt not available; default allocator")
    blocks = {"two-layer-net": 200, "simple-convnet": 10, "deep-convnet": 3, "resnet": 2, "seq2seq-peeky": 20}
    block = args.block or blocks[args.model]
    batch = SEQ_BATCH if args.model == "seq2seq-peeky" else BATCH

    rows: dict[str, list[float]] = {}
    fn = seq2seq_peeky_step() if args.model == "seq2seq-peeky" else fnnet_step(args.model)
    ref = numpy_two_layer_step() if args.model == "two-layer-net" else None

    def ref_one_blas_thread() -> object:
        assert ref is not None
        with blas_limit(1):
            return ref()

    torch = (
        TorchReference(args.torch, args.model, args.keep_heap, threads=args.torch_threads)
        if args.torch and ref is None
        else None
    )
    torch_pf = (
        TorchReference(args.torch, args.model, args.keep_heap, pool_first=True, threads=args.torch_threads)
        if args.torch and ref is None and args.torch_pool_first
        else None
    )
    # Interleave the measurements so machine noise hits both alike.
    # A pause before each block lets the previous block's idle workers (OpenMP's, OpenBLAS's) stop
    # spinning: otherwise they hold a core during the next block, of the other library.
    def settled(measure: Callable[[], float]) -> float:
        time.sleep(args.settle)
        return measure()

    for _ in range(args.repeats):
        rows.setdefault("fnnet", []).append(settled(lambda: _time(fn, 1, block, batch)[0]))
        if ref is not None:
            rows.setdefault("plain NumPy", []).append(settled(lambda: _time(ref, 1, block)[0]))
            rows.setdefault("plain NumPy, 1 BLAS thread", []).append(settled(lambda: _time(ref_one_blas_thread, 1, block)[0]))
        if torch is not None:
            rows.setdefault("PyTorch 2.13 CPU", []).append(settled(lambda: torch.block(block)))
        if torch_pf is not None:
            rows.setdefault("PyTorch, pool first", []).append(settled(lambda: torch_pf.block(block)))
    for t in (torch, torch_pf):
        if t is not None:
            print(t.banner)
            t.close()
    med = {k: statistics.median(v) for k, v in rows.items()}
    heap = "keep-heap" if args.keep_heap else "default allocator"
    print(f"model {args.model}, batch {batch}, float32, median of {args.repeats} blocks, {heap}")
    for k, v in med.items():
        print(f"  {k:<18} {v:>12,.0f} samples/s  (blocks: {', '.join(f'{r:,.0f}' for r in rows[k])})")
    print(f"  fnnet peak memory of one step: {_peak_mb(fn):.1f} MB (tracemalloc)")
    if sys.platform.startswith("linux"):  # ru_maxrss is in KiB there
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  fnnet process peak RSS: {rss:.0f} MB (interpreter, NumPy and data included)")
    for k, v in med.items():
        if k != "fnnet":
            print(f"ratio fnnet / {k}: {med['fnnet'] / v:.2f}")


if __name__ == "__main__":
    run_main(main)


