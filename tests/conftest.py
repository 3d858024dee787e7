"""Fixtures shared by the test modules (plain helper functions are in ``_helpers.py``)."""

from __future__ import annotations

import pytest

from fnnet.layers import _patches


@pytest.fixture(params=[None, 1], ids=["one-chunk", "tiny-chunks"])
def chunking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test as is, and again with a patch-chunk budget so small that each sample is its own
    chunk (the convolution kernels then loop over the batch)."""
    if request.param is not None:
        monkeypatch.setattr(_patches, "CHUNK_BYTES", request.param)
