"""Repository-level checks: lint, the README's two commands, CI running the second."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff not installed")
    r = subprocess.run([ruff, "check", "audiosubnet", "tests", "scripts"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_readme_starts_with_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    first, second = blocks[0].strip(), blocks[1].strip()
    assert "asn tts batch tts_source/tts_prompts.csv" in first and "\n" not in first
    assert "pytest" in second and "torch==2.13.0" in second and "\n" not in second
    assert second in (ROOT / ".ci" / "run").read_text()
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    assert not any(d.startswith("torchaudio") for d in deps)
    assert not any(d.split(";")[0].strip() == "torch" for d in deps), "a bare torch requirement pulls CUDA wheels"


def test_import_audiosubnet_does_not_import_torch():
    code = "import sys, audiosubnet, audiosubnet.commands.app; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_sample_prompts_are_varied_enough():
    from audiosubnet.jobs.tts_batch import read_prompts

    rows = read_prompts(ROOT / "tts_source" / "tts_prompts.csv")
    texts = [r.text for r in rows]
    assert len(rows) >= 20 and not any(r.error for r in rows)
    assert any(len(t) >= 230 for t in texts)
    assert any(ch in "".join(texts) for ch in "“”‘’")
    assert any(re.search(r"\d", t) for t in texts) and any("." in t.split()[0] for t in texts if t.split())


def test_working_folders_are_kept_and_outputs_ignored():
    for d in ("tts_source", "tts_target", "vc_source", "vc_target", "vc_processed", "music_source", "music_target"):
        assert (ROOT / d).is_dir()
    r = subprocess.run(["git", "check-ignore", "-q", "tts_target/x.wav"], cwd=ROOT)
    assert r.returncode == 0
    r = subprocess.run(["git", "check-ignore", "-q", "music_target/x.wav"], cwd=ROOT)
    assert r.returncode == 0
