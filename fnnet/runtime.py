"""Process-wide runtime settings for training applications (opt-in; the library never calls them).

Importing fnnet changes nothing about the process. An application that trains for a long time
(``fnnet train``, the benchmarks) may call :func:`keep_heap` once at start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_heap"]

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
