"""Tree utilities: nested tuples, lists, dicts, NamedTuples and attrs records of arrays.

A *tree* is any nesting of those containers; everything else (arrays, scalars) is a *leaf*.
A dict's children are taken in the order of ``str(key)`` (so ``10`` comes before ``2``), and its
paths are ``str(key)``: keys whose strings are equal, such as ``1`` and ``"1"``, are not supported.
``None`` is an empty subtree with no leaves, so parameter-free layers can use ``None`` or ``()``.
All functions here are pure: they build new containers and never write into a leaf.

>>> import numpy as np
>>> from fnnet.tree import tree_map, tree_paths
>>> params = ({"w": np.ones((2, 3)), "b": np.zeros(3)}, None, {"w": np.ones((3, 1))})
>>> tree_paths(params)
['0/b', '0/w', '2/w']
>>> tree_map(lambda a: a.shape, params)
({'b': (3,), 'w': (2, 3)}, None, {'w': (3, 1)})
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import attrs
import numpy as np

from fnnet._validate import is_int
from fnnet.typing import Array, Tree

__all__ = [
    "TreeDef",
    "tree_flatten",
    "tree_unflatten",
    "tree_leaves",
    "tree_map",
    "tree_map_n",
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
    """The structure of a tree without its leaves; equal structures compare equal.

    >>> from fnnet.tree import tree_structure
    >>> tree_structure((1, {"a": 2})) == tree_structure((5, {"a": 7}))
    True
    >>> tree_structure((1, 2)).num_leaves
    2
    """

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
    """Flatten ``tree`` into its leaves (depth first, dict keys sorted by ``str``) and its structure.

    Args:
        tree: any nesting of tuples, lists, dicts, NamedTuples and attrs records.

    Returns:
        ``(leaves, treedef)``: the leaves as a list and the structure for :func:`tree_unflatten`.

    >>> from fnnet.tree import tree_flatten, tree_unflatten
    >>> leaves, treedef = tree_flatten({"b": (1, 2), "a": 3})
    >>> leaves
    [3, 1, 2]
    >>> tree_unflatten(treedef, [30, 10, 20])
    {'a': 30, 'b': (10, 20)}
    """
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
    """Rebuild a tree of structure ``treedef`` from ``leaves`` (inverse of :func:`tree_flatten`).

    >>> from fnnet.tree import tree_flatten, tree_unflatten
    >>> _, treedef = tree_flatten([0, (0, 0)])
    >>> tree_unflatten(treedef, ["x", "y", "z"])
    ['x', ('y', 'z')]
    """
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"tree_unflatten: structure has {treedef.num_leaves} leaves, got {len(leaves)}")
    it = iter(leaves)

    def go(d: TreeDef) -> Any:
        if d.kind == "leaf":
            return next(it)
        return _rebuild(d.kind, d.aux, [go(c) for c in d.children])

    return go(treedef)


def tree_leaves(tree: Tree) -> list[Any]:
    """The leaves of ``tree`` in flattening order (depth first, dict keys sorted).

    >>> from fnnet.tree import tree_leaves
    >>> tree_leaves({"b": (1, None, [2]), "a": 3})
    [3, 1, 2]
    """
    leaves: list[Any] = []
    _collect(tree, leaves)
    return leaves


def _collect(t: Any, leaves: list[Any]) -> None:
    tt = type(t)
    if tt is _ndarray:
        leaves.append(t)
        return
    if t is None:
        return
    k = _kind(tt)
    if k == _K_LEAF:
        leaves.append(t)
    elif k == _K_DICT:
        for key in sorted(t, key=str):
            _collect(t[key], leaves)
    elif k == _K_ATTRS:
        for name in _attrs_layout(tt)[0]:
            _collect(getattr(t, name), leaves)
    else:
        for c in t:
            _collect(c, leaves)


def tree_structure(tree: Tree) -> TreeDef:
    """The structure of ``tree``.

    >>> import numpy as np
    >>> from fnnet.tree import tree_structure
    >>> tree_structure([np.zeros(2), None]).num_leaves
    1
    """
    return tree_flatten(tree)[1]


def tree_map(f: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``f`` leaf-wise over ``tree`` and trees of the same structure in ``rest``.

    Args:
        f: called as ``f(leaf, *other_leaves)`` once per leaf, depth first (dict keys sorted).
        tree: the tree whose structure the result takes.
        rest: trees of the same structure as ``tree``.
    Returns:
        A new tree of ``tree``'s structure holding ``f``'s results.
    Raises:
        ValueError: if the structures differ (the message names the path).

    >>> from fnnet.tree import tree_map
    >>> tree_map(lambda a, b: a + b, (1, {"x": 2}), (10, {"x": 20}))
    (11, {'x': 22})
    """
    try:
        if not rest:
            return _map1(f, tree)
        if len(rest) == 1:
            return _map2(f, tree, rest[0])
        return _map_many(f, tree, rest)
    except _Mismatch:
        _raise_mismatch("tree_map", tree, rest)


def tree_map_n(f: Callable[..., tuple[Any, ...]], n: int, tree: Tree, *rest: Tree) -> tuple[Tree, ...]:
    """Map ``f``, which returns ``n`` results per leaf, over trees in one pass; return ``n`` trees.

    ``tree_map_n(f, n, t, *rest)[i]`` equals ``tree_map(lambda *a: f(*a)[i], t, *rest)``, with
    ``f`` called once per leaf. Optimizers use it to compute an update and a new state together.

    Args:
        f: called as ``f(leaf, *other_leaves)``; must return a tuple of ``n`` values.
        n: the number of results of ``f`` (and of trees returned), >= 1.
        tree: the tree whose structure every result takes.
        rest: trees of the same structure as ``tree``.
    Returns:
        A tuple of ``n`` trees of ``tree``'s structure.
    Raises:
        ValueError: if the structures differ (naming the path) or ``f`` returns a wrong count.

    >>> from fnnet.tree import tree_map_n
    >>> tree_map_n(lambda a: (a + 1, a * 2), 2, {"x": 3, "y": (4,)})
    ({'x': 4, 'y': (5,)}, {'x': 6, 'y': (8,)})
    """
    if not is_int(n) or n < 1:
        raise ValueError(f"tree_map_n: n must be a positive int, got {n!r}")
    try:
        return _map_out(f, n, tree, rest)
    except _Mismatch:
        _raise_mismatch("tree_map_n", tree, rest)


# The mapping walkers. They dispatch on the node's exact type (ndarray, None, tuples and
# NamedTuples first: the nodes of parameter trees) and build no path strings. On a structure
# mismatch they raise _Mismatch, and _raise_mismatch walks the trees again, slowly and with paths,
# for the error. The kind of each node type is classified once and kept in _KINDS.

_K_LEAF, _K_NONE, _K_TUPLE, _K_LIST, _K_NAMEDTUPLE, _K_DICT, _K_ATTRS = range(1, 8)
_ndarray = np.ndarray
_tuple_new = tuple.__new__
_KINDS: dict[type, int] = {np.ndarray: _K_LEAF, type(None): _K_NONE, tuple: _K_TUPLE, list: _K_LIST, dict: _K_DICT}
_MAX_KINDS = 4096  # a bound for programs that create classes in a loop


class _Mismatch(Exception):
    """The trees given to a mapping walker differ in structure."""


def _classify(tt: type) -> int:
    """The node kind of type ``tt`` (also recorded in ``_KINDS``)."""
    if tt is type(None):
        k = _K_NONE
    elif issubclass(tt, tuple):
        k = _K_NAMEDTUPLE if hasattr(tt, "_fields") else _K_TUPLE
    elif issubclass(tt, list):
        k = _K_LIST
    elif issubclass(tt, dict):
        k = _K_DICT
    elif attrs.has(tt):
        k = _K_ATTRS
    else:
        k = _K_LEAF
    if len(_KINDS) >= _MAX_KINDS:
        _KINDS.clear()
    _KINDS[tt] = k
    return k


def _kind(tt: type) -> int:
    return _KINDS.get(tt) or _classify(tt)


_Layout = tuple[tuple[str, ...], tuple[str, ...] | None]
_LAYOUTS: dict[type, _Layout] = {}


def _attrs_layout(tt: type) -> _Layout:
    """The field names of an attrs class, and their ``__init__`` names (None if some are init=False)."""
    layout = _LAYOUTS.get(tt)
    if layout is None:
        fields = attrs.fields(tt)
        aliases = tuple(a.alias for a in fields) if all(a.init for a in fields) else None
        layout = (tuple(a.name for a in fields), aliases)
        if len(_LAYOUTS) >= _MAX_KINDS:
            _LAYOUTS.clear()
        _LAYOUTS[tt] = layout
    return layout


def _build_attrs(tt: type, kids: Sequence[Any]) -> Any:
    aliases = _attrs_layout(tt)[1]
    if aliases is None:
        raise ValueError(f"tree: cannot rebuild {tt.__name__}: it has init=False fields")
    return tt(**dict(zip(aliases, kids)))


def _is_leaf(r: Any) -> bool:
    rt = type(r)
    return rt is _ndarray or (_KINDS.get(rt) or _classify(rt)) == _K_LEAF


def _node_kind(t: Any, rest: Sequence[Any]) -> int:
    """The kind of container ``t``; raises _Mismatch unless every tree in ``rest`` has the same node."""
    tt = type(t)
    k = _kind(tt)
    for r in rest:
        rt = type(r)
        # subclasses of tuple, list and dict match their base; a NamedTuple or attrs record only its class
        if rt is not tt and (k == _K_NAMEDTUPLE or k == _K_ATTRS or _kind(rt) != k):
            raise _Mismatch
        if k != _K_ATTRS and len(r) != len(t):
            raise _Mismatch
    if k == _K_DICT:
        keys = sorted(t, key=str)
        for r in rest:
            if sorted(r, key=str) != keys:
                raise _Mismatch
    return k


def _children_of(k: int, t: Any) -> list[Any]:
    """The children of container ``t`` of kind ``k``, in flattening order."""
    if k == _K_DICT:
        return [t[key] for key in sorted(t, key=str)]
    if k == _K_ATTRS:
        return [getattr(t, name) for name in _attrs_layout(type(t))[0]]
    return list(t)


def _rebuild_as(k: int, like: Any, kids: Sequence[Any]) -> Any:
    """A container of kind ``k`` shaped like ``like`` holding ``kids``."""
    if k == _K_TUPLE:
        return tuple(kids)
    if k == _K_NAMEDTUPLE:
        return _tuple_new(type(like), kids)
    if k == _K_LIST:
        return list(kids)
    if k == _K_DICT:
        return dict(zip(sorted(like, key=str), kids))
    return _build_attrs(type(like), kids)


def _map1(f: Callable[..., Any], t: Any) -> Any:
    tt = type(t)
    if tt is _ndarray:
        return f(t)
    k = _KINDS.get(tt) or _classify(tt)
    if k == _K_TUPLE:
        return tuple([_map1(f, c) for c in t])
    if k == _K_NAMEDTUPLE:
        return _tuple_new(tt, [_map1(f, c) for c in t])
    if k == _K_NONE:
        return None
    if k == _K_LEAF:
        return f(t)
    if k == _K_LIST:
        return [_map1(f, c) for c in t]
    if k == _K_DICT:
        return {key: _map1(f, t[key]) for key in sorted(t, key=str)}
    return _build_attrs(tt, [_map1(f, getattr(t, name)) for name in _attrs_layout(tt)[0]])


def _map2(f: Callable[..., Any], t: Any, r: Any) -> Any:
    tt = type(t)
    if tt is _ndarray:
        if type(r) is not _ndarray and not _is_leaf(r):
            raise _Mismatch
        return f(t, r)
    k = _KINDS.get(tt) or _classify(tt)
    if (k == _K_TUPLE or k == _K_NAMEDTUPLE) and type(r) is tt and len(r) == len(t):
        kids = [_map2(f, a, b) for a, b in zip(t, r)]
        return tuple(kids) if k == _K_TUPLE else _tuple_new(tt, kids)
    if k == _K_NONE:
        if r is not None:
            raise _Mismatch
        return None
    if k == _K_LEAF:
        if not _is_leaf(r):
            raise _Mismatch
        return f(t, r)
    k = _node_kind(t, (r,))
    if k == _K_TUPLE:
        return tuple([_map2(f, a, b) for a, b in zip(t, r)])
    if k == _K_LIST:
        return [_map2(f, a, b) for a, b in zip(t, r)]
    if k == _K_DICT:
        return {key: _map2(f, t[key], r[key]) for key in sorted(t, key=str)}
    names = _attrs_layout(tt)[0]
    return _build_attrs(tt, [_map2(f, getattr(t, name), getattr(r, name)) for name in names])


def _map_many(f: Callable[..., Any], t: Any, rest: Sequence[Any]) -> Any:
    k = _kind(type(t))
    if k == _K_LEAF:
        for r in rest:
            if not _is_leaf(r):
                raise _Mismatch
        return f(t, *rest)
    if k == _K_NONE:
        for r in rest:
            if r is not None:
                raise _Mismatch
        return None
    k = _node_kind(t, rest)
    columns = zip(_children_of(k, t), *(_children_of(k, r) for r in rest))
    return _rebuild_as(k, t, [_map_many(f, c[0], c[1:]) for c in columns])


def _map_out(f: Callable[..., tuple[Any, ...]], n: int, t: Any, rest: Sequence[Any]) -> tuple[Any, ...]:
    tt = type(t)
    k = _K_LEAF if tt is _ndarray else (_KINDS.get(tt) or _classify(tt))
    if k == _K_LEAF:
        for r in rest:
            if type(r) is not _ndarray and not _is_leaf(r):
                raise _Mismatch
        out = f(t, *rest)
        if type(out) is not tuple or len(out) != n:
            if not isinstance(out, tuple) or len(out) != n:
                raise ValueError(f"tree_map_n: f must return a tuple of {n} values, got {out!r}")
        return out
    if k == _K_TUPLE or k == _K_NAMEDTUPLE:
        m = len(t)
        for r in rest:
            if type(r) is not tt or len(r) != m:
                break
        else:
            kids = [_map_out(f, n, c[0], c[1:]) for c in zip(t, *rest)]
            if not kids:
                return (_tuple_new(tt, ()),) * n if k == _K_NAMEDTUPLE else ((),) * n
            if k == _K_TUPLE:
                return tuple(zip(*kids))
            return tuple([_tuple_new(tt, col) for col in zip(*kids)])
    if k == _K_NONE:
        for r in rest:
            if r is not None:
                raise _Mismatch
        return (None,) * n
    k = _node_kind(t, rest)
    columns = zip(_children_of(k, t), *(_children_of(k, r) for r in rest))
    kids = [_map_out(f, n, c[0], c[1:]) for c in columns]
    if not kids:
        return tuple(_rebuild_as(k, t, []) for _ in range(n))
    return tuple(_rebuild_as(k, t, col) for col in zip(*kids))


def _raise_mismatch(name: str, tree: Tree, rest: Sequence[Tree]) -> NoReturn:
    """Find where ``tree`` and ``rest`` differ and raise a ValueError naming the path."""

    def go(t: Any, rs: Sequence[Any], path: str) -> None:
        node = _children(t)
        if node is None:
            _leaf_against(name, rs, path, t)
            return
        kind, aux, kids = node
        rest_kids: list[list[tuple[str, Any]]] = []
        for r in rs:
            rn = _children(r)
            if rn is None or rn[0] != kind or rn[1] != aux:
                raise ValueError(
                    f"{name}: structures differ at {path or '<root>'}: "
                    f"{_describe(t)} vs {_describe(r)}{_key_difference(t, r)}"
                )
            rest_kids.append(rn[2])
        for i, (k, c) in enumerate(kids):
            go(c, [rk[i][1] for rk in rest_kids], f"{path}/{k}" if path else k)

    go(tree, rest, "")
    raise ValueError(f"{name}: structures differ")  # pragma: no cover (go finds the difference)


def _leaf_against(name: str, rest: Sequence[Any], path: str, t: Any) -> None:
    for r in rest:
        if type(r) is not np.ndarray and _children(r) is not None:
            raise ValueError(f"{name}: structures differ at {path or '<root>'}: {_describe(t)} vs {_describe(r)}")


def _key_difference(t: Any, r: Any) -> str:
    """For two dicts with different keys, which keys only one of them has ("" otherwise)."""
    if not (isinstance(t, dict) and isinstance(r, dict)):
        return ""
    only_t = [k for k in sorted(t, key=str) if k not in r]
    only_r = [k for k in sorted(r, key=str) if k not in t]
    sides = ((only_t, "first"), (only_r, "second"))
    parts = [f"{', '.join(map(repr, ks))} only in the {which}" for ks, which in sides if ks]
    return f" ({'; '.join(parts)})" if parts else ""


def _describe(t: Any) -> str:
    node = _children(t)
    if node is None:
        return f"leaf {type(t).__name__}"
    return f"{node[0]} {getattr(node[1], '__name__', node[1])!s}"


def tree_map_with_path(f: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Like :func:`tree_map` but ``f(path, leaf, *others)`` also gets the leaf's path, e.g. ``"1/w"``.

    >>> import numpy as np
    >>> from fnnet.tree import tree_map_with_path
    >>> tree_map_with_path(lambda path, a: f"{path}: {a.shape}", (None, {"w": np.ones((2, 3))}))
    (None, {'w': '1/w: (2, 3)'})
    """

    def go(t: Any, rs: Sequence[Any], path: str) -> Any:
        node = _children(t)
        if node is None:
            _leaf_against("tree_map_with_path", rs, path, t)
            return f(path, t, *rs)
        kind, aux, kids = node
        rkids = []
        for r in rs:
            rn = _children(r)
            if rn is None or rn[0] != kind or rn[1] != aux:
                raise ValueError(
                    f"tree_map_with_path: structures differ at {path or '<root>'}: "
                    f"{_describe(t)} vs {_describe(r)}{_key_difference(t, r)}"
                )
            rkids.append(rn[2])
        out = [go(c, [rk[i][1] for rk in rkids], f"{path}/{k}" if path else k) for i, (k, c) in enumerate(kids)]
        return _rebuild(kind, aux, out)

    return go(tree, rest, "")


def tree_paths(tree: Tree) -> list[str]:
    """The path of every leaf, in flattening order: ``"0/w"``, ``"0/b"``, ``"2/w"``, ...

    >>> from fnnet.tree import tree_paths
    >>> tree_paths([{"w": 0, "b": 0}, None, {"w": 0}])
    ['0/b', '0/w', '2/w']
    """
    paths: list[str] = []
    tree_map_with_path(lambda p, _leaf: paths.append(p), tree)
    return paths


def tree_zeros_like(tree: Tree) -> Tree:
    """A tree of the same structure whose leaves are zero arrays of the same shape and dtype.

    >>> import numpy as np
    >>> from fnnet.tree import tree_zeros_like
    >>> z = tree_zeros_like({"w": np.ones((2, 3), np.float32)})
    >>> z["w"].shape, z["w"].dtype, float(z["w"].sum())
    ((2, 3), dtype('float32'), 0.0)
    """
    return tree_map(np.zeros_like, tree)


def tree_size(tree: Tree) -> int:
    """Total number of scalars in all leaves.

    >>> import numpy as np
    >>> from fnnet.tree import tree_size
    >>> tree_size({"w": np.zeros((784, 50)), "b": np.zeros(50)})
    39250
    """
    return int(sum(np.size(leaf) for leaf in tree_leaves(tree)))


def tree_global_norm(tree: Tree) -> float:
    """The L2 norm of all leaves taken together, ``sqrt(sum(leaf**2))``, computed in float64.

    The per-leaf sums of squares are added with ``math.fsum`` (exactly rounded), so the result
    does not depend on the order of the leaves. The norm is ``inf`` only if it exceeds the
    largest float64 or a leaf holds ``inf`` (``nan`` if a leaf holds ``nan``): finite leaves
    whose squares overflow float64 (values above about 1e154) are rescaled, not reported as ``inf``.

    >>> import numpy as np
    >>> from fnnet.tree import tree_global_norm
    >>> tree_global_norm((np.array([3.0]), {"b": np.array([4.0])}))
    5.0
    >>> tree_global_norm(np.full(4, 1e200))            # the squares overflow float64, the norm does not
    2e+200
    """
    leaves = tree_leaves(tree)
    with np.errstate(over="ignore"):  # squares beyond float64 are rescaled below
        # squared in float64 straight from the leaf's dtype (a float32 square is exact there), then
        # summed pairwise: no float64 copy of the leaf first
        squares = [float(np.square(leaf, dtype=np.float64).sum()) for leaf in leaves]
    try:
        total = math.fsum(squares)
    except OverflowError:  # fsum of several inf squares
        total = math.inf
    if total == math.inf:
        return _global_norm_rescaled(leaves)
    return math.sqrt(total)


def _global_norm_rescaled(leaves: list[Any]) -> float:
    """``tree_global_norm`` when the sum of squares overflowed: ``m · sqrt(Σ (x / m)²)`` with ``m = max|x|``."""
    arrays = [np.asarray(leaf, dtype=np.float64) for leaf in leaves]
    m = max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)
    if not math.isfinite(m):  # an inf (or nan) leaf: the norm is inf (or nan)
        return float(np.sqrt(math.fsum(float(np.vdot(a, a)) for a in arrays)))
    return m * math.sqrt(math.fsum(float(np.vdot(a / m, a / m)) for a in arrays))


def tree_astype(tree: Tree, dtype: Any) -> Tree:
    """A copy of ``tree`` with every floating point leaf cast to ``dtype`` (others unchanged).

    >>> import numpy as np
    >>> from fnnet.tree import tree_astype
    >>> half = tree_astype({"w": np.ones((2, 2)), "steps": np.array([3], np.int64)}, np.float16)
    >>> half["w"].dtype, half["steps"].dtype
    (dtype('float16'), dtype('int64'))
    """

    def cast(leaf: Any) -> Any:
        a = np.asarray(leaf)
        return a.astype(dtype) if a.dtype.kind == "f" else leaf

    return tree_map(cast, tree)
