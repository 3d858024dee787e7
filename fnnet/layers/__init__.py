"""Layers: immutable records with pure ``init`` / ``forward`` / ``backward``."""

from fnnet.layers.base import EVAL, TRAIN, Ctx, Layer
from fnnet.layers.activations import ELU, GELU, LeakyReLU, SiLU, Softplus
from fnnet.layers.combinators import (
    AddBranches,
    Concat,
    PathError,
    Residual,
    Serial,
    Summary,
    add_branches,
    concat,
    residual,
    serial,
    summary,
)
from fnnet.layers._patches import col2im, conv_output_size, im2col
from fnnet.layers.conv import Conv1D, Conv2D, ConvParams
from fnnet.layers.core import Affine, AffineParams, Flatten, Identity, ReLU, Sigmoid, Softmax, Tanh
from fnnet.layers.dropout import Dropout
from fnnet.layers.norm import (
    BatchNorm,
    BatchNormParams,
    BatchNormState,
    GroupNorm,
    GroupNormParams,
    LayerNorm,
    LayerNormParams,
)
from fnnet.layers.pool import AvgPool1D, AvgPool2D, GlobalAvgPool2D, MaxPool1D, MaxPool2D

__all__ = [
    "EVAL",
    "TRAIN",
    "Ctx",
    "Layer",
    "Serial",
    "Residual",
    "Concat",
    "AddBranches",
    "PathError",
    "Summary",
    "serial",
    "residual",
    "concat",
    "add_branches",
    "summary",
    "Affine",
    "AffineParams",
    "Flatten",
    "Identity",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "LeakyReLU",
    "ELU",
    "GELU",
    "SiLU",
    "Softplus",
    "BatchNorm",
    "BatchNormParams",
    "BatchNormState",
    "LayerNorm",
    "LayerNormParams",
    "GroupNorm",
    "GroupNormParams",
    "Dropout",
    "Conv2D",
    "ConvParams",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAvgPool2D",
    "Conv1D",
    "MaxPool1D",
    "AvgPool1D",
    "im2col",
    "col2im",
    "conv_output_size",
]
