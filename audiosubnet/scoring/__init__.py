"""Audio scoring: intelligibility (ASR -> WER/CER), naturalness (DNSMOS, UTMOS), speaker similarity,
sanity and anti-gaming checks (perceptual fingerprints), and the composite score.

    from audiosubnet.scoring import Scoring, ScoreItem
    results = Scoring(settings.score, cache=cache).score([ScoreItem(text="Hello there.", audio=wav_bytes, uid=1)])

The contract of a scorer is in `base.py`, the pipeline in `pipeline.py`, the formula in
`composite.py`. Importing this package is cheap (no torch, no onnxruntime): models load on first use
through the shared ModelCache.
"""

from audiosubnet.scoring.base import Plan, ScoreItem, Scorer
from audiosubnet.scoring.composite import SCORING_VERSION, composite
from audiosubnet.scoring.fingerprint import FingerprintHistory
from audiosubnet.scoring.pipeline import ScoreResult, Scoring, score_batch

__all__ = ["SCORING_VERSION", "FingerprintHistory", "Plan", "ScoreItem", "ScoreResult", "Scorer", "Scoring",
           "composite", "score_batch"]
