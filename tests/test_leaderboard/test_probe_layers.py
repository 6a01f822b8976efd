"""The harness's import structure (issue 35): no import circle between its modules, and every
import runs down the stages of ``leaderboard/`` (README, Layout), never back up."""

from __future__ import annotations

import ast
from pathlib import Path

import leaderboard

ROOT = Path(leaderboard.__file__).parent
#: top to bottom: a stage may import the stages below it, never one above
LAYERS = ["cli", "testing", "perf", "running", "hub", "methods", "reporting", "scoring",
          "records", "errors"]


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Every leaderboard module -> the leaderboard modules it imports (anywhere in it)."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:  # relative
                    pkg = name.split(".")[: len(name.split(".")) - node.level
                                         + (path.name == "__init__.py")]
                    base = ".".join([*pkg, node.module])
                # `from pkg import mod` imports the module; `from pkg import name`, the package
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            found |= {t for t in targets if t in modules and t != name}
        out[name] = found
    return out


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "leaderboard"


def test_no_module_imports_a_stage_above_it() -> None:
    back = []
    for module, targets in _imports().items():
        here = _stage(module)
        for t in targets:
            there = _stage(t)
            if here in LAYERS and there in LAYERS and LAYERS.index(there) < LAYERS.index(here):
                back.append(f"{module} -> {t}")
    assert back == []


def test_no_import_circle() -> None:
    graph = _imports()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_check_can_fail() -> None:
    """A back import, written out, is found (the test above is not vacuous)."""
    graph = _imports()
    assert "leaderboard.scoring.auroc" in graph["leaderboard.running.cell"]
    assert LAYERS.index(_stage("leaderboard.running.cell")) < LAYERS.index(
        _stage("leaderboard.scoring.auroc"))
