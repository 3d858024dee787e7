"""Tree utilities: flatten/unflatten, tree_map, paths, zeros_like, size, global norm, astype."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import attrs
import numpy as np
import pytest
from _helpers import assert_bit_identical

from fnnet.typing import Array, Tree
from fnnet.tree import (
    TreeDef,
    tree_astype,
    tree_flatten,
    tree_global_norm,
    tree_leaves,
    tree_map,
    tree_map_n,
    tree_map_with_path,
    tree_paths,
    tree_size,
    tree_structure,
    tree_unflatten,
    tree_zeros_like,
)


class WB(NamedTuple):
    w: Array
    b: Array


@attrs.frozen
class Record:
    scale: Array
    shift: Array
    note: Any = None


def _a(*shape: int, salt: int = 0, dtype: Any = np.float64) -> Array:
    return np.random.default_rng([8, salt, *shape]).standard_normal(shape).astype(dtype)


def _examples() -> dict[str, Tree]:
    return {
        "array": _a(3, 2),
        "tuple": (_a(2), _a(3, 1)),
        "list": [_a(2), _a(1), _a(4, 2)],
        "dict": {"zeta": _a(2), "alpha": _a(3), "mid": (_a(1),)},
        "namedtuple": WB(_a(3, 2), _a(2)),
        "attrs": Record(_a(4), _a(4)),
        "none": None,
        "empty": (),
        "nested": (WB(_a(2, 2), _a(2)), None, [Record(_a(3), _a(3), None), {"k": (_a(1), _a(2, 2, 2))}], ()),
        "scalars": {"lr": 0.1, "count": np.int64(3), "flag": np.array(True)},
    }


EXAMPLES = _examples()


@pytest.mark.parametrize("name", EXAMPLES)
def test_flatten_unflatten_round_trip(name: str) -> None:
    tree = EXAMPLES[name]
    leaves, treedef = tree_flatten(tree)
    assert isinstance(treedef, TreeDef)
    assert treedef.num_leaves == len(leaves)
    rebuilt = tree_unflatten(treedef, leaves)
    assert type(rebuilt) is type(tree)
    assert_bit_identical(rebuilt, tree)
    # the leaves are the very objects of the tree: no copies on the way
    assert all(x is y for x, y in zip(tree_leaves(rebuilt), leaves))


def test_leaf_order_is_depth_first_with_sorted_dict_keys() -> None:
    a, b, c, d = _a(1), _a(2), _a(3), _a(4)
    tree = {"z": a, "b": (b, WB(c, d))}
    assert [x is y for x, y in zip(tree_leaves(tree), [b, c, d, a])] == [True] * 4
    assert tree_paths(tree) == ["b/0", "b/1/w", "b/1/b", "z"]


def test_none_and_empty_have_no_leaves() -> None:
    empties: list[Any] = [None, (), [], {}]
    for empty in empties:
        leaves, treedef = tree_flatten(empty)
        assert leaves == [] and treedef.num_leaves == 0
        assert tree_unflatten(treedef, []) == empty
    assert tree_structure(None) != tree_structure(())


def test_structures_compare_by_shape_of_the_tree() -> None:
    assert tree_structure(WB(_a(1), _a(2))) == tree_structure(WB(_a(5), _a(6)))
    assert tree_structure(WB(_a(1), _a(2))) != tree_structure((_a(1), _a(2)))
    assert tree_structure({"a": _a(1)}) != tree_structure({"b": _a(1)})
    assert tree_structure([_a(1)]) != tree_structure((_a(1),))
    assert tree_structure((_a(1), _a(1))) != tree_structure((_a(1),))


def test_unflatten_checks_the_leaf_count() -> None:
    _, treedef = tree_flatten(WB(_a(1), _a(2)))
    with pytest.raises(ValueError, match=r"tree_unflatten: structure has 2 leaves, got 3"):
        tree_unflatten(treedef, [_a(1), _a(1), _a(1)])


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n != "scalars"])
def test_tree_map_over_several_trees(name: str) -> None:
    t1 = EXAMPLES[name]
    t2 = tree_map(lambda x: 2 * x + 1, t1)
    t3 = tree_map(lambda x: -x, t1)
    out = tree_map(lambda x, y, z: x * y + z, t1, t2, t3)
    assert tree_structure(out) == tree_structure(t1)
    for x, o in zip(tree_leaves(t1), tree_leaves(out)):
        np.testing.assert_allclose(o, x * (2 * x + 1) - x)
    assert_bit_identical(tree_map(lambda x: x, t1), t1)


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n != "scalars"])
@pytest.mark.parametrize("n_rest", [0, 1, 2])
def test_tree_map_n_equals_one_tree_map_per_result(name: str, n_rest: int) -> None:
    tree = EXAMPLES[name]
    rest = [tree_map(lambda x, k=k: x + k, tree) for k in range(1, n_rest + 1)]
    calls: list[int] = []

    def f(*xs: Array) -> tuple[Array, Array, Array]:
        calls.append(1)
        return xs[0] + xs[-1], xs[0] * 2, -xs[-1]

    outs = tree_map_n(f, 3, tree, *rest)
    assert len(outs) == 3 and len(calls) == len(tree_leaves(tree))  # f runs once per leaf
    for i, out in enumerate(outs):
        expect = tree_map(lambda *xs: f(*xs)[i], tree, *rest)
        assert type(out) is type(tree)
        assert_bit_identical(out, expect)


def test_tree_map_n_checks_its_arguments() -> None:
    t = (WB(_a(1), _a(1)), [_a(2)])
    with pytest.raises(ValueError, match=r"tree_map_n: structures differ at 1(?![\w/])"):
        tree_map_n(lambda x, y: (x, y), 2, t, (WB(_a(1), _a(1)), [_a(2), _a(2)]))
    with pytest.raises(ValueError, match=r"tree_map_n: structures differ at 0"):
        tree_map_n(lambda x, y: (x, y), 2, t, ((_a(1), _a(1)), [_a(2)]))
    with pytest.raises(ValueError, match="tuple of 2 values"):
        tree_map_n(lambda x: (x, x, x), 2, t)
    with pytest.raises(ValueError, match="n must be a positive int"):
        tree_map_n(lambda x: (), 0, t)
    assert tree_map_n(lambda x: (x, x), 2, (None, (), {})) == ((None, (), {}), (None, (), {}))


class Pair(tuple):  # type: ignore[type-arg]
    """A tuple subclass that is not a NamedTuple: a plain tuple node."""


def test_subclasses_of_tuple_and_dict_match_their_base() -> None:
    x, y = _a(2), _a(2, salt=1)
    out = tree_map(lambda u, v: u - v, ((x, y), {"k": y}), (Pair((y, x)), OrderedDict(k=x)))
    assert type(out) is tuple and type(out[0]) is tuple and type(out[1]) is dict
    np.testing.assert_array_equal(out[0][0], x - y)
    np.testing.assert_array_equal(out[1]["k"], y - x)
    a, b = tree_map_n(lambda u, v: (u, v), 2, Pair((x,)), (y,))
    assert type(a) is tuple and a[0] is x and b[0] is y
    with pytest.raises(ValueError, match="structures differ at <root>"):
        tree_map(lambda u, v: u, WB(x, y), Pair((x, y)))


@pytest.mark.parametrize("name", EXAMPLES)
def test_leaves_are_the_flattened_leaves(name: str) -> None:
    tree = EXAMPLES[name]
    leaves = tree_leaves(tree)
    flat = tree_flatten(tree)[0]
    assert len(leaves) == len(flat) and all(a is b for a, b in zip(leaves, flat))


def test_tree_map_with_path() -> None:
    tree = EXAMPLES["nested"]
    seen: list[tuple[str, tuple[int, ...]]] = []

    def record(path: str, x: Array, y: Array) -> Array:
        seen.append((path, x.shape))
        return x - y

    out = tree_map_with_path(record, tree, tree)
    assert [p for p, _ in seen] == tree_paths(tree)
    assert [s for _, s in seen] == [x.shape for x in tree_leaves(tree)]
    assert all(not o.any() for o in tree_leaves(out))


def test_tree_paths() -> None:
    tree = (WB(_a(2), _a(1)), None, {"b": _a(1), "a": [_a(1), Record(_a(1), _a(1))]}, ())
    assert tree_paths(tree) == ["0/w", "0/b", "2/a/0", "2/a/1/scale", "2/a/1/shift", "2/b"]
    assert tree_paths(_a(3)) == [""]
    assert tree_paths(None) == []


@pytest.mark.parametrize(
    ("a", "b", "where"),
    [
        ((WB(_a(1), _a(1)), {"k": (_a(1), _a(1))}), (WB(_a(1), _a(1)), {"k": (_a(1),)}), "1/k"),
        ({"a": _a(1), "b": _a(1)}, {"a": _a(1), "c": _a(1)}, "<root>"),
        ((WB(_a(1), _a(1)),), ((_a(1), _a(1)),), "0"),
        ([_a(1), None], [_a(1), (_a(1),)], "1"),
        ({"x": [Record(_a(1), _a(1))]}, {"x": [Record(_a(1), _a(1)), Record(_a(1), _a(1))]}, "x"),
    ],
    ids=["tuple-length", "dict-keys", "namedtuple-vs-tuple", "none-vs-tuple", "list-length"],
)
def test_mismatched_structures_raise_naming_the_path(a: Tree, b: Tree, where: str) -> None:
    with pytest.raises(ValueError, match=rf"tree_map: structures differ at {where}(?![\w/])"):
        tree_map(lambda x, y: x + y, a, b)
    with pytest.raises(ValueError, match=rf"tree_map_with_path: structures differ at {where}(?![\w/])"):
        tree_map_with_path(lambda p, x, y: x + y, a, b)


def test_leaf_against_container_raises() -> None:
    x = _a(2)
    with pytest.raises(ValueError, match=r"structures differ at 0"):
        tree_map(lambda u, v: u + v, (x,), ((x, x),))


def test_attrs_records_with_private_fields() -> None:
    @attrs.frozen
    class Private:
        _w: Array
        b: Array

    tree = Private(_a(2), _a(1))
    assert_bit_identical(tree_map(lambda x: x, tree), tree)


@pytest.mark.parametrize("name", EXAMPLES)
def test_zeros_like(name: str) -> None:
    tree = EXAMPLES[name]
    before = tree_map(lambda x: x.copy() if isinstance(x, np.ndarray) else x, tree)
    zeros = tree_zeros_like(tree)
    assert tree_structure(zeros) == tree_structure(tree)
    for z, x in zip(tree_leaves(zeros), tree_leaves(tree)):
        assert np.shape(z) == np.shape(x) and np.asarray(z).dtype == np.asarray(x).dtype
        assert not np.any(z)
        assert z is not x
    assert_bit_identical(tree, before)


def test_size() -> None:
    assert tree_size(EXAMPLES["nested"]) == 4 + 2 + 3 + 3 + 1 + 8
    assert tree_size(EXAMPLES["scalars"]) == 3
    assert tree_size(None) == 0 and tree_size(()) == 0
    assert tree_size(_a(0, 5)) == 0


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n != "scalars"])
def test_global_norm_matches_norm_of_concatenation(name: str) -> None:
    tree = EXAMPLES[name]
    flat = np.concatenate([np.ravel(x) for x in tree_leaves(tree)] + [np.zeros(0)])
    assert tree_global_norm(tree) == pytest.approx(float(np.linalg.norm(flat)), rel=1e-14)


def test_global_norm_accumulates_in_float64() -> None:
    big = np.full(4, 3e30, dtype=np.float32)  # squares overflow float32 but not float64
    assert tree_global_norm((big, big)) == pytest.approx(3e30 * np.sqrt(8), rel=1e-6)
    assert tree_global_norm(None) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_astype(dtype: Any) -> None:
    tree: Any = {"p": WB(_a(2, 2), _a(2, dtype=np.float32)), "step": np.int64(7), "mask": np.array([True, False]), "n": 3}
    cast = tree_astype(tree, dtype)
    assert tree_structure(cast) == tree_structure(tree)
    assert cast["p"].w.dtype == dtype and cast["p"].b.dtype == dtype
    np.testing.assert_allclose(cast["p"].w, tree["p"].w.astype(dtype))
    assert cast["step"] is tree["step"] and cast["mask"] is tree["mask"] and cast["n"] == 3
    assert tree["p"].w.dtype == np.float64 and tree["p"].b.dtype == np.float32  # input untouched
