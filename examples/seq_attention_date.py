"""The sequel's chapter 8: its trained attention seq2seq translates 5,000 test dates to ISO form.

The sequel trains ``AttentionSeq2seq`` (embedding 16, hidden 256, dot-product attention, source
reversed in time) on ``date.txt`` and ships the weights (here ``weights/sequel/ch08_attention_seq2seq.npz``,
float16; MIT licence, see ``weights/sequel/NOTICE.md``). Its own code answers all 5,000 test questions
correctly with greedy decoding from ``_``. :class:`fnnet.seq2seq.AttentionSeq2seq` computes the
same function, so loaded with those weights it must do the same. It also draws the attention
weights of a few questions as heat maps (which source character each output character reads).

Run: ``python examples/seq_attention_date.py [--quick] [--out runs/attention_date.png]``; the last line
is ``accuracy 1.0000`` and the exit status is non-zero otherwise. ``--quick`` scores the first 500
test dates only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common import RUNS_DIR, figure_path, finish, run_main, save_figure
from fnnet.datasets import decode, load_sequence
from fnnet.layers.combinators import summary
from fnnet.seq2seq import AttentionSeq2seq, attention_weights, load_sequel_attention, sequence_accuracy
from fnnet.typing import Array

WEIGHTS = Path(__file__).resolve().parent / "weights" / "sequel" / "ch08_attention_seq2seq.npz"
#: The test questions whose attention is drawn.
SHOWN = (0, 1, 2)
#: ``--quick``: the test dates scored.
QUICK_DATES = 500


def draw_attention(src: Array, ids: Array, weights: Array, vocab: tuple[str, ...]) -> Any:
    """A figure drawer: one heat map per question, output characters down, source characters across."""

    def draw(plt: Any) -> Any:
        fig, axes = plt.subplots(1, len(src), figsize=(5 * len(src), 4))
        for ax, s, out, w in zip(np.atleast_1d(axes), src, ids, weights):
            ax.imshow(w, cmap="gray", aspect="auto", vmin=0, vmax=1)
            ax.set_xticks(range(len(s)), list(decode(s, vocab)), fontsize=7)
            ax.set_yticks(range(len(out)), list(decode(out, vocab)))
            ax.set_xlabel("source")
            ax.set_ylabel("output")
        fig.suptitle("attention weights (sequel's trained AttentionSeq2seq)")
        fig.tight_layout()
        return fig

    return draw


def main(argv: Sequence[str] | None = None) -> None:
    """Load the weights, score every test date and draw the attention of a few."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=figure_path, default=RUNS_DIR / "attention_date.png", help="PNG heat map to write")
    parser.add_argument("--quick", action="store_true", help=f"score the first {QUICK_DATES} test dates only (seconds)")
    args = parser.parse_args(argv)
    data = load_sequence("date")
    x_test, t_test = (data.x_test[:QUICK_DATES], data.t_test[:QUICK_DATES]) if args.quick else (data.x_test, data.t_test)
    params = load_sequel_attention(WEIGHTS)
    v, e = params.encoder.embed.w.shape
    model = AttentionSeq2seq(v, e, params.encoder.lstm.wh.shape[0], src_len=data.x_test.shape[1], reverse=True)
    print(summary(model, (data.x_test.shape[1] + data.t_test.shape[1] - 1,)))
    t0 = time.perf_counter()
    accuracy = sequence_accuracy(model, params, x_test, t_test)
    right = round(accuracy * len(x_test))
    print(f"test dates {len(x_test)}, right {right} ({time.perf_counter() - t0:.1f}s)")
    start = data.char_to_id["_"]
    src = data.x_test[list(SHOWN)]
    ids, weights = attention_weights(model, params, src, start, data.t_test.shape[1] - 1)
    for s, out in zip(src, ids):
        print(f"  {decode(s, data.id_to_char).strip():<30} -> {decode(out, data.id_to_char)}")
    save_figure(draw_attention(src, ids, weights, data.id_to_char), args.out)
    finish(f"accuracy {accuracy:.4f}", right == len(x_test))


if __name__ == "__main__":
    run_main(main)
