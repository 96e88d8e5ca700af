"""Measure the parts of music scoring (docs/music.md): sanity cost, copy detection on music, and how KID on
CLAP embeddings separates distributions and how noisy it is per window size.

    python scripts/measure_music_scoring.py                 # tiny random CLAP (built in a temp folder)
    python scripts/measure_music_scoring.py --clap laion/larger_clap_music   (a downloaded CLAP)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosubnet import audio as audiolib  # noqa: E402
from audiosubnet.audio import Audio  # noqa: E402

SR = 32000


def melody(seed: int, seconds: float) -> Audio:
    rng = np.random.default_rng(seed)
    n = int(0.125 * SR)
    t = np.arange(n) / SR
    env = np.minimum(1.0, np.linspace(0, 8, n)) * np.linspace(1.0, 0.3, n)
    notes = [0.3 * env * np.sin(2 * np.pi * 220 * 2 ** (rng.integers(0, 24) / 12) * t)
             for _ in range(int(round(seconds / 0.125)))]
    return Audio(np.concatenate(notes).astype(np.float32), SR)


def noise(seed: int, seconds: float) -> Audio:
    return Audio((0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32), SR)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--clap", default=None, help="CLAP repo or folder (default: a tiny random one)")
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args()
    from audiosubnet.scoring import fingerprint as fp
    from audiosubnet.scoring.dsp import to_16k
    from audiosubnet.scoring.music import ClapEmbedder, kid
    from audiosubnet.scoring.music_sanity import check_music

    clip = melody(1, 10.0)
    t0 = time.perf_counter()
    for _ in range(20):
        check_music(clip, 10.0)
    print(f"sanity: {(time.perf_counter() - t0) / 20 * 1000:.2f} ms per 10 s clip")

    base = melody(2, a.seconds)
    fps = {"copy x0.5 gain": Audio(base.samples * 0.5, SR), "resampled 24 kHz": audiolib.resample(base, 24000),
           "mp3 round trip": audiolib.decode(audiolib.encode(base, "mp3")),
           "other melody": melody(3, a.seconds), "noise": noise(4, a.seconds)}
    f0 = fp.fingerprint(to_16k(base))
    for name, x in fps.items():
        d = fp.distance(f0, fp.fingerprint(to_16k(x)))
        print(f"fingerprint distance to the original, {name}: {d:.3f} (copy below {fp.DEFAULT_THRESHOLD})")

    with tempfile.TemporaryDirectory() as tmp:
        model = a.clap
        if model is None:
            from audiosubnet.bench.random_music import build_clap

            model = str(build_clap(Path(tmp) / "clap"))
        e = ClapEmbedder(model)
        e.setup("cpu")
        t0 = time.perf_counter()
        refs = e.embed_audio([melody(100 + i, a.seconds) for i in range(32)])
        per = (time.perf_counter() - t0) / 32
        name = "tiny random" if a.clap is None else a.clap
        print(f"CLAP ({name}): {per * 1000:.0f} ms per {a.seconds:g} s clip (CPU)")
        tones = e.embed_audio([melody(i, a.seconds) for i in range(64)])
        hiss = e.embed_audio([noise(i, a.seconds) for i in range(32)])
        mixed = np.concatenate([tones[:16], hiss[:16]])
        print(f"KID vs the references: melodies {kid(tones[:32], refs):.4f}, half noise {kid(mixed, refs):.4f}, "
              f"noise {kid(hiss, refs):.4f}")
        rng = np.random.default_rng(0)
        for n in (4, 8, 16, 32):
            vals = [kid(tones[rng.choice(64, n, replace=False)], refs) for _ in range(50)]
            print(f"KID of melody windows of {n}: mean {statistics.fmean(vals):+.4f}, sd {statistics.stdev(vals):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
