"""Fixtures shared by the test modules (plain helper functions are in ``_helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _helpers import TINY_TEST, TINY_TRAIN, write_image_set

from fnnet.datasets import sources
from fnnet.layers import _patches


@pytest.fixture(params=[None, 1], ids=["one-chunk", "tiny-chunks"])
def chunking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test as is, and again with a patch-chunk budget so small that each sample is its own
    chunk (the convolution kernels then loop over the batch)."""
    if request.param is not None:
        monkeypatch.setattr(_patches, "CHUNK_BYTES", request.param)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ``$FNNET_DATA``, an empty user cache and an empty system data directory, all under
    ``tmp_path`` (returned): a data-set look-up then sees only what the test puts there."""
    monkeypatch.delenv("FNNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "_SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data set directory of 4x4 images (``TINY_TRAIN`` training and ``TINY_TEST`` test items)."""
    d: Path = write_image_set(tmp_path_factory.mktemp("tiny"), TINY_TRAIN, TINY_TEST, 4)
    return d
