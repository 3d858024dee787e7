"""PyTorch reference timings for the sequel's peeky seq2seq on the addition task (train step, CPU).

Runs in a separate virtual environment that has torch (torch is never a dependency of fnnet):

    /tmp/torchenv/bin/python bench/torch_seq2seq.py --repeats 7
    /tmp/torchenv/bin/python bench/torch_seq2seq.py --serve   # for bench/throughput.py

The same network as ``fnnet.Seq2seq(13, 16, 128, src_len=7, reverse=True, peeky=True)``: embedding
16, LSTM encoder (hidden 128) over the reversed source, LSTM decoder whose input is
``concat(h_enc, embed)`` and starting state ``(h_enc, 0)``, affine over ``concat(h_enc, h)``;
batch 128, source length 7, decoder length 4, float32, softmax cross-entropy averaged over the
``N * T`` positions, gradient clipping at global norm 5, Adam (lr 0.001), 2 threads. Prints the
median samples/s of a full train step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from _bench_cli import nonnegative_int, positive_int, run_main
from torch_reference import serve_step, time_block

BATCH = 128
VOCAB = 13
EMBED = 16
HIDDEN = 128
SRC_LEN = 7
TGT_LEN = 4


def build() -> Any:
    """The peeky seq2seq as a ``torch.nn.Module`` taking ``(src, dec_in)`` and returning logits."""
    import torch  # type: ignore[import-not-found, unused-ignore]
    import torch.nn as nn  # type: ignore[import-not-found, unused-ignore]

    class PeekySeq2seq(nn.Module):  # type: ignore[misc, unused-ignore]
        def __init__(self) -> None:
            super().__init__()
            self.enc_embed = nn.Embedding(VOCAB, EMBED)
            self.enc_lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True)
            self.dec_embed = nn.Embedding(VOCAB, EMBED)
            self.dec_lstm = nn.LSTM(HIDDEN + EMBED, HIDDEN, batch_first=True)
            self.affine = nn.Linear(2 * HIDDEN, VOCAB)

        def forward(self, src: Any, dec_in: Any) -> Any:
            _, (h, _) = self.enc_lstm(self.enc_embed(src.flip(1)))
            h_enc = h[0]  # (N, H)
            t = dec_in.shape[1]
            peek = h_enc[:, None, :].expand(-1, t, -1)
            x = torch.cat([peek, self.dec_embed(dec_in)], dim=2)
            out, _ = self.dec_lstm(x, (h, torch.zeros_like(h)))
            return self.affine(torch.cat([peek, out], dim=2))

    return PeekySeq2seq()


def make_step(seed: int) -> Any:
    """A closure running one train step on a fixed random batch."""
    import torch  # type: ignore[import-not-found, unused-ignore]

    torch.manual_seed(seed)
    model = build()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = torch.nn.CrossEntropyLoss()
    src = torch.randint(0, VOCAB, (BATCH, SRC_LEN))
    dec_in = torch.randint(0, VOCAB, (BATCH, TGT_LEN))
    t = torch.randint(0, VOCAB, (BATCH, TGT_LEN))
    params = list(model.parameters())

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(src, dec_in).reshape(-1, VOCAB), t.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()

    return step


def main() -> None:
    """Parse arguments and time the train step (or serve timed blocks)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=positive_int, default=7, help="timed runs (the median is reported)")
    parser.add_argument("--steps", type=positive_int, default=50, help="train steps per timed run")
    parser.add_argument("--warmup", type=nonnegative_int, default=10, help="untimed steps before timing")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve", action="store_true", help="time blocks on request (torch_reference.serve_step)")
    args = parser.parse_args()
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        parser.exit(1, f"error: no torch in {sys.executable}: run this script with the python of a venv that has torch\n")

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}, float32")
    if args.serve:
        serve_step(make_step(args.seed), args.warmup, batch=BATCH)
        return
    step = make_step(args.seed)
    for _ in range(args.warmup):
        step()
    rates = [time_block(step, args.steps, BATCH) for _ in range(args.repeats)]
    print(
        f"torch seq2seq-peeky train step: median {statistics.median(rates):9.0f} samples/s "
        f"(min {min(rates):.0f}, max {max(rates):.0f}, {args.repeats} x {args.steps} steps)"
    )


if __name__ == "__main__":
    run_main(main)
