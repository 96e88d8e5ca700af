"""`asn clone watch` logic with real files: pairing, stability, bad inputs, collisions, batching, crashes."""

from __future__ import annotations

import json
import threading
import time

import pytest

from audiosubnet import audio as audiolib
from audiosubnet.engines.fake import FakeEngine
from audiosubnet.errors import ModelNotDownloadedError, UsageError
from audiosubnet.jobs.clone_journal import JOURNAL_NAME, Journal, LocalFS
from audiosubnet.jobs.clone_watch import CloneWatcher


def watcher(folders, cache, clock=None, fs=None, **kw) -> CloneWatcher:
    w = CloneWatcher(folders.options(**kw), cache, clock=clock, fs=fs)
    w.open()
    return w


def pending(folders) -> list[dict]:
    return Journal(folders.target / JOURNAL_NAME).pending()


# ---- the happy path --------------------------------------------------------------------------
def test_pairs_become_outputs_and_inputs_move(folders, fresh_cache, clock):
    folders.drop("a", fmt="wav")
    folders.drop("b", fmt="flac")
    folders.drop("c", fmt="ogg")
    folders.drop("d", fmt="mp3")
    FakeEngine.calls.clear()
    w = watcher(folders, fresh_cache, clock, max_batch=8)
    summary = w.run_once()
    w.close()
    assert (summary.ok, summary.failed) == (4, 0)
    assert folders.names(folders.target) == ["a.wav", "b.wav", "c.wav", "d.wav"]
    assert folders.names(folders.processed) == ["a.txt", "a.wav", "b.flac", "b.txt", "c.ogg", "c.txt",
                                                "d.mp3", "d.txt"]
    assert folders.names(folders.source) == []
    out = audiolib.read(folders.target / "a.wav")
    assert out.duration > 0.5
    assert FakeEngine.calls == [("clone=true", 4)]  # one batched engine call
    assert pending(folders) == []


def test_output_format_and_batch_size(folders, fresh_cache, clock):
    for i in range(5):
        folders.drop(f"p{i}")
    FakeEngine.calls.clear()
    w = watcher(folders, fresh_cache, clock, max_batch=2, fmt="flac")
    w.run_once()
    w.close()
    assert folders.names(folders.target) == [f"p{i}.flac" for i in range(5)]
    assert [n for _, n in FakeEngine.calls] == [2, 2, 1]


# ---- completeness ----------------------------------------------------------------------------------
def test_a_pair_waits_until_both_files_are_stable(folders, fresh_cache, clock):
    w = watcher(folders, fresh_cache, clock, settle_s=2.0)
    folders.drop("a", text=None)  # audio first
    assert w.tick() == []
    clock.advance(5)
    assert w.tick() == []  # stable, but alone: waits for its partner
    assert w.waiting == 1
    (folders.source / "a.txt").write_text("Hello")
    assert w.tick() == []  # the text just arrived
    clock.advance(1)
    with open(folders.source / "a.txt", "a") as f:  # still being written: size changes
        f.write(" world, how are you today?")
    assert w.tick() == []  # seen changing now: the settle time starts again
    clock.advance(1.9)
    assert w.tick() == []
    clock.advance(0.2)
    results = w.tick()
    w.close()
    assert [r.status for r in results] == ["ok"]
    assert folders.names(folders.processed) == ["a.txt", "a.wav"]


def test_mtime_change_alone_resets_the_settle_timer(folders, fresh_cache, clock):
    w = watcher(folders, fresh_cache, clock, settle_s=2.0)
    folders.drop("a")
    w.tick()
    clock.advance(1.5)
    p = folders.source / "a.wav"
    st = p.stat()
    import os

    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same size, new mtime
    w.tick()
    clock.advance(1.5)
    assert w.tick() == []
    clock.advance(0.6)
    assert [r.stem for r in w.tick()] == ["a"]
    w.close()


def test_hidden_temp_and_partial_names_are_ignored(folders, fresh_cache, clock):
    folders.drop("good")
    for name in (".hidden.wav", ".hidden.txt", "x.wav.part", "x.txt.part", "~y.wav", "~y.txt", "z.tmp",
                 "dl.crdownload", "notes.md", "README.md", "t.txt.swp"):
        (folders.source / name).write_bytes(b"abc")
    w = watcher(folders, fresh_cache, clock, orphan_timeout_s=0.0)
    summary = w.run_once()
    w.close()
    assert (summary.ok, summary.failed) == (1, 0)
    left = sorted(p.name for p in folders.source.iterdir())
    assert left == sorted([".hidden.wav", ".hidden.txt", "x.wav.part", "x.txt.part", "~y.wav", "~y.txt", "z.tmp",
                           "dl.crdownload", "notes.md", "README.md", "t.txt.swp"])


def test_a_file_renamed_into_place_is_picked_up(folders, fresh_cache, clock):
    """The usual safe-copy pattern: write under a temp name, rename when complete."""
    w = watcher(folders, fresh_cache, clock, settle_s=1.0)
    data = audiolib.encode(_voice(), "wav")
    (folders.source / "a.wav.part").write_bytes(data)
    (folders.source / "a.txt").write_text("Hello there")
    w.tick()
    clock.advance(2)
    assert w.tick() == []  # a.txt alone
    (folders.source / "a.wav.part").rename(folders.source / "a.wav")
    w.tick()
    clock.advance(1.1)
    assert [r.status for r in w.tick()] == ["ok"]
    w.close()


def _voice():
    import numpy as np

    t = np.arange(24000) / 16000
    return audiolib.Audio((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)


# ---- bad inputs -------------------------------------------------------------------------------------
BAD_CASES = {
    "corrupt": dict(audio=b"RIFF\x00\x00garbage" * 50),
    "empty_text": dict(text="   \n"),
    "no_utf8": dict(text="caf\xe9".encode("latin-1")),
    "huge_text": dict(text="word " * 20000),
    "many_chars": dict(text="a" * 1500),
    "too_short": dict(seconds=0.3),
    "too_long": dict(seconds=61.0),
    "silent": dict(audio=audiolib.Audio(__import__("numpy").zeros(32000, dtype="float32"), 16000)),
    "empty_audio": dict(audio=b""),
}
BAD_REASONS = {
    "corrupt": "not decodable", "empty_text": "is empty", "no_utf8": "not UTF-8", "huge_text": "bytes; the limit",
    "many_chars": "characters; the limit", "too_short": "at least", "too_long": "long; the limit",
    "silent": "silent", "empty_audio": "empty audio",
}


def test_bad_inputs_go_to_failed_with_a_reason_and_never_block_good_ones(folders, fresh_cache, clock):
    folders.drop("good1")
    for stem, kw in BAD_CASES.items():
        folders.drop(stem, **kw)
    folders.drop("good2")
    w = watcher(folders, fresh_cache, clock, max_text_bytes=64 * 1024)
    summary = w.run_once()
    w.close()
    assert summary.ok == 2 and summary.failed == len(BAD_CASES)
    assert folders.names(folders.target) == ["good1.wav", "good2.wav"]
    assert folders.names(folders.source) == []
    failed = set(folders.names(folders.failed))
    for stem, needle in BAD_REASONS.items():
        assert {f"{stem}.wav", f"{stem}.txt", f"{stem}.error.txt"} <= failed, stem
        reason = (folders.failed / f"{stem}.error.txt").read_text()
        assert needle in reason, (stem, reason)
    assert pending(folders) == []


def test_orphans_fail_after_the_timeout_not_before(folders, fresh_cache, clock):
    w = watcher(folders, fresh_cache, clock, settle_s=1.0, orphan_timeout_s=60.0)
    folders.drop("lonely_audio", text=None)
    folders.drop("lonely_text", with_audio=False)
    w.tick()
    clock.advance(30)
    assert w.tick() == []
    clock.advance(31)
    results = w.tick()
    w.close()
    assert sorted((r.stem, r.status) for r in results) == [("lonely_audio", "failed"), ("lonely_text", "failed")]
    assert "lonely_audio.txt did not arrive" in (folders.failed / "lonely_audio.error.txt").read_text()
    assert "an audio file" in (folders.failed / "lonely_text.error.txt").read_text()
    assert folders.names(folders.failed) == ["lonely_audio.error.txt", "lonely_audio.wav", "lonely_text.error.txt",
                                             "lonely_text.txt"]


def test_two_audio_files_for_one_stem_fail_together(folders, fresh_cache, clock):
    folders.drop("dup", fmt="wav")
    folders.drop("dup", fmt="flac")
    folders.drop("fine")
    w = watcher(folders, fresh_cache, clock)
    summary = w.run_once()
    w.close()
    assert (summary.ok, summary.failed) == (1, 1)
    assert folders.names(folders.failed) == ["dup.error.txt", "dup.flac", "dup.txt", "dup.wav"]
    assert "several files" in (folders.failed / "dup.error.txt").read_text()


@pytest.mark.parametrize("word, option, message", [
    ("boom", "fail=boom", "boom"),  # a typed engine error (InputError)
    ("oom", "error=oom", "out of memory"),  # an untyped RuntimeError('CUDA error: out of memory')
])
def test_an_engine_error_on_one_pair_fails_that_pair_alone(folders, fresh_cache, clock, word, option, message):
    """The batch policy of audiosubnet/batch_policy.py: the other pairs of the batch are written."""
    folders.drop("a", text="fine words")
    folders.drop("b", text=f"this one says {word}")
    folders.drop("c", text="more fine words")
    w = watcher(folders, fresh_cache, clock, model=f"fake:clone=true,{option}")
    summary = w.run_once()
    w.close()
    assert (summary.ok, summary.failed) == (2, 1)
    assert folders.names(folders.target) == ["a.wav", "c.wav"]
    assert message in (folders.failed / "b.error.txt").read_text()
    assert pending(folders) == []


def test_a_model_that_cannot_load_stops_the_watcher_and_touches_nothing(folders, fresh_cache, clock):
    folders.drop("a")

    class NotDownloaded(FakeEngine):
        name = "notdl"

        def setup(self, device="cpu", dtype="float32"):
            raise ModelNotDownloadedError("notdl:x")

    from audiosubnet.engines import registry

    registry.register(NotDownloaded)
    try:
        w = watcher(folders, fresh_cache, clock, model="notdl:clone=true")
        with pytest.raises(ModelNotDownloadedError):
            w.run_once()
        w.close()
    finally:
        registry.unregister("notdl")
    assert folders.names(folders.source) == ["a.txt", "a.wav"]
    assert folders.names(folders.failed) == []
    assert pending(folders) == []


# ---- collisions ---------------------------------------------------------------------------------
def test_name_collisions_get_a_suffix_never_an_overwrite(folders, fresh_cache, clock):
    folders.processed.mkdir()
    folders.target.mkdir()
    folders.failed.mkdir()
    (folders.processed / "a.wav").write_bytes(b"old processed audio")
    (folders.processed / "a-1.txt").write_bytes(b"old processed text")  # a-1 is taken for one of the pair
    (folders.target / "a.wav").write_bytes(b"old output")
    (folders.failed / "bad.error.txt").write_bytes(b"old error")
    folders.drop("a")
    folders.drop("bad", text="")
    w = watcher(folders, fresh_cache, clock)
    w.run_once()
    w.close()
    assert (folders.target / "a.wav").read_bytes() == b"old output"
    assert audiolib.read(folders.target / "a-1.wav").duration > 0
    assert (folders.processed / "a.wav").read_bytes() == b"old processed audio"
    assert (folders.processed / "a-1.txt").read_bytes() == b"old processed text"
    assert {"a-2.wav", "a-2.txt"} <= set(folders.names(folders.processed))  # the pair keeps matching names
    assert (folders.failed / "bad.error.txt").read_bytes() == b"old error"
    assert {"bad-1.wav", "bad-1.txt", "bad-1.error.txt"} <= set(folders.names(folders.failed))


def test_the_same_stem_dropped_twice_gives_two_outputs(folders, fresh_cache, clock):
    w = watcher(folders, fresh_cache, clock)
    folders.drop("again", text="first time")
    w.run_once()
    folders.drop("again", text="second time")
    w.run_once()
    w.close()
    assert folders.names(folders.target) == ["again-1.wav", "again.wav"]
    assert folders.names(folders.processed) == ["again-1.txt", "again-1.wav", "again.txt", "again.wav"]


# ---- crash safety -----------------------------------------------------------------------------------
class Killed(BaseException):
    """A kill -9 stand-in: not an Exception, so nothing in the watcher catches it."""


class CrashingFS(LocalFS):
    """Dies at the n-th filesystem or journal step; `torn` leaves half a link or half a journal line."""

    def __init__(self, die_at: int):
        self.die_at = die_at
        self.step = 0

    def _tick(self):
        self.step += 1
        if self.step == self.die_at:
            raise Killed(self.step)

    def write_atomic(self, path, data):
        self._tick()
        super().write_atomic(path, data)
        self._tick()

    def move(self, src, dst):
        import os

        self._tick()
        os.link(src, dst)
        self._tick()  # dies with both names present
        os.unlink(src)


def crashing_journal(journal: Journal, fs: CrashingFS):
    real = journal.append

    def append(*records):
        fs.step += 1
        if fs.step == fs.die_at:  # torn: half a line, no newline
            with open(journal.path, "ab") as f:
                f.write(json.dumps(records[0]).encode()[:20])
            raise Killed(fs.step)
        real(*records)

    journal.append = append


def check_exactly_once(folders, stems, bad_stems=()):
    targets = folders.names(folders.target)
    assert targets == sorted(f"{s}.wav" for s in stems), targets
    for name in targets:
        assert audiolib.read(folders.target / name).duration > 0
    assert folders.names(folders.processed) == sorted([f"{s}.wav" for s in stems] + [f"{s}.txt" for s in stems])
    assert folders.names(folders.source) == []
    assert folders.names(folders.failed) == sorted(
        f"{s}.{x}" for s in bad_stems for x in ("wav", "txt", "error.txt"))
    hidden = [p.name for d in (folders.target, folders.processed, folders.failed) for p in d.iterdir()
              if p.name.startswith(".") and not p.name.startswith(".asn-clone")]
    assert hidden == []  # no temp files left behind
    assert pending(folders) == []


@pytest.mark.parametrize("die_at", range(1, 33))
def test_a_kill_at_any_step_then_a_restart_gives_exactly_one_output_per_pair(die_at, folders, fresh_cache, clock):
    stems = ["p0", "p1", "p2"]
    for s in stems:
        folders.drop(s)
    folders.drop("bad", text="")
    fs = CrashingFS(die_at)
    w = CloneWatcher(folders.options(max_batch=2), fresh_cache, clock=clock, fs=fs)
    w.open()
    crashing_journal(w.journal, fs)
    try:
        w.run_once()
        died = False
    except Killed:
        died = True
    w._lock.release()  # the OS does this for a killed process
    if die_at <= 31:  # 31 steps in all for this input (32: no kill)
        assert died, f"only {fs.step} steps: lower the range"
    w2 = watcher(folders, fresh_cache, clock)  # restart: recover, then process what is left
    w2.run_once()
    w2.close()
    check_exactly_once(folders, stems, bad_stems=["bad"])


def test_recovery_finishes_a_pair_whose_output_was_written(folders, fresh_cache, clock):
    folders.drop("a")
    fs = CrashingFS(die_at=0)
    w = watcher(folders, fresh_cache, clock, fs=fs)
    real_move = fs.move

    def die_on_move(src, dst):
        raise Killed("after the output, before the moves")

    fs.move = die_on_move
    with pytest.raises(Killed):
        w.run_once()
    w._lock.release()
    assert folders.names(folders.target) == ["a.wav"] and folders.names(folders.source) == ["a.txt", "a.wav"]
    fs.move = real_move
    w2 = watcher(folders, fresh_cache, clock)
    assert w2.summary.recovered == 1
    assert w2.run_once().ok == 0  # nothing left to clone: the output is not made twice
    w2.close()
    check_exactly_once(folders, ["a"])


def test_a_second_watcher_on_the_same_target_is_refused(folders, fresh_cache, clock):
    w = watcher(folders, fresh_cache, clock)
    with pytest.raises(UsageError, match="already"):
        watcher(folders, fresh_cache, clock)
    w.close()
    watcher(folders, fresh_cache, clock).close()  # free again


def test_a_missing_source_folder_is_a_usage_error(tmp_path, fresh_cache):
    from audiosubnet.jobs.clone_watch import WatchOptions

    opts = WatchOptions(source=tmp_path / "nope", target=tmp_path / "t", processed=tmp_path / "p",
                        failed=tmp_path / "f", model="fake:clone=true")
    with pytest.raises(UsageError, match="does not exist"):
        CloneWatcher(opts, fresh_cache).open()


def test_journal_ignores_a_torn_line_and_compacts(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append({"op": "begin", "id": "1"}, {"op": "begin", "id": "2"})
    j.append({"op": "done", "id": "1"})
    with open(j.path, "ab") as f:
        f.write(b'{"op": "done", "i')
    assert [r["id"] for r in j.pending()] == ["2"]
    j.compact()
    assert [json.loads(x)["id"] for x in j.path.read_text().splitlines()] == ["2"]


# ---- watching (events and polling) -------------------------------------------------------------------
@pytest.mark.parametrize("use_watchdog", [True, False], ids=["inotify", "polling"])
def test_watch_mode_picks_up_pairs_dropped_later(use_watchdog, folders, fresh_cache):
    w = CloneWatcher(folders.options(settle_s=0.3, poll_s=0.2, use_watchdog=use_watchdog), fresh_cache)
    w.open()
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    try:
        time.sleep(0.3)
        if use_watchdog:
            assert w._observer is not None
        folders.drop("late")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (folders.target / "late.wav").exists():
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(5)
        w.close()
    assert folders.names(folders.target) == ["late.wav"]
    assert folders.names(folders.processed) == ["late.txt", "late.wav"]


# ---- files we cannot move or read ----------------------------------------------------------------
class NoMoveFS(LocalFS):
    def __init__(self, deny: str):
        self.deny = deny

    def move(self, src, dst):
        if src.name == self.deny:
            raise PermissionError(13, "Permission denied", str(src))
        super().move(src, dst)


def test_inputs_that_cannot_be_moved_are_left_alone_and_never_cloned_twice(folders, fresh_cache, clock):
    folders.drop("a")
    folders.drop("b")
    w = watcher(folders, fresh_cache, clock, fs=NoMoveFS("a.wav"))
    first = w.run_once()
    assert first.ok == 2  # a was cloned, its inputs are stuck in the source folder
    assert folders.names(folders.source) == ["a.txt", "a.wav"]
    clock.advance(10)
    assert w.tick() == []  # not picked up again
    w.close()
    w2 = watcher(folders, fresh_cache, clock, fs=NoMoveFS("a.wav"))  # restart: recovery fails, start goes on
    assert w2.run_once().ok == 0
    w2.close()
    assert folders.names(folders.target) == ["a.wav", "b.wav"]
    w3 = watcher(folders, fresh_cache, clock)  # permissions fixed: the restart finishes the move
    assert w3.run_once().ok == 0
    w3.close()
    check_exactly_once(folders, ["a", "b"])


def test_an_unreadable_file_fails_with_a_reason(folders, fresh_cache, clock):
    class NoReadFS(LocalFS):
        def read_bytes(self, path, limit=None):
            if path.name == "locked.txt":
                raise PermissionError(13, "Permission denied", str(path))
            return super().read_bytes(path, limit)

    folders.drop("locked")
    folders.drop("fine")
    w = watcher(folders, fresh_cache, clock, fs=NoReadFS())
    s = w.run_once()
    w.close()
    assert (s.ok, s.failed) == (1, 1)
    assert "cannot read locked.txt: Permission denied" in (folders.failed / "locked.error.txt").read_text()


def test_falls_back_to_polling_when_file_events_fail(folders, fresh_cache, monkeypatch):
    import watchdog.observers

    class Broken:
        daemon = True

        def schedule(self, *a, **k):
            pass

        def start(self):
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", Broken)
    w = CloneWatcher(folders.options(settle_s=0.2, poll_s=0.1, use_watchdog=True), fresh_cache)
    w.open()
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    try:
        folders.drop("polled")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (folders.target / "polled.wav").exists():
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(5)
        w.close()
    assert w._observer is None
    assert folders.names(folders.target) == ["polled.wav"]


def test_suffixed_names_do_not_collide_within_a_batch(folders, fresh_cache, clock):
    folders.target.mkdir()
    (folders.target / "a.wav").write_bytes(b"earlier output")
    folders.drop("a", text="pair a")
    folders.drop("a-1", text="pair a-1, a longer text")
    w = watcher(folders, fresh_cache, clock, max_batch=8)
    assert w.run_once().ok == 2
    w.close()
    outs = folders.names(folders.target)
    assert len(outs) == 3 and (folders.target / "a.wav").read_bytes() == b"earlier output"
    assert len({audiolib.read(folders.target / n).duration for n in outs if n != "a.wav"}) == 2
