"""Training: the pure step, fit's reproducibility, resuming bit for bit, non-finite losses, progress."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fnnet
from fnnet import checkpoint, models
from fnnet.train._progress import Progress
from fnnet.typing import Array
from fnnet.optim import adam, sgd
from fnnet.train import History, NonFiniteLossError, TrainState, evaluate, fit, init_train_state, make_train_step
from fnnet.tree import tree_leaves


def _blobs(n: int = 240, d: int = 12, k: int = 3, seed: int = 0) -> tuple[Array, Array]:
    """A small separable classification problem: k Gaussian blobs in d dimensions."""
    g = fnnet.key(seed).generator()
    centers = g.standard_normal((k, d)) * 0.8
    t = g.integers(0, k, n)
    x = (centers[t] + g.standard_normal((n, d))).astype(np.float32)
    return x, t


def _same(a: TrainState, b: TrainState) -> bool:
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb))


def _untimed(h: History) -> list[dict[str, float]]:
    return [{k: v for k, v in e.items() if k != "time"} for e in h.epochs]


def _model() -> fnnet.Serial:
    return models.mlp((16, 16), 3, dropout=0.2)


def test_fit_learns_blobs() -> None:
    x, t = _blobs()
    res = fit(_model(), adam(0.01), (x, t), key=fnnet.key(0), epochs=8, batch_size=20, progress="quiet")
    assert res.history.metric("train_acc")[-1] > 0.9
    assert res.history.step_loss[-1] < res.history.step_loss[0]
    assert len(res.history.step_loss) == 8 * 12
    assert int(res.state.step) == 8 * 12 and int(res.state.epoch) == 8


def test_same_seed_same_bits_and_other_seed_differs() -> None:
    x, t = _blobs()

    def run(seed: int) -> fnnet.FitResult:
        return fit(_model(), adam(0.01), (x, t), key=fnnet.key(seed), epochs=3, batch_size=32, progress="quiet")

    a, b, c = run(1), run(1), run(2)
    assert _same(a.state, b.state)
    assert a.history.step_loss == b.history.step_loss
    assert _untimed(a.history) == _untimed(b.history)
    assert not _same(a.state, c.state)


def test_resume_from_checkpoint_is_bit_identical(tmp_path: Path) -> None:
    x, t = _blobs()
    model, opt, key = _model(), adam(0.01), fnnet.key(3)
    full = fit(model, opt, (x, t), key=key, epochs=4, batch_size=32, progress="quiet")
    part = fit(model, opt, (x, t), key=key, epochs=2, batch_size=32, progress="quiet")
    path = tmp_path / "ck.npz"
    checkpoint.save(path, part.state, meta={"history": part.history.to_json()})
    like = init_train_state(model, opt, fnnet.key(99), (12,))
    state, meta = checkpoint.load(path, like)
    hist = History.from_json(meta["history"])
    rest = fit(model, opt, (x, t), key=key, epochs=4, batch_size=32, state=state, history=hist, progress="quiet")
    assert _same(full.state, rest.state)
    assert full.history.step_loss == rest.history.step_loss
    assert [e["train_acc"] for e in full.history.epochs] == [e["train_acc"] for e in rest.history.epochs]


def test_non_finite_loss_stops_with_last_good_state() -> None:
    x, t = _blobs()
    x_bad = x.copy()
    x_bad[37] = np.inf  # in the first shuffled epoch some batch contains it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy RuntimeWarning may leak on this path
        with pytest.raises(NonFiniteLossError) as info:
            fit(models.mlp((8,), 3), sgd(0.1), (x_bad, t), key=fnnet.key(0), epochs=2, batch_size=20,
                progress="quiet")  # fmt: skip
    err = info.value
    assert "step" in str(err) and str(err.step) in str(err)
    assert all(np.isfinite(leaf).all() for leaf in tree_leaves(err.state.params))
    assert err.good_step == int(err.state.step) <= err.step
    assert err.history is not None and len(err.history.step_loss) == err.step


def _diverge(opt: fnnet.optim.GradientTransformation, scale: float = 10.0) -> NonFiniteLossError:
    x, t = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NonFiniteLossError) as info:
            fit(models.mlp((16,), 3), opt, (x * scale, t), key=fnnet.key(0), epochs=3, batch_size=20, progress="quiet")
    return info.value


@pytest.mark.parametrize(
    "opt",
    [sgd(1e38), fnnet.momentum(1e38), fnnet.rmsprop(1e38), sgd(1e15), adam(1e30)],
    ids=["sgd1e38", "momentum1e38", "rmsprop1e38", "sgd1e15", "adam1e30"],
)
def test_last_good_state_is_finite_and_resumable(opt: fnnet.optim.GradientTransformation) -> None:
    err = _diverge(opt)
    assert fnnet.train.all_finite(err.state.params) and fnnet.train.all_finite(err.state.opt_state)
    x, t = _blobs()
    # the state's own loss was finite: resuming from it with a small learning rate trains on
    model = models.mlp((16,), 3)
    calm = fnnet.train.init_train_state(model, sgd(1e-3), fnnet.key(0), (12,))
    state = calm._replace(params=err.state.params, model_state=err.state.model_state)
    res = fit(model, sgd(1e-3), (x * 10, t), key=fnnet.key(0), epochs=1, batch_size=20, state=state, progress="quiet")
    assert np.isfinite(res.history.step_loss).all() and fnnet.train.all_finite(res.state.params)


def test_a_schedule_that_returns_nan_is_refused_before_training() -> None:
    x, t = _blobs(40)
    with pytest.raises(ValueError, match="opt_state holds NaN"):
        fit(_model(), sgd(lambda count: float("nan")), (x, t), key=fnnet.key(0), epochs=1, progress="quiet")


@pytest.mark.parametrize(
    "train, key, match",
    [
        (lambda x, t: (x.tolist(), t), fnnet.key(0), "NumPy arrays"),
        (lambda x, t: (x, t), 0, "key must be a fnnet.Key"),
        (lambda x, t: (x[:0], t[:0]), fnnet.key(0), "at least one sample"),
        (lambda x, t: x, fnnet.key(0), "pair"),
    ],
)
def test_fit_refuses_bad_data_and_keys_in_one_line(train: Any, key: Any, match: str) -> None:
    x, t = _blobs(20)
    with pytest.raises(ValueError, match=match) as info:
        fit(_model(), sgd(0.1), train(x, t), key=key, epochs=1, progress="quiet")
    assert "\n" not in str(info.value)


def test_step_is_pure_and_matches_manual_sgd() -> None:
    x, t = _blobs(40)
    model = fnnet.serial(fnnet.Affine(5), fnnet.ReLU(), fnnet.Affine(3))
    opt = sgd(0.5)
    state = init_train_state(model, opt, fnnet.key(0), (12,))
    before = [a.copy() for a in tree_leaves(state)]
    new, m = make_train_step(model, optimizer=opt)(state, x, t, None)
    assert all(np.array_equal(a, b) for a, b in zip(before, tree_leaves(state)))
    y, _, cache = model.forward(state.params, state.model_state, x, fnnet.TRAIN)
    loss, dy = fnnet.losses.softmax_cross_entropy(y, t)
    _, grads = model.backward(state.params, cache, dy, input_grad=False)
    expected = fnnet.tree_map(lambda p, g: p - np.float32(0.5) * g, state.params, grads)
    assert m.loss == pytest.approx(loss)
    for a, b in zip(tree_leaves(new.params), tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(new.step) == 1


def test_coupled_weight_decay_adds_penalty() -> None:
    x, t = _blobs(40)
    model = fnnet.serial(fnnet.Affine(3))
    opt = sgd(0.1)
    state = init_train_state(model, opt, fnnet.key(0), (12,))
    _, plain = make_train_step(model, optimizer=opt)(state, x, t, None)
    _, decayed = make_train_step(model, optimizer=opt, weight_decay=0.5)(state, x, t, None)
    w = state.params[0].w
    assert decayed.loss == pytest.approx(plain.loss + 0.25 * float(np.sum(w.astype(np.float64) ** 2)), rel=1e-5)


def test_fit_validates_arguments() -> None:
    x, t = _blobs(20)
    with pytest.raises(ValueError, match="samples"):
        fit(_model(), sgd(0.1), (x, t[:-1]), key=fnnet.key(0), epochs=1, progress="quiet")
    with pytest.raises(ValueError, match="batch_size"):
        fit(_model(), sgd(0.1), (x, t), key=fnnet.key(0), epochs=1, batch_size=0, progress="quiet")
    with pytest.raises(ValueError, match="epochs"):
        fit(_model(), sgd(0.1), (x, t), key=fnnet.key(0), epochs=-1, progress="quiet")


def test_evaluate_and_eval_sample() -> None:
    x, t = _blobs()
    res = fit(_model(), adam(0.01), (x, t), key=fnnet.key(0), epochs=2, batch_size=20, test=(x, t),
              eval_sample=50, progress="quiet")
    full = evaluate(_model(), res.state.params, x, t, state=res.state.model_state)
    assert 0.0 <= full["acc"] <= 1.0 and np.isfinite(full["loss"])
    assert len(res.history.metric("test_acc")) == 2
    assert all(abs(v * 50 - round(v * 50)) < 1e-9 for v in res.history.metric("test_acc"))


@pytest.mark.parametrize("mode", ["lines", "bar", "quiet"])
def test_progress_modes(mode: str) -> None:
    out = io.StringIO()
    p = Progress(2, 3, mode, out)
    for e in range(2):
        for i in range(3):
            p.batch(e, i, 0.5)
        p.epoch(e, {"train_acc": 0.9})
    text = out.getvalue()
    if mode == "quiet":
        assert text == ""
    else:
        assert text.count("epoch 2/2") >= 1 and "train_acc 0.9000" in text
        assert ("[" in text) == (mode == "bar")


def test_progress_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        Progress(1, 1, "fancy")


def test_drop_last_skips_the_short_batch_that_batchnorm_cannot_take() -> None:
    x, t = _blobs(41)  # 41 = 2 * 20 + 1: the last batch would hold one sample
    model = models.mlp((8,), 3, batchnorm=True)
    with pytest.raises(ValueError, match="BatchNorm"):
        fit(model, sgd(0.1), (x, t), key=fnnet.key(0), epochs=1, batch_size=20, progress="quiet")
    res = fit(model, sgd(0.1), (x, t), key=fnnet.key(0), epochs=2, batch_size=20, drop_last=True,
              progress="quiet")
    assert len(res.history.step_loss) == 4 and int(res.state.step) == 4


# --- metrics that fit the task -------------------------------------------------------------------


def _binary(n: int = 200, seed: int = 0) -> tuple[Array, Array]:
    g = fnnet.key(seed).generator()
    x = g.standard_normal((n, 2)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)


def test_one_output_classifier_with_flipped_labels_scores_near_zero() -> None:
    x, t = _binary()
    model = fnnet.serial(fnnet.Affine(8), fnnet.Tanh(), fnnet.Affine(1))
    bce = fnnet.losses.binary_cross_entropy_with_logits
    res = fit(model, adam(0.05), (x, t), key=fnnet.key(0), epochs=15, batch_size=20, loss=bce,
              test=(x, 1.0 - t), progress="quiet")  # fmt: skip
    last = res.history.epochs[-1]
    assert last["train_acc"] > 0.95  # binary accuracy, not the argmax of one column (always 1.0)
    assert last["test_acc"] < 0.05  # every label flipped
    assert last["train_acc"] + last["test_acc"] == pytest.approx(1.0)
    assert {"loss", "train_loss", "test_loss"} <= set(last) and last["test_loss"] > last["train_loss"]
    # the same through the probability form: sigmoid output and binary_cross_entropy
    prob = fnnet.serial(fnnet.Affine(8), fnnet.Tanh(), fnnet.Affine(1), fnnet.Sigmoid())
    res_p = fit(prob, adam(0.05), (x, t[:, None]), key=fnnet.key(0), epochs=15, batch_size=20,
                loss=fnnet.losses.binary_cross_entropy, test=(x, 1.0 - t), progress="quiet")  # fmt: skip
    assert res_p.history.epochs[-1]["train_acc"] > 0.95 and res_p.history.epochs[-1]["test_acc"] < 0.05


def test_regression_reports_mae_rmse_r2_and_no_accuracy() -> None:
    g = fnnet.key(5).generator()
    x = g.uniform(-1, 1, (160, 1)).astype(np.float32)
    t = (np.sin(3 * x[:, 0]) + 0.05 * g.standard_normal(160)).astype(np.float32)  # (N,) against (N, 1) outputs
    model = fnnet.serial(fnnet.Affine(16), fnnet.Tanh(), fnnet.Affine(1))
    res = fit(model, adam(0.02), (x, t), key=fnnet.key(0), epochs=30, batch_size=16,
              loss=fnnet.mean_squared_error, val=(x[:40], t[:40]), progress="quiet")  # fmt: skip
    last = res.history.epochs[-1]
    assert not any(k.endswith("acc") for k in last)
    assert {"train_mae", "train_rmse", "train_r2", "val_loss", "val_mae", "val_rmse", "val_r2"} <= set(last)
    assert last["train_r2"] > 0.9 and last["train_rmse"] < 0.3
    assert last["train_rmse"] == pytest.approx(np.sqrt(last["train_loss"]), rel=1e-5)  # MSE is RMSE squared
    y = fnnet.predict(model, res.state.params, x)
    assert last["train_mae"] == pytest.approx(float(np.mean(np.abs(y[:, 0] - t))), rel=1e-6)


def test_accuracy_of_a_regression_is_a_one_line_error_before_training() -> None:
    x = np.zeros((8, 2), np.float32)
    t = np.linspace(0, 3, 8).astype(np.float32)
    model = fnnet.serial(fnnet.Affine(1))
    for metrics in ({"acc": fnnet.accuracy}, {"acc": fnnet.binary_accuracy}):
        with pytest.raises(ValueError, match=r"^metric 'acc' \((binary_)?accuracy\) is a classification metric, "
                           r"but the loss mean_squared_error is a regression loss; use mae, rmse or r2$"):
            fit(model, sgd(0.1), (x, t), key=fnnet.key(0), epochs=1, loss=fnnet.mean_squared_error,
                metrics=metrics, progress="quiet")  # fmt: skip
    with pytest.raises(ValueError, match=r"^metric 'acc' \(accuracy\) needs K >= 2 class scores") as info:
        fit(model, sgd(0.1), (x, t), key=fnnet.key(0), epochs=1, metrics={"acc": fnnet.accuracy},
            loss=lambda y, tt: fnnet.mean_squared_error(y, tt), progress="quiet")  # fmt: skip
    assert "\n" not in str(info.value)
    params, _ = model.init(fnnet.key(0), (2,))
    with pytest.raises(ValueError, match=r"^binary_accuracy: targets must be 0/1 labels"):
        evaluate(model, params, x, t, loss=lambda y, tt: fnnet.mean_squared_error(y, tt),
                 metrics={"acc": fnnet.binary_accuracy})  # fmt: skip


def test_softmax_default_keeps_acc_names_and_adds_losses_and_own_metrics() -> None:
    x, t = _blobs(120)

    def top2(y: Array, tt: Array) -> float:
        return float(np.mean((np.argsort(y, axis=1)[:, -2:] == tt[:, None]).any(axis=1)))

    res = fit(_model(), adam(0.01), (x, t), key=fnnet.key(0), epochs=2, batch_size=20, val=(x[:60], t[:60]),
              test=(x[60:], t[60:]), progress="quiet")  # fmt: skip
    assert [k for k in res.history.epochs[0] if k != "time"] == [
        "loss", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]  # fmt: skip
    ev = evaluate(_model(), res.state.params, x, t, metrics={"acc": fnnet.accuracy, "top2": top2})
    assert ev["top2"] >= ev["acc"] and set(ev) == {"loss", "acc", "top2"}
    assert ev["acc"] == res.history.epochs[-1]["train_acc"] and ev["loss"] == res.history.epochs[-1]["train_loss"]


def test_evaluate_metrics_are_of_the_whole_set_not_a_mean_of_batches() -> None:
    g = fnnet.key(2).generator()
    x = g.standard_normal((50, 3)).astype(np.float32)
    t = g.standard_normal(50).astype(np.float32)
    model = fnnet.Affine(1)
    params, _ = model.init(fnnet.key(0), (3,))
    whole = evaluate(model, params, x, t, loss=fnnet.mean_squared_error, batch_size=1000)
    batched = evaluate(model, params, x, t, loss=fnnet.mean_squared_error, batch_size=7)
    assert batched["rmse"] == pytest.approx(whole["rmse"], rel=1e-6)  # float32 GEMMs of other sizes round apart
    assert batched["r2"] == pytest.approx(whole["r2"], rel=1e-6)
    assert batched["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    y = fnnet.predict(model, params, x)
    per_batch = [fnnet.rmse(y[i : i + 7], t[i : i + 7]) * len(t[i : i + 7]) for i in range(0, 50, 7)]
    assert abs(sum(per_batch) / 50 - whole["rmse"]) > 1e-3  # what a mean of batches would have said


# --- gradient norms --------------------------------------------------------------------------------


def test_grad_norms_per_step_equal_the_norms_of_hand_computed_gradients() -> None:
    x, t = _blobs(40)
    model = fnnet.serial(fnnet.Affine(5), fnnet.Sigmoid(), fnnet.Affine(4), fnnet.Sigmoid(), fnnet.Affine(3))
    res = fit(model, sgd(0.1), (x, t), key=fnnet.key(0), epochs=2, batch_size=40, grad_norms=True,
              eval_train=False, progress="quiet")  # fmt: skip
    assert len(res.history.grad_norms) == len(res.history.step_loss) == 2
    assert all(len(g) == 5 for g in res.history.grad_norms)  # one per top-level params entry
    first = res.history.grad_norms[0]
    assert first[1] == 0.0 and first[3] == 0.0  # Sigmoid has no parameters
    # by hand: the first step from the initial state, on the first epoch's one (shuffled) batch
    state = init_train_state(model, sgd(0.1), fnnet.split(fnnet.key(0), 4)[0], (12,))
    y, _, cache = model.forward(state.params, state.model_state, x, fnnet.TRAIN)
    _, dy = fnnet.softmax_cross_entropy(y, t)  # the loss is a mean: the batch's order does not change it
    _, grads = model.backward(state.params, cache, dy, input_grad=False)
    for i, g in enumerate(grads):
        expected = float(np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in tree_leaves(g))))
        assert first[i] == pytest.approx(expected, rel=1e-5)
    off = fit(model, sgd(0.1), (x, t), key=fnnet.key(0), epochs=1, batch_size=40, progress="quiet")
    assert off.history.grad_norms == ()


def test_history_round_trips_through_json_with_the_new_fields() -> None:
    import json

    x, t = _blobs(60)
    res = fit(_model(), adam(0.01), (x, t), key=fnnet.key(0), epochs=2, batch_size=20, val=(x, t), grad_norms=True,
              plateau=fnnet.ReduceOnPlateau(patience=1), progress="quiet")  # fmt: skip
    h = res.history
    back = History.from_json(json.loads(json.dumps(h.to_json())))
    assert back == h and back.grad_norms == h.grad_norms and len(back.grad_norms) == 6
    assert {"val_loss", "lr_scale"} <= set(back.epochs[-1])
    old = {"step_loss": [0.5], "epochs": [{"train_acc": 0.5}]}  # written before grad_norms existed
    assert History.from_json(old).grad_norms == ()


def test_update_scale_scales_the_step_and_one_changes_nothing() -> None:
    x, t = _blobs(40)
    model = fnnet.serial(fnnet.Affine(5), fnnet.ReLU(), fnnet.Affine(3))
    state = init_train_state(model, sgd(0.2), fnnet.key(0), (12,))
    plain, _ = make_train_step(model, optimizer=sgd(0.2))(state, x, t, None)
    one, _ = make_train_step(model, optimizer=sgd(0.2))(state, x, t, None, 1.0)
    half, _ = make_train_step(model, optimizer=sgd(0.2))(state, x, t, None, 0.5)
    slow, _ = make_train_step(model, optimizer=sgd(0.1))(state, x, t, None)
    assert _same(plain, one)
    for a, b in zip(tree_leaves(half.params), tree_leaves(slow.params)):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="update_scale must be a finite number >= 0"):
        make_train_step(model, optimizer=sgd(0.2))(state, x, t, None, float("nan"))
