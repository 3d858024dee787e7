"""Regression test from a third mutation-testing pass over checkpoint.save: a manifest too costly
for load to read (many small containers in few bytes) is refused at save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fnnet import checkpoint


def test_save_refuses_a_meta_of_many_small_containers_that_load_would_refuse(tmp_path: Path) -> None:
    # 750 kB of JSON, but a quarter of a million dicts to build when read
    meta: dict[str, list[dict[str, int]]] = {"x": [{}] * 250_000}
    with pytest.raises(ValueError, match="more than a checkpoint may hold"):
        checkpoint.save(tmp_path / "c.npz", {"w": np.zeros(2)}, meta=meta)
    assert list(tmp_path.iterdir()) == []

