"""PyTorch state dicts of the sequence layers without torch: keys, the gate blocks checked against
NumPy steps written from PyTorch's equations, round trips, and the ways a state dict can be wrong."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import assert_bit_identical, call_unchanged, normal, rng

import fnnet
from fnnet.errors import FormatError
from fnnet.export import from_torch_state_dict, to_torch_state_dict
from fnnet.layers.base import Layer
from fnnet.tree import tree_leaves, tree_map, tree_structure
from fnnet.typing import Array

V, D, H, T = 9, 3, 4, 5
TOL = 1e-5


def _sigmoid(a: Array) -> Array:
    out: Array = 1 / (1 + np.exp(-a))
    return out


def torch_rnn(sd: dict[str, Array], prefix: str, kind: str, x: Array) -> Array:
    """All hidden states ``(N, T, H)`` of a one-layer ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with
    ``batch_first=True`` and zero initial state, written from PyTorch's documented equations (float64)."""
    w_ih, w_hh, b_ih, b_hh = (np.asarray(sd[f"{prefix}.{k}_l0"], np.float64) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    hdim = w_hh.shape[1]
    n = x.shape[0]
    h, c = np.zeros((n, hdim)), np.zeros((n, hdim))
    hs = []
    for t in range(x.shape[1]):
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        if kind == "RNN":
            h = np.tanh(gi + gh)
        elif kind == "LSTM":  # rows (i, f, g, o)
            a = gi + gh
            i, f, g, o = (a[:, k * hdim : (k + 1) * hdim] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:  # GRU, rows (r, z, n)
            r = _sigmoid(gi[:, :hdim] + gh[:, :hdim])
            z = _sigmoid(gi[:, hdim : 2 * hdim] + gh[:, hdim : 2 * hdim])
            nn = np.tanh(gi[:, 2 * hdim :] + r * gh[:, 2 * hdim :])
            h = (1 - z) * nn + z * h
        hs.append(h)
    return np.stack(hs, axis=1)


def _noisy(model: Layer, in_shape: tuple[int, ...], seed: int) -> Any:
    params, _ = model.init(fnnet.key(seed), in_shape)
    g = rng(seed)
    return tree_map(lambda a: (a + 0.3 * g.standard_normal(a.shape)).astype(a.dtype), params)


def _torch_like(kind: str, seed: int) -> dict[str, Array]:
    """A state dict as torch would hold it for ``nn.<kind>(D, H)``: every array random, ``bias_hh`` too."""
    gates = {"RNN": 1, "LSTM": 4, "GRU": 3}[kind]
    g = rng(seed)
    shapes = {"weight_ih_l0": (gates * H, D), "weight_hh_l0": (gates * H, H), "bias_ih_l0": (gates * H,), "bias_hh_l0": (gates * H,)}
    return {f"0.{k}": (0.5 * g.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}






KINDS: dict[str, Callable[..., Layer]] = {"RNN": fnnet.RNN, "LSTM": fnnet.LSTM, "GRU": fnnet.GRU}


@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_weights_in_give_what_torchs_equations_give(kind: str) -> None:
    model = fnnet.serial(KINDS[kind](H))
    sd = _torch_like(kind, 1)
    params, state = from_torch_state_dict(model, (T, D), sd)
    x = normal((3, T, D), 2, dtype=np.float32)
    got = model.apply(params, x, state=state)
    want = torch_rnn(sd, "0", kind, x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("kind", list(KINDS))
def test_fnnet_weights_out_give_what_apply_gives_under_torchs_equations(kind: str) -> None:
    model = fnnet.serial(KINDS[kind](H))
    params = _noisy(model, (T, D), 3)
    sd = to_torch_state_dict(model, params)
    assert list(sd) == ["0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0"]
    x = normal((3, T, D), 4, dtype=np.float32)
    np.testing.assert_allclose(torch_rnn(sd, "0", kind, x.astype(np.float64)), model.apply(params, x), rtol=TOL, atol=TOL)
    want_hh = np.zeros_like(sd["0.bias_hh_l0"])
    if kind == "GRU":
        want_hh[2 * H :] = params[0].bhn
    np.testing.assert_array_equal(sd["0.bias_hh_l0"], want_hh)
    if kind == "LSTM":  # rows (i, f, g, o) from fnnet's columns (f, g, i, o)
        wx = params[0].wx
        np.testing.assert_array_equal(sd["0.weight_ih_l0"][:H], wx[:, 2 * H : 3 * H].T)
        np.testing.assert_array_equal(sd["0.weight_ih_l0"][H : 2 * H], wx[:, :H].T)


def _pipelines() -> list[tuple[fnnet.Serial, list[str]]]:
    rnn_keys = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    return [
        (fnnet.serial(fnnet.Embedding(V, D), fnnet.LSTM(H), fnnet.TimeAffine(V)),
         ["0.weight", *(f"1.{k}" for k in rnn_keys), "2.weight", "2.bias"]),
        (fnnet.serial(fnnet.Embedding(V, D), fnnet.GRU(H, return_sequences=False), fnnet.Affine(2)),
         ["0.weight", *(f"1.{k}" for k in rnn_keys), "2.weight", "2.bias"]),
        (fnnet.serial(fnnet.Embedding(V, D), fnnet.RNN(H, stateful=True), fnnet.TimeAffine(V)),
         ["0.weight", *(f"1.{k}" for k in rnn_keys), "2.weight", "2.bias"]),
    ]  # fmt: skip


def test_pipelines_round_trip_exactly_through_a_dict_and_an_npz_file(tmp_path: Path) -> None:
    for i, (model, keys) in enumerate(_pipelines()):
        params = _noisy(model, (T,), 5 + i)
        sd = call_unchanged(lambda p: to_torch_state_dict(model, p), params, readonly=True)
        assert list(sd) == keys
        np.testing.assert_array_equal(sd["0.weight"], params[0].w)  # nn.Embedding: (V, D) as is
        np.testing.assert_array_equal(sd["2.weight"], params[2].w.T)  # nn.Linear: (out, in)
        assert all(a.flags.c_contiguous for a in sd.values())
        assert_bit_identical(from_torch_state_dict(model, (T,), sd), (params, (None, None, None)))
        arrays: dict[str, Any] = dict(sd)
        np.savez(tmp_path / f"{i}.npz", **arrays)  # as the torch side writes them
        assert_bit_identical(from_torch_state_dict(model, (T,), tmp_path / f"{i}.npz"), (params, (None, None, None)))


def test_a_torch_language_model_in_gives_torchs_logits() -> None:
    model = _pipelines()[0][0]
    g = rng(8)
    sd = {"0.weight": g.standard_normal((V, D)).astype(np.float32), **{k.replace("0.", "1.", 1): v for k, v in _torch_like("LSTM", 9).items()},
          "2.weight": g.standard_normal((V, H)).astype(np.float32), "2.bias": g.standard_normal(V).astype(np.float32)}  # fmt: skip
    params, state = from_torch_state_dict(model, (T,), sd)
    ids = g.integers(0, V, (2, T))
    hs = torch_rnn(sd, "1", "LSTM", sd["0.weight"][ids].astype(np.float64))
    want = hs @ sd["2.weight"].T.astype(np.float64) + sd["2.bias"]
    np.testing.assert_allclose(model.apply(params, ids, state=state), want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda sd: sd.pop("1.bias_hh_l0"), r"^state dict: key '1\.bias_hh_l0': missing: layer 1 \(LSTM\)'s bias_hh_l0 \(4H,\) of shape \(16,\)"),
        (lambda sd: sd.update({"1.weight_ih_l0": sd["1.weight_ih_l0"].T}),
         r"^state dict: key '1\.weight_ih_l0': expected layer 1 \(LSTM\)'s weight_ih_l0 \(4H, D\) of shape \(16, 3\), got shape \(3, 16\)$"),
        (lambda sd: sd.update({"1.weight_hh_l0": np.ones((12, 4), np.float32)}),
         r"^state dict: key '1\.weight_hh_l0': expected .* of shape \(16, 4\), got shape \(12, 4\)$"),
        (lambda sd: sd.update({"1.weight_ih_l1": np.ones((16, 4), np.float32)}),
         r"^state dict: key '1\.weight_ih_l1': unexpected: no layer of the model takes it$"),
        (lambda sd: sd.update({"1.bias_ih_l0": np.arange(16)}), r"key '1\.bias_ih_l0': expected .* as floating point values, got dtype int64$"),
        (lambda sd: sd["1.bias_hh_l0"].__setitem__(3, np.nan), r"key '1\.bias_hh_l0': layer 1 \(LSTM\)'s bias_hh_l0 \(4H,\) holds NaN"),
        (lambda sd: sd.update({"0.weight": np.ones((V, D + 1), np.float32)}),
         r"^state dict: key '0\.weight': expected layer 0 \(Embedding\)'s weight \(V, D\) of shape \(9, 3\), got shape \(9, 4\)$"),
        (lambda sd: sd.update({"2.weight": sd["2.weight"].T}),
         r"^state dict: key '2\.weight': expected layer 2 \(TimeAffine\)'s Linear weight \(out, in\) of shape \(9, 4\)"),
    ],
    ids=["missing", "transposed", "gates", "two-layers", "int", "nan", "embedding", "time-affine"],
)
def test_bad_state_dicts_name_the_key(change: Any, pattern: str) -> None:
    model = _pipelines()[0][0]
    sd = to_torch_state_dict(model, _noisy(model, (T,), 7))
    change(sd)
    with pytest.raises(FormatError, match=pattern):
        from_torch_state_dict(model, (T,), sd)


# --- against torch itself (skipped unless torch is installed) ------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize("kind", list(KINDS))
def test_the_same_layers_in_torch_give_the_same_outputs(kind: str) -> None:
    import torch
    from torch import nn

    model = fnnet.serial(fnnet.Embedding(V, D), KINDS[kind](H), fnnet.TimeAffine(V))
    params = _noisy(model, (T,), 11)
    sd = to_torch_state_dict(model, params)
    modules = (nn.Embedding(V, D), getattr(nn, kind)(D, H, batch_first=True), nn.Linear(H, V))
    for i, module in enumerate(modules):
        module.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v) for k, v in sd.items() if k.startswith(f"{i}.")})
    ids = rng(12).integers(0, V, (3, T))
    with torch.no_grad():
        want = modules[2](modules[1](modules[0](torch.from_numpy(ids)))[0]).numpy()
    np.testing.assert_allclose(model.apply(params, ids), want, rtol=TOL, atol=TOL)
    torch_sd = {f"{i}.{k}": v.numpy() for i, m in enumerate(modules) for k, v in m.state_dict().items()}
    back, _ = from_torch_state_dict(model, (T,), torch_sd)
    np.testing.assert_allclose(model.apply(back, ids), want, rtol=TOL, atol=TOL)
