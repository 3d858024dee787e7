"""Atomic file writes shared by checkpoints, downloads, search results and the CLI, and the
guarded open every reader uses.

:func:`open_regular` opens a file for reading without blocking on a FIFO and refuses anything but
a regular file (a FIFO, socket or device) with :class:`fnnet.errors.FormatError`.

:func:`atomic_write` writes into a temporary file beside the target, named
``.NAME.PID.XXXXXXXX.tmp`` (``PID`` is the writing process), flushes and fsyncs it, renames it
over the target with ``os.replace`` and fsyncs the directory. The new file keeps the permission
bits of the file it replaces; a file that did not exist gets those ``open`` would give it
(``0o666`` less the process's umask). What is left on disk:

- after an exception (including ``KeyboardInterrupt``) in the writer: the old target, untouched,
  and no temporary file;
- after the writing process is killed (``kill -9``, power loss): the old target or the new one,
  each complete, never a mix; the killed writer's temporary file may remain, and the next
  :func:`atomic_write` to the same target removes it.

The next write removes a leftover ``.NAME.*.tmp`` of its target when the process named in it is
no longer running on this machine, or when the file has not been modified for
:data:`STALE_AFTER` seconds (a reused PID, a writer on another machine, or a temporary file of an
older fnnet without a PID in its name). The temporary file of a live concurrent writer on this
machine is left alone. Two machines writing one target on a shared file system at the same moment
may remove each other's temporary file; the losing write then fails with an ``OSError`` and the
target stays complete.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fnnet.errors import FormatError

__all__ = ["STALE_AFTER", "atomic_write", "atomic_write_bytes", "npz_member_header", "open_regular"]

#: Seconds without modification after which a leftover temporary file is removed even if the PID
#: in its name belongs to a running process (which then is a reused PID or another machine's).
STALE_AFTER = 3600.0

# What follows ".NAME." in a temporary file's name: an optional "PID." (absent in files of older
# fnnet versions), then a random part of 8 characters (hex now, tempfile.mkstemp's before).
_TEMP_TAIL = re.compile(r"(?:(?P<pid>[0-9]{1,12})\.)?[a-z0-9_]{8}\.tmp")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(f)`` into a temporary file beside ``path``, then rename it.

    The temporary file is fsynced before the rename and the directory after it. A crash or an
    exception leaves either the old file or the new one, never a partial file; see the module
    docstring for which temporary files can be left and when they are removed.

    Args:
        path: the file to write (replaced if it exists).
        write: called once with the temporary file, open for binary writing.
    Raises:
        OSError: the file cannot be written (no such directory, no permission, disk full): the
            same ``OSError`` subclass and errno, with ``filename`` set to ``path``.

    >>> import tempfile, pathlib
    >>> from fnnet._io import atomic_write
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write(d / "a.txt", lambda f: f.write(b"hello"))
    >>> (d / "a.txt").read_bytes(), sorted(p.name for p in d.iterdir())
    (b'hello', ['a.txt'])
    """
    p = Path(path)
    try:
        _remove_stale_temps(p)
        fd, tmp = _create_temp(p)
    except OSError as e:
        raise _naming(e, p, None) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _keep_mode(p, tmp)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _naming(e, p, tmp) from e
        raise
    _fsync_dir(p.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """:func:`atomic_write` of ``data``.

    >>> import tempfile, pathlib
    >>> from fnnet._io import atomic_write_bytes
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "b.bin"
    >>> atomic_write_bytes(target, b"\\x00\\x01")
    >>> target.read_bytes()
    b'\\x00\\x01'
    """

    def write(f: BinaryIO) -> None:
        f.write(data)

    atomic_write(path, write)


def _create_temp(target: Path) -> tuple[int, str]:
    """A new temporary file ``.NAME.PID.XXXXXXXX.tmp`` beside ``target``, open for writing, created
    with mode ``0o666`` so that the process's umask applies as for ``open``."""
    for _ in range(100):
        tmp = str(target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target))


def probe_write(target: Path) -> None:
    """Create and remove the temporary file an :func:`atomic_write` of ``target`` would create
    beside it; ``OSError`` if that fails. ``os.access`` grants root every directory, even on a
    read-only or virtual file system, so only trying tells before the work is done."""
    fd, tmp = _create_temp(target)
    os.close(fd)
    with contextlib.suppress(OSError):  # a file left behind is removed by the next write of target
        os.unlink(tmp)


def _keep_mode(target: Path, tmp: str) -> None:
    """Give ``tmp`` the permission bits of the regular file ``target`` it replaces, if there is one."""
    try:
        st = os.stat(target)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode):
        os.chmod(tmp, stat.S_IMODE(st.st_mode))


def _naming(e: OSError, target: Path, tmp: str | None) -> OSError:
    """``e`` as an error about ``target`` (it may name the temporary file, or no file at all).

    With ``tmp`` given, an error about some other file (raised by a ``write`` callback that reads
    one) is kept as it is.
    """
    if tmp is not None and e.filename not in (None, tmp):
        return e
    try:
        if e.errno is not None:
            return type(e)(e.errno, e.strerror, os.fspath(target))
        return type(e)(f"{target}: {e}")
    except TypeError:  # an OSError subclass with another constructor
        return e


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True when that cannot be told)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) is not a harmless probe on Windows
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    return True


def _remove_stale_temps(target: Path) -> None:
    """Remove temporary files of ``target`` left by dead writers or untouched for STALE_AFTER."""
    prefix = f".{target.name}."
    now = time.time()
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return  # mkstemp reports an unusable directory
    for entry in entries:
        m = _TEMP_TAIL.fullmatch(entry.name[len(prefix):]) if entry.name.startswith(prefix) else None
        if m is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            pid = m.group("pid")
            stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER
            if stale or (pid is not None and not _alive(int(pid))):
                os.unlink(entry.path)
        except OSError:
            pass  # removed meanwhile by another writer, or not ours to remove


def _fsync_dir(d: Path) -> None:
    """Make the rename durable where the platform allows syncing a directory."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_nonblocking(file: str, flags: int) -> int:
    # Without O_NONBLOCK, opening a FIFO for reading waits for a writer, possibly forever.
    return os.open(file, flags | getattr(os, "O_NONBLOCK", 0))


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a file"


def open_regular(path: str | os.PathLike[str]) -> io.BufferedReader:
    """Open ``path`` for binary reading if it is a regular file (symbolic links followed).

    The open never blocks: a FIFO is refused at once instead of waiting for a writer.

    Args:
        path: the file.
    Returns:
        The open file, positioned at its start, in blocking mode; the caller closes it.
    Raises:
        FormatError: ``path`` is a FIFO, socket or device (naming it and what it is).
        OSError: ``path`` cannot be opened: ``FileNotFoundError``, ``IsADirectoryError``,
            ``PermissionError``, or ``ELOOP`` for a symbolic link loop.

    >>> import os, tempfile
    >>> from fnnet.errors import FormatError
    >>> from fnnet._io import open_regular
    >>> d = tempfile.mkdtemp()
    >>> os.mkfifo(os.path.join(d, "pipe"))  # no writer: open() would wait for one
    >>> try:
    ...     open_regular(os.path.join(d, "pipe"))
    ... except FormatError as e:
    ...     print(e.reason)
    not a regular file (a FIFO)
    >>> with open(os.path.join(d, "a.bin"), "wb") as f:
    ...     _ = f.write(b"ab")
    >>> with open_regular(os.path.join(d, "a.bin")) as f:
    ...     f.read()
    b'ab'
    """
    f = open(path, "rb", opener=_open_nonblocking)
    try:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise FormatError(path, "", f"not a regular file ({_file_kind(mode)})")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(f.fileno(), True)
    except BaseException:
        f.close()
        raise
    return f


def npz_member_header(npz: Any, key: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The shape and dtype of array ``key`` of an open ``np.load`` archive, from its ``.npy`` header
    alone: nothing of the array's data is read or allocated.

    Args:
        npz: an open ``numpy.lib.npyio.NpzFile``.
        key: one of ``npz.files``.
    Returns:
        ``(shape, dtype)`` as the header declares them.
    Raises:
        ValueError: the member's header is not a ``.npy`` header of version 1.0 or 2.0 (or
            ``zipfile``/``zlib`` errors for a damaged archive, ``KeyError`` for a missing key).

    >>> import io, numpy as np
    >>> from fnnet._io import npz_member_header
    >>> buf = io.BytesIO()
    >>> np.savez(buf, w=np.zeros((3, 4), np.float16))
    >>> with np.load(io.BytesIO(buf.getvalue()), allow_pickle=False) as z:
    ...     npz_member_header(z, "w")
    ((3, 4), dtype('float16'))
    """
    with npz.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    return tuple(int(s) for s in shape), np.dtype(dtype)
