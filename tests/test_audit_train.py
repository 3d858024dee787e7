"""Audit of the training step, its threads and BLAS limits, batching, augmentation and checkpoint save."""

from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import ShapeKeeping, blas_limit_held_by_another_thread

import fnnet
from fnnet.layers import Affine, BatchNorm, Ctx, Layer, ReLU, serial
from fnnet.optim import sgd
from fnnet.train import NonFiniteLossError, init_train_state, make_train_step, parallel
from fnnet.train.step import TrainState
from fnnet.tree import tree_leaves
from fnnet.typing import Array, Shape

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and threadpoolctl's BLAS lookup")


def _net() -> Layer:
    return serial(Affine(4), BatchNorm(), ReLU(), Affine(3))


def _setup(n: int = 8) -> tuple[Layer, TrainState, Array, Array]:
    model = _net()
    g = fnnet.key(1).generator()
    x, t = g.standard_normal((n, 5)).astype(np.float32), g.integers(0, 3, n)
    return model, init_train_state(model, sgd(0.1), fnnet.key(0), (5,)), x, t


# --- the training step ----------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize("shape", [(0, 5), ()])
def test_an_empty_or_0d_batch_is_a_one_line_error(shards: int, shape: tuple[int, ...]) -> None:
    model, state, _, _ = _setup()
    step = make_train_step(model, optimizer=sgd(0.1), shards=shards)
    with pytest.raises(ValueError, match=r"train_step: x must be a batch \(N, \.\.\.\) with N >= 1"):
        step(state, np.zeros(shape, np.float32), np.zeros(shape[:1], np.int64))


@pytest.mark.parametrize("bad", ["2", None, [0.5], np.array([0.5]), True + 1j])
def test_update_scale_that_is_not_a_number_is_refused(bad: Any) -> None:
    model, state, x, t = _setup()
    with pytest.raises(ValueError, match="update_scale must be a finite number >= 0"):
        make_train_step(model, optimizer=sgd(0.1))(state, x, t, None, bad)


@linux
def test_a_step_with_its_own_blas_count_runs_inside_a_limit_of_that_count() -> None:
    # the default policy's probe took a one-thread BLAS limit of its own and clashed
    model, state, x, t = _setup()
    step = make_train_step(model, optimizer=sgd(0.1), blas_threads=2)
    with parallel.blas_limit(2):
        new, _ = step(state, x, t)
    assert int(new.step) == 1


class _NaNState(ShapeKeeping):
    """A layer whose state becomes NaN in training while its output stays finite."""

    def init_state(self, in_shape: Shape) -> Array:
        return np.zeros(1, np.float32)

    def forward(self, params: None, state: Array, x: Array, ctx: Ctx = fnnet.EVAL) -> tuple[Array, Array, None]:
        return x, state + (np.float32("nan") if ctx.train else 0), None


@pytest.mark.parametrize("shards", [1, 2])
def test_a_nan_model_state_is_non_finite_with_and_without_shards(shards: int) -> None:
    model = serial(Affine(3), _NaNState())
    state = init_train_state(model, sgd(0.1), fnnet.key(0), (4,))
    x, t = np.ones((6, 4), np.float32), np.zeros(6, np.int64)
    with pytest.raises(NonFiniteLossError, match="non-finite parameters or optimizer state"):
        make_train_step(model, optimizer=sgd(0.1), shards=shards)(state, x, t)



def test_a_fresh_default_step_resumes_a_stateful_recurrent_model() -> None:
    # the policy's two-row probe ran from the carried (N, H) state and was refused
    model = serial(fnnet.layers.RNN(8, stateful=True, return_sequences=False), Affine(3))
    g = fnnet.key(1).generator()
    x, t = g.standard_normal((10, 5, 4)).astype(np.float32), g.integers(0, 3, 10)
    state, _ = make_train_step(model, optimizer=sgd(0.1))(init_train_state(model, sgd(0.1), fnnet.key(0), (5, 4)),
                                                           x[:6], t[:6])  # fmt: skip
    resumed, _ = make_train_step(model, optimizer=sgd(0.1))(state, x[:6], t[:6])
    again, _ = make_train_step(model, optimizer=sgd(0.1), shards=1)(state, x[:6], t[:6])
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(resumed), tree_leaves(again)))
    with pytest.raises(ValueError, match=r"expected state.h of shape \(4, 8\)"):  # the batch's rows, not the probe's
        make_train_step(model, optimizer=sgd(0.1))(state, x[6:], t[6:])

# --- threads and BLAS -----------------------------------------------------------------------------


class _SumsIfSeveral(ShapeKeeping):
    """Breaks the collective contract: sums through ctx.batch_sum only for shards of several rows."""

    def forward(self, params: None, state: None, x: Array, ctx: Ctx = fnnet.EVAL) -> tuple[Array, None, None]:
        if ctx.train and len(x) > 1:
            ctx.batch_sum(x.sum(axis=0))
        return x, None, None


@pytest.mark.parametrize("threads", [1, 2])
def test_shards_making_different_collective_calls_fail_instead_of_hanging(threads: int) -> None:
    model = serial(Affine(3), _SumsIfSeveral())
    state = init_train_state(model, sgd(0.1), fnnet.key(0), (4,))
    step = make_train_step(model, optimizer=sgd(0.1), shards=2, threads=threads)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            step(state, np.ones((3, 4), np.float32), np.zeros(3, np.int64))  # shards of 2 rows and 1
        except BaseException as e:  # collected for the assertion below
            errors.append(e)

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(20)
    assert not caller.is_alive(), "the sharded step hangs"
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert "different numbers of batch_sum calls" in str(errors[0])


def test_shard_group_mismatch_in_either_order_and_a_matching_group_still_works() -> None:
    for early in (0, 1):
        group = parallel.ShardGroup(2, 2)
        with pytest.raises(ValueError, match="different numbers of batch_sum calls"):
            group.run(lambda s: None if s == early else group.batch_sum(s)(np.ones(1)))
    ok = parallel.ShardGroup(3, 2)
    assert [float(v[0]) for v in ok.run(lambda s: ok.batch_sum(s)(np.array([s + 1.0])))] == [6.0] * 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_blas_limit_refuses_a_count_that_is_not_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="blas_limit: threads must be a positive int"):
        with parallel.blas_limit(bad):
            pass


@linux
def test_a_child_forked_inside_a_blas_limit_keeps_it_and_can_take_another_after() -> None:
    before = parallel.blas_threads()
    assert before is not None
    read, write = os.pipe()
    with parallel.blas_limit(1):
        pid = os.fork()
        if pid == 0:  # the child: report what it sees, then leave at once
            try:
                inside = parallel.blas_threads()
            except BaseException:
                os._exit(3)
    if pid == 0:
        try:
            after = parallel.blas_threads()
            with parallel.blas_limit(2):
                other = parallel.blas_threads()
            os.write(write, f"{inside} {after} {other}".encode())
            code = 0
        except BaseException as e:
            os.write(write, repr(e).encode()[:500])
            code = 4
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        report = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert report == f"1 {before} 2" and os.WEXITSTATUS(status) == 0
    assert parallel.blas_threads() == before


# --- batching -------------------------------------------------------------------------------------


def test_unshuffled_batches_are_read_only_views_and_shuffled_ones_copies() -> None:
    x, t = np.arange(20.0).reshape(10, 2), np.arange(10)
    x0, t0 = x.copy(), t.copy()
    for xb, tb in fnnet.datasets.batches(None, x, t, 4, shuffle=False):
        assert np.shares_memory(xb, x) and not xb.flags.writeable and not tb.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            xb += 1.0  # would have changed the caller's data set
    for xb, tb in fnnet.datasets.batches(fnnet.key(0), x, t, 4):
        assert not np.shares_memory(xb, x)
        xb += 1.0
    assert np.array_equal(x, x0) and np.array_equal(t, t0) and x.flags.writeable



@pytest.mark.parametrize("shuffled", [True, False])
def test_an_epoch_of_batches_never_copies_the_data_set(shuffled: bool) -> None:
    import tracemalloc

    x, t = np.zeros((20_000, 100), np.float32), np.zeros(20_000, np.int64)  # 8.2 MB
    tracemalloc.start()
    try:
        seen = sum(len(xb) for xb, _ in fnnet.datasets.batches(fnnet.key(0) if shuffled else None, x, t, 100,
                                                                shuffle=shuffled))  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == 20_000 and peak < 1_000_000  # the order (160 kB) and a batch or two, not 8 MB

@pytest.mark.parametrize(
    "call",
    [
        lambda: fnnet.datasets.shuffle(fnnet.key(0), np.array(1.0)),
        lambda: fnnet.datasets.batches(fnnet.key(0), np.zeros(3), 5, 2),  # type: ignore[arg-type]
        lambda: fnnet.datasets.train_val_split(fnnet.key(0), 3.0, np.zeros(3), val_size=1),  # type: ignore[arg-type]
    ],
)
def test_a_scalar_given_as_data_is_a_one_line_error(call: Any) -> None:
    with pytest.raises(ValueError, match=r"needs a first \(sample\) dimension"):
        call()


def test_batches_refuses_a_bad_key_even_without_shuffling() -> None:
    with pytest.raises(ValueError, match="key must be a fnnet.random.Key"):
        fnnet.datasets.batches(3, np.zeros(4), np.zeros(4), 2, shuffle=False)  # type: ignore[arg-type]


# --- augmentation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "dtype"),
    [(-1.0, np.uint8), (300, np.uint8), (0.5, np.uint8), (2**40, np.int32), (1e6, np.float16), (0.5, np.bool_)],
)
def test_erasing_refuses_a_fill_the_images_cannot_hold(value: float, dtype: Any) -> None:
    x = np.ones((2, 1, 4, 4), dtype)
    with pytest.raises(ValueError, match=f"RandomErasing: value .* cannot be stored in {np.dtype(dtype)} images"):
        fnnet.datasets.RandomErasing(p=1.0, value=value)(fnnet.key(0), x)


@pytest.mark.parametrize(("value", "dtype"), [(255, np.uint8), (-128.0, np.int8), (1.0, np.bool_), (0.1, np.float16)])
def test_erasing_fills_with_any_value_the_images_can_hold(value: float, dtype: Any) -> None:
    x = np.zeros((2, 1, 4, 4), dtype)
    y = fnnet.datasets.RandomErasing(p=1.0, value=value)(fnnet.key(0), x)
    assert y.dtype == x.dtype and set(np.unique(y).tolist()) == {0, np.asarray(value).astype(dtype).item()}


@pytest.mark.parametrize("pad", [3, 4, 7, 50])
def test_padding_beyond_the_image_gives_the_images_of_the_full_padding(pad: int) -> None:
    from fnnet.datasets.augment import _shift

    x = np.arange(6 * 2 * 3 * 4, dtype=np.float32).reshape(6, 2, 3, 4) + 1
    gen = fnnet.key(9).generator()
    oy, ox = gen.integers(0, 2 * pad + 1, size=6), gen.integers(0, 2 * pad + 1, size=6)
    full = _shift(x, pad, pad, oy, ox)  # the whole zero-padded image, as written before
    assert np.array_equal(fnnet.datasets.RandomCrop(pad)(fnnet.key(9), x), full)


def test_a_huge_padding_needs_no_huge_memory() -> None:
    y = fnnet.datasets.RandomCrop(10**6)(fnnet.key(0), np.ones((2, 1, 3, 4), np.float32))
    assert y.shape == (2, 1, 3, 4)


# --- checkpoint save ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ({1: "a", "1": "b"}, "the dict keys 1 and '1' are both written as '1'"),
        ({"h": [{True: 1, "true": 2}]}, "the dict keys True and 'true'"),
        ({None: 1, "null": 2}, "both written as 'null'"),
        ({math.inf: 1, "Infinity": 2}, "both written as 'Infinity'"),
        ({"__fnnet_key__": 5}, "the dict key '__fnnet_key__' is reserved"),
        ({"k": {"__fnnet_key__": {"seed": 1, "path": []}}}, "is reserved"),
    ],
)
def test_save_refuses_a_meta_it_could_not_read_back(tmp_path: Path, meta: Any, words: str) -> None:
    path = tmp_path / "ck.npz"
    with pytest.raises(ValueError, match=f"meta cannot be stored: .*{words}"):
        fnnet.save(path, {"w": np.ones(2)}, meta)
    assert os.listdir(tmp_path) == []


def test_meta_with_non_string_keys_nan_and_numpy_scalars_round_trips_as_documented(tmp_path: Path) -> None:
    path = tmp_path / "ck.npz"
    meta: dict[Any, Any] = {1: math.nan, 2.5: [np.float32(math.inf)], None: np.int64(3), False: {"k": fnnet.key(2)}}
    fnnet.save(path, {"w": np.ones(2)}, meta)
    back = fnnet.checkpoint.read_meta(path)
    assert set(back) == {"1", "2.5", "null", "false"} and math.isnan(back["1"])
    assert back["2.5"] == [math.inf] and back["null"] == 3 and back["false"] == {"k": fnnet.key(2)}


def test_save_to_a_directory_fails_before_writing_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d.npz").mkdir()
    written: list[str] = []
    monkeypatch.setattr(fnnet.checkpoint, "_write_npy", lambda zf, name, a: written.append(name))
    for target in (tmp_path / "d.npz", tmp_path):
        with pytest.raises(IsADirectoryError) as info:
            fnnet.save(target, {"w": np.ones(2)})
        assert info.value.filename == str(target)
    assert written == [] and sorted(os.listdir(tmp_path)) == ["d.npz"] and os.listdir(tmp_path / "d.npz") == []


def test_scalar_and_0d_leaves_and_a_unicode_path_round_trip(tmp_path: Path) -> None:
    tree: dict[Any, Any] = {"a": np.float16(1.5), "b": np.array(2.0), "c": np.int8(-3), 4: 7, "e": np.array(True)}
    path = tmp_path / "é☃ ck.npz"
    fnnet.save(path, tree)
    back, _ = fnnet.load(path, tree)
    for k, v in tree.items():
        assert type(back[k]) is type(v) and np.asarray(back[k]).dtype == np.asarray(v).dtype
        assert np.array_equal(back[k], v)


def test_a_structured_leaf_is_refused_instead_of_saved_unloadable(tmp_path: Path) -> None:
    tree = {"a": np.zeros(2, dtype=[("x", "<f4"), ("y", "<i2")])}
    with pytest.raises(ValueError, match=r"checkpoint.save: leaf 'a' has the structured dtype .*plain dtypes only"):
        fnnet.save(tmp_path / "ck.npz", tree)
    assert os.listdir(tmp_path) == []
    fnnet.save(tmp_path / "v.npz", {"a": np.zeros(2, "V8")})  # plain void bytes keep their dtype
    assert fnnet.load(tmp_path / "v.npz", {"a": np.zeros(2, "V8")})[0]["a"].dtype == np.dtype("V8")


@linux
def test_a_conflicting_blas_limit_says_who_holds_it_and_changes_nothing() -> None:
    before = parallel.blas_threads()
    with parallel.blas_limit(1):
        with pytest.raises(ValueError, match=r"held at 1 thread\(s\) by this thread .*cannot run with 2"):
            with parallel.blas_limit(2):
                pass
        assert parallel.blas_threads() == 1
    with blas_limit_held_by_another_thread(1):
        with pytest.raises(ValueError, match=r"held at 1 thread\(s\) by another thread"):
            with parallel.blas_limit(2):
                pass
    assert parallel.blas_threads() == before


def test_a_nan_in_a_scalar_optimizer_state_entry_stops_training() -> None:
    """0-d leaves come out of optimizer arithmetic as NumPy scalars, which the finiteness check
    skipped: a NaN there went unnoticed until it reached the parameters."""
    from fnnet.train.step import all_finite

    assert not all_finite((np.ones(2, np.float32), np.float32(np.nan)))
    assert not all_finite({"a": float("inf")})
    assert all_finite((np.float64(1.0), 3, "text", np.int64(2)))


@pytest.mark.parametrize("shards", [1, 2])
def test_a_loss_gradient_of_another_dtype_or_shape_is_refused(shards: int) -> None:
    """A custom loss returning a float64 gradient for float32 outputs would silently make the
    gradients and the optimizer state float64 (and the checkpoint no longer fit its skeleton)."""
    from fnnet.losses import mean_squared_error

    def as64(y: Array, t: Array) -> tuple[float, Array]:
        v, d = mean_squared_error(y, t)
        return v, d.astype(np.float64)

    def flat(y: Array, t: Array) -> tuple[float, Array]:
        v, d = mean_squared_error(y, t)
        return v, d.ravel()

    model = serial(Affine(1))
    opt = fnnet.optim.adam(0.1)
    state = init_train_state(model, opt, fnnet.key(0), (3,))
    x, t = np.ones((4, 3), np.float32), np.ones(4, np.float32)
    for bad, got in ((as64, r"\(4, 1\) float64"), (flat, r"\(4,\) float32")):
        step = make_train_step(model, bad, opt, shards=shards)
        with pytest.raises(ValueError, match=rf"^train_step: the loss must return its gradient in the outputs' shape \(4, 1\) and dtype float32, got {got}$"):
            step(state, x, t)
    step = make_train_step(model, mean_squared_error, opt, shards=shards)
    moments = [a for a in tree_leaves(step(state, x, t)[0].opt_state) if a.ndim]  # not the scalar learning rate
    assert moments and all(a.dtype == np.float32 for a in moments)


def test_fit_takes_train_as_a_list_pair_like_val_and_test() -> None:
    model = serial(Affine(2))
    x, t = np.ones((4, 3), np.float32), np.zeros(4, np.int64)
    a = fnnet.fit(model, sgd(0.1), [x, t], key=fnnet.key(0), epochs=1, progress="quiet")  # type: ignore[arg-type]
    b = fnnet.fit(model, sgd(0.1), (x, t), key=fnnet.key(0), epochs=1, progress="quiet")
    assert all(np.array_equal(p, q) for p, q in zip(tree_leaves(a.state), tree_leaves(b.state)))
    with pytest.raises(ValueError, match=r"^fit: train must be a pair \(x, t\) of arrays, got dict$"):
        fnnet.fit(model, sgd(0.1), {"x": x}, key=fnnet.key(0), epochs=1, progress="quiet")  # type: ignore[arg-type]


def test_fit_refuses_targets_the_outputs_do_not_fit_before_training() -> None:
    """A seq2seq built for another target length, or a val set of another output shape, is told
    before the first step, naming both shapes (it surfaced inside the first step or after the first
    epoch)."""
    from fnnet.losses import time_softmax_cross_entropy
    from fnnet.seq2seq import Seq2seq

    g = fnnet.key(0).generator()
    x, t = g.integers(0, 13, (40, 11)), g.integers(0, 13, (40, 4))
    calls: list[int] = []

    def counting(y: Array, tt: Array) -> tuple[float, Array]:
        calls.append(len(y))
        return time_softmax_cross_entropy(y, tt)

    with pytest.raises(ValueError, match=r"^fit: the model's outputs \(N, 5, 13\) do not fit the train targets \(N, 4\): time_softmax_cross_entropy: "):
        fnnet.fit(Seq2seq(13, 8, 16, src_len=6), fnnet.optim.adam(0.01), (x, t), key=fnnet.key(1), epochs=1,
                  loss=counting, progress="quiet")  # fmt: skip
    assert calls == [1]  # refused on one sample, before any step
    xs, ts = np.ones((8, 4), np.float32), np.zeros(8, np.int64)
    with pytest.raises(ValueError, match=r"^fit: the model's outputs \(N, 3\) do not fit the val targets \(N, 5\): "):
        fnnet.fit(serial(Affine(3)), sgd(0.1), (xs, ts), key=fnnet.key(1), epochs=1, progress="quiet",
                  val=(xs, np.zeros((8, 5), np.float32)))  # fmt: skip
