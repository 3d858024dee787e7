"""Randomness as a value: immutable keys that are split and folded, never mutated.

A :class:`Key` is a ``(seed, path)`` record. ``split`` and ``fold_in`` only extend the path, and
``key.generator()`` builds a fresh ``np.random.Generator`` from ``SeedSequence(seed,
spawn_key=path)``. The same key therefore always yields the same numbers, and no code in fnnet
ever touches NumPy's global random state.
"""

from __future__ import annotations

import operator

import attrs
import numpy as np

# Path tags keep split and fold_in streams apart: split(k, n)[i] != fold_in(k, i).
_SPLIT = 0
_FOLD = 1
# SeedSequence reads the path as one run of 32-bit words, an int of more than 32 bits as several.
# fold_in's data below 2**32 is one word after the tag _FOLD; wider data is _FOLD_WIDE, its word
# count, then its words, so that every path reads back one way (fold_in(k, 2**64) would otherwise
# be the words of split(fold_in(k, 0))[1]).
_FOLD_WIDE = 2
_WORD = 1 << 32
# SeedSequence pads a seed to 4 words before the path's words; a wider seed would run into them.
_SEED_LIMIT = 1 << 128


def _is_index(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and bool(value >= 0)


def _seed(value: object) -> int:
    # Validate before converting: int(1.5), int(True) or int("3") would silently succeed.
    if not _is_index(value):
        raise ValueError(f"Key: seed must be a non-negative int, got {value!r}")
    seed = operator.index(value)  # type: ignore[arg-type]
    if seed >= _SEED_LIMIT:
        raise ValueError(f"Key: seed must be below 2**128, got {seed!r}")
    return seed


def _check_path(_inst: object, _attr: object, value: tuple[int, ...]) -> None:
    if not isinstance(value, tuple) or not all(_is_index(p) for p in value):
        raise ValueError(f"Key: path must be a tuple of non-negative ints, got {value!r}")


@attrs.frozen
class Key:
    """An immutable random key: a seed and a path of split/fold indices.

    Build keys with :func:`key`; derive independent ones with :func:`split` and :func:`fold_in`.

    >>> from fnnet.random import key, split, fold_in
    >>> k = key(0)
    >>> a, b = split(k)
    >>> a.generator().normal() == key(0).generator().normal()   # a new stream, not the seed's own
    False
    >>> float(fold_in(k, 3).generator().random()) == float(fold_in(k, 3).generator().random())
    True
    """

    seed: int = attrs.field(converter=_seed)
    path: tuple[int, ...] = attrs.field(default=(), validator=_check_path)

    def generator(self) -> np.random.Generator:
        """Return a fresh generator; calling this twice gives two identical streams."""
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=self.path)))

    def __repr__(self) -> str:
        return f"Key(seed={self.seed}, path={self.path})"


def _derive(k: Key, path: tuple[int, ...]) -> Key:
    # k is valid and the appended indices were checked, so skip re-validating the whole path
    # (fold_in runs once per training step).
    new = object.__new__(Key)
    object.__setattr__(new, "seed", k.seed)
    object.__setattr__(new, "path", path)
    return new


def key(seed: int) -> Key:
    """Make the root key for ``seed`` (a non-negative int below ``2**128``).

    >>> import fnnet
    >>> k = fnnet.key(0)
    >>> k.generator().integers(0, 100, 3).tolist() == k.generator().integers(0, 100, 3).tolist()
    True
    """
    return Key(seed)


def split(k: Key, n: int = 2) -> tuple[Key, ...]:
    """Split ``k`` into ``n`` independent keys (pure: ``k`` is unchanged).

    Args:
        k: the key to split.
        n: how many keys, ``n >= 1``.
    Returns:
        A tuple of ``n`` keys, each different from ``k`` and from each other.

    >>> import fnnet
    >>> a, b = fnnet.split(fnnet.key(0))
    >>> a, a == b
    (Key(seed=0, path=(0, 0)), False)
    """
    if not _is_index(n) or n < 1:
        raise ValueError(f"split: n must be a positive int, got {n!r}")
    return tuple(_derive(k, k.path + (_SPLIT, i)) for i in range(int(n)))


def fold_in(k: Key, data: int) -> Key:
    """Derive a new key from ``k`` and a non-negative integer (an epoch, a step, a trial index).

    Any size of ``data`` is taken; different ``data`` (or a different ``k``) give a different key
    and stream. Data from ``2**32`` on is recorded in the path with its word count.

    >>> import fnnet
    >>> fnnet.fold_in(fnnet.key(3), 7)
    Key(seed=3, path=(1, 7))
    >>> fnnet.fold_in(fnnet.key(3), 2**40)
    Key(seed=3, path=(2, 2, 1099511627776))
    """
    if not _is_index(data):
        raise ValueError(f"fold_in: data must be a non-negative int, got {data!r}")
    d = int(data)
    if d < _WORD:
        return _derive(k, k.path + (_FOLD, d))
    return _derive(k, k.path + (_FOLD_WIDE, (d.bit_length() + 31) // 32, d))
