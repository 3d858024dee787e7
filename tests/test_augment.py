"""Augmentation: keyed pure transforms of image batches, and fit's hook that shows them to training only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, call_unchanged, normal
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fnnet
from fnnet.datasets import Augmentation, Compose, HorizontalFlip, RandomCrop, RandomErasing, RandomTranslate, compose
from fnnet.random import Key, fold_in, split
from fnnet.train import evaluate, fit
from fnnet.typing import Array

TRANSFORMS: list[Augmentation] = [
    RandomCrop(pad=2),
    RandomTranslate(1, 3),
    HorizontalFlip(p=0.5),
    compose(RandomCrop(pad=1), HorizontalFlip()),
    RandomErasing(p=0.5),
]
IDS = ["crop", "translate", "flip", "compose", "erase"]


def _reference_shift(x: Array, sy: Array, sx: Array) -> Array:
    """``out[n, c, i, j] = x[n, c, i - sy[n], j - sx[n]]`` where that exists, else 0; one sample at a time."""
    out = np.zeros_like(x)
    _, _, h, w = x.shape
    for n in range(len(x)):
        for i in range(h):
            for j in range(w):
                si, sj = i - sy[n], j - sx[n]
                if 0 <= si < h and 0 <= sj < w:
                    out[n, :, i, j] = x[n, :, si, sj]
    return out


def _shifts_of_a_bright_pixel(y: Array, at: tuple[int, int]) -> tuple[Array, Array]:
    """Where the single brightest pixel of each sample went, as a shift from ``at``."""
    n, _, _, w = y.shape
    flat = y[:, 0].reshape(n, -1).argmax(axis=1)
    return flat // w - at[0], flat % w - at[1]


# --- semantics on hand-checkable arrays -------------------------------------------------------------


def test_flip_with_p_one_reverses_the_width_axis_and_p_zero_is_the_identity() -> None:
    x = normal((3, 2, 4, 5), 0, dtype=np.float32)
    assert_bit_identical(HorizontalFlip(p=1.0)(fnnet.key(0), x), x[..., ::-1].copy())
    assert_bit_identical(HorizontalFlip(p=0.0)(fnnet.key(0), x), x)
    tiny = np.array([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])
    assert HorizontalFlip(p=1.0)(fnnet.key(5), tiny).tolist() == [[[[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]]]]


def test_flip_decides_per_sample_with_probability_p() -> None:
    x = normal((400, 1, 2, 3), 1)
    y = HorizontalFlip(p=0.25)(fnnet.key(2), x)
    flipped = (y == x[..., ::-1]).all(axis=(1, 2, 3))
    kept = (y == x).all(axis=(1, 2, 3))
    assert (flipped ^ kept).all()  # every sample is either itself or its mirror, never a mix
    assert 0.18 < flipped.mean() < 0.32


def _erased_boxes(x: Array, y: Array) -> list[tuple[int, int, int, int] | None]:
    """Per sample, the bounding box ``(top, left, height, width)`` of the pixels ``y`` changed, or None."""
    boxes: list[tuple[int, int, int, int] | None] = []
    for n in range(len(x)):
        changed = (x[n] != y[n]).any(axis=0)
        if not changed.any():
            boxes.append(None)
            continue
        rows, cols = np.nonzero(changed.any(axis=1))[0], np.nonzero(changed.any(axis=0))[0]
        boxes.append((int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)))
    return boxes


def test_erasing_fills_one_rectangle_in_every_channel_of_the_drawn_size() -> None:
    x = 1.0 + np.abs(normal((50, 3, 10, 12), 4))  # no pixel is already 0
    y = RandomErasing(p=1.0, scale=(0.1, 0.3), ratio=(0.5, 2.0))(fnnet.key(1), x)
    for n, box in enumerate(_erased_boxes(x, y)):
        assert box is not None
        top, left, hh, ww = box
        inside = np.zeros((10, 12), bool)
        inside[top : top + hh, left : left + ww] = True
        assert (y[n][:, inside] == 0).all() and (y[n][:, ~inside] == x[n][:, ~inside]).all()  # a full rectangle
        assert 0.1 * 120 * 0.5 <= hh * ww <= 0.3 * 120 * 1.6  # its area, up to rounding of the sides
    exact = RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=-2.0)(fnnet.key(0), np.ones((6, 2, 6, 6)))
    assert ((exact == -2.0).sum(axis=(1, 2, 3)) == 2 * 9).all()  # a 3x3 square, both channels


def test_erasing_decides_per_sample_with_probability_p_and_covers_every_position() -> None:
    x = np.ones((4000, 1, 8, 8), np.float32)
    y = RandomErasing(p=0.3, scale=(0.02, 0.1))(fnnet.key(3), x)
    erased = (y == 0).any(axis=(1, 2, 3))
    assert 0.27 < erased.mean() < 0.33
    assert (y[erased] == 0).any(axis=(0, 1)).all()  # some rectangle reaches every pixel
    assert_bit_identical(RandomErasing(p=0.0)(fnnet.key(3), x), x)
    assert RandomErasing(p=1.0)(fnnet.key(3), x[:10]).min() == 0.0


def test_erasing_keeps_integer_images_integer() -> None:
    x = np.full((5, 1, 6, 6), 7, np.uint8)
    y = RandomErasing(p=1.0, value=255)(fnnet.key(2), x)
    assert y.dtype == np.uint8 and set(np.unique(y).tolist()) == {7, 255}


def test_crop_with_pad_zero_is_the_identity_in_a_new_array() -> None:
    x = normal((4, 3, 5, 6), 2, dtype=np.float32)
    y = RandomCrop(pad=0)(fnnet.key(0), x)
    assert_bit_identical(y, x)
    assert not np.shares_memory(x, y)


def test_translate_moves_a_bright_pixel_by_the_drawn_shift_and_fills_zeros() -> None:
    n, dy, dx = 300, 2, 3
    x = np.zeros((n, 1, 9, 9), np.float32)
    x[:, 0, 4, 4] = 1.0
    y = RandomTranslate(dy, dx)(fnnet.key(3), x)
    sy, sx = _shifts_of_a_bright_pixel(y, (4, 4))
    assert (y.sum(axis=(1, 2, 3)) == 1.0).all() and (y.max(axis=(1, 2, 3)) == 1.0).all()
    assert set(sy.tolist()) == set(range(-dy, dy + 1)) and set(sx.tolist()) == set(range(-dx, dx + 1))


@pytest.mark.parametrize("dy,dx", [(0, 0), (1, 2), (3, 0)])
def test_translate_equals_a_per_sample_reference_with_zero_fill(dy: int, dx: int) -> None:
    # a ramp with a marker in the middle, far enough from the edges to stay visible, shows the
    # shift each sample drew
    n, h, w = 40, 2 * dy + 3, 2 * dx + 3
    x = np.tile(np.arange(1.0, h * w + 1).reshape(h, w), (n, 2, 1, 1))
    x[:, :, dy + 1, dx + 1] = 1000.0
    y = RandomTranslate(dy, dx)(fnnet.key(4), x)
    sy, sx = _shifts_of_a_bright_pixel(y, (dy + 1, dx + 1))
    assert (np.abs(sy) <= dy).all() and (np.abs(sx) <= dx).all()
    assert_bit_identical(y, _reference_shift(x, sy, sx))
    zeros = (y == 0).sum(axis=(1, 2, 3))
    assert (zeros == 2 * (h * w - (h - np.abs(sy)) * (w - np.abs(sx)))).all()


def test_crop_is_a_translation_by_up_to_pad() -> None:
    x = normal((20, 3, 7, 7), 3)
    k = fnnet.key(8)
    assert_bit_identical(RandomCrop(pad=3)(k, x), RandomTranslate(3, 3)(k, x))


def test_a_shift_larger_than_the_image_may_leave_only_zeros() -> None:
    x = np.ones((200, 1, 2, 2), np.float32)
    y = RandomTranslate(5, 5)(fnnet.key(0), x)
    sums = y.sum(axis=(1, 2, 3))
    assert set(sums.tolist()) == {0.0, 1.0, 2.0, 4.0}


# --- keys, samples, dtypes -------------------------------------------------------------------------


@pytest.mark.parametrize("t", TRANSFORMS, ids=IDS)
def test_same_key_same_bits_other_key_other_images(t: Augmentation) -> None:
    x = normal((32, 2, 6, 6), 4, dtype=np.float32)
    a, b, c = t(fnnet.key(1), x), t(fnnet.key(1), x), t(fnnet.key(2), x)
    assert_bit_identical(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("t", TRANSFORMS[:2], ids=IDS[:2])
def test_each_sample_draws_its_own_offset(t: Augmentation) -> None:
    x = np.zeros((64, 1, 9, 9))
    x[:, 0, 4, 4] = 1.0
    sy, sx = _shifts_of_a_bright_pixel(t(fnnet.key(6), x), (4, 4))
    assert len(set(zip(sy.tolist(), sx.tolist()))) > 5
    # a sample's result depends on its index, not on what the other samples hold
    x2 = x.copy()
    x2[1:] = normal((63, 1, 9, 9), 9)
    sy2, sx2 = _shifts_of_a_bright_pixel(t(fnnet.key(6), x2)[:1], (4, 4))
    assert (sy2[0], sx2[0]) == (sy[0], sx[0])


@pytest.mark.parametrize("t", TRANSFORMS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.uint8])
def test_dtype_and_shape_are_kept(t: Augmentation, dtype: Any) -> None:
    x = (normal((5, 3, 4, 6), 5) * 50 + 100).astype(dtype)
    y = t(fnnet.key(0), x)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert y.flags.writeable


@pytest.mark.parametrize("t", TRANSFORMS, ids=IDS)
def test_a_strided_view_gives_what_its_contiguous_copy_gives(t: Augmentation) -> None:
    base = normal((6, 4, 10, 12), 6, dtype=np.float32)
    view = base[::2, 1:3, ::2, ::-1]
    assert not view.flags.c_contiguous
    assert_bit_identical(t(fnnet.key(3), view), t(fnnet.key(3), view.copy()))


def test_an_empty_batch_gives_an_empty_batch() -> None:
    x = np.zeros((0, 1, 4, 4), np.float32)
    for t in TRANSFORMS:
        assert t(fnnet.key(0), x).shape == (0, 1, 4, 4)


@settings(max_examples=40, deadline=None)
@given(
    x=st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)).flatmap(
        lambda s: arrays(st.sampled_from([np.float32, np.float64]), s, elements=st.floats(-5, 5, width=32))
    ),
    which=st.integers(0, 4),
    pad=st.integers(0, 4),
    p=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    readonly=st.booleans(),
)
def test_transforms_never_write_into_their_input(
    x: Array, which: int, pad: int, p: float, seed: int, readonly: bool
) -> None:
    parts: list[Augmentation] = [RandomCrop(pad), RandomTranslate(1, pad), HorizontalFlip(p), RandomErasing(p)]
    t = parts[which] if which < len(parts) else compose(*parts)
    k = fnnet.key(seed)
    y = call_unchanged(t, k, x, readonly=readonly)
    assert y.shape == x.shape and y.dtype == x.dtype and not np.shares_memory(x, y)
    assert k == fnnet.key(seed)


# --- compose ---------------------------------------------------------------------------------------


def test_compose_applies_in_order_with_one_split_key_each() -> None:
    seen: list[Key] = []

    def add_one(k: Key, x: Array) -> Array:
        seen.append(k)
        return x + 1

    def double(k: Key, x: Array) -> Array:
        seen.append(k)
        return x * 2

    x = np.zeros((1, 1, 1, 2))
    k = fnnet.key(7)
    assert compose(add_one, double)(k, x).ravel().tolist() == [2.0, 2.0]
    assert compose(double, add_one)(k, x).ravel().tolist() == [1.0, 1.0]
    assert seen[:2] == list(split(k, 2))
    crop, flip = RandomCrop(2), HorizontalFlip(0.5)
    x = normal((8, 1, 5, 5), 7)
    k1, k2 = split(k, 2)
    assert_bit_identical(compose(crop, flip)(k, x), flip(k2, crop(k1, x)))
    assert compose(crop, flip) == Compose((crop, flip))  # a plain record: equal parts, equal values


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: RandomCrop(pad=-1), r"RandomCrop: pad must be an int >= 0, got -1"),
        (lambda: RandomCrop(pad=1.5), r"RandomCrop: pad must be an int >= 0"),  # type: ignore[arg-type]
        (lambda: RandomCrop(pad=True), r"RandomCrop: pad must be an int >= 0"),
        (lambda: RandomTranslate(1, -2), r"RandomTranslate: dx must be an int >= 0"),
        (lambda: HorizontalFlip(p=1.5), r"HorizontalFlip: p must be in \[0, 1\], got 1.5"),
        (lambda: HorizontalFlip(p=-0.1), r"HorizontalFlip: p must be in \[0, 1\]"),
        (lambda: HorizontalFlip(p=float("nan")), r"HorizontalFlip: p must be in \[0, 1\]"),
        (lambda: RandomErasing(p=2.0), r"RandomErasing: p must be in \[0, 1\]"),
        (lambda: RandomErasing(scale=(0.5, 0.1)), r"RandomErasing: scale must be a pair \(low, high\) with 0 < low <= high <= 1.0"),
        (lambda: RandomErasing(scale=(0.0, 0.3)), r"RandomErasing: scale must be a pair"),
        (lambda: RandomErasing(scale=(0.1, 1.5)), r"RandomErasing: scale must be a pair"),
        (lambda: RandomErasing(scale=(0.1,)), r"RandomErasing: scale must be a pair"),
        (lambda: RandomErasing(ratio=(2.0, 1.0)), r"RandomErasing: ratio must be a pair \(low, high\) with 0 < low <= high,"),
        (lambda: RandomErasing(ratio=(True, 2.0)), r"RandomErasing: ratio must be a pair"),
        (lambda: RandomErasing(value=float("inf")), r"RandomErasing: value must be a finite number, got inf"),
        (lambda: compose(), r"Compose: need at least one transform"),
        (lambda: compose(RandomCrop(), 3), r"Compose: transform 1 must be callable"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_fail_in_one_line(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("t", TRANSFORMS, ids=IDS)
@pytest.mark.parametrize(
    "key,x,match",
    [
        (fnnet.key(0), np.zeros((2, 4, 4)), r"expected a batch of images \(N, C, H, W\), got shape \(2, 4, 4\)"),
        (fnnet.key(0), np.zeros((1, 1, 2, 4, 4)), r"expected a batch of images"),
        (fnnet.key(0), np.zeros((1, 1, 2, 2), dtype=object), r"expected a numeric array"),
        (0, np.zeros((1, 1, 2, 2)), r"key must be a fnnet.random.Key, got int"),
    ],
)
def test_bad_inputs_fail_in_one_line_naming_the_transform(t: Augmentation, key: Any, x: Array, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        t(key, x)
    assert str(info.value).startswith(type(t).__name__ + ":") and "\n" not in str(info.value)


# --- fit -------------------------------------------------------------------------------------------


def _images(n: int = 120, seed: int = 0) -> tuple[Array, Array]:
    """Three classes of 1x8x8 images: a bright 3x3 square in one of three places, plus noise."""
    g = fnnet.key(seed).generator()
    t = g.integers(0, 3, n)
    x = (0.3 * g.standard_normal((n, 1, 8, 8))).astype(np.float32)
    for c, (i, j) in enumerate([(1, 1), (1, 4), (4, 2)]):
        x[t == c, 0, i : i + 3, j : j + 3] += 1.0
    return x, t


def _model() -> fnnet.Serial:
    return fnnet.serial(fnnet.Conv2D(4, 3, pad=1), fnnet.ReLU(), fnnet.Flatten(), fnnet.Affine(3))


def _fit(key: Key, epochs: int = 2, **kw: Any) -> fnnet.FitResult:
    x, t = _images()
    return fit(_model(), fnnet.adam(0.01), (x, t), key=key, epochs=epochs, batch_size=30, progress="quiet", **kw)


class _Recorder:
    """An augmentation that remembers every key and batch it got, and shifts the pixels by a
    translation so that training sees other images."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.batches: list[Array] = []
        self.inner = RandomTranslate(2, 2)

    def __call__(self, key: Key, x: Array) -> Array:
        self.keys.append(key)
        y = self.inner(key, x)
        self.batches.append(y)
        return y


def test_fit_shows_augmented_batches_to_training_only() -> None:
    x, t = _images()
    key = fnnet.key(0)
    rec = _Recorder()
    res = _fit(key, augment=rec)
    plain = _fit(key)
    # one call per training step, keyed by the step counter; evaluation never called it
    assert len(rec.keys) == int(res.state.step) == 8
    assert rec.keys == [fold_in(split(key, 5)[4], s) for s in range(8)]
    assert all(b.shape == (30, 1, 8, 8) for b in rec.batches)
    # training saw other images than without augmentation ...
    assert res.history.step_loss != plain.history.step_loss
    assert not np.array_equal(res.state.params[0].w, plain.state.params[0].w)
    # ... but the epoch's train figures are those of the raw images under the final params
    raw = evaluate(_model(), res.state.params, x, t)
    assert res.history.epochs[-1]["train_loss"] == raw["loss"]
    assert res.history.epochs[-1]["train_acc"] == raw["acc"]


def test_fit_with_an_identity_augmentation_changes_nothing() -> None:
    key = fnnet.key(1)
    a, b = _fit(key, augment=RandomCrop(pad=0)), _fit(key)
    assert_bit_identical(a.state, b.state)
    assert a.history.step_loss == b.history.step_loss


def test_fit_with_augmentation_is_reproducible_and_the_seed_changes_the_images() -> None:
    recs = [_Recorder() for _ in range(3)]
    runs = [_fit(fnnet.key(s), augment=r) for s, r in zip((4, 4, 5), recs)]
    assert_bit_identical(runs[0].state, runs[1].state)
    assert runs[0].history.step_loss == runs[1].history.step_loss
    assert all(np.array_equal(a, b) for a, b in zip(recs[0].batches, recs[1].batches))
    assert not np.array_equal(recs[0].batches[0], recs[2].batches[0])


def test_resumed_fit_sees_the_same_augmentation_stream() -> None:
    aug = compose(RandomCrop(pad=1), HorizontalFlip())
    key = fnnet.key(2)
    full = _fit(key, epochs=3, augment=aug)
    part = _fit(key, epochs=1, augment=aug)
    rest = _fit(key, epochs=3, augment=aug, state=part.state, history=part.history)
    assert_bit_identical(full.state, rest.state)
    assert full.history.step_loss == rest.history.step_loss


def test_fit_augments_before_a_sharded_step() -> None:
    aug = RandomTranslate(1, 1)
    key = fnnet.key(3)
    a, b = _fit(key, augment=aug, shards=2, threads=2), _fit(key, augment=aug, shards=2, threads=2)
    assert_bit_identical(a.state, b.state)
    assert a.history.step_loss != _fit(key, shards=2, threads=2).history.step_loss


def test_fit_refuses_augmentation_of_flat_inputs_before_training() -> None:
    rec = _Recorder()
    x = np.zeros((10, 64), np.float32)
    with pytest.raises(ValueError, match=r"fit: augment needs image inputs x of shape \(N, C, H, W\), got shape \(10, 64\)"):
        fit(fnnet.Affine(3), fnnet.sgd(0.1), (x, np.zeros(10, np.int64)), key=fnnet.key(0), epochs=1, augment=rec)
    assert rec.keys == []
    with pytest.raises(ValueError, match=r"fit: augment must be callable"):
        _fit(fnnet.key(0), augment=3)


@pytest.mark.parametrize(
    "bad,got",
    [
        (lambda k, x: x[:, :, 1:], r"got \(30, 1, 7, 8\) float32"),
        (lambda k, x: x.astype(np.float64), r"got \(30, 1, 8, 8\) float64"),
        (lambda k, x: x.tolist(), r"got list"),
    ],
)
def test_fit_refuses_an_augmentation_that_changes_shape_or_dtype(bad: Any, got: str) -> None:
    with pytest.raises(ValueError, match=r"fit: augment must return an array of the batch's shape and dtype .*" + got):
        _fit(fnnet.key(0), augment=bad)
