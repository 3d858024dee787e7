"""Keyed shuffling, train/validation splits and mini-batches; none writes into its inputs, and
none hands out a writable view of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fnnet.random import Key
from fnnet.typing import Array

__all__ = ["shuffle", "train_val_split", "batches"]


def _common_length(where: str, arrays: tuple[Any, ...]) -> int:
    if not arrays:
        raise ValueError(f"{where}: need at least one array")
    for i, a in enumerate(arrays):
        if np.ndim(a) == 0:
            what = type(a).__name__
            raise ValueError(f"{where}: array {i} needs a first (sample) dimension, got a {what} of shape ()")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) != 1:
        raise ValueError(f"{where}: arrays must have the same length (first dimension), got {lengths}")
    return lengths[0]


def _check_key(where: str, key: Any) -> Key:
    if not isinstance(key, Key):
        raise ValueError(f"{where}: key must be a fnnet.random.Key, got {key!r}")
    return key


def shuffle(key: Key, *arrays: Array) -> tuple[Array, ...]:
    """Shuffle several arrays with one permutation drawn from ``key``.

    Args:
        key: the random key.
        *arrays: arrays of equal length ``N`` (first dimension).
    Returns:
        New arrays ``a[perm]`` in the same order, the same ``perm`` for all.

    >>> import numpy as np, fnnet
    >>> from fnnet.datasets import shuffle
    >>> x, t = np.arange(5), np.arange(5) * 10
    >>> xs, ts = shuffle(fnnet.key(0), x, t)
    >>> bool((ts == xs * 10).all()), sorted(xs.tolist())
    (True, [0, 1, 2, 3, 4])
    """
    n = _common_length("shuffle", arrays)
    perm = _check_key("shuffle", key).generator().permutation(n)
    return tuple(np.asarray(a)[perm] for a in arrays)


def train_val_split(
    key: Key, x: Array, t: Array, *, val_size: int | float
) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """Split ``(x, t)`` at random into a training and a validation part.

    Args:
        key: the random key choosing the validation samples.
        x: inputs ``(N, ...)``.
        t: targets ``(N, ...)``.
        val_size: the number of validation samples (an int in ``[1, N-1]``) or their share (a float
            in ``(0, 1)``, rounded to a count that must leave at least one sample on each side).
    Returns:
        ``((x_train, t_train), (x_val, t_val))``: new arrays, each sample in exactly one part.

    >>> import numpy as np, fnnet
    >>> from fnnet.datasets import train_val_split
    >>> (x_tr, t_tr), (x_val, t_val) = train_val_split(fnnet.key(0), np.zeros((10, 3)), np.arange(10), val_size=0.2)
    >>> x_tr.shape, x_val.shape
    ((8, 3), (2, 3))
    """
    n = _common_length("train_val_split", (x, t))
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float, np.integer, np.floating)):
        raise ValueError(f"train_val_split: val_size must be an int or a float, got {val_size!r}")
    if isinstance(val_size, (float, np.floating)):
        if not 0.0 < val_size < 1.0:
            raise ValueError(f"train_val_split: a fractional val_size must be in (0, 1), got {val_size}")
        n_val = int(round(float(val_size) * n))
    else:
        n_val = int(val_size)
    if not 1 <= n_val <= n - 1:
        raise ValueError(
            f"train_val_split: val_size {val_size!r} gives {n_val} validation samples out of {n}; "
            "need at least 1 validation and 1 training sample"
        )
    perm = _check_key("train_val_split", key).generator().permutation(n)
    val, train = perm[:n_val], perm[n_val:]
    xa, ta = np.asarray(x), np.asarray(t)
    return (xa[train], ta[train]), (xa[val], ta[val])


def batches(
    key: Key | None,
    x: Array,
    t: Array,
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[Array, Array]]:
    """Mini-batches ``(x_batch, t_batch)`` covering the data once (one epoch).

    Args:
        key: the random key of this epoch's order; may be ``None`` (and is unused) when
            ``shuffle=False``.
        x: inputs ``(N, ...)``.
        t: targets ``(N, ...)``.
        batch_size: samples per batch, a positive int.
        shuffle: visit the samples in a random order drawn from ``key`` (else in order).
        drop_last: leave out a last batch smaller than ``batch_size``.
    Returns:
        An iterator of ``(x_batch, t_batch)`` of ``batch_size`` samples (the last one may be
        smaller unless ``drop_last``): new arrays when shuffled, else read-only views of ``x`` and
        ``t`` (nothing is copied; copy a batch before changing it in place). Arguments are checked
        when this is called, not when iterated.

    >>> import numpy as np, fnnet
    >>> from fnnet.datasets import batches
    >>> x, t = np.zeros((10, 3)), np.arange(10)
    >>> [len(tb) for _, tb in batches(fnnet.key(0), x, t, 4)]
    [4, 4, 2]
    """
    n = _common_length("batches", (x, t))
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive int, got {batch_size!r}")
    xa, ta = np.asarray(x), np.asarray(t)
    order: Array | None = None
    if key is not None:
        _check_key("batches", key)
    if shuffle:
        if key is None:
            raise ValueError("batches: shuffle=True needs a key (pass key=None only with shuffle=False)")
        order = key.generator().permutation(n)
    stop = n - n % batch_size if drop_last else n
    return _iterate(xa, ta, order, int(batch_size), stop)


def _iterate(x: Array, t: Array, order: Array | None, batch_size: int, stop: int) -> Iterator[tuple[Array, Array]]:
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, stop)
        if order is None:
            yield _read_only(x[start:end]), _read_only(t[start:end])
        else:
            idx = order[start:end]
            yield x[idx], t[idx]


def _read_only(view: Array) -> Array:
    """``view`` (a fresh view object of the caller's data) made read-only."""
    view.flags.writeable = False
    return view
