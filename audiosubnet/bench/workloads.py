"""What `asn bench` runs and what it compares the numbers with: the default engines and scorers, the texts
(first-audio sentence, clone reference text, quality prompts, the passage real voices read), synthetic clips,
the random-weight models and the settings that force their lengths, the H100 kernel-level anchors and the
old subnet's published numbers."""

from __future__ import annotations

import contextlib
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from audiosubnet.audio import Audio
    from audiosubnet.bench.results import BenchConfig, EngineResult
    from audiosubnet.engines.music import MusicRequest

OFFLINE_ENGINES = ("piper", "espeak", "world")
RANDOM_ENGINES = ("mms", "speecht5", "bark", "speecht5-clone", "pocket", "musicgen")
SCORERS = ("asr", "dnsmos", "utmos", "speaker", "pipeline", "pipeline-clone", "music")
OFFLINE_SCORERS = ("asr", "dnsmos", "speaker", "pipeline")
RANDOM_SCORERS = ("asr", "dnsmos", "utmos", "speaker", "pipeline")

# H100 kernel-level anchors (../shared/design/PERFORMANCE.md), x real time, random full-size weights.
ANCHORS: dict[tuple[str, int, str], float] = {
    ("mms", 1, "float32"): 690.0, ("mms", 16, "float16"): 2163.0, ("mms", 64, "float16"): 2358.0,
    ("speecht5", 1, "float32"): 4.0, ("speecht5", 16, "float16"): 71.0,
    ("asr", 1, "float16"): 51.0, ("asr", 32, "float16"): 1113.0,
}
ANCHOR_TARGET = 0.6  # issue 7: >= 60% of each anchor through the project's own code
# The old subnet's published H100 table (docs/benchmark.md there): seconds per 30 s of speech / per clip.
OLD_SUBNET = {"tts_rtf": 4.36 / 30, "clone_rtf": 82.15 / 30, "score_s": 1.25, "score_clone_s": 1.30}

FIRST_TEXT = "The quick brown fox jumps over the lazy dog."
REF_TEXT = "Please call Stella and ask her to bring these things with her from the store."
REF_VOICES = ("en-us+f3", "en-gb", "en-us+m7", "en+f4", "en-gb-scotland", "en-us+klatt")
QUALITY_PROMPTS = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
)
PASSAGE = (
    "The history of the river town is written in its bridges. The oldest one, built of grey stone, still "
    "carries carts and bicycles every morning. Farther downstream, a steel bridge opened a century later and "
    "brought the railway, the market, and a crowd of new families. Today children fish from both of them, and "
    "on summer nights the whole town walks across to hear music in the park. A gentle breeze carried the smell "
    "of rain across the valley, and the old mill wheel began to turn again. Every evening the lighthouse keeper "
    "climbed the spiral stairs, wound the clockwork, and lit the great lamp. To get to the station, walk two "
    "blocks north, turn left at the bakery, and cross the bridge over the canal. She opened the letter slowly, "
    "read it twice, and then laughed so hard that the whole room turned around to look at her. Our meeting "
    "moved to Thursday afternoon; bring the quarterly numbers and the first draft of the plan. Please remember "
    "to water the plants on the balcony before you leave for the weekend. The library opens at nine and closes "
    "at six, except on holidays, when it stays closed all day. We walked along the river until the sun went "
    "down, and then we followed the lanterns home. "
)
SENTENCES = tuple(s.strip() + "." for s in PASSAGE.split(". ") if s.strip().strip("."))


MUSIC_PROMPTS = ("lo-fi beat with soft piano", "upbeat electronic dance track with a heavy kick drum",
                 "calm acoustic guitar melody", "epic orchestral score with strings and brass")


def music_request(prompt: str, seed: int, duration: float) -> MusicRequest:
    """A text-to-music request of `duration` seconds (capped at the engines' 30 s)."""
    from audiosubnet.engines.music import MAX_DURATION_S, MusicRequest

    return MusicRequest(text=prompt, seed=seed, duration_s=min(float(duration), MAX_DURATION_S))


def letters(n: int, seed: int = 0) -> str:
    """n characters of random lowercase words: one token per character for the random models' tokenizers."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(" ".join(out)) < n:
        out.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))))
    return " ".join(out)[:n].rstrip().ljust(n, "a")


def sized_text(chars: int, offset: int = 0) -> str:
    """About `chars` characters of natural English from PASSAGE (starting at sentence `offset`), cut at a
    word boundary and ending in a full stop."""
    chars = max(10, int(chars))
    sents = SENTENCES[offset % len(SENTENCES):] + SENTENCES[: offset % len(SENTENCES)]
    text = ""
    while len(text) < chars:
        text += " ".join(sents) + " "
    cut = text[:chars]
    cut = cut[: cut.rfind(" ")] if " " in cut[1:] else cut
    return cut.rstrip(" ,;:.") + "."


def speechlike(seconds: float, seed: int, sr: int = 16000) -> Audio:
    """Noise with a syllable-rate envelope, phrase pauses and a pitch-like tint: passes the sanity checks,
    and no two seeds share a fingerprint (clips for random-weight scorers)."""
    import numpy as np

    from audiosubnet.audio import Audio

    r = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    syll = np.clip(np.sin(2 * np.pi * (3.5 + r.random()) * t + r.random() * 6), 0, None) ** 2
    phrase = (np.sin(2 * np.pi * (0.25 + 0.1 * r.random()) * t + r.random() * 6) > -0.6).astype(np.float64)
    x = r.standard_normal(len(t)) * syll * phrase
    x += 0.5 * np.sin(2 * np.pi * (110 + 60 * r.random()) * t) * syll * phrase
    return Audio((0.15 * x / max(1e-9, np.abs(x).max())).astype(np.float32), sr)


def harmonic_reference(seconds: float = 6.0, sr: int = 24000) -> Audio:
    """A voiced, pitch-gliding harmonic tone: the clone reference when no offline voice is installed."""
    import numpy as np

    from audiosubnet.audio import Audio

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    x = sum(np.sin(2 * np.pi * np.cumsum(f0) / sr * k) / k for k in range(1, 16)) + 0.01 * rng.standard_normal(len(t))
    return Audio((0.3 * x / np.abs(x).max()).astype(np.float32), sr)


# ---- random weights -----------------------------------------------------------------------------
def build_random(name: str, size: str, workdir: Path, bark_tokens: int) -> Path:
    """A random-weight model of engine `name` (size full | small | tiny) built in `workdir`/<name>-<size>:
    the folder to load it from."""
    from audiosubnet.bench import random_models as rm

    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers: untyped
    root = workdir / f"{name}-{size}"
    if name == "musicgen":  # full size: the musicgen-medium architecture
        from audiosubnet.bench.random_music import build_musicgen

        return build_musicgen(root, "medium" if size == "full" else "tiny")
    if name == "mms":
        return rm.build_mms(root, size)
    if name == "bark":
        return rm.build_bark(root, size, max_semantic_tokens=24 if size == "tiny" else bark_tokens)
    if name == "pocket":
        from audiosubnet.engines.pocket import build_random_pocket

        return build_random_pocket(root, size)
    folder = rm.build_speecht5(root, size)
    if name == "speecht5-clone":  # + the x-vector encoder the engine finds in folder/xvector
        import torch
        from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

        torch.manual_seed(0)
        cfg = WavLMConfig() if size == "full" else WavLMConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16, 16, 16, 32),
            xvector_output_dim=512, num_buckets=32, max_bucket_distance=80)
        WavLMForXVector(cfg).save_pretrained(folder / "xvector")
        Wav2Vec2FeatureExtractor(  # type: ignore[no-untyped-call]  # transformers: untyped
            feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
            return_attention_mask=True).save_pretrained(folder / "xvector")
    return folder


def workload(row: EngineResult, engine: Any, cfg: BenchConfig) -> tuple[list[str], str | None]:
    """Texts for the timed items, and engine settings that force each item's length, for random
    weights (which would otherwise stop at random points). [] = size from the voice (real weights).
    `engine` is Any: the random-weight settings are set on the engines' own models (mms, speecht5, pocket)."""
    if row.weights == "real":
        return [], None
    name = row.engine
    tiny = row.weights == "random-tiny"
    if row.kind == "music":  # the length is the request's: every item is `duration` seconds (at most 30)
        return list(MUSIC_PROMPTS), f"{min(cfg.duration, 30.0):g} s of music per item, guidance on"
    if name == "mms":
        m = engine._model
        m.config.use_stochastic_duration_prediction = False
        m.duration_predictor = _fixed_durations(2)
        hop, sr = math.prod(m.config.upsample_rates), int(m.config.sampling_rate)
        secs = 30.0 if cfg.anchors and not tiny else cfg.duration
        n = min(math.ceil((secs * sr / (2 * hop) - 1) / 2), engine.capabilities.max_text_chars)
        return [letters(n, i) for i in range(4)], "durations forced to 2 frames per token"
    if name in ("speecht5", "speecht5-clone"):
        inner = getattr(engine, "inner", engine)
        inner.threshold = 2.0  # the random stop head never fires: length = the forced ratio
        target = 30 if tiny else 120
        texts = []
        for i in range(4):
            n = target
            for _ in range(3):
                n += target - len(inner._token_ids(letters(n, i)))
            texts.append(letters(max(2, n), i))
        tokens = len(inner._token_ids(texts[0]))
        r = int(inner._model.config.reduction_factor)
        voc = inner._vocoder.config
        steps = 480 if cfg.anchors and not tiny else math.ceil(
            cfg.duration * voc.sampling_rate / (math.prod(voc.upsample_rates) * r))
        steps = min(steps, inner._fast["alpha_pe"].shape[0] - 2)
        inner.minlenratio = inner.maxlenratio = steps * r / tokens + 1e-6
        return texts, f"{tokens} tokens, stop head off, {steps} decoder steps per item"
    if name == "pocket":
        engine._tts.eos_threshold = 1e9  # never stop early: the package's length limit for the text
        words = "the quick brown fox jumps over a lazy dog while seven birds sing near the old river bank " * 9
        n = max(5, round((cfg.duration - 0.7) / 0.566))  # ~0.57 s per character (measured)
        return [words[:n].strip() + "."], "EOS off: length set by the text"
    if name == "bark":
        return ["Hello, this is a test of the speech engine on random weights."], \
            f"semantic tokens capped at {24 if tiny else cfg.bark_tokens}"
    return [], None


def _fixed_durations(frames: int) -> torch.nn.Module:
    """A deterministic VITS duration predictor giving every token `frames` frames (as the H100 anchor)."""
    import torch

    class FixedDurations(torch.nn.Module):
        def forward(self, inputs: torch.Tensor, padding_mask: torch.Tensor,
                    global_conditioning: torch.Tensor | None = None) -> torch.Tensor:
            return torch.log(torch.full_like(padding_mask, float(frames)))

    return FixedDurations()
