"""Type aliases shared across fnnet."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

#: A NumPy array of floating point numbers (float16, float32 or float64).
Array = NDArray[Any]
#: A shape without the batch dimension, e.g. ``(784,)`` or ``(1, 28, 28)``.
Shape = tuple[int, ...]
#: Any nested structure of arrays (tuples, lists, dicts, NamedTuples, attrs records).
Tree = Any

DEFAULT_DTYPE = np.float32
