"""fnnet: functional, pure-function neural networks on NumPy.

Layers are immutable records with ``init(key, in_shape)``, ``forward(params, x, ctx)`` and
``backward(params, cache, dout)``; optimizers return new parameter trees; randomness is an explicit
key. See the README for the book chapter → fnnet name table.
"""

from fnnet import functions, initializers, layers, tree
from fnnet.functions import identity, log_softmax, relu, sigmoid, softmax, step, tanh
from fnnet.layers import (
    EVAL,
    TRAIN,
    Add,
    Affine,
    AffineParams,
    Ctx,
    Flatten,
    Identity,
    Layer,
    Mul,
    ReLU,
    Residual,
    Serial,
    Sigmoid,
    Softmax,
    Summary,
    Tanh,
    residual,
    serial,
    summary,
)
from fnnet.numerical import GradCheck, check_grads, gradient_descent, numerical_diff, numerical_gradient
from fnnet.random import Key, fold_in, key, split
from fnnet.tree import (
    tree_astype as astype,
    tree_flatten,
    tree_global_norm,
    tree_leaves,
    tree_map,
    tree_map_with_path,
    tree_paths,
    tree_size,
    tree_structure,
    tree_unflatten,
    tree_zeros_like,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "functions",
    "initializers",
    "layers",
    "tree",
    "identity",
    "log_softmax",
    "relu",
    "sigmoid",
    "softmax",
    "step",
    "tanh",
    "EVAL",
    "TRAIN",
    "Add",
    "Affine",
    "AffineParams",
    "Ctx",
    "Flatten",
    "Identity",
    "Layer",
    "Mul",
    "ReLU",
    "Residual",
    "Serial",
    "Sigmoid",
    "Softmax",
    "Summary",
    "Tanh",
    "residual",
    "serial",
    "summary",
    "GradCheck",
    "check_grads",
    "gradient_descent",
    "numerical_diff",
    "numerical_gradient",
    "Key",
    "fold_in",
    "key",
    "split",
    "astype",
    "tree_flatten",
    "tree_global_norm",
    "tree_leaves",
    "tree_map",
    "tree_map_with_path",
    "tree_paths",
    "tree_size",
    "tree_structure",
    "tree_unflatten",
    "tree_zeros_like",
]
