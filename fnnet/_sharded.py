"""A ``Serial`` pipeline run on shards of a batch when some of its layers need the whole batch.

Consecutive layers that treat samples independently form *sharded segments*: each shard of rows
goes through them on its own thread. A layer whose training output depends on the whole batch
(``couples_batch``, e.g. BatchNorm) runs through :meth:`~fnnet.layers.base.Layer.forward_shards`,
which must give what its ``forward`` gives on the joined batch (BatchNorm combines per-shard
channel sums; the default joins the shards). Backward runs the same segments in reverse; a
sharded layer's parameter gradient is the in-order sum of its shards' gradients.

Keys and contexts match the two other ways of running: a sharded layer ``i`` of shard ``s`` gets
``fold_in(fold_in(key, s), i)`` (as ``serial.forward`` called with shard ``s``'s key would give it),
a joined layer ``fold_in(key, i)`` (as ``serial.forward`` on the whole batch).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


from fnnet._types import Array
from fnnet.layers.base import Ctx, Layer, join_rows
from fnnet.layers.combinators import Serial, _where
from fnnet.parallel import Shards, run_shards
from fnnet.random import Key, fold_in
from fnnet.tree import tree_leaves, tree_map

__all__ = ["SegmentedSerial"]


class _Segment(NamedTuple):
    start: int
    stop: int
    joined: bool


class SegmentedCache(NamedTuple):
    """Per layer: its ``forward_shards`` cache (coupled layers) or a tuple of per-shard caches."""

    caches: tuple[Any, ...]
    rows: tuple[slice, ...]


class SegmentedSerial:
    """Runs ``serial``'s forward and backward over shards ``rows`` on up to ``threads`` threads."""

    def __init__(self, serial: Serial):
        self.serial = serial
        self.segments: list[_Segment] = []
        for i, layer in enumerate(serial.layers):
            joined = bool(layer.couples_batch)  # a layer of its own, run by forward_shards
            last = self.segments[-1] if self.segments else None
            if last is not None and not joined and not last.joined:
                self.segments[-1] = last._replace(stop=i + 1)
            else:
                self.segments.append(_Segment(i, i + 1, joined))

    def forward(
        self,
        params: tuple[Any, ...],
        x: Array,
        ctx: Ctx,
        rows: Sequence[slice],
        threads: int,
    ) -> tuple[Array, SegmentedCache]:
        """Training-mode forward of the whole batch ``x``; returns the joined output and a cache."""
        self.serial._check_params(params)
        layers = self.serial.layers
        states: tuple[Any, ...] = ctx.state if ctx.state is not None else (None,) * len(layers)
        keys: list[Key | None] = [None if ctx.key is None else fold_in(ctx.key, s) for s in range(len(rows))]
        caches: list[Any] = [None] * len(layers)
        parts: list[Array] = [x[r] for r in rows]
        shards = Shards(len(rows), threads)

        def sub_ctx(i: int, key: Key | None) -> Ctx:
            uses = key is not None and layers[i].uses_key
            return Ctx(ctx.train, fold_in(key, i) if uses and key is not None else None, states[i],
                       ctx.input_grad or i > 0)

        for seg in self.segments:
            if seg.joined:
                i = seg.start
                parts, caches[i] = _call(
                    i, layers[i], lambda: layers[i].forward_shards(params[i], parts, sub_ctx(i, ctx.key), shards)
                )
            else:
                if any(tree_leaves(states[i]) for i in range(seg.start, seg.stop)):
                    raise ValueError(
                        "make_train_step: a layer with state that does not declare couples_batch cannot be "
                        "split into shards; use shards=1"
                    )

                def run(s: int, seg: _Segment = seg) -> tuple[Array, list[Any]]:
                    h = parts[s]
                    cs = []
                    for i in range(seg.start, seg.stop):
                        h, c = _call(i, layers[i], lambda: layers[i].forward(params[i], h, sub_ctx(i, keys[s])))
                        cs.append(c)
                    return h, cs

                outs = run_shards(run, range(len(rows)), threads)
                parts = [o[0] for o in outs]
                for k, i in enumerate(range(seg.start, seg.stop)):
                    caches[i] = tuple(o[1][k] for o in outs)
        return join_rows(parts), SegmentedCache(tuple(caches), tuple(rows))

    def backward(self, params: tuple[Any, ...], cache: SegmentedCache, dy: Array, threads: int) -> tuple[Any, ...]:
        """Parameter gradients (one entry per layer, as ``serial.backward`` returns them)."""
        self.serial._check_params(params)
        layers = self.serial.layers
        rows = cache.rows
        grads: list[Any] = [None] * len(layers)
        parts: list[Array] = [dy[r] for r in rows]
        shards = Shards(len(rows), threads)
        for seg in reversed(self.segments):
            if seg.joined:
                i = seg.start
                parts, grads[i] = _call(
                    i, layers[i], lambda: layers[i].backward_shards(params[i], cache.caches[i], parts, shards)
                )
            else:

                def run(s: int, seg: _Segment = seg) -> tuple[Array, list[Any]]:
                    d = parts[s]
                    gs = []
                    for i in range(seg.stop - 1, seg.start - 1, -1):
                        d, g = _call(i, layers[i], lambda: layers[i].backward(params[i], cache.caches[i][s], d))
                        gs.append(g)
                    return d, gs[::-1]

                outs = run_shards(run, range(len(rows)), threads)
                parts = [o[0] for o in outs]
                for k, i in enumerate(range(seg.start, seg.stop)):
                    total = outs[0][1][k]
                    for o in outs[1:]:
                        total = tree_map(operator.add, total, o[1][k])
                    grads[i] = total
        return tuple(grads)

    def new_state(self, cache: SegmentedCache) -> tuple[Any, ...]:
        """The pipeline's state after the forward pass (joined layers carry it; others are stateless)."""
        out = []
        for seg in self.segments:
            for i in range(seg.start, seg.stop):
                c = cache.caches[i] if seg.joined else cache.caches[i][0]
                out.append(self.serial.layers[i].new_state(c))
        return tuple(out)


def _call(i: int, layer: Layer, fn: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    """Run ``fn``; a ``ValueError`` is re-raised prefixed with the layer's place, as ``Serial`` does."""
    try:
        return fn()
    except ValueError as e:
        raise ValueError(f"{_where(i, layer)}: {e}") from e
