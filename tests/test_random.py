"""Keys: determinism, independence of split/fold_in streams, immutability, validation, no global RNG."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pytest
from _helpers import global_rng_untouched

from fnnet.random import Key, fold_in, key, split


def _draw(k: Key, n: int = 8) -> list[float]:
    out: list[float] = k.generator().random(n).tolist()
    return out


@pytest.mark.parametrize("seed", [0, 1, 42, 2**40])
def test_same_key_same_numbers(seed: int) -> None:
    k = key(seed)
    assert _draw(k) == _draw(k)  # two generator() calls, two identical streams
    assert _draw(k) == _draw(key(seed))
    g = k.generator()
    g.random(5)  # consuming one generator does not advance the key
    assert _draw(k) == _draw(key(seed))
    assert k == key(seed) and k == Key(seed, ())


def test_different_seeds_differ() -> None:
    streams = {tuple(_draw(key(s))) for s in range(20)}
    assert len(streams) == 20


@pytest.mark.parametrize("n", [1, 2, 5])
def test_split_keys_differ_from_each_other_and_the_parent(n: int) -> None:
    k = key(7)
    kids = split(k, n)
    assert len(kids) == n
    assert split(k, n) == kids  # pure: the same split again
    everything = (k, *kids)
    assert len(set(everything)) == n + 1
    assert len({tuple(_draw(c)) for c in everything}) == n + 1


def test_split_and_fold_in_give_different_keys() -> None:
    k = key(3)
    kids = split(k, 4)
    for i, kid in enumerate(kids):
        folded = fold_in(k, i)
        assert kid != folded
        assert _draw(kid) != _draw(folded)
        assert fold_in(k, i) == folded  # deterministic
    folds = [fold_in(k, i) for i in range(4)]
    assert len({tuple(_draw(f)) for f in folds + list(kids) + [k]}) == 9


def test_nested_splits_are_distinct() -> None:
    k = key(11)
    a, b = split(k)
    keys = [k, a, b, *split(a, 3), *split(b, 3), fold_in(a, 0), fold_in(b, 0), fold_in(fold_in(k, 0), 0)]
    assert len(set(keys)) == len(keys)
    assert len({tuple(_draw(x)) for x in keys}) == len(keys)


def test_keys_are_immutable_and_hashable() -> None:
    k = key(5)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        k.seed = 6  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        k.path = (1,)  # type: ignore[misc]
    table = {k: "root", split(k)[0]: "left"}
    assert table[key(5)] == "root" and table[split(key(5))[0]] == "left"
    assert hash(fold_in(k, 3)) == hash(fold_in(key(5), 3))
    before = (k.seed, k.path)
    split(k, 3)
    fold_in(k, 9)
    k.generator().random(3)
    assert (k.seed, k.path) == before


@pytest.mark.parametrize("seed", [-1, -(2**40)])
def test_negative_seed_raises(seed: int) -> None:
    with pytest.raises(ValueError, match=r"Key: seed must be a non-negative int, got -\d+"):
        key(seed)


@pytest.mark.parametrize("seed", [1.5, True, "3", None])
def test_non_integer_seed_raises(seed: Any) -> None:
    with pytest.raises(ValueError, match=r"Key: seed must be a non-negative int"):
        key(seed)


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", None])
def test_bad_split_count_raises(n: Any) -> None:
    with pytest.raises(ValueError, match=r"split: n must be a positive int, got"):
        split(key(0), n)


def test_split_count_accepts_numpy_ints_and_rejects_bool() -> None:
    n: Any = np.int64(3)
    assert len(split(key(0), n)) == 3
    with pytest.raises(ValueError):
        split(key(0), True)


@pytest.mark.parametrize("data", [-1, 1.5, True, "1", None])
def test_bad_fold_in_data_raises(data: Any) -> None:
    with pytest.raises(ValueError, match=r"fold_in: data must be a non-negative int, got"):
        fold_in(key(0), data)


def test_fold_in_accepts_numpy_ints() -> None:
    data: Any = np.int64(4)
    assert fold_in(key(0), data) == fold_in(key(0), 4)


def test_bad_path_raises() -> None:
    with pytest.raises(ValueError, match=r"Key: path must be a tuple of non-negative ints"):
        Key(0, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Key: path must be a tuple of non-negative ints"):
        Key(0, (1, -2))


def test_global_numpy_rng_is_never_touched() -> None:
    with global_rng_untouched():
        k = key(123)
        a, b = split(k)
        draws = a.generator().standard_normal(100)
        fold_in(b, 1).generator().integers(0, 10, 100)
        _draw(k)
    assert np.array_equal(split(key(123))[0].generator().standard_normal(100), draws)


def test_the_global_rng_check_catches_draws_and_reseeding() -> None:
    """The shared check is not vacuous (the global state is restored afterwards)."""
    saved = np.random.get_state()
    try:
        with pytest.raises(AssertionError, match="global random state changed"):
            with global_rng_untouched():
                np.random.random()
        np.random.seed(1)
        with pytest.raises(AssertionError, match="global random state changed"):
            with global_rng_untouched():
                np.random.seed(2)
    finally:
        np.random.set_state(saved)
