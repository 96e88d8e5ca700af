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
