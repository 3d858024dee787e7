"""Shared by the unit tests: seeded data, read-only copies, purity and gradient checks, tree equality.

Imported as ``from _helpers import ...`` (``tests`` is not a package; pytest puts this directory on
``sys.path``, as for ``_examples``). Fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import io
import pwd
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import pytest

import fnnet
from fnnet.layers.base import Layer
from fnnet.numerical import GradCheck, check_grads
from fnnet.tree import tree_astype, tree_leaves, tree_map, tree_paths, tree_structure
from fnnet.typing import Array, Shape, Tree

if TYPE_CHECKING:
    from fnnet.hparam import TrialResult

R = TypeVar("R")


# --- data ----------------------------------------------------------------------------------------


def rng(*salt: int) -> np.random.Generator:
    """A generator seeded from ``salt``: ``rng(5)`` draws what ``np.random.default_rng(5)`` draws."""
    if not salt:
        raise ValueError("rng: give at least one seed")
    return np.random.default_rng(list(salt))


def normal(shape: tuple[int, ...], *salt: int, dtype: Any = np.float64) -> Array:
    """Standard normal numbers of ``shape`` drawn from ``rng(*salt)``, cast to ``dtype``."""
    x: Array = rng(*salt).standard_normal(shape).astype(dtype)
    return x


def init64(layer: Layer, in_shape: Shape, seed: int = 0) -> tuple[Any, Shape]:
    """``layer.init(fnnet.key(seed), in_shape)`` with the params cast to float64 (for gradient checks)."""
    params, out_shape = layer.init(fnnet.key(seed), in_shape)
    return tree_astype(params, np.float64), out_shape


# --- purity --------------------------------------------------------------------------------------


def read_only(tree: Tree) -> Tree:
    """A copy of ``tree`` whose array leaves are fresh read-only copies (a write into one raises).

    Leaves that are not arrays are kept as they are.
    """

    def freeze(leaf: Any) -> Any:
        if not isinstance(leaf, np.ndarray):
            return leaf
        c = leaf.copy()
        c.flags.writeable = False
        return c

    return tree_map(freeze, tree)


def call_unchanged(fn: Callable[..., R], *args: Tree, readonly: bool = False) -> R:
    """Call ``fn(*args)`` and assert that no array leaf of ``args`` changed.

    Every array leaf is snapshotted (shape, dtype and raw bytes) and compared after the call.

    Args:
        fn: the function under test.
        args: trees of arrays (and other leaves) passed positionally.
        readonly: pass read-only copies of every array instead (see :func:`read_only`), so that an
            in-place write raises at the very line that makes it.
    Returns:
        Whatever ``fn`` returns.
    """
    if readonly:
        args = tuple(read_only(a) for a in args)
    watched = [leaf for leaf in tree_leaves(args) if isinstance(leaf, np.ndarray)]
    before = [(a.shape, a.dtype, a.tobytes()) for a in watched]
    out = fn(*args)
    for i, (a, (shape, dtype, raw)) in enumerate(zip(watched, before)):
        assert (a.shape, a.dtype) == (shape, dtype), f"argument array {i} changed shape or dtype"
        assert a.tobytes() == raw, f"argument array {i} was written to"
    return out


def global_rng_state() -> tuple[Any, ...]:
    """NumPy's global random state as a comparable tuple (the key array as bytes)."""
    state: Any = np.random.get_state()
    name, keys, pos, has_gauss, cached = state
    return (name, keys.tobytes(), pos, has_gauss, cached)


@contextmanager
def global_rng_untouched() -> Iterator[None]:
    """Assert that the body neither draws from nor reseeds NumPy's global random generator."""
    before = global_rng_state()
    yield
    assert global_rng_state() == before, "NumPy's global random state changed"


# --- comparisons ---------------------------------------------------------------------------------


def assert_bit_identical(a: Tree, b: Tree) -> None:
    """Same structure, same leaf types, shapes, dtypes and bytes (NaN payloads and -0.0 included)."""
    assert tree_structure(a) == tree_structure(b)
    for x, y in zip(tree_leaves(a), tree_leaves(b)):
        assert type(x) is type(y)
        xa, ya = np.asarray(x), np.asarray(y)
        assert xa.shape == ya.shape and xa.dtype == ya.dtype
        assert xa.tobytes() == ya.tobytes()


def onnx_session(model: Any) -> Any:
    """An ONNX Runtime CPU session of ``model`` after ``onnx.checker``'s full check (quiet, no spinning)."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting on a busy machine
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def assert_grads_ok(layer: Layer, params: Tree, x: Array, *, tol: float = 1e-6, **kwargs: Any) -> GradCheck:
    """Run :func:`fnnet.check_grads` and assert it checked every parameter and ``x``, all within ``tol``.

    ``kwargs`` go to ``check_grads`` (``state``, ``loss``, ``t``, ``ctx``, ``key``). Use float64
    params and inputs. Returns the check for further assertions.
    """
    check = check_grads(layer, params, x, **kwargs)
    assert set(check.errors) == {p or "params" for p in tree_paths(params)} | {"x"}, str(check)
    assert check.max_error < tol, str(check)
    return check


def outcome(t: TrialResult) -> tuple[Any, ...]:
    """Everything about a hyperparameter-search trial except its running time."""
    return (t.index, t.hparams, t.metrics, t.status, t.error)


def write_idx(path: Any, a: Array) -> None:
    """Write ``a`` as an uncompressed IDX file of unsigned bytes (the MNIST format)."""
    import struct

    path.write_bytes(bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes())


def write_image_set(d: Any, n_train: int, n_test: int, side: int) -> Any:
    """A data-set directory ``d`` of random ``side`` x ``side`` images with labels 0-9, in the four
    MNIST file names (``n_train`` training and ``n_test`` test items, seed 0); returns ``d``."""
    g = np.random.default_rng(0)
    for part, n in (("train", n_train), ("t10k", n_test)):
        write_idx(d / f"{part}-images-idx3-ubyte", g.integers(0, 256, (n, side, side)))
        write_idx(d / f"{part}-labels-idx1-ubyte", g.integers(0, 10, (n,)))
    return d


def blob_task() -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """60 training items of 3 blurred blobs in 12 dimensions and 200 validation items: a small
    network overfits it, so the validation loss turns up."""
    g = fnnet.key(7).generator()
    centers = g.standard_normal((3, 12))

    def blobs(n: int) -> tuple[Array, Array]:
        t = g.integers(0, 3, n)
        return (centers[t] + 1.5 * g.standard_normal((n, 12))).astype(np.float32), t

    return blobs(60), blobs(200)


class ShapeKeeping(Layer):
    """A base for test layers that keep the input's shape, have no params and pass ``dout`` back
    unchanged: a subclass writes ``forward`` (and ``init_state`` if it carries state)."""

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def init(self, key: fnnet.Key, in_shape: Shape) -> tuple[None, Shape]:
        return None, tuple(in_shape)

    def init_state(self, in_shape: Shape) -> Any:
        return None

    def backward(self, params: None, cache: Any, dout: Array, input_grad: bool = True) -> tuple[Array, None]:
        return dout, None


@contextmanager
def blas_limit_held_by_another_thread(threads: int) -> Iterator[None]:
    """The body runs while another thread sits inside ``fnnet.train.parallel.blas_limit(threads)``."""
    import threading

    from fnnet.train import parallel

    inside, leave = threading.Event(), threading.Event()

    def holder() -> None:
        with parallel.blas_limit(threads):
            inside.set()
            leave.wait(30)

    h = threading.Thread(target=holder)
    h.start()
    try:
        assert inside.wait(30)
        yield
    finally:
        leave.set()
        h.join(30)


#: The image set of conftest's ``tiny`` fixture: 120 training items (two steps of 100), 30 test items.
TINY_TRAIN, TINY_TEST = 120, 30


class FailingStream(io.StringIO):
    """A text stream (standing in for stdout or stderr) whose writes fail with ``error``."""

    def __init__(self, error: OSError):
        super().__init__()
        self.error = error

    def write(self, s: str) -> int:
        raise self.error


def no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """$HOME and $XDG_CACHE_HOME unset, and no entry for the user in the password database."""

    def unknown(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", unknown)


def peak_bytes(fn: Callable[[], Any]) -> int:
    """The largest amount of memory traced while ``fn()`` runs (NumPy's buffers included)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


FLOATS = [np.float16, np.float32, np.float64]
"""The float dtypes a numerics test runs through."""
FLOAT_WIDTH: dict[Any, Literal[16, 32, 64]] = {np.float16: 16, np.float32: 32, np.float64: 64}
"""Each of :data:`FLOATS` by its width in bits (for hypothesis' ``floats(width=...)``)."""


@contextmanager
def strict_floats() -> Iterator[None]:
    """Every warning an error, and every floating point flag but underflow too."""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        yield


def assert_certain_and_right_is_still(step: Any, state: Any, x: Array, right: Array, wrong: Array) -> None:
    """A train step whose model is certain (an infinite logit) leaves ``state`` as it is, loss 0,
    for targets it has ``right``, and raises NonFiniteLossError for ``wrong`` ones, with no
    floating point warning either way."""
    from fnnet.train import NonFiniteLossError

    with strict_floats():
        new, metrics = step(state, x, right)
    assert metrics.loss == 0.0
    assert_bit_identical(new.params, state.params)  # a zero gradient: nothing moves
    with strict_floats(), pytest.raises(NonFiniteLossError):
        step(state, x, wrong)
