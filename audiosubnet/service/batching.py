"""The miner's work queue: admission control, dynamic batching, engine calls off the event loop, encoding.

No HTTP here: the front ends (`miner/app.py`, `serve/app.py`) turn a parsed request into
`await service.synthesize(...)` and map the exceptions below to statuses:

    InputError / AudioDecodeError -> 422    Overloaded -> 429 (+ Retry-After)    NotOffered -> 501
    Unavailable -> 503                       anything else -> 500 (a bug or a broken engine)

Batching: one queue and one batcher task per served model. The batcher takes the first waiting job, waits
for a free engine slot (`concurrency` calls in flight at once), then takes every job already waiting (up to
the batch limit) and, if the batch is still short, waits until `max_wait_ms` after the first job arrived
for more. When the engine has just answered a batch and the clients it answered have not sent their next
request yet, the batcher waits for them too, at most `fill_wait_ms` (and never longer than a batch takes):
clients in a closed loop (a load test, a validator's workers) otherwise settle into two alternating half
batches, one waiting while the other runs. Engines that do not batch get batches of one. The engine is leased
from the EngineCache it is given in a worker thread; encoding (and resampling) runs in the default thread
pool, outside the engine slot: the slot is free as soon as the engine call returns, so the next batch runs
while this one is encoded.
A job with a lower `priority` is taken first, in arrival order among equals (asn serve: the first sentence of a
stream goes ahead of the later sentences of streams already under way).

`fmt="raw"` skips encoding: `Rendered.audio` holds the samples (a front end with its own encoders, or one
that streams sentence by sentence). With `lazy=True` (asn serve) nothing loads at start: each model loads into
the cache on its first request, is not pinned, and with `keep_alive_s` is unloaded after that long idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.config import MineSettings, Settings, defaults, view
from audiosubnet.engines.base import Capabilities, SynthesisRequest
from audiosubnet.engines.registry import EngineCache
from audiosubnet.errors import (  # the service errors live in errors.py (rebuilt by name across processes)
    AudioDecodeError,
    EngineError,
    InputError,
    NotOffered,
    Overloaded,
    Unavailable,
    UsageError,
)
from audiosubnet.protocol import MAX_REFERENCE_SECONDS, ModelInfo, ServiceState

if TYPE_CHECKING:
    from pydantic import BaseModel

log = logging.getLogger(__name__)

RAW = "raw"  # the `fmt` that returns samples (Rendered.audio) instead of encoded bytes


def loaded_default(model_id: str | None) -> str:
    """The default model's id, or Unavailable before one is loaded."""
    if model_id is None:
        raise Unavailable("no model is loaded")
    return model_id


_MINE = defaults(MineSettings)  # one source of defaults: the settings section


@dataclass(frozen=True)
class ServiceConfig:
    """The service's view of a settings section (`ServiceConfig.of(settings.mine, models=...)`)."""

    models: tuple[str, ...] = (defaults(Settings)["model"],)  # the first one is the default
    voice: str | None = None  # default voice of the default model
    max_text_chars: int = _MINE["max_text_chars"]
    max_batch: int = _MINE["max_batch"]
    max_wait_ms: float = _MINE["max_wait_ms"]
    fill_wait_ms: float = _MINE["fill_wait_ms"]
    queue_size: int = _MINE["queue_size"]
    concurrency: int = _MINE["concurrency"]
    warmup: bool = True
    lazy: bool = False  # load each model on its first request (not pinned) instead of all at start
    keep_alive_s: float | None = None  # lazy: unload a model idle this long (None: keep it loaded)

    #: the fields a settings section gives (`mine.keep_alive_s` is the HTTP keep-alive, not `keep_alive_s`)
    FROM_SECTION = ("max_text_chars", "max_batch", "max_wait_ms", "fill_wait_ms", "queue_size", "concurrency")

    @classmethod
    def of(cls, section: BaseModel, **overrides: Any) -> ServiceConfig:
        return view(section, cls, cls.FROM_SECTION, **overrides)


@dataclass(frozen=True)
class Rendered:
    """One finished request: encoded audio plus what the response headers report."""

    data: bytes
    fmt: str
    model_id: str
    voice: str | None
    sample_rate: int
    duration_s: float
    queue_ms: float
    engine_ms: float
    batch_size: int
    audio: Audio | None = None  # fmt "raw": the samples (data is empty)

    @property
    def raw_audio(self) -> Audio:
        """The samples of a fmt "raw" result."""
        if self.audio is None:
            raise ValueError(f"a {self.fmt} result has no samples")
        return self.audio


@dataclass(frozen=True)
class ModelView:
    """A served model as a front end resolves it (picklable: HTTP worker processes hold a copy)."""

    model_id: str
    caps: Capabilities
    max_batch: int
    aliases: frozenset[str]


_M = TypeVar("_M", "ModelView", "_Model")


def pick_model(models: Sequence[_M], default: str, requested: str | None, *, clone: bool = False) -> _M:
    """The served model a request names (None: the default; for clone, the first cloning model)."""
    if requested is None:
        if clone:
            for m in models:
                if m.caps.clone:
                    return m
            raise NotOffered("no voice-cloning model is served here")
        return next(m for m in models if m.model_id == default)
    for m in models:
        if requested in m.aliases:
            if clone and not m.caps.clone:
                raise NotOffered(f"{m.model_id} cannot clone voices")
            if not clone and not m.caps.tts:
                raise InputError(f"{m.model_id} makes music; use /v1/music" if m.caps.music else
                                 f"{m.model_id} needs a reference voice (it only clones voices)")
            return m
    served = ", ".join(m.model_id for m in models)
    raise InputError(f"model '{requested[:80]}' is not served here (served: {served})")


@dataclass
class _Job:
    request: SynthesisRequest
    fmt: str
    sample_rate: int | None
    future: asyncio.Future[Rendered]
    enqueued: float = field(default_factory=time.monotonic)
    priority: int = 0
    seq: int = field(default_factory=itertools.count().__next__)

    def __lt__(self, other: _Job) -> bool:  # the order of the model's PriorityQueue
        return (self.priority, self.seq) < (other.priority, other.seq)


@dataclass
class _Model:
    model_id: str
    caps: Capabilities
    max_batch: int
    aliases: frozenset[str]
    queue: asyncio.Queue[_Job] | None = None
    task: asyncio.Task[None] | None = None
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0  # jobs admitted and not yet answered
    returning: int = 0  # answered by the last engine calls and not come back with a new request yet (an estimate)
    returned_at: float = 0.0


class Observer:
    """Hooks for metrics (miner/metrics.py implements them); the default does nothing."""

    def batch(self, model_id: str, size: int, seconds: float) -> None: ...

    def queue(self, depth: int, in_flight: int) -> None: ...

    def engine_restart(self) -> None: ...


class TtsService:
    def __init__(self, config: ServiceConfig, cache: EngineCache, observer: Observer | None = None):
        self.config = config
        self.cache = cache
        self.observer = observer or Observer()
        self._models: dict[str, _Model] = {}
        self._default: str | None = None
        self._pending = 0  # admitted and not yet answered
        self._in_flight = 0  # jobs inside engine calls
        self._accepting = False
        self._idle: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._batch_s_ema: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ever_started = False
        self._reaper: asyncio.Task[None] | None = None
        self.revision = 0  # bumped when a model's capabilities change (lazy models, once loaded)

    # ---- lifecycle ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Blocking: load, warm up and pin every served model (call before `start`, off the event loop).
        With `lazy`: only read each model's capabilities (no weights); requests load them."""
        from audiosubnet.engines import registry

        for i, requested in enumerate(self.config.models):
            model_id = registry.canonical_id(requested)
            t0 = time.perf_counter()
            if self.config.lazy:
                caps = registry.create(model_id).capabilities
                self._check_voice(i, model_id, caps)
            else:
                with self.cache.engine(model_id) as engine:
                    caps = engine.capabilities
                    self._check_voice(i, model_id, caps)
                    if self.config.warmup:
                        engine.warmup()
                        if caps.batching and caps.max_batch > 1 and caps.tts:
                            engine.synthesize([SynthesisRequest("Warm up the batch.", voice=caps.default_voice)] * 2)
                self.cache.pin(self.cache.key(model_id, self.cache.device, self.cache.dtype))
            limit = max(1, min(self.config.max_batch, caps.max_batch)) if caps.batching else 1
            engine_name, _, short = model_id.partition(":")
            aliases = {model_id, requested, short}
            if i == 0:
                aliases |= {"auto", engine_name}
                self._default = model_id
            elif engine_name not in {m.model_id.partition(":")[0] for m in self._models.values()}:
                aliases.add(engine_name)
            self._models[model_id] = _Model(model_id, caps, limit, frozenset(aliases))
            log.info("serving %s (batch <= %d, %d Hz) %s in %.1f s", model_id, limit, caps.sample_rate,
                     "listed (loads on first use)" if self.config.lazy else "ready", time.perf_counter() - t0)

    def _check_voice(self, i: int, model_id: str, caps: Capabilities) -> None:
        voice = self.config.voice
        if i == 0 and voice and caps.voices and not caps.open_voices and voice not in caps.voices:
            raise UsageError(f"voice '{voice}' is not a voice of {model_id}",
                             hint=f"Voices: {', '.join(caps.voices[:12])}.")

    async def start(self) -> None:
        if not self._models:
            await asyncio.to_thread(self.load)
        self._idle = asyncio.Event()
        self._idle.set()
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self._executor = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="asn-engine")
        for m in self._models.values():
            m.queue = asyncio.PriorityQueue()
            m.task = asyncio.create_task(self._batcher(m), name=f"batcher {m.model_id}")
        if self.config.lazy and self.config.keep_alive_s is not None:
            self._reaper = asyncio.create_task(self._reap(self.config.keep_alive_s), name="keep-alive")
        self._accepting = self._ever_started = True

    async def drain(self, timeout: float = 30.0) -> bool:
        """Stop admitting; wait until every admitted request is answered. True when drained in time."""
        self._accepting = False
        if self._idle is None or self._pending == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            log.warning("shutdown: %d requests still pending after %.0f s", self._pending, timeout)
            return False

    async def stop(self, timeout: float = 30.0) -> None:
        await self.drain(timeout)
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reaper
            self._reaper = None
        for m in self._models.values():
            if m.task is not None:
                m.task.cancel()
        for m in self._models.values():
            if m.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await m.task
                m.task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # ---- state -------------------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def started(self) -> bool:
        return self._executor is not None

    @property
    def state(self) -> ServiceState:
        """starting | ok | draining (also after stop)."""
        return "ok" if self._accepting else ("draining" if self._ever_started else "starting")

    @property
    def queue_depth(self) -> int:
        return self._pending

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def default_model(self) -> str:
        return loaded_default(self._default)

    @property
    def can_clone(self) -> bool:
        return any(m.caps.clone for m in self._models.values())

    @property
    def can_music(self) -> bool:
        return any(m.caps.music for m in self._models.values())

    def models_info(self) -> list[ModelInfo]:
        return [ModelInfo(id=m.model_id, engine=m.model_id.partition(":")[0], sample_rate=m.caps.sample_rate,
                          voices=list(m.caps.voices), default_voice=m.caps.default_voice, tts=m.caps.tts,
                          clone=m.caps.clone, batching=m.max_batch > 1, max_batch=m.max_batch,
                          languages=list(m.caps.languages), music=m.caps.music,
                          max_duration_s=m.caps.max_duration_s) for m in self._models.values()]

    def resolve_model(self, requested: str | None, *, clone: bool = False) -> _Model:
        """The served model a request names (None: the default; for clone, the first cloning model)."""
        return pick_model(list(self._models.values()), self.default_model, requested, clone=clone)

    def model_views(self) -> list[ModelView]:
        """The served models as `resolve_model` sees them (for HTTP worker processes; `revision` counts changes)."""
        return [ModelView(m.model_id, m.caps, m.max_batch, m.aliases) for m in self._models.values()]

    # ---- requests ----------------------------------------------------------------------------------
    async def synthesize(self, text: str, *, model: str | None = None, voice: str | None = None,
                         seed: int | None = None, fmt: str = "wav", sample_rate: int | None = None,
                         speed: float = 1.0, priority: int = 0) -> Rendered:
        m = self.resolve_model(model)
        if voice is None and m.model_id == self._default and self.config.voice:
            voice = self.config.voice
        return await self._submit(m, SynthesisRequest(text=text, voice=voice, seed=seed, speed=speed), fmt,
                                  sample_rate, priority)

    async def clone(self, text: str, reference: bytes | Audio, *, reference_text: str | None = None,
                    model: str | None = None, seed: int | None = None, fmt: str = "wav",
                    sample_rate: int | None = None, speed: float = 1.0, priority: int = 0) -> Rendered:
        m = self.resolve_model(model, clone=True)
        if isinstance(reference, Audio):
            ref = reference
        else:
            ref = await asyncio.to_thread(audiolib.decode, reference, max_seconds=MAX_REFERENCE_SECONDS)
        if ref.duration < 0.5:
            raise AudioDecodeError(f"reference audio is {ref.duration:.2f} s; at least 0.5 s is needed")
        req = SynthesisRequest(text=text, seed=seed, reference=ref, reference_text=reference_text, speed=speed)
        return await self._submit(m, req, fmt, sample_rate, priority)

    async def music(self, prompt: str, *, duration_s: float, model: str | None = None, seed: int | None = None,
                    fmt: str = "wav", sample_rate: int | None = None) -> Rendered:
        """Text-to-music on the first music model (or the one named); NotOffered when none is served."""
        from audiosubnet.engines.music import MusicRequest

        m = next((m for m in self._models.values() if m.caps.music and (model is None or model in m.aliases)), None)
        if m is None:
            if not self.can_music:
                raise NotOffered("this miner has no text-to-music model")
            raise InputError(f"model '{(model or '')[:80]}' is not a music model served here")
        return await self._submit(m, MusicRequest(text=prompt, duration_s=duration_s, seed=seed), fmt, sample_rate)

    def _retry_after(self) -> float:
        per_batch = self._batch_s_ema or 0.5
        slots = max(1, self.config.concurrency) * max(1, min(m.max_batch for m in self._models.values()))
        return float(min(60, max(1, math.ceil(per_batch * self._pending / slots))))

    async def _submit(self, m: _Model, request: SynthesisRequest, fmt: str, sample_rate: int | None,
                      priority: int = 0) -> Rendered:
        if not self._accepting or m.queue is None:
            raise Unavailable("the server is draining for shutdown" if self._ever_started else "the server is starting")
        if fmt not in ("wav", "flac", RAW):
            raise InputError(f"unknown format '{fmt}'")
        if len(request.text) > self.config.max_text_chars:
            raise InputError(f"text is {len(request.text)} characters; this server takes at most "
                             f"{self.config.max_text_chars}")
        if self._pending >= self.config.queue_size:
            raise Overloaded(f"the queue is full ({self._pending} requests)", self._retry_after())
        future = asyncio.get_running_loop().create_future()
        job = _Job(request, fmt, sample_rate, future, priority=priority)
        self._admit()
        m.busy += 1
        m.returning = max(0, m.returning - 1)
        m.last_used = time.monotonic()
        future.add_done_callback(self._release)  # counted until answered, even if the caller went away
        future.add_done_callback(lambda _f: self._model_done(m))
        m.queue.put_nowait(job)
        return await asyncio.shield(future)

    def _admit(self) -> None:
        self._pending += 1
        if self._idle is not None:
            self._idle.clear()
        self.observer.queue(self._pending, self._in_flight)

    @staticmethod
    def _model_done(m: _Model) -> None:
        m.busy -= 1
        m.last_used = time.monotonic()

    async def _reap(self, keep_alive_s: float) -> None:
        """Unload models nobody asked for in `keep_alive_s` (they load again on their next request)."""
        period = min(30.0, max(0.05, keep_alive_s / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for m in list(self._models.values()):
                if m.busy == 0 and now - m.last_used >= keep_alive_s:
                    key = self.cache.key(m.model_id, self.cache.device, self.cache.dtype)
                    if self.cache.unload(key):
                        log.info("unloaded %s after %.0f s idle", m.model_id, now - m.last_used)

    def loaded_models(self) -> list[str]:
        """Served models whose weights are in the cache now."""
        return [m.model_id for m in self._models.values()
                if self.cache.is_loaded(self.cache.key(m.model_id, self.cache.device, self.cache.dtype))]

    def _release(self, future: asyncio.Future[Rendered]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: no "exception was never retrieved" when the caller left
        self._pending -= 1
        if self._pending == 0 and self._idle is not None:
            self._idle.set()
        self.observer.queue(self._pending, self._in_flight)

    # ---- batching ----------------------------------------------------------------------------------
    async def _batcher(self, m: _Model) -> None:
        assert m.queue is not None and self._slots is not None
        max_wait = self.config.max_wait_ms / 1000.0
        loop = asyncio.get_running_loop()
        while True:
            first = await m.queue.get()
            await self._slots.acquire()
            try:
                m.queue.put_nowait(first)  # a job that goes before it may have come while the slot was busy
                first = m.queue.get_nowait()
                batch = [first]
                while len(batch) < m.max_batch and not m.queue.empty():
                    batch.append(m.queue.get_nowait())
                await _take_until(m.queue, batch, m.max_batch, first.enqueued + max_wait)
                fill = self._fill_wait(m, len(batch))
                if fill > 0:  # the clients just answered are about to send again: take them into this batch
                    await _take_until(m.queue, batch, min(m.max_batch, len(batch) + m.returning),
                                      time.monotonic() + fill)
                m.returning = 0
                batch = [j for j in batch if not j.future.done()]
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            slot = _Slot(self._slots)
            task = loop.create_task(self._run_batch(m, batch, slot))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._batch_done, slot=slot))

    def _fill_wait(self, m: _Model, size: int) -> float:
        """How long to wait for the clients the engine has just answered (0: none are expected). A batch of one
        never waits: one client after another (a stream's next request, a latency probe) is served at once."""
        wait = self.config.fill_wait_ms / 1000.0
        if (wait <= 0 or m.returning <= 0 or not 2 <= size < m.max_batch
                or time.monotonic() - m.returned_at > 4 * wait):
            return 0.0
        return min(wait, self._batch_s_ema) if self._batch_s_ema is not None else wait  # never longer than a batch

    def _batch_done(self, task: asyncio.Task[None], slot: _Slot) -> None:
        self._tasks.discard(task)
        slot.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("batch task failed: %r", task.exception())

    async def _run_batch(self, m: _Model, jobs: list[_Job], slot: _Slot) -> None:
        try:
            await self._run_batch_inner(m, jobs, slot)
        finally:  # never leave a caller waiting forever
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(Unavailable("the request was dropped (shutting down)"))

    async def _run_batch_inner(self, m: _Model, jobs: list[_Job], slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        self._in_flight += len(jobs)
        try:
            results = await loop.run_in_executor(self._executor, self._engine_call, m.model_id,
                                                 [j.request for j in jobs])
        except BaseException as e:  # the executor itself failed (shutdown): fail the whole batch
            results = [e if isinstance(e, Exception) else Unavailable("shutting down")] * len(jobs)
        finally:
            self._in_flight -= len(jobs)
            m.returning, m.returned_at = min(m.max_batch, m.returning + len(jobs)), time.monotonic()
            slot.release()  # the next batch may start now: this one's encoding overlaps it
        seconds = time.monotonic() - t0
        self._batch_s_ema = seconds if self._batch_s_ema is None else 0.8 * self._batch_s_ema + 0.2 * seconds
        self.observer.batch(m.model_id, len(jobs), seconds)
        engine_ms = seconds * 1000.0
        # encode the whole batch in one worker-thread hop (not one hop per request)
        encoded = await loop.run_in_executor(None, _encode_batch, jobs, results)
        for job, result in zip(jobs, encoded, strict=True):
            self._finish(m, job, result, engine_ms, len(jobs))

    def _finish(self, m: _Model, job: _Job, result: tuple[bytes | Audio, int, float] | Exception, engine_ms: float,
                size: int) -> None:
        if job.future.done():
            return
        if isinstance(result, Exception):
            job.future.set_exception(result)
            return
        data, sr, dur = result
        queue_ms = (time.monotonic() - job.enqueued) * 1000.0 - engine_ms
        audio = None
        if isinstance(data, Audio):
            audio, data = data, b""
        job.future.set_result(Rendered(data, job.fmt, m.model_id, job.request.voice or m.caps.default_voice,
                                       sr, dur, max(0.0, queue_ms), engine_ms, size, audio))

    def _adopt(self, model_id: str, caps: Capabilities) -> None:
        """A model listed before it loaded (`lazy`) declared what it does on the CPU (e.g. no batching); once
        loaded on its device, its real capabilities set the batch limit."""
        m = self._models.get(model_id)
        if m is not None and m.caps != caps:
            m.caps = caps
            m.max_batch = max(1, min(self.config.max_batch, caps.max_batch)) if caps.batching else 1
            self.revision += 1

    def _engine_call(self, model_id: str, requests: Sequence[SynthesisRequest]) -> list[Audio | Exception]:
        """Worker thread: lease the engine, reject bad items one by one, synthesize the rest together, and retry
        item by item when that call fails (`batch_policy.run_each`, the one policy of the engine process and the
        jobs). An error fatal for the batch answers every request of it."""
        from audiosubnet.batch_policy import run_each
        from audiosubnet.engines.isolated import EngineCrashed, RemoteEngine

        try:
            with self.cache.engine(model_id) as engine:
                self._adopt(model_id, engine.capabilities)
                # in the engine's own process, a crash there costs this batch (EngineCrashed, below)
                out = engine.synthesize_each(requests) if isinstance(engine, RemoteEngine) else \
                    run_each(engine, requests)
                return [r if not isinstance(r, Exception) else _as_engine_error(r) for r in out]
        except EngineCrashed as e:  # the engine process died with this batch, or is restarting
            log.error("engine %s: %s (%d requests answered 503)", model_id, e, len(requests))
            return [Unavailable(str(e))] * len(requests)
        except Exception as e:  # loading failed (cache budget, files gone...)
            log.error("engine %s failed: %s", model_id, e)
            return [_as_engine_error(e)] * len(requests)


class _Slot:
    """One engine slot held by a batch, released once: when its engine call returns (or the task ends)."""

    __slots__ = ("_sem",)

    def __init__(self, sem: asyncio.Semaphore):
        self._sem: asyncio.Semaphore | None = sem

    def release(self) -> None:
        if self._sem is not None:
            self._sem.release()
            self._sem = None


async def _take_until(queue: asyncio.Queue[_Job], batch: list[_Job], size: int, deadline: float) -> None:
    """Add jobs from `queue` to `batch` as they come, until it holds `size` or the clock reaches `deadline`."""
    while len(batch) < size and (left := deadline - time.monotonic()) > 0:
        try:
            batch.append(await asyncio.wait_for(queue.get(), left))
        except asyncio.TimeoutError:
            break


def _as_engine_error(e: Exception) -> Exception:
    if isinstance(e, (InputError, EngineError)):
        return e
    log.exception("engine call failed", exc_info=e)
    return EngineError(f"synthesis failed: {type(e).__name__}")


def _encode_batch(jobs: Sequence[_Job], results: Sequence[Audio | Exception]
                  ) -> list[tuple[bytes | Audio, int, float] | Exception]:
    out: list[tuple[bytes | Audio, int, float] | Exception] = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, Exception) or job.future.done():
            out.append(result if isinstance(result, Exception) else EngineError("request already answered"))
            continue
        try:
            out.append(_encode(result, job.fmt, job.sample_rate))
        except Exception as e:
            out.append(e)
    return out


def _encode(a: Audio, fmt: str, sample_rate: int | None) -> tuple[bytes | Audio, int, float]:
    x = a.samples
    if x.size == 0:
        raise EngineError("the engine returned no audio")
    if not np.all(np.isfinite(x)):
        a = Audio(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), a.sample_rate)
    if sample_rate and sample_rate != a.sample_rate:
        a = audiolib.resample(a, sample_rate)
    if fmt == RAW:
        return a, a.sample_rate, a.duration
    return audiolib.encode(a, fmt), a.sample_rate, a.duration
