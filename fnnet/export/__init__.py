"""Models out of fnnet (and weights into it): ONNX graphs and PyTorch state dicts, without torch.

- :func:`to_onnx`: an fnnet model and its parameters as an ONNX inference graph (needs the ``onnx``
  package: ``pip install 'fnnet[export]'``; ``import fnnet`` does not import it).
- :func:`to_torch_state_dict` / :func:`from_torch_state_dict`: parameters as the NumPy arrays of a
  PyTorch ``state_dict`` of the equivalent ``torch.nn.Sequential``, and back (from a dict or an
  ``.npz`` file), with the layout changes (``Linear`` weights are ``(out, in)``) done here.

Both cover the sequence layers too (Embedding, TimeAffine, RNN, LSTM, GRU): a language model
``serial(Embedding(V, D), LSTM(H), TimeAffine(V))`` becomes an ONNX graph reading int64 ids, or
the arrays of ``nn.Embedding``, ``nn.LSTM`` and ``nn.Linear`` (gate blocks reordered).

>>> import fnnet
>>> model = fnnet.serial(fnnet.Affine(3), fnnet.ReLU(), fnnet.Affine(2))
>>> params, _ = model.init(fnnet.key(0), (4,))
>>> sorted(fnnet.export.to_torch_state_dict(model, params))
['0.bias', '0.weight', '2.bias', '2.weight']
"""

from fnnet.export.onnx_graph import (
    DEFAULT_OPSET,
    MIN_OPSET,
    ONNX_EXPORTERS,
    ExportError,
    Exporter,
    GraphBuilder,
    to_onnx,
)
from fnnet.export.torch_state import TORCH_MAPPINGS, TorchMapping, from_torch_state_dict, to_torch_state_dict

__all__ = [
    "to_onnx",
    "ONNX_EXPORTERS",
    "Exporter",
    "GraphBuilder",
    "ExportError",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "to_torch_state_dict",
    "from_torch_state_dict",
    "TORCH_MAPPINGS",
    "TorchMapping",
]
