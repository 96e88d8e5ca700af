"""The scoring pipeline: cheap checks first, then batched model scorers, then the composite.

    from audiosubnet.scoring import Scoring, ScoreItem
    scoring = Scoring(settings.score, cache=cache)        # the `score` settings + a ModelCache
    results = scoring.score([ScoreItem(text, wav_bytes, uid=3, hotkey=hk, elapsed_s=0.8), ...])
    results[0].composite, results[0].metrics, results[0].reason

For a batch (e.g. one validator round, many miners at once):
1. decode (bytes are decoded safely, capped in length) and sanity checks -> failures score 0;
2. fingerprints: a clone output that is its reference -> 0; copies of each other among the answers to
   one prompt in this batch, or of an earlier answer by another miner (the rolling history), follow
   `duplicate_policy`: share (default: each of k copies gets 1/k of its score, so copying gains nothing in
   total and two honest miners running one deterministic engine both keep weight), first (the fastest
   answer, by `elapsed_s`, else the first, keeps its score, the others 0) or all (every copy 0);
3. model scorers on what is left, each batched across all items: ASR (WER/CER), MOS (DNSMOS,
   UTMOS), speaker similarity (clone items). Models come from the ModelCache (loaded once per
   process). On a GPU, CPU-bound scorers run in a thread beside the GPU-bound ones;
4. the composite (composite.py). A scorer that fails is retried item by item; an item it still
   fails on scores 0 with `error=True` (the validator's problem, not the miner's).
Nothing in an item can make `score` raise: every problem becomes a reason on that item's result.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.errors import ConfigError
from audiosubnet.runtime.cache import ModelCache
from audiosubnet.scoring import asr as asr_mod
from audiosubnet.scoring import dsp, registry, sanity
from audiosubnet.scoring import speaker as speaker_mod
from audiosubnet.scoring.base import TASKS, Plan, ScoreItem, Scorer
from audiosubnet.scoring.composite import SCORING_VERSION, composite, profile
from audiosubnet.scoring.fingerprint import (
    Fingerprint,
    FingerprintHistory,
    distance,
    fingerprint,
    pairwise_duplicates,
    text_key,
)

if TYPE_CHECKING:
    from audiosubnet.config import ScoreSettings

log = logging.getLogger(__name__)
_CPUS = os.cpu_count() or 1

#: the MOS predictors `score.mos_models = "auto"` runs: both on the GPU stack, DNSMOS alone offline
DEFAULT_MOS_GPU, DEFAULT_MOS_CPU = ("dnsmos", "utmos"), ("dnsmos",)


@dataclass
class ScoreResult:
    """The outcome for one item. `composite` is 0 when `reason` is set; `error` marks a failure of
    scoring itself rather than of the answer."""

    composite: float
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    error: bool = False
    duplicate_of: str | None = None
    transcript: str | None = None
    version: str = SCORING_VERSION
    profile: str = ""
    id: str | None = None
    uid: int | None = None
    hotkey: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "uid": self.uid, "hotkey": self.hotkey, "composite": round(self.composite, 6),
                "reason": self.reason, "error": self.error, "duplicate_of": self.duplicate_of,
                "transcript": self.transcript, "version": self.version, "profile": self.profile,
                "metrics": {k: round(float(v), 6) for k, v in self.metrics.items()}}


def make_plan(s: ScoreSettings, device: str, dtype: str) -> Plan:
    preset = (s.preset or "auto").lower()
    if preset not in ("auto", "offline", "gpu"):
        raise ConfigError(f"unknown scoring preset '{s.preset}'", hint="Use auto, offline or gpu.")
    gpu = preset == "gpu" or (preset == "auto" and device.startswith("cuda"))
    dev = device if gpu else "cpu"
    mos_names = [m.strip().lower() for m in s.mos_models.split(",") if m.strip()]
    if mos_names in ([], ["auto"]):
        mos_names = list(DEFAULT_MOS_GPU if gpu else DEFAULT_MOS_CPU)
    known = registry.scorer_names(role="mos")
    for m in mos_names:
        if m not in known:
            raise ConfigError(f"unknown MOS model '{m}'", hint=f"score.mos_models takes {' and/or '.join(known)}.")
    stack = "cuda" if gpu else "cpu"  # which defaults "auto" picks: the GPU stack or the offline one
    return Plan(asr=asr_mod.canonical_model(s.asr_model, stack), mos=tuple(mos_names),
                speaker=speaker_mod.canonical_model(s.speaker_model, stack), device=dev,
                dtype=dtype if dev != "cpu" else "float32")


def stage_ids(plan: Plan, clone: bool) -> list[str]:
    """The registered scorer ids a batch runs: the ASR, the plan's MOS predictors, the speaker encoder (clones)."""
    return [registry.ASR, *plan.mos, *([registry.SPEAKER] if clone else [])]


@dataclass
class _Work:
    index: int
    item: ScoreItem
    audio: Audio | None = None
    x16: np.ndarray | None = None
    fp: Fingerprint | None = None
    key: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    error: bool = False
    duplicate_of: str | None = None
    transcript: str | None = None
    copied_with: set[str] = field(default_factory=set)  # other miners with a copy of this answer ("share")
    model_keys: tuple[str, ...] = ()  # `measure`: the metrics the models added, and a model's failure
    model_reason: str | None = None
    model_error: bool = False

    # set by `_prepare` on every item that goes on ("live"): its 16 kHz audio and fingerprint
    @property
    def live_x16(self) -> np.ndarray:
        assert self.x16 is not None
        return self.x16

    @property
    def live_fp(self) -> Fingerprint:
        assert self.fp is not None
        return self.fp


class Scoring:
    """Scores batches of `ScoreItem`s. One per process (or per validator) is enough: it holds the
    settings, the resolved model plan, the fingerprint history and stage timings; models live in
    the ModelCache.

    - `score(items, remember=True) -> list[ScoreResult]` (never raises for anything in an item);
      `remember` adds this batch's fingerprints to `history` and advances its round;
    - `version`: `SCORING_VERSION` + a hash of the weights, gates and models; `history` can be
      replaced (e.g. `FingerprintHistory.load(path)`) and saved with `history.save(path)`;
    - `warmup()` loads the models up front; `timings` holds the last batch's seconds per stage;
    - `measure(items)` then `settle(work)`: `score` in two halves, for many machines (`asn score DIR --ray`).
    """

    def __init__(self, settings: ScoreSettings | None = None, *, cache: ModelCache,
                 history: FingerprintHistory | None = None, scorers: Sequence[Callable[[], Scorer]] | None = None):
        """`settings`: the `score` section (the caller loads it; None: the defaults). `scorers` replaces the
        planned model scorers with these factories (tests, custom stacks); each scorer runs on the CPU under
        the key `score:<name>:<model>`."""
        from audiosubnet.config import ScoreSettings

        self.settings = settings if settings is not None else ScoreSettings()
        self.cache = cache
        self.plan = make_plan(self.settings, self.cache.device, self.cache.dtype)
        self.history = history if history is not None else FingerprintHistory(self.settings.history_size)
        self.timings: dict[str, float] = {}  # seconds per stage of the last batch ("checks", scorer keys)
        self.custom = list(scorers) if scorers is not None else None
        models = self.plan.models() if self.custom is None else {"custom": ",".join(
            f"{f().name}:{f().model}" for f in self.custom)}
        self.profile = profile(self.settings, models)
        s = self.settings
        self.limits = sanity.SanityLimits(min_seconds=s.min_seconds, max_seconds=s.max_seconds,
                                          max_chars_per_s=s.max_chars_per_s, min_chars_per_s=s.min_chars_per_s)

    @property
    def duplicate_threshold(self) -> float:
        from audiosubnet.scoring.fingerprint import DEFAULT_THRESHOLD

        return self.settings.duplicate_threshold or DEFAULT_THRESHOLD

    @property
    def version(self) -> str:
        """Formula version + settings/models profile: compare before mixing results."""
        return f"{SCORING_VERSION}+{self.profile}"

    # ---- scorers from the cache --------------------------------------------------------------
    def specs(self, clone: bool) -> list[tuple[str, str, str, Callable[[], Scorer]]]:
        """(key, device, dtype, factory) of the scorers a batch needs."""
        p, s = self.plan, self.settings
        out = []
        if self.custom is not None:
            for f in self.custom:
                probe = f()
                if clone or not probe.needs_reference:
                    out.append((self.cache.key(probe.key, "cpu", "float32"), "cpu", "float32", f))
            return out

        for sid in stage_ids(p, clone):
            sp = registry.get_scorer_class(sid).spec(p, s)
            dt = p.dtype if sp.device != "cpu" else "float32"
            out.append((self.cache.key(f"score:{sp.name}:{sp.model}", sp.device, dt), sp.device, dt, sp.factory))
        return out

    def warmup(self, clone: bool = True) -> None:
        """Load every model now (instead of on the first batch)."""
        for key, dev, dt, factory in self.specs(clone):
            with self.cache.lease(key, factory, device=dev, dtype=dt):
                pass

    # ---- the pipeline ------------------------------------------------------------------------
    def score(self, items: Sequence[ScoreItem], *, remember: bool = True) -> list[ScoreResult]:
        t0 = time.perf_counter()
        work = self._check(items)
        live = [w for w in work if w.reason is None]
        self._copies(live)
        live = [w for w in live if w.reason is None]
        self.timings["checks"] = time.perf_counter() - t0
        if live:
            self._run_models(live)
        log.debug("scored %d items (%d to the models) in %.2f s", len(work), len(live), time.perf_counter() - t0)
        return self._results(work, remember)

    def measure(self, items: Sequence[ScoreItem]) -> list[_Work]:
        """`score`'s first half, on a replica: the checks, then every model on the items that pass them (copies
        of items elsewhere are not known yet). The work comes back without its audio; `settle` finishes it."""
        t0 = time.perf_counter()
        work = self._check(items)
        live = [w for w in work if w.reason is None]
        self.timings["checks"] = time.perf_counter() - t0
        if live:
            before = [set(w.metrics) for w in live]
            self._run_models(live)
            for w, keys in zip(live, before, strict=True):
                w.model_keys = tuple(k for k in w.metrics if k not in keys)
                w.model_reason, w.model_error, w.reason, w.error = w.reason, w.error, None, False
        for w in work:
            w.audio = w.x16 = None
            w.item = replace(w.item, audio=None, reference=None)
        return work

    def settle(self, work: list[_Work], *, remember: bool = True) -> list[ScoreResult]:
        """`score`'s second half over `measure`d work, batch after batch in `score`'s order: the copy checks, then
        the composite. The results are `score`'s: a copy that `score` keeps from the models (duplicate_policy
        first or all) loses what the models measured on it."""
        live = [w for w in work if w.reason is None]
        self._copies(live)
        for w in live:
            if w.reason is None:
                if w.model_reason is not None:
                    w.reason, w.error = w.model_reason, w.model_error
            else:
                for k in w.model_keys:
                    w.metrics.pop(k, None)
                w.transcript = None
        return self._results(work, remember)

    def _check(self, items: Sequence[ScoreItem]) -> list[_Work]:
        """Decode, sanity checks, fingerprints; a clone output that is its reference."""
        self.timings = {}
        work = [_Work(i, it) for i, it in enumerate(items)]
        if len(work) > 1 and _CPUS > 1:  # decoding, resampling, FFTs release the GIL
            with ThreadPoolExecutor(max_workers=min(8, _CPUS), thread_name_prefix="asn-score-prep") as pool:
                list(pool.map(self._prepare, work))
        else:
            for w in work:
                self._prepare(w)
        self._reference_copies([w for w in work if w.reason is None])
        return work

    def _results(self, work: list[_Work], remember: bool) -> list[ScoreResult]:
        results = [self._finish(w) for w in work]
        if remember:  # copies are not remembered: the original's own later answers must not match them
            for w in work:
                if w.fp is not None and w.key and w.duplicate_of is None and "fingerprint_distance" not in w.metrics:
                    self.history.add(w.fp, w.key, w.item.miner, w.item.label)
            self.history.next_round()
        return results

    def _prepare(self, w: _Work) -> None:
        it = w.item
        try:
            if it.task not in TASKS:
                w.reason, w.error = f"unknown task '{it.task}'", True
                return
            if not isinstance(it.text, str) or not it.text.strip():
                w.reason, w.error = "empty prompt text", True
                return
            if it.task == "clone" and not isinstance(it.reference, Audio):
                w.reason, w.error = "clone task without a reference clip", True
                return
            a = it.audio
            if a is None:
                w.reason = "no audio"
                return
            if not isinstance(a, Audio):
                if not isinstance(a, bytes | bytearray | memoryview):
                    w.reason = f"audio of unsupported type {type(a).__name__}"
                    return
                decoded, reason = sanity.decode(a, self.settings.max_seconds)
                if reason or decoded is None:
                    w.reason = reason or "undecodable audio"
                    return
                a = decoded
            w.audio = a
            reason, info = sanity.check(a, it.text, self.limits)
            w.metrics.update(info)
            if reason:
                w.reason = reason
                return
            w.x16 = dsp.to_16k(a)
            w.fp = fingerprint(w.x16)
            w.key = _text_key(it)
        except Exception as e:  # never let one item break the batch
            log.exception("preparing item %s failed", it.label)
            w.reason, w.error = f"internal error while checking the audio ({type(e).__name__})", True

    def _reference_copies(self, live: list[_Work]) -> None:
        thr = self.duplicate_threshold
        ref_fps: dict[int, Fingerprint] = {}  # a round usually shares one reference between miners
        for w in live:
            ref = w.item.reference
            if w.item.task == "clone" and isinstance(ref, Audio):
                try:
                    if id(ref) not in ref_fps:
                        ref_fps[id(ref)] = fingerprint(dsp.to_16k(ref))
                    d = distance(w.live_fp, ref_fps[id(ref)])
                except Exception:
                    d = 1.0
                if d <= thr:
                    w.reason = f"the output is the reference clip (fingerprint distance {d:.2f})"
                    w.metrics["fingerprint_distance"] = round(d, 4)

    def _copies(self, live: list[_Work]) -> None:
        """Copies of an earlier answer (the history) and among this batch's answers, by `duplicate_policy`."""
        thr = self.duplicate_threshold
        share = self.settings.duplicate_policy == "share"
        for w in live:
            hit = self.history.find(w.live_fp, w.key, w.item.miner, thr)
            if hit is not None:
                w.duplicate_of = hit.label
                if share:
                    w.copied_with.add(hit.miner)
                else:
                    w.reason = f"copy of an earlier answer by {hit.label} (round {hit.round})"
        groups: dict[str, list[_Work]] = {}
        for w in live:
            if w.reason is None:
                groups.setdefault(w.key, []).append(w)
        for group in groups.values():
            if len(group) < 2:
                continue
            if all(w.item.elapsed_s is not None for w in group):  # the fastest answer is the original
                group.sort(key=lambda w: (w.item.elapsed_s, w.index))
            pairs = [(i, j) for j in range(len(group)) for i in range(j)
                     if group[i].item.miner != group[j].item.miner]
            dups = pairwise_duplicates([w.live_fp for w in group], thr, pairs)
            if share:
                _share(group, dups)
                continue
            for j, w in enumerate(group):
                firsts = [(i, d) for (i, jj), d in dups.items() if jj == j]
                if not firsts:
                    continue
                i, d = min(firsts)
                first = group[i]
                w.reason = f"copy of {first.item.label}'s answer (fingerprint distance {d:.2f})"
                w.duplicate_of = first.item.label
                w.metrics["fingerprint_distance"] = round(d, 4)
                if self.settings.duplicate_policy == "all" and first.reason is None:
                    first.reason = f"copied by {w.item.label} (fingerprint distance {d:.2f})"
                    first.duplicate_of = w.item.label

    def _run_models(self, live: list[_Work]) -> None:
        clone = any(w.item.task == "clone" for w in live)
        specs = self.specs(clone)
        prepared = [replace(w.item, audio=Audio(w.live_x16, dsp.SR)) for w in live]

        def run(spec: tuple[str, str, str, Callable[[], Scorer]]) -> None:
            # a model that cannot load is a setup problem (raised), not the items' fault
            key, dev, dt, factory = spec
            t = time.perf_counter()
            with self.cache.lease(key, factory, device=dev, dtype=dt) as scorer:
                idx = [i for i, it in enumerate(prepared) if scorer.applies_to(it)]
                self._apply(scorer, [live[i] for i in idx], [prepared[i] for i in idx])
            self.timings[key.split("@")[0]] = time.perf_counter() - t

        gpu = [sp for sp in specs if sp[1] != "cpu"]
        cpu = [sp for sp in specs if sp[1] == "cpu"]
        if gpu and cpu:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="asn-score-cpu") as pool:
                def run_cpu() -> None:
                    for sp in cpu:
                        run(sp)

                fut = pool.submit(run_cpu)
                for sp in gpu:
                    run(sp)
                fut.result()
        else:
            for sp in specs:
                run(sp)

    def _apply(self, scorer: Scorer, works: list[_Work], items: list[ScoreItem]) -> None:
        if not items:
            return
        try:
            metrics, details = _score(scorer, items)
        except Exception as e:
            if len(items) == 1:
                log.exception("scorer %s failed on %s", scorer.key, items[0].label)
                w = works[0]
                if w.reason is None:
                    w.reason, w.error = f"scorer {scorer.name} failed: {_short(e)}", True
                return
            log.warning("scorer %s failed on a batch of %d (%s); retrying one by one", scorer.key, len(items), e)
            for w, it in zip(works, items, strict=True):
                self._apply(scorer, [w], [it])
            return
        for w, m, d in zip(works, metrics, details, strict=True):
            w.metrics.update({k: float(v) for k, v in m.items()})
            if "transcript" in d:
                w.transcript = d["transcript"]

    def _finish(self, w: _Work) -> ScoreResult:
        it = w.item
        res = ScoreResult(0.0, dict(w.metrics), w.reason, w.error, w.duplicate_of, w.transcript,
                          SCORING_VERSION, self.profile, it.id, it.uid, it.hotkey)
        if w.reason is not None:
            return res
        try:
            value, reason, parts = composite(w.metrics, it.task, self.settings, self.plan.speaker)
        except Exception as e:  # a bug here must not take the round down
            log.exception("composite failed for %s", it.label)
            res.reason, res.error = f"internal error in the composite ({type(e).__name__})", True
            return res
        res.metrics.update(parts)
        if w.copied_with:
            res.metrics["copies"] = float(1 + len(w.copied_with))
            value /= 1 + len(w.copied_with)
        res.composite, res.reason = value, reason
        return res


def _share(group: list[_Work], dups: dict[tuple[int, int], float]) -> None:
    """Connected copies share one score: each member of a set of k gets 1/k (on top of earlier copies)."""
    parent = list(range(len(group)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in dups:
        parent[root(j)] = root(i)
    sets: dict[int, list[int]] = {}
    for k in range(len(group)):
        sets.setdefault(root(k), []).append(k)
    for members in sets.values():
        miners = {group[m].item.miner: group[m].item.label for m in members}  # a miner repeating itself counts once
        if len(miners) < 2:
            continue
        for k in members:
            w = group[k]
            w.copied_with.update(m for m in miners if m != w.item.miner)
            w.duplicate_of = ", ".join(label for miner, label in miners.items() if miner != w.item.miner)
            d = min((v for (a, b), v in dups.items() if k in (a, b)), default=None)
            if d is not None:
                w.metrics["fingerprint_distance"] = round(d, 4)


def _score(scorer: Scorer, items: list[ScoreItem]) -> tuple[list[dict[str, float]], list[dict[str, str]]]:
    if hasattr(scorer, "score_details"):
        metrics, details = scorer.score_details(items)
    else:
        metrics, details = scorer.score(items), [{} for _ in items]
    if len(metrics) != len(items):
        raise RuntimeError(f"{scorer.key} returned {len(metrics)} results for {len(items)} items")
    for m in metrics:
        for k, v in m.items():
            if not np.isfinite(v):
                m[k] = 0.0
                log.warning("scorer %s returned a non-finite %s", scorer.key, k)
    return metrics, details


def _text_key(item: ScoreItem) -> str:
    return text_key(item.text) + (":clone" if item.task == "clone" else "")


def _short(e: BaseException) -> str:
    s = str(e).splitlines()[0] if str(e) else type(e).__name__
    return s[:160]


def score_batch(items: Sequence[ScoreItem], settings: ScoreSettings | None = None, *, cache: ModelCache,
                history: FingerprintHistory | None = None, remember: bool = True) -> list[ScoreResult]:
    """One-shot convenience: `Scoring(settings, cache=cache, history=history).score(items)`."""
    return Scoring(settings, cache=cache, history=history).score(items, remember=remember)
