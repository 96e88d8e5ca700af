"""Scores are reproducible bit for bit: the same audio, text and settings give the same metrics and composite in
separate processes, whatever else shares the batch and in whatever order (greedy decoding with a per-item token
budget, no sampling, no temperature fallback; every model deterministic on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from audiosubnet import audio as audiolib
from audiosubnet.engines.base import SynthesisRequest

pytestmark = pytest.mark.slow

TEXTS = [
    "The museum opens early on weekends, so we should arrive before the crowds. Mina counted seven green kettles.",
    "Dr. Priya measured 31 degrees at the harbour on the 3rd of May.",
    "She planted tomatoes, beans and sunflowers along the garden wall.",
    "Call Oscar at 555-0142 before June 9; the noisy shop closes early on Fridays.",
]

SCRIPT = r"""
import json, sys
from audiosubnet import audio as audiolib
from audiosubnet.config import ScoreSettings
from audiosubnet.engines.registry import EngineCache
from audiosubnet.scoring import ScoreItem, Scoring
jobs = json.loads(sys.argv[1])
scoring = Scoring(ScoreSettings(preset="offline"), cache=EngineCache(None, "cpu", "float32"))
out = {}
for batch in jobs:
    items = [ScoreItem(t, audiolib.read(p), uid=i) for i, (p, t) in enumerate(batch)]
    for (p, t), r in zip(batch, scoring.score(items, remember=False)):
        out[p] = {"composite": r.composite.hex(), "metrics": {k: float(v).hex() for k, v in r.metrics.items()},
                  "transcript": r.transcript}
print("RESULT" + json.dumps(out))
"""


def run(jobs) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    p = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(jobs)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    line = next(x for x in p.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_the_same_answer_scores_the_same_in_another_process_and_batch(cpu_cache, tmp_path):
    files = []
    for i, text in enumerate(TEXTS):
        model, voice = ("piper", None) if i % 2 == 0 else ("espeak:en-us", "en-gb")
        with cpu_cache.engine(model) as e:
            a = e.synthesize([SynthesisRequest(text, voice=voice, seed=11)])[0]
        path = tmp_path / f"{i}.wav"
        path.write_bytes(audiolib.encode(a, "wav"))
        files.append([str(path), text])
    together = run([files])  # one batch
    apart = run([[f] for f in reversed(files)])  # one item at a time, the other way round
    mixed = run([files[2:] + files[:1], files[1:2]])
    assert together == apart == mixed
    assert all(json.loads(json.dumps(v))["transcript"] for v in together.values())
