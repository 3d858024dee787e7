"""Model builders for the book's networks. Each returns a ``serial`` pipeline (a layer).

All take output sizes only; input shapes come at ``init(key, in_shape)`` time.

>>> import fnnet
>>> fnnet.summary(fnnet.models.two_layer_net(), (784,)).total_params
39760
>>> fnnet.models.simple_convnet().out_shape((1, 28, 28))
(10,)
>>> fnnet.models.resnet().out_shape((1, 28, 28))
(10,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fnnet._validate import check_in_interval, check_positive_int, is_int
from fnnet.initializers import HeNormal, Initializer, Normal, default_for_activation
from fnnet.layers.base import Layer
from fnnet.layers.combinators import Serial, residual, serial
from fnnet.layers.conv import Conv2D
from fnnet.layers.pool import GlobalAvgPool2D, MaxPool2D
from fnnet.layers.core import Affine, Identity, ReLU, Sigmoid, Tanh
from fnnet.layers.dropout import Dropout
from fnnet.layers.norm import BatchNorm

__all__ = [
    "two_layer_net",
    "mlp",
    "simple_convnet",
    "deep_convnet",
    "DEEP_CONVNET_BLOCKS",
    "ACTIVATIONS",
    "basic_block",
    "resnet",
]

ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "identity": Identity}
"""Activation names accepted by :func:`mlp`, each with its layer class.

>>> from fnnet.models import ACTIVATIONS
>>> sorted(ACTIVATIONS), ACTIVATIONS["tanh"]()
(['identity', 'relu', 'sigmoid', 'tanh'], Tanh())
"""


def _check_bool(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: {name} must be True or False, got {value!r}")
    return bool(value)


def _check_init(where: str, value: Any) -> Initializer | None:
    if value is not None and (not callable(value) or isinstance(value, type)):
        hint = f" (an instance: {value.__name__}())" if isinstance(value, type) else ""
        raise ValueError(f"{where}: w_init must be an initializer from fnnet.initializers or None{hint}, got {value!r}")
    return value


def _check_sizes(where: str, name: str, value: Any) -> list[int]:
    """``value`` (a sequence or 1-D array) as a list of positive ints (it may be empty), else a
    one-line ``ValueError``."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{where}: {name} must be a sequence of positive ints, got {value!r}")
    return [check_positive_int(where, f"{name}[{i}]", h) for i, h in enumerate(value)]


def two_layer_net(hidden_size: int = 50, output_size: int = 10, weight_init_std: float = 0.01) -> Serial:
    """The book's TwoLayerNet of section 5.7: ``Affine -> ReLU -> Affine``, weights N(0, std²).

    (Section 4.5's version uses a sigmoid instead: ``mlp((50,), activation="sigmoid",
    w_init=Normal(0.01))``.)

    Train it with :func:`fnnet.losses.softmax_cross_entropy` (the book's SoftmaxWithLoss).
    Input ``(N, 784)`` (or any ``(N, ...)``, flattened), output logits ``(N, output_size)``.

    >>> import numpy as np, fnnet
    >>> net = fnnet.models.two_layer_net(hidden_size=8)
    >>> params, out = net.init(fnnet.key(0), (784,))
    >>> params[0].w.shape, params[2].w.shape, out
    ((784, 8), (8, 10), (10,))
    >>> net.apply(params, np.zeros((2, 784), np.float32)).shape
    (2, 10)
    """
    hidden_size = check_positive_int("two_layer_net", "hidden_size", hidden_size)
    output_size = check_positive_int("two_layer_net", "output_size", output_size)
    init = Normal(weight_init_std)
    return serial(Affine(hidden_size, w_init=init), ReLU(), Affine(output_size, w_init=init))


def mlp(
    hidden_sizes: Sequence[int] = (100, 100, 100, 100),
    output_size: int = 10,
    *,
    activation: str = "relu",
    w_init: Initializer | None = None,
    batchnorm: bool = False,
    dropout: float = 0.0,
) -> Serial:
    """The book's MultiLayerNet / MultiLayerNetExtend as one builder.

    Each hidden block is ``Affine -> [BatchNorm] -> activation -> [Dropout]``; the last layer is an
    ``Affine(output_size)`` producing logits.

    Args:
        hidden_sizes: units per hidden layer (``()``: no hidden layer, a single Affine).
        activation: ``"relu"``, ``"sigmoid"``, ``"tanh"`` or ``"identity"``.
        w_init: weight initialiser; default He for ReLU, Xavier (Glorot) otherwise.
        batchnorm: insert BatchNorm after each hidden Affine (True or False).
        dropout: drop rate in ``[0, 1)`` after each hidden activation (0 = no Dropout layer).

    >>> import fnnet
    >>> net = fnnet.models.mlp((8, 8), 3, batchnorm=True, dropout=0.1)
    >>> [type(layer).__name__ for layer in net.layers]
    ['Affine', 'BatchNorm', 'ReLU', 'Dropout', 'Affine', 'BatchNorm', 'ReLU', 'Dropout', 'Affine']
    >>> net.out_shape((4,))
    (3,)
    """
    sizes = _check_sizes("mlp", "hidden_sizes", hidden_sizes)
    output_size = check_positive_int("mlp", "output_size", output_size)
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"mlp: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    w_init = _check_init("mlp", w_init)
    batchnorm = _check_bool("mlp", "batchnorm", batchnorm)
    dropout = check_in_interval("mlp", "dropout", dropout, 0.0, 1.0)
    init = w_init if w_init is not None else default_for_activation(activation)
    layers: list[Layer] = []
    for h in sizes:
        layers.append(Affine(h, w_init=init))
        if batchnorm:
            layers.append(BatchNorm())
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(Dropout(dropout))
    layers.append(Affine(output_size, w_init=init))
    return serial(*layers)


def simple_convnet(
    filters: int = 30,
    kernel: int = 5,
    pad: int = 0,
    stride: int = 1,
    hidden: int = 100,
    output_size: int = 10,
    *,
    w_init: Initializer | None = None,
    pool_first: bool = True,
) -> Serial:
    """The book's SimpleConvNet (section 7.5): ``Conv -> ReLU -> MaxPool(2) -> Affine -> ReLU -> Affine``,
    built by default as ``Conv -> MaxPool(2) -> ReLU -> ...``, the same function, faster.

    Input ``(N, C, H, W)`` (MNIST: ``(N, 1, 28, 28)``, not flattened); output logits
    ``(N, output_size)``. With the defaults on MNIST the shapes are ``(30, 24, 24) -> (30, 12, 12)
    -> 4320 -> 100 -> 10``, those of the book's trained ``params.pkl``, whose arrays sit at the same
    positions of the params tuple (0, 3 and 5).

    Args:
        filters, kernel, pad, stride: the convolution's ``FN``, ``FH = FW``, padding and stride.
        hidden: units of the hidden Affine layer.
        output_size: number of classes.
        w_init: initialiser of every weight. Default He normal (``std = sqrt(2 / fan_in)``), as in
            the book's DeepConvNet; the book's SimpleConvNet itself uses N(0, 0.01²)
            (``w_init=fnnet.initializers.Normal(0.01)``), which trains too but more slowly.
        pool_first: pool before the ReLU (default): max pooling and ReLU commute exactly, outputs
            and gradients are identical, and the ReLU then touches a quarter of the values.
            ``False`` builds the book's order.

    >>> import fnnet
    >>> s = fnnet.summary(fnnet.models.simple_convnet(filters=4, hidden=8), (1, 28, 28))
    >>> [row.kind for row in s.rows]
    ['Conv2D', 'MaxPool2D', 'ReLU', 'Affine', 'ReLU', 'Affine']
    >>> [row.out_shape for row in s.rows]
    [(4, 24, 24), (4, 12, 12), (4, 12, 12), (8,), (8,), (10,)]
    """
    w_init = _check_init("simple_convnet", w_init)
    pool_first = _check_bool("simple_convnet", "pool_first", pool_first)
    filters, hidden, output_size = (
        check_positive_int("simple_convnet", name, v)
        for name, v in (("filters", filters), ("hidden", hidden), ("output_size", output_size))
    )
    init = w_init if w_init is not None else HeNormal()
    conv_block = [MaxPool2D(2), ReLU()] if pool_first else [ReLU(), MaxPool2D(2)]
    return serial(
        Conv2D(filters, kernel, stride=stride, pad=pad, w_init=init),
        *conv_block,
        Affine(hidden, w_init=init),
        ReLU(),
        Affine(output_size, w_init=init),
    )


# Max pooling and ReLU commute exactly: both are monotone, so max(relu(a), relu(b)) ==
# relu(max(a, b)) in floating point too, and their gradients agree (a window whose maximum is not
# positive passes no gradient either way; otherwise the same first maximal cell gets it). The CNN
# builders therefore pool *before* the ReLU that the book applies first (``pool_first=True``): the
# ReLU then runs on a quarter of the values, and the pool sees ReLU-free inputs, whose windows
# rarely tie, as its fast backward path needs. Outputs, gradients and parameter positions equal the
# book's order (tested bit for bit); only ``summary`` shows the swap.

DEEP_CONVNET_BLOCKS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((16, 1), (16, 1)),
    ((32, 1), (32, 2)),
    ((64, 1), (64, 1)),
)
"""The book's DeepConvNet convolutions, ``(filters, pad)`` of each 3x3 stride-1 conv, in blocks of
two followed by a 2x2 max pool. On 28x28 inputs: 28 -> 14 -> (14 + 2*2 - 2 = 16) -> 8 -> 4.

>>> import fnnet
>>> from fnnet.models import DEEP_CONVNET_BLOCKS
>>> [filters for block in DEEP_CONVNET_BLOCKS for filters, _ in block]
[16, 16, 32, 32, 64, 64]
>>> fnnet.models.deep_convnet(blocks=DEEP_CONVNET_BLOCKS[:2]).out_shape((1, 28, 28))  # two blocks
(10,)
"""


def deep_convnet(
    output_size: int = 10,
    dropout: float = 0.5,
    *,
    hidden: int = 50,
    batchnorm: bool = False,
    blocks: Sequence[Sequence[tuple[int, int]]] = DEEP_CONVNET_BLOCKS,
    pool_first: bool = True,
) -> Serial:
    """The book's DeepConvNet (section 8.1): six 3x3 convs with ReLU, a 2x2 max pool after every
    second, then ``Affine(50) -> ReLU -> Dropout -> Affine -> Dropout``. By default each pool
    comes before the ReLU of the convolution it follows: the same function, faster (see
    ``pool_first`` of :func:`simple_convnet`).

    Input ``(N, 1, 28, 28)`` (not flattened); the convolutions leave ``(64, 4, 4)``, flattened to
    1024 features for the first Affine; output logits ``(N, output_size)``. Every weight is He
    initialised, as in the book. Dropout is fnnet's inverted dropout (the identity in evaluation);
    the last one only scales the training logits, as in the book. To load the book's trained
    ``deep_convnet_params.pkl``, multiply the last Affine's weights by ``1 - dropout`` (see
    :class:`fnnet.layers.dropout.Dropout`).

    Args:
        output_size: number of classes.
        dropout: drop rate of both Dropout layers (0 = no Dropout layers).
        hidden: units of the hidden Affine layer (the book's 50).
        batchnorm: insert a BatchNorm after every convolution and the hidden Affine (before the
            ReLU); not in the book's network, but it trains faster.
        blocks: ``(filters, pad)`` of the 3x3 convolutions, grouped into blocks that each end in a
            2x2 max pool; the default :data:`DEEP_CONVNET_BLOCKS` is the book's.
        pool_first: pool before the block's last ReLU (default); ``False`` builds the book's order.

    >>> import numpy as np, fnnet
    >>> net = fnnet.models.deep_convnet()
    >>> s = fnnet.summary(net, (1, 28, 28))
    >>> len(net.layers), s.rows[14].out_shape, s.total_params
    (20, (64, 4, 4), 123552)
    >>> params, _ = net.init(fnnet.key(0), (1, 28, 28))
    >>> net.apply(params, np.zeros((1, 1, 28, 28), np.float32)).shape
    (1, 10)
    """
    dropout = check_in_interval("deep_convnet", "dropout", dropout, 0.0, 1.0)
    batchnorm = _check_bool("deep_convnet", "batchnorm", batchnorm)
    pool_first = _check_bool("deep_convnet", "pool_first", pool_first)
    hidden = check_positive_int("deep_convnet", "hidden", hidden)
    output_size = check_positive_int("deep_convnet", "output_size", output_size)

    def is_pair(c: Any) -> bool:
        return isinstance(c, (tuple, list)) and len(c) == 2 and all(is_int(v) for v in c)

    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence) or any(
        isinstance(b, (str, bytes)) or not isinstance(b, Sequence) or not b or not all(is_pair(c) for c in b)
        for b in blocks
    ):
        raise ValueError(
            f"deep_convnet: blocks must be a sequence of non-empty sequences of (filters, pad) int pairs, got {blocks!r}"
        )
    he = HeNormal()
    layers: list[Layer] = []
    for block in blocks:
        for k, (filters, pad) in enumerate(block):
            layers.append(Conv2D(filters, 3, stride=1, pad=pad, w_init=he))
            if batchnorm:
                layers.append(BatchNorm())
            last = k == len(block) - 1
            if last and pool_first:
                layers.append(MaxPool2D(2, stride=2))  # pool, then ReLU: the same function, faster
            layers.append(ReLU())
            if last and not pool_first:
                layers.append(MaxPool2D(2, stride=2))
    layers.append(Affine(hidden, w_init=he))
    if batchnorm:
        layers.append(BatchNorm())
    layers.append(ReLU())
    if dropout > 0:
        layers.append(Dropout(dropout))
    layers.append(Affine(output_size, w_init=he))
    if dropout > 0:
        layers.append(Dropout(dropout))
    return serial(*layers)


def basic_block(channels: int, stride: int = 1, projection: bool | None = None) -> Serial:
    """A ResNet basic block (He et al. 2016): ``relu(inner(x) + shortcut(x))`` with
    ``inner = Conv3x3(stride) -> BatchNorm -> ReLU -> Conv3x3 -> BatchNorm``.

    Input ``(N, C, H, W)``, output ``(N, channels, OH, OW)`` with ``OH = (H - 1) // stride + 1``
    (likewise ``OW``). Both 3x3 convolutions have padding 1 and He-normal weights. The shortcut is
    the identity, or a projection ``Conv1x1(stride) -> BatchNorm`` that matches the new shape.

    Args:
        channels: output channels of both convolutions (and of the projection).
        stride: stride of the first convolution (and of the projection); 2 halves the image.
        projection: use the projection shortcut; by default only when ``stride > 1``. The identity
            shortcut needs ``C == channels`` (checked at ``init``).
    Returns:
        ``serial(residual(inner, shortcut), ReLU())``.

    >>> import fnnet
    >>> fnnet.models.basic_block(8, stride=2).out_shape((4, 9, 9))
    (8, 5, 5)
    """
    channels = check_positive_int("basic_block", "channels", channels)
    stride = check_positive_int("basic_block", "stride", stride)
    if projection is None:
        projection = stride > 1
    elif not isinstance(projection, (bool, np.bool_)):
        raise ValueError(f"basic_block: projection must be True, False or None, got {projection!r}")
    projection = bool(projection)
    if stride > 1 and not projection:
        raise ValueError(f"basic_block: stride {stride} changes the image size: it needs a projection shortcut")
    he = HeNormal()
    inner = serial(
        Conv2D(channels, 3, stride=stride, pad=1, w_init=he),
        BatchNorm(),
        ReLU(),
        Conv2D(channels, 3, pad=1, w_init=he),
        BatchNorm(),
    )
    shortcut = serial(Conv2D(channels, (1, 1), stride=stride, w_init=he), BatchNorm()) if projection else None
    return serial(residual(inner, shortcut), ReLU())


def resnet(widths: Sequence[int] = (16, 32, 64), blocks: int = 2, output_size: int = 10) -> Serial:
    """A small residual network for images, in the CIFAR style of He et al. (2016).

    ``Conv3x3(widths[0]) -> BatchNorm -> ReLU``, then one stage of ``blocks`` :func:`basic_block`
    per width, then ``GlobalAvgPool2D -> Affine(output_size)``. The first block of every stage
    but the first has stride 2 and a projection shortcut; the others keep the shape and use the
    identity. Convolutions are He-normal initialised (the head is Affine's default, Xavier).

    Input ``(N, C, H, W)``; on MNIST's ``(1, 28, 28)`` the stages see 28x28, 14x14 and 7x7
    images. Output logits ``(N, output_size)``. With the defaults: 15 convolutions (the stem, two
    per block and the two 1x1 projections) and 175,530 trainable parameters.

    Args:
        widths: channels of each stage.
        blocks: basic blocks per stage.
        output_size: number of classes.

    >>> import fnnet
    >>> model = fnnet.models.resnet(widths=(4, 8), blocks=1)
    >>> model.out_shape((1, 28, 28)), len(model.layers)
    ((10,), 7)
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
        raise ValueError(f"resnet: widths must be a non-empty sequence of positive ints, got {widths!r}")
    widths = [check_positive_int("resnet", f"widths[{i}]", w) for i, w in enumerate(widths)]
    blocks = check_positive_int("resnet", "blocks", blocks)
    output_size = check_positive_int("resnet", "output_size", output_size)
    layers: list[Layer] = [Conv2D(widths[0], 3, pad=1, w_init=HeNormal()), BatchNorm(), ReLU()]
    for stage, width in enumerate(widths):
        for b in range(blocks):
            layers.append(basic_block(width, stride=2 if stage > 0 and b == 0 else 1))
    layers += [GlobalAvgPool2D(), Affine(output_size)]
    return serial(*layers)
