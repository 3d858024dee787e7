"""The package version (one place; pyproject.toml carries the same number)."""

__version__ = "0.1.0"
"""fnnet's version, ``"MAJOR.MINOR.PATCH"``.

>>> import fnnet
>>> major, minor, patch = map(int, fnnet.__version__.split("."))
>>> (major, minor, patch) >= (0, 1, 0)
True
"""
