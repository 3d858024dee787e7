"""The book's trained CNN weights (``weights/*.npz``) as fnnet parameters, shared by the chapter 7-8 examples.

The archives hold the book's arrays under its names (``W1``, ``b1``, ``W2``, ...), convolution
weights ``(FN, C, FH, FW)`` and affine weights ``(in, out)``, in float64. :func:`book_params` hands
the pairs ``(W1, b1), (W2, b2), ...`` in order to the layers that have parameters (Conv2D,
Affine) and casts them to float32, fnnet's default dtype; with float32 images (pixels / 255) the
networks score the book's own figures.

The book's Dropout is not inverted: it multiplies by ``1 - rate`` in evaluation where fnnet's
Dropout is the identity. :func:`book_params` therefore multiplies the weights (not the bias) of
the first parametrised layer after each Dropout by ``1 - rate``. A Dropout after the last layer
only scales the book's logits by ``1 - rate``, which changes no prediction, so nothing absorbs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fnnet import models
from fnnet.typing import Array
from fnnet.datasets import load_mnist_test
from fnnet.layers.combinators import Serial
from fnnet.layers.conv import Conv2D, ConvParams
from fnnet.layers.core import Affine, AffineParams
from fnnet.layers.dropout import Dropout
from fnnet.random import key as make_key
from fnnet.tree import tree_leaves, tree_structure

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SIMPLE_CONVNET_FILE = WEIGHTS_DIR / "ch07_simple_convnet.npz"
DEEP_CONVNET_FILE = WEIGHTS_DIR / "ch08_deep_convnet.npz"
#: MNIST images as the networks take them.
IN_SHAPE = (1, 28, 28)
#: The book's ch07 ``params.pkl``: name -> shape.
SIMPLE_CONVNET_SHAPES: dict[str, tuple[int, ...]] = {
    "W1": (30, 1, 5, 5), "b1": (30,),
    "W2": (4320, 100), "b2": (100,),
    "W3": (100, 10), "b3": (10,),
}  # fmt: skip
#: The book's ch08 ``deep_convnet_params.pkl``: name -> shape.
DEEP_CONVNET_SHAPES: dict[str, tuple[int, ...]] = {
    "W1": (16, 1, 3, 3), "b1": (16,),
    "W2": (16, 16, 3, 3), "b2": (16,),
    "W3": (32, 16, 3, 3), "b3": (32,),
    "W4": (32, 32, 3, 3), "b4": (32,),
    "W5": (64, 32, 3, 3), "b5": (64,),
    "W6": (64, 64, 3, 3), "b6": (64,),
    "W7": (1024, 50), "b7": (50,),
    "W8": (50, 10), "b8": (10,),
}  # fmt: skip
#: Figures of the book's own code with these weights on the 10,000 MNIST test images.
SIMPLE_CONVNET_ACCURACY = 0.9600
DEEP_CONVNET_ACCURACY = 0.9797
#: Images per forward pass when evaluating (bounds the activations' memory).
EVAL_BATCH = 500


def load_weights(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Array]:
    """Read a weights archive (no pickle) and check it holds exactly ``shapes``.

    Args:
        path: an ``.npz`` file.
        shapes: expected array name -> shape.
    Returns:
        name -> float32 array of the expected shape.
    Raises:
        ValueError: missing or extra arrays, a wrong shape, a non-float or non-finite array.
    """
    with np.load(path, allow_pickle=False) as npz:
        weights = {name: npz[name] for name in npz.files}
    if set(weights) != set(shapes):
        raise ValueError(f"{path}: expected arrays {sorted(shapes)}, found {sorted(weights)}")
    out: dict[str, Array] = {}
    for name, shape in shapes.items():
        w = weights[name]
        if w.shape != shape or w.dtype.kind != "f":
            raise ValueError(f"{path}: {name} should be a float array {shape}, got {w.dtype} {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError(f"{path}: {name} holds non-finite values")
        out[name] = w.astype(np.float32)
    return out


def book_params(model: Serial, weights: Mapping[str, Array], in_shape: tuple[int, ...] = IN_SHAPE) -> tuple[Any, ...]:
    """``model``'s parameters filled with the book's ``W1, b1, W2, b2, ...`` in layer order.

    Args:
        model: a pipeline of Conv2D/Affine (parametrised), Dropout and parameter-free layers.
        weights: from :func:`load_weights`.
        in_shape: the input shape without the batch dimension.
    Returns:
        A params tuple with the structure, shapes and dtypes of ``model.init(key, in_shape)[0]``;
        weights after a Dropout are scaled by ``1 - rate`` (see the module docstring).
    Raises:
        ValueError: when the weights do not fit the model.
    """
    fresh, _ = model.init(make_key(0), in_shape)
    params: list[Any] = []
    index, scale = 1, 1.0
    for layer in model.layers:
        if isinstance(layer, Dropout):
            scale *= 1.0 - layer.rate
            params.append(None)
        elif isinstance(layer, (Conv2D, Affine)):
            w, b = weights[f"W{index}"], weights[f"b{index}"]
            w = w * np.float32(scale) if scale != 1.0 else w
            params.append(ConvParams(w, b) if isinstance(layer, Conv2D) else AffineParams(w, b))
            index, scale = index + 1, 1.0
        else:
            params.append(None)
    if f"W{index}" in weights:
        raise ValueError(f"the model has {index - 1} parametrised layers but the weights go on to W{index}")
    result = tuple(params)
    if tree_structure(result) != tree_structure(fresh):
        raise ValueError("the book's weights do not fit the model's parameter structure")
    for got, want in zip(tree_leaves(result), tree_leaves(fresh)):
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(f"a weight of {got.dtype} {got.shape} stands where the model has {want.dtype} {want.shape}")
    return result


def simple_convnet_book() -> tuple[Serial, tuple[Any, ...]]:
    """The book's trained SimpleConvNet (chapter 7): ``(model, params)``."""
    model = models.simple_convnet()
    return model, book_params(model, load_weights(SIMPLE_CONVNET_FILE, SIMPLE_CONVNET_SHAPES))


def deep_convnet_book() -> tuple[Serial, tuple[Any, ...]]:
    """The book's trained DeepConvNet (chapter 8) with its dropout converted: ``(model, params)``."""
    model = models.deep_convnet()
    return model, book_params(model, load_weights(DEEP_CONVNET_FILE, DEEP_CONVNET_SHAPES))


def mnist_test(dtype: Any = np.float32) -> tuple[Array, Array]:
    """The 10,000 shipped MNIST test images ``(N, 1, 28, 28)`` (pixels / 255) and labels ``(N,)``."""
    return load_mnist_test(normalize=True, flatten=False, dtype=dtype)


def predict_labels(model: Serial, params: Any, x: Array, batch_size: int = EVAL_BATCH) -> Array:
    """Predicted classes ``(N,)`` for images ``x`` ``(N, 1, 28, 28)``, in evaluation mode, in batches."""
    guesses = [np.argmax(model.apply(params, x[i : i + batch_size]), axis=1) for i in range(0, len(x), batch_size)]
    return np.concatenate(guesses) if guesses else np.zeros((0,), dtype=np.int64)
