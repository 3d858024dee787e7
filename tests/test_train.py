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


def test_fit_with_more_blas_threads_evaluates_with_one() -> None:
    x, t = _blobs(60)
    before = fnnet.train.parallel.blas_threads()
    a = fit(_model(), sgd(0.1), (x, t), key=fnnet.key(0), epochs=2, batch_size=20, blas_threads=2, progress="quiet")
    b = fit(_model(), sgd(0.1), (x, t), key=fnnet.key(0), epochs=2, batch_size=20, blas_threads=2, progress="quiet")
    assert _same(a.state, b.state) and a.history.step_loss == b.history.step_loss
    assert fnnet.train.parallel.blas_threads() == before  # restored after the steps' own switches
