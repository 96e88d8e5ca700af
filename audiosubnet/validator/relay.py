"""Relay detection: a miner whose answer is another miner's rendering of the prompt it was given scores 0.

Every miner gets a prompt of its own each round (`prompts.PromptSource.issue`). After the answers are in, the
validator asks every queryable miner for its seen log (`POST /v1/seen`, miner/seen_log.py): the sketches of the
prompts it was sent by callers other than this validator in the round. A sketch that contains at least
`TEXT_MIN` of the unique part of the prompt issued to miner C, found in the log of another miner H, means C's
prompt reached H from a third caller. The validator then fetches the fingerprint of H's answer to that request
and compares it with C's answer (the copy detector of scoring/fingerprint.py, which survives resampling, gain,
noise, lossy codecs and small speed changes): a match makes C a relay of H.

Both tests are needed. The text alone would let a miner that learned C's prompt (for instance by asking C's own
seen log) request it from an honest miner and frame C; the audio alone would be a comparison of every answer
with every logged answer. Together: the text finds the few candidates, the audio proves that C returned H's
rendering, which a framer cannot produce (C's answer never leaves C and this validator).

Cost per round: one signed request per queryable miner (a few KB each: about 2 bytes per prompt character per
entry), plus one small request per candidate; nothing when no prompt leaked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from audiosubnet import textsketch
from audiosubnet.chain.base import Peer
from audiosubnet.protocol import SeenRequest

if TYPE_CHECKING:
    from audiosubnet.validator.client import MinerClient

log = logging.getLogger(__name__)

TEXT_MIN = 0.5  # share of the unique part's 5-grams that must appear in a logged prompt
TOP_K = 3  # logged prompts compared by audio per answer, the closest texts first: bounds the work per round

@dataclass(frozen=True)
class Issued:
    uid: int
    text: str
    unique: np.ndarray  # sketch of the part of the prompt no one else was sent


@dataclass(frozen=True)
class RelayFinding:
    uid: int  # the relay
    source_uid: int  # the miner whose rendering it returned
    caller: str  # the hotkey that forwarded the prompt to the source
    containment: float
    distance: float

    @property
    def reason(self) -> str:
        return (f"relayed its prompt: the answer is uid {self.source_uid}'s rendering for {self.caller[:10]}… "
                f"(text {self.containment:.2f}, fingerprint distance {self.distance:.2f})")


@dataclass
class RelayStats:
    requests: int = 0
    answered: int = 0
    entries: int = 0
    bytes: int = 0
    candidates: int = 0
    seconds: float = 0.0
    findings: list[RelayFinding] = field(default_factory=list)


def issued(uid: int, text: str, unique: str) -> Issued:
    return Issued(uid, text, textsketch.sketch(unique))


MIN_DISTINCTIVE = 8  # hashes a prompt keeps after the round's shared ones are dropped (else it keeps them all)


def distinctive(prompts: dict[int, Issued]) -> dict[int, Issued]:
    """Each prompt's sketch without the 5-grams it shares with the round's other prompts (template words, a tag's
    common words): what is left names this prompt, so another validator's prompt from the same generator rarely
    looks like it. A prompt left with fewer than MIN_DISTINCTIVE hashes keeps its whole sketch."""
    import numpy as np

    if len(prompts) < 2:
        return prompts
    counts: dict[int, int] = {}
    for p in prompts.values():
        for h in p.unique.tolist():
            counts[h] = counts.get(h, 0) + 1
    out = {}
    for uid, p in prompts.items():
        own = np.array([h for h in p.unique.tolist() if counts[h] == 1], dtype=np.uint32)
        out[uid] = Issued(p.uid, p.text, own) if len(own) >= MIN_DISTINCTIVE else p
    return out


async def find_relays(client: MinerClient, own_hotkey: str, peers: Sequence[Peer], prompts: dict[int, Issued],
                      answers: dict[int, bytes], *, window_s: float, threshold: float,
                      timeout_s: float = 3.0) -> RelayStats:
    """Relays among the miners in `answers` (uid -> the audio bytes they returned), from the seen logs of `peers`."""
    t0 = time.perf_counter()
    stats = RelayStats()
    prompts = distinctive(prompts)
    logs = [p for p in peers if p.endpoint and p.hotkey != own_hotkey]
    stats.requests = len(logs)
    req = SeenRequest(window_s=min(300.0, max(1.0, window_s)))
    got = await asyncio.gather(*(client.seen(p.endpoint, p.hotkey, req, timeout_s=timeout_s) for p in logs))
    per_answer: dict[int, list[tuple[float, int, int, str]]] = {}  # relay uid -> (c, source uid, entry id, caller)
    for p, (resp, size) in zip(logs, got, strict=True):
        stats.bytes += size
        if resp is None:
            continue
        stats.answered += 1
        entries = resp.entries[: req.limit]  # a miner that sends more than asked gets no more of our time
        stats.entries += len(entries)
        for e in entries:
            if e.caller == own_hotkey:  # an honest miner never returns them; a lying one gains nothing
                continue
            try:
                sk = textsketch.decode(e.sketch)
            except ValueError:
                continue
            for uid, prompt in prompts.items():
                if uid == int(p.uid) or uid not in answers:
                    continue
                c = textsketch.containment(prompt.unique, sk)
                if c >= TEXT_MIN:
                    per_answer.setdefault(uid, []).append((c, int(p.uid), e.id, e.caller))
    candidates: dict[int, list[tuple[int, int, str, float]]] = {}  # source uid -> (entry id, relay uid, caller, c)
    for uid, found in per_answer.items():
        for c, src, entry_id, caller in sorted(found, key=lambda f: -f[0])[:TOP_K]:
            candidates.setdefault(src, []).append((entry_id, uid, caller, c))
    stats.candidates = sum(len(v) for v in candidates.values())
    if candidates:
        by_uid = {int(p.uid): p for p in logs}
        confirmed = await asyncio.gather(*(
            _confirm(client, by_uid[src], cands, answers, threshold, timeout_s, stats)
            for src, cands in candidates.items()))
        best: dict[int, RelayFinding] = {}
        for finding in (f for fs in confirmed for f in fs):
            if finding.uid not in best or finding.distance < best[finding.uid].distance:
                best[finding.uid] = finding
        stats.findings = sorted(best.values(), key=lambda f: f.uid)
    stats.seconds = time.perf_counter() - t0
    for finding in stats.findings:
        log.info("uid %d is a relay: %s", finding.uid, finding.reason)
    return stats


async def _confirm(client: MinerClient, source: Peer, cands: list[tuple[int, int, str, float]],
                   answers: dict[int, bytes], threshold: float, timeout_s: float,
                   stats: RelayStats) -> list[RelayFinding]:
    ids = sorted({c[0] for c in cands})[:64]
    resp, size = await client.seen(source.endpoint, source.hotkey, SeenRequest(ids=ids), timeout_s=timeout_s)
    stats.bytes += size
    if resp is None:
        return []
    fps = {e.id: e.fingerprint for e in resp.entries if e.fingerprint}
    return await asyncio.to_thread(_compare, int(source.uid), cands, fps, answers, threshold)


def _compare(source_uid: int, cands: list[tuple[int, int, str, float]], fps: dict[int, str],
             answers: dict[int, bytes], threshold: float) -> list[RelayFinding]:
    from audiosubnet import audio as audiolib
    from audiosubnet.scoring import dsp
    from audiosubnet.scoring.fingerprint import distance, fingerprint, from_wire

    mine: dict[int, object] = {}
    out = []
    for entry_id, uid, caller, c in cands:
        if entry_id not in fps:
            continue
        try:
            theirs = from_wire(fps[entry_id])
            if uid not in mine:
                mine[uid] = fingerprint(dsp.to_16k(audiolib.decode(answers[uid], max_seconds=120)))
            d = distance(mine[uid], theirs)  # type: ignore[arg-type]
        except Exception as e:  # a bad fingerprint or answer is no evidence
            log.debug("relay check of uid %d against uid %d: %s", uid, source_uid, e)
            continue
        if d <= threshold:
            out.append(RelayFinding(uid, source_uid, caller, round(c, 3), round(d, 4)))
    return out
