"""Process-wide runtime settings for training.

Importing fnnet changes nothing about the process. Building a training step
(:func:`fnnet.train.make_train_step`, and so :func:`fnnet.train.fit` and ``fnnet train``) calls
:func:`prepare_training` once, which asks glibc to keep freed memory for reuse (:func:`keep_heap`):
a step's large temporary arrays then reuse pages the process already holds instead of fresh pages
the kernel must fault in and zero at every step. Set the environment variable ``FNNET_KEEP_HEAP=0``
to leave the allocator alone. Neither changes any result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["KEEP_HEAP_ENV", "keep_heap", "prepare_training"]

KEEP_HEAP_ENV = "FNNET_KEEP_HEAP"
"""Environment variable: ``0`` stops :func:`prepare_training` from changing the allocator.

>>> from fnnet.runtime import KEEP_HEAP_ENV
>>> KEEP_HEAP_ENV
'FNNET_KEEP_HEAP'
"""

_prepared: list[bool] = []  # prepare_training's outcome, once per process

#: glibc ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD and M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_heap(trim_bytes: int = 1 << 30, mmap_bytes: int = 32 << 20) -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    By default glibc unmaps large freed blocks and trims the heap, so every training step's
    arrays are fresh pages that the kernel must fault in and zero (see the README's Speed section). This is a process-wide allocator setting, the same as the environment
    variables ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_``; it changes no result, only
    speed and resident memory.

    Returns:
        Whether both settings were accepted (False where the C library is not glibc).

    >>> from fnnet.runtime import keep_heap
    >>> isinstance(keep_heap(), bool)
    True
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_bytes)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_bytes))
    except (OSError, AttributeError):
        return False


def prepare_training() -> bool:
    """Make the process ready for training steps, once: :func:`keep_heap` unless ``$FNNET_KEEP_HEAP``
    is ``0``. Later calls return the first call's outcome without touching the allocator again.

    Returns:
        Whether glibc keeps freed memory for reuse because of the first call (False when opted
        out or where the C library is not glibc).

    >>> from fnnet.runtime import prepare_training
    >>> prepare_training() is prepare_training()
    True
    """
    if not _prepared:
        _prepared.append(os.environ.get(KEEP_HEAP_ENV, "").strip() != "0" and keep_heap())
    return _prepared[0]
