"""The type checker is part of the suite: `mypy` (configured in pyproject.toml, `[tool.mypy]`) reports no error
on the package. Its incremental cache (`.mypy_cache/`, git-ignored) makes a re-run take seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mypy_reports_no_errors():
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-color-output", "--no-error-summary"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert proc.returncode == 0 and not errors, (
        f"mypy found {len(errors)} error(s) (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def test_the_whole_package_is_checked_strictly():
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    strict = [o for o in cfg["overrides"] if o.get("disallow_untyped_defs")]
    assert strict and {"audiosubnet", "audiosubnet.*"} <= set(strict[0]["module"])
    flags = ("disallow_untyped_defs", "disallow_incomplete_defs", "disallow_untyped_calls",
             "disallow_any_generics", "warn_return_any", "no_implicit_reexport", "strict_equality")
    assert all(strict[0].get(f) is True for f in flags)
    loose = [o for o in cfg["overrides"] if any(str(m).startswith("audiosubnet") for m in o["module"])
             and any(o.get(f) is False for f in (*flags, "check_untyped_defs"))]
    assert not loose, loose  # no module of ours opted out
