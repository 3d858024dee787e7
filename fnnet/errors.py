"""The exceptions fnnet raises for bad files, and the shape of its interrupts.

Every reader in fnnet (checkpoints, IDX data sets, search results) fails with
:class:`FormatError`, a ``ValueError`` whose message names the file and the place in it. A Ctrl-C
during a long run (:func:`fnnet.fit`, :func:`fnnet.hparam.random_search`) becomes an exception that
is still a ``KeyboardInterrupt`` and carries what the run had reached
(:class:`fnnet.train.TrainingInterrupted`, :class:`fnnet.hparam.SearchInterrupted`).

>>> from fnnet.errors import FormatError
>>> e = FormatError("model.npz", "manifest: leaf 'params/0/w'", "shape (3,) does not match (4,)")
>>> str(e)
"model.npz: manifest: leaf 'params/0/w': shape (3,) does not match (4,)"
>>> isinstance(e, ValueError)
True
"""

from __future__ import annotations

import os
from typing import TypeVar, cast

__all__ = ["FormatError"]

_I = TypeVar("_I", bound=KeyboardInterrupt)
_kinds: dict[tuple[type[KeyboardInterrupt], type[KeyboardInterrupt]], type[KeyboardInterrupt]] = {}


class FormatError(ValueError):
    """A file fnnet was asked to read is damaged, hostile or not what it claims to be.

    Attributes:
        path: the file, as given.
        where: the place in it (a leaf path, a header field, a byte offset); ``""`` if the whole file.
        reason: what is wrong there.

    >>> from fnnet.errors import FormatError
    >>> err = FormatError("weights.npz", "0/w", "shape (3,) does not match (784, 50)")
    >>> str(err)
    'weights.npz: 0/w: shape (3,) does not match (784, 50)'
    >>> isinstance(err, ValueError), err.where
    (True, '0/w')
    """

    def __init__(self, path: str | os.PathLike[str], where: str, reason: str):
        self.path = os.fspath(path)
        self.where = where
        self.reason = reason
        super().__init__(f"{self.path}: {where}: {reason}" if where else f"{self.path}: {reason}")


def _interrupt_class(cls: type[_I], caught: KeyboardInterrupt) -> type[_I]:
    """The class to raise, in place of the interrupt ``caught``, an interrupt ``cls`` that keeps a
    run's results: ``cls`` itself for a plain ``KeyboardInterrupt`` (or one of ``cls``'s kind), else
    a class derived from both ``cls`` and ``caught``'s own subclass (a SIGTERM handler's), so that
    an ``except`` for that subclass still catches it."""
    kind = type(caught)
    if kind is KeyboardInterrupt or issubclass(kind, cls):
        return kind if issubclass(kind, cls) and kind.__init__ is cls.__init__ else cls
    both = _kinds.get((cls, kind))
    if both is None:
        name = f"{cls.__name__}[{kind.__name__}]"
        both = _kinds[(cls, kind)] = type(name, (cls, kind), {"__module__": cls.__module__, "__qualname__": name})
    return cast("type[_I]", both)
