"""`asn clone watch` never clones a file that is still being copied, even when the copy stalls for longer
than the settle time: the WAV's declared data length (or, for other formats, a decode of the whole declared
length) must be there."""

from __future__ import annotations

import pytest

from audiosubnet import audio as audiolib
from audiosubnet.jobs.clone_watch import CloneWatcher


def watcher(folders, cache, clock, **kw):
    w = CloneWatcher(folders.options(**kw), cache, clock=clock)
    w.open()
    return w


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_copy_that_stalls_past_the_settle_time_waits_for_the_rest(folders, fresh_cache, clock, make_voice, fmt):
    data = audiolib.encode(make_voice(3.0), fmt)
    assert audiolib.incomplete(data) is None
    cut = len(data) // 3
    assert audiolib.incomplete(data[:cut]) is not None
    w = watcher(folders, fresh_cache, clock, settle_s=2.0)
    (folders.source / "a.txt").write_text("Hello from a slow copy.")
    (folders.source / f"a.{fmt}").write_bytes(data[:cut])  # a third of it, then the copy stalls
    for _ in range(4):  # 6 s of stall: size and mtime unchanged for three settle times
        assert w.tick() == []
        clock.advance(2.0)
    assert w.tick() == []
    assert folders.names(folders.target) == [] and folders.names(folders.failed) == []
    assert folders.names(folders.source) == sorted(["a.txt", f"a.{fmt}"]) and w.waiting >= 1

    with open(folders.source / f"a.{fmt}", "ab") as f:  # the copy resumes and finishes
        f.write(data[cut:])
    assert w.tick() == []
    clock.advance(2.1)
    results = w.tick()
    w.close()
    assert [r.status for r in results] == ["ok"]
    assert folders.names(folders.processed) == sorted(["a.txt", f"a.{fmt}"])
    assert (folders.processed / f"a.{fmt}").read_bytes() == data


def test_a_file_cut_short_for_good_fails_after_the_orphan_timeout(folders, fresh_cache, clock, make_voice):
    data = audiolib.encode(make_voice(3.0), "wav")
    w = watcher(folders, fresh_cache, clock, settle_s=1.0, orphan_timeout_s=30.0)
    (folders.source / "cut.txt").write_text("Hello.")
    (folders.source / "cut.wav").write_bytes(data[: len(data) // 2])
    results = []
    for _ in range(40):
        results += w.tick()
        clock.advance(1.0)
    w.close()
    assert [(r.stem, r.status) for r in results] == [("cut", "failed")]
    assert "incomplete" in results[0].reason and "declares" in results[0].reason
    assert "cut.wav" in folders.names(folders.failed)


def test_streamed_wavs_with_unset_sizes_are_not_held_back(make_voice):
    data = bytearray(audiolib.encode(make_voice(1.0), "wav"))
    data[4:8] = b"\xff\xff\xff\xff"
    data[40:44] = b"\xff\xff\xff\xff"  # what a recorder writes before it knows the length
    assert audiolib.incomplete(bytes(data)) is None
