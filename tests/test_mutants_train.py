"""Regression tests from a mutation-testing pass over the training loop: each pins a documented
detail (key derivation, the coupled L2 gradient, ``stopped_epoch``) that a plausible one-token
change to fnnet/train left every earlier test passing."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import blob_task

import fnnet
from fnnet import models
from fnnet.datasets import batches
from fnnet.layers import Ctx
from fnnet.losses import softmax_cross_entropy
from fnnet.optim import sgd
from fnnet.random import fold_in, split
from fnnet.train import EarlyStopping, TrainState, fit, init_train_state, make_train_step
from fnnet.tree import tree_leaves


def _same(a: TrainState, b: TrainState) -> bool:
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb))


def test_fit_draws_each_epochs_order_and_each_steps_key_as_documented() -> None:
    # fit's docstring: the shuffle of epoch e uses fold_in(shuffle_key, e) and step s uses
    # fold_in(step_key, s), with (init, shuffle, step, ...) = split(key, 5). A hand-written loop
    # with those keys must give the same bits; the dropout makes the step keys matter.
    (x, t), _ = blob_task()
    model = models.mlp((8,), 3, dropout=0.5)
    opt = sgd(0.1)
    key = fnnet.key(3)
    res = fit(model, opt, (x, t), key=key, epochs=2, batch_size=16, eval_train=False, shards=1, progress="quiet")
    init_key, shuffle_key, step_key = split(key, 5)[:3]
    state = init_train_state(model, opt, init_key, x.shape[1:])
    step = make_train_step(model, optimizer=opt, shards=1)
    for epoch in range(2):
        for xb, tb in batches(fold_in(shuffle_key, epoch), x, t, 16):
            state, _ = step(state, xb, tb, fold_in(step_key, int(state.step)))
    assert int(res.state.step) == int(state.step) == 2 * 4
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(res.state.params), tree_leaves(state.params)))


def test_a_sharded_step_gives_shard_i_the_key_fold_in_key_i() -> None:
    (x, t), _ = blob_task()
    x, t = x[:8], t[:8]
    model = fnnet.serial(fnnet.Dropout(0.5), fnnet.Affine(3))
    opt = sgd(0.1)
    state = init_train_state(model, opt, fnnet.key(0), x.shape[1:])
    key = fnnet.key(11)

    def loss_with(keys: list[fnnet.Key]) -> float:
        halves = np.split(np.arange(8), len(keys))
        ys = [model.forward(state.params, state.model_state, x[h], Ctx(True, k))[0] for h, k in zip(halves, keys)]
        return softmax_cross_entropy(np.concatenate(ys), t)[0]

    _, sharded = make_train_step(model, optimizer=opt, shards=2)(state, x, t, key)
    _, whole = make_train_step(model, optimizer=opt, shards=1)(state, x, t, key)
    assert sharded.loss == pytest.approx(loss_with([fold_in(key, 0), fold_in(key, 1)]), rel=1e-6)
    assert whole.loss == pytest.approx(loss_with([key]), rel=1e-6)
    # the two shards' masks differ (one shared key would drop the same units in both halves)
    assert sharded.loss != pytest.approx(loss_with([key, key]), rel=1e-6)


@pytest.mark.parametrize("shards", [1, 2])
def test_coupled_weight_decay_adds_lambda_w_to_the_gradient_of_weights_only(shards: int) -> None:
    (x, t), _ = blob_task()
    model = fnnet.serial(fnnet.Affine(4), fnnet.ReLU(), fnnet.Affine(3))
    lr, lam = 0.1, 0.5
    state = init_train_state(model, sgd(lr), fnnet.key(0), x.shape[1:])
    plain, _ = make_train_step(model, optimizer=sgd(lr), shards=shards)(state, x, t, None)
    decayed, m = make_train_step(model, optimizer=sgd(lr), shards=shards, weight_decay=lam)(state, x, t, None)
    for i in (0, 2):
        w0, b0 = state.params[i]
        # sgd: W - lr (g + lam W) = (W - lr g) - lr lam W; biases are not decayed
        np.testing.assert_allclose(decayed.params[i].w, plain.params[i].w - lr * lam * w0, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(decayed.params[i].b, plain.params[i].b)
    _, pm = make_train_step(model, optimizer=sgd(lr), shards=shards)(state, x, t, None)
    penalty = 0.5 * lam * sum(float(np.sum(state.params[i].w.astype(np.float64) ** 2)) for i in (0, 2))
    assert m.loss == pytest.approx(pm.loss + penalty, rel=1e-5)


def test_a_stop_on_the_last_epoch_is_not_reported_as_a_stop() -> None:
    # stopped_epoch is None when every requested epoch ran, even if the rule says stop after the last
    (x, t), val = blob_task()

    def run(epochs: int) -> fnnet.FitResult:
        return fit(models.mlp((16,), 3), sgd(0.5), (x, t), key=fnnet.key(0), epochs=epochs, batch_size=20, val=val,
                   eval_train=False, progress="quiet", early_stopping=EarlyStopping("val_loss", patience=1))  # fmt: skip

    long = run(60)
    assert long.stopped_epoch is not None and 1 < long.stopped_epoch < 60
    exact = run(long.stopped_epoch)
    assert exact.stopped_epoch is None and len(exact.history.epochs) == long.stopped_epoch
    assert exact.best_epoch == long.best_epoch


def test_grad_norms_report_the_gradient_the_optimizer_received_weight_decay_included() -> None:
    (x, t), _ = blob_task()
    model = fnnet.serial(fnnet.Affine(4), fnnet.ReLU(), fnnet.Affine(3))
    lr = 0.5
    state = init_train_state(model, sgd(lr), fnnet.key(0), x.shape[1:])
    new, m = make_train_step(model, optimizer=sgd(lr), weight_decay=2.0, grad_norms=True)(state, x, t, None)
    # sgd: W_new = W - lr g, so the optimizer's g is (W - W_new) / lr
    expected = [
        float(np.sqrt(sum(np.sum(((a.astype(np.float64) - b) / lr) ** 2) for a, b in zip(state.params[i], new.params[i]))))
        if state.params[i] is not None
        else 0.0
        for i in range(3)
    ]
    assert m.grad_norms == pytest.approx(expected, rel=1e-4)


def test_the_epoch_loss_is_the_mean_of_that_epochs_step_losses() -> None:
    (x, t), _ = blob_task()
    res = fit(models.mlp((8,), 3), sgd(0.5), (x, t), key=fnnet.key(1), epochs=3, batch_size=16, eval_train=False,
              progress="quiet")  # fmt: skip
    steps = np.array(res.history.step_loss).reshape(3, 4)  # 60 samples: 4 steps per epoch
    assert [e["loss"] for e in res.history.epochs] == pytest.approx(steps.mean(axis=1).tolist(), rel=1e-12)
    assert len(set(steps[:, -1].tolist())) == 3 and not np.allclose(steps[:, -1], steps.mean(axis=1))


def test_each_evaluated_set_draws_its_own_eval_sample() -> None:
    (x, t), val = blob_task()
    res = fit(models.mlp((8,), 3), sgd(0.1), (x, t), key=fnnet.key(0), epochs=1, batch_size=20, val=val, test=val,
              eval_train=False, eval_sample=20, progress="quiet")  # fmt: skip
    e = res.history.epochs[0]
    assert e["val_loss"] != e["test_loss"]  # the same 200 items, two independent samples of 20


def test_a_run_resumed_without_its_history_restores_its_best_epoch_by_absolute_number() -> None:
    (x, t), val = blob_task()

    def run(epochs: int, **kw: object) -> fnnet.FitResult:
        return fit(models.mlp((32,), 3), sgd(0.2), (x, t), key=fnnet.key(0), epochs=epochs, batch_size=20, val=val,
                   eval_train=False, progress="quiet", **kw)  # type: ignore[arg-type]  # fmt: skip

    first = run(2)
    resumed = run(8, state=first.state, early_stopping=EarlyStopping(patience=50))
    assert len(resumed.history.epochs) == 6  # it decides from the epochs it trained: 3..8
    val_loss = resumed.history.metric("val_loss")
    best = 2 + int(np.argmin(val_loss)) + 1
    assert resumed.best_epoch == best and int(resumed.state.epoch) == best
    assert _same(resumed.state, run(best).state)
