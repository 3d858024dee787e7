"""Layers: immutable records with pure ``init`` / ``forward`` / ``backward``.

Every layer keeps the contract of `fnnet.layers.base`; pipelines and residual blocks
(`fnnet.layers.serial`, `fnnet.layers.residual`) are layers too. The layers and combinators are
also exported by `fnnet` itself.

>>> import numpy as np, fnnet
>>> from fnnet import layers
>>> model = layers.serial(layers.Conv2D(4, 3, pad=1), layers.ReLU(), layers.MaxPool2D(2),
...                       layers.Flatten(), layers.Affine(10))
>>> params, out = model.init(fnnet.key(0), (1, 8, 8))
>>> out, model.apply(params, np.zeros((2, 1, 8, 8), np.float32)).shape
((10,), (2, 10))
"""

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
from fnnet.layers.embedding import Embedding, EmbeddingParams, TimeAffine, embedding_grad
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
from fnnet.layers.recurrent import (
    GRU,
    LSTM,
    RNN,
    GRUParams,
    LSTMParams,
    LSTMState,
    RNNParams,
    RNNState,
    gru_cell,
    gru_scan,
    gru_scan_backward,
    lstm_cell,
    lstm_scan,
    lstm_scan_backward,
    rnn_cell,
    rnn_scan,
    rnn_scan_backward,
)

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
    "Embedding",
    "EmbeddingParams",
    "TimeAffine",
    "embedding_grad",
    "RNN",
    "LSTM",
    "GRU",
    "RNNParams",
    "LSTMParams",
    "GRUParams",
    "RNNState",
    "LSTMState",
    "rnn_cell",
    "rnn_scan",
    "rnn_scan_backward",
    "lstm_cell",
    "lstm_scan",
    "lstm_scan_backward",
    "gru_cell",
    "gru_scan",
    "gru_scan_backward",
]
