"""The miner's short-lived log of who sent which prompt: the evidence validators use to catch relays.

A relay is a miner that forwards each prompt it gets to another miner (signing with a validator-permit
hotkey it also holds) and returns that miner's audio, edited, as its own. Validators give every miner a prompt
of its own, so a prompt that reaches this miner from a caller other than the validator that issued it was
passed on by the miner it was issued to.

Every answered /v1/tts and /v1/clone request is recorded: caller hotkey, time, endpoint, the prompt's sketch
(`textsketch`: hashed character 5-grams; the text itself is not kept) and the fingerprint of the first
`FP_SECONDS` of the audio answered (`scoring.fingerprint`). Entries older than `window_s` or past
`max_entries` are dropped (about 1 KB each: 8,192 entries are ~8 MB). The work runs in a thread after the
answer is sent, so it never delays one, on at most `FP_THREADS` threads (a burst of answers queues; a relay's
request comes in the same burst as the validator's, so none may be dropped); only past a backlog of `FP_BACKLOG`
(a flood of hundreds of answers a second, far more than validators send) are answers logged with their sketch
only, so the evidence thins out instead of the miner slowing down.

`POST /v1/seen` (validators only) answers with the entries of callers *other than the asker*: sketches by
default, the fingerprints of chosen entries by id. A validator matches the sketches against the prompts it
issued to other miners and, on a match, compares the fingerprint with that miner's answer (see
`validator/relay.py`). `SeenLog` is the seam: `PromptLog` here, a relay to the engine process in
`miner/workers.py` for `asn mine --workers N`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from audiosubnet import protocol, textsketch

log = logging.getLogger(__name__)

FP_SECONDS = 8.0  # the start of an answer identifies it; fingerprinting all of a 30 s answer would cost 4x more
FP_THREADS = 2  # fingerprints computed at once per process
FP_BACKLOG = 32  # answers waiting for a fingerprint past which new ones are logged by sketch only
_POOL: list[ThreadPoolExecutor] = []


def fingerprint_pool() -> ThreadPoolExecutor:
    """The process's small pool for seen-log work (shared by every log in the process)."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(FP_THREADS, thread_name_prefix="asn-seen-log"))
    return _POOL[0]


@dataclass(frozen=True)
class Entry:
    id: int
    caller: str
    t: float
    endpoint: str
    sketch: np.ndarray
    fingerprint: str | None  # scoring.fingerprint.to_wire(...), None when the audio could not be read


def make_entry_parts(text: str, audio: bytes | None) -> tuple[np.ndarray, str | None]:
    """(sketch of the text, wire fingerprint of the audio's start, or None without audio): one record's CPU work."""
    from audiosubnet import audio as audiolib
    from audiosubnet.scoring import dsp
    from audiosubnet.scoring.fingerprint import fingerprint, to_wire

    sk = textsketch.sketch(text)
    if audio is None:
        return sk, None
    try:
        a = audiolib.decode(audio, max_seconds=None)
        head = audiolib.Audio(a.samples[: int(FP_SECONDS * a.sample_rate)], a.sample_rate)
        fp: str | None = to_wire(fingerprint(dsp.to_16k(head), scaled=False))
    except Exception as e:  # our own audio: should not happen, and must not break serving
        log.warning("could not fingerprint an answer for the seen log: %s", e)
        fp = None
    return sk, fp


class SeenLog(Protocol):
    async def record(self, caller: str, endpoint: str, text: str, audio: bytes) -> None: ...

    async def seen(self, request: protocol.SeenRequest, asker: str) -> list[protocol.SeenEntry]: ...


class NoSeenLog:
    """`mine.seen_log = false`: nothing recorded, nothing to show."""

    async def record(self, caller: str, endpoint: str, text: str, audio: bytes) -> None:
        return None

    async def seen(self, request: protocol.SeenRequest, asker: str) -> list[protocol.SeenEntry]:
        return []

    def add(self, *entry: object) -> None:
        return None


class PromptLog:
    """The log itself (one per miner: in the engine process when there are HTTP workers)."""

    def __init__(self, window_s: float = 120.0, max_entries: int = 8192,
                 clock: Callable[[], float] = time.monotonic):
        self.window_s, self.max_entries, self.clock = window_s, max_entries, clock
        self._entries: deque[Entry] = deque()
        self._ids = itertools.count(1)
        self._pending: set[asyncio.Future[tuple[np.ndarray, str | None]]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, caller: str, endpoint: str, sketch: np.ndarray, fingerprint: str | None) -> None:
        self._entries.append(Entry(next(self._ids), caller, self.clock(), endpoint, sketch, fingerprint))
        self._expire()

    def _expire(self) -> None:
        horizon = self.clock() - self.window_s
        while self._entries and (self._entries[0].t < horizon or len(self._entries) > self.max_entries):
            self._entries.popleft()

    async def record(self, caller: str, endpoint: str, text: str, audio: bytes) -> None:
        """Sketch and fingerprint in a thread, then add; awaited by `seen` so an answer just sent is in."""
        busy = len(self._pending) >= FP_BACKLOG
        fut = asyncio.get_running_loop().run_in_executor(fingerprint_pool(), make_entry_parts, text,
                                                         None if busy else audio)
        self._pending.add(fut)
        try:
            sk, fp = await fut
        except Exception as e:  # pragma: no cover - make_entry_parts catches what it can
            log.warning("seen log: %s", e)
            return
        finally:
            self._pending.discard(fut)
        self.add(caller, endpoint, sk, fp)

    async def seen(self, request: protocol.SeenRequest, asker: str) -> list[protocol.SeenEntry]:
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2.0)
        self._expire()
        now = self.clock()
        others = [e for e in reversed(self._entries) if e.caller != asker]
        if request.ids is not None:
            wanted = set(request.ids)
            return [_wire(e, now, with_fp=True) for e in others if e.id in wanted]
        horizon = now - request.window_s
        return [_wire(e, now, with_fp=False) for e in itertools.islice(
            (e for e in others if e.t >= horizon), request.limit)]


def _wire(e: Entry, now: float, *, with_fp: bool) -> protocol.SeenEntry:
    from audiosubnet.scoring.fingerprint import FINGERPRINT_VERSION

    fp = e.fingerprint if with_fp else None
    return protocol.SeenEntry(id=e.id, caller=e.caller, age_s=round(max(0.0, now - e.t), 3), endpoint=e.endpoint,
                              sketch=textsketch.encode(e.sketch), fingerprint=fp,
                              fingerprint_version=FINGERPRINT_VERSION if fp else None)
