"""OutputStore: a folder or an fsspec URL, whole files only; the local job through a URL store; row seeds."""

from __future__ import annotations

import csv
import io

import pytest

from audiosubnet.engines.registry import EngineCache
from audiosubnet.errors import UsageError
from audiosubnet.jobs.storage import OutputStore, is_url
from audiosubnet.jobs.tts_batch import BatchOptions, row_seed, run_tts_batch


def test_folder_store_writes_whole_files_and_reports_sizes(tmp_path):
    store = OutputStore(tmp_path / "out")
    assert not store.remote
    store.check_writable()
    assert store.size("a.wav") is None and store.read("a.wav") is None
    store.write("a.wav", b"abc")
    assert store.size("a.wav") == 3 and store.read("a.wav") == b"abc"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav"]  # no temp left behind
    assert OutputStore(f"file://{tmp_path}/out").size("a.wav") == 3
    assert store.path("manifest.csv") == str(tmp_path / "out" / "manifest.csv")


def test_url_store_through_fsspec():
    pytest.importorskip("fsspec")
    store = OutputStore("memory://asn-test/renders/")
    assert store.remote and is_url(store.location)
    store.check_writable()
    assert store.size("x.wav") is None
    store.write("x.wav", b"12345")
    assert store.size("x.wav") == 5 and store.read("x.wav") == b"12345"
    assert store.path("x.wav") == "memory://asn-test/renders/x.wav"
    assert store.size("") is None  # the folder itself is not an output


def test_unknown_url_scheme_is_a_usage_error():
    pytest.importorskip("fsspec")
    with pytest.raises(UsageError, match="cannot open nosuchproto://"):
        OutputStore("nosuchproto://bucket/x").check_writable()


def test_the_local_job_runs_through_a_url_store_and_resumes(tmp_path):
    """The job's outputs, manifest and resume go through the store (what the Ray driver and actors use)."""
    pytest.importorskip("fsspec")
    csv_path = _write(tmp_path / "p.csv", "id,text\na,One.\nb,Two.\nc,\n")
    store = OutputStore("memory://asn-test/job")
    opts = BatchOptions(out_dir=tmp_path / "unused", model="fake")
    run_tts_batch(csv_path, opts, EngineCache(budget_bytes=None), store=store)
    manifest = list(csv.DictReader(io.StringIO(store.read("manifest.csv").decode())))
    assert [(r["id"], r["status"]) for r in manifest] == [("a", "ok"), ("b", "ok"), ("c", "error")]
    assert store.size("a.wav") == int(manifest[0]["bytes"])
    assert not (tmp_path / "unused").exists()
    s = run_tts_batch(csv_path, opts, EngineCache(budget_bytes=None), store=store)
    assert (s.ok, s.skipped, s.failed) == (0, 2, 1)


def test_row_seeds_depend_on_the_job_seed_and_the_id_only():
    assert row_seed(None, "a") is None
    assert row_seed(1, "a") == row_seed(1, "a") != row_seed(1, "b")
    assert row_seed(1, "a") != row_seed(2, "a")
    assert 0 <= row_seed(7, "x") < 2**62


def _write(p, text):
    p.write_text(text)
    return p


def test_ray_is_imported_only_when_asked_for():
    import subprocess
    import sys

    code = ("import sys, audiosubnet, audiosubnet.commands.app, audiosubnet.jobs.tts_batch, audiosubnet.jobs.storage,"
            " audiosubnet.jobs.music_batch, audiosubnet.scoring.files, audiosubnet.commands.music, audiosubnet.commands.score;"
            " print('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_a_url_without_ray_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from audiosubnet.commands.app import app

    (tmp_path / "p.csv").write_text("text\nHi.\n")
    r = CliRunner().invoke(app, ["tts", "batch", str(tmp_path / "p.csv"), "--out", "s3://bucket/x"])
    assert r.exit_code == 2 and "only the Ray job" in r.output and "Traceback" not in r.output


def test_without_ray_installed_the_flag_is_a_one_line_dependency_error(monkeypatch):
    import sys

    from audiosubnet.errors import DependencyError
    from audiosubnet.jobs.ray_runner import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what a missing package looks like to `import ray`
    with pytest.raises(DependencyError, match="needs the Python package 'ray") as e:
        import_ray()
    assert "audiosubnet[ray]" in e.value.hint


def test_the_actor_pool_is_one_replica_per_gpu_or_per_cpu():
    from audiosubnet.jobs.ray_runner import RayOptions, plan_pool

    assert plan_pool({"CPU": 64, "GPU": 8}, RayOptions()) == (8, 1.0, "auto")
    assert plan_pool({"CPU": 64, "GPU": 8}, RayOptions(device="cuda", gpus_per_replica=0.5)) == (16, 0.5, "cuda")
    assert plan_pool({"CPU": 64, "GPU": 8}, RayOptions(device="cpu")) == (64, 0.0, "cpu")
    assert plan_pool({"CPU": 6}, RayOptions()) == (6, 0.0, "cpu")
    assert plan_pool({"CPU": 6}, RayOptions(replicas=2)) == (2, 0.0, "cpu")
    assert plan_pool({}, RayOptions()) == (1, 0.0, "cpu")


def test_an_unreachable_ray_address_is_a_quick_usage_error():
    import socket

    from audiosubnet.jobs.ray_runner import check_reachable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
    with pytest.raises(UsageError, match="cannot reach the Ray cluster"):
        check_reachable(f"127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(UsageError, match="not a Ray address"):
        check_reachable("headnode")
    check_reachable("auto")  # nothing to check: Ray finds the cluster
    check_reachable(None)


def test_an_actor_renders_with_the_local_job_and_stops_on_a_full_disk(tmp_path, monkeypatch):
    """The Ray actor's renderer (no Ray needed to call it): manifest rows back, outputs written; a full
    disk ends its batch with a stop record (the driver then stops the job, as the local job stops)."""
    import errno
    import pickle

    from audiosubnet import audio
    from audiosubnet.jobs.ray_runner import _Renderer
    from audiosubnet.jobs.tts_batch import BatchOptions, TtsJob, read_prompts

    rows = read_prompts(_write(tmp_path / "p.csv", "id,text\na,One.\nb,Two.\nc,Three.\n"))
    opts = BatchOptions(out_dir=tmp_path / "out", model="fake:batching=false", seed=3)
    OutputStore(tmp_path / "out").check_writable()  # what the driver does first (it makes the folder)
    renderer = _Renderer.configured(job=TtsJob, opts=opts, location=str(tmp_path / "out"), device="cpu",
                                    dtype="float32")()

    def call(task):  # what Ray Data does: a batch of pickled tasks in, pickled results out
        return [pickle.loads(x) for x in renderer({"task": [pickle.dumps(task)]})["result"]][0]

    out = call(("fake:batching=false", rows))
    assert [(r.id, r.status, r.file) for r in out["results"]] == [("a", "ok", "a.wav"), ("b", "ok", "b.wav"),
                                                                  ("c", "ok", "c.wav")]
    assert out["stop"] is None and (tmp_path / "out" / "b.wav").stat().st_size == out["results"][1].bytes
    assert not (tmp_path / "out" / "manifest.csv").exists()  # only the driver writes the manifest

    real, n = audio.write_atomic, [0]

    def write_atomic(path, data):
        n[0] += 1
        if n[0] > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(audio, "write_atomic", write_atomic)
    out = call(("fake:batching=false", rows))
    assert [r.id for r in out["results"]] == ["a"] and "No space left" in out["stop"]
