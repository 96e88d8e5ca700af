"""The package's layers, read from the source: `runtime/` is below `engines/` and `scoring/` and imports
neither; `engines/` and `scoring/` do not import each other; no library module imports `commands/`; and no
two parts of the package (subpackages and top-level modules) import each other, directly or through others.
Every import counts, including those inside functions and under TYPE_CHECKING."""

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


def part(path: Path, root: Path = ROOT) -> str:
    """The part of the package a file belongs to: its subpackage, or the top-level module itself."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def package_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """{part: the other parts it imports} over the whole package."""
    parts = {part(p, root) for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in parts}
    for path in root.rglob("*.py"):
        src = part(path, root)
        for mod in imported_modules(path, root):
            bits = mod.split(".")
            if bits[0] == root.name and len(bits) > 1 and bits[1] in parts and bits[1] != src:
                graph[src].add(bits[1])
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one part (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_cycle_between_the_parts_of_the_package():
    assert cycles(package_graph()) == []


def module_graph(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """{module: the modules of the same subpackage it imports} for the top-level modules of `package`."""
    graph: dict[str, set[str]] = {}
    for path in sorted((root / package).glob("*.py")):
        graph[path.stem] = set()
        for mod in imported_modules(path, root):
            bits = mod.split(".")
            if bits[:2] == [root.name, package] and len(bits) > 2 and (root / package / f"{bits[2]}.py").is_file():
                graph[path.stem].add(bits[2])
        graph[path.stem].discard(path.stem)
    return graph


@pytest.mark.parametrize("package", ["runtime", "engines", "scoring", "bench"])
def test_no_import_circle_inside_a_layer(package):
    assert cycles(module_graph(package)) == []


def test_no_library_module_imports_the_commands():
    entry = {"commands", "__main__"}  # the CLI and `python -m audiosubnet`
    bad = sorted(p for p, deps in package_graph().items() if "commands" in deps and p not in entry)
    assert bad == []


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


def test_the_cycle_check_sees_a_cycle_through_a_third_part(tmp_path):
    root = tmp_path / "audiosubnet"
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "a" / "x.py").write_text("from audiosubnet.b import y\n")
    (root / "b" / "y.py").write_text("def f():\n    from .. import top\n")
    (root / "top.py").write_text("import audiosubnet.a.x\n")
    (root / "leaf.py").write_text("from audiosubnet import top\n")
    graph = package_graph(root)
    assert graph == {"a": {"b"}, "b": {"top"}, "top": {"a"}, "leaf": {"top"}}
    assert cycles(graph) == [["a", "b", "top"]]
