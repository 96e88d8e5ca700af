"""For the scripts that start `asn` processes with the fake engine (tests-only): make it an entry point of this
environment as the tests do (tests/asn_test_engines.py), so the processes they start find it too."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def install() -> None:
    path = Path(__file__).resolve().parents[1] / "tests" / "asn_test_engines.py"
    spec = importlib.util.spec_from_file_location("asn_test_engines", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install()
