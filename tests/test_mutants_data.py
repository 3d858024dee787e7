"""Regression tests from a second mutation-testing pass over data and bookkeeping: the split of
a sequence file whose size is no multiple of 10, CRLF line ends, decode's negative ids, History's
lookups and JSON checks, predict/evaluate over several batches with a partial last one, and an
erasing fill a uint8 image cannot hold, which plausible one-token changes left untested."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fnnet
from fnnet.datasets.augment import RandomCrop, RandomErasing
from fnnet.datasets.sequence import decode, load_sequence, read_sequence_file
from fnnet.train import History, evaluate, predict


def test_sequence_split_keeps_n_minus_n_div_10_for_training(tmp_path: Path) -> None:
    # 15 questions: 15 - 15 // 10 = 14 to train and 1 to test (not 9 and 6)
    f = tmp_path / "fifteen.txt"
    f.write_text("".join(f"{i % 10}+{i % 7}_{(i % 10 + i % 7) % 10}\n" for i in range(15)), encoding="utf-8")
    data = load_sequence(f)
    assert (len(data.x_train), len(data.x_test)) == (14, 1)


def test_a_crlf_file_reads_as_its_lf_twin(tmp_path: Path) -> None:
    lines = ["1+2_3 ", "4+5_9 ", "6+6_12"]
    lf, crlf = tmp_path / "lf.txt", tmp_path / "crlf.txt"
    lf.write_bytes(("\n".join(lines) + "\n").encode())
    crlf.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    a, b = read_sequence_file(lf), read_sequence_file(crlf)
    assert a[2] == b[2] and (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_decode_refuses_negative_ids() -> None:
    # a negative id would silently pick a character from the end of the vocabulary
    with pytest.raises(ValueError, match=r"^decode: ids must lie in \[0, 3\), got values in \[-1, 0\]"):
        decode([0, -1], ("a", "b", "c"))


def test_history_metric_skips_the_epochs_without_it() -> None:
    h = History(epochs=({"loss": 1.0}, {"loss": 0.5, "val_loss": 0.75}))
    assert h.metric("val_loss") == [0.75]
    assert h.metric("loss") == [1.0, 0.5]


def test_history_to_json_gives_fresh_epoch_dicts() -> None:
    h = History(step_loss=(1.0,), epochs=({"loss": 1.0},))
    d = h.to_json()
    d["epochs"][0]["loss"] = 9.0
    assert h.epochs[0]["loss"] == 1.0


@pytest.mark.parametrize(
    ("d", "what"),
    [
        ({"step_loss": [], "epochs": [{"loss": "0.5"}]}, "'epochs'"),
        ({"step_loss": [], "epochs": [{"loss": True}]}, "'epochs'"),
        ({"step_loss": [True], "epochs": []}, "'step_loss'"),
        ({"step_loss": [], "epochs": [], "grad_norms": [[False]]}, "'grad_norms'"),
    ],
)
def test_history_from_json_refuses_non_numbers_and_bools(d: dict[str, object], what: str) -> None:
    with pytest.raises(ValueError, match=rf"^History\.from_json: {what} must be"):
        History.from_json(d)


def _model() -> tuple[fnnet.Affine, object, np.ndarray]:
    model = fnnet.Affine(3)
    params, _ = model.init(fnnet.key(0), (4,))
    x = np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32)
    return model, params, x


def test_predict_keeps_the_order_of_the_batches() -> None:
    model, params, x = _model()
    whole = model.apply(params, x)
    np.testing.assert_allclose(predict(model, params, x, batch_size=3, threads=1), whole, rtol=1e-5, atol=1e-6)


def test_evaluate_counts_every_sample_of_an_odd_set() -> None:
    # 7 samples in batches of 3 (the last has one): the metric must see the seventh
    model, params, x = _model()
    labels = model.apply(params, x).argmax(axis=1)
    t = labels.copy()
    t[-1] = (t[-1] + 1) % 3  # only the last sample is wrong
    result = evaluate(model, params, x, t, batch_size=3, threads=1)
    assert result["acc"] == pytest.approx(6 / 7)


def test_erasing_ratio_is_height_over_width() -> None:
    # area 0.25 * 16 * 16 = 64 at height / width = 4: a 16 x 4 box (not 4 x 16)
    x = np.ones((3, 1, 16, 16), np.float32)
    y = RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(4.0, 4.0))(fnnet.key(0), x)
    for n in range(3):
        rows, cols = np.nonzero(y[n, 0] == 0)
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (16, 4)


def test_crop_with_a_pad_beyond_the_image_equals_the_naive_crop() -> None:
    # the crop clips shifts larger than the image (to keep the padding small); the images must be
    # those of padding by the full pad and cropping at the drawn offsets (oy, then ox, each uniform
    # in [0, 2 pad]), shifts beyond the image leaving zeros on either side
    pad, n, h, w = 10, 60, 3, 4
    x = np.arange(1.0, n * h * w + 1, dtype=np.float32).reshape(n, 1, h, w)
    k = fnnet.key(5)
    y = RandomCrop(pad)(k, x)
    gen = k.generator()
    oy = gen.integers(0, 2 * pad + 1, size=n)
    ox = gen.integers(0, 2 * pad + 1, size=n)
    xp = np.zeros((n, 1, h + 2 * pad, w + 2 * pad), np.float32)
    xp[:, :, pad : pad + h, pad : pad + w] = x
    expected = np.stack([xp[i, :, oy[i] : oy[i] + h, ox[i] : ox[i] + w] for i in range(n)])
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("value", [256, -1])
def test_erasing_refuses_a_uint8_fill_it_cannot_hold(value: int) -> None:
    with pytest.raises(ValueError, match=rf"^RandomErasing: value {value} cannot be stored in uint8 images"):
        RandomErasing(p=1.0, value=value)(fnnet.key(0), np.zeros((1, 1, 4, 4), np.uint8))
