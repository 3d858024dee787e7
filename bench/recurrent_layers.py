"""Timings of fnnet's recurrent kernels and of the embedding gradient, with a PyTorch reference.

    python bench/recurrent_layers.py                          # fnnet: LSTM, GRU, RNN and embedding_grad
    /tmp/torchenv/bin/python bench/recurrent_layers.py --torch  # the same recurrent shapes in PyTorch

Recurrent layers: the sequel's seq2seq size, batch N=128, T=29 steps, input D=16, hidden H=128,
float32, one BLAS / torch thread. "forward" is ``*_scan`` (fnnet keeps what backward needs;
PyTorch runs under ``no_grad``); "forward+backward" adds ``*_scan_backward`` with a random
``dhs`` (PyTorch: ``(out * dhs).sum().backward()``). Each figure is the median over repeats of the
best of three calls, as CPU time of the process (steadier than wall time on a shared machine)
and as wall time.

Embedding gradient: ``N·T = 3712`` token ids, dims 16 and 128, vocabularies 13, 59 and 10,000,
against ``np.add.at``, sort + ``np.add.reduceat``, a flat ``np.bincount`` and a one-hot GEMM.

The PyTorch mode imports neither fnnet nor attrs, so it runs in an environment with torch only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

from _bench_cli import positive_int, run_main

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

N, T, D, H = 128, 29, 16, 128


def _measure(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(median CPU ms, median wall ms) of the best of three calls, over ``repeats``."""
    cpu = [min(timeit.repeat(fn, number=1, repeat=3, timer=time.process_time)) for _ in range(repeats)]
    wall = [min(timeit.repeat(fn, number=1, repeat=3)) for _ in range(repeats)]
    return statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3


def _fnnet(repeats: int) -> None:
    import numpy as np

    import fnnet
    from fnnet.layers import recurrent
    from fnnet.layers.embedding import embedding_grad
    from fnnet.runtime import keep_heap

    keep_heap()
    rng = fnnet.key(1).generator()
    x = rng.standard_normal((N, T, D)).astype(np.float32)
    dhs = rng.standard_normal((N, T, H)).astype(np.float32)
    for name, layer in (("LSTM", fnnet.LSTM(H)), ("GRU", fnnet.GRU(H)), ("RNN", fnnet.RNN(H))):
        params, _ = layer.init(fnnet.key(0), (T, D))
        scan = getattr(recurrent, f"{name.lower()}_scan")
        scan_backward = getattr(recurrent, f"{name.lower()}_scan_backward")

        def forward() -> None:
            scan(params, x)

        def both() -> None:
            scan_backward(params, scan(params, x)[2], dhs)

        for what, fn in (("forward", forward), ("forward+backward", both)):
            cpu, wall = _measure(fn, repeats)
            print(f"fnnet {name} {what}: {cpu:.1f} ms CPU, {wall:.1f} ms wall")

    def add_at(ids: Any, d2: Any, v: int) -> Any:
        dw = np.zeros((v, d2.shape[1]), d2.dtype)
        np.add.at(dw, ids, d2)
        return dw

    def sort_reduceat(ids: Any, d2: Any, v: int) -> Any:
        order = np.argsort(ids)
        s = ids[order]
        starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
        dw = np.zeros((v, d2.shape[1]), d2.dtype)
        dw[s[starts]] = np.add.reduceat(d2[order], starts, axis=0)
        return dw

    def flat_bincount(ids: Any, d2: Any, v: int) -> Any:
        dim = d2.shape[1]
        pairs = (ids[:, None] * dim + np.arange(dim)).reshape(-1)
        return np.bincount(pairs, weights=d2.reshape(-1), minlength=v * dim).reshape(v, dim).astype(d2.dtype)

    def one_hot_gemm(ids: Any, d2: Any, v: int) -> Any:
        onehot = np.zeros((v, ids.size), d2.dtype)
        onehot[ids, np.arange(ids.size)] = 1
        return onehot @ d2

    methods = {"add.at": add_at, "sort+reduceat": sort_reduceat, "bincount": flat_bincount, "one-hot GEMM": one_hot_gemm}
    for dim in (16, 128):
        for v in (13, 59, 10_000):
            ids = rng.integers(0, v, N * T)
            d2 = rng.standard_normal((N * T, dim)).astype(np.float32)
            row = []
            for label, method in [*methods.items(), ("embedding_grad", embedding_grad)]:
                if label == "one-hot GEMM" and v > 1000:
                    continue
                cpu, _ = _measure(lambda m=method: m(ids, d2, v), repeats)  # type: ignore[misc]
                row.append(f"{label} {cpu * 1e3:.0f} us")
            print(f"embedding grad dim {dim}, vocab {v}: " + ", ".join(row))


def _torch(repeats: int) -> None:
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise SystemExit("error: --torch needs PyTorch: run this script with the python of a venv that has torch")

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(N, T, D)
    dhs = torch.randn(N, T, H)
    for name, module in (
        ("LSTM", torch.nn.LSTM(D, H, batch_first=True)),
        ("GRU", torch.nn.GRU(D, H, batch_first=True)),
        ("RNN", torch.nn.RNN(D, H, batch_first=True)),
    ):

        def forward(m: Any = module) -> None:
            with torch.no_grad():
                m(x)

        def both(m: Any = module) -> None:
            out, _ = m(x)
            (out * dhs).sum().backward()

        for what, fn in (("forward", forward), ("forward+backward", both)):
            cpu, wall = _measure(fn, repeats)
            print(f"torch {name} {what}: {cpu:.1f} ms CPU, {wall:.1f} ms wall")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=9, help="timed repeats, the median is reported (default 9)")
    parser.add_argument("--torch", action="store_true", help="time PyTorch's LSTM/GRU/RNN instead")
    args = parser.parse_args()
    (_torch if args.torch else _fnnet)(args.repeats)


if __name__ == "__main__":
    run_main(main)
