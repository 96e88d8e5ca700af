"""`asn tts batch --devices`: the job's batches go to an engine pool, several at once, each to the least-loaded
engine process; the files and the manifest are those of the one-engine run."""

from __future__ import annotations

import csv
from pathlib import Path

from audiosubnet.engines.isolated import isolated_cache
from audiosubnet.engines.pool import engine_pool
from audiosubnet.jobs.tts_batch import BatchOptions, run_tts_batch

MODEL = "fake:delay_ms=150,max_batch=2,fail=boom"


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in csv.DictReader(f)]


def test_rows_spread_over_two_engines_give_the_one_engine_result(tmp_path):
    lines = [f"r{i:02d},Row number {i} of the batch{' boom' if i == 5 else ''}.,{'b' if i % 3 == 0 else ''}"
             for i in range(12)]
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,text,voice\n" + "\n".join(lines) + "\n", encoding="utf-8")

    results = {}
    for name in ("one", "two"):
        out = tmp_path / name
        cache = engine_pool(["cpu:0", "cpu:1"], "float32", None) if name == "two" else \
            isolated_cache("cpu", "float32", None)
        try:
            summary = run_tts_batch(prompts, BatchOptions(out_dir=out, model=MODEL, max_batch=2, seed=7), cache)
            if name == "two":
                stats = cache.stats()
        finally:
            cache.close()
        assert (summary.ok, summary.failed) == (11, 1)
        results[name] = out

    assert all(s.batches >= 2 for s in stats), stats  # both engine processes rendered rows
    assert sum(s.requests for s in stats) >= 12
    one, two = results["one"], results["two"]
    assert _manifest(one) == _manifest(two)  # same rows, same order (CSV order), same values
    assert [r["id"] for r in _manifest(two)] == [f"r{i:02d}" for i in range(12)]
    for i in range(12):
        if i == 5:
            assert not (two / "r05.wav").exists()
            continue
        assert (one / f"r{i:02d}.wav").read_bytes() == (two / f"r{i:02d}.wav").read_bytes()
