"""The text-to-music task: a fresh music prompt and a length per round, `POST /v1/music`, scored by
`scoring/music.py` (sanity, duplicates, CLAP relevance, KID quality against the operator's private references).

Prompts are drawn from genre x mood x instrumentation x tempo (about 40,000 combinations), so answers
cannot be precomputed for a short list. The deadline grows with the length asked for:
`base_s + per_s x duration_s` (4 s + 1 s per second of music by default, capped by the loop's timeout cap
raised to fit the length). The task scores its own items (the loop asks `task.score` when a task has one).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiosubnet.chain.base import Peer
from audiosubnet.protocol import MusicRequest
from audiosubnet.scoring.music import MusicItem, MusicResult, MusicScoring
from audiosubnet.validator.client import MinerClient, MinerResult

log = logging.getLogger(__name__)

GENRES = ("lo-fi hip hop", "jazz", "techno", "house", "ambient", "classical", "rock", "metal", "folk", "funk",
          "reggae", "blues", "synthwave", "drum and bass", "bossa nova", "orchestral", "trap", "disco", "country",
          "chiptune")
MOODS = ("calm", "upbeat", "melancholic", "energetic", "dreamy", "dark", "happy", "tense", "romantic", "epic")
INSTRUMENTS = ("soft piano", "acoustic guitar", "analog synths", "strings", "saxophone", "electric guitar",
               "808 bass", "flute", "organ", "brass section", "marimba", "violin", "choir", "vinyl crackle",
               "heavy drums", "upright bass", "harp", "bells", "pads", "banjo")
TEMPOS = ("slow", "mid-tempo", "fast", "70 bpm", "90 bpm", "120 bpm", "128 bpm", "140 bpm", "174 bpm", "")
DURATIONS_S = (5.0, 8.0, 10.0, 15.0)


def music_prompt(rng: random.Random) -> str:
    a, b = rng.sample(INSTRUMENTS, 2)
    tempo = rng.choice(TEMPOS)
    return f"{rng.choice(MOODS)} {rng.choice(GENRES)} with {a} and {b}" + (f", {tempo}" if tempo else "")


@dataclass(frozen=True)
class MusicMaterial:
    prompt: str
    duration_s: float


class MusicTask:
    name = "music"

    def __init__(self, scoring: MusicScoring, seed: int | None = None, durations: tuple[float, ...] = DURATIONS_S,
                 base_s: float = 4.0, per_s: float = 1.0, windows_path: Path | None = None):
        self.scoring = scoring
        self.windows_path = windows_path  # the miners' quality windows survive restarts here
        if windows_path is not None:
            scoring.windows.load(windows_path)
        self.rng = random.Random(seed)
        self.durations, self.base_s, self.per_s = durations, base_s, per_s

    async def prepare(self, prompt: str) -> MusicMaterial:
        """The speech prompt the loop drew is not used: music gets its own prompt and length."""
        return MusicMaterial(music_prompt(self.rng), self.rng.choice(self.durations))

    def timeout_s(self, material: MusicMaterial, default: float) -> float:
        return max(default, self.base_s + self.per_s * material.duration_s)

    async def query(self, client: MinerClient, peer: Peer, prompt: str, material: MusicMaterial,
                    timeout_s: float, seed: int | None = None) -> MinerResult:
        req = MusicRequest(prompt=material.prompt, duration_s=material.duration_s, format="wav", seed=seed)
        return await client.music(peer.endpoint, peer.hotkey, req, timeout_s=timeout_s)

    def item(self, peer: Peer, prompt: str, material: MusicMaterial, result: MinerResult) -> MusicItem:
        return MusicItem(material.prompt, result.audio or b"", material.duration_s, hotkey=peer.hotkey,
                         uid=int(peer.uid), elapsed_s=result.latency_s)

    def score(self, items: list[Any]) -> list[MusicResult]:
        results = self.scoring.score(items)
        if self.windows_path is not None:
            try:
                self.scoring.windows.save(self.windows_path)
            except OSError as e:  # the round's scores stand; the windows are saved again next round
                log.warning("cannot save the music windows to %s: %s", self.windows_path, e)
        return results


def build_music_task(v: Any, cache: Any, state_dir: Path | None = None) -> MusicTask:
    """The music task from the validator settings, with CLAP loaded and the references embedded.
    Raises ConfigError without a reference folder and ModelNotDownloadedError (naming `asn models pull`)
    without the CLAP model: the validator refuses music tasks rather than scoring on sanity alone."""
    from audiosubnet.errors import ConfigError
    from audiosubnet.scoring.music import MusicScoringConfig

    if v.music_references is None:
        raise ConfigError("music tasks need a private reference folder",
                          hint="Pass --music-references DIR (at least 8 music clips of your own), or --music-ratio 0.")
    scoring = MusicScoring(MusicScoringConfig(clap_model=v.music_clap_model, reference_dir=str(v.music_references),
                                              window=v.music_window), cache)
    scoring.ensure_ready()
    return MusicTask(scoring, seed=v.seed, windows_path=state_dir / "music_windows.npz" if state_dir else None)
