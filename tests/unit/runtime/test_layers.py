"""The package's layers, read from the source: `runtime/` is below `engines/` and `scoring/` and imports
neither; `engines/` and `scoring/` do not import each other. Every import counts, including those inside
functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import audiosubnet

ROOT = Path(audiosubnet.__file__).parent


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports, relative imports resolved to absolute names."""
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def layer_imports(layer: str, root: Path = ROOT) -> dict[str, set[str]]:
    """{file: the audiosubnet subpackages it imports} for every file of `audiosubnet/<layer>/`."""
    out = {}
    for path in sorted((root / layer).rglob("*.py")):
        mods = imported_modules(path, root)
        out[path.relative_to(root).as_posix()] = {m.split(".")[1] for m in mods
                                                  if m.startswith("audiosubnet.") and len(m.split(".")) > 1}
    return out


@pytest.mark.parametrize("layer,forbidden", [
    ("runtime", {"engines", "scoring", "commands", "miner", "validator", "jobs", "serve", "bench"}),
    ("engines", {"scoring", "commands", "miner", "validator", "jobs", "serve", "bench"}),
    ("scoring", {"engines", "commands", "miner", "validator", "jobs", "serve", "bench"}),
])
def test_a_layer_does_not_import_what_sits_on_it(layer, forbidden):
    bad = {f: sorted(pkgs & forbidden) for f, pkgs in layer_imports(layer).items() if pkgs & forbidden}
    assert bad == {}, f"{layer}/ imports {bad}"


def test_the_check_sees_nested_relative_and_type_checking_imports(tmp_path):
    root = tmp_path / "audiosubnet"
    (root / "runtime").mkdir(parents=True)
    (root / "runtime" / "probe.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from audiosubnet.scoring.base import Scorer\n"
        "def f():\n    from ..engines import registry\n    import audiosubnet.jobs.batch\n"
        "from . import cache\n")
    assert layer_imports("runtime", root) == {"runtime/probe.py": {"scoring", "engines", "jobs", "runtime"}}
