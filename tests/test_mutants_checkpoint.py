"""Regression test from a mutation-testing pass: without the stored-size check a lying zip
directory was still refused, but for a wrong reason (a data-size or CRC error on good data)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from fnnet import checkpoint
from fnnet.errors import FormatError


@pytest.mark.parametrize("delta", [8, -4])
def test_a_stored_member_whose_directory_sizes_disagree_is_named_as_such(tmp_path: Path, delta: int) -> None:
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"w": np.arange(3, dtype=np.float32)})
    data = bytearray(path.read_bytes())
    i = data.find(b"PK\x01\x02")  # the central directory entries
    patched = 0
    while i >= 0:
        name_len = struct.unpack_from("<H", data, i + 28)[0]
        if bytes(data[i + 46 : i + 46 + name_len]) == b"w.npy":
            assert struct.unpack_from("<H", data, i + 10)[0] == 0  # stored, not deflated
            size = struct.unpack_from("<I", data, i + 24)[0]
            struct.pack_into("<I", data, i + 24, size + delta)  # the uncompressed size it claims
            patched += 1
        i = data.find(b"PK\x01\x02", i + 4)
    assert patched == 1
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=rf"'w\.npy'.*is stored with {size} bytes but claims {size + delta}$"):
        checkpoint.load(path, {"w": np.zeros(3, np.float32)})
