"""Model builders for the book's networks. Each returns a ``serial`` pipeline (a layer).

All take output sizes only; input shapes come at ``init(key, in_shape)`` time.
"""

from __future__ import annotations

from collections.abc import Sequence

from fnnet.initializers import Initializer, Normal, default_for_activation
from fnnet.layers.base import Layer
from fnnet.layers.combinators import Serial, serial
from fnnet.layers.core import Affine, Identity, ReLU, Sigmoid, Tanh
from fnnet.layers.dropout import Dropout
from fnnet.layers.norm import BatchNorm

__all__ = ["two_layer_net", "mlp", "ACTIVATIONS"]

#: Activation names accepted by :func:`mlp`.
ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "identity": Identity}


def two_layer_net(hidden_size: int = 50, output_size: int = 10, weight_init_std: float = 0.01) -> Serial:
    """The book's TwoLayerNet (section 4.5/5.7): ``Affine -> ReLU -> Affine``, weights N(0, std²).

    Train it with :func:`fnnet.losses.softmax_cross_entropy` (the book's SoftmaxWithLoss).
    Input ``(N, 784)`` (or any ``(N, ...)``, flattened), output logits ``(N, output_size)``.
    """
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
        hidden_sizes: units per hidden layer.
        activation: ``"relu"``, ``"sigmoid"``, ``"tanh"`` or ``"identity"``.
        w_init: weight initialiser; default He for ReLU, Xavier (Glorot) otherwise.
        batchnorm: insert BatchNorm after each hidden Affine.
        dropout: drop rate after each hidden activation (0 = no Dropout layer).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"mlp: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not (0.0 <= dropout < 1.0):
        raise ValueError(f"mlp: dropout must be in [0, 1), got {dropout!r}")
    init = w_init if w_init is not None else default_for_activation(activation)
    layers: list[Layer] = []
    for h in hidden_sizes:
        layers.append(Affine(h, w_init=init))
        if batchnorm:
            layers.append(BatchNorm())
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(Dropout(dropout))
    layers.append(Affine(output_size, w_init=init))
    return serial(*layers)
