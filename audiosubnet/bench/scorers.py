"""Scorer measurements of `asn bench`: each scorer (asr, dnsmos, utmos, speaker) and the whole scoring pipeline
(`pipeline`, `pipeline-clone`) on `duration`-second clips: seconds per call, clips/s and x real time per batch
size, peak memory, the ASR anchors, and the pipeline's stages. Plain functions over the run's BenchContext
(context.py)."""

from __future__ import annotations

import functools
import gc
import statistics
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from audiosubnet.bench.context import BenchContext
from audiosubnet.bench.measuring import _short, _unavailable, memory_now_mb, score_point
from audiosubnet.bench.results import ScorerResult
from audiosubnet.bench.workloads import OLD_SUBNET, PASSAGE, SENTENCES, speechlike

if TYPE_CHECKING:
    from audiosubnet.config import ScoreSettings
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.scoring import ScoreItem, ScoreResult, Scoring


def measure_scorers(ctx: BenchContext) -> None:
    """Measure the scorers and pipelines of the run: appends their rows (never raises but for Ctrl-C)."""
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.scoring import Scoring

    if ctx.quality_cache is not None:  # the quality models are not part of the scorers' memory
        ctx.quality_cache.clear()
    gc.collect()
    ctx.stack_base = {d: memory_now_mb(d) for d in {ctx.device, "cpu"}}
    dtype = ctx.scorer_dtype()
    weights = ("random-tiny" if ctx.cfg.tiny else "random-full") if ctx.cfg.random_weights else "real"
    if "music" in ctx.scorer_names:  # text-to-music scoring (bench/music.py)
        from audiosubnet.bench.music import music_scorer_row

        ctx.result.scorers.append(music_scorer_row(ctx, dtype, weights))
        if ctx.scorer_names == ["music"]:
            return
    individual = [n for n in ctx.scorer_names if not n.startswith("pipeline") and n != "music"]
    try:
        settings = _score_settings(ctx, )
        cache = EngineCache(None, ctx.device, dtype)
        scoring = Scoring(settings, cache=cache)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        for n in ctx.scorer_names:
            ctx.result.scorers.append(ScorerResult(n, device=ctx.device, dtype=dtype, weights=weights,
                                                    status="unavailable" if _unavailable(e) else "error",
                                                    reason=_short(e)))
        return
    build_note = None
    if ctx.cfg.random_weights:
        from audiosubnet.bench.random_scorers import install_random_scorers

        t0 = time.perf_counter()
        try:
            installed = install_random_scorers(scoring, tiny=ctx.cfg.tiny, new_tokens=ctx.cfg.new_tokens)
            build_note = f"random-weight stand-ins built in {time.perf_counter() - t0:.1f} s"
            ctx.emit(f"scorers: {build_note}: {', '.join(installed.values())}")
        except KeyboardInterrupt:
            raise
        except Exception as e:
            build_note = f"random-weight stand-ins failed: {_short(e)}"
            ctx.emit(build_note)
    items = _clips(ctx, max(ctx.batches))
    clip_s = statistics.fmean(it.audio.duration for it in items)  # type: ignore[union-attr]  # clips hold Audio
    ctx.emit(f"scorers: {len(items)} clips of {clip_s:.1f} s on average ({ctx.clip_source})")
    failed: set[str] = set()
    specs = {key.split(":")[1]: (key, dev, dt, f) for key, dev, dt, f in scoring.specs(clone=True)}
    for name in individual:
        row = ScorerResult(name, device=ctx.device, dtype=dtype, weights=weights, clip_s=clip_s)
        if not ctx.result.scorers:
            row.notes.append(f"clips: {ctx.clip_source}")
        if build_note and name != "dnsmos":
            row.notes.append(build_note)
            build_note = None
        ctx.result.scorers.append(row)
        if name not in specs:
            row.status, row.reason = "unavailable", f"not in the scoring plan ({scoring.plan})"
            failed.add(name)
            continue
        _scorer(ctx, row, scoring, specs[name], items, failed)
    for name in [n for n in ctx.scorer_names if n.startswith("pipeline")]:
        row = ScorerResult(name, device=ctx.device, dtype=dtype, weights=weights, clip_s=clip_s)
        ctx.result.scorers.append(row)
        _pipeline(ctx, row, settings, cache, items, failed, clone=name == "pipeline-clone")


def _score_settings(ctx: BenchContext) -> ScoreSettings:
    """The user's scoring settings with the models asked for, one ASR pass per batch, and sanity limits
    loose enough for synthetic clips. Random weights: the GPU stack (its stand-ins), on any device."""
    s = ctx.score_settings
    mos = [m for m in ("dnsmos", "utmos") if m in ctx.scorer_names]
    if not mos:
        mos = ["dnsmos", "utmos"] if ctx.cfg.random_weights else ["dnsmos"]
    update = dict(mos_models=",".join(mos), dnsmos_backend=ctx.cfg.dnsmos_backend,
                  asr_batch=min(256, ctx.cfg.asr_batch or max(16, max(ctx.batches))),
                  max_seconds=max(60.0, ctx.cfg.duration + 1), min_chars_per_s=1.0, max_chars_per_s=60.0)
    if ctx.cfg.random_weights:
        update["preset"] = "gpu"
    return s.model_copy(update=update)


def _clips(ctx: BenchContext, n: int) -> list[ScoreItem]:
    """n distinct `duration`-second clips with their texts (tts items, each with a clone reference):
    the offline voice reading PASSAGE sentences in a different order per clip; synthetic speech-like
    noise with random weights (their ASR decodes a fixed number of tokens anyway) or without a voice."""
    import numpy as np

    from audiosubnet.audio import Audio
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.scoring import ScoreItem

    secs = ctx.cfg.duration
    voice = None if ctx.cfg.random_weights else ctx.offline_voice()
    items: list[ScoreItem] = []
    if voice is not None:
        cache, mid = voice
        ctx.clip_source = f"{mid} reading the passage's sentences, a different order per clip"
        with cache.engine(mid) as e:
            audios = e.synthesize([SynthesisRequest(s) for s in SENTENCES])
        sr = audios[0].sample_rate
        gap = np.zeros(int(0.2 * sr), np.float32)
        for i in range(n):
            parts, texts, total, k = [], [], 0.0, i
            while total < secs:
                a = audios[k % len(audios)]
                parts += [a.samples, gap]
                texts.append(SENTENCES[k % len(SENTENCES)])
                total += a.duration + 0.2
                k += 3
            items.append(ScoreItem(" ".join(texts), Audio(np.concatenate(parts), sr),
                                   reference=audios[(i + 1) % len(audios)], uid=0, hotkey="bench", id=str(i)))
        return items
    ctx.clip_source = "synthetic speech-like noise" + (" (random weights)" if ctx.cfg.random_weights else
                                                         " (no offline voice installed)")
    ref = speechlike(8.0, 10_000)
    for i in range(n):
        r = np.random.default_rng(i)
        words = " ".join(r.choice(PASSAGE.lower().replace(".", "").replace(",", "").split(),
                                  size=max(3, int(secs * 2.2))))
        items.append(ScoreItem(words.capitalize() + ".", speechlike(secs, i), reference=ref, uid=0,
                               hotkey="bench", id=str(i)))
    return items


def _scorer(ctx: BenchContext, row: ScorerResult, scoring: Scoring, spec: tuple[str, str, str, Any],
            items: list[ScoreItem], failed: set[str]) -> None:
    from audiosubnet.audio import Audio
    from audiosubnet.scoring import dsp

    key, dev, dt, factory = spec
    row.model, row.device, row.dtype = key.split("@")[0].split(":", 2)[2], dev, dt
    gc.collect()
    loaded = scoring.cache.is_loaded(key.split("@")[0])  # random stand-ins are built together, up front
    base = ctx.stack_base.get(dev) if loaded else memory_now_mb(dev)
    try:
        t0 = time.perf_counter()
        with scoring.cache.lease(key, factory, device=dev, dtype=dt) as scorer:
            row.load_s = time.perf_counter() - t0 if not ctx.cfg.random_weights or row.name == "dnsmos" else None
            ctx.emit(f"scorer {row.name} ({row.model}) on {dev}/{dt}" +
                      (f": loaded in {row.load_s:.2f} s" if row.load_s is not None else ""))
            # the clips hold decoded Audio (mypy: a ScoreItem's audio may also be bytes)
            prepared = [replace(it, audio=Audio(dsp.to_16k(it.audio), dsp.SR))  # type: ignore[arg-type]
                        for it in items]
            if not scorer.needs_reference:
                prepared = [replace(it, reference=None) for it in prepared]
            for b in ctx.batches:
                row.points.append(score_point(ctx.cfg, ctx.emit, row, functools.partial(scorer.score, prepared[:b]), b,
                                              items, base))
    except KeyboardInterrupt:
        raise
    except Exception as e:
        row.status, row.reason = ("unavailable" if _unavailable(e) else "error"), _short(e)
        failed.add(row.name)
        ctx.emit(f"scorer {row.name}: {row.status}: {row.reason}")
        return
    if row.points and all(p.error for p in row.points):
        row.status, row.reason = "error", row.points[0].error
        failed.add(row.name)


def _pipeline(ctx: BenchContext, row: ScorerResult, settings: ScoreSettings, cache: EngineCache,
              items: list[ScoreItem], failed: set[str], clone: bool) -> None:
    from audiosubnet.scoring import Scoring

    mos = [m for m in settings.mos_models.split(",") if m and m not in failed]
    if "asr" in failed or not mos or (clone and "speaker" in failed):
        row.status, row.reason = "unavailable", "a model it needs did not load (see the rows above)"
        return
    try:
        scoring = Scoring(settings.model_copy(update={"mos_models": ",".join(mos)}), cache=cache)
        row.model = ",".join(f"{k}={v}" for k, v in scoring.plan.models().items()
                             if k != "speaker" or clone)
        batch = [replace(it, task="clone") if clone else replace(it, reference=None) for it in items]
        stages: list[dict[str, float]] = []
        last: list[ScoreResult] = []

        def call(b: int) -> list[ScoreResult]:
            last[:] = scoring.score(batch[:b], remember=False)
            stages.append(dict(scoring.timings))
            return last

        for b in ctx.batches:
            stages.clear()
            p = score_point(ctx.cfg, ctx.emit, row, functools.partial(call, b), b, items,
                            ctx.stack_base.get(row.device))
            if stages and not p.error:
                p.stages_s = {k.replace("score:", "").split(":")[0]:
                              statistics.median(s.get(k, 0.0) for s in stages) for k in stages[-1]}
                old = OLD_SUBNET["score_clone_s" if clone else "score_s"]
                p.vs_old_subnet = p.clips_per_s * old if p.clips_per_s else None
                zeroed = [r.reason for r in last if r.reason and "WER" not in r.reason]
                if zeroed:
                    row.notes.append(f"batch {b}: {len(zeroed)} clips scored 0 before the models ({zeroed[0]})")
            row.points.append(p)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        row.status, row.reason = ("unavailable" if _unavailable(e) else "error"), _short(e)
        ctx.emit(f"scorer {row.name}: {row.status}: {row.reason}")
