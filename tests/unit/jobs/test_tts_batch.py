"""The batch TTS job: CSV parsing, manifest, resume, atomic writes, bad rows, batching, Ctrl-C."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from audiosubnet import audio
from audiosubnet.engines.fake import FakeEngine
from audiosubnet.engines.registry import EngineCache
from audiosubnet.errors import UsageError
from audiosubnet.jobs.tts_batch import BatchInterrupted, BatchOptions, read_prompts, run_tts_batch


def write(p: Path, content: str | bytes) -> Path:
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def manifest(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


@pytest.fixture
def cache():
    return EngineCache(budget_bytes=None)


@pytest.fixture(autouse=True)
def _clear_calls():
    FakeEngine.calls.clear()


def opts(tmp_path, **kw):
    return BatchOptions(out_dir=tmp_path / "out", model=kw.pop("model", "fake"), **kw)


# ---- parsing -----------------------------------------------------------------------------
def test_header_with_optional_columns(tmp_path):
    rows = read_prompts(write(tmp_path / "p.csv", "id,text,voice,speed\na,Hello,b,1.5\n,World,,\n"))
    assert [(r.id, r.text, r.voice, r.speed) for r in rows] == [("a", "Hello", "b", 1.5), ("0002", "World", None, 1.0)]


def test_headerless_single_column_and_bom(tmp_path):
    rows = read_prompts(write(tmp_path / "p.csv", b"\xef\xbb\xbfFirst prompt.\n\n\"Second, with a comma.\"\n"))
    assert [r.text for r in rows] == ["First prompt.", "Second, with a comma."]
    assert [r.id for r in rows] == ["0001", "0002"]


def test_bad_rows_are_marked_not_fatal(tmp_path):
    content = (b"id,text\nok,Fine.\nempty,\nragged\nbad\xff\xfeutf,Text\n../evil,Escape\nok,Duplicate\n"
               b"sp,Fast\n")
    parsed = read_prompts(write(tmp_path / "p.csv", content))
    rows = {r.id: r for r in parsed}
    assert rows["ok"].error is None and rows["sp"].error is None
    assert "empty text" in rows["empty"].error
    assert "columns" in rows["ragged"].error
    assert any(r.error and "invalid UTF-8" in r.error for r in rows.values())
    assert any(r.error and "safe file name" in r.error for r in rows.values())
    assert any(r.error and "duplicate id 'ok'" in r.error for r in rows.values())


@pytest.mark.parametrize("content,msg", [(b"", "empty"), (b"  \n\n", "empty"), (b"id,text\n", "no rows"),
                                         (b"a,b\nc,d\n", "without a 'text' column")])
def test_file_level_problems_are_usage_errors(tmp_path, content, msg):
    with pytest.raises(UsageError, match=msg) as e:
        read_prompts(write(tmp_path / "p.csv", content))
    assert e.value.exit_code == 2


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_prompts(tmp_path / "missing.csv")


# ---- running -----------------------------------------------------------------------------
def test_writes_audio_and_manifest(tmp_path, cache):
    csv_path = write(tmp_path / "p.csv", "id,text\none,Hello there.\ntwo,General Kenobi!\n")
    s = run_tts_batch(csv_path, opts(tmp_path, fmt="flac"), cache)
    assert (s.total, s.ok, s.failed, s.skipped) == (2, 2, 0, 0)
    m = manifest(tmp_path / "out")
    assert list(m) == ["one", "two"]
    for rid in ("one", "two"):
        row = m[rid]
        assert row["status"] == "ok" and row["file"] == f"{rid}.flac" and row["model"] == "fake:default"
        a = audio.read(tmp_path / "out" / row["file"])
        assert a.sample_rate == int(row["sample_rate"]) == 16000
        assert abs(a.duration - float(row["duration_s"])) < 0.01
    assert not list((tmp_path / "out").glob("*.part")) and not list((tmp_path / "out").glob(".*"))


def test_resume_skips_done_rows_and_force_redoes(tmp_path, cache):
    csv_path = write(tmp_path / "p.csv", "id,text\na,One.\nb,Two.\n")
    run_tts_batch(csv_path, opts(tmp_path), cache)
    FakeEngine.calls.clear()
    s = run_tts_batch(csv_path, opts(tmp_path), cache)
    assert (s.ok, s.skipped) == (0, 2) and FakeEngine.calls == []
    # a changed text, a deleted file and a truncated file are redone; the rest stays
    write(csv_path, "id,text,\na,One.\nb,Two changed.\nc,Three.\n".replace(",\n", "\n"))
    s = run_tts_batch(csv_path, opts(tmp_path), cache)
    assert (s.ok, s.skipped) == (2, 1)
    (tmp_path / "out" / "a.wav").write_bytes(b"RIFF")  # size no longer matches the manifest
    s = run_tts_batch(csv_path, opts(tmp_path), cache)
    assert (s.ok, s.skipped) == (1, 2)
    s = run_tts_batch(csv_path, opts(tmp_path, force=True), cache)
    assert (s.ok, s.skipped) == (3, 0)
    # another model or format is not "done"
    s = run_tts_batch(csv_path, opts(tmp_path, fmt="ogg"), cache)
    assert s.ok == 3


def test_bad_rows_get_manifest_rows_and_the_rest_continues(tmp_path, cache):
    content = "id,text,model,voice\ngood,Fine.,,\nempty,,,\nunknown,Hi.,nope:x,\nvoice,Hi.,,zzz\nboom,say boom,,\nlast,End.,,\n"
    s = run_tts_batch(write(tmp_path / "p.csv", content), opts(tmp_path, model="fake:fail=boom"), cache)
    m = manifest(tmp_path / "out")
    assert s.failed == 4 and s.ok == 2
    assert m["good"]["status"] == m["last"]["status"] == "ok"
    assert "empty text" in m["empty"]["error"]
    assert "unknown model" in m["unknown"]["error"]
    assert "unknown voice 'zzz'" in m["voice"]["error"]
    assert "refuses" in m["boom"]["error"]
    assert not (tmp_path / "out" / "boom.wav").exists()


def test_rows_are_batched_per_model(tmp_path, cache):
    lines = ["id,text,model"] + [f"r{i},Prompt {i}.,{'fake:max_batch=4' if i % 2 else 'fake:batching=false'}"
                                  for i in range(10)]
    run_tts_batch(write(tmp_path / "p.csv", "\n".join(lines) + "\n"), opts(tmp_path), cache)
    batched = [n for m, n in FakeEngine.calls if m == "max_batch=4"]
    single = [n for m, n in FakeEngine.calls if m == "batching=false"]
    assert batched == [4, 1] and single == [1] * 5


def test_a_failing_row_inside_a_batch_is_isolated(tmp_path, cache):
    content = "id,text\na,One.\nb,boom here\nc,Three.\n"
    s = run_tts_batch(write(tmp_path / "p.csv", content), opts(tmp_path, model="fake:fail=boom,max_batch=8"), cache)
    assert (s.ok, s.failed) == (2, 1)


def test_ctrl_c_flushes_the_manifest_and_leaves_no_partial_file(tmp_path, cache, monkeypatch):
    csv_path = write(tmp_path / "p.csv", "id,text\n" + "".join(f"r{i},Prompt {i}.\n" for i in range(6)))
    real = FakeEngine._synthesize

    def interrupt_on_fourth(self, requests):
        if len(FakeEngine.calls) == 3:
            raise KeyboardInterrupt
        return real(self, requests)

    monkeypatch.setattr(FakeEngine, "_synthesize", interrupt_on_fourth)
    with pytest.raises(BatchInterrupted) as e:
        run_tts_batch(csv_path, opts(tmp_path, model="fake:batching=false"), cache)
    assert e.value.summary.ok == 3
    m = manifest(tmp_path / "out")
    assert list(m) == ["r0", "r1", "r2"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.csv", "r0.wav", "r1.wav", "r2.wav"]
    monkeypatch.setattr(FakeEngine, "_synthesize", real)
    s = run_tts_batch(csv_path, opts(tmp_path, model="fake:batching=false"), cache)
    assert (s.skipped, s.ok) == (3, 3)


def test_unwritable_output_folder_is_a_usage_error(tmp_path, cache):
    blocker = write(tmp_path / "file", "x")
    with pytest.raises(UsageError, match="cannot write"):
        run_tts_batch(write(tmp_path / "p.csv", "text\nHi.\n"), BatchOptions(out_dir=blocker / "out"), cache)


def test_earlier_manifest_rows_not_in_this_csv_are_kept(tmp_path, cache):
    run_tts_batch(write(tmp_path / "a.csv", "id,text\nold,Old.\n"), opts(tmp_path), cache)
    run_tts_batch(write(tmp_path / "b.csv", "id,text\nnew,New.\n"), opts(tmp_path), cache)
    assert set(manifest(tmp_path / "out")) == {"old", "new"}
