"""`asn score DIR --ray` on a local Ray cluster (2 CPUs) with an offline scorer that is cheap (DNSMOS on
onnxruntime): the same scores CSV and summary as the local run, copies across batches included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audiosubnet import audio
from audiosubnet.config import ScoreSettings
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.registry import EngineCache
from audiosubnet.scoring import Scoring
from audiosubnet.scoring import files as files_mod
from audiosubnet.scoring.files import score_folder

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("speechmos")

from audiosubnet.jobs.ray_runner import RayOptions  # noqa: E402
from audiosubnet.jobs.score_ray import score_folder_ray  # noqa: E402
from audiosubnet.scoring.dnsmos import DnsmosScorer  # noqa: E402

pytestmark = pytest.mark.slow

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Please remember to bring your umbrella.",
         "The library opens at nine on weekdays."]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three clips, two copies of them in later batches, a missing file, an unreadable one, a failed row."""
    cache = EngineCache(budget_bytes=None, device="cpu", dtype="float32")
    with cache.engine("piper:en_US-joe-medium") as e:
        clips = e.synthesize([SynthesisRequest(t) for t in TEXTS])
    d = tmp_path_factory.mktemp("clips")
    for i, a in enumerate(clips):
        (d / f"c{i}.wav").write_bytes(audio.encode(a, "wav"))
    shutil.copy(d / "c0.wav", d / "copy0.wav")
    shutil.copy(d / "c1.wav", d / "copy1.wav")
    (d / "junk.wav").write_bytes(b"RIFF not really audio")
    rows = [("a", "c0.wav", TEXTS[0], "ok"), ("b", "c1.wav", TEXTS[1], "ok"), ("c", "c2.wav", TEXTS[2], "ok"),
            ("d", "copy0.wav", TEXTS[0], "ok"), ("e", "missing.wav", TEXTS[1], "ok"),
            ("f", "", "", "error"), ("g", "copy1.wav", TEXTS[1], "ok"), ("h", "junk.wav", TEXTS[2], "ok")]
    (d / "manifest.csv").write_text("id,file,text,status\n" + "".join(f"{i},{f},{t},{s}\n" for i, f, t, s in rows))
    return d


def scoring(policy: str) -> Scoring:
    return Scoring(ScoreSettings(preset="offline", duplicate_policy=policy),
                   cache=EngineCache(budget_bytes=None, device="cpu", dtype="float32"), scorers=[DnsmosScorer])


@pytest.mark.parametrize("policy", ["share", "first"])
def test_ray_scores_are_the_local_scores(cluster, folder, tmp_path, monkeypatch, policy):
    monkeypatch.setattr(files_mod, "BATCH", 2)  # batches [a b] [c d] [e g] [h]: copies found across batches
    local = score_folder(folder, scoring(policy), tmp_path / "local.csv")
    ticks = []
    dist = score_folder_ray(folder, scoring(policy), tmp_path / "ray.csv", RayOptions(replicas=2),
                            progress=ticks.append)
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert dist.to_dict() == {**local.to_dict(), "scores_csv": str(tmp_path / "ray.csv")}
    assert sum(ticks) == 7 and dist.skipped == 1  # the bar: every row to score; f (status error) skipped
    r = {row.id: res for row, res in dist.results}
    assert r["a"].composite > 0 and r["a"].metrics["dnsmos_ovrl"] > 0
    assert "cannot read missing.wav" in r["e"].reason and "not decodable" in r["h"].reason
    assert r["d"].duplicate_of == "item a" and r["g"].duplicate_of == "item b"  # copies of rows an earlier batch scored
    if policy == "share":  # the copy shares the original's score (the original scored earlier, keeps its own)
        assert r["d"].composite == pytest.approx(r["a"].composite / 2) and "dnsmos_ovrl" in r["d"].metrics
    else:  # the copy scores 0 and the models never measured it
        assert r["d"].composite == 0 and "copy of an earlier answer" in r["d"].reason
        assert "dnsmos_ovrl" not in r["d"].metrics


def test_cli_ray_flag_gives_the_local_output(cluster, tmp_path):
    """The command's --ray path, on rows no model needs to see (so it is quick): the same JSON and CSV."""
    from typer.testing import CliRunner

    from audiosubnet.commands.app import app

    d = tmp_path / "dir"
    d.mkdir()
    (d / "junk.wav").write_bytes(b"RIFF not really audio")
    (d / "manifest.csv").write_text("id,file,text\nx,missing.wav,Hello.\ny,junk.wav,Hi there.\nz,,Nothing.\n")
    runs = {}
    for name, extra in (("local", []), ("ray", ["--ray", "--ray-replicas", "1"])):
        r = CliRunner().invoke(app, ["score", str(d), "--out", str(tmp_path / f"{name}.csv"), "--preset", "offline",
                                     "--json", *extra], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        runs[name] = json.loads(r.stdout)
    assert runs["ray"] == {**runs["local"], "scores_csv": str(tmp_path / "ray.csv")}
    assert runs["ray"]["scored"] == 3 and runs["ray"]["zeroed"] == 3
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    r = CliRunner().invoke(app, ["score", str(d / "junk.wav"), "--text", "Hi.", "--ray"])
    assert r.exit_code == 2 and "--ray scores a folder" in r.output and "Traceback" not in r.output


def test_a_missing_folder_file_list_is_a_usage_error_before_ray_starts(tmp_path):
    from audiosubnet.errors import UsageError

    with pytest.raises(UsageError, match="no manifest.csv"):
        score_folder_ray(Path(tmp_path), scoring("share"), ray_opts=RayOptions(address="local"))
