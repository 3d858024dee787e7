"""PyTorch state dicts without torch: keys, layouts, round trips, and every way a file can be wrong."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from _helpers import assert_bit_identical, call_unchanged, global_rng_untouched, normal, rng

import fnnet
from fnnet.errors import FormatError
from fnnet.export import ExportError, from_torch_state_dict, to_torch_state_dict
from fnnet.layers.norm import BatchNormState
from fnnet.tree import tree_leaves, tree_map, tree_structure
from fnnet.typing import Shape

IN_SHAPE = (2, 6, 6)


def _model() -> fnnet.Serial:
    """Every mapped kind, at the positions a torch ``nn.Sequential`` of the same modules numbers."""
    return fnnet.serial(
        fnnet.Conv2D(4, 3, pad=1),  # 0: Conv2d(2, 4, 3, padding=1)
        fnnet.BatchNorm(),  # 1: BatchNorm2d(4, eps=1e-6)
        fnnet.ReLU(),  # 2
        fnnet.MaxPool2D(2),  # 3: MaxPool2d(2) -> (4, 3, 3)
        fnnet.GroupNorm(2),  # 4: GroupNorm(2, 4, eps=1e-5)
        fnnet.residual(fnnet.serial(fnnet.Conv2D(4, 3, pad=1, groups=2), fnnet.Tanh())),  # 5: Residual(Sequential(...))
        fnnet.residual(  # 6: Residual(Conv2d(4, 6, 3, 2, 1), shortcut=Sequential(Conv2d(4, 6, 1, 2), BatchNorm2d))
            fnnet.Conv2D(6, 3, stride=2, pad=1), shortcut=fnnet.serial(fnnet.Conv2D(6, 1, stride=2), fnnet.BatchNorm())
        ),  # -> (6, 2, 2)
        fnnet.concat(fnnet.Conv2D(3, 1), fnnet.Identity()),  # 7: Concat([Conv2d(6, 3, 1), Identity()]) -> (9, 2, 2)
        fnnet.add_branches(fnnet.Conv2D(4, 1), fnnet.Conv2D(4, 3, pad=1)),  # 8: AddBranches([...]) -> (4, 2, 2)
        fnnet.Flatten(),  # 9: Flatten()
        fnnet.Affine(5),  # 10: Linear(16, 5)
        fnnet.LayerNorm(),  # 11: LayerNorm(5, eps=1e-5)
        fnnet.BatchNorm(),  # 12: BatchNorm1d(5, eps=1e-6)
        fnnet.GELU(),  # 13: GELU()
        fnnet.Dropout(0.3),  # 14: Dropout(0.3)
        fnnet.Affine(3),  # 15: Linear(5, 3)
    )


BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
KEYS = [
    "0.weight", "0.bias", *(f"1.{k}" for k in BN), "4.weight", "4.bias",
    "5.inner.0.weight", "5.inner.0.bias",
    "6.inner.weight", "6.inner.bias", "6.shortcut.0.weight", "6.shortcut.0.bias", *(f"6.shortcut.1.{k}" for k in BN),
    "7.branches.0.weight", "7.branches.0.bias",
    "8.branches.0.weight", "8.branches.0.bias", "8.branches.1.weight", "8.branches.1.bias",
    "10.weight", "10.bias", "11.weight", "11.bias", *(f"12.{k}" for k in BN), "15.weight", "15.bias",
]  # fmt: skip


def _random(model: fnnet.Serial, in_shape: Shape, seed: int) -> tuple[Any, Any]:
    """Random params (every leaf noisy) and random running statistics, counted as updated."""
    params, _ = model.init(fnnet.key(seed), in_shape)
    g = rng(seed)
    params = tree_map(lambda a: (a + 0.3 * g.standard_normal(a.shape)).astype(a.dtype), params)

    def fill(s: Any) -> Any:
        if isinstance(s, BatchNormState):
            c = s.mean.shape
            return BatchNormState(g.normal(size=c).astype(np.float32), g.uniform(0.2, 3, c).astype(np.float32),
                                  np.asarray(11, np.int64))  # fmt: skip
        return tuple(fill(v) for v in s) if isinstance(s, tuple) else s

    return params, fill(model.init_state(in_shape))


def _savez(path: Path, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` as the torch side would: ``np.savez(path, **arrays)``."""
    np.savez(path, **arrays)




def test_keys_follow_sequential_positions_and_layouts_are_torchs() -> None:
    model = _model()
    params, state = _random(model, IN_SHAPE, 0)
    sd = to_torch_state_dict(model, params, state)
    assert list(sd) == KEYS
    np.testing.assert_array_equal(sd["10.weight"], params[10].w.T)  # Linear: (out, in)
    assert sd["10.weight"].shape == (5, 16) and sd["10.weight"].flags.c_contiguous
    np.testing.assert_array_equal(sd["0.weight"], params[0].w)  # Conv2d: the same (FN, C, FH, FW)
    np.testing.assert_array_equal(sd["5.inner.0.weight"], params[5][0][0].w)
    np.testing.assert_array_equal(sd["6.shortcut.1.running_mean"], state[6][1][1].mean)
    np.testing.assert_array_equal(sd["8.branches.1.weight"], params[8][1].w)
    np.testing.assert_array_equal(sd["1.running_var"], state[1].var)
    assert sd["1.num_batches_tracked"].shape == () and sd["1.num_batches_tracked"].dtype == np.int64
    assert int(sd["1.num_batches_tracked"]) == 11
    sd["10.weight"][0, 0] = 99.0  # the arrays are new: writing into one leaves params alone
    assert params[10].w[0, 0] != 99.0


def test_round_trip_through_a_dict_and_an_npz_file(tmp_path: Path) -> None:
    model = _model()
    params, state = _random(model, IN_SHAPE, 1)
    sd = to_torch_state_dict(model, params, state)
    back = from_torch_state_dict(model, IN_SHAPE, sd)
    assert_bit_identical(back, (params, state))
    _savez(tmp_path / "sd.npz", sd)
    assert_bit_identical(from_torch_state_dict(model, IN_SHAPE, tmp_path / "sd.npz"), (params, state))
    x = normal((3, *IN_SHAPE), 2, dtype=np.float32)
    np.testing.assert_array_equal(model.apply(back[0], x, state=back[1]), model.apply(params, x, state=state))


def test_convolutions_of_any_rank_and_grouping_keep_their_weights() -> None:
    model = fnnet.serial(fnnet.Conv1D(4, 3, groups=2), fnnet.ReLU(), fnnet.Flatten(), fnnet.Affine(2))
    params, state = _random(model, (6, 9), 7)
    sd = to_torch_state_dict(model, params, state)
    assert {k: v.shape for k, v in sd.items()} == {"0.weight": (4, 3, 3), "0.bias": (4,), "3.weight": (2, 28), "3.bias": (2,)}
    assert_bit_identical(from_torch_state_dict(model, (6, 9), sd), (params, state))
    normed = fnnet.serial(fnnet.Conv1D(4, 3), fnnet.BatchNorm())  # nn.Conv1d, nn.BatchNorm1d
    params, state = _random(normed, (6, 9), 9)
    sd = to_torch_state_dict(normed, params, state)
    assert {k: v.shape for k, v in sd.items() if k.startswith("1.")} == {
        "1.weight": (4,), "1.bias": (4,), "1.running_mean": (4,), "1.running_var": (4,), "1.num_batches_tracked": ()}
    assert_bit_identical(from_torch_state_dict(normed, (6, 9), sd), (params, state))
    grouped = fnnet.serial(fnnet.Conv2D(6, 3, groups=3))
    params, state = _random(grouped, (3, 5, 5), 8)
    assert to_torch_state_dict(grouped, params)["0.weight"].shape == (6, 1, 3, 3)  # nn.Conv2d(3, 6, 3, groups=3)
    assert_bit_identical(from_torch_state_dict(grouped, (3, 5, 5), to_torch_state_dict(grouped, params)), (params, state))


def test_float64_arrays_take_the_models_dtype_and_num_batches_tracked_is_optional() -> None:
    model = fnnet.serial(fnnet.Affine(3), fnnet.BatchNorm())
    sd = {"0.weight": np.ones((3, 4)), "0.bias": np.zeros(3), "1.weight": np.ones(3), "1.bias": np.zeros(3),
          "1.running_mean": np.zeros(3), "1.running_var": np.ones(3)}  # fmt: skip
    params, state = from_torch_state_dict(model, (4,), sd)
    assert all(leaf.dtype == np.float32 for leaf in tree_leaves(params))
    assert int(state[1].count) == 1  # statistics given without a count are taken as updated
    params, state = from_torch_state_dict(model, (4,), {**sd, "1.num_batches_tracked": np.asarray(0)})
    assert int(state[1].count) == 0  # torch never updated them: fnnet's evaluation will refuse them


# --- errors --------------------------------------------------------------------------------------


def _affine_sd() -> tuple[fnnet.Serial, dict[str, Any]]:
    model = fnnet.serial(fnnet.Affine(3), fnnet.ReLU(), fnnet.Affine(2))
    params, _ = model.init(fnnet.key(0), (4,))
    return model, to_torch_state_dict(model, params)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda sd: sd.pop("2.bias"), r"^state dict: key '2\.bias': missing: layer 2 \(Affine\)'s bias of shape \(2,\)$"),
        (lambda sd: sd.update({"3.weight": np.ones(2)}), r"^state dict: key '3\.weight': unexpected: no layer"),
        (lambda sd: sd.update({"0.weight": sd["0.weight"].T}),
         r"^state dict: key '0\.weight': expected layer 0 \(Affine\)'s Linear weight \(out, in\) of shape \(3, 4\), got shape \(4, 3\)$"),
        (lambda sd: sd.update({"0.bias": np.arange(3)}), r"key '0\.bias': expected .* as floating point values, got dtype int64"),
        (lambda sd: sd.update({"0.bias": np.array([1.0, np.nan, 0.0])}), r"key '0\.bias': layer 0 \(Affine\)'s bias holds NaN"),
        (lambda sd: sd.update({"2.weight": sd.pop("2.weight"), "1.weight": np.ones((2, 3))}),
         r"unexpected: no layer of the model takes it$"),
    ],
    ids=["missing", "extra", "transposed", "int", "nan", "misplaced"],
)
def test_bad_state_dicts_name_the_key(change: Any, pattern: str) -> None:
    model, sd = _affine_sd()
    change(sd)
    with pytest.raises(FormatError, match=pattern):
        from_torch_state_dict(model, (4,), sd)


def test_a_missing_key_lists_the_keys_not_taken() -> None:
    model, sd = _affine_sd()
    sd["3.weight"] = sd.pop("2.weight")  # a module position off by one
    with pytest.raises(FormatError, match=r"missing: .*keys not taken so far: '2\.bias', '3\.weight'"):
        from_torch_state_dict(model, (4,), sd)


def test_bad_files_name_the_file_and_key(tmp_path: Path) -> None:
    model, sd = _affine_sd()
    path = tmp_path / "sd.npz"
    _savez(path, {**sd, "0.weight": np.ones((5, 4), np.float32)})
    with pytest.raises(FormatError, match=rf"^{path}: key '0\.weight': expected .* of shape \(3, 4\), got shape \(5, 4\)$"):
        from_torch_state_dict(model, (4,), path)
    _savez(path, {**sd, "0.bias": np.array([object(), 1, 2], dtype=object)})
    with pytest.raises(FormatError, match=rf"^{path}: key '0\.bias': expected .* floating point values, got dtype object$"):
        from_torch_state_dict(model, (4,), path)
    (tmp_path / "not.npz").write_bytes(b"this is no zip archive at all")
    with pytest.raises(FormatError, match=r"not\.npz: not a readable \.npz archive"):
        from_torch_state_dict(model, (4,), tmp_path / "not.npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(FormatError, match=r"one\.npy: not an \.npz archive"):
        from_torch_state_dict(model, (4,), tmp_path / "one.npy")
    with pytest.raises(FileNotFoundError):
        from_torch_state_dict(model, (4,), tmp_path / "missing.npz")


@attrs.frozen
class MyAffine(fnnet.Affine):
    """A layer kind with parameters that the torch table does not know."""


@attrs.frozen
class MyReLU(fnnet.ReLU):
    """A parameter-free layer kind the table does not know: it owns no keys."""


def test_unknown_layers_with_parameters_are_refused_and_parameter_free_ones_pass() -> None:
    model = fnnet.serial(MyReLU(), MyAffine(2))
    params, _ = model.init(fnnet.key(0), (3,))
    with pytest.raises(ExportError, match=r"^layer 1 \(MyAffine\): has parameters or state but no PyTorch mapping$"):
        to_torch_state_dict(model, params)
    ok = fnnet.serial(MyReLU(), fnnet.Affine(2))
    params, _ = ok.init(fnnet.key(0), (3,))
    assert list(to_torch_state_dict(ok, params)) == ["1.weight", "1.bias"]
    with pytest.raises(ExportError, match=r"layer 1 \(BatchNorm\): its running statistics are part of the state dict"):
        bn = fnnet.serial(fnnet.Affine(2), fnnet.BatchNorm())
        to_torch_state_dict(bn, bn.init(fnnet.key(0), (3,))[0])


# --- against torch itself (skipped unless torch is installed) ------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_the_same_network_in_torch_gives_the_same_logits() -> None:
    import torch
    from torch import nn

    class Residual(nn.Module):  # type: ignore[misc]
        def __init__(self, inner: nn.Module, shortcut: nn.Module | None = None):
            super().__init__()
            self.inner = inner
            self.shortcut = shortcut

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) + (x if self.shortcut is None else self.shortcut(x))

    class Concat(nn.Module):  # type: ignore[misc]
        def __init__(self, *branches: nn.Module):
            super().__init__()
            self.branches = nn.ModuleList(branches)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([b(x) for b in self.branches], dim=1)

    class AddBranches(Concat):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sum(b(x) for b in self.branches)

    def torch_net() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4, eps=1e-6), nn.ReLU(), nn.MaxPool2d(2),
            nn.GroupNorm(2, 4, eps=1e-5), Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Tanh())),
            Residual(nn.Conv2d(4, 6, 3, stride=2, padding=1),
                     nn.Sequential(nn.Conv2d(4, 6, 1, stride=2), nn.BatchNorm2d(6, eps=1e-6))),
            Concat(nn.Conv2d(6, 3, 1), nn.Identity()), AddBranches(nn.Conv2d(9, 4, 1), nn.Conv2d(9, 4, 3, padding=1)),
            nn.Flatten(), nn.Linear(16, 5), nn.LayerNorm(5, eps=1e-5), nn.BatchNorm1d(5, eps=1e-6), nn.GELU(),
            nn.Dropout(0.3), nn.Linear(5, 3),
        ).eval()  # fmt: skip

    model = _model()
    x = normal((4, *IN_SHAPE), 3, dtype=np.float32)
    # fnnet -> torch
    params, state = _random(model, IN_SHAPE, 4)
    net = torch_net()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_state_dict(model, params, state).items()})
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.apply(params, x, state=state), want, rtol=1e-5, atol=1e-5)
    # torch -> fnnet: a net trained one step (so its statistics count), then evaluated
    torch.manual_seed(0)
    net = torch_net().train()
    net(torch.from_numpy(normal((8, *IN_SHAPE), 5, dtype=np.float32)))
    net.eval()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    params, state = from_torch_state_dict(model, IN_SHAPE, {k: v.numpy() for k, v in net.state_dict().items()})
    np.testing.assert_allclose(model.apply(params, x, state=state), want, rtol=1e-5, atol=1e-5)


def test_conversions_write_into_nothing_they_are_given() -> None:
    model = _model()
    params, state = _random(model, IN_SHAPE, 6)
    with global_rng_untouched():
        sd = call_unchanged(lambda p, s: to_torch_state_dict(model, p, s), params, state, readonly=True)
        back = call_unchanged(lambda d: from_torch_state_dict(model, IN_SHAPE, d), sd, readonly=True)
    assert_bit_identical(back, (params, state))
    assert all(leaf.flags.writeable for leaf in tree_leaves(back))  # fresh arrays, not views of the input
