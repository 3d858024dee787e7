"""A reader's journey through the sequel's models: parameters that do not fit the layer or model
they are given to fail in one line naming the place, instead of running silently at another size
or failing deep inside NumPy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fnnet
from _examples import last_match, run_quick
from fnnet.export import ExportError, to_torch_state_dict
from fnnet.seq2seq import AttentionSeq2seq, Seq2seq, attention_weights, generate, sample, sequence_accuracy

X_SEQ = np.zeros((2, 5, 4), np.float32)


@pytest.mark.parametrize("layer", [fnnet.RNN, fnnet.LSTM, fnnet.GRU])
def test_a_recurrent_layer_refuses_params_of_another_hidden_size(layer: Any) -> None:
    other, _ = layer(8).init(fnnet.key(0), (5, 4))
    for small in (layer(6), layer(6, return_sequences=False)):
        with pytest.raises(ValueError, match=rf"^{layer.__name__}: expected params of hidden size 6: .*got wx \(4, \d+\) and wh \(8, "):
            small.apply(other, X_SEQ)
        with pytest.raises(ValueError, match=rf"^{layer.__name__}: expected params of hidden size 6"):
            small.forward(other, None, X_SEQ)
    with pytest.raises(ValueError, match=rf"^{layer.__name__}: expected params with arrays wx, wh"):
        layer(6).apply(None, X_SEQ)


def test_embedding_and_time_affine_refuse_params_of_another_size() -> None:
    table, _ = fnnet.Embedding(12, 4).init(fnnet.key(0), (5,))
    with pytest.raises(ValueError, match=r"^Embedding: expected params w of shape \(10, 4\), got \(12, 4\)$"):
        fnnet.Embedding(10, 4).apply(table, np.full((1, 5), 11))  # id 11 is out of the model's vocabulary
    with pytest.raises(ValueError, match=r"^Embedding: expected params with arrays w"):
        fnnet.Embedding(10, 4).apply(None, np.zeros((1, 5), np.int64))
    wide, _ = fnnet.TimeAffine(8).init(fnnet.key(0), (5, 4))
    with pytest.raises(ValueError, match=r"^TimeAffine: expected params w of shape \(D, 6\) and b of shape \(6,\), got w \(4, 8\)"):
        fnnet.TimeAffine(6).apply(wide, X_SEQ)


def _params(model: Any, ts: int = 3) -> Any:
    return model.init(fnnet.key(0), (ts + 2,))[0]


SRC = np.array([[1, 2, 3], [4, 5, 6]])
X = np.concatenate([SRC, np.zeros((2, 2), np.int64)], axis=1)


@pytest.mark.parametrize(
    ("model", "params", "where"),
    [
        (Seq2seq(7, 4, 5, src_len=3), _params(Seq2seq(9, 4, 5, src_len=3)), r"encoder/embed/w has shape \(9, 4\), expected \(7, 4\)"),
        (Seq2seq(9, 4, 5, src_len=3), _params(Seq2seq(7, 4, 5, src_len=3)), r"encoder/embed/w has shape \(7, 4\), expected \(9, 4\)"),
        (Seq2seq(9, 4, 5, src_len=3), _params(Seq2seq(9, 4, 6, src_len=3)), r"encoder/lstm/wx has shape \(4, 24\), expected \(4, 20\)"),
        (AttentionSeq2seq(9, 4, 5, src_len=3), _params(Seq2seq(9, 4, 5, src_len=3)), r"decoder/affine/w has shape \(5, 9\), expected \(10, 9\)"),
        (Seq2seq(9, 4, 5, src_len=3), _params(AttentionSeq2seq(9, 4, 5, src_len=3)), r"decoder/affine/w has shape \(10, 9\), expected \(5, 9\)"),
        (Seq2seq(9, 4, 5, src_len=3, peeky=True), _params(AttentionSeq2seq(9, 4, 5, src_len=3)), r"decoder/lstm/wx has shape \(4, 20\), expected \(9, 20\)"),
    ],
)
def test_seq2seq_models_and_decoders_refuse_params_that_do_not_fit(model: Any, params: Any, where: str) -> None:
    calls: list[tuple[str, Callable[[], Any]]] = [
        (type(model).__name__, lambda: model.apply(params, X)),
        (type(model).__name__, lambda: model.forward(params, None, X)),
        ("generate", lambda: generate(model, params, SRC, 0, 2)),
        ("sample", lambda: sample(model, params, SRC, 0, 2, key=fnnet.key(1))),
        ("sequence_accuracy", lambda: sequence_accuracy(model, params, SRC, np.zeros((2, 3), np.int64))),
    ]
    if isinstance(model, AttentionSeq2seq):
        calls.append(("attention_weights", lambda: attention_weights(model, params, SRC, 0, 2)))
    for name, call in calls:
        with pytest.raises(ValueError, match=rf"^{name}: params do not fit {type(model).__name__}\(.*\): {where}$"):
            call()


def test_seq2seq_refuses_params_of_mixed_dtypes() -> None:
    model = Seq2seq(9, 4, 5, src_len=3)
    p = _params(model)
    mixed = p._replace(decoder=fnnet.astype(p.decoder, np.float64))
    with pytest.raises(ValueError, match=r"^generate: expected params of one float dtype, got decoder/embed/w of dtype float64"):
        generate(model, mixed, SRC, 0, 2)
    with pytest.raises(ValueError, match=r"^Seq2seq: expected h0 of .*dtype float64"):
        model.apply(mixed, X)


def test_sequence_accuracy_refuses_float_or_out_of_range_answers() -> None:
    model = Seq2seq(9, 4, 5, src_len=3)
    p = _params(model)
    answer = np.array([[0, 1, 2], [0, 3, 4]])
    assert 0.0 <= sequence_accuracy(model, p, SRC, answer) <= 1.0
    with pytest.raises(ValueError, match=r"^sequence_accuracy: expected integer answer ids in \[0, 9\), got dtype float64$"):
        sequence_accuracy(model, p, SRC, answer.astype(np.float64))
    with pytest.raises(ValueError, match=r"^sequence_accuracy: expected integer answer ids in \[0, 9\), got ids in \[0, 12\]$"):
        sequence_accuracy(model, p, SRC, answer + np.array([0, 0, 8]))  # only the last token out of range
    with pytest.raises(ValueError, match=r"^sequence_accuracy: expected int source ids \(N, 3\)"):
        sequence_accuracy(model, p, SRC.astype(np.float64), answer)


@pytest.mark.parametrize("layer", [fnnet.RNN, fnnet.LSTM, fnnet.GRU])
def test_torch_export_refuses_recurrent_params_of_another_hidden_size(layer: Any) -> None:
    model = fnnet.serial(fnnet.Embedding(11, 4), layer(6), fnnet.TimeAffine(11))
    wider = fnnet.serial(fnnet.Embedding(11, 4), layer(8), fnnet.TimeAffine(11))
    params, _ = wider.init(fnnet.key(0), (5,))
    with pytest.raises(ExportError, match=rf"^layer 1 \({layer.__name__}\): expected params of hidden size 6 "):
        to_torch_state_dict(model, params)
    other_vocab = fnnet.serial(fnnet.Embedding(12, 4), layer(6), fnnet.TimeAffine(11))
    params, _ = other_vocab.init(fnnet.key(0), (5,))
    with pytest.raises(ExportError, match=r"^layer 0 \(Embedding\): expected params w of shape \(11, 4\), got \(12, 4\)$"):
        to_torch_state_dict(model, params)


def test_the_sequence_examples_have_a_quick_mode(tmp_path: Path) -> None:
    lines = run_quick("seq2seq_addition.py", tmp_path / "addition.png")
    assert lines[0] == "train 384 questions, test 42, vocabulary 13, epochs 2"
    accs = last_match(lines, r"accuracy plain (\d\.\d{4}) reversed (\d\.\d{4}) reversed\+peeky (\d\.\d{4})")
    assert all(0.0 <= a <= 1.0 for a in accs)
    lines = run_quick("seq_attention_date.py", tmp_path / "attention.png")
    assert any(line.startswith("test dates 500, right 500") for line in lines)
    assert lines[-1] == "accuracy 1.0000"


def test_embedding_and_time_affine_backward_refuse_dout_of_another_dtype() -> None:
    emb = fnnet.Embedding(5, 3)
    p, _ = emb.init(fnnet.key(0), (4,))
    y, _, cache = emb.forward(p, None, np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"^Embedding\.backward: expected dout of dtype float32 \(the parameters' dtype\), got float64$"):
        emb.backward(p, cache, np.ones(y.shape))
    assert emb.backward(p, cache, np.ones_like(y))[1].w.dtype == np.float32
    ta = fnnet.TimeAffine(3)
    pa, _ = ta.init(fnnet.key(0), (4, 2))
    ya, _, cache_a = ta.forward(pa, None, np.zeros((2, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"^TimeAffine\.backward: expected dout of dtype float32 \(the parameters' dtype\), got float64$"):
        ta.backward(pa, cache_a, np.ones(ya.shape))


def test_the_attention_benchmark_refuses_a_negative_seed_as_a_usage_error() -> None:
    bench = Path(__file__).resolve().parent.parent / "bench" / "attention_date.py"
    result = subprocess.run([sys.executable, str(bench), "--seed", "-1"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == "attention_date.py: error: argument --seed: expected an integer >= 0, got '-1'"


def test_torch_export_refuses_time_affine_params_of_another_width() -> None:
    model = fnnet.serial(fnnet.Embedding(11, 4), fnnet.LSTM(6), fnnet.TimeAffine(11))
    other = fnnet.serial(fnnet.Embedding(11, 4), fnnet.LSTM(6), fnnet.TimeAffine(12))
    params, _ = other.init(fnnet.key(0), (5,))
    with pytest.raises(ExportError, match=r"^layer 2 \(TimeAffine\): expected params w of shape \(D, 11\) and b of shape \(11,\), got w \(6, 12\)"):
        to_torch_state_dict(model, params)
