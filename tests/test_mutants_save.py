"""Regression tests from a third mutation-testing pass over fnnet.checkpoint: a manifest too costly
for load to read (many small containers in few bytes) is refused at save, and a Key record in
meta with another entry beside it is refused at load instead of being read as a Key."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fnnet
from fnnet import checkpoint
from fnnet.errors import FormatError


def test_save_refuses_a_meta_of_many_small_containers_that_load_would_refuse(tmp_path: Path) -> None:
    # 750 kB of JSON, but a quarter of a million dicts to build when read
    meta: dict[str, list[dict[str, int]]] = {"x": [{}] * 250_000}
    with pytest.raises(ValueError, match="more than a checkpoint may hold"):
        checkpoint.save(tmp_path / "c.npz", {"w": np.zeros(2)}, meta=meta)
    assert list(tmp_path.iterdir()) == []



def _with_manifest(path: Path, text: str) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    npy = io.BytesIO()
    np.lib.format.write_array(npy, np.frombuffer(text.encode(), np.uint8))
    members["__manifest__.npy"] = npy.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


def test_a_key_record_with_another_entry_beside_it_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    checkpoint.save(path, {"w": np.zeros(2)}, meta={"k": fnnet.key(3)})
    assert checkpoint.read_meta(path) == {"k": fnnet.key(3)}
    text = json.dumps(checkpoint.read_manifest(path), default=lambda k: {"__fnnet_key__": {"seed": k.seed, "path": list(k.path)}})
    old = '{"__fnnet_key__": {"seed": 3, "path": []}}'
    assert old in text
    _with_manifest(path, text.replace(old, '{"__fnnet_key__": {"seed": 3, "path": []}, "note": 1}'))
    with pytest.raises(FormatError, match="__fnnet_key__"):
        checkpoint.read_meta(path)
