"""Finding and loading MNIST-style data sets, and the checked downloader.

Three names are known to :func:`load_mnist`:

- ``"mnist-small"`` (the default): the real MNIST *test* set (10,000 digits) shipped inside the
  package, split into a fixed 8,000-image training part (its first 8,000 images) and a 2,000-image
  test part (its last 2,000). Every digit class appears in both parts. Note the MNIST test set's
  second half comes from writers whose digits are harder to read, so accuracy on this 2,000-image
  test part is a little lower than on the full MNIST test set.
- ``"mnist"`` and ``"fashion-mnist"``: the real 60,000 + 10,000 sets, read from the four IDX files
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
  ``t10k-labels-idx1-ubyte`` (each raw or gzip-compressed with ``.gz``) found in the first of
  :func:`search_paths`. Fashion-MNIST installs on Debian with
  ``apt-get install dataset-fashion-mnist``; both can be fetched with :func:`download`.

A directory path holding those four files is accepted as a name too. :func:`load_mnist_test`
gives the whole embedded 10,000-image MNIST test set (the book's evaluation set).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fnnet._io import atomic_write_bytes, probe_write
from fnnet.datasets.idx import read_idx
from fnnet.errors import FormatError
from fnnet.typing import Array

__all__ = [
    "NUM_CLASSES",
    "MNIST_SMALL_TRAIN",
    "MNIST_SMALL_TEST",
    "load_mnist",
    "load_mnist_test",
    "search_paths",
    "download",
]

NUM_CLASSES = 10
"""Number of classes in MNIST and Fashion-MNIST (labels 0..9).

>>> from fnnet.datasets import NUM_CLASSES, load_mnist
>>> (x, t), _ = load_mnist("mnist-small", one_hot=True)
>>> t.shape[1] == NUM_CLASSES
True
"""
MNIST_SMALL_TRAIN = 8000
"""Size of the training part of ``"mnist-small"`` (the first images of the embedded test set).

>>> from fnnet.datasets import MNIST_SMALL_TRAIN, load_mnist
>>> (x, t), _ = load_mnist("mnist-small")
>>> x.shape == (MNIST_SMALL_TRAIN, 784), t.shape == (MNIST_SMALL_TRAIN,)
(True, True)
"""
MNIST_SMALL_TEST = 2000
"""Size of the test part of ``"mnist-small"`` (the last images of the embedded test set).

>>> from fnnet.datasets import MNIST_SMALL_TEST, MNIST_SMALL_TRAIN, load_mnist_test
>>> x, t = load_mnist_test()
>>> len(x) == MNIST_SMALL_TRAIN + MNIST_SMALL_TEST
True
"""

#: Pixel values are bytes; ``normalize`` divides by this to map them into [0, 1].
_PIXEL_MAX = 255

_EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "data"
_EMBEDDED_IMAGES = "t10k-images-idx3-ubyte.gz"
_EMBEDDED_LABELS = "t10k-labels-idx1-ubyte.gz"

#: Where system packages install data sets (Debian's dataset-fashion-mnist: <dir>/fashion-mnist/*.gz).
_SYSTEM_DATA_DIR = Path("/usr/share/datasets")

_DOWNLOADABLE = ("mnist", "fashion-mnist")
_NAMES = ("mnist-small",) + _DOWNLOADABLE

# The four files of a full set, without the optional ".gz".
_TRAIN_IMAGES = "train-images-idx3-ubyte"
_TRAIN_LABELS = "train-labels-idx1-ubyte"
_TEST_IMAGES = "t10k-images-idx3-ubyte"
_TEST_LABELS = "t10k-labels-idx1-ubyte"
_FILES = (_TRAIN_IMAGES, _TRAIN_LABELS, _TEST_IMAGES, _TEST_LABELS)
_LABELS_HEADER = 8  # bytes before the first label: the magic number and one size

Data = tuple[tuple[Array, Array], tuple[Array, Array]]


# --------------------------------------------------------------------------------------------
# Finding and loading data sets
# --------------------------------------------------------------------------------------------


_NO_HOME = "no home directory ($HOME is unset or relative, and the user has none) and no absolute $XDG_CACHE_HOME"


def _user_cache_root() -> Path | None:
    """``$XDG_CACHE_HOME/fnnet`` (when absolute) or ``~/.cache/fnnet``; None without a home directory."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "fnnet"
    try:
        home = Path.home()  # $HOME, else the password database
    except (RuntimeError, KeyError):  # $HOME unset and the user has no entry there
        return None
    return home / ".cache" / "fnnet" if home.is_absolute() else None


def search_paths(name: str, path: str | os.PathLike[str] | None = None) -> list[Path]:
    """The directories :func:`load_mnist` searches for data set ``name``, in order.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        path: an explicit directory, searched first.
    Returns:
        ``[path, $FNNET_DATA/name, $XDG_CACHE_HOME/fnnet/name (or ~/.cache/fnnet/name),
        /usr/share/datasets/name]`` (entries whose source is unset are left out: no ``path``,
        ``FNNET_DATA`` unset or empty, no absolute ``XDG_CACHE_HOME`` and no home directory).

    >>> from fnnet.datasets import search_paths
    >>> search_paths("mnist", "/data/mnist")[0].as_posix()
    '/data/mnist'
    """
    dirs: list[Path] = []
    if path is not None:
        dirs.append(Path(path))
    env = os.environ.get("FNNET_DATA")
    if env:
        dirs.append(Path(env) / name)
    cache = _user_cache_root()
    if cache is not None:
        dirs.append(cache / name)
    dirs.append(_SYSTEM_DATA_DIR / name)
    return dirs


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_set(directory: Path) -> tuple[dict[str, Path] | None, str]:
    """The four files in ``directory`` (or None) and, when absent, why."""
    if not directory.is_dir():
        if directory.exists():
            return None, "not a directory"
        if directory.parent.exists() and not directory.parent.is_dir():
            return None, f"no such directory ({directory.parent} is not a directory)"
        return None, "no such directory"
    found = {stem: _find_file(directory, stem) for stem in _FILES}
    missing = [stem for stem, f in found.items() if f is None]
    if missing:
        return None, "missing " + ", ".join(f"{m}[.gz]" for m in missing)
    return {stem: f for stem, f in found.items() if f is not None}, ""


def _not_found(name: str, tried: list[tuple[Path, str]], path_given: bool) -> FileNotFoundError:
    env = os.environ.get("FNNET_DATA")
    if env and _find_set(Path(env))[0] is not None:  # FNNET_DATA names the set, not its parent
        hint = f" ($FNNET_DATA itself holds the four files: set FNNET_DATA to the directory above {name}/)"
        tried = [(d, why + hint if d == Path(env) / name else why) for d, why in tried]
    lines = [f"  {d}: {why}" for d, why in tried]
    files = ", ".join(f"{f}[.gz]" for f in _FILES)
    if name not in _DOWNLOADABLE:  # a directory given as the name: what it lacks names the files
        return FileNotFoundError(f"load_mnist: no data set in directory {name!r}: {tried[0][1]}")
    at = 1 if path_given else 0
    if not env:
        lines.insert(at, f"  $FNNET_DATA/{name}: FNNET_DATA is not set")
    if _user_cache_root() is None:
        lines.insert(at + 1, f"  ~/.cache/fnnet/{name}: {_NO_HOME}")
    get = _download_hint(name)
    how = [
        get,
        "put the four files in a directory DIR and give it: `--data DIR` on the command line "
        f"(fnnet train / fnnet evaluate), load_mnist(DIR) or load_mnist({name!r}, path=DIR) in Python",
        f"put them in $FNNET_DATA/{name}, with FNNET_DATA set to a directory of your choice",
    ]
    if name == "fashion-mnist":
        how.insert(0, f"on Debian/Ubuntu: apt-get install dataset-fashion-mnist (installs {_SYSTEM_DATA_DIR / name})")
    return FileNotFoundError(
        f"load_mnist: data set {name!r} not found; it needs {files}. Looked in:\n" + "\n".join(lines)
        + "\nGet it with one of:\n" + "\n".join(f"  - {h}" for h in how)
    )


def _writable(d: Path) -> bool:
    """Whether directory ``d`` could be made (if missing) and written into by this process: tried
    by creating and removing a file in its nearest existing ancestor (``os.access`` grants root
    every directory, even on a read-only or virtual file system)."""
    while not os.path.lexists(d) and d != d.parent:
        d = d.parent
    if not d.is_dir():
        return False
    try:
        probe_write(d / ".fnnet-probe")
    except OSError:
        return False
    return True


def _download_hint(name: str) -> str:
    """How to download set ``name`` so that ``load_mnist(name)`` finds it: into the user cache
    when it can be written, else into ``$FNNET_DATA`` (told to set it when unset or unwritable)."""
    cache = _user_cache_root()
    if cache is not None and _writable(cache / name):
        return (
            f"fnnet.datasets.download({name!r}) in Python (downloads into {cache / name}, "
            f"where `--data {name}` and load_mnist({name!r}) look)"
        )
    why = _NO_HOME if cache is None else f"the user cache {cache} cannot be written"
    env = os.environ.get("FNNET_DATA")
    if env and _writable(Path(env) / name):
        return (
            f"fnnet.datasets.download({name!r}, cache_dir={env!r}) in Python (downloads into {Path(env) / name}, "
            f"where `--data {name}` and load_mnist({name!r}) look; there is no usable user cache: {why})"
        )
    return (
        f"set FNNET_DATA to a writable directory DIR, then run fnnet.datasets.download({name!r}, cache_dir=DIR) "
        f"in Python (downloads into DIR/{name}, where `--data {name}` and load_mnist({name!r}) then look; "
        f"there is no usable user cache: {why})"
    )


def _not_a_name(name: str) -> Exception:
    """The error for a ``name`` that is neither a known data set nor a directory."""
    names = f"names: {', '.join(_NAMES)}"
    near = str(name).strip().rstrip("/" + (os.altsep or "")).lower()
    hint = f"; did you mean {near!r}?" if near in _NAMES else ""
    if os.path.lexists(name):
        return ValueError(f"load_mnist: {name!r} is not a directory; give the directory holding the four IDX files ({names})")
    if any(sep in str(name) for sep in (os.sep, os.altsep) if sep) or str(name).startswith(("~", ".")):
        return FileNotFoundError(f"load_mnist: no such directory {name!r} ({names}){hint}")
    return ValueError(f"load_mnist: unknown data set {name!r}; expected one of {_NAMES} or a directory{hint}")


def _pair(images_file: Path, labels_file: Path) -> tuple[Array, Array]:
    """Read and cross-check one (images, labels) pair: uint8 (N, H, W), N >= 1, and uint8 (N,) in 0..9.

    Raises:
        FormatError: naming the file at fault, and both files when they disagree.
    """
    x = read_idx(images_file)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise FormatError(images_file, "header", f"expected uint8 images (N, H, W), got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise FormatError(images_file, "header, size 0", "0 images: the data set is empty")
    if 0 in x.shape[1:]:
        raise FormatError(images_file, "header, sizes 1-2", f"images of {x.shape[1:]} pixels are empty")
    t = read_idx(labels_file)
    if t.ndim != 1 or t.dtype != np.uint8:
        raise FormatError(labels_file, "header", f"expected uint8 labels (N,), got {t.dtype} {t.shape}")
    if len(x) != len(t):
        raise FormatError(images_file, "header, size 0", f"{len(x)} images but {labels_file} has {len(t)} labels")
    bad = np.flatnonzero(t >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise FormatError(
            labels_file, f"label {i} (IDX byte {_LABELS_HEADER + i})", f"label {int(t[i])} out of range 0..{NUM_CLASSES - 1}"
        )
    return x, t


@functools.lru_cache(maxsize=1)
def _embedded() -> tuple[Array, Array]:
    """The embedded MNIST test set as read-only uint8 arrays, read once per process."""
    x, t = _pair(_EMBEDDED_DIR / _EMBEDDED_IMAGES, _EMBEDDED_DIR / _EMBEDDED_LABELS)
    x.flags.writeable = False
    t.flags.writeable = False
    return x, t


def _prepare(
    x: Array, t: Array, *, normalize: bool, flatten: bool, one_hot: bool, dtype: Any
) -> tuple[Array, Array]:
    """Apply the book's options to uint8 images (N, H, W) and uint8 labels (N,); returns new arrays."""
    n = len(x)
    if normalize:
        xs = x.astype(dtype) / np.asarray(_PIXEL_MAX, dtype=dtype)
    else:
        xs = x.copy()
    xs = xs.reshape(n, -1) if flatten else xs.reshape(n, 1, *x.shape[1:])
    if one_hot:
        ts = np.zeros((n, NUM_CLASSES), dtype=dtype)
        ts[np.arange(n), t] = 1  # fills a fresh array, never an input
    else:
        ts = t.astype(np.int64)
    return xs, ts


def _check_dtype(dtype: Any, normalize: bool, one_hot: bool) -> None:
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise ValueError(f"load_mnist: dtype {dtype!r} is not a NumPy dtype") from None
    if (normalize or one_hot) and dt.kind != "f":
        raise ValueError(f"load_mnist: dtype must be a floating dtype for normalize/one_hot, got {dt}")


def load_mnist_test(
    *, normalize: bool = True, flatten: bool = True, one_hot: bool = False, dtype: Any = np.float32
) -> tuple[Array, Array]:
    """The whole embedded MNIST test set (10,000 digits), the set the book evaluates on.

    Args:
        normalize, flatten, one_hot, dtype: as in :func:`load_mnist`.
    Returns:
        ``(x, t)``: images ``(10000, 784)`` (or ``(10000, 1, 28, 28)``), labels ``(10000,)`` int64
        (or ``(10000, 10)`` one-hot).

    >>> from fnnet.datasets import load_mnist_test
    >>> x, t = load_mnist_test()
    >>> x.shape, t.shape, float(x.max())
    ((10000, 784), (10000,), 1.0)
    """
    _check_dtype(dtype, normalize, one_hot)
    x, t = _embedded()
    return _prepare(x, t, normalize=normalize, flatten=flatten, one_hot=one_hot, dtype=dtype)


def load_mnist(
    name: str = "mnist-small",
    *,
    path: str | os.PathLike[str] | None = None,
    normalize: bool = True,
    flatten: bool = True,
    one_hot: bool = False,
    dtype: Any = np.float32,
) -> Data:
    """Load an MNIST-style data set with the book's options.

    Args:
        name: ``"mnist-small"`` (embedded, 8,000 train / 2,000 test), ``"mnist"``,
            ``"fashion-mnist"`` (60,000 / 10,000, looked up in :func:`search_paths`), or a
            directory holding the four IDX files.
        path: for ``"mnist"`` / ``"fashion-mnist"``, a directory searched before the others.
        normalize: pixels as ``pixels / 255`` in ``dtype`` (else the raw uint8 bytes).
        flatten: images as ``(N, H*W)`` (else ``(N, 1, H, W)``; MNIST has ``H = W = 28``).
        one_hot: labels as ``(N, 10)`` rows of ``dtype`` with a single 1 (else int64 ``(N,)``).
        dtype: the floating dtype of normalized images and one-hot labels.
    Returns:
        ``((x_train, t_train), (x_test, t_test))``, all new arrays.
    Raises:
        FileNotFoundError: the set is not found, or ``name`` is a path to no directory; the
            message lists every place looked in (and what each lacks) and how to get the data.
        FormatError: a damaged, hostile or inconsistent file, or an empty set (a ``ValueError``
            naming the file, both files when they disagree, and the place in it).
        ValueError: an unknown name (or a file given as the directory) or a bad option.
        OSError: a file found cannot be read (no permission, an I/O error).

    >>> from fnnet.datasets import load_mnist
    >>> (x_train, t_train), (x_test, t_test) = load_mnist("mnist-small", flatten=False)
    >>> x_train.shape, x_train.dtype, t_train[:5]
    ((8000, 1, 28, 28), dtype('float32'), array([7, 2, 1, 0, 4]))
    """
    _check_dtype(dtype, normalize, one_hot)
    opts: dict[str, Any] = {"normalize": normalize, "flatten": flatten, "one_hot": one_hot, "dtype": dtype}
    if name == "mnist-small":
        if path is not None:
            raise ValueError("load_mnist: 'mnist-small' is embedded in the package; path is not used for it")
        x, t = _embedded()
        n_train = MNIST_SMALL_TRAIN
        return _prepare(x[:n_train], t[:n_train], **opts), _prepare(x[n_train:], t[n_train:], **opts)
    if name in _DOWNLOADABLE:
        dirs = search_paths(name, path)
    elif os.path.isdir(name):
        if path is not None:
            raise ValueError(f"load_mnist: name {name!r} is a directory already; path is not used with it")
        dirs = [Path(name)]
    else:
        raise _not_a_name(name)
    tried: list[tuple[Path, str]] = []
    for d in dirs:
        files, why = _find_set(d)
        if files is not None:
            train = _pair(files[_TRAIN_IMAGES], files[_TRAIN_LABELS])
            test = _pair(files[_TEST_IMAGES], files[_TEST_LABELS])
            if train[0].shape[1:] != test[0].shape[1:]:
                raise FormatError(
                    files[_TEST_IMAGES], "header, sizes 1-2",
                    f"test images are {test[0].shape[1:]}, but {files[_TRAIN_IMAGES]} holds {train[0].shape[1:]}",
                )
            return _prepare(*train, **opts), _prepare(*test, **opts)
        tried.append((d, why))
    raise _not_found(name, tried, path_given=path is not None)


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


class _Source(NamedTuple):
    mirrors: tuple[str, ...]  # base URLs, tried in order
    md5: Mapping[str, str]  # file name -> MD5 of the file as served (gzip-compressed)


_SOURCES: Mapping[str, _Source] = {
    # MD5s of the .gz files as published with torchvision's MNIST loader (torchvision/datasets/mnist.py);
    # the same files are served by every mirror below.
    "mnist": _Source(
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        {
            f"{_TRAIN_IMAGES}.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            f"{_TRAIN_LABELS}.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            f"{_TEST_IMAGES}.gz": "9fb629c4189551a2d022fa330f9573f3",
            f"{_TEST_LABELS}.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    # MD5s from the "MD5 Checksum" column of Fashion-MNIST's README (zalandoresearch/fashion-mnist;
    # also shipped by Debian as /usr/share/doc/dataset-fashion-mnist/README.md.gz).
    "fashion-mnist": _Source(
        (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        {
            f"{_TRAIN_IMAGES}.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            f"{_TRAIN_LABELS}.gz": "25c81989df183df01b3e8a0aad5dffbe",
            f"{_TEST_IMAGES}.gz": "bef4ecab320f06d8554ea6380940ec79",
            f"{_TEST_LABELS}.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}

#: Seconds a connection or a single read may wait for a mirror before it is given up.
_DOWNLOAD_TIMEOUT_S = 60.0
# The largest file served is Fashion-MNIST's training images (26 MB): a mirror that sends more
# than this is cut off instead of filling memory.
_MAX_DOWNLOAD_BYTES = 64 << 20
_CHUNK = 1 << 20


def _urlopen(url: str) -> bytes:
    parts: list[bytes] = []
    got = 0
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        declared = response.headers.get("Content-Length", "").strip()
        size = int(declared) if declared.isdigit() else None
        if size is not None and size > _MAX_DOWNLOAD_BYTES:
            raise ValueError(f"announces {size} bytes, more than the {_MAX_DOWNLOAD_BYTES} any file needs")
        while chunk := response.read(min(_CHUNK, _MAX_DOWNLOAD_BYTES + 1 - got)):
            parts.append(chunk)
            got += len(chunk)
            if got > _MAX_DOWNLOAD_BYTES:
                raise ValueError(f"served more than {_MAX_DOWNLOAD_BYTES} bytes")
    if size is not None and got != size:  # http.client ends a cut-off body quietly
        raise ValueError(f"truncated: the connection closed after {got} of the {size} bytes announced")
    return b"".join(parts)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _file_md5(path: Path) -> str | None:
    """The MD5 of a cached file, read in chunks; None if it is too large to be a served file."""
    if path.stat().st_size > _MAX_DOWNLOAD_BYTES:
        return None
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _cache_error(e: OSError, path: Path) -> OSError:
    """``e`` (same class and errno) as a one-line error of :func:`download` naming ``path``."""
    why = e.strerror or str(e)
    return OSError(
        e.errno, f"download: cannot write the cache ({why}); pass cache_dir= or set XDG_CACHE_HOME", str(path)
    )


def _make_cache(target: Path) -> list[Path]:
    """Create ``target`` and its missing parents, and check it can be written into, before
    anything is fetched; returns the directories this call created, outermost first."""
    missing: list[Path] = []
    d = target
    while not os.path.lexists(d) and d != d.parent:
        missing.append(d)
        d = d.parent
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # made meanwhile by another process: not ours to remove
                continue
            created.append(d)
        if not target.is_dir():  # as mkdir(exist_ok=True) reports something else in its place
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
        if not os.access(target, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as e:
        _remove_empty(created)
        raise _cache_error(e, target) from e
    return created


def _remove_empty(created: list[Path]) -> None:
    """Remove the directories in ``created`` (outermost first) that are empty, innermost first;
    a directory holding anything, and so every one outside it, is kept."""
    for d in reversed(created):
        try:
            os.rmdir(d)
        except FileNotFoundError:  # removed already (it may be listed twice)
            continue
        except OSError:
            return


def download(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    fetch: Callable[[str], bytes] | None = None,
) -> Path:
    """Download ``"mnist"`` or ``"fashion-mnist"`` into the cache, verifying every file's MD5.

    Files already present with the right checksum are kept. Each file is tried on every mirror in
    turn; it is written (atomically: temporary file in the same directory, then ``os.replace``)
    only when its checksum matches, so a failed or interrupted download (an error, Ctrl-C) leaves
    no partial file behind, and no directory it created that is still empty (the files it did
    verify are kept); the next call fetches only the files still missing. Two processes may
    download the same set at once. A mirror that does not answer, or stalls, for 60 seconds is
    given up for the next one; a slow but steady transfer is not cut off (stop it with Ctrl-C).

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        cache_dir: the root directory; files go to ``cache_dir/name``. Default: the user cache,
            ``$XDG_CACHE_HOME/fnnet`` or ``~/.cache/fnnet``, which :func:`load_mnist` searches.
        fetch: ``url -> bytes`` (default: ``urllib``); inject one to use a proxy or a test double.
    Returns:
        The directory holding the four ``.gz`` files (pass it as ``path`` to :func:`load_mnist`).
    Raises:
        ValueError: an unknown name, no ``cache_dir`` and no user cache (no home directory), or a
            file that no mirror served with the right checksum (the message names the file and
            lists each mirror's failure: the MD5 served and the one expected, a truncated body,
            an HTTP or network error).
        OSError: the cache directory cannot be created or written (checked before fetching), or
            a file cannot be written into it (a full disk); the message names the directory or file.

    Fetching needs the network, so this example is not run by the tests:

    >>> path = download("fashion-mnist")  # doctest: +SKIP
    >>> (x_train, t_train), _ = load_mnist("fashion-mnist", path=path)  # doctest: +SKIP
    """
    if name not in _SOURCES:
        raise ValueError(f"download: unknown data set {name!r}; expected one of {tuple(_SOURCES)}")
    source = _SOURCES[name]
    get = _urlopen if fetch is None else fetch
    root = _user_cache_root() if cache_dir is None else Path(cache_dir)
    if root is None:
        raise ValueError(f"download: no user cache: {_NO_HOME}; pass cache_dir=")
    target = root / name
    wanted = {
        filename: md5 for filename, md5 in source.md5.items()
        if not ((target / filename).is_file() and _file_md5(target / filename) == md5)
    }
    created = _make_cache(target) if wanted else []
    try:
        for filename, md5 in wanted.items():
            dest = target / filename
            if dest.is_file() and _file_md5(dest) == md5:  # written meanwhile by another process
                continue
            failures: list[str] = []
            for base in source.mirrors:
                url = base + filename
                try:
                    data = get(url)
                except Exception as e:  # any network failure: try the next mirror
                    failures.append(f"{url}: {type(e).__name__}: {e}")
                    continue
                got = _md5(data)
                if got != md5:
                    failures.append(f"{url}: MD5 {got}, expected {md5}")
                    continue
                created += _make_cache(target)  # again: a failed concurrent download may have removed it
                try:
                    atomic_write_bytes(dest, data)
                except OSError as e:
                    raise _cache_error(e, dest) from e
                break
            else:
                raise ValueError(f"download: could not get {filename} for {name!r}:\n  " + "\n  ".join(failures))
    except BaseException:
        _remove_empty(created)
        raise
    return target
