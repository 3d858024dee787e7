"""Edge cases found by an audit of the non-recurrent layers, combinators, losses, metrics and exporters.

Each test pins a bug that was fixed: the one-line reproduction is in its docstring.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _helpers import call_unchanged, normal, onnx_session
from hypothesis import given, settings
from hypothesis import strategies as st

import fnnet
from fnnet.layers.base import TRAIN, Ctx, Layer, kind
from fnnet.typing import Array, Shape

# --- a batch of zero samples ---------------------------------------------------------------------

#: Layers that map a batch of N samples to N outputs, each with an input shape it fits.
EMPTY_BATCH: list[tuple[Layer, Shape]] = [
    (fnnet.Conv2D(2, 3, stride=2), (3, 5, 5)),  # channels-last patch rows, one GEMM
    (fnnet.Conv2D(2, 3, pad=1), (1, 4, 4)),  # one channel: K-major patches with a bias column
    (fnnet.Conv2D(4, 3, groups=2), (2, 5, 5)),
    (fnnet.Conv2D(4, 3, groups=4), (4, 5, 5)),  # depthwise
    (fnnet.Conv1D(2, 3), (3, 5)),
    (fnnet.MaxPool2D(2), (2, 4, 4)),  # windows that tile the input
    (fnnet.MaxPool2D(3, stride=2, pad=1), (2, 5, 5)),
    (fnnet.MaxPool1D(2), (2, 4)),
    (fnnet.AvgPool2D(2), (2, 4, 4)),
    (fnnet.GlobalAvgPool2D(), (2, 3, 3)),
    (fnnet.Affine(3), (4,)),
    (fnnet.Affine(3), (2, 2)),
    (fnnet.Flatten(), (2, 3)),
    (fnnet.Softmax(), (3,)),
    (fnnet.LayerNorm(), (3,)),
    (fnnet.GroupNorm(2), (4, 2, 2)),
    (fnnet.Dropout(0.5), (3,)),
    (fnnet.concat(fnnet.Affine(2), fnnet.Affine(3)), (4,)),
    (fnnet.residual(fnnet.Affine(4)), (4,)),
]


@pytest.mark.parametrize(("layer", "in_shape"), EMPTY_BATCH, ids=lambda v: kind(v) if isinstance(v, Layer) else str(v))
def test_a_batch_of_zero_samples_gives_zero_outputs_and_gradients(layer: Layer, in_shape: Shape) -> None:
    """``fnnet.Affine(3).apply(params, np.zeros((0, 4), np.float32))`` raised "cannot reshape array of
    size 0", Conv2D an IndexError and MaxPool2D(2) an AssertionError from its backward."""
    params, out = layer.init(fnnet.key(0), in_shape)
    x = np.zeros((0, *in_shape), np.float32)
    for ctx in (fnnet.EVAL, Ctx(train=True, key=fnnet.key(1))):
        y, _, cache = layer.forward(params, layer.init_state(in_shape), x, ctx)
        assert y.shape == (0, *out) and y.dtype == np.float32
        dx, grads = layer.backward(params, cache, np.zeros_like(y))
        assert dx.shape == x.shape
        for g in fnnet.tree.tree_leaves(grads):
            assert not np.any(g)  # no samples, no gradient


# --- in_shape (): one number per sample ---------------------------------------------------------------


def test_affine_on_one_number_per_sample_runs_as_its_summary_says() -> None:
    """``summary(serial(Affine(3)), ())`` said ``(3,)`` but ``apply`` on ``x`` of shape ``(N,)``
    refused it ("expected input (N, 1)"); Flatten and the ONNX graph already took ``(N,)`` as one feature."""
    model = fnnet.serial(fnnet.Affine(3))
    params, out = model.init(fnnet.key(0), ())
    x = np.arange(5, dtype=np.float32)
    y, _, cache = model.forward(params, None, x)
    assert out == fnnet.summary(model, ()).out_shape == (3,) and y.shape == (5, 3)
    np.testing.assert_allclose(y, x[:, None] * params[0].w + params[0].b, rtol=1e-6)
    dx, _ = model.backward(params, cache, np.ones_like(y))
    assert dx.shape == (5,)
    with pytest.raises(ValueError, match=r"^Affine: expected input \(N, 4\) or \(N, \.\.\.\) with 4 features per sample, got shape \(4,\)$"):
        fnnet.Affine(3).apply(fnnet.Affine(3).init(fnnet.key(0), (4,))[0], np.ones(4, np.float32))  # a forgotten batch axis


def test_softmax_refuses_to_normalise_across_the_batch() -> None:
    """``Softmax().apply(None, np.array([1.0, 2.0, 3.0]))`` normalised the three samples against each
    other (the last axis of ``(N,)`` is the batch axis), and ``out_shape(())`` accepted it."""
    with pytest.raises(ValueError, match=r"^Softmax: expected input \(N, \.\.\., K\) of rank >= 2, got shape \(3,\)$"):
        fnnet.Softmax().apply(None, np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"^Softmax: expected in_shape \(\.\.\., K\) with a class axis, got \(\)"):
        fnnet.Softmax().out_shape(())
    with pytest.raises(ValueError, match=r"^layer 1 \(Softmax\): Softmax: expected in_shape"):
        fnnet.summary(fnnet.serial(fnnet.ReLU(), fnnet.Softmax()), ())
    np.testing.assert_allclose(fnnet.Softmax().apply(None, np.zeros((2, 4))), 0.25)


# --- Dropout at rates that round to 1 --------------------------------------------------------------


@pytest.mark.parametrize(("rate", "dtype"), [(1 - 1e-9, np.float32), (np.nextafter(1.0, 0.0), np.float32), (0.99999, np.float16)])
def test_dropout_rate_near_one_gives_no_nan(rate: float, dtype: Any) -> None:
    """``Dropout(1 - 1e-9)`` in training on float32 returned NaN everywhere: the rate rounded to 1.0
    in float32, so the scale was 1 / 0 and every dropped unit 0 * inf."""
    x = np.ones((200, 100), dtype)
    layer = fnnet.Dropout(rate)
    with np.errstate(all="raise"):
        y, _, cache = layer.forward(None, None, x, Ctx(train=True, key=fnnet.key(0)))
        dx, _ = layer.backward(None, cache, np.ones_like(y))
    assert y.dtype == dtype and not np.isnan(y).any() and not np.isnan(dx).any()
    dropped = y == 0
    assert dropped.mean() > 0.999  # nearly every unit is dropped, and dropped units are exactly 0
    assert np.array_equal(dx == 0, dropped)


def test_dropout_scale_is_unchanged_for_ordinary_rates() -> None:
    """The fix above leaves the scale of every rate that float32 can tell from 1 bit for bit alone."""
    x = np.ones((50, 40), np.float32)
    for rate in (0.1, 0.5, 0.8, 0.999):
        y, _, _ = fnnet.Dropout(rate).forward(None, None, x, Ctx(train=True, key=fnnet.key(3)))
        one = np.float32(1)
        assert set(np.unique(y).tolist()) == {0.0, float(one / (one - np.float32(rate)))}


# --- params that do not fit the layer ----------------------------------------------------------------


def _params_of(layer: Layer, in_shape: Shape) -> Any:
    return layer.init(fnnet.key(0), in_shape)[0]


#: (layer, input, params of another layer, the start of the one-line error).
FOREIGN_PARAMS: list[tuple[Layer, Array, Any, str]] = [
    # silently gave (N, 5) although out_shape says (3,)
    (fnnet.Affine(3), np.ones((2, 4), np.float32), _params_of(fnnet.Affine(5), (4,)),
     r"^Affine: expected params w of shape \(in, 3\) and b of shape \(3,\), got w \(4, 5\) and b \(5,\)$"),
    # silently broadcast a bias of one entry
    (fnnet.Affine(3), np.ones((2, 4), np.float32), fnnet.AffineParams(np.ones((4, 3), np.float32), np.ones(1, np.float32)),
     r"^Affine: expected params .* got w \(4, 3\) and b \(1,\)$"),
    # silently gave 8 channels although out_shape says 4
    (fnnet.Conv2D(4, 3), np.ones((1, 2, 5, 5), np.float32), _params_of(fnnet.Conv2D(8, 3), (2, 5, 5)),
     r"^Conv2D: expected params w of shape \(FN, C, 3, 3\) and b of shape \(FN,\) with FN = 4, got w \(8, 2, 3, 3\)"),
    (fnnet.Conv1D(4, 3), np.ones((1, 2, 5), np.float32), _params_of(fnnet.Conv1D(8, 3), (2, 5)),
     r"^Conv1D: expected params w of shape \(FN, C, 3\) and b of shape \(FN,\) with FN = 4, got w \(8, 2, 3\)"),
    # silently broadcast a beta of one entry (LayerNorm) or failed in a reshape (BatchNorm, GroupNorm)
    (fnnet.LayerNorm(), np.ones((2, 4), np.float32), fnnet.LayerNormParams(np.ones(4, np.float32), np.zeros(1, np.float32)),
     r"^LayerNorm: expected params gamma and beta of one shape, got gamma \(4,\) and beta \(1,\)$"),
    (fnnet.BatchNorm(), np.ones((2, 4), np.float32), fnnet.BatchNormParams(np.ones(4, np.float32), np.zeros(1, np.float32)),
     r"^BatchNorm: expected params gamma and beta of one shape \(C,\), got gamma \(4,\) and beta \(1,\)$"),
    (fnnet.GroupNorm(2), np.ones((2, 4), np.float32), fnnet.GroupNormParams(np.ones(4, np.float32), np.zeros(1, np.float32)),
     r"^GroupNorm: expected params gamma and beta of one shape \(C,\), got gamma \(4,\) and beta \(1,\)$"),
    # AttributeError: 'NoneType' object has no attribute 'w' (and no path inside a pipeline)
    (fnnet.Affine(3), np.ones((2, 4), np.float32), None,
     r"^Affine: expected params with arrays w, b \(as Affine.init makes them\), got NoneType$"),
    (fnnet.Conv2D(4, 3), np.ones((1, 2, 5, 5), np.float32), (np.ones((4, 2, 3, 3)), np.ones(4)),
     r"^Conv2D: expected params with arrays w, b \(as Conv2D.init makes them\), got tuple$"),
    (fnnet.BatchNorm(), np.ones((2, 4), np.float32), _params_of(fnnet.Affine(4), (4,)),
     r"^BatchNorm: expected params with arrays gamma, beta \(as BatchNorm.init makes them\), got AffineParams$"),
    (fnnet.LayerNorm(), np.ones((2, 4), np.float32), None, r"^LayerNorm: expected params with arrays gamma, beta"),
    (fnnet.GroupNorm(2), np.ones((2, 4), np.float32), None, r"^GroupNorm: expected params with arrays gamma, beta"),
]


@pytest.mark.parametrize(("layer", "x", "params", "message"), FOREIGN_PARAMS, ids=lambda v: kind(v) if isinstance(v, Layer) else "")
def test_params_of_another_layer_fail_in_one_line(layer: Layer, x: Array, params: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        layer.forward(params, None, x, TRAIN)


def test_missing_params_deep_in_a_pipeline_name_the_path() -> None:
    """``model.apply((p0, (p1, None)), x)`` raised a bare AttributeError with no path to the layer."""
    model = fnnet.serial(fnnet.Conv2D(4, 3), fnnet.serial(fnnet.ReLU(), fnnet.concat(fnnet.Conv2D(2, 1), fnnet.Conv2D(2, 1))))
    params, _ = model.init(fnnet.key(0), (1, 6, 6))
    broken = (params[0], (None, (params[1][1][0], None)))
    with pytest.raises(ValueError, match=r"^layer 1 / layer 1 / branch 1 \(Conv2D\): Conv2D: expected params with arrays w, b"):
        model.apply(broken, np.zeros((1, 1, 6, 6), np.float32))


# --- exporters ------------------------------------------------------------------------------------


def test_torch_state_dict_refuses_params_with_a_layer_missing() -> None:
    """``to_torch_state_dict(serial(Affine(2), BatchNorm()), params[:1], state)`` returned layer 0's
    keys alone: zip dropped the BatchNorm, and the state dict silently lacked its five keys."""
    model = fnnet.serial(fnnet.Affine(2), fnnet.BatchNorm())
    params, _ = model.init(fnnet.key(0), (3,))
    _, state, _ = model.forward(params, None, normal((4, 3), 1, dtype=np.float32), TRAIN)
    with pytest.raises(fnnet.export.ExportError, match=r"^model \(Serial\): expected params and state as tuples of 2 entries$"):
        fnnet.export.to_torch_state_dict(model, params[:1], state)
    block = fnnet.serial(fnnet.ReLU(), fnnet.residual(fnnet.Affine(3), fnnet.Affine(3)))
    bparams, _ = block.init(fnnet.key(0), (3,))
    with pytest.raises(fnnet.export.ExportError, match=r"^layer 1 \(Residual\): expected params and state as tuples of 2"):
        fnnet.export.to_torch_state_dict(block, (None, bparams[1][:1]))
    sd = call_unchanged(lambda p, s: fnnet.export.to_torch_state_dict(model, p, s), params, state, readonly=True)
    assert sorted(sd) == ["0.bias", "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var", "1.weight"]


#: Odd geometries: strides past the kernel, pads past it, kernels as large as the (padded) input,
#: 1x1 images, one feature, and containers whose output is their input.
ODD_SHAPES: list[tuple[Layer, Shape]] = [
    (fnnet.Conv2D(3, 1, stride=3, pad=2), (2, 5, 5)),
    (fnnet.Conv2D(3, (5, 4)), (2, 5, 4)),
    (fnnet.Conv2D(3, 3, pad=4), (2, 1, 1)),
    (fnnet.Conv2D(6, 2, stride=3, pad=3, groups=3), (3, 4, 5)),
    (fnnet.Conv1D(3, 1, stride=5, pad=3), (2, 7)),
    (fnnet.MaxPool2D(2, stride=3), (2, 7, 7)),
    (fnnet.MaxPool2D(3, stride=1, pad=2), (2, 1, 1)),
    (fnnet.AvgPool2D(2, stride=3, pad=1), (2, 6, 6)),
    (fnnet.AvgPool1D(4, stride=3, pad=3), (2, 6)),
    (fnnet.GlobalAvgPool2D(), (3, 1, 1)),
    (fnnet.Softmax(), (2, 3, 4)),
    (fnnet.LayerNorm(), (2, 3)),
    (fnnet.GroupNorm(3), (3,)),
    (fnnet.BatchNorm(), (3, 1, 1)),
    (fnnet.Affine(2), (1, 1, 1)),
    (fnnet.concat(fnnet.Conv2D(2, 1), fnnet.Identity(), axis=1), (2, 3, 3)),
    (fnnet.serial(fnnet.Dropout(), fnnet.Identity(), fnnet.Dropout()), (3,)),
    (fnnet.concat(fnnet.Dropout(), fnnet.Dropout()), (3,)),
]


@pytest.mark.parametrize(("layer", "in_shape"), ODD_SHAPES, ids=lambda v: kind(v) if isinstance(v, Layer) else str(v))
def test_onnx_export_matches_apply_on_odd_shapes(layer: Layer, in_shape: Shape) -> None:
    pytest.importorskip("onnxruntime")
    params, _ = layer.init(fnnet.key(1), in_shape)
    params = fnnet.tree.tree_map(lambda a: (a + 0.3 * normal(a.shape, 2)).astype(a.dtype), params)
    state = layer.init_state(in_shape)
    if isinstance(layer, fnnet.BatchNorm):
        _, state, _ = layer.forward(params, state, normal((4, *in_shape), 3, dtype=np.float32), TRAIN)
    session = onnx_session(fnnet.export.to_onnx(layer, params, in_shape, state=state))
    for n in (1, 3):
        x = (4 * normal((n, *in_shape), 4, n)).astype(np.float32)
        want = layer.apply(params, x, state=state)
        got = session.run(None, {"input": x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_an_unexportable_layer_deep_inside_is_refused_in_one_line() -> None:
    pytest.importorskip("onnx")

    class Square(fnnet.Identity):  # a kind of one's own: exact types only, so no exporter
        pass

    model = fnnet.serial(fnnet.Affine(3), fnnet.residual(fnnet.serial(fnnet.ReLU(), fnnet.concat(Square(), fnnet.Tanh()), fnnet.Affine(3))))
    params, _ = model.init(fnnet.key(0), (3,))
    with pytest.raises(fnnet.export.ExportError) as e:
        fnnet.export.to_onnx(model, params, (3,))
    assert str(e.value) == "layer 1 / inner / layer 1 / branch 0 (Square): cannot be exported to ONNX"


# --- losses ------------------------------------------------------------------------------------------


def test_targets_out_of_range_fail_in_one_line() -> None:
    """NaN targets passed the [0, 1] check of the binary losses (``nan < 0`` is False) and gave a NaN
    loss; soft targets outside [0, 1] were taken silently; ``softmax_cross_entropy(np.zeros((2, 0)),
    labels)`` said "labels must lie in [0, 0)" instead of naming the missing classes."""
    z = np.zeros((3, 1))
    for loss in (fnnet.losses.binary_cross_entropy_with_logits, fnnet.losses.binary_cross_entropy):
        with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\], got values in \[nan, nan\]$"):
            loss(z + 0.5, np.array([0.0, 1.0, np.nan]))
    y = normal((2, 3), 1)
    for loss2 in (fnnet.losses.softmax_cross_entropy, fnnet.losses.cross_entropy, fnnet.metrics.accuracy):
        for bad in (np.array([[0.0, 1.0, np.nan], [1.0, 0.0, 0.0]]), np.array([[2.0, -1.0, 0.0], [1.0, 0.0, 0.0]])):
            with pytest.raises(ValueError, match=r": one-hot / probability targets must lie in \[0, 1\], got values in "):
                loss2(np.abs(y), bad)
        with pytest.raises(ValueError, match=r": expected at least one class on the last axis, got y of shape \(2, 0\)$"):
            loss2(np.zeros((2, 0)), np.zeros(2, np.int64))
    # soft targets inside [0, 1] whose rows do not sum to 1 stay allowed, as documented
    value, grad = fnnet.losses.softmax_cross_entropy(y, np.full((2, 3), 0.5))
    assert np.isfinite(value) and np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_extreme_logits_give_finite_losses_and_exact_gradients(dtype: Any) -> None:
    big = 1e4 if dtype != np.float16 else 3e4  # 3e4 - (-3e4) would overflow float16 itself
    logits = np.array([[big, -big, 0.0], [-big, -big, -big]], dtype)
    value, grad = fnnet.losses.softmax_cross_entropy(logits, np.array([1, 2]))
    assert np.isfinite(value) and value == pytest.approx((2 * big + np.log(3)) / 2, rel=1e-3)
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [1 / 6, 1 / 6, -1 / 3]], atol=2e-3)
    z = np.array([big, -big, 0.0], dtype)
    value, grad = fnnet.losses.binary_cross_entropy_with_logits(z, np.array([0, 1, 1]))
    assert value == pytest.approx((2 * big + np.log(2)) / 3, rel=1e-3)
    np.testing.assert_allclose(grad, [1 / 3, -1 / 3, -1 / 6], atol=2e-3)
    assert grad.dtype == dtype


def test_float16_loss_values_do_not_overflow_when_the_mean_fits() -> None:
    """``mean_squared_error(np.full(1000, 100, np.float16), np.zeros(1000))`` was inf: the sum of
    squares (1e7) was taken in float16, whose largest number is 65504; so was every loss's sum."""
    y = np.full((1000, 1), 100, np.float16)
    assert fnnet.losses.mean_squared_error(y, np.zeros(1000))[0] == pytest.approx(1e4)
    assert fnnet.losses.sum_squared_error(y[:10], np.zeros(10))[0] == pytest.approx(5e4)
    assert fnnet.losses.huber(y, np.zeros(1000))[0] == pytest.approx(99.5)
    z = np.full(100_000, 10, np.float16)
    assert fnnet.losses.binary_cross_entropy_with_logits(z, np.zeros(100_000))[0] == pytest.approx(10.0, rel=1e-3)
    logits = np.zeros((50_000, 2), np.float16)
    logits[:, 0] = 20
    value, _ = fnnet.losses.softmax_cross_entropy(logits, np.ones(50_000, np.int64))
    assert value == pytest.approx(20.0, rel=1e-3)
    value, _ = fnnet.losses.time_softmax_cross_entropy(logits.reshape(100, 500, 2), np.ones((100, 500), np.int64))
    assert value == pytest.approx(20.0, rel=1e-3)


# --- metrics and models ---------------------------------------------------------------------------


def test_confusion_matrix_refuses_a_fractional_class_count() -> None:
    """``confusion_matrix(y, t, num_classes=2.5)`` silently used 2 classes."""
    y, t = np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    for bad in (2.5, True, "3"):
        with pytest.raises(ValueError, match=r"^confusion_matrix: num_classes must be an int or None, got "):
            fnnet.metrics.confusion_matrix(y, t, num_classes=bad)  # type: ignore[arg-type]
    three: Any = np.int64(3)  # a NumPy int is an int here
    assert fnnet.metrics.confusion_matrix(y, t, num_classes=three).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_every_metric_refuses_an_empty_set_in_one_line() -> None:
    empty2, empty1, labels = np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.int64)
    cases: list[tuple[Any, Array, Array]] = [
        (fnnet.metrics.accuracy, empty2, labels), (fnnet.metrics.confusion_matrix, empty2, labels),
        (fnnet.metrics.binary_accuracy, empty1, labels), (fnnet.metrics.confusion_matrix, empty1, labels),
        (fnnet.metrics.mae, empty1, empty1), (fnnet.metrics.rmse, empty1, empty1), (fnnet.metrics.r2, empty1, empty1),
    ]
    for metric, y, t in cases:
        with pytest.raises(ValueError, match=r"^\w+: expected at least one sample"):
            metric(y, t)


def test_resnet_docstring_counts_its_convolutions() -> None:
    """The docstring said 13 convolutions "plus two projections" inside the 13; there are 15."""
    s = fnnet.summary(fnnet.models.resnet(), (1, 28, 28))
    assert sum(row.kind == "Conv2D" for _, row in s.walk()) == 15
    assert s.total_params == 175_530
    assert "15 convolutions" in (fnnet.models.resnet.__doc__ or "")


# --- purity: functions and layer variants tests/test_purity.py does not reach --------------------------


@pytest.mark.parametrize("readonly", [False, True], ids=["snapshot", "readonly"])
def test_losses_and_metrics_missing_from_the_purity_tests_write_into_nothing(readonly: bool) -> None:
    y, z = normal((5, 3), 1), normal((5, 1), 2)
    labels, bits = np.array([0, 1, 2, 1, 0]), np.array([0, 1, 1, 0, 1])
    p = fnnet.functions.expit(normal((5,), 3))
    call_unchanged(fnnet.losses.binary_cross_entropy, p, bits.astype(np.float64), readonly=readonly)
    call_unchanged(fnnet.losses.huber, y, 2 * y, readonly=readonly)
    call_unchanged(fnnet.losses.huber, z, bits, readonly=readonly)
    call_unchanged(fnnet.losses.mean_squared_error, z, bits, readonly=readonly)
    for metric in (fnnet.metrics.mae, fnnet.metrics.rmse, fnnet.metrics.r2):
        call_unchanged(metric, z, bits.astype(np.float64), readonly=readonly)
    call_unchanged(fnnet.metrics.binary_accuracy, z, bits, readonly=readonly)
    call_unchanged(fnnet.metrics.confusion_matrix, y, labels, readonly=readonly)
    call_unchanged(fnnet.metrics.confusion_matrix, z, bits, readonly=readonly)
    image = normal((2, 3, 5, 4), 5)
    col = call_unchanged(lambda xx: fnnet.layers.im2col(xx, 2, 3, stride=(2, 1), pad=1), image, readonly=readonly)
    call_unchanged(lambda cc: fnnet.layers.col2im(cc, image.shape, 2, 3, stride=(2, 1), pad=1), col, readonly=readonly)


def _channels_last(x: Array) -> Array:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("readonly", [False, True], ids=["snapshot", "readonly"])
def test_depthwise_multiplier_and_channels_last_batchnorm_write_into_nothing(readonly: bool) -> None:
    """Variants the purity tests miss: a depthwise convolution with two filters per channel (its own
    kernel), and BatchNorm's rows kernels on channels-last inputs in training and evaluation."""
    x = _channels_last(normal((2, 4, 5, 5), 4, dtype=np.float32))
    conv = fnnet.Conv2D(8, 3, pad=1, stride=2, groups=4)
    params, _ = conv.init(fnnet.key(0), (4, 5, 5))
    y, _, cache = call_unchanged(lambda pp, xx: conv.forward(pp, None, xx), params, x, readonly=readonly)
    call_unchanged(conv.backward, params, cache, _channels_last(np.ones_like(y)), readonly=readonly)
    bn = fnnet.BatchNorm()
    bparams, _ = bn.init(fnnet.key(0), (4, 5, 5))
    state = bn.init_state((4, 5, 5))
    for ctx in (TRAIN, fnnet.EVAL):
        yb, state, bcache = call_unchanged(lambda pp, s, xx: bn.forward(pp, s, xx, ctx), bparams, state, x, readonly=readonly)
        call_unchanged(bn.backward, bparams, bcache, _channels_last(np.ones_like(yb)), readonly=readonly)


# --- out_shape, summary and forward agree -------------------------------------------------------------


@st.composite
def image_layers(draw: st.DrawFn) -> Layer:
    """One small image layer with random hyperparameters (strides past the kernel, pads past it)."""
    pick = draw(st.sampled_from(["conv", "grouped", "max", "avg", "norm", "concat"]))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    if pick == "conv":
        return fnnet.Conv2D(draw(st.integers(1, 3)), k, stride=stride, pad=(draw(st.integers(0, 4)), draw(st.integers(0, 4))))
    if pick == "grouped":  # channels are kept a multiple of 2 by the pipeline below
        return fnnet.Conv2D(2 * draw(st.integers(1, 2)), k, stride=stride, pad=draw(st.integers(0, 2)), groups=2)
    pad = (draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)))
    if pick == "max":
        return fnnet.MaxPool2D(k, draw(st.sampled_from([None, stride])), pad)
    if pick == "avg":
        return fnnet.AvgPool2D(k, draw(st.sampled_from([None, stride])), pad)
    if pick == "norm":
        return draw(st.sampled_from([fnnet.GroupNorm(2), fnnet.LayerNorm(), fnnet.ReLU()]))  # BatchNorm: test_norm
    return fnnet.concat(fnnet.Conv2D(2, 1, stride=stride), fnnet.MaxPool2D(k, stride, pad))


@settings(max_examples=40, deadline=None)
@given(layers=st.lists(image_layers(), min_size=1, max_size=3), h=st.integers(1, 9), w=st.integers(1, 9),
       n=st.integers(1, 3))  # fmt: skip
def test_out_shape_summary_and_forward_agree(layers: list[Layer], h: int, w: int, n: int) -> None:
    model = fnnet.serial(fnnet.Conv2D(2, 1), *layers)  # two channels: every layer above fits them
    in_shape = (3, h, w)
    try:
        out = model.out_shape(in_shape)
    except ValueError as e:  # a window that does not fit, branches that disagree: init and summary refuse alike
        for refuse in (lambda: model.init(fnnet.key(0), in_shape), lambda: fnnet.summary(model, in_shape)):
            with pytest.raises(ValueError) as again:
                refuse()
            assert str(again.value) == str(e)
        return
    s = fnnet.summary(model, in_shape)
    params, init_out = model.init(fnnet.key(0), in_shape)
    assert s.out_shape == init_out == out
    assert s.total_params == fnnet.tree.tree_size(params)
    x = normal((n, *in_shape), h, w, n, dtype=np.float32)
    y, state, cache = model.forward(params, model.init_state(in_shape), x, TRAIN)
    assert y.shape == (n, *out)
    dx, _ = model.backward(params, cache, np.ones_like(y))
    assert dx.shape == x.shape
    a = x
    for row, layer, p, st_ in zip(s.rows, model.layers, params, state):  # each row's shape is what the layer gives
        a = layer.apply(p, a, state=st_)
        assert a.shape == (n, *row.out_shape)


def test_apply_refuses_a_list_in_one_line() -> None:
    layer = fnnet.serial(fnnet.Affine(2))
    params, _ = layer.init(fnnet.key(0), (3,))
    with pytest.raises(ValueError, match=r"^Serial\.apply: expected x as a NumPy array, got list$"):
        layer.apply(params, [[1.0, 2.0, 3.0]])  # type: ignore[arg-type]
    assert layer.apply(params, np.ones((1, 3), np.float32)).shape == (1, 2)


def test_deep_convnet_refuses_an_empty_block() -> None:
    """An empty block silently added nothing (not even its pooling)."""
    bads: list[Any] = [[[]], [[(16, 1)], []], "x"]
    for bad in bads:
        with pytest.raises(ValueError, match=r"^deep_convnet: blocks must be a sequence of non-empty sequences"):
            fnnet.models.deep_convnet(blocks=bad)
    assert fnnet.models.deep_convnet(blocks=[[(4, 1)]]).out_shape((1, 28, 28)) == (10,)
