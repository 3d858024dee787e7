"""The exceptions fnnet raises for bad files.

Every reader in fnnet (checkpoints, IDX data sets, search results) fails with
:class:`FormatError`, a ``ValueError`` whose message names the file and the place in it.

>>> from fnnet.errors import FormatError
>>> e = FormatError("model.npz", "manifest: leaf 'params/0/w'", "shape (3,) does not match (4,)")
>>> str(e)
"model.npz: manifest: leaf 'params/0/w': shape (3,) does not match (4,)"
>>> isinstance(e, ValueError)
True
"""

from __future__ import annotations

import os

__all__ = ["FormatError"]


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
