"""The tests-only engines (the `fake` engine), registered through the entry-point group as any plugin is.

The shipped package declares no `fake` entry point: in a normal install `asn mine --model fake` is an unknown
model. The tests (and the load scripts under scripts/) need it in every process they start (engine processes,
miner workers, `python -m audiosubnet ...`, Ray workers), so `install()` writes a metadata-only distribution,
`asn-test-engines`, into this environment's site-packages: a `.dist-info` folder holding `entry_points.txt`,
and nothing else (the code is `audiosubnet.engines.fake`). `pip uninstall asn-test-engines` removes it.

Used by tests/conftest.py (at the start of every test session) and by scripts that start miners with the fake
engine; not collected by pytest (the file name does not start with `test_`).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sysconfig
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

GROUP = "audiosubnet.engines"
ENGINES = {"fake": "audiosubnet.engines.fake:FakeEngine"}
DIST = "asn_test_engines-0"

_FILES = {
    "METADATA": "Metadata-Version: 2.1\nName: asn-test-engines\nVersion: 0\n"
                "Summary: tests-only engines of asn (written by its tests; not part of the package)\n",
    "entry_points.txt": f"[{GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in ENGINES.items()),
    "INSTALLER": "asn-tests\n",
}


def installed() -> bool:
    have = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    return all(have.get(k) == v for k, v in ENGINES.items())


def install(site_packages: Path | None = None) -> bool:
    """Make the test engines entry points of this environment (idempotent; safe when two sessions race).
    Returns False when site-packages cannot be written (then only this process has them: `register()`)."""
    if installed():
        return True
    target_dir = site_packages or Path(sysconfig.get_paths()["purelib"])
    target = target_dir / f"{DIST}.dist-info"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".asn-test-engines-", dir=target_dir))
    except OSError:
        register()
        return False
    try:
        for name, text in _FILES.items():
            (tmp / name).write_text(text, encoding="utf-8")
        record = [f"{target.name}/{name},," for name in _FILES] + [f"{target.name}/RECORD,,"]
        (tmp / "RECORD").write_text("\n".join(record) + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)  # an older version of it
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not installed():  # another session may have won the race
            register()
            return False
    importlib.invalidate_caches()
    from audiosubnet.engines import registry

    registry.reload_entry_points()
    return True


def register() -> None:
    """This process only: register the test engines in the registry."""
    from audiosubnet.engines import registry
    from audiosubnet.engines.fake import FakeEngine

    registry.register(FakeEngine)
