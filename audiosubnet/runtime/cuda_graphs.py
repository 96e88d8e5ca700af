"""CUDA graphs for an engine's fixed-shape stages: captured once per input shape, then one launch per call.

An engine call on CUDA is hundreds of small kernels (a VITS pass: about a thousand); at the batch sizes a
miner sees, the GPU waits for Python to launch them. A CUDA graph records one stage's kernels for one set of
input shapes and replays them all with a single launch. The engines already pad their inputs to shape
buckets (hf.batch_bucket and each engine's length buckets), so a long-running service meets few shapes.

`GraphCache(fn)` wraps a function of tensors that returns a tuple of tensors, has no host synchronisation and
no data-dependent shapes. Called with input tensors:

- a shape seen fewer than `after` times before runs `fn` eagerly (a one-off shape is never captured);
- then it is captured (a warm-up run on a side stream builds cuDNN plans and workspaces outside the graph,
  then `torch.cuda.graph` records it into the cache's one memory pool) and replayed from then on: the inputs
  are copied into the graph's own input tensors, the graph replays, its output tensors are returned;
- the returned tensors belong to the graph: they are overwritten by its next replay, so a caller copies
  what it keeps before calling the same cache again (engines hold their lock across a call);
- `capture(*inputs)` records a shape now (an engine's warm-up: the shapes a fresh request meets) and keeps it
  for good: such graphs are never evicted;
- at most `size` graphs are kept (least recently used dropped first, kept ones never) and only shapes whose
  element count is at most `max_numel` (large shapes are bound by the kernels, not by their launch, and their memory is
  better left to the eager allocator);
- a capture that fails (an operation that synchronises, a kernel that cannot be captured) logs one warning
  and turns the cache off: `fn` runs eagerly from then on, so an engine is never worse than without graphs.

`ASN_CUDA_GRAPHS=0` turns every cache off (the engines then run exactly the eager code).
The capture itself is the `capture` argument (default: `cuda_capture`), the seam the CPU tests fake.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: a stage's input or output tensors
Tensors = tuple["torch.Tensor", ...]
#: a stage: a function of tensors returning a tuple (any sequence) of tensors
Stage = Callable[..., Sequence["torch.Tensor"]]
#: what a graph is kept under: (shape, dtype, device) of each input
ShapeKey = tuple[tuple[tuple[int, ...], "torch.dtype", "torch.device"], ...]
#: capture(fn, static_inputs, pool) -> (replay, static_outputs); the pool is torch.cuda's graph pool handle
Capture = Callable[[Stage, Tensors, Any], tuple[Callable[[], None], Tensors]]


def graphs_enabled() -> bool:
    return os.environ.get("ASN_CUDA_GRAPHS", "1").strip().lower() not in ("0", "false", "no", "off")


def cuda_capture(fn: Stage, inputs: Tensors, pool: Any) -> tuple[Callable[[], None], Tensors]:
    """Warm `fn` up on a side stream, then record it into a CUDA graph (memory from `pool`)."""
    import torch

    side = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # its constructor is unannotated in torch
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # thread_local: another thread's CUDA work (a scorer in the same process) does not break this capture
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        outputs = fn(*inputs)
    return graph.replay, tuple(outputs)


@dataclass
class _Graph:
    inputs: Tensors
    outputs: Tensors
    replay: Callable[[], None]


@dataclass
class GraphStats:
    captured: int = 0
    replays: int = 0
    eager: int = 0
    evicted: int = 0
    capture_s: float = 0.0
    failed: str = ""


class GraphCache:
    def __init__(self, fn: Stage, *, name: str = "", after: int = 1, size: int = 32,
                 max_numel: int | None = None, capture: Capture = cuda_capture, enabled: bool | None = None):
        self.fn, self.name = fn, name or getattr(fn, "__name__", "stage")
        self.after, self.size, self.max_numel = after, size, max_numel
        self.enabled = graphs_enabled() if enabled is None else enabled
        self._capture = capture
        self._pool: Any = None  # torch.cuda's graph pool handle, made at the first capture
        self._graphs: OrderedDict[ShapeKey, _Graph] = OrderedDict()
        self._kept: set[ShapeKey] = set()  # captured by `capture`: never evicted
        self._seen: Counter[ShapeKey] = Counter()
        self.stats = GraphStats()

    def __len__(self) -> int:
        return len(self._graphs)

    def shapes(self) -> list[list[tuple[int, ...]]]:
        """The input shapes of the graphs held now, least recently used first."""
        return [[s for s, _, _ in key] for key in self._graphs]

    @staticmethod
    def key(inputs: Sequence[torch.Tensor]) -> ShapeKey:
        return tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)

    def __call__(self, *inputs: torch.Tensor) -> Tensors:
        graph = self._graph_for(inputs) if self.enabled else None
        if graph is None:
            self.stats.eager += 1
            return tuple(self.fn(*inputs))
        for static, x in zip(graph.inputs, inputs, strict=True):
            static.copy_(x)
        graph.replay()
        self.stats.replays += 1
        return graph.outputs

    def capture(self, *inputs: torch.Tensor) -> bool:
        """Record the graph of these input shapes now (if not held yet) and keep it for good. False when graphs
        are off, the shape is over `max_numel`, or the capture failed (graphs then off, as for any failure)."""
        if not self.enabled:
            return False
        key = self.key(inputs)
        if key not in self._graphs and (self.max_numel is not None and max(x.numel() for x in inputs) > self.max_numel
                                        or self._new_graph(key, inputs) is None):
            return False
        self._kept.add(key)
        return True

    def _graph_for(self, inputs: Tensors) -> _Graph | None:
        key = self.key(inputs)
        graph = self._graphs.get(key)
        if graph is not None:
            self._graphs.move_to_end(key)
            return graph
        if self.max_numel is not None and max(x.numel() for x in inputs) > self.max_numel:
            return None
        if len(self._seen) > 4096:  # weeks of odd shapes: forget the counts, keep the graphs
            self._seen.clear()
        self._seen[key] += 1
        if self._seen[key] <= self.after:
            return None
        return self._new_graph(key, inputs)

    def _new_graph(self, key: ShapeKey, inputs: Tensors) -> _Graph | None:
        t0 = time.perf_counter()
        try:
            graph = self._record(inputs)
        except Exception as e:  # noqa: BLE001 - any capture failure means: run eagerly, as before
            self.enabled = False
            self.stats.failed = f"{type(e).__name__}: {e}"
            log.warning("CUDA graphs off for %s (capture failed: %s); running eagerly", self.name,
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
            return None
        seconds = time.perf_counter() - t0
        self._graphs[key] = graph
        self.stats.captured += 1
        self.stats.capture_s += seconds
        log.debug("captured a CUDA graph for %s %s in %.0f ms", self.name, [s for s, _, _ in key], 1000 * seconds)
        while len(self._graphs) > max(self.size, len(self._kept) + 1):
            oldest = next(k for k in self._graphs if k not in self._kept)
            del self._graphs[oldest]
            self.stats.evicted += 1
        return graph

    def _record(self, inputs: Tensors) -> _Graph:
        static = tuple(x.detach().clone() for x in inputs)
        if self._pool is None and self._capture is cuda_capture:
            import torch

            self._pool = torch.cuda.graph_pool_handle()  # one pool: graphs replay one at a time on one stream
        replay, outputs = self._capture(self.fn, static, self._pool)
        return _Graph(static, tuple(outputs), replay)
