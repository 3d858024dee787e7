"""Layers: immutable records with pure ``init`` / ``forward`` / ``backward``."""

from fnnet.layers.base import EVAL, TRAIN, Ctx, Layer
from fnnet.layers.combinators import Residual, Serial, Summary, residual, serial, summary
from fnnet.layers.conv import AvgPool2D, Conv2D, ConvParams, MaxPool2D, col2im, im2col
from fnnet.layers.dropout import Dropout
from fnnet.layers.norm import BatchNorm, BatchNormParams, BatchNormState
from fnnet.layers.core import Add, Affine, AffineParams, Flatten, Identity, Mul, ReLU, Sigmoid, Softmax, Tanh

__all__ = [
    "EVAL",
    "TRAIN",
    "Ctx",
    "Layer",
    "Serial",
    "Residual",
    "Summary",
    "serial",
    "residual",
    "summary",
    "Affine",
    "AffineParams",
    "Flatten",
    "Identity",
    "Mul",
    "Add",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "BatchNorm",
    "BatchNormParams",
    "BatchNormState",
    "Dropout",
    "Conv2D",
    "ConvParams",
    "MaxPool2D",
    "AvgPool2D",
    "im2col",
    "col2im",
]
