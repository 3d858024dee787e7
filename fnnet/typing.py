"""Public type aliases for code that uses fnnet: arrays, shapes and parameter trees.

>>> from fnnet.typing import Array, Shape
>>> import numpy as np
>>> x: Array = np.zeros((2, 3), np.float32)
>>> s: Shape = x.shape[1:]
>>> s
(3,)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Array", "Shape", "Tree", "DEFAULT_DTYPE"]

Array = NDArray[Any]
"""A NumPy array of floating point numbers (float16, float32 or float64).

>>> import numpy as np
>>> from fnnet.typing import Array
>>> x: Array = np.zeros((2, 784), np.float32)     # a batch: (N, 784)
>>> x.shape
(2, 784)
"""

Shape = tuple[int, ...]
"""A shape without the batch dimension, e.g. ``(784,)`` or ``(1, 28, 28)``.

>>> import fnnet
>>> from fnnet.typing import Shape
>>> in_shape: Shape = (1, 28, 28)
>>> fnnet.Flatten().out_shape(in_shape)
(784,)
"""

Tree = Any
"""Any nested structure of arrays (tuples, lists, dicts, NamedTuples, attrs records).

>>> import numpy as np, fnnet
>>> from fnnet.typing import Tree
>>> params: Tree = fnnet.serial(fnnet.Affine(3), fnnet.ReLU()).init(fnnet.key(0), (4,))[0]
>>> fnnet.tree_paths(params)
['0/w', '0/b']
"""

DEFAULT_DTYPE = np.float32
"""The dtype of parameters fnnet creates.

>>> import fnnet
>>> from fnnet.typing import DEFAULT_DTYPE
>>> params, _ = fnnet.Affine(2).init(fnnet.key(0), (3,))
>>> params.w.dtype == DEFAULT_DTYPE
True
"""
