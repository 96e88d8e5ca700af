"""The music scorer row of `asn bench` (`-s music`): sanity, fingerprints, CLAP embeddings, relevance and the KID
window (scoring/music.py) on `duration`-second synthetic melodies from distinct miners, against a reference
folder of such melodies. Real weights: the CLAP model from the HF cache; random weights: a CLAP built here
(tiny, or the library's default CLAP architecture for full size). Seconds per call, clips/s and x real time."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING

from audiosubnet.bench.context import BenchContext
from audiosubnet.bench.measuring import _short, _unavailable, memory_now_mb, score_point
from audiosubnet.bench.results import ScorerResult

if TYPE_CHECKING:
    from audiosubnet.audio import Audio


def melody(seed: int, seconds: float, sr: int = 32000) -> Audio:
    """Random notes of 125 ms (two octaves above A3) with attack/decay envelopes."""
    import numpy as np

    from audiosubnet.audio import Audio

    rng = np.random.default_rng(seed)
    n = int(0.125 * sr)
    t = np.arange(n) / sr
    env = np.minimum(1.0, np.linspace(0, 8, n)) * np.linspace(1.0, 0.3, n)
    notes = [0.3 * env * np.sin(2 * np.pi * 220 * 2 ** (rng.integers(0, 24) / 12) * t)
             for _ in range(max(1, int(round(seconds / 0.125))))]
    return Audio(np.concatenate(notes).astype(np.float32), sr)


def random_clap(workdir: Path, tiny: bool) -> Path:
    from audiosubnet.bench.random_music import build_clap

    if tiny:
        return build_clap(workdir / "clap-tiny")
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    from audiosubnet.bench.random_music import build_tokenizer

    path = workdir / "clap-full"
    build_tokenizer(path)
    torch.manual_seed(0)
    ClapModel(ClapConfig()).eval().save_pretrained(path)  # type: ignore[no-untyped-call]  # transformers: untyped
    ClapFeatureExtractor().save_pretrained(path)
    return path


def music_scorer_row(ctx: BenchContext, dtype: str, weights: str) -> ScorerResult:
    """Measure the music scoring of the run and return its row."""
    from audiosubnet.audio import encode, write_atomic
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.scoring.music import DEFAULT_CLAP, MusicItem, MusicScoring, MusicScoringConfig

    secs = min(float(ctx.cfg.duration), 30.0)
    row = ScorerResult("music", device=ctx.device, dtype="float32", weights=weights, clip_s=secs)
    try:
        t0 = time.perf_counter()
        clap = str(random_clap(ctx.workdir(), ctx.cfg.tiny)) if ctx.cfg.random_weights else DEFAULT_CLAP
        if ctx.cfg.random_weights:
            row.notes.append(f"random-weight CLAP built in {time.perf_counter() - t0:.1f} s")
        refs = ctx.workdir() / "music-references"
        refs.mkdir(parents=True, exist_ok=True)
        for i in range(8):
            write_atomic(refs / f"ref{i}.wav", encode(melody(1000 + i, secs), "wav"))
        cache = EngineCache(None, ctx.device, "float32")
        scoring = MusicScoring(MusicScoringConfig(clap_model=clap, reference_dir=str(refs), min_window=2), cache)
        t0 = time.perf_counter()
        scoring.ensure_ready()
        row.load_s = time.perf_counter() - t0
        row.model = clap if not ctx.cfg.random_weights else f"random CLAP ({'tiny' if ctx.cfg.tiny else 'full'})"
        items = [MusicItem("calm lo-fi beat with soft piano", melody(i, secs), secs, hotkey=f"bench{i}", uid=i)
                 for i in range(max(ctx.batches))]
        for b in ctx.batches:
            scoring.score(items[:b])  # each miner's window holds an answer: quality is computed, not neutral
            row.points.append(score_point(ctx.cfg, ctx.emit, row, functools.partial(scoring.score, items[:b]), b,
                                          items, memory_now_mb(ctx.device)))
        row.notes.append("synthetic melodies; sanity + fingerprints + CLAP + relevance + KID window per call")
    except KeyboardInterrupt:
        raise
    except Exception as e:
        row.status, row.reason = ("unavailable" if _unavailable(e) else "error"), _short(e)
        ctx.emit(f"scorer music: {row.status}: {row.reason}")
    return row
