from __future__ import annotations

import json
import random

import pytest

from audiosubnet.validator import prompts
from audiosubnet.validator.state import ValidatorState


def test_ema_update_failures_and_weights():
    s = ValidatorState("v1")
    s.update(1, "hk1", 1.0, alpha=0.5)
    s.update(1, "hk1", 1.0, alpha=0.5)
    s.update(2, "hk2", 0.4, alpha=0.5)
    s.update(3, "hk3", 0.0, alpha=0.5, status="timeout")
    s.update(4, "hk4", float("nan"), alpha=0.5, status="garbage")
    assert s.miners[1].ema == pytest.approx(0.75) and s.miners[2].ema == pytest.approx(0.2)
    assert s.miners[3].failures == 1 and s.miners[4].ema == 0.0
    w = s.weights()
    assert set(w) == {1, 2} and w[1] == pytest.approx(0.75 / 0.95) and sum(w.values()) == pytest.approx(1.0)


def test_changed_hotkey_resets_the_uid():
    s = ValidatorState("v1")
    s.update(7, "old", 1.0, alpha=1.0)
    assert s.sync_hotkeys({7: "new", 8: "other"}) == [7]
    assert s.miners[7].ema == 0.0 and s.miners[7].hotkey == "new"
    s.update(8, "other", 1.0, alpha=1.0)
    s.sync_hotkeys({8: "other"})
    assert set(s.miners) == {8} and s.miners[8].ema == 1.0
    s.update(8, "swapped", 0.5, alpha=0.5)  # an update for another hotkey never inherits the average
    assert s.miners[8].ema == 0.25


def test_save_load_roundtrip_and_atomic(tmp_path):
    p = tmp_path / "state.json"
    s = ValidatorState("v1", round=5, last_weight_block=1200)
    s.update(3, "hk", 0.8, alpha=0.1, latency_s=0.2)
    s.save(p)
    t = ValidatorState.load(p, "v1")
    assert t.round == 5 and t.last_weight_block == 1200 and t.miners[3].ema == pytest.approx(0.08)
    assert [f.name for f in tmp_path.iterdir()] == ["state.json"]


def test_corrupt_state_is_kept_aside_and_fresh_state_starts(tmp_path, caplog):
    p = tmp_path / "state.json"
    p.write_text('{"state_version": 1, "miners": {"1": {"hotk')
    s = ValidatorState.load(p, "v1")
    assert s.round == 0 and s.miners == {}
    backups = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(backups) == 1 and "unreadable" in caplog.text


def test_other_scoring_version_restarts_averages(tmp_path):
    p = tmp_path / "state.json"
    s = ValidatorState("v1", round=9)
    s.update(1, "hk", 1.0, alpha=1.0)
    s.save(p)
    t = ValidatorState.load(p, "v2")
    assert t.scoring_version == "v2" and t.miners[1].ema == 0.0 and t.round == 9
    assert json.loads(p.read_text())["scoring_version"] == "v1"  # the file changes only on the next save


def test_generated_prompts_are_fresh_bounded_and_varied():
    rng = random.Random(1)
    texts = [prompts.generate(rng) for _ in range(300)]
    assert all(prompts.MIN_CHARS <= len(t) <= prompts.MAX_CHARS for t in texts)
    assert len(set(texts)) > 290
    assert any(any(c.isdigit() for c in t) for t in texts) and any(t.endswith("?") for t in texts)


def test_prompt_source_mixes_pool_and_generated():
    src = prompts.PromptSource(["From the pool, number one.", "From the pool, number two."], 0.5, seed=3)
    got = src.sample(200)
    pooled = sum(t.startswith("From the pool") for t in got)
    assert 60 < pooled < 140


def test_clean_truncates_long_text_at_a_boundary():
    long = "This is a sentence. " * 30
    t = prompts.clean(long)
    assert len(t) <= prompts.MAX_CHARS and t.endswith(".")
    assert prompts.clean("short") is None


def test_offline_dataset_falls_back_to_generated_with_one_warning(caplog):
    src = prompts.open_prompt_source(None)  # HF_HUB_OFFLINE=1 in tests: nothing cached
    assert src.generated_ratio == 1.0 and len(src.sample(3)) == 3
    assert sum("not cached" in r.message for r in caplog.records) == 1


def test_prompts_file_is_used(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("text\nA prompt from my own file.\nAnother one of mine, please.\n")
    src = prompts.open_prompt_source(f, generated_ratio=0.0)
    assert set(src.sample(10)) <= {"A prompt from my own file.", "Another one of mine, please."}


def test_dataset_csv_in_the_hf_cache_is_read(tmp_path, monkeypatch):
    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "train.csv").write_text("id,text\n1,A prompt from the cached dataset.\n2,\n")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(folder))
    assert prompts.load_dataset_prompts() == ["A prompt from the cached dataset."]
