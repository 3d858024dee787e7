"""A reader past the book: networks of one's own built from the combinators, broken on purpose.

Each test here once failed: a backward pass given the cache of another model's forward, an
example's output line, a summary of a shape with a size below one, a command-line run that
crashed on a batch of one, NumPy integers as sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from _examples import SINGLE_THREADED, run_example
from _helpers import write_image_set

import fnnet
from fnnet.cli import main
from fnnet.layers.combinators import PathError


def _cache(model: fnnet.Layer, in_shape: tuple[int, ...]) -> Any:
    params, _ = model.init(fnnet.key(0), in_shape)
    x = fnnet.key(1).generator().normal(size=(3, *in_shape)).astype(np.float32)
    return model.forward(params, model.init_state(in_shape), x)[2]


def test_serial_backward_refuses_the_cache_of_another_pipeline() -> None:
    model = fnnet.serial(fnnet.Affine(3), fnnet.ReLU(), fnnet.Affine(2))
    params, _ = model.init(fnnet.key(0), (5,))
    dout = np.ones((3, 2), np.float32)
    shorter = _cache(fnnet.serial(fnnet.Affine(3), fnnet.Affine(2)), (5,))
    with pytest.raises(ValueError, match=r"^Serial\.backward: expected the cache of this layer's forward "
                       r"\(SerialCache of 3 entries, layers Affine, ReLU, Affine\), got one of 2 entries$"):  # fmt: skip
        model.backward(params, shorter, dout)
    # as long, but other layers: this used to fail inside Affine.backward with an AttributeError
    other = _cache(fnnet.serial(fnnet.Conv2D(3, 1), fnnet.Flatten(), fnnet.Affine(2)), (1, 1, 1))
    with pytest.raises(ValueError) as err:
        model.backward(params, other, dout)
    assert str(err.value) == (
        "Serial.backward: expected the cache of this layer's forward (SerialCache of 3 entries, layers Affine, ReLU, "
        "Affine), got the cache of another Serial's forward (layers Conv2D, Flatten, Affine)"
    )
    rebuilt = fnnet.serial(fnnet.Affine(3), fnnet.ReLU(), fnnet.Affine(2))  # an equal model is the same model
    assert rebuilt.backward(params, _cache(model, (5,)), dout)[0].shape == (3, 5)
    nothing: Any = None
    with pytest.raises(ValueError, match=r"^Serial\.backward: .*got NoneType$"):
        model.backward(params, nothing, dout)


def test_fan_out_backward_refuses_a_cache_not_its_own() -> None:
    inception = fnnet.concat(fnnet.Conv2D(2, 1), fnnet.serial(fnnet.Conv2D(2, 1), fnnet.ReLU()))
    params, _ = inception.init(fnnet.key(0), (3, 4, 4))
    dout = np.ones((3, 4, 4, 4), np.float32)
    assert inception.backward(params, _cache(inception, (3, 4, 4)), dout)[0].shape == (3, 3, 4, 4)
    with pytest.raises(ValueError) as err:  # used to be AttributeError: 'SerialCache' object has no attribute 'y_shape'
        inception.backward(params, _cache(fnnet.serial(fnnet.Conv2D(2, 1), fnnet.Conv2D(2, 1)), (3, 4, 4)), dout)
    assert str(err.value) == (
        "Concat.backward: expected the cache of this layer's forward (FanOutCache of 2 entries, parts Conv2D, Serial), "
        "got SerialCache"
    )
    summed = fnnet.add_branches(fnnet.Conv2D(4, 1), fnnet.Conv2D(4, 3, pad=1))
    with pytest.raises(ValueError, match=r"got the cache of another AddBranches's forward \(parts Conv2D, Conv2D\)$"):
        fnnet.add_branches(fnnet.Conv2D(4, 1), fnnet.Conv2D(4, 1)).backward(params, _cache(summed, (3, 4, 4)), dout)
    model = fnnet.serial(fnnet.Conv2D(3, 3, pad=1), inception)
    with pytest.raises(PathError, match=r"^layer 1 \(Concat\): Concat\.backward: .* got NoneType$"):
        model.backward(model.init(fnnet.key(0), (1, 4, 4))[0], _cache(model, (1, 4, 4))._replace(caches=(None, None)), dout)
    block = fnnet.residual(fnnet.Affine(4))
    bp, _ = block.init(fnnet.key(0), (4,))
    pair: Any = (None, None)
    with pytest.raises(ValueError, match=r"^Residual\.backward: .*\(FanOutCache of 2 entries, parts Affine, identity\), got tuple$"):
        block.backward(bp, pair, np.ones((3, 4), np.float32))


def test_export_example_says_one_epoch(tmp_path: Path) -> None:
    lines = run_example(
        "export_onnx.py", "--train", "--epochs", "1", "--n", "100", "--out", str(tmp_path / "m.onnx"),
        cwd=tmp_path, env=SINGLE_THREADED,
    )  # fmt: skip
    assert lines[0] == "trained an MLP (100, 50) with BatchNorm for 1 epoch on mnist-small"


@pytest.mark.parametrize("in_shape", [(-1, 28, 28), (0, 8, 8)])
def test_summary_refuses_a_size_below_one_in_one_line(in_shape: tuple[int, ...]) -> None:
    # (-1, 28, 28) used to surface as "layer 0 (Conv2D): HeNormal: fans must be >= 0, got -9", and
    # (0, 8, 8) as a table of a network without channels
    model = fnnet.models.resnet((4, 8), blocks=1)
    with pytest.raises(ValueError) as err:
        fnnet.summary(model, in_shape)
    assert str(err.value) == (
        f"summary: in_shape must be one sample's shape, sizes >= 1 without the batch axis, got {in_shape}"
    )
    assert fnnet.summary(model, (1, 8, 8)).out_shape == (10,)


def test_cli_refuses_a_batch_of_one_the_resnet_cannot_train_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1x1 images: BatchNorm sees one value per channel in a batch of one sample, which used to end
    # the run mid-epoch with a traceback (exit 1, "a bug in fnnet")
    (tmp_path / "dots").mkdir()
    data = write_image_set(tmp_path / "dots", 3, 2, 1)
    out = tmp_path / "run"
    args = ["train", "--model", "resnet", "--data", str(data), "--epochs", "1", "--quiet", "--threads", "1"]
    assert main([*args, "--batch-size", "2", "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "fnnet: --model resnet cannot train on a batch of one 1x1x1 sample, and the last batch of each epoch holds "
        "one (3 % 2); choose another --batch-size: layer 1 (BatchNorm): BatchNorm: training needs more than one "
        "value per channel to compute batch statistics, got input shape (1, 16, 1, 1)"
    ]
    assert not out.exists()
    assert main([*args, "--batch-size", "1"]) == 3
    assert "--batch-size 1 gives only such batches; choose a larger one" in capsys.readouterr().err
    assert main([*args, "--batch-size", "3"]) == 0
    assert capsys.readouterr().out.startswith("test accuracy ")


def test_numpy_int_hyperparameters_give_int_shapes_that_export() -> None:
    # sizes drawn by NumPy (a search, np.arange) used to stay np.int64 in the record, in every
    # shape computed from them, and in ONNX's graph: "Invalid item in shape: 4"
    i: Any = np.int64  # what a search or np.arange hands over, whatever the annotations say
    model = fnnet.serial(
        fnnet.Conv1D(i(4), i(3), stride=i(1), pad=i(1), groups=i(2)), fnnet.GroupNorm(i(2)), fnnet.ReLU(),
        fnnet.concat(fnnet.MaxPool1D(i(2)), fnnet.AvgPool1D(i(2), stride=i(2), pad=i(0)), axis=i(0)),
        fnnet.Flatten(),
    )  # fmt: skip
    assert model == fnnet.serial(
        fnnet.Conv1D(4, 3, stride=1, pad=1, groups=2), fnnet.GroupNorm(2), fnnet.ReLU(),
        fnnet.concat(fnnet.MaxPool1D(2), fnnet.AvgPool1D(2, stride=2, pad=0)), fnnet.Flatten(),
    )  # fmt: skip
    assert "np.int" not in repr(model)
    conv = fnnet.Conv2D(i(3), (i(3), i(1)), stride=[i(2), i(1)], groups=i(1))
    assert (conv.out_channels, conv.kernel, conv.stride, conv.groups) == (3, (3, 1), (2, 1), 1)
    assert all(type(d) is int for d in conv.out_shape((2, 7, 5)))
    out = model.out_shape((2, 8))
    assert out == (32,) and all(type(d) is int for d in out)
    built = [fnnet.models.two_layer_net(i(5), i(3)), fnnet.models.mlp([i(5)], output_size=i(3))]
    assert all(type(d) is int for m in built for d in m.out_shape((784,)))
    assert type(fnnet.Affine(i(3)).out) is int and fnnet.Affine(i(3)) == fnnet.Affine(3)
    pytest.importorskip("onnx")
    params, _ = model.init(fnnet.key(0), (2, 8))
    graph = fnnet.export.to_onnx(model, params, (2, 8))
    dims = graph.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1:] == [32]


def test_a_rebuilt_pipeline_of_array_holding_layers_takes_its_twins_cache() -> None:
    @attrs.frozen
    class Scaled(fnnet.Identity):  # a layer of one's own whose record holds an array: == cannot compare it
        scale: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=np.array_equal), factory=lambda: np.ones(2))

    @attrs.frozen
    class Opaque(fnnet.Identity):
        scale: np.ndarray = attrs.field(factory=lambda: np.ones(2))  # "truth value ... is ambiguous"

    for layer in (Scaled, Opaque):
        x = np.ones((3, 2), np.float32)
        _, _, cache = fnnet.serial(layer(), fnnet.ReLU()).forward((None, None), None, x)
        dx, _ = fnnet.serial(layer(), fnnet.ReLU()).backward((None, None), cache, x)
        assert dx.shape == (3, 2)
