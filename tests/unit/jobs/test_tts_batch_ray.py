"""`asn tts batch --ray` on a local Ray cluster (2 CPUs, small object store): the same files and manifest
as the local job with the default voice, bad rows reported, and every row exactly once after a killed run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from audiosubnet.engines.registry import EngineCache
from audiosubnet.jobs.tts_batch import BatchOptions, run_tts_batch

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from audiosubnet.jobs.tts_batch_ray import RayOptions, run_tts_batch_ray  # noqa: E402

pytestmark = pytest.mark.slow

TIMING = {"elapsed_s"}


@pytest.fixture(scope="module")
def cluster():
    # two declared (not real) GPUs: the default pool is then GPU actors, one per GPU, as on a GPU cluster
    # (their engines fall back to the CPU here); tests pass gpus_per_replica=0 for the CPU-actor pool
    ray.init(num_cpus=2, num_gpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "manifest.csv"}


def test_ray_job_matches_the_local_job_with_the_default_voice(cluster, tmp_path):
    rows = ["id,text", "a,The first sentence.", "b,A second one that is a little longer than the first.", "empty,",
            "ragged", "c,Third.", "d,Four and the last."]  # ragged: too few fields (extra ones join the text)
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    local = run_tts_batch(csv_path, BatchOptions(out_dir=tmp_path / "local", seed=5, max_batch=2),
                          EngineCache(budget_bytes=None, device="cpu", dtype="float32"))
    seen = []
    dist = run_tts_batch_ray(csv_path, BatchOptions(out_dir=tmp_path / "ray", seed=5, max_batch=2),
                             progress=seen.append)  # the default pool: one actor per (declared) GPU
    assert (dist.total, dist.ok, dist.failed) == (local.total, local.ok, local.failed) == (6, 4, 2)
    assert sorted(r.id for r in seen) == sorted(["a", "b", "c", "d", "empty", "ragged"])  # progress per row
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")  # byte for byte
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in manifest(tmp_path / "local")]
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in manifest(tmp_path / "ray")] == strip
    bad = {r["id"]: r["error"] for r in manifest(tmp_path / "ray") if r["status"] == "error"}
    assert "empty text" in bad["empty"] and "columns" in bad["ragged"]
    # a rerun on Ray renders nothing and does not even need the cluster
    again = run_tts_batch_ray(csv_path, BatchOptions(out_dir=tmp_path / "ray", seed=5, max_batch=2))
    assert (again.ok, again.skipped, again.failed) == (0, 4, 2)


def test_engine_failures_inside_actors_are_reported_per_row(cluster, tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("id,text\nok1,Fine.\nbad,boom here\nok2,Also fine.\n")
    s = run_tts_batch_ray(csv_path, BatchOptions(out_dir=tmp_path / "out", model="fake:fail=boom,max_batch=8"),
                          RayOptions(replicas=1, gpus_per_replica=0))
    assert (s.ok, s.failed) == (2, 1)
    m = {r["id"]: r for r in manifest(tmp_path / "out")}
    assert "refuses" in m["bad"]["error"] and m["ok1"]["status"] == m["ok2"]["status"] == "ok"
    assert sorted(outputs(tmp_path / "out")) == ["ok1.wav", "ok2.wav"]


def test_actors_that_cannot_start_stop_the_job_with_one_line_and_the_manifest_kept(cluster, tmp_path):
    from audiosubnet.errors import EngineError

    csv_path = tmp_path / "p.csv"
    csv_path.write_text("id,text\nok,Fine.\nempty,\n")
    with pytest.raises(EngineError, match="the Ray job stopped: .*unknown dtype 'nonsense'"):
        run_tts_batch_ray(csv_path, BatchOptions(out_dir=tmp_path / "out", model="fake"),
                          RayOptions(replicas=1, gpus_per_replica=0, dtype="nonsense"))
    assert [(r["id"], r["status"]) for r in manifest(tmp_path / "out")] == [("empty", "error")]


DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import ray
    from audiosubnet.jobs.tts_batch import BatchOptions
    from audiosubnet.jobs.tts_batch_ray import RayOptions, run_tts_batch_ray
    ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
    run_tts_batch_ray(Path(sys.argv[2]), BatchOptions(out_dir=Path(sys.argv[3]), model=sys.argv[4], max_batch=1),
                      RayOptions(replicas=1))
""")


def test_a_killed_driver_resumes_and_every_row_is_done_once(cluster, tmp_path):
    n = 40
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("id,text\n" + "".join(f"r{i:02d},Prompt number {i}.\n" for i in range(n)))
    out = tmp_path / "out"
    model = "fake:delay_ms=100,batching=false"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, cluster, str(csv_path), str(out), model],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            done = [r for r in manifest(out) if r["status"] == "ok"] if (out / "manifest.csv").exists() else []
            if len(done) >= 4:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the driver dies mid-run, with rows in flight
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    recorded = {r["id"] for r in manifest(out) if r["status"] == "ok"}
    assert 4 <= len(recorded) < n
    s = run_tts_batch_ray(csv_path, BatchOptions(out_dir=out, model=model, max_batch=1),
                          RayOptions(replicas=2, gpus_per_replica=0))
    assert (s.skipped, s.ok, s.failed) == (len(recorded), n - len(recorded), 0)
    rendered_now = {r.id for r in s.rows if r.status == "ok" and not r.skipped}
    assert rendered_now.isdisjoint(recorded) and rendered_now | recorded == {f"r{i:02d}" for i in range(n)}
    ids = [r["id"] for r in manifest(out)]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == n  # each row once in the manifest
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == sorted([f"r{i:02d}.wav" for i in range(n)] + ["manifest.csv"])
    for r in manifest(out):
        assert (out / r["file"]).stat().st_size == int(r["bytes"])


def test_cli_ray_flag_runs_on_the_cluster(cluster, tmp_path):
    import json

    from typer.testing import CliRunner

    from audiosubnet.commands.app import app

    csv_path = tmp_path / "p.csv"
    csv_path.write_text("id,text\nx,Hello.\ny,\n")
    r = CliRunner().invoke(app, ["tts", "batch", str(csv_path), "--out", str(tmp_path / "out"), "--model", "fake",
                                 "--ray", "--ray-replicas", "1", "--json"], catch_exceptions=False)
    assert r.exit_code == 1, r.output  # one bad row
    summary = json.loads(r.stdout)
    assert (summary["ok"], summary["failed"]) == (1, 1)
    assert summary["manifest"] == str(tmp_path / "out" / "manifest.csv")
    assert (tmp_path / "out" / "x.wav").is_file()
