"""Early stopping and a reduce-on-plateau learning rate on the book's overfitting set-up (section 6.4).

The set-up of ``ch06_overfit_weight_decay.py``: the first 300 training images of ``mnist-small``,
a ReLU net with six hidden layers of 100 units (7 Affine layers, He initialisation), plain SGD with
learning rate 0.01 and mini-batches of 100. Early stopping needs a validation set that is neither
trained on nor used for the final score: the next 1,000 training images (300 to 1,299); the score
is the accuracy on the 2,000 test images.

The net is trained three times from the same key (so on the same mini-batches, and identically
until one of the rules acts), for up to 201 epochs (80 with ``--quick``, at learning rate 0.05 so
that the validation loss turns within those epochs):

- ``plain``: all epochs; its last epoch's parameters are scored.
- ``early``: ``fit(..., val=..., early_stopping=EarlyStopping(monitor="val_loss", patience=20,
  restore_best=True))``. The rule is a pure function of the history: after each epoch, stop once
  the validation loss has not improved for ``patience`` epochs. ``FitResult.stopped_epoch`` says
  where training ended and ``best_epoch`` whose parameters it returned (those of the lowest
  validation loss).
- ``plateau``: ``fit(..., plateau=ReduceOnPlateau(monitor="val_loss", factor=0.5, patience=10))``:
  every time the validation loss has not improved for 10 epochs the updates are halved (the
  scale of each epoch is ``lr_scale`` in the history).

What it shows. With only 300 images the training accuracy climbs towards 1 while the validation
loss reaches its minimum and then rises: the net grows over-confident on the images it gets wrong.
Early stopping ends training there, a quarter to a third of the epochs early. The test *accuracy*,
though, keeps creeping up slowly after the validation loss has turned (on this set-up it does not
fall), so the restored parameters score slightly *lower* than the last epoch's: by 0.7 to 3 points
of test accuracy for the seeds 0 to 4. The validation loss measures confidence as well as
correctness; it is the right monitor against a net whose accuracy falls, here it stops at the
cost of a little accuracy. Halving the learning rate on plateaus calms the later epochs (the
validation loss stays near its minimum) and lands between the two. The curves are drawn to a PNG
when matplotlib is installed.

The last line is::

    stopped_epoch <s> best_epoch <b> of <E> test_acc restored <r> last_epoch <l> plateau <p> lr_scale <c>

(accuracies with 4 decimals, ``c`` the plateau run's last learning-rate scale). The exit status is
1 unless early stopping stopped before ``E`` with ``b = s - patience``, the restored parameters score
within 0.04 of the last epoch's test accuracy, and the plateau rule reduced the learning rate at
least once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _common import (
    OVERFIT_BATCH,
    OVERFIT_HIDDEN,
    OVERFIT_LR,
    OVERFIT_TRAIN_SIZE,
    example_parser,
    finish,
    overfit_model,
    run_main,
    save_figure,
)

from fnnet.datasets import load_mnist
from fnnet.optim import sgd
from fnnet.random import key as make_key
from fnnet.train import EarlyStopping, FitResult, ReduceOnPlateau, evaluate, fit

VAL_SIZE = 1000
EPOCHS, QUICK_EPOCHS = 201, 80
QUICK_LR = 0.05
PATIENCE, QUICK_PATIENCE = 20, 10
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE, QUICK_PLATEAU_PATIENCE = 10, 5
#: The restored parameters must score within this of the last epoch's test accuracy.
TOLERANCE = 0.04


def draw(runs: dict[str, FitResult], epochs: int) -> Any:
    """A ``save_figure`` drawer: validation loss and training/validation accuracy of the three runs."""

    def make(plt: Any) -> Any:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        for name, r in runs.items():
            e = np.arange(1, len(r.history.epochs) + 1)
            ax1.plot(e, r.history.metric("val_loss"), label=name)
            ax2.plot(e, r.history.metric("val_acc"), label=f"{name} val")
        plain = runs["plain"].history
        ax2.plot(np.arange(1, len(plain.epochs) + 1), plain.metric("train_acc"), ":", color="0.4", label="plain train")
        early = runs["early"]
        for ax in (ax1, ax2):
            if early.best_epoch is not None:
                ax.axvline(early.best_epoch, color="k", linewidth=0.8, linestyle="--")
            ax.set_xlabel("epochs")
            ax.set_xlim(0, epochs + 1)
        ax1.set_ylabel("validation loss")
        ax1.set_title("validation loss (dashed line: restored epoch)")
        ax1.legend()
        ax2.set_ylabel("accuracy")
        ax2.set_ylim(0, 1.02)
        ax2.set_title("accuracy")
        ax2.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        return fig

    return make


def main(argv: list[str] | None = None) -> None:
    """Train plain, with early stopping and with a plateau rule; compare their test accuracies."""
    args = example_parser(__doc__, "early_stopping_overfit.png").parse_args(argv)
    quick = bool(args.quick)
    epochs = QUICK_EPOCHS if quick else EPOCHS
    lr = QUICK_LR if quick else OVERFIT_LR
    patience = QUICK_PATIENCE if quick else PATIENCE
    plateau_patience = QUICK_PLATEAU_PATIENCE if quick else PLATEAU_PATIENCE
    (x, t), test = load_mnist("mnist-small")
    train = (x[:OVERFIT_TRAIN_SIZE], t[:OVERFIT_TRAIN_SIZE])
    held_out = slice(OVERFIT_TRAIN_SIZE, OVERFIT_TRAIN_SIZE + VAL_SIZE)
    val = (x[held_out], t[held_out])
    print(
        f"{OVERFIT_TRAIN_SIZE} training, {VAL_SIZE} validation, {len(test[0])} test images; "
        f"784-{'-'.join(map(str, OVERFIT_HIDDEN))}-10 ReLU, SGD lr {lr}, batch {OVERFIT_BATCH}, up to {epochs} epochs"
    )
    model = overfit_model()
    rules: dict[str, dict[str, Any]] = {
        "plain": {},
        "early": {"early_stopping": EarlyStopping(monitor="val_loss", patience=patience, restore_best=True)},
        "plateau": {
            "plateau": ReduceOnPlateau(monitor="val_loss", factor=PLATEAU_FACTOR, patience=plateau_patience)
        },
    }
    runs: dict[str, FitResult] = {}
    test_acc: dict[str, float] = {}
    for name, rule in rules.items():
        runs[name] = fit(
            model,
            sgd(lr),
            train,
            key=make_key(args.seed),
            epochs=epochs,
            batch_size=OVERFIT_BATCH,
            val=val,
            progress="quiet",
            **rule,
        )
        test_acc[name] = evaluate(model, runs[name].state.params, *test)["acc"]
        h = runs[name].history
        print(
            f"{name:<8}: {len(h.epochs):>3} epochs, last epoch train_acc {h.metric('train_acc')[-1]:.4f} "
            f"val_loss {h.metric('val_loss')[-1]:.4f} val_acc {h.metric('val_acc')[-1]:.4f}; "
            f"test_acc of the returned params {test_acc[name]:.4f}"
        )

    early, plain_h = runs["early"], runs["plain"].history
    val_loss = plain_h.metric("val_loss")
    lowest = int(np.argmin(val_loss)) + 1
    print(
        f"plain run: lowest validation loss {min(val_loss):.4f} at epoch {lowest}, "
        f"{val_loss[-1]:.4f} at epoch {len(val_loss)}"
    )
    print(
        f"early stopping (patience {patience}): stopped at epoch {early.stopped_epoch}, "
        f"returned epoch {early.best_epoch}'s params"
    )
    scales = runs["plateau"].history.metric("lr_scale")
    cuts = [e + 1 for e in range(1, len(scales)) if scales[e] < scales[e - 1]]
    print(
        f"reduce on plateau (factor {PLATEAU_FACTOR}, patience {plateau_patience}): "
        f"learning rate halved from epochs {cuts} on, last scale {scales[-1]:g}"
    )
    save_figure(draw(runs, epochs), args.out)

    restored, last = test_acc["early"], test_acc["plain"]
    stopped, best = early.stopped_epoch, early.best_epoch
    checks = {
        f"early stopping stopped before epoch {epochs}": stopped is not None and stopped < epochs,
        f"the returned epoch is the stopping epoch minus the patience {patience}": (
            stopped is not None and best is not None and best == stopped - patience
        ),
        f"the restored params score within {TOLERANCE} of the last epoch's test accuracy": restored >= last - TOLERANCE,
        "the plateau rule reduced the learning rate": bool(scales) and scales[-1] < 1.0,
    }
    for what, passed in checks.items():
        if not passed:
            print(f"check failed: {what}")
    finish(
        f"stopped_epoch {stopped} best_epoch {best} of {epochs} test_acc restored {restored:.4f} "
        f"last_epoch {last:.4f} plateau {test_acc['plateau']:.4f} lr_scale {scales[-1] if scales else float('nan'):g}",
        all(checks.values()),
    )


if __name__ == "__main__":
    run_main(main)
