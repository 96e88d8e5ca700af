"""Scoring text-to-music answers: sanity, duplicates, relevance (CLAP) and quality (KID over a window).

    scoring = MusicScoring(MusicScoringConfig(reference_dir="refs/"), cache)
    results = scoring.score([MusicItem(prompt, wav_bytes, requested_s=10, hotkey=hk, uid=3), ...])

Per item, in order (the first failure scores 0 with a reason):
1. decode and `music_sanity.check_music` (silence, clipping, DC, NaN, duration; a shortfall scales the score);
2. duplicates: the perceptual fingerprint (scoring/fingerprint.py) of each answer is compared with the other
   answers to the same prompt in this batch (the fastest keeps its score) and with the rolling history of
   earlier answers by other miners; a copy (distance under `copy_threshold`) scores 0 and is not scored further;
3. relevance: CLAP (transformers `ClapModel`, default `laion/larger_clap_music`) embeds the clip (the mean
   of its 10 s windows) and the prompt; the clip is compared with its own prompt and with `decoys` other
   music prompts. relevance = the share of decoys the clip is closer to than to its own prompt (ties count
   half): 1 when it matches its prompt best, about 0.5 for a clip unrelated to all of them. A rank, so the
   value does not depend on CLAP's similarity scale;
4. quality: each miner's last `window` clip embeddings are compared, as a distribution, with the embeddings
   of a private reference set (a folder of audio files the validator operator provides, never sent to
   miners) by the kernel inception distance (KID: unbiased MMD^2, cubic polynomial kernel on unit vectors).
   KID is unbiased at small sample sizes, where FAD's 512x512 covariance of a few dozen clips is rank-
   deficient noise. quality = exp(-max(KID, 0) / kid_scale); until a miner has `min_window` answers its
   quality is `neutral_quality`. One clip is never compared with one clip;
5. composite = duration factor x (relevance_weight x relevance + (1 - relevance_weight) x quality).

Without the CLAP model the scorer raises ModelNotDownloadedError naming `asn models pull` (the validator
refuses music tasks rather than scoring on sanity alone).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.runtime.cache import ModelCache
from audiosubnet.runtime.loadable import Loadable
from audiosubnet.scoring import fingerprint as fp
from audiosubnet.scoring.dsp import to_16k
from audiosubnet.scoring.music_sanity import MusicLimits, check_music
from audiosubnet.scoring.sanity import decode

log = logging.getLogger(__name__)

DEFAULT_CLAP = "laion/larger_clap_music"
CLAP_FILES = ("*.json", "*.txt", "*.safetensors", "*.model")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
DECOY_PROMPTS = (
    "lo-fi hip hop beat with soft piano", "heavy metal with distorted guitars and double kick drums",
    "solo classical piano sonata", "upbeat EDM track with a big synth drop", "acoustic folk song with guitar",
    "epic orchestral film score with choir", "smooth jazz with saxophone and upright bass",
    "reggae groove with offbeat guitar chops", "ambient drone with slow evolving pads",
    "funky disco with slap bass and strings", "traditional celtic music with fiddle and flute",
    "trap beat with 808 bass and hi-hats", "bossa nova with nylon guitar and soft percussion",
    "chiptune melody from an 8-bit video game", "gospel choir with organ", "minimal techno with a steady kick",
)


def kid(x: np.ndarray, y: np.ndarray) -> float:
    """Kernel inception distance: the unbiased MMD^2 between samples x (n, d) and y (m, d) of unit vectors
    with the kernel k(a, b) = (a.b + 1)^3. 0 for equal distributions; needs n, m >= 2."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("KID needs at least two samples on each side")
    kxx = (x @ x.T + 1.0) ** 3
    kyy = (y @ y.T + 1.0) ** 3
    kxy = (x @ y.T + 1.0) ** 3
    sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def rank_relevance(own: np.ndarray, decoys: np.ndarray) -> np.ndarray:
    """own (n,) similarities to the own prompt, decoys (n, k): share of decoys beaten (ties half)."""
    own = np.asarray(own, np.float64)[:, None]
    d = np.asarray(decoys, np.float64)
    beaten: np.ndarray = ((d < own).sum(1) + 0.5 * (d == own).sum(1)) / max(1, d.shape[1])
    return beaten


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    unit: np.ndarray = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    return unit


# ---- CLAP ----------------------------------------------------------------------------------------
class ClapEmbedder(Loadable):
    """transformers ClapModel + tokenizer + feature extractor; Loadable by the ModelCache."""

    window_s = 10.0
    max_windows = 3

    def __init__(self, model: str = DEFAULT_CLAP):
        super().__init__()
        self.model = model
        # loaded transformers objects: typed at that boundary as Any
        self._clap: Any = None
        self._tok: Any = None
        self._fe: Any = None
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        return f"score:clap:{self.model}"

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        from audiosubnet.errors import DependencyError, EngineError

        folder = clap_folder(self.model)
        try:
            import torch
            from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel
        except ImportError as e:
            raise DependencyError(getattr(e, "name", None) or "transformers", "hf", "music scoring") from e
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
            self._tok = AutoTokenizer.from_pretrained(folder)
            self._fe = ClapFeatureExtractor.from_pretrained(folder)
            self._clap = ClapModel.from_pretrained(folder, dtype=torch.float32).to(device).eval()  # type: ignore[arg-type]  # transformers types .to() through a decorator that drops self
        except Exception as e:
            raise EngineError(f"cannot load the CLAP model {self.model} from {folder}: {e}") from e
        self.device, self.loaded = device, True

    def unload(self) -> None:
        self._clap = self._tok = self._fe = None
        self.loaded = False

    def memory_bytes(self) -> int:
        from audiosubnet.runtime.frameworks import torch_module_bytes

        return torch_module_bytes(self._clap) if self._clap is not None else self.estimate_bytes()

    def estimate_bytes(self) -> int:
        return 800 * 2**20  # larger_clap_music: ~194M parameters in fp32

    @property
    def sample_rate(self) -> int:
        return int(self._fe.sampling_rate)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with self._lock, torch.inference_mode():
            enc = self._tok(list(texts), padding=True, truncation=True, max_length=77, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            out = self._clap.get_text_features(**enc)
            out = getattr(out, "pooler_output", out)
        return _unit(out.float().cpu().numpy())

    def windows(self, audio: Audio) -> list[np.ndarray]:
        from audiosubnet import audio as audiolib

        a = audiolib.resample(audio, self.sample_rate) if audio.sample_rate != self.sample_rate else audio
        n = int(self.window_s * self.sample_rate)
        x = a.samples
        chunks = [x[i:i + n] for i in range(0, max(1, len(x)), n)][: self.max_windows]
        keep = [c for c in chunks if len(c) >= n // 4] or chunks[:1]  # a short tail is not a window
        return [np.asarray(c, np.float32) for c in keep]

    def embed_audio(self, audios: Sequence[Audio]) -> np.ndarray:
        """One unit vector per clip: the normalised mean of its (up to three) 10 s windows' embeddings."""
        import torch

        pieces, owner = [], []
        for i, a in enumerate(audios):
            for w in self.windows(a):
                pieces.append(w)
                owner.append(i)
        with self._lock, torch.inference_mode():
            feats = self._fe(pieces, sampling_rate=self.sample_rate, return_tensors="pt")
            kw = {"input_features": feats["input_features"].to(self.device)}
            if "is_longer" in feats:
                kw["is_longer"] = feats["is_longer"].to(self.device)
            out = self._clap.get_audio_features(**kw)
            out = getattr(out, "pooler_output", out)
        emb = _unit(out.float().cpu().numpy())
        owner_arr = np.asarray(owner)
        return _unit(np.stack([emb[owner_arr == i].mean(0) for i in range(len(audios))]))


def pull_clap(model: str = DEFAULT_CLAP) -> Path:
    """Download a CLAP repo into the HF cache (`asn models pull clap:<repo>`)."""
    return clap_folder(model, download=True)


def clap_folder(model: str, download: bool = True) -> Path:
    """A local folder with the CLAP files: safetensors weights, else (repos without them) the .bin ones."""
    import os

    from audiosubnet.errors import ModelNotDownloadedError
    from audiosubnet.runtime import hub

    mid = f"clap:{model}"
    folder = hub.resolve(model, model_id=mid, allow_patterns=CLAP_FILES, download=download)
    if folder.is_dir() and not hub.has_weights(folder) and not hub.is_local(model):
        if not download or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise ModelNotDownloadedError(mid, f"no weights for {model} in the cache")
        folder = hub.pull(model, model_id=mid, allow_patterns=(*CLAP_FILES, "*.bin"))
    return folder


# ---- the reference set and the miners' windows ---------------------------------------------------
def reference_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


class ReferenceSet:
    """Embeddings of the operator's private reference clips, computed once per process (per file state)."""

    def __init__(self, folder: str | Path, min_files: int = 8):
        self.folder = Path(folder).expanduser()
        self.min_files = min_files
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._emb: np.ndarray | None = None

    def embeddings(self, embedder: ClapEmbedder) -> np.ndarray:
        from audiosubnet import audio as audiolib
        from audiosubnet.errors import ConfigError

        if not self.folder.is_dir():
            raise ConfigError(f"music reference folder {self.folder} does not exist",
                              hint="Point --music-references at a folder of your own music clips.")
        files = reference_files(self.folder)
        stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        if self._emb is not None and stamp == self._stamp:
            return self._emb
        if len(files) < self.min_files:
            raise ConfigError(f"music reference folder {self.folder} has {len(files)} audio files; "
                              f"at least {self.min_files} are needed")
        audios = [audiolib.read(p) for p in files]
        self._emb = np.concatenate([embedder.embed_audio(audios[i:i + 16]) for i in range(0, len(audios), 16)])
        self._stamp = stamp
        return self._emb


@dataclass
class MinerWindows:
    """The last `size` clip embeddings of each miner (by hotkey)."""

    size: int = 32
    windows: dict[str, deque[np.ndarray]] = field(default_factory=dict)

    def add(self, miner: str, emb: np.ndarray) -> np.ndarray:
        w = self.windows.setdefault(miner, deque(maxlen=self.size))
        w.append(np.asarray(emb, np.float32))
        return np.stack(list(w))

    def get(self, miner: str) -> np.ndarray | None:
        w = self.windows.get(miner)
        return np.stack(list(w)) if w else None

    def save(self, path: str | Path) -> None:
        """Atomically, as an npz of one array per miner (no pickle)."""
        import io

        from audiosubnet import audio as audiolib

        buf = io.BytesIO()
        arrays = {f"m{i}": np.stack(list(w)) for i, w in enumerate(self.windows.values()) if w}
        names = [k for k, w in self.windows.items() if w]
        # numpy's stub lets **arrays collide with its `allow_pickle: bool` keyword
        np.savez(buf, names=np.array(names, dtype=str), **arrays)  # type: ignore[arg-type]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        audiolib.write_atomic(Path(path), buf.getvalue())

    def load(self, path: str | Path) -> None:
        """Windows saved by `save`; a missing or unreadable file leaves them empty."""
        p = Path(path)
        if not p.is_file():
            return
        try:
            with np.load(p, allow_pickle=False) as z:
                for i, name in enumerate(z["names"].tolist()):
                    self.windows[str(name)] = deque(list(z[f"m{i}"]), maxlen=self.size)
        except Exception as e:  # a broken file must not stop the validator
            log.warning("ignoring unreadable music windows %s: %s", p, e)


# ---- the scorer ----------------------------------------------------------------------------------
@dataclass
class MusicItem:
    prompt: str
    audio: bytes | Audio
    requested_s: float
    hotkey: str | None = None
    uid: int | None = None
    elapsed_s: float | None = None

    @property
    def miner(self) -> str:
        return self.hotkey or f"uid:{self.uid}"


@dataclass
class MusicResult:
    composite: float
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    error: bool = False
    duplicate_of: str | None = None
    uid: int | None = None
    hotkey: str | None = None


@dataclass(frozen=True)
class MusicScoringConfig:
    clap_model: str = DEFAULT_CLAP
    reference_dir: str | None = None
    window: int = 32
    min_window: int = 8
    kid_scale: float = 0.05
    neutral_quality: float = 0.5
    relevance_weight: float = 0.6
    decoys: tuple[str, ...] = DECOY_PROMPTS
    limits: MusicLimits = MusicLimits()
    # fingerprint distance under which two answers are one recording. Stricter than speech's 0.30: on sparse
    # tonal music, different clips measured 0.30-0.32 (docs/music.md); gain/resampled copies measure < 0.01
    copy_threshold: float = 0.2


class MusicScoring:
    def __init__(self, config: MusicScoringConfig, cache: ModelCache):
        self.config = config
        self.cache = cache
        self.references = ReferenceSet(config.reference_dir) if config.reference_dir else None
        self.windows = MinerWindows(config.window)
        self.history = fp.FingerprintHistory()

    def embedder(self) -> AbstractContextManager[ClapEmbedder]:
        """A lease on the CLAP embedder from the ModelCache (loads it once per process)."""
        clap = ClapEmbedder(self.config.clap_model)
        return self.cache.lease(self.cache.key(clap.key, self.cache.device, "float32"), lambda: clap,
                                dtype="float32")

    def ensure_ready(self) -> None:
        """Load CLAP (and embed the references) now: raises ModelNotDownloadedError / ConfigError."""
        with self.embedder() as clap:
            if self.references is not None:
                self.references.embeddings(clap)

    def quality(self, miner: str, window: np.ndarray | None, refs: np.ndarray | None) -> tuple[float, float]:
        """(quality, KID) of a miner's window; (neutral, nan) while the window is short or there are no refs."""
        c = self.config
        if refs is None or window is None or len(window) < c.min_window:
            return c.neutral_quality, float("nan")
        d = kid(window, refs)
        return math.exp(-max(d, 0.0) / c.kid_scale), d

    def score(self, items: Sequence[MusicItem]) -> list[MusicResult]:
        c = self.config
        results: list[MusicResult | None] = [None] * len(items)
        ok: list[tuple[int, Audio, float]] = []
        fps: dict[int, fp.Fingerprint] = {}
        for i, it in enumerate(items):
            audio, why = (it.audio, None) if isinstance(it.audio, Audio) else decode(it.audio, 40.0)
            if audio is None:
                results[i] = MusicResult(0.0, reason=why, uid=it.uid, hotkey=it.hotkey)
                continue
            why, factor, info = check_music(audio, it.requested_s, c.limits)
            if why:
                results[i] = MusicResult(0.0, info, reason=why, uid=it.uid, hotkey=it.hotkey)
                continue
            cut = Audio(audio.samples[: int(it.requested_s * audio.sample_rate)], audio.sample_rate)
            fps[i] = fp.fingerprint(to_16k(cut))
            ok.append((i, cut, factor))
        self._duplicates(items, ok, fps, results)
        ok = [(i, a, f) for i, a, f in ok if results[i] is None]
        if ok:
            with self.embedder() as clap:
                refs = self.references.embeddings(clap) if self.references is not None else None
                emb = clap.embed_audio([a for _, a, _ in ok])
                prompts = [items[i].prompt for i, _, _ in ok]
                texts = clap.embed_text(list(dict.fromkeys([*prompts, *c.decoys])))
            index = {t: k for k, t in enumerate(dict.fromkeys([*prompts, *c.decoys]))}
            own = np.array([emb[j] @ texts[index[p]] for j, p in enumerate(prompts)])
            decoy_rows = []
            for j, p in enumerate(prompts):
                ds = [index[d] for d in c.decoys if d != p]
                decoy_rows.append(emb[j] @ texts[ds].T)
            rel = rank_relevance(own, np.stack(decoy_rows))
            for j, (i, _, factor) in enumerate(ok):
                it = items[i]
                window = self.windows.add(it.miner, emb[j])
                q, d = self.quality(it.miner, window, refs)
                score = factor * (c.relevance_weight * rel[j] + (1 - c.relevance_weight) * q)
                metrics = {"relevance": float(rel[j]), "clap_similarity": float(own[j]), "quality": q,
                           "kid": d, "duration_factor": factor, "window": float(len(window))}
                results[i] = MusicResult(float(score), metrics, uid=it.uid, hotkey=it.hotkey)
        for i, _, _ in ok:
            self.history.add(fps[i], fp.text_key(items[i].prompt), items[i].miner, f"uid {items[i].uid}")
        self.history.next_round()
        return [r if r is not None else MusicResult(0.0, reason="not scored", error=True) for r in results]

    def _duplicates(self, items: Sequence[MusicItem], ok: list[tuple[int, Audio, float]],
                    fps: dict[int, fp.Fingerprint], results: list[MusicResult | None]) -> None:
        order = sorted((i for i, _, _ in ok), key=lambda i: (items[i].elapsed_s is None, items[i].elapsed_s or 0, i))
        keep: list[int] = []
        for i in order:
            copy_of = next((k for k in keep if fp.text_key(items[k].prompt) == fp.text_key(items[i].prompt)
                            and fp.is_duplicate(fps[i], fps[k], self.config.copy_threshold)), None)
            if copy_of is not None:
                results[i] = MusicResult(0.0, reason=f"copy of uid {items[copy_of].uid}'s answer",
                                         duplicate_of=items[copy_of].hotkey, uid=items[i].uid,
                                         hotkey=items[i].hotkey)
                continue
            prior = self.history.find(fps[i], fp.text_key(items[i].prompt), items[i].miner,
                                      self.config.copy_threshold)
            if prior is not None:
                results[i] = MusicResult(0.0, reason=f"copy of an earlier answer ({prior.label})", uid=items[i].uid,
                                         hotkey=items[i].hotkey)
                continue
            keep.append(i)
