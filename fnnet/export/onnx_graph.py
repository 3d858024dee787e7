"""ONNX export: a model and its parameters as an inference graph that computes ``model.apply``.

:func:`to_onnx` walks the model and looks up each layer's type in :data:`ONNX_EXPORTERS`, a table
from layer type to a function that appends the layer's ONNX nodes to a :class:`GraphBuilder` and
returns the name of its output tensor; containers (``Serial``, ``Residual``, ``Concat``,
``AddBranches``) emit their children through :meth:`GraphBuilder.emit`. A new layer kind is one
entry in the table. A layer without an entry stops the export with an :class:`ExportError`
naming its place and kind.

The graph is the evaluation-mode function (``ctx=EVAL``): BatchNorm normalises with its running
statistics and its own ``eps``, Dropout (inverted, so the identity in evaluation) emits nothing.
The graph's input ``"input"`` has shape ``(N, *in_shape)`` and its output ``"output"`` shape
``(N, *out_shape)``, with ``N`` a symbolic (dynamic) batch axis. Parameters become initializers
named as PyTorch's ``state_dict`` names the equivalent modules (``"0.weight"``, ``"3.bias"``,
``"1.running_mean"``; see :mod:`fnnet.export.torch_state`), Affine weights stored as
``(out, in)`` for a ``Gemm`` with ``transB=1``, as PyTorch's exporter writes ``Linear``.

Exportable layers: Affine, Flatten, Identity, the activations (ReLU, Sigmoid, Tanh, Softmax,
Softplus, LeakyReLU, ELU, GELU, SiLU), Conv2D, Conv1D, the poolings (MaxPool2D/1D, AvgPool2D/1D,
GlobalAvgPool2D), BatchNorm, LayerNorm, GroupNorm, Dropout, the containers, and the sequence
layers:

- ``Embedding`` is a ``Gather`` on its table (initializer ``"<place>.weight"``, ``(V, D)``). It
  must be the model's first layer (looking into ``serial``): the graph's input then holds int64
  ids ``(N, *in_shape)`` (cast int32 ids with ``ids.astype(np.int64)``). Ids outside ``[0, V)``:
  fnnet raises ``ValueError``; ONNX Runtime fails the run for ids outside ``[-V, V)`` and, as
  ONNX's ``Gather`` defines, takes ids in ``[-V, 0)`` from the end of the table.
- ``TimeAffine`` is a ``MatMul`` and an ``Add`` on the last axis, ``(N, T, D)`` to
  ``(N, T, K)``; its ``"<place>.weight"`` is fnnet's ``(D, K)`` (the transpose of a PyTorch
  ``Linear`` weight).
- ``RNN``, ``LSTM``, ``GRU`` are ONNX's ``RNN``, ``LSTM`` and ``GRU`` operators (tanh RNN; GRU
  with ``linear_before_reset=1``, fnnet's and PyTorch's reset of ``h @ wh_n + bhn``), time-major,
  so between two ``Transpose`` nodes (ONNX Runtime refuses the batch-major ``layout=1``). Their
  initializers ``"<place>.W"`` ``(1, G*H, D)``, ``"<place>.R"`` ``(1, G*H, H)`` and
  ``"<place>.B"`` ``(1, 2*G*H)`` hold the weights transposed with the gate blocks in ONNX's order
  (LSTM ``(i, o, f, c)`` from fnnet's ``(f, g, i, o)``; GRU ``(z, r, h)`` from ``(r, z, n)``), ``b``
  in ``B``'s first half and zeros in its second (``R``'s bias), but for the GRU's ``bhn`` in its
  ``h`` block. ``return_sequences=True`` gives ``Y`` as ``(N, T, H)``, ``False`` ``Y_h`` as
  ``(N, H)``. Only the default use exports: ``stateful=False`` and the zero initial state
  (``state`` None); anything else is an :class:`ExportError`. ONNX Runtime's CPU kernels run
  these three in float32 only (a float64 graph is valid ONNX but does not run there).

A float64 graph is valid ONNX, but ONNX Runtime's CPU kernels run several operators in float32
only, not just the recurrent ones: in version 1.32 ``Conv`` (Conv2D, Conv1D), ``AveragePool``,
``GlobalAveragePool`` and ``Erf`` (exact GELU, also as the ``Gelu`` node of opset 20 and later,
which ONNX Runtime runs through ``Erf``) have no float64 kernel there. Creating the session then
fails naming the node (``"Could not find an implementation for Conv(11) node with name
'0/Conv'"``; empty for the ``Erf`` inside a ``Gelu``). Export in float32 to run such a graph there.

ONNX's float attributes are float32, so a float64 graph writes LeakyReLU, ELU and Softplus as
``Where``, ``Exp`` and ``Log`` nodes with float64 constants (ONNX Runtime has no float64 ``Elu``
or ``Softplus``, nor ``LeakyRelu`` from opset 19), adds BatchNorm's ``eps`` to the variance in
float64, and writes LayerNorm and GroupNorm as ``ReduceMean``, ``Sub``, ``Mul``, ``Add``, ``Sqrt``
and ``Reciprocal`` nodes with ``eps`` a float64 constant instead of a ``LayerNormalization`` node,
whose ``epsilon`` attribute would round it (``1e-5`` to ``1e-5 - 2.5e-13``). A float32 graph keeps
the one-node forms. ONNX Runtime's approximate ``Gelu`` (opset 20 and later) differs from
``apply`` by about ``1e-8`` in float64, more than float64 rounding.

The ``onnx`` package (``pip install 'fnnet[export]'``) is imported only when :func:`to_onnx` runs:
``import fnnet`` does not need it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fnnet._io import atomic_write_bytes
from fnnet._version import __version__
from fnnet.layers.activations import ELU, GELU, LeakyReLU, SiLU, Softplus
from fnnet.layers.base import Layer, kind
from fnnet.layers.combinators import AddBranches, Concat, Residual, Serial
from fnnet.layers.conv import Conv1D, Conv2D, ConvParams
from fnnet.layers.core import Affine, AffineParams, Flatten, Identity, ReLU, Sigmoid, Softmax, Tanh
from fnnet.layers.dropout import Dropout
from fnnet.layers.embedding import Embedding, EmbeddingParams, TimeAffine
from fnnet.layers.norm import BatchNorm, BatchNormParams, BatchNormState, GroupNorm, LayerNorm
from fnnet.layers.pool import AvgPool1D, AvgPool2D, GlobalAvgPool2D, MaxPool1D, MaxPool2D
from fnnet.layers.recurrent import GRU, LSTM, RNN
from fnnet.random import key as make_key
from fnnet.tree import tree_leaves, tree_paths, tree_structure
from fnnet.typing import Array, Shape

if TYPE_CHECKING:
    import onnx

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportError",
    "GraphBuilder",
    "Exporter",
    "ONNX_EXPORTERS",
    "to_onnx",
]

DEFAULT_OPSET = 17
"""The ONNX operator set :func:`to_onnx` targets unless told otherwise (ONNX Runtime >= 1.13 runs it).

>>> import fnnet
>>> from fnnet.export import DEFAULT_OPSET, to_onnx
>>> model = fnnet.serial(fnnet.Affine(2))
>>> to_onnx(model, model.init(fnnet.key(0), (3,))[0], (3,)).opset_import[0].version == DEFAULT_OPSET
True
"""

MIN_OPSET = 17
"""The oldest operator set the exporters write (``LayerNormalization`` arrived in opset 17).

>>> import fnnet
>>> from fnnet.export import MIN_OPSET, ExportError, to_onnx
>>> try:
...     to_onnx(fnnet.ReLU(), None, (3,), opset=MIN_OPSET - 1)
... except ExportError as e:
...     print(str(e).startswith("opset must be an int from 17 to "))
True
"""

INPUT_NAME = "input"
"""The name of the graph's input, of shape ``(N, *in_shape)``.

>>> import fnnet
>>> from fnnet.export import to_onnx
>>> [i.name for i in to_onnx(fnnet.ReLU(), None, (3,)).graph.input]
['input']
"""

OUTPUT_NAME = "output"
"""The name of the graph's output, of shape ``(N, *out_shape)``.

>>> import fnnet
>>> from fnnet.export import to_onnx
>>> [o.name for o in to_onnx(fnnet.ReLU(), None, (3,)).graph.output]
['output']
"""

#: The symbolic batch axis of the input and the output.
BATCH_AXIS = "N"
_EXPORT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INSTALL = "pip install 'fnnet[export]'"


class ExportError(ValueError):
    """A model that cannot be exported: the message names the layer (its place and kind).

    >>> import fnnet
    >>> from fnnet.export import ExportError, to_onnx
    >>> model = fnnet.serial(fnnet.Affine(3), fnnet.BatchNorm())
    >>> try:
    ...     to_onnx(model, model.init(fnnet.key(0), (4,))[0], (4,))
    ... except ExportError as e:
    ...     print(str(e)[:54])
    layer 1 (BatchNorm): needs its running statistics, got
    """


def _require_onnx() -> None:
    """Raise an ``ImportError`` that names the extra to install unless ``onnx`` imports."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError(f"ONNX export needs the onnx package: {_INSTALL}") from None


def describe(where: str, layer: Layer) -> str:
    """The layer's place and kind as error messages name them: ``"layer 3 (Conv2D)"``,
    ``"layer 2 / shortcut / layer 0 (Conv2D)"``, ``"model (Conv2D)"`` for the model itself.

    ``where`` is the dotted place that also names the layer's ONNX initializers and PyTorch keys
    (``"2.shortcut.0"``; ``"1.branches.0"`` is branch 0 of a fan-out at layer 1).
    """
    if not where:
        return f"model ({kind(layer)})"
    steps: list[str] = []
    parts = where.split(".")
    i = 0
    while i < len(parts):
        if parts[i] == "branches" and i + 1 < len(parts):
            steps.append(f"branch {parts[i + 1]}")
            i += 2
            continue
        steps.append(f"layer {parts[i]}" if parts[i].isdigit() else parts[i])
        i += 1
    return f"{' / '.join(steps)} ({kind(layer)})"


def child(where: str, name: str | int) -> str:
    """The dotted place of a sub-layer: ``child("2", "inner") == "2.inner"``."""
    return f"{where}.{name}" if where else str(name)


class GraphBuilder:
    """An ONNX graph being built: nodes, initializers, unique names, and the dispatch of layers.

    Exporters (see :data:`ONNX_EXPORTERS`) call :meth:`op`, :meth:`const` and, for sub-layers,
    :meth:`emit`. Tensor values are in :attr:`dtype`, the graph's floating-point type.

    Attributes:
        dtype: the NumPy dtype of the graph's floating-point tensors (float32 or float64).
        opset: the ONNX operator set version being written.
        exporters: layer type -> exporter, looked up by :meth:`emit`.
        nodes, initializers: what has been added so far.
        ids: the names of the tensors that hold int64 ids (the graph's input when the model
            starts with an Embedding); only these can feed an Embedding's ``Gather``.

    >>> import numpy as np, fnnet
    >>> from fnnet.export import DEFAULT_OPSET, ONNX_EXPORTERS, GraphBuilder
    >>> g = GraphBuilder(np.dtype(np.float32), DEFAULT_OPSET, ONNX_EXPORTERS)
    >>> g.emit(fnnet.serial(fnnet.Tanh(), fnnet.Dropout()), (None, None), None, "input", (3,), "")
    '0/Tanh'
    >>> g.op("Mul", ["0/Tanh", g.const("two", 2.0)], "mine"), [n.op_type for n in g.nodes]
    ('mine/Mul', ['Tanh', 'Mul'])
    """

    def __init__(self, dtype: np.dtype[Any], opset: int, exporters: dict[type[Layer], Exporter]):
        _require_onnx()
        import onnx

        self._helper = onnx.helper
        self._numpy_helper = onnx.numpy_helper
        self.dtype = dtype
        self.opset = opset
        self.exporters = exporters
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.ids: set[str] = set()
        self._taken: set[str] = {INPUT_NAME, OUTPUT_NAME}

    def _fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._taken:
            i += 1
            name = f"{base}_{i}"
        self._taken.add(name)
        return name

    def const(self, name: str, value: Any, dtype: Any = None) -> str:
        """Add an initializer holding ``value`` (in :attr:`dtype` unless ``dtype`` is given); its name."""
        array = np.ascontiguousarray(np.asarray(value, dtype=self.dtype if dtype is None else dtype))
        unique = self._fresh(name)
        self.initializers.append(self._numpy_helper.from_array(array, unique))
        return unique

    def op(self, op_type: str, inputs: Sequence[str], where: str, **attributes: Any) -> str:
        """Append one ``op_type`` node with one output, named ``"<where>/<op_type>"``; the output's name."""
        return self.op_output(op_type, inputs, where, 0, **attributes)

    def op_output(self, op_type: str, inputs: Sequence[str], where: str, index: int, **attributes: Any) -> str:
        """Append one ``op_type`` node of which only output number ``index`` is kept; that output's name.

        The outputs before it are left unnamed (``""``), as ONNX marks an optional output not
        wanted, e.g. an ``LSTM``'s ``Y`` when only its last hidden state ``Y_h`` (output 1) is used.

        >>> import numpy as np
        >>> from fnnet.export import DEFAULT_OPSET, ONNX_EXPORTERS, GraphBuilder
        >>> g = GraphBuilder(np.dtype(np.float32), DEFAULT_OPSET, ONNX_EXPORTERS)
        >>> g.op_output("TopK", ["input", g.const("k", [2], np.int64)], "best", 1, axis=-1)
        'best/TopK'
        >>> list(g.nodes[0].output)
        ['', 'best/TopK']
        """
        out = self._fresh(f"{where}/{op_type}" if where else op_type)
        outputs = [""] * index + [out]
        self.nodes.append(self._helper.make_node(op_type, list(inputs), outputs, name=out, **attributes))
        return out

    def emit(self, layer: Layer, params: Any, state: Any, x: str, in_shape: Shape, where: str) -> str:
        """Append ``layer``'s nodes reading tensor ``x`` of shape ``(N, *in_shape)``; its output's name.

        Raises:
            ExportError: no exporter for the layer's type, or it cannot export this instance.
        """
        exporter = self.exporters.get(type(layer))
        if exporter is None:
            raise ExportError(f"{describe(where, layer)}: cannot be exported to ONNX")
        return exporter(self, layer, params, state, x, tuple(in_shape), where)


Exporter = Callable[[GraphBuilder, Any, Any, Any, str, Shape, str], str]
"""``exporter(graph, layer, params, state, x, in_shape, where) -> output name``: append the nodes of
``layer`` (with its ``params`` and evaluation ``state``) that read tensor ``x`` of shape
``(N, *in_shape)``; ``where`` is the layer's dotted place (``"3"``, ``"2.inner.0"``), used for
node and initializer names and, through :func:`describe`, in error messages.

A layer kind of your own exports with an entry in a copy of :data:`ONNX_EXPORTERS`:

>>> import attrs, numpy as np, fnnet
>>> from fnnet.export import ONNX_EXPORTERS, to_onnx
>>> @attrs.frozen
... class Square(fnnet.Identity):
...     def forward(self, params, state, x, ctx=fnnet.EVAL):
...         return x * x, state, x
>>> def square(g, layer, params, state, x, in_shape, where):
...     return g.op("Mul", [x, x], where)
>>> model = fnnet.serial(fnnet.Affine(2), Square())
>>> params, _ = model.init(fnnet.key(0), (3,))
>>> m = to_onnx(model, params, (3,), exporters={**ONNX_EXPORTERS, Square: square})
>>> [n.op_type for n in m.graph.node]
['Gemm', 'Mul']
"""


# --- leaf layers ---------------------------------------------------------------------------------


def _affine(g: GraphBuilder, layer: Affine, params: AffineParams, state: None, x: str, in_shape: Shape, where: str) -> str:
    if len(in_shape) != 1:
        x = g.op("Flatten", [x], where, axis=1)  # (N, d1, d2, ...) -> (N, d1*d2*...), as Affine does
    w = g.const(child(where, "weight"), np.asarray(params.w).T)
    b = g.const(child(where, "bias"), params.b)
    return g.op("Gemm", [x, w, b], where, transB=1)


def _ints(value: int | Sequence[int]) -> list[int]:
    """A per-axis hyperparameter as a list (``3`` -> ``[3]`` for a 1-D layer, pairs as they are)."""
    return [int(value)] if isinstance(value, (int, np.integer)) else [int(v) for v in value]


def _window_attributes(kernel: Any, stride: Any, pad: Any) -> dict[str, Any]:
    """``kernel_shape``, ``strides`` and ``pads`` (the same padding at both ends of every axis)."""
    pads = _ints(pad)
    return {"kernel_shape": _ints(kernel), "strides": _ints(stride), "pads": pads + pads}


def _conv(g: GraphBuilder, layer: Conv2D | Conv1D, params: ConvParams, state: None, x: str, in_shape: Shape, where: str) -> str:
    # the weights (FN, C/groups, FH, FW) are ONNX's layout, for 1-D kernels (FN, C/groups, K) too
    w = g.const(child(where, "weight"), params.w)
    b = g.const(child(where, "bias"), params.b)
    group = int(getattr(layer, "groups", 1))
    return g.op("Conv", [x, w, b], where, group=group, **_window_attributes(layer.kernel, layer.stride, layer.pad))


def _pool_attributes(layer: MaxPool2D | AvgPool2D | MaxPool1D | AvgPool1D) -> dict[str, Any]:
    return _window_attributes(layer.window, layer.window if layer.stride is None else layer.stride, layer.pad)


def _max_pool(
    g: GraphBuilder, layer: MaxPool2D | MaxPool1D, params: None, state: None, x: str, in_shape: Shape, where: str
) -> str:
    return g.op("MaxPool", [x], where, **_pool_attributes(layer))


def _avg_pool(
    g: GraphBuilder, layer: AvgPool2D | AvgPool1D, params: None, state: None, x: str, in_shape: Shape, where: str
) -> str:
    # fnnet divides by the whole window, padding cells included
    return g.op("AveragePool", [x], where, count_include_pad=1, **_pool_attributes(layer))


def _global_avg_pool(
    g: GraphBuilder, layer: GlobalAvgPool2D, params: None, state: None, x: str, in_shape: Shape, where: str
) -> str:
    return g.op("Flatten", [g.op("GlobalAveragePool", [x], where)], where, axis=1)  # (N, C, 1, 1) -> (N, C)


def _batch_norm(
    g: GraphBuilder, layer: BatchNorm, params: BatchNormParams, state: Any, x: str, in_shape: Shape, where: str
) -> str:
    c = params.gamma.shape[0]
    if not isinstance(state, BatchNormState):
        raise ExportError(
            f"{describe(where, layer)}: needs its running statistics, got state {type(state).__name__}; pass "
            "state= (the model state after training)"
        )
    if int(state.count) == 0:
        raise ExportError(
            f"{describe(where, layer)}: the running statistics were never updated (state.count == 0); train "
            "first and export with the state training returned"
        )
    for name in ("mean", "var"):
        if np.shape(getattr(state, name)) != (c,):
            got = np.shape(getattr(state, name))
            raise ExportError(f"{describe(where, layer)}: expected state.{name} of shape ({c},), got {got}")
        if not np.all(np.isfinite(getattr(state, name))):
            raise ExportError(f"{describe(where, layer)}: state.{name} holds NaN or infinite values")
    if np.any(np.asarray(state.var) < 0):
        raise ExportError(f"{describe(where, layer)}: state.var has negative values")
    inputs = [
        g.const(child(where, "weight"), params.gamma),
        g.const(child(where, "bias"), params.beta),
        g.const(child(where, "running_mean"), state.mean),
        g.const(child(where, "running_var"), state.var),
    ]
    if g.dtype != np.float64:
        return g.op("BatchNormalization", [x, *inputs], where, epsilon=float(layer.eps))
    # ONNX's float attributes are float32, which would round eps (1e-6) in a float64 graph: add it
    # to the variance in float64 instead
    inputs[3] = g.op("Add", [inputs[3], g.const(child(where, "eps"), layer.eps)], where)
    return g.op("BatchNormalization", [x, *inputs], where, epsilon=0.0)


def _standardised_rows(g: GraphBuilder, x: str, eps: float, where: str) -> str:
    """``x`` of shape ``(N, G, M)`` with every row of ``M`` values standardised in float64 primitive
    ops, ``eps`` a float64 constant: ``(x - mean) / sqrt(mean((x - mean)**2) + eps)``."""

    def mean(t: str) -> str:
        if g.opset >= 18:  # the axes became an input in opset 18
            return g.op("ReduceMean", [t, g.const(child(where, "row_axis"), [2], np.int64)], where, keepdims=1)
        return g.op("ReduceMean", [t], where, axes=[2], keepdims=1)

    centred = g.op("Sub", [x, mean(x)], where)
    var = mean(g.op("Mul", [centred, centred], where))
    std = g.op("Sqrt", [g.op("Add", [var, g.const(child(where, "eps"), eps)], where)], where)
    return g.op("Mul", [centred, g.op("Reciprocal", [std], where)], where)


def _layer_norm(g: GraphBuilder, layer: LayerNorm, params: Any, state: None, x: str, in_shape: Shape, where: str) -> str:
    gamma = g.const(child(where, "weight"), params.gamma)
    beta = g.const(child(where, "bias"), params.beta)
    if g.dtype != np.float64:
        return g.op("LayerNormalization", [x, gamma, beta], where, axis=1, epsilon=float(layer.eps))
    # ONNX's float attributes are float32, which would round eps in a float64 graph: standardise
    # each sample as one row (N, 1, M) with eps in float64, then the elementwise scale and shift
    rows = g.op("Reshape", [x, g.const(child(where, "row_shape"), [0, 1, -1], np.int64)], where)
    normed = _standardised_rows(g, rows, layer.eps, where)
    back = g.op("Reshape", [normed, g.const(child(where, "input_shape"), [0, *in_shape], np.int64)], where)
    return g.op("Add", [g.op("Mul", [back, gamma], where), beta], where)


def _group_norm(g: GraphBuilder, layer: GroupNorm, params: Any, state: None, x: str, in_shape: Shape, where: str) -> str:
    # each sample as (G, M): standardise every row of M values (LayerNormalization over the last
    # axis, unit scale; in float64 primitive ops with eps a float64 constant), back to the input's
    # shape, then the per-channel scale and shift
    c, groups = int(in_shape[0]), layer.groups
    m = math.prod(in_shape) // groups
    grouped = g.op("Reshape", [x, g.const(child(where, "grouped_shape"), [0, groups, -1], np.int64)], where)
    if g.dtype != np.float64:
        ones = g.const(child(where, "unit_scale"), np.ones(m))
        normed = g.op("LayerNormalization", [grouped, ones], where, axis=2, epsilon=float(layer.eps))
    else:
        normed = _standardised_rows(g, grouped, layer.eps, where)
    back = g.op("Reshape", [normed, g.const(child(where, "input_shape"), [0, *in_shape], np.int64)], where)
    per_channel = (c,) + (1,) * (len(in_shape) - 1)
    gamma = g.const(child(where, "weight"), np.reshape(params.gamma, per_channel))
    beta = g.const(child(where, "bias"), np.reshape(params.beta, per_channel))
    return g.op("Add", [g.op("Mul", [back, gamma], where), beta], where)


def _unary(op_type: str, **attributes: Any) -> Exporter:
    def export(g: GraphBuilder, layer: Any, params: Any, state: Any, x: str, in_shape: Shape, where: str) -> str:
        return g.op(op_type, [x], where, **attributes)

    return export


def _leaky_relu(g: GraphBuilder, layer: LeakyReLU, params: None, state: None, x: str, in_shape: Shape, where: str) -> str:
    if g.dtype != np.float64:
        return g.op("LeakyRelu", [x], where, alpha=float(layer.negative_slope))
    # ONNX's float attributes are float32, which would round the slope of a float64 graph
    slope = g.const(child(where, "negative_slope"), layer.negative_slope)
    positive = g.op("Greater", [x, g.const(child(where, "zero"), 0.0)], where)
    return g.op("Where", [positive, x, g.op("Mul", [x, slope], where)], where)


def _elu(g: GraphBuilder, layer: ELU, params: None, state: None, x: str, in_shape: Shape, where: str) -> str:
    if g.dtype != np.float64:
        return g.op("Elu", [x], where, alpha=float(layer.alpha))
    # float64: alpha * (exp(min(x, 0)) - 1) for x <= 0, alpha kept in float64 (no float32 attribute)
    zero = g.const(child(where, "zero"), 0.0)
    em1 = g.op("Sub", [g.op("Exp", [g.op("Min", [x, zero], where)], where), g.const(child(where, "one"), 1.0)], where)
    neg = g.op("Mul", [em1, g.const(child(where, "alpha"), layer.alpha)], where)
    return g.op("Where", [g.op("Greater", [x, zero], where), x, neg], where)


def _softplus(g: GraphBuilder, layer: Softplus, params: None, state: None, x: str, in_shape: Shape, where: str) -> str:
    if g.dtype != np.float64:
        return g.op("Softplus", [x], where)
    # float64: log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)), which cannot overflow
    tail = g.op("Exp", [g.op("Neg", [g.op("Abs", [x], where)], where)], where)
    log1p = g.op("Log", [g.op("Add", [tail, g.const(child(where, "one"), 1.0)], where)], where)
    return g.op("Add", [g.op("Relu", [x], where), log1p], where)


def _silu(g: GraphBuilder, layer: SiLU, params: None, state: None, x: str, in_shape: Shape, where: str) -> str:
    return g.op("Mul", [x, g.op("Sigmoid", [x], where)], where)


def _gelu(g: GraphBuilder, layer: GELU, params: None, state: None, x: str, in_shape: Shape, where: str) -> str:
    if g.opset >= 20:
        return g.op("Gelu", [x], where, approximate="tanh" if layer.approximate else "none")
    half = g.const(child(where, "half"), 0.5)
    one = g.const(child(where, "one"), 1.0)
    if layer.approximate:
        # Phi(x) ~ (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) / 2
        cube = g.op("Mul", [g.op("Mul", [x, x], where), x], where)
        inner = g.op("Add", [x, g.op("Mul", [cube, g.const(child(where, "cubic"), 0.044715)], where)], where)
        t = g.op("Tanh", [g.op("Mul", [inner, g.const(child(where, "sqrt_2_over_pi"), math.sqrt(2 / math.pi))], where)], where)
    else:
        # Phi(x) = (1 + erf(x / sqrt 2)) / 2
        t = g.op("Erf", [g.op("Mul", [x, g.const(child(where, "inv_sqrt2"), math.sqrt(0.5))], where)], where)
    cdf = g.op("Mul", [g.op("Add", [t, one], where), half], where)
    return g.op("Mul", [x, cdf], where)


def _dropout(g: GraphBuilder, layer: Dropout, params: None, state: None, x: str, in_shape: Shape, where: str) -> str:
    return x  # inverted dropout is the identity in evaluation


# --- sequence layers -----------------------------------------------------------------------------


def _embedding(g: GraphBuilder, layer: Embedding, params: EmbeddingParams, state: None, x: str, in_shape: Shape, where: str) -> str:
    if x not in g.ids:
        raise ExportError(
            f"{describe(where, layer)}: only the model's first layer (looking into serial) can be an Embedding, "
            "whose ids are then the graph's int64 input"
        )
    return g.op("Gather", [g.const(child(where, "weight"), params.w), x], where, axis=0)


def _time_affine(g: GraphBuilder, layer: TimeAffine, params: AffineParams, state: None, x: str, in_shape: Shape, where: str) -> str:
    w = g.const(child(where, "weight"), params.w)  # (D, K): MatMul over the last axis
    b = g.const(child(where, "bias"), params.b)
    return g.op("Add", [g.op("MatMul", [x, w], where), b], where)


#: ONNX's operator for each recurrent layer, and for each of ONNX's gate blocks the fnnet block it
#: takes: LSTM (i, o, f, c) from (f, g, i, o), GRU (z, r, h) from (r, z, n).
_RECURRENT_OPS: dict[type[Layer], tuple[str, tuple[int, ...]]] = {
    RNN: ("RNN", (0,)),
    LSTM: ("LSTM", (2, 3, 0, 1)),
    GRU: ("GRU", (1, 0, 2)),
}


def gate_rows(a: Array, order: tuple[int, ...]) -> Array:
    """The ``(G*H, ...)`` row blocks of ``a`` reordered: block ``k`` of the result is block
    ``order[k]`` of ``a`` (a new C-contiguous array). ONNX and PyTorch store a recurrent layer's
    weights as such row blocks, fnnet as the columns of ``(D, G*H)``: ``gate_rows(wx.T, order)``.

    >>> import numpy as np
    >>> from fnnet.export.onnx_graph import gate_rows
    >>> gate_rows(np.arange(6).reshape(3, 2), (2, 0, 1)).tolist()   # G = 3 blocks of H = 1 row
    [[4, 5], [0, 1], [2, 3]]
    """
    g = len(order)
    return np.ascontiguousarray(np.asarray(a).reshape(g, a.shape[0] // g, *a.shape[1:])[list(order)].reshape(a.shape))


def _recurrent(g: GraphBuilder, layer: RNN | LSTM | GRU, params: Any, state: Any, x: str, in_shape: Shape, where: str) -> str:
    desc = describe(where, layer)
    if layer.stateful:
        raise ExportError(
            f"{desc}: stateful=True carries the final state from batch to batch, which an ONNX graph cannot; "
            "export a copy made with attrs.evolve(layer, stateful=False) (the same weights)"
        )
    if state is not None:
        raise ExportError(f"{desc}: only the zero initial state (state None) can be exported, got {type(state).__name__}")
    op_type, order = _RECURRENT_OPS[type(layer)]
    h = layer.hidden
    w = gate_rows(np.asarray(params.wx).T, order)[None]  # (1, G*H, D)
    r = gate_rows(np.asarray(params.wh).T, order)[None]  # (1, G*H, H)
    wb = gate_rows(params.b, order)
    rb = np.zeros_like(wb)
    attributes: dict[str, Any] = {"hidden_size": h}
    if isinstance(layer, GRU):
        rb[2 * h :] = params.bhn  # the h block, last in both orders: n = tanh(... + r * (h R_h + Rb_h))
        attributes["linear_before_reset"] = 1
    inputs = [
        g.op("Transpose", [x], where, perm=[1, 0, 2]),  # (T, N, D): ONNX's recurrent ops are time-major
        g.const(child(where, "W"), w),
        g.const(child(where, "R"), r),
        g.const(child(where, "B"), np.concatenate([wb, rb])[None]),
    ]
    if layer.return_sequences:
        ys = g.op_output(op_type, inputs, where, 0, **attributes)  # Y (T, 1, N, H)
        ys = g.op("Squeeze", [ys, g.const(child(where, "direction_axis"), [1], np.int64)], where)
        return g.op("Transpose", [ys], where, perm=[1, 0, 2])
    last = g.op_output(op_type, inputs, where, 1, **attributes)  # Y_h (1, N, H)
    return g.op("Squeeze", [last, g.const(child(where, "direction_axis"), [0], np.int64)], where)


# --- containers ----------------------------------------------------------------------------------


def _serial(g: GraphBuilder, layer: Serial, params: Any, state: Any, x: str, in_shape: Shape, where: str) -> str:
    n = len(layer.layers)
    states = (None,) * n if state is None else state
    if not isinstance(params, tuple) or len(params) != n or not isinstance(states, tuple) or len(states) != n:
        raise ExportError(f"{describe(where, layer)}: expected params and state as tuples of {n} entries")
    shape = tuple(in_shape)
    for i, (sub, p, s) in enumerate(zip(layer.layers, params, states)):
        x = g.emit(sub, p, s, x, shape, child(where, i))
        shape = sub.out_shape(shape)
    return x


def _parts(layer: Layer, params: Any, state: Any, n: int, where: str) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """A fan-out's params and state as ``n``-tuples (``None`` state: ``n`` Nones)."""
    states = (None,) * n if state is None else state
    if not isinstance(params, tuple) or len(params) != n or not isinstance(states, tuple) or len(states) != n:
        raise ExportError(f"{describe(where, layer)}: expected params and state as tuples of {n} entries")
    return params, states


def _residual(g: GraphBuilder, layer: Residual, params: Any, state: Any, x: str, in_shape: Shape, where: str) -> str:
    (p_inner, p_skip), (s_inner, s_skip) = _parts(layer, params, state, 2, where)
    y = g.emit(layer.inner, p_inner, s_inner, x, in_shape, child(where, "inner"))
    skip = x if layer.shortcut is None else g.emit(layer.shortcut, p_skip, s_skip, x, in_shape, child(where, "shortcut"))
    return g.op("Add", [y, skip], where)


def _branches(
    g: GraphBuilder, layer: Concat | AddBranches, params: Any, state: Any, x: str, in_shape: Shape, where: str
) -> list[str]:
    ps, ss = _parts(layer, params, state, len(layer.branches), where)
    return [
        g.emit(branch, p, s, x, in_shape, child(where, f"branches.{i}"))
        for i, (branch, p, s) in enumerate(zip(layer.branches, ps, ss))
    ]


def _concat(g: GraphBuilder, layer: Concat, params: Any, state: Any, x: str, in_shape: Shape, where: str) -> str:
    ys = _branches(g, layer, params, state, x, in_shape, where)
    if len(ys) == 1:
        return ys[0]
    rank = len(layer.branches[0].out_shape(in_shape))
    return g.op("Concat", ys, where, axis=layer.axis % rank + 1)  # + 1: the batch axis


def _add_branches(g: GraphBuilder, layer: AddBranches, params: Any, state: Any, x: str, in_shape: Shape, where: str) -> str:
    ys = _branches(g, layer, params, state, x, in_shape, where)
    return ys[0] if len(ys) == 1 else g.op("Sum", ys, where)


ONNX_EXPORTERS: dict[type[Layer], Exporter] = {
    Affine: _affine,
    Flatten: _unary("Flatten", axis=1),
    Identity: _unary("Identity"),
    ReLU: _unary("Relu"),
    Sigmoid: _unary("Sigmoid"),
    Tanh: _unary("Tanh"),
    Softmax: _unary("Softmax", axis=-1),
    Softplus: _softplus,
    LeakyReLU: _leaky_relu,
    ELU: _elu,
    GELU: _gelu,
    SiLU: _silu,
    Conv2D: _conv,
    Conv1D: _conv,
    MaxPool2D: _max_pool,
    MaxPool1D: _max_pool,
    AvgPool2D: _avg_pool,
    AvgPool1D: _avg_pool,
    GlobalAvgPool2D: _global_avg_pool,
    BatchNorm: _batch_norm,
    LayerNorm: _layer_norm,
    GroupNorm: _group_norm,
    Dropout: _dropout,
    Embedding: _embedding,
    TimeAffine: _time_affine,
    RNN: _recurrent,
    LSTM: _recurrent,
    GRU: _recurrent,
    Serial: _serial,
    Residual: _residual,
    Concat: _concat,
    AddBranches: _add_branches,
}
"""Layer type -> :data:`Exporter`, the layer kinds :func:`to_onnx` exports (exact types: a subclass
needs its own entry). Pass ``exporters={**ONNX_EXPORTERS, MyLayer: my_exporter}`` to
:func:`to_onnx` for a kind of your own.

>>> import fnnet
>>> from fnnet.export import ONNX_EXPORTERS
>>> fnnet.Conv2D in ONNX_EXPORTERS, fnnet.Conv1D in ONNX_EXPORTERS, len(ONNX_EXPORTERS)
(True, True, 32)
"""


# --- the model -----------------------------------------------------------------------------------


def _graph_dtype(params: Any, dtype: Any) -> np.dtype[Any]:
    chosen: np.dtype[Any]
    if dtype is not None:
        chosen = np.dtype(dtype)
    else:
        kinds: set[np.dtype[Any]] = {np.asarray(leaf).dtype for leaf in tree_leaves(params)}
        kinds = {k for k in kinds if k.kind == "f"}
        if len(kinds) > 1:
            raise ExportError(f"params mix dtypes {sorted(str(k) for k in kinds)}; pass dtype= to pick the graph's")
        chosen = kinds.pop() if kinds else np.dtype(np.float32)
    if chosen not in _EXPORT_DTYPES:
        raise ExportError(f"cannot export in dtype {chosen}: use float32 or float64")
    return chosen


def _check_params(model: Layer, params: Any, in_shape: Shape) -> None:
    """Raise unless ``params`` has the structure and shapes ``model.init`` gives for ``in_shape``."""
    fresh, _ = model.init(make_key(0), in_shape)
    if tree_structure(params) != tree_structure(fresh):
        raise ExportError(f"params do not have the structure model.init gives for in_shape {tuple(in_shape)}")
    for path, got, want in zip(tree_paths(fresh), tree_leaves(params), tree_leaves(fresh)):
        if np.shape(got) != np.shape(want):
            raise ExportError(f"params leaf {path or '(root)'} has shape {np.shape(got)}, expected {np.shape(want)}")
        if not np.all(np.isfinite(got)):
            raise ExportError(f"params leaf {path or '(root)'} holds NaN or infinite values")


def _takes_ids(model: Layer) -> bool:
    """Whether the model's first layer, looking into ``serial``, is an Embedding (int ids in)."""
    while isinstance(model, Serial) and model.layers:
        model = model.layers[0]
    return isinstance(model, Embedding)


def to_onnx(
    model: Layer,
    params: Any,
    in_shape: Shape,
    *,
    state: Any = None,
    path: str | os.PathLike[str] | None = None,
    opset: int = DEFAULT_OPSET,
    dtype: Any = None,
    exporters: dict[type[Layer], Exporter] | None = None,
) -> onnx.ModelProto:
    """The inference graph of ``model`` with ``params`` (and ``state``) as an ONNX model.

    The graph computes ``model.apply(params, x, state=state)`` (evaluation mode) for ``x`` of shape
    ``(N, *in_shape)`` with any batch size ``N``. It has one input ``"input"`` ``(N, *in_shape)``
    and one output ``"output"`` ``(N, *out_shape)``; parameters are initializers named as PyTorch
    names the equivalent modules' state (``"0.weight"``, ``"0.bias"``, ``"2.running_var"``). The
    input is of the graph's float type, or int64 ids when the model's first layer (looking into
    ``serial``) is an :class:`~fnnet.layers.embedding.Embedding`. The model is checked with
    ``onnx.checker`` before it is returned. See the module docstring for the layers it exports.

    Args:
        model: a layer or pipeline whose every layer has an entry in :data:`ONNX_EXPORTERS`.
        params: ``model``'s parameters, as ``model.init`` shapes them.
        in_shape: the input shape without the batch axis, e.g. ``(1, 28, 28)``.
        state: the model state (BatchNorm's running statistics, updated at least once, finite,
            variances >= 0); ``None`` for a model without state.
        path: if given, the model is also written there (atomically).
        opset: the ONNX operator set, from :data:`MIN_OPSET` to the newest the installed ``onnx``
            knows (GELU is one ``Gelu`` node from opset 20, composed of ``Erf`` or ``Tanh`` before).
        dtype: the graph's floating-point type, float32 or float64; default the params' dtype
            (float32 for a model without params). ONNX Runtime runs convolutions, average
            pooling, exact GELU and the recurrent layers in float32 only (see the module docstring).
        exporters: layer type -> :data:`Exporter` (default :data:`ONNX_EXPORTERS`).
    Returns:
        The ``onnx.ModelProto``.
    Raises:
        ExportError: a layer that cannot be exported (the message names its place and kind),
            params or state that do not fit the model.
        ImportError: the ``onnx`` package is missing (``pip install 'fnnet[export]'``).
        OSError: ``path`` cannot be written (``IsADirectoryError`` for a directory, a missing
            folder); a file already there is replaced, or left as it was when writing fails.

    >>> import numpy as np, fnnet
    >>> from fnnet.export import to_onnx
    >>> model = fnnet.serial(fnnet.Affine(8), fnnet.ReLU(), fnnet.Affine(3))
    >>> params, _ = model.init(fnnet.key(0), (4,))
    >>> m = to_onnx(model, params, (4,))
    >>> [n.op_type for n in m.graph.node], [i.name for i in m.graph.initializer]
    (['Gemm', 'Relu', 'Gemm'], ['0.weight', '0.bias', '2.weight', '2.bias'])

    A language model reads int64 ids ``(N, T)``:

    >>> lm = fnnet.serial(fnnet.Embedding(10, 4), fnnet.LSTM(6), fnnet.TimeAffine(10))
    >>> params, _ = lm.init(fnnet.key(0), (7,))
    >>> m = to_onnx(lm, params, (7,))
    >>> [n.op_type for n in m.graph.node]
    ['Gather', 'Transpose', 'LSTM', 'Squeeze', 'Transpose', 'MatMul', 'Add']
    >>> import onnx
    >>> m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    True
    """
    _require_onnx()
    import onnx

    newest = int(onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ExportError(f"opset must be an int from {MIN_OPSET} to {newest} (the installed onnx's newest), got {opset!r}")
    in_shape = tuple(int(s) for s in in_shape)
    out_shape = model.out_shape(in_shape)
    _check_params(model, params, in_shape)
    g = GraphBuilder(_graph_dtype(params, dtype), opset, ONNX_EXPORTERS if exporters is None else exporters)
    if _takes_ids(model):
        g.ids.add(INPUT_NAME)
    last = g.emit(model, params, state, INPUT_NAME, in_shape, "")
    if last == INPUT_NAME:
        g.nodes.append(onnx.helper.make_node("Identity", [INPUT_NAME], [OUTPUT_NAME], name=OUTPUT_NAME))
    else:
        for node in g.nodes:  # the last tensor becomes the graph's output
            for names in (node.input, node.output):
                renamed = [OUTPUT_NAME if name == last else name for name in names]
                del names[:]
                names.extend(renamed)
    elem = onnx.helper.np_dtype_to_tensor_dtype(g.dtype)
    in_elem = onnx.TensorProto.INT64 if INPUT_NAME in g.ids else elem
    graph = onnx.helper.make_graph(
        g.nodes,
        f"fnnet {kind(model)}",
        [onnx.helper.make_tensor_value_info(INPUT_NAME, in_elem, [BATCH_AXIS, *in_shape])],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, elem, [BATCH_AXIS, *out_shape])],
        g.initializers,
    )
    opsets = [onnx.helper.make_opsetid("", opset)]
    model_proto = onnx.helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=onnx.helper.find_min_ir_version_for(opsets),
        producer_name="fnnet",
        producer_version=__version__,
    )
    onnx.checker.check_model(model_proto)
    if path is not None:
        atomic_write_bytes(path, model_proto.SerializeToString())
    return model_proto
