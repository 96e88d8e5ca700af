"""`asn music batch --ray` on a local Ray cluster (2 CPUs) with a tiny random MusicGen: the same files and
manifest as the local job (bad rows reported the same way), and a partial run resumed: every row once."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from audiosubnet.engines.registry import EngineCache
from audiosubnet.jobs.music_batch import MusicBatchOptions, run_music_batch, run_music_batch_ray

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from audiosubnet.jobs.ray_runner import RayOptions  # noqa: E402

pytestmark = pytest.mark.slow

CSV = ("id,prompt,duration,seed\nlofi,lo-fi beat with soft piano,0.6,1\nedm,upbeat dance track,0.5,2\n"
       "bad,too long,45,\nshort,smooth jazz trio,0.4,\namb,ambient pads,0.5,\n")  # short: the engine refuses it


def manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def untimed(out: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in manifest(out)]


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "manifest.csv"}


def test_ray_music_job_matches_the_local_job_and_resumes_a_partial_run(cluster, tmp_path, tiny_musicgen):
    src = tmp_path / "prompts.csv"
    src.write_text(CSV)
    model = f"musicgen:{tiny_musicgen}"
    local = run_music_batch(src, MusicBatchOptions(out_dir=tmp_path / "local", model=model, max_batch=2),
                            EngineCache(budget_bytes=None, device="cpu", dtype="float32"))
    seen = []
    opts = MusicBatchOptions(out_dir=tmp_path / "ray", model=model, max_batch=2)
    dist = run_music_batch_ray(src, opts, RayOptions(replicas=2, device="cpu"), progress=seen.append)
    assert (dist.total, dist.ok, dist.failed) == (local.total, local.ok, local.failed) == (5, 3, 2)
    assert sorted(r.id for r in seen) == ["amb", "bad", "edm", "lofi", "short"]  # the bar moves per row
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")  # byte for byte
    assert untimed(tmp_path / "ray") == untimed(tmp_path / "local")
    bad = {r["id"]: r["error"] for r in manifest(tmp_path / "ray") if r["status"] == "error"}
    assert "45 is outside" in bad["bad"] and "0.4 s is outside" in bad["short"]  # read in the driver, in an actor

    # a partial run: the driver died after an actor wrote edm.wav but before the manifest recorded it, and
    # amb.wav was lost. The rerun (the command, on the same cluster) renders those two and skips the rest, as
    # the local job does from the same state (compared with it: a batch's floating point depends on its rows)
    shutil.copytree(tmp_path / "local", tmp_path / "local2")
    for out in (opts.out_dir, tmp_path / "local2"):
        rows = [r for r in manifest(out) if r["id"] != "edm"]
        with (out / "manifest.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (out / "amb.wav").unlink()
    before = (opts.out_dir / "lofi.wav").stat().st_mtime_ns
    resumed = run_music_batch(src, MusicBatchOptions(out_dir=tmp_path / "local2", model=model, max_batch=2),
                              EngineCache(budget_bytes=None, device="cpu", dtype="float32"))

    from typer.testing import CliRunner

    from audiosubnet.commands.app import app

    r = CliRunner().invoke(app, ["music", "batch", str(src), "--out", str(opts.out_dir), "--model", model,
                                 "--max-batch", "2", "--device", "cpu", "--ray", "--ray-replicas", "1", "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 1, r.output  # the bad rows
    again = json.loads(r.stdout)
    assert (again["ok"], again["skipped"], again["failed"]) == (2, 1, 2)
    assert sorted(x["id"] for x in again["rows"] if x["status"] == "ok" and not x["skipped"]) == ["amb", "edm"]
    assert (opts.out_dir / "lofi.wav").stat().st_mtime_ns == before  # not rendered again
    assert (resumed.ok, resumed.skipped, resumed.failed) == (2, 1, 2)
    assert outputs(opts.out_dir) == outputs(tmp_path / "local2")  # every row once, the same bytes
    assert untimed(opts.out_dir) == untimed(tmp_path / "local2")


def test_a_url_without_ray_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from audiosubnet.commands.app import app

    (tmp_path / "p.csv").write_text("prompt\nlo-fi beat\n")
    r = CliRunner().invoke(app, ["music", "batch", str(tmp_path / "p.csv"), "--out", "s3://bucket/x"])
    assert r.exit_code == 2 and "only the Ray job" in r.output and "Traceback" not in r.output
