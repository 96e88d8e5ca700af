"""Engine measurements of `asn bench`: per engine and dtype, the cold and warm load on a fresh EngineCache, time
to first audio, one synthesize() of B items per batch size (texts sized to `duration` seconds for real voices,
lengths forced for random weights: workloads.py), peak memory, the anchors, and quality on fixed prompts through
the scoring package. Plain functions over the run's BenchContext (context.py); engines are measured through
their contract (`one_pass`, `bench_extras`, `cuda_graph_stats`)."""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from audiosubnet.bench.context import BenchContext
from audiosubnet.bench.measuring import _free, _is_cuda, _Peak, _short, _sync, _unavailable, measure, memory_now_mb
from audiosubnet.bench.results import BenchConfig, EngineResult, Point
from audiosubnet.bench.workloads import (
    ANCHOR_TARGET,
    ANCHORS,
    FIRST_TEXT,
    OLD_SUBNET,
    QUALITY_PROMPTS,
    RANDOM_ENGINES,
    REF_TEXT,
    build_random,
    music_request,
    sized_text,
    workload,
)

if TYPE_CHECKING:
    from audiosubnet.audio import Audio
    from audiosubnet.config import ScoreSettings
    from audiosubnet.engines.base import SpeechEngine
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.scoring import ScoreResult, Scoring


def _resolve(ctx: BenchContext, spec: str, row: EngineResult) -> str:
    """The model id to load: the spec itself, or a random-weight model built for it."""
    from audiosubnet.engines import registry

    name = spec.split(":", 1)[0].strip().lower()
    if name == "hf":
        name = registry.parse_model_id(spec)[0]
    row.engine = name
    if not (ctx.cfg.random_weights and name in RANDOM_ENGINES):
        return registry.canonical_id(spec)
    size = "tiny" if ctx.cfg.tiny else "full"
    if name == "bark" and not ctx.cfg.tiny:
        size = "full" if spec.split(":", 1)[-1].strip() == "suno/bark" else "small"
    row.weights = f"random-{size}"
    row.label = f"{spec} (random {size})"
    key = f"{name}:{size}"
    if key not in ctx.built:
        t0 = time.perf_counter()
        folder = build_random(name, size, ctx.workdir(), ctx.cfg.bark_tokens)
        ctx.built[key] = (f"{name}:{folder}", size, time.perf_counter() - t0)
        ctx.emit(f"built a {size} random-weight {name} in {ctx.built[key][2]:.1f} s")
    row.build_s = ctx.built[key][2]
    return ctx.built[key][0]


def measure_engine(ctx: BenchContext, spec: str, dtype: str) -> None:
    """Measure one engine spec in one dtype: appends its row to the result (never raises but for Ctrl-C)."""
    from audiosubnet.engines.registry import EngineCache

    row = EngineResult(spec=spec, label=spec, device=ctx.device, dtype=dtype)
    ctx.result.engines.append(row)  # before measuring: an interrupted row still shows
    try:
        row.model_id = _resolve(ctx, spec, row)
    except KeyboardInterrupt:
        row.status = "interrupted"
        raise
    except Exception as e:
        row.status, row.reason = ("unavailable" if _unavailable(e) else "error"), _short(e)
        ctx.emit(f"{row.label}: {row.status}: {row.reason}")
        return
    device = ctx.device
    with contextlib.suppress(Exception):
        from audiosubnet.engines import registry

        devices = registry.create(row.model_id).capabilities.devices
        if _is_cuda(device) and not any(d.startswith("cuda") for d in devices):
            device, row.device = "cpu", "cpu"
            row.notes.append("runs on the CPU only")
    cache = EngineCache(None, device, dtype)  # engines that lease helpers are given it too
    try:
        _engine_measure(ctx, row, cache, device, dtype)
    except KeyboardInterrupt:
        if not row.points:
            row.status = "interrupted"
        raise
    except Exception as e:
        if row.status == "ok" and not row.points:
            row.status = "unavailable" if _unavailable(e) else "error"
        row.reason = row.reason or _short(e)
        ctx.emit(f"{row.label}: {row.status}: {row.reason}")
    finally:
        cache.clear()
        _free(device)


def _engine_measure(ctx: BenchContext, row: EngineResult, cache: EngineCache, device: str, dtype: str) -> None:
    from audiosubnet.engines.base import SynthesisRequest

    gc.collect()
    row.extra["baseline_mb"] = memory_now_mb(device)
    t0 = time.perf_counter()
    with cache.engine(row.model_id) as engine:
        row.cold_load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with cache.engine(row.model_id):
            row.warm_load_s = time.perf_counter() - t0
        caps = engine.capabilities
        row.kind = "music" if caps.music else "clone" if caps.clone else "tts"
        row.sample_rate, row.model_id = caps.sample_rate, engine.model_id
        row.device, row.dtype = engine.device or device, engine.dtype or dtype
        if any(o is not row and (o.spec, o.device, o.dtype) == (row.spec, row.device, row.dtype) and o.points
               for o in ctx.result.engines):  # runs in one dtype whatever is asked (CPU engines, pocket)
            row.status, row.reason = "skipped", f"runs in {row.dtype} on {row.device} only: measured above"
            return
        with contextlib.suppress(Exception):
            row.weights_mb = engine.memory_bytes() / 2**20
        ctx.emit(f"{row.label} [{row.device}/{row.dtype}]: cold load {row.cold_load_s:.2f} s")
        ref = ctx.references()[0] if caps.clone else None
        texts, note = workload(row, engine, ctx.cfg)
        if note:
            row.notes.append(note)
        first = FIRST_TEXT
        t0 = time.perf_counter()
        audio = engine.synthesize([music_request(first, 0, 1.0) if caps.music else SynthesisRequest(
            first, reference=ref, reference_text=REF_TEXT if ref else None, seed=0)])[0]
        _sync(row.device)
        row.first_audio_s = time.perf_counter() - t0
        if not texts:
            texts = _sized_texts(ctx, row, engine, first, audio, ref)
        _extras(row, engine, ref)
        ctx.emit(f"{row.label}: first audio {row.first_audio_s:.2f} s")
        skipped = []
        for b in ctx.batches:
            if b > 1 and not caps.batching:
                skipped.append(b)
                continue
            row.points.append(_point(ctx, row, engine, b, texts, ref))
        if skipped:
            row.notes.append(f"runs one request at a time: batch {', '.join(map(str, skipped))} not measured")
        graphs = engine.cuda_graph_stats()
        if graphs:
            row.notes.append("CUDA graphs: " + ", ".join(
                f"{stage} {s.captured} shapes" + (f" (off: {s.failed})" if s.failed else "")
                for stage, s in graphs.items()))
        peaks = [p.peak_mb for p in row.points if p.peak_mb]
        row.peak_mb = max(peaks) if peaks else None
        if row.points and all(p.error for p in row.points):
            row.status, row.reason = "error", row.points[0].error
        _quality(ctx, row, engine)


def _sized_texts(ctx: BenchContext, row: EngineResult, engine: SpeechEngine, first: str, audio: Audio,
                 ref: Audio | None) -> list[str]:
    """Real weights: texts of about `duration` seconds for this voice, from the first call's characters
    per second, refined once with one item of that size when that is cheap (under the budget)."""
    from audiosubnet.engines.base import SynthesisRequest

    limit = int(engine.capabilities.max_text_chars * 0.95)
    want = ctx.cfg.duration * len(first) / max(0.05, audio.duration)
    chars = min(int(want), limit)
    if (row.first_audio_s or 0) * chars / len(first) < ctx.cfg.budget_s / 2:
        probe = engine.synthesize([SynthesisRequest(sized_text(chars), reference=ref, seed=0,
                                                    reference_text=REF_TEXT if ref is not None else None)])[0]
        want = chars * ctx.cfg.duration / max(0.05, probe.duration)
        chars = min(int(want), limit)
    if chars < want - 1:
        row.notes.append(f"texts capped at {chars} characters (the engine's limit)")
    return [sized_text(chars, offset=i) for i in range(4)]


def _point(ctx: BenchContext, row: EngineResult, engine: SpeechEngine, b: int, texts: list[str],
           ref: Audio | None) -> Point:
    from audiosubnet.engines.base import SynthesisRequest

    reqs = [music_request(texts[i % len(texts)], i, ctx.cfg.duration) if row.kind == "music" else
            SynthesisRequest(texts[i % len(texts)], seed=i, reference=ref,
                             reference_text=REF_TEXT if ref is not None else None) for i in range(b)]
    p = Point(batch=b)
    try:
        with engine.one_pass(b), _Peak(row.device, row.extra.get("baseline_mb")) as peak:  # the batch in one pass
            times, audios, warmed = measure(lambda: engine.synthesize(reqs), row.device, ctx.cfg.budget_s,
                                            ctx.cfg.min_reps, ctx.cfg.max_reps)
        p.seconds, p.reps, p.warmed, p.peak_mb = statistics.median(times), len(times), warmed, peak.mb
        p.audio_s = sum(a.duration for a in audios)
        p.per_item_s = p.audio_s / b
        p.rtf = p.seconds / max(1e-9, p.audio_s)
        p.x_realtime = p.audio_s / max(1e-9, p.seconds)
        old = OLD_SUBNET.get(f"{row.kind}_rtf")
        p.vs_old_subnet = old / p.rtf if p.rtf and old else None
        anchor = anchor_x(ctx.cfg, row.engine, b, row.dtype, row.weights, row.device)
        if anchor:
            p.anchor_x, p.pct_of_anchor = anchor, 100 * p.x_realtime / anchor
            p.meets_target = p.x_realtime >= ANCHOR_TARGET * anchor
        ctx.emit(f"{row.label} b{b}: RTF {p.rtf:.4f}, {p.x_realtime:.1f}x real time ({p.reps} reps)")
    except KeyboardInterrupt:
        raise
    except Exception as e:
        p.error = _short(e)
        ctx.emit(f"{row.label} b{b}: failed: {p.error}")
        _free(row.device)
    return p


def anchor_x(cfg: BenchConfig, name: str, b: int, dtype: str, weights: str, device: str) -> float | None:
    """The kernel-level anchor (x real time) for a point, when the run asks for anchors and the point is one."""
    if not (cfg.anchors and weights == "random-full" and _is_cuda(device)):
        return None
    return ANCHORS.get((name, b, dtype))


def _extras(row: EngineResult, engine: SpeechEngine, ref: Audio | None) -> None:
    """Engine-specific numbers (`bench_extras`): e.g. the time Pocket TTS takes to turn a reference into a
    voice state."""
    with contextlib.suppress(Exception):
        row.extra.update(engine.bench_extras(ref))


# -- quality -----------------------------------------------------------------------------------
def _quality(ctx: BenchContext, row: EngineResult, engine: SpeechEngine) -> None:
    if not ctx.cfg.quality:
        row.quality_note = "skipped (quality off)"
        return
    if row.weights != "real":
        row.quality_note = "skipped: random weights (meaningless)"
        return
    if row.kind == "music":
        row.quality_note = "skipped: music is scored by scoring/music.py against private references"
        return
    if ctx.quality_error:
        row.quality_note = f"unavailable: {ctx.quality_error}"
        return
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.scoring import ScoreItem

    clone = row.kind == "clone"
    refs = ctx.references() if clone else [None]
    reqs = [SynthesisRequest(t, seed=i, reference=refs[i % len(refs)],
                             reference_text=REF_TEXT if clone else None) for i, t in enumerate(QUALITY_PROMPTS)]
    try:
        caps = engine.capabilities
        step = max(1, caps.max_batch) if caps.batching else 1
        audios = []
        for i in range(0, len(reqs), step):
            audios += engine.synthesize(reqs[i:i + step])
    except KeyboardInterrupt:
        raise
    except Exception as e:
        row.quality_note = f"failed to synthesize the prompts: {_short(e)}"
        return
    items = [ScoreItem(r.text, a, task="clone" if clone else "tts", reference=r.reference, uid=0, hotkey="bench",
                       id=str(i)) for i, (r, a) in enumerate(zip(reqs, audios, strict=True))]
    try:
        scoring = _quality_scoring(ctx, )
        results = scoring.score(items, remember=False)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        ctx.quality_error = _short(e)
        row.quality_note = f"unavailable: {ctx.quality_error}"
        ctx.emit(f"quality scoring unavailable: {ctx.quality_error}")
        return
    row.quality = summarize_quality(results, getattr(scoring, "settings", None))
    row.quality["scoring"] = getattr(scoring, "version", "")
    ctx.emit(f"{row.label}: quality " + ", ".join(f"{k} {v:.3f}" for k, v in row.quality.items()
                                                   if isinstance(v, float)))


def _quality_scoring(ctx: BenchContext) -> Scoring:
    if ctx.quality_scoring is None:
        from audiosubnet.engines.registry import EngineCache
        from audiosubnet.scoring import Scoring

        settings = ctx.score_settings
        ctx.quality_cache = EngineCache(None, ctx.device, ctx.scorer_dtype())
        ctx.quality_scoring = Scoring(settings, cache=ctx.quality_cache)
    return ctx.quality_scoring


def summarize_quality(results: Sequence[ScoreResult], settings: ScoreSettings | None = None) -> dict[str, Any]:
    """Means over the prompts of WER, CER, MOS (the composite's naturalness MOS), DNSMOS OVRL, UTMOS,
    speaker similarity and the composite; how many scored 0 and the first reason."""
    from audiosubnet.scoring.composite import mos

    out: dict[str, Any] = {"n": len(results), "zeroed": sum(1 for r in results if r.reason)}
    for k in ("wer", "cer", "dnsmos_ovrl", "utmos", "speaker_sim"):
        vals = [r.metrics[k] for r in results if k in r.metrics]
        if vals:
            out[k] = float(statistics.fmean(vals))
    w_u, w_d = (settings.weight_utmos, settings.weight_dnsmos) if settings is not None else (0.75, 0.25)
    moses = [m for r in results if (m := mos(r.metrics, w_u, w_d)) is not None]
    if moses:
        out["mos"] = float(statistics.fmean(moses))
    out["composite"] = float(statistics.fmean(r.composite for r in results)) if results else None
    reasons = [r.reason for r in results if r.reason]
    if reasons:
        out["first_reason"] = reasons[0]
    return out
