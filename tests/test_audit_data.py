"""Audit of the data-set API as a user meets it: name and directory look-up, load options, and
download() against a real HTTP server on 127.0.0.1 (404, truncated and oversized bodies, wrong
bytes, a stalled mirror, Ctrl-C, two processes at once, an unusable cache)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from _helpers import no_home

import fnnet
import fnnet.datasets.sources as sources
from fnnet.datasets import download, load_mnist, search_paths
from fnnet.errors import FormatError
from fnnet.typing import Array

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
ROOT = Path(fnnet.__file__).resolve().parent.parent


def idx(a: Array) -> bytes:
    """An uint8 IDX file: magic 00 00 08 ndim, big-endian uint32 sizes, the bytes."""
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def make_set(d: Path, n_train: int, n_test: int, *, gz: tuple[bool, ...] = (True,) * 4) -> dict[str, Array]:
    """Four small IDX files in ``d`` (file i gzip-compressed when ``gz[i]``); returns the arrays."""
    d.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(n_train)
    arrays = {
        STEMS[0]: g.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        STEMS[1]: (np.arange(n_train) % 10).astype(np.uint8),
        STEMS[2]: g.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        STEMS[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }
    for (stem, a), z in zip(arrays.items(), gz):
        (d / (stem + ".gz" if z else stem)).write_bytes(gzip.compress(idx(a), mtime=0) if z else idx(a))
    return arrays



# --------------------------------------------------------------------------------------------
# Look-up
# --------------------------------------------------------------------------------------------


def test_no_home_directory_leaves_the_other_places_usable(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A container running an arbitrary uid: $HOME unset and no passwd entry (Path.home() raises).
    make_set(isolated / "mine", 7, 3)
    no_home(monkeypatch)
    (x, _), _ = load_mnist("mnist", path=isolated / "mine")
    assert len(x) == 7
    assert search_paths("mnist") == [isolated / "system" / "mnist"]
    with pytest.raises(FileNotFoundError, match=r"~/\.cache/fnnet/mnist: no home directory") as info:
        load_mnist("mnist")
    assert "download('mnist', cache_dir=DIR)" in str(info.value)
    with pytest.raises(ValueError, match="no user cache.*cache_dir="):
        download("mnist", fetch=lambda url: b"")
    monkeypatch.setenv("HOME", "relative/home")  # not a place to write a cache into
    assert search_paths("mnist") == [isolated / "system" / "mnist"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "xdg"))  # an absolute XDG cache needs no home
    assert search_paths("mnist")[0] == isolated / "xdg" / "fnnet" / "mnist"


def test_fnnet_data_mistakes_are_explained(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated / "a-file").write_bytes(b"")
    monkeypatch.setenv("FNNET_DATA", str(isolated / "a-file"))
    with pytest.raises(FileNotFoundError, match=f"a-file/mnist: no such directory \\({isolated / 'a-file'} is not a directory\\)"):
        load_mnist("mnist")
    (isolated / "empty").mkdir()
    monkeypatch.setenv("FNNET_DATA", str(isolated / "empty"))
    with pytest.raises(FileNotFoundError, match="empty/mnist: no such directory\n"):
        load_mnist("mnist")
    # FNNET_DATA set to the set itself instead of the directory above it.
    make_set(isolated / "sets" / "mnist", 5, 2)
    monkeypatch.setenv("FNNET_DATA", str(isolated / "sets" / "mnist"))
    with pytest.raises(FileNotFoundError, match=r"FNNET_DATA itself holds the four files.*directory above mnist/"):
        load_mnist("mnist")
    monkeypatch.setenv("FNNET_DATA", str(isolated / "sets"))
    assert len(load_mnist("mnist")[0][0]) == 5


def test_names_that_are_paths_or_near_misses(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_set(isolated / "mine", 6, 2)
    assert len(load_mnist(str(isolated / "mine") + "/")[0][0]) == 6  # a trailing slash is still the directory
    with pytest.raises(FileNotFoundError, match=f"no such directory '{isolated / 'nope'}'"):
        load_mnist(str(isolated / "nope"))
    (isolated / "a-file").write_bytes(b"")
    with pytest.raises(ValueError, match="'.*a-file' is not a directory"):
        load_mnist(str(isolated / "a-file"))
    with pytest.raises(ValueError, match="unknown data set 'MNIST'.*did you mean 'mnist'"):
        load_mnist("MNIST")
    with pytest.raises(ValueError, match="did you mean 'fashion-mnist'"):
        load_mnist("Fashion-MNIST")
    monkeypatch.chdir(isolated)  # no directory "mnist" here
    with pytest.raises(FileNotFoundError, match="no such directory 'mnist/'.*did you mean 'mnist'"):
        load_mnist("mnist/")


def test_incomplete_directory_names_each_missing_file(isolated: Path) -> None:
    make_set(isolated / "part", 6, 2)
    for stem in (STEMS[1], STEMS[3]):
        (isolated / "part" / f"{stem}.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(str(isolated / "part"))
    missing = str(info.value).splitlines()[-1]
    assert f"missing {STEMS[1]}[.gz], {STEMS[3]}[.gz]" in missing
    assert STEMS[0] not in missing and STEMS[2] not in missing


def test_swapped_train_and_test_images_are_one_format_error(isolated: Path) -> None:
    d = isolated / "swapped"
    make_set(d, 12, 5)
    a, b = d / f"{STEMS[0]}.gz", d / f"{STEMS[2]}.gz"
    a.rename(d / "x"), b.rename(a), (d / "x").rename(b)
    with pytest.raises(FormatError, match="5 images but .* has 12 labels") as info:
        load_mnist(str(d))
    assert str(a) in str(info.value) and str(d / f"{STEMS[1]}.gz") in str(info.value)


def test_gzip_and_raw_files_may_be_mixed(isolated: Path) -> None:
    arrays = make_set(isolated / "mixed", 8, 4, gz=(True, False, False, True))
    (x, t), (xt, tt) = load_mnist(str(isolated / "mixed"), normalize=False, flatten=False)
    assert np.array_equal(x[:, 0], arrays[STEMS[0]]) and np.array_equal(t, arrays[STEMS[1]])
    assert np.array_equal(xt[:, 0], arrays[STEMS[2]]) and np.array_equal(tt, arrays[STEMS[3]])


def test_a_dtype_that_is_not_one_is_a_value_error() -> None:
    for normalize in (True, False):
        with pytest.raises(ValueError, match="load_mnist: dtype 'bogus' is not a NumPy dtype"):
            load_mnist(dtype="bogus", normalize=normalize)


# --------------------------------------------------------------------------------------------
# download() against a local HTTP server
# --------------------------------------------------------------------------------------------

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class Server:
    """An HTTP server on 127.0.0.1 serving ``routes[path](handler)``; 404 for other paths."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (a timeout, Ctrl-C) is expected here

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def serve(self, path: str, body: bytes, *, length: int | None = None, delay: float = 0.0) -> None:
        """Serve ``body`` at ``path`` announcing ``length`` bytes (default: its length)."""

        def route(h: http.server.BaseHTTPRequestHandler) -> None:
            time.sleep(delay)
            h.send_response(200)
            h.send_header("Content-Length", str(len(body) if length is None else length))
            h.end_headers()
            h.wfile.write(body)

        self.routes[path] = route


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    src = tmp_path / "src"
    make_set(src, 20, 10)
    return {p.name: p.read_bytes() for p in src.iterdir()}


def use_mirrors(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes], *bases: str) -> dict[str, str]:
    md5 = {f"{stem}.gz": hashlib.md5(files[f"{stem}.gz"]).hexdigest() for stem in STEMS}  # fetched in this order
    monkeypatch.setitem(sources._SOURCES, "mnist", sources._Source(bases, md5))
    return md5


def left_in(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*")) if d.exists() else []


def test_download_over_http_with_a_404_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, files: dict[str, bytes]) -> None:
    use_mirrors(monkeypatch, files, server.base + "/gone/", server.base + "/ok/")
    for n, b in files.items():
        server.serve(f"/ok/{n}", b)
    d = download("mnist", cache_dir=tmp_path / "cache")
    assert all((d / n).read_bytes() == b for n, b in files.items())
    assert sum(r.startswith("/gone/") for r in server.requests) == 4
    assert len(load_mnist("mnist", path=d)[0][0]) == 20


@pytest.mark.parametrize(
    "case, words",
    [
        ("404", "HTTPError: HTTP Error 404"),
        ("truncated", "truncated: the connection closed after 100 of the"),
        ("huge", "announces 1000000000000 bytes"),
        ("wrong", "MD5 {got}, expected {md5}"),
    ],
)
def test_failed_download_says_which_file_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, files: dict[str, bytes], case: str, words: str
) -> None:
    md5 = use_mirrors(monkeypatch, files, server.base + "/a/", server.base + "/b/")
    name = f"{STEMS[0]}.gz"  # the first file fetched
    wrong = b"not the file"
    for base in ("/a/", "/b/"):
        if case == "truncated":
            server.serve(base + name, files[name][:100], length=len(files[name]))
        elif case == "huge":
            server.serve(base + name, files[name], length=10**12)
        elif case == "wrong":
            server.serve(base + name, wrong)
    t0 = time.monotonic()
    with pytest.raises(ValueError) as info:
        download("mnist", cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert time.monotonic() - t0 < 5
    assert msg.startswith(f"download: could not get {name} for 'mnist':")
    expected = words.format(got=hashlib.md5(wrong).hexdigest(), md5=md5[name])
    assert msg.count(expected) == 2  # once per mirror, each named
    assert f"{server.base}/a/{name}: " in msg and f"{server.base}/b/{name}: " in msg
    assert left_in(tmp_path / "cache") == []  # nothing: the directory it made is removed


def test_a_stalled_mirror_times_out_and_the_next_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, files: dict[str, bytes]
) -> None:
    use_mirrors(monkeypatch, files, server.base + "/slow/", server.base + "/ok/")
    monkeypatch.setattr(sources, "_DOWNLOAD_TIMEOUT_S", 0.2)
    for n, b in files.items():
        server.serve(f"/slow/{n}", b, delay=3.0 if n.startswith("train-images") else 0.0)
        server.serve(f"/ok/{n}", b)
    t0 = time.monotonic()
    d = download("mnist", cache_dir=tmp_path)
    assert time.monotonic() - t0 < 2.5  # the stalled mirror was not waited for
    assert f"/ok/{STEMS[0]}.gz" in server.requests and f"/ok/{STEMS[1]}.gz" not in server.requests
    assert sorted(os.listdir(d)) == sorted(files)


def test_ctrl_c_in_a_fetch_leaves_complete_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> None:
    use_mirrors(monkeypatch, files, "https://m.example/")
    urls: list[str] = []
    interrupt_at = [2]

    def interrupted(url: str) -> bytes:
        urls.append(url)
        if len(urls) == interrupt_at[0]:
            raise KeyboardInterrupt
        return files[url.rsplit("/", 1)[1]]

    with pytest.raises(KeyboardInterrupt):
        download("mnist", cache_dir=tmp_path / "c", fetch=interrupted)
    first = urls[0].rsplit("/", 1)[1]
    assert left_in(tmp_path / "c") == ["mnist", f"mnist/{first}"]
    assert (tmp_path / "c" / "mnist" / first).read_bytes() == files[first]
    urls.clear()
    interrupt_at[0] = 0
    download("mnist", cache_dir=tmp_path / "c", fetch=interrupted)
    assert len(urls) == 3 and first not in " ".join(urls)  # the next call fetches only what is missing
    assert left_in(tmp_path / "c" / "mnist") == sorted(files)


CHILD = """
import json, sys
import fnnet.datasets.sources as s
s._SOURCES["mnist"] = s._Source((sys.argv[1],), json.loads(sys.argv[2]))
try:
    s.download("mnist", cache_dir=sys.argv[3])
except KeyboardInterrupt:
    sys.exit(130)
print("done")
"""


def child(base: str, md5: dict[str, str], cache: Path) -> subprocess.Popen[str]:
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, base, json.dumps(md5), str(cache)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_sigint_while_a_body_is_arriving_leaves_nothing_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, files: dict[str, bytes]
) -> None:
    md5 = use_mirrors(monkeypatch, files, server.base + "/m/")
    cache = tmp_path / "cache"
    done = [f"{STEMS[0]}.gz", f"{STEMS[1]}.gz"]
    for n in done:
        server.serve(f"/m/{n}", files[n])
    big = files[f"{STEMS[2]}.gz"]
    arrived = threading.Event()

    def stall(h: http.server.BaseHTTPRequestHandler) -> None:  # half the body, then nothing
        h.send_response(200)
        h.send_header("Content-Length", str(len(big)))
        h.end_headers()
        h.wfile.write(big[: len(big) // 2])
        h.wfile.flush()
        arrived.set()
        time.sleep(3)

    server.routes[f"/m/{STEMS[2]}.gz"] = stall
    proc = child(server.base + "/m/", md5, cache)
    try:
        assert arrived.wait(20)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert left_in(cache) == ["mnist", *sorted(f"mnist/{n}" for n in done)]
    assert all((cache / "mnist" / n).read_bytes() == files[n] for n in done)
    for n, b in files.items():
        server.serve(f"/m/{n}", b)
    download("mnist", cache_dir=cache)  # the next call works
    assert left_in(cache / "mnist") == sorted(files)


def test_two_processes_download_at_once(tmp_path: Path, server: Server, files: dict[str, bytes]) -> None:
    md5 = {n: hashlib.md5(b).hexdigest() for n, b in files.items()}
    cache = tmp_path / "cache"
    for n, b in files.items():
        server.serve(f"/m/{n}", b, delay=0.1)
    procs = [child(server.base + "/m/", md5, cache) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert left_in(cache / "mnist") == sorted(files)  # no temporary file left
    assert all((cache / "mnist" / n).read_bytes() == b for n, b in files.items())


def test_an_unusable_cache_fails_before_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> None:
    use_mirrors(monkeypatch, files, "https://m.example/")
    urls: list[str] = []

    def fetch(url: str) -> bytes:
        urls.append(url)
        return files[url.rsplit("/", 1)[1]]

    (tmp_path / "a-file").write_bytes(b"")
    for root in (tmp_path / "a-file", tmp_path / "a-file" / "below"):
        with pytest.raises(OSError, match=f"download: cannot write the cache .*cache_dir=.*'{root / 'mnist'}'"):
            download("mnist", cache_dir=root, fetch=fetch)
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "mnist").write_bytes(b"")  # the set's directory is a file
    with pytest.raises(FileExistsError, match="download: cannot write the cache"):
        download("mnist", cache_dir=tmp_path / "root", fetch=fetch)
    assert urls == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_cache_fails_before_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> None:
    use_mirrors(monkeypatch, files, "https://m.example/")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="download: cannot write the cache"):
            download("mnist", cache_dir=tmp_path / "ro", fetch=lambda url: pytest.fail("fetched"))
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_a_cache_write_failure_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> None:
    use_mirrors(monkeypatch, files, "https://m.example/")

    def full(path: str | os.PathLike[str], data: bytes) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(sources, "atomic_write_bytes", full)
    with pytest.raises(OSError, match=r"\[Errno 28\] download: cannot write the cache \(No space left on device\)") as info:
        download("mnist", cache_dir=tmp_path, fetch=lambda url: files[url.rsplit("/", 1)[1]])
    assert info.value.filename == str(tmp_path / "mnist" / f"{STEMS[0]}.gz")
