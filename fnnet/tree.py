"""Tree utilities: nested tuples, lists, dicts, NamedTuples and attrs records of arrays.

A *tree* is any nesting of those containers; everything else (arrays, scalars) is a *leaf*.
``None`` is an empty subtree with no leaves, so parameter-free layers can use ``None`` or ``()``.
All functions here are pure: they build new containers and never write into a leaf.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from fnnet.typing import Array, Tree

__all__ = [
    "TreeDef",
    "tree_flatten",
    "tree_unflatten",
    "tree_leaves",
    "tree_map",
    "tree_map_with_path",
    "tree_paths",
    "tree_structure",
    "tree_zeros_like",
    "tree_size",
    "tree_global_norm",
    "tree_astype",
]


def _is_namedtuple(x: object) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _children(t: Any) -> tuple[str, Any, list[tuple[str, Any]]] | None:
    """Return (kind, aux, [(path_key, child)]) for a container, None for a leaf."""
    if type(t) is np.ndarray:
        return None
    if t is None:
        return ("none", None, [])
    if _is_namedtuple(t):
        return ("namedtuple", type(t), [(f, getattr(t, f)) for f in type(t)._fields])
    if isinstance(t, tuple):
        return ("tuple", len(t), [(str(i), c) for i, c in enumerate(t)])
    if isinstance(t, list):
        return ("list", len(t), [(str(i), c) for i, c in enumerate(t)])
    if isinstance(t, dict):
        keys = sorted(t, key=str)
        return ("dict", tuple(keys), [(str(k), t[k]) for k in keys])
    if attrs.has(type(t)):
        names = [a.name for a in attrs.fields(type(t))]
        return ("attrs", type(t), [(n, getattr(t, n)) for n in names])
    return None


def _rebuild(kind: str, aux: Any, children: Sequence[Any], like: Any = None) -> Any:
    if kind == "none":
        return None
    if kind == "namedtuple":
        return aux(*children)
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return list(children)
    if kind == "dict":
        return dict(zip(aux, children))
    if kind == "attrs":
        fields = attrs.fields(aux)
        if any(not a.init for a in fields):
            raise ValueError(f"tree: cannot rebuild {aux.__name__}: it has init=False fields")
        return aux(**{a.alias: c for a, c in zip(fields, children)})
    raise AssertionError(kind)  # pragma: no cover


@attrs.frozen
class TreeDef:
    """The structure of a tree without its leaves; equal structures compare equal."""

    kind: str
    aux: Any
    children: tuple[TreeDef, ...]

    @property
    def num_leaves(self) -> int:
        """Number of leaves a tree of this structure has."""
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)


_LEAF = TreeDef("leaf", None, ())


def tree_flatten(tree: Tree) -> tuple[list[Any], TreeDef]:
    """Flatten ``tree`` into its leaves (depth first, dict keys sorted) and its structure."""
    leaves: list[Any] = []

    def go(t: Any) -> TreeDef:
        node = _children(t)
        if node is None:
            leaves.append(t)
            return _LEAF
        kind, aux, kids = node
        return TreeDef(kind, aux, tuple(go(c) for _, c in kids))

    return leaves, go(tree)


def tree_unflatten(treedef: TreeDef, leaves: Sequence[Any]) -> Tree:
    """Rebuild a tree of structure ``treedef`` from ``leaves`` (inverse of :func:`tree_flatten`)."""
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"tree_unflatten: structure has {treedef.num_leaves} leaves, got {len(leaves)}")
    it = iter(leaves)

    def go(d: TreeDef) -> Any:
        if d.kind == "leaf":
            return next(it)
        return _rebuild(d.kind, d.aux, [go(c) for c in d.children])

    return go(treedef)


def tree_leaves(tree: Tree) -> list[Any]:
    """The leaves of ``tree`` in flattening order."""
    return tree_flatten(tree)[0]


def tree_structure(tree: Tree) -> TreeDef:
    """The structure of ``tree``."""
    return tree_flatten(tree)[1]


def tree_map(f: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``f`` leaf-wise over ``tree`` and trees of the same structure in ``rest``.

    Raises:
        ValueError: if the structures differ (the message names the path).
    """
    return _map(f, tree, rest, "")


def _leaf_against(rest: Sequence[Any], path: str, t: Any) -> None:
    for r in rest:
        if type(r) is not np.ndarray and _children(r) is not None:
            raise ValueError(f"tree_map: structures differ at {path or '<root>'}: {_describe(t)} vs {_describe(r)}")


def _map(f: Callable[..., Any], t: Any, rest: Sequence[Any], path: str) -> Any:
    node = None if type(t) is np.ndarray else _children(t)  # ndarray first: the common leaf
    if node is None:
        _leaf_against(rest, path, t)
        return f(t, *rest)
    kind, aux, kids = node
    rest_kids: list[list[tuple[str, Any]]] = []
    for r in rest:
        rn = _children(r)
        if rn is None or rn[0] != kind or rn[1] != aux:
            where = path or "<root>"
            raise ValueError(f"tree_map: structures differ at {where}: {_describe(t)} vs {_describe(r)}")
        rest_kids.append(rn[2])
    out = [
        _map(f, c, [rk[i][1] for rk in rest_kids], f"{path}/{k}" if path else k)
        for i, (k, c) in enumerate(kids)
    ]
    return _rebuild(kind, aux, out)


def _describe(t: Any) -> str:
    node = _children(t)
    if node is None:
        return f"leaf {type(t).__name__}"
    return f"{node[0]} {getattr(node[1], '__name__', node[1])!s}"


def tree_map_with_path(f: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Like :func:`tree_map` but ``f(path, leaf, *others)`` also gets the leaf's path, e.g. ``"1/w"``."""

    def go(t: Any, rs: Sequence[Any], path: str) -> Any:
        node = _children(t)
        if node is None:
            _leaf_against(rs, path, t)
            return f(path, t, *rs)
        kind, aux, kids = node
        rkids = []
        for r in rs:
            rn = _children(r)
            if rn is None or rn[0] != kind or rn[1] != aux:
                raise ValueError(f"tree_map_with_path: structures differ at {path or '<root>'}")
            rkids.append(rn[2])
        out = [go(c, [rk[i][1] for rk in rkids], f"{path}/{k}" if path else k) for i, (k, c) in enumerate(kids)]
        return _rebuild(kind, aux, out)

    return go(tree, rest, "")


def tree_paths(tree: Tree) -> list[str]:
    """The path of every leaf, in flattening order: ``"0/w"``, ``"0/b"``, ``"2/w"``, ..."""
    paths: list[str] = []
    tree_map_with_path(lambda p, _leaf: paths.append(p), tree)
    return paths


def tree_zeros_like(tree: Tree) -> Tree:
    """A tree of the same structure whose leaves are zero arrays of the same shape and dtype."""
    return tree_map(np.zeros_like, tree)


def tree_size(tree: Tree) -> int:
    """Total number of scalars in all leaves."""
    return int(sum(np.size(leaf) for leaf in tree_leaves(tree)))


def tree_global_norm(tree: Tree) -> float:
    """The L2 norm of all leaves taken together, ``sqrt(sum(leaf**2))``, computed in float64."""
    total = 0.0
    for leaf in tree_leaves(tree):
        a: Array = np.asarray(leaf, dtype=np.float64)
        total += float(np.vdot(a, a))
    return float(np.sqrt(total))


def tree_astype(tree: Tree, dtype: Any) -> Tree:
    """A copy of ``tree`` with every floating point leaf cast to ``dtype`` (others unchanged)."""

    def cast(leaf: Any) -> Any:
        a = np.asarray(leaf)
        return a.astype(dtype) if a.dtype.kind == "f" else leaf

    return tree_map(cast, tree)
