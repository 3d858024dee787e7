"""fnnet.runtime: opt-in process settings."""

from __future__ import annotations

import platform

import numpy as np

from fnnet.runtime import keep_heap


def test_keep_heap_is_accepted_on_glibc_and_changes_no_result() -> None:
    a = np.arange(12.0).reshape(3, 4)
    before = a @ a.T
    ok = keep_heap()
    assert ok is (platform.libc_ver()[0] == "glibc")
    np.testing.assert_array_equal(a @ a.T, before)
