"""Regression tests from a third mutation-testing pass over fnnet.tree: an attrs record with an
``init=False`` field cannot be rebuilt, by tree_unflatten as by tree_map, and says so; the global
norm adds the leaves' sums of squares exactly, whatever their order."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

from fnnet.tree import tree_flatten, tree_global_norm, tree_map, tree_unflatten


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


def test_the_global_norm_does_not_depend_on_the_order_of_the_leaves() -> None:
    # 4096 squares of 2**-54, each lost when added to 1.0 one at a time, together 2**-42
    small = [np.array([2.0**-27])] * 4096
    exact = math.sqrt(1 + 2.0**-42)
    assert exact != 1.0
    assert tree_global_norm([np.array([1.0]), *small]) == exact
    assert tree_global_norm([*small, np.array([1.0])]) == exact
