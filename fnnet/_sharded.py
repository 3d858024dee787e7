"""A ``Serial`` pipeline run on shards of a batch (behind ``Serial.forward_shards``).

Consecutive layers that treat samples independently form *sharded segments*: each shard of rows
goes through them on its own thread. A layer whose training output depends on the whole batch
(``couples_batch``, e.g. BatchNorm, or a nested pipeline holding one) runs through its own
:meth:`~fnnet.layers.base.Layer.forward_shards`, which must give what its ``forward`` gives on
the joined batch (BatchNorm combines per-shard channel sums; a nested ``Serial`` recurses; the
default joins the shards). Backward runs the same segments in reverse; a sharded layer's parameter
gradient is the in-order sum of its shards' gradients.

Keys match the other ways of running: a sharded layer ``i`` of shard ``s`` gets
``fold_in(fold_in(key, s), i)`` (what ``serial.forward`` called with shard ``s``'s key would give
it), a coupled layer ``fold_in(key, i)`` (what ``serial.forward`` on the whole batch gives it).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from fnnet.typing import Array
from fnnet.layers.base import Ctx, Layer
from fnnet.parallel import Shards
from fnnet.random import Key, fold_in
from fnnet.tree import tree_leaves, tree_map

if TYPE_CHECKING:
    from fnnet.layers.combinators import Serial

__all__ = ["SegmentedCache", "SegmentedSerial"]


class _Segment(NamedTuple):
    start: int
    stop: int
    joined: bool


class SegmentedCache(NamedTuple):
    """Per layer: its ``forward_shards`` cache (coupled layers) or a tuple of per-shard caches."""

    caches: tuple[Any, ...]
    joined: tuple[bool, ...]


class SegmentedSerial:
    """Runs ``serial``'s forward and backward on a batch given as row shards."""

    def __init__(self, serial: Serial):
        self.serial = serial
        self.segments: list[_Segment] = []
        for i, layer in enumerate(serial.layers):
            joined = bool(layer.couples_batch)  # a layer of its own, run by its forward_shards
            last = self.segments[-1] if self.segments else None
            if last is not None and not joined and not last.joined:
                self.segments[-1] = last._replace(stop=i + 1)
            else:
                self.segments.append(_Segment(i, i + 1, joined))

    def forward(
        self, params: tuple[Any, ...], xs: Sequence[Array], ctx: Ctx, shards: Shards
    ) -> tuple[list[Array], SegmentedCache]:
        """Forward of the batch given as shards ``xs``; one output per shard and a cache."""
        layers = self.serial.layers
        states: tuple[Any, ...] = ctx.state if ctx.state is not None else (None,) * len(layers)
        keys: list[Key | None] = [None if ctx.key is None else fold_in(ctx.key, s) for s in range(len(xs))]
        caches: list[Any] = [None] * len(layers)
        parts = list(xs)

        def sub_ctx(i: int, key: Key | None) -> Ctx:
            own = fold_in(key, i) if key is not None and layers[i].uses_key else None
            return Ctx(ctx.train, own, states[i], ctx.input_grad or i > 0)

        for seg in self.segments:
            if seg.joined:
                i = seg.start
                parts, caches[i] = _call(
                    i, layers[i], lambda: layers[i].forward_shards(params[i], parts, sub_ctx(i, ctx.key), shards)
                )
                continue
            for i in range(seg.start, seg.stop):
                if tree_leaves(states[i]):
                    raise ValueError(
                        f"layer {i} ({layers[i].name}) carries state but does not declare couples_batch, so it "
                        "cannot run on shards (its state would follow one shard only); use shards=1"
                    )

            def run(s: int, seg: _Segment = seg) -> tuple[Array, list[Any]]:
                h = parts[s]
                cs = []
                for i in range(seg.start, seg.stop):
                    h, c = _call(i, layers[i], lambda: layers[i].forward(params[i], h, sub_ctx(i, keys[s])))
                    cs.append(c)
                return h, cs

            outs = shards.map(run)
            parts = [o[0] for o in outs]
            for k, i in enumerate(range(seg.start, seg.stop)):
                caches[i] = tuple(o[1][k] for o in outs)
        joined = tuple(layer.couples_batch for layer in layers)
        return parts, SegmentedCache(tuple(caches), joined)

    def backward(
        self, params: tuple[Any, ...], cache: SegmentedCache, douts: Sequence[Array], shards: Shards
    ) -> tuple[list[Array], tuple[Any, ...]]:
        """``(dxs, grads)``: one input gradient per shard and the parameter gradients of every
        layer (as ``serial.backward`` returns them)."""
        layers = self.serial.layers
        grads: list[Any] = [None] * len(layers)
        parts = list(douts)
        for seg in reversed(self.segments):
            if seg.joined:
                i = seg.start
                parts, grads[i] = _call(
                    i, layers[i], lambda: layers[i].backward_shards(params[i], cache.caches[i], parts, shards)
                )
                continue

            def run(s: int, seg: _Segment = seg) -> tuple[Array, list[Any]]:
                d = parts[s]
                gs = []
                for i in range(seg.stop - 1, seg.start - 1, -1):
                    d, g = _call(i, layers[i], lambda: layers[i].backward(params[i], cache.caches[i][s], d))
                    gs.append(g)
                return d, gs[::-1]

            outs = shards.map(run)
            parts = [o[0] for o in outs]
            for k, i in enumerate(range(seg.start, seg.stop)):
                total = outs[0][1][k]
                for o in outs[1:]:
                    total = tree_map(operator.add, total, o[1][k])
                grads[i] = total
        return parts, tuple(grads)

    def new_state(self, cache: SegmentedCache) -> tuple[Any, ...]:
        """The pipeline's state after the forward pass (coupled layers carry it; others have none)."""
        return tuple(
            layer.new_state(c if joined else c[0])
            for layer, c, joined in zip(self.serial.layers, cache.caches, cache.joined)
        )


def _call(i: int, layer: Layer, fn: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    """Run ``fn``; a ``ValueError`` is re-raised prefixed with the layer's place, as ``Serial`` does."""
    try:
        return fn()
    except ValueError as e:
        raise ValueError(f"layer {i} ({layer.name}): {e}") from e
