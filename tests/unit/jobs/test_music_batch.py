"""`asn music batch`'s job on a tiny random MusicGen: outputs, manifest, resume, force, bad rows, Ctrl-C."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from audiosubnet import audio
from audiosubnet.engines.registry import EngineCache
from audiosubnet.jobs.batch import BatchInterrupted
from audiosubnet.jobs.music_batch import MusicBatchOptions, read_music_prompts, run_music_batch

pytestmark = pytest.mark.slow


def manifest(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def cache():
    return EngineCache(budget_bytes=None)


def test_parsing_marks_bad_rows(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("id,prompt,duration,seed\na,lo-fi beat,1.5,7\nb,jazz,,\nc,rock,40,\nd,ambient,x,\ne,,1,\n"
                 "f,folk,1,-3\n")
    rows = {r.id: r for r in read_music_prompts(p, default_s=2.0)}
    assert (rows["a"].prompt, rows["a"].duration_s, rows["a"].seed, rows["a"].error) == ("lo-fi beat", 1.5, 7, None)
    assert rows["b"].duration_s == 2.0 and rows["b"].seed == read_music_prompts(p)[1].seed  # seed from the prompt
    assert "outside" in rows["c"].error and "not a number" in rows["d"].error
    assert "empty prompt" in rows["e"].error and "seed" in rows["f"].error


def test_batch_end_to_end_with_resume_and_force(tmp_path, tiny_musicgen, cache):
    src = tmp_path / "prompts.csv"
    src.write_text("id,prompt,duration,seed\nlofi,lo-fi beat with soft piano,0.6,1\nedm,upbeat dance track,0.5,2\n"
                   "bad,too long,45,\n")
    opts = MusicBatchOptions(out_dir=tmp_path / "music_target", model=f"musicgen:{tiny_musicgen}", max_batch=4)
    s = run_music_batch(src, opts, cache)
    assert (s.total, s.ok, s.failed, s.skipped) == (3, 2, 1, 0)
    m = manifest(opts.out_dir)
    assert m["lofi"]["status"] == "ok" and float(m["lofi"]["duration_s"]) == 0.6 and m["lofi"]["seed"] == "1"
    assert audio.read(opts.out_dir / "edm.wav").duration == pytest.approx(0.5, abs=1e-3)
    assert m["bad"]["status"] == "error" and "outside" in m["bad"]["error"]
    before = (opts.out_dir / "lofi.wav").stat().st_mtime_ns

    again = run_music_batch(src, opts, cache)  # resume: nothing regenerated
    assert (again.ok, again.skipped, again.failed) == (0, 2, 1)
    assert (opts.out_dir / "lofi.wav").stat().st_mtime_ns == before

    src.write_text("id,prompt,duration,seed\nlofi,lo-fi beat with soft piano,0.6,9\nedm,upbeat dance track,0.5,2\n")
    changed = run_music_batch(src, opts, cache)  # a new seed is a new row; the rest resumes
    assert (changed.ok, changed.skipped) == (1, 1)
    assert "bad" in manifest(opts.out_dir)  # rows of earlier runs are kept

    forced = run_music_batch(src, MusicBatchOptions(**{**opts.__dict__, "force": True}), cache)
    assert forced.ok == 2 and not list(opts.out_dir.glob("*.tmp*"))


def test_speech_model_rows_fail_with_a_reason(tmp_path, cache):
    src = tmp_path / "p.csv"
    src.write_text("prompt\nlo-fi beat\n")
    s = run_music_batch(src, MusicBatchOptions(out_dir=tmp_path / "o", model="fake:default"), cache)
    assert s.failed == 1 and "not a text-to-music model" in s.rows[0].error


def test_ctrl_c_flushes_the_manifest(tmp_path, tiny_musicgen, cache, monkeypatch):
    from audiosubnet.engines.musicgen import MusicgenEngine

    src = tmp_path / "p.csv"
    src.write_text("id,prompt,duration\na,one,0.5\nb,two,0.5\n")
    real = MusicgenEngine._synthesize
    calls = []

    def interrupt_second(self, requests):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, requests)

    monkeypatch.setattr(MusicgenEngine, "_synthesize", interrupt_second)
    opts = MusicBatchOptions(out_dir=tmp_path / "o", model=f"musicgen:{tiny_musicgen}", max_batch=1)
    with pytest.raises(BatchInterrupted) as e:
        run_music_batch(src, opts, cache)
    assert e.value.summary.interrupted and e.value.summary.ok == 1
    assert list(manifest(opts.out_dir)) == ["a"] and sorted(p.name for p in opts.out_dir.iterdir()) == [
        "a.wav", "manifest.csv"]


def test_music_prompts_are_read_like_the_speech_prompts(tmp_path):
    """The shared CSV reading: a semicolon export, one prompt per line (commas and all), binary files refused."""
    from audiosubnet.errors import UsageError

    p = tmp_path / "p.csv"
    p.write_text("id;prompt;duration\na;lo-fi, soft piano;2\n")
    rows = read_music_prompts(p)
    assert [(r.id, r.prompt, r.duration_s, r.error) for r in rows] == [("a", "lo-fi, soft piano", 2.0, None)]
    p.write_text("lo-fi beat, soft piano\nupbeat dance track\n")
    assert [r.prompt for r in read_music_prompts(p)] == ["lo-fi beat, soft piano", "upbeat dance track"]
    p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64))
    with pytest.raises(UsageError, match="WAV/RIFF file, not a text file"):
        read_music_prompts(p)
    p.write_text("id,duration\na,3\n")
    with pytest.raises(UsageError, match="without a 'prompt' column"):
        read_music_prompts(p)


def test_a_full_disk_stops_the_music_batch_and_keeps_finished_rows(tmp_path, tiny_musicgen, cache, monkeypatch):
    import errno

    from audiosubnet.jobs.batch import BatchStopped

    src = tmp_path / "p.csv"
    src.write_text("id,prompt,duration\na,one,0.5\nb,two,0.5\nc,three,0.5\n")
    real, n = audio.write_atomic, [0]

    def write_atomic(path, data):
        if str(path).endswith(".wav"):
            n[0] += 1
            if n[0] > 1:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(audio, "write_atomic", write_atomic)
    opts = MusicBatchOptions(out_dir=tmp_path / "o", model=f"musicgen:{tiny_musicgen}", max_batch=1)
    with pytest.raises(BatchStopped, match="No space left") as e:
        run_music_batch(src, opts, cache)
    assert (e.value.summary.ok, e.value.summary.failed) == (1, 0)  # stopped: the other rows were never tried
    m = manifest(opts.out_dir)
    assert len(m) == 1 and next(iter(m.values()))["status"] == "ok"
