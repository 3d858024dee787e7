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

#: A NumPy array of floating point numbers (float16, float32 or float64).
Array = NDArray[Any]
#: A shape without the batch dimension, e.g. ``(784,)`` or ``(1, 28, 28)``.
Shape = tuple[int, ...]
#: Any nested structure of arrays (tuples, lists, dicts, NamedTuples, attrs records).
Tree = Any

#: The dtype of parameters fnnet creates.
DEFAULT_DTYPE = np.float32
