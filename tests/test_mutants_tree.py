"""Regression tests from a third mutation-testing pass over fnnet.tree: an attrs record with an
``init=False`` field cannot be rebuilt, by tree_unflatten as by tree_map, and says so."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from fnnet.tree import tree_flatten, tree_map, tree_unflatten


@attrs.frozen
class _Derived:
    w: np.ndarray
    n: int = attrs.field(init=False, default=0)


def test_a_record_with_an_init_false_field_is_refused_when_rebuilt() -> None:
    leaves, treedef = tree_flatten(_Derived(np.ones(2)))
    with pytest.raises(ValueError, match="cannot rebuild _Derived: it has init=False fields"):
        tree_unflatten(treedef, leaves)
    with pytest.raises(ValueError, match="cannot rebuild _Derived: it has init=False fields"):
        tree_map(lambda a: a, _Derived(np.ones(2)))
