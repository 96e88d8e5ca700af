"""The README's "local subnet in five commands", run verbatim (extracted from README.md), must end with weights."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from audiosubnet.chain.sim import SimChain

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def readme_block(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(re.escape(title) + r".*?```bash\n(.*?)```", text, re.S)
    assert m, f"README has no bash block after {title!r}"
    return m.group(1)


def test_the_readme_local_subnet_ends_with_weights(tmp_path):
    block = readme_block("### A local subnet in five commands")
    assert block.count("\n") == 5 and "asn validate" in block and "asn sim weights" in block
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASN_")}
    env.update(HOME=str(tmp_path), ASN_HOME=str(tmp_path / "asn"), HF_HUB_OFFLINE="1", ASN_NO_PROGRESS="1",
               PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    script = "set -e\n" + block + "kill %1 2>/dev/null || true\nwait || true\n"
    p = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 0, out[-4000:]
    assert "no weights set yet" not in out, out[-4000:]
    sims = list((tmp_path / "asn").rglob("sim.db"))
    assert sims, out[-2000:]
    rows = SimChain(sims[0]).weights(16)
    assert rows and any(w > 0 for w in rows[0].weights.values()), out[-4000:]
    assert re.search(r"uid \d+ at block \d+: \d+:\d\.\d{3}", out), out[-2000:]
