"""Train the sequel's attention seq2seq on the date task from scratch and score it every epoch.

    python bench/attention_date.py [--epochs 3] [--seed 0] [--batch 64] [--lr 0.001] [--cosine]

The model and optimiser are the sequel's (its ch08/train.py): ``AttentionSeq2seq`` with embedding
16, hidden 256, the source reversed in time, Adam (lr 0.001), gradient clipping at global norm 5,
loss averaged over the answer's tokens. After each epoch every one of the 5,000 test dates is
decoded greedily from ``_`` and counts only if all 10 characters are right. The sequel trains with
batch 128; the default here is batch 64 (the same epochs, twice the updates). With the sequel's own
code the test accuracy after epochs 1 / 2 / 3 is 0.0000 / 0.5176 / 0.9990 (one run).

Every run made with fnnet (accuracy after epochs 1 / 2 / 3):

- the sequel's settings, ``--batch 128``: seed 0 0.0000 / 0.9692 / 0.9986, seed 1 0.0000 /
  0.7968 / 0.9936, seed 2 0.0000 / 0.9096 / 0.9984, seed 3 0.0000 / 0.8506 / **0.9992**, seed 4
  0.0000 / 0.0754 / 0.9960: one of five at 0.999 or more by epoch 3, all within 0.0054 of it;
- ``--batch 128 --lr 0.002 --cosine``: seed 0 0.0018 / 0.9640 / 0.9916 (the only run: worse);
- batch 64 (the default): seed 0 0.2244 / 0.9998 / **0.9998**, seed 1 0.7280 / 0.9994 /
  **1.0000**, seed 2 0.8960 / 0.9996 / **0.9998**, seed 3 0.7446 / 0.9842 / 0.9820, seed 4
  0.0166 / 0.9930 / **1.0000**, seed 5 0.0018 / 0.9978 / **0.9990**: five of six at 0.999 or more
  by epoch 3 (three of them already by epoch 2);
- ``--batch 64 --cosine``: seed 0 0.0314 / 0.9986 / **0.9994**, seed 1 0.2526 / 0.9982 / 0.9988.

An epoch takes about 35 s at batch 128 and 55 s at batch 64 on one core of the 2-core machine.
The addition task's runs (plain, reversed, reversed+peeky, 25 epochs) are
``examples/seq2seq_addition.py`` with its defaults.
"""

from __future__ import annotations

import argparse
import time

from _bench_cli import nonnegative_int, positive_float, positive_int, run_main
from fnnet.datasets import load_sequence
from fnnet.losses import time_softmax_cross_entropy
from fnnet.optim import CosineDecay, adam, chain, clip_by_global_norm
from fnnet.random import key as make_key
from fnnet.seq2seq import AttentionSeq2seq, sequence_accuracy, teacher_forcing
from fnnet.train import History, TrainState, fit

BATCH, EMBED, HIDDEN, LR, CLIP = 64, 16, 256, 0.001, 5.0


def main() -> None:
    """Train, print the test accuracy after every epoch, and the time taken."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--epochs", type=positive_int, default=3)
    ap.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the one root key (default 0)")
    ap.add_argument("--batch", type=positive_int, default=BATCH, help="batch size (default 64; the sequel's: 128)")
    ap.add_argument("--lr", type=positive_float, default=LR, help="Adam's learning rate (the sequel's: 0.001)")
    ap.add_argument("--cosine", action="store_true",
                    help="decay the learning rate along half a cosine to 0 over the run (the sequel: constant)")
    args = ap.parse_args()
    data = load_sequence("date")
    if args.batch > len(data.x_train):
        ap.error(f"--batch {args.batch} is larger than the {len(data.x_train)} training questions")
    model = AttentionSeq2seq(data.vocab_size, EMBED, HIDDEN, src_len=data.x_train.shape[1], reverse=True)
    t0 = time.perf_counter()
    accs: list[float] = []

    def score(state: TrainState, history: History) -> None:
        accs.append(sequence_accuracy(model, state.params, data.x_test, data.t_test))
        loss = history.epochs[-1].get("loss", float("nan")) if history.epochs else float("nan")
        print(f"epoch {len(accs)}  test accuracy {accs[-1]:.4f}  train loss {loss:.4f}  ({time.perf_counter() - t0:.0f}s)",
              flush=True)  # fmt: skip

    steps = args.epochs * (len(data.x_train) // args.batch)
    lr: float | CosineDecay = CosineDecay(args.lr, total_steps=steps) if args.cosine else args.lr
    fit(model, chain(clip_by_global_norm(CLIP), adam(lr)), teacher_forcing(data.x_train, data.t_train),
        key=make_key(args.seed), epochs=args.epochs, batch_size=args.batch, drop_last=True,
        loss=time_softmax_cross_entropy, eval_train=False, progress="quiet", on_epoch=score)  # fmt: skip
    print("accuracy by epoch " + " ".join(f"{a:.4f}" for a in accs))


if __name__ == "__main__":
    run_main(main)
