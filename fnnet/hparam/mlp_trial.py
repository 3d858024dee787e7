"""The book's experiment (section 6.5) as a picklable objective: :class:`MLPTrial`.

This is the one part of :mod:`fnnet.hparam` that trains networks; the runner never imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import attrs
import numpy as np

from fnnet.hparam.space import Value, _integer, _real
from fnnet.random import Key, split
from fnnet.random import key as make_key
from fnnet.typing import Array

__all__ = ["MLPTrial", "MLP_TRIAL_OPTIMIZERS"]

MLP_TRIAL_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
"""Optimizer names :class:`MLPTrial` accepts (functions of ``fnnet.optim`` taking the learning rate).

>>> from fnnet.hparam import MLP_TRIAL_OPTIMIZERS, MLPTrial
>>> "adam" in MLP_TRIAL_OPTIMIZERS, MLPTrial(optimizer="adam").optimizer
(True, 'adam')
"""

_MLP_HPARAMS = frozenset({"lr", "weight_decay"})


def _positive_int(inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{type(inst).__name__}: {attribute.name} must be a positive int, got {value!r}")


def _to_sizes(value: Any) -> Any:
    return tuple(_integer(h) for h in value) if isinstance(value, (list, tuple)) else value


def _check_hidden(inst: object, attribute: attrs.Attribute[tuple[int, ...]], value: tuple[int, ...]) -> None:
    if not isinstance(value, tuple) or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in value):
        raise ValueError(f"MLPTrial: hidden_sizes must be positive ints, got {value!r}")


def _check_fraction(inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, float) or not 0.0 < value < 1.0:
        raise ValueError(f"MLPTrial: val_fraction must be in (0, 1), got {value!r}")


def _check_activation(inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    from fnnet.models import ACTIVATIONS  # here, not at the top: importing this module trains nothing

    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise ValueError(f"MLPTrial: activation must be one of {sorted(ACTIVATIONS)}, got {value!r}")


def _check_optimizer(inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in MLP_TRIAL_OPTIMIZERS:
        raise ValueError(f"MLPTrial: optimizer must be one of {MLP_TRIAL_OPTIMIZERS}, got {value!r}")


def _to_data(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _check_data(inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"MLPTrial: data must be a load_mnist data-set name or directory, got {value!r}")


def _hparam(hparams: Mapping[str, Value], name: str, default: float | None = None) -> float:
    value = hparams.get(name, default)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"MLPTrial: hparams[{name!r}] must be a number, got {value!r}")
    return float(value)


def _check_split_seed(inst: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"MLPTrial: split_seed must be None or a non-negative int, got {value!r}")


@lru_cache(maxsize=4)
def _training_data(name: str) -> tuple[Array, Array]:
    """The training part of data set ``name``, read once per process (read-only arrays)."""
    from fnnet.datasets import load_mnist

    (x, t), _ = load_mnist(name)
    x, t = np.array(x), np.array(t)
    x.flags.writeable = False
    t.flags.writeable = False
    return x, t


@attrs.frozen
class MLPTrial:
    """The book's experiment as a picklable objective: an MLP trained on a few samples.

    ``trial(hparams, key)`` takes the first ``n_train`` training samples of data set ``data``
    (loaded by name inside the worker; the test set is never touched), holds out
    ``round(val_fraction * n_train)`` of them for validation, trains ``mlp(hidden_sizes)`` with
    ``optimizer(hparams["lr"])`` and the coupled L2 ``hparams.get("weight_decay", 0)`` for ``epochs``
    epochs, and returns the final ``{"val_acc", "train_acc", "loss"}``. Deterministic in ``key``.

    Attributes:
        data: a ``fnnet.datasets.load_mnist`` name (or directory).
        n_train: samples used, validation included (the book: 500).
        val_fraction: the held-out share (the book: 0.2).
        hidden_sizes: the MLP's hidden layers (the book: six of 100).
        activation: the hidden activation (He init for ReLU, as the book).
        epochs, batch_size: training length (the book: 50 epochs of 100).
        optimizer: one of :data:`MLP_TRIAL_OPTIMIZERS` (the book: SGD).
        split_seed: ``None`` (default): each trial carves its own validation split from its key;
            an int: every trial uses the same split from ``key(split_seed)``, as the book does.

    >>> import fnnet
    >>> from fnnet.hparam import MLPTrial
    >>> trial = MLPTrial(n_train=100, hidden_sizes=(16,), epochs=2, batch_size=20)
    >>> metrics = trial({"lr": 0.1}, fnnet.key(0))
    >>> sorted(metrics), 0.0 <= metrics["val_acc"] <= 1.0
    (['loss', 'train_acc', 'val_acc'], True)
    """

    data: str = attrs.field(default="mnist-small", converter=_to_data, validator=_check_data)
    n_train: int = attrs.field(default=500, converter=_integer, validator=_positive_int)
    val_fraction: float = attrs.field(default=0.2, converter=_real, validator=_check_fraction)
    hidden_sizes: tuple[int, ...] = attrs.field(default=(100,) * 6, converter=_to_sizes, validator=_check_hidden)
    activation: str = attrs.field(default="relu", validator=_check_activation)
    epochs: int = attrs.field(default=50, converter=_integer, validator=_positive_int)
    batch_size: int = attrs.field(default=100, converter=_integer, validator=_positive_int)
    optimizer: str = attrs.field(default="sgd", validator=_check_optimizer)
    split_seed: int | None = attrs.field(default=None, converter=_integer, validator=_check_split_seed)

    def __attrs_post_init__(self) -> None:
        n_val = self.n_val
        if not 1 <= n_val < self.n_train:
            raise ValueError(
                f"MLPTrial: val_fraction {self.val_fraction} of n_train {self.n_train} leaves "
                f"{n_val} validation and {self.n_train - n_val} training samples; need at least 1 each"
            )

    @property
    def n_val(self) -> int:
        """Number of held-out validation samples."""
        return int(round(self.val_fraction * self.n_train))

    def __call__(self, hparams: Mapping[str, Value], key: Key) -> dict[str, float]:
        """Train with ``hparams`` (``"lr"``, optional ``"weight_decay"``) and key ``key``.

        Returns:
            ``{"val_acc": ..., "train_acc": ..., "loss": ...}`` after the last epoch.
        """
        from fnnet import optim
        from fnnet.datasets import train_val_split
        from fnnet.models import mlp
        from fnnet.train import fit

        unknown = set(hparams) - _MLP_HPARAMS
        if unknown or "lr" not in hparams:
            raise ValueError(
                f"MLPTrial: hparams must have 'lr' and may have 'weight_decay', got {sorted(hparams)}"
            )
        lr, wd = _hparam(hparams, "lr"), _hparam(hparams, "weight_decay", 0.0)
        x_all, t_all = _training_data(self.data)
        if self.n_train > len(x_all):
            raise ValueError(f"MLPTrial: n_train {self.n_train} exceeds the {len(x_all)} samples of {self.data!r}")
        x, t = x_all[: self.n_train], t_all[: self.n_train]
        split_key, fit_key = split(key)
        if self.split_seed is not None:
            split_key = make_key(self.split_seed)
        (x_tr, t_tr), (x_val, t_val) = train_val_split(split_key, x, t, val_size=self.n_val)
        make_optimizer: Callable[[float], Any] = getattr(optim, self.optimizer)
        model = mlp(self.hidden_sizes, 10, activation=self.activation)
        res = fit(model, make_optimizer(lr), (x_tr, t_tr), key=fit_key, epochs=self.epochs,
                  batch_size=self.batch_size, val=(x_val, t_val), weight_decay=wd, progress="quiet")
        last = res.history.epochs[-1]
        return {"val_acc": last["val_acc"], "train_acc": last["train_acc"], "loss": last["loss"]}
