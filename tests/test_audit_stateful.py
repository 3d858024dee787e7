"""Sequence models in the training loop as a user of the sequel runs them: a stateful language
model over consecutive batches, and the encoder-decoders in ``fit`` with gradient clipping,
checkpoints and ``evaluate``."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

import fnnet
from fnnet.losses import time_softmax_cross_entropy
from fnnet.metrics import check_metrics, default_metrics, token_accuracy
from fnnet.optim import adam, chain, clip_by_global_norm
from fnnet.seq2seq import teacher_forcing
from fnnet.train import evaluate, fit
from fnnet.train.step import init_train_state
from fnnet.tree import tree_leaves

from _helpers import assert_bit_identical


# --- per-token accuracy, the default metric of the sequence loss ----------------------------------


def test_sequence_loss_has_a_per_token_accuracy_that_skips_padding() -> None:
    y = np.zeros((2, 3, 4), np.float32)
    y[..., 1] = 1.0  # every token predicts class 1
    t = np.array([[1, 1, -1], [2, -1, -1]])
    assert token_accuracy(y, t, ignore_index=-1) == pytest.approx(2 / 3)
    plain = default_metrics(time_softmax_cross_entropy)
    assert set(plain) == {"acc"} and plain["acc"](y, np.ones((2, 3), np.int64)) == 1.0
    padded = default_metrics(functools.partial(time_softmax_cross_entropy, ignore_index=-1))
    assert padded["acc"](y, t) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"^token_accuracy: every target equals ignore_index=-1, so there is no token to score$"):
        token_accuracy(y, np.full((2, 3), -1), ignore_index=-1)
    with pytest.raises(ValueError, match=r"token_accuracy: targets must lie in \[0, 4\) or equal ignore_index=-1"):
        token_accuracy(y, np.array([[1, 1, 7], [2, -1, -1]]), ignore_index=-1)
    with pytest.raises(ValueError, match="regression metric, but the loss time_softmax_cross_entropy"):
        check_metrics({"rmse": fnnet.metrics.rmse}, (3, 4), loss=time_softmax_cross_entropy)


# --- the encoder-decoders in fit -----------------------------------------------------------------


@pytest.mark.parametrize("make", [fnnet.Seq2seq, fnnet.AttentionSeq2seq], ids=lambda c: c.__name__)
def test_seq2seq_fit_with_clipping_resumes_from_a_checkpoint_bit_for_bit(make: type, tmp_path: Path) -> None:
    data = fnnet.datasets.load_sequence("addition")
    src, answer = data.x_train[:160], data.t_train[:160]
    x, t = teacher_forcing(src, answer)
    model = make(data.vocab_size, 8, 16, src_len=src.shape[1])
    opt = chain(clip_by_global_norm(1.0), adam(0.01))
    kw = dict(key=fnnet.key(0), loss=time_softmax_cross_entropy, progress="quiet", batch_size=32, val=(x[:40], t[:40]))
    full = fit(model, opt, (x, t), epochs=3, **kw)  # type: ignore[arg-type]
    assert {"val_loss", "val_acc", "train_acc"} <= set(full.history.epochs[-1])
    first = fit(model, opt, (x, t), epochs=1, **kw)  # type: ignore[arg-type]
    path = tmp_path / "s2s.npz"
    fnnet.checkpoint.save(path, first.state)
    loaded, _ = fnnet.checkpoint.load(path, init_train_state(model, opt, fnnet.key(9), tuple(x.shape[1:])))
    resumed = fit(model, opt, (x, t), epochs=3, state=loaded, history=first.history, **kw)  # type: ignore[arg-type]
    for a, b in zip(tree_leaves(resumed.state), tree_leaves(full.state)):
        assert_bit_identical(a, b)
    assert resumed.history.epochs[-1]["val_acc"] == full.history.epochs[-1]["val_acc"]
    res = evaluate(model, full.state.params, x[:40], t[:40], loss=time_softmax_cross_entropy)
    assert res["loss"] == pytest.approx(full.history.epochs[-1]["val_loss"], rel=1e-6)
    logits = model.apply(full.state.params, x[:40])
    assert res["acc"] == float(np.mean(logits.argmax(-1) == t[:40]))


# --- a stateful language model over consecutive windows (truncated BPTT) --------------------------

V, N, T = 10, 4, 5


def _lm() -> fnnet.Layer:
    return fnnet.serial(fnnet.Embedding(V, 8), fnnet.LSTM(16, stateful=True), fnnet.TimeAffine(V))


def _streams() -> tuple[np.ndarray, np.ndarray]:
    ids = fnnet.key(1).generator().integers(0, V, N * 20 + 1)
    return ids[:-1].reshape(N, -1), ids[1:].reshape(N, -1)


def _train(state: fnnet.train.TrainState, windows: range) -> fnnet.train.TrainState:
    """The module docstring's loop: consecutive windows in order, the state carried."""
    step = fnnet.train.make_train_step(_lm(), time_softmax_cross_entropy, adam(0.01))
    xs, ts = _streams()
    for k in windows:
        state, _ = step(state, xs[:, k : k + T], ts[:, k : k + T], fnnet.fold_in(fnnet.key(2), int(state.step)))
    return state


def test_stateful_lm_checkpoint_resumes_bit_for_bit_with_a_carried_state_skeleton(tmp_path: Path) -> None:
    lm = _lm()
    start = init_train_state(lm, adam(0.01), fnnet.key(0), (T,))
    full = _train(start, range(0, 20, T))
    half = _train(start, range(0, 10, T))
    path = tmp_path / "lm.npz"
    fnnet.checkpoint.save(path, half)
    with pytest.raises(fnnet.errors.FormatError, match="model_state/1/c"):  # the fresh skeleton has no (h, c)
        fnnet.checkpoint.load(path, start)
    xs, _ = _streams()
    carried = lm.forward(start.params, None, xs[:, :T])[1]
    loaded, _ = fnnet.checkpoint.load(path, start._replace(model_state=carried))
    resumed = _train(loaded, range(10, 20, T))
    for a, b in zip(tree_leaves(resumed), tree_leaves(full)):
        assert_bit_identical(a, b)


def test_evaluation_reads_the_carried_state_and_leaves_it_alone() -> None:
    lm = _lm()
    state = _train(init_train_state(lm, adam(0.01), fnnet.key(0), (T,)), range(0, 10, T))
    xs, ts = _streams()
    before = [a.copy() for a in tree_leaves(state.model_state)]
    window = (xs[:, 10:15], ts[:, 10:15])
    carried = evaluate(lm, state.params, *window, state=state.model_state, loss=time_softmax_cross_entropy, batch_size=N)
    fresh = evaluate(lm, state.params, *window, loss=time_softmax_cross_entropy, batch_size=N)
    assert carried["loss"] != fresh["loss"] and set(carried) == {"loss", "acc"}
    for a, b in zip(tree_leaves(state.model_state), before):
        assert_bit_identical(a, b)
    assert_bit_identical(fnnet.predict(lm, state.params, window[0]), lm.apply(state.params, window[0]))
    with pytest.raises(ValueError, match=r"LSTM: expected state\.h of shape \(2, 16\).*from state=None"):
        fnnet.predict(lm, state.params, window[0], state=state.model_state, batch_size=2)


def test_evaluate_averages_a_padded_loss_over_its_tokens_whatever_the_batch_size() -> None:
    """Batches were weighted by their rows, not by the tokens the loss counts: the loss of
    ``[[1, pad, pad], [2, 3, 4]]`` depended on ``batch_size``."""
    model = fnnet.serial(fnnet.Embedding(6, 4), fnnet.TimeAffine(6))
    params, _ = model.init(fnnet.key(0), (3,))
    x, t = np.array([[1, 2, 3], [4, 5, 1]]), np.array([[1, -1, -1], [2, 3, 4]])
    loss = functools.partial(fnnet.time_softmax_cross_entropy, ignore_index=-1)
    whole = loss(model.apply(params, x), t)[0]
    for batch_size in (1, 2):
        assert fnnet.evaluate(model, params, x, t, loss=loss, batch_size=batch_size)["loss"] == pytest.approx(whole, rel=1e-6)


def test_fit_evaluates_a_stateful_model_from_a_fresh_state_and_keeps_batchnorm_statistics() -> None:
    """fit evaluates every set from zeros (any evaluation batch size) while training carries the
    state; a BatchNorm beside the stateful layer is evaluated with its running statistics."""
    lm = fnnet.serial(fnnet.Embedding(V, 8), fnnet.LSTM(16, stateful=True), fnnet.TimeAffine(V))
    xs, ts = _streams()
    val = (xs[:3, :T], ts[:3, :T])  # 3 rows: not the training batch size
    r = fnnet.fit(lm, adam(0.01), (xs[:, :T], ts[:, :T]), key=fnnet.key(1), epochs=2, batch_size=N,
                  shuffle=False, loss=time_softmax_cross_entropy, val=val, progress="quiet")  # fmt: skip
    assert r.state.model_state[1] is not None  # training carried (h, c)
    want = evaluate(lm, r.state.params, *val, loss=time_softmax_cross_entropy)
    assert r.history.metric("val_loss")[-1] == want["loss"]
    bn = fnnet.serial(fnnet.Affine(4), fnnet.BatchNorm(), fnnet.Affine(3))
    x, t = fnnet.key(2).generator().standard_normal((20, 5)).astype(np.float32), np.arange(20) % 3
    r2 = fnnet.fit(bn, adam(0.01), (x, t), key=fnnet.key(1), epochs=1, batch_size=10, val=(x, t), progress="quiet")
    got = evaluate(bn, r2.state.params, x, t, state=r2.state.model_state)
    assert r2.history.metric("val_loss")[-1] == got["loss"]
    assert int(r2.state.model_state[1].count) > 0  # the statistics it was evaluated with are trained ones
