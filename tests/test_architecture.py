"""The import structure of ``mmfuse`` (docs/architecture.md): no cycles between modules or rooms, and every
import goes down the layers. Imports are read from the source (module level and inside functions), so a
lazy import cannot hide a wrong-way door."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "mmfuse"

# Each module's room: the longest matching prefix wins.
ROOM_OF = {
    "mmfuse": "api",
    "mmfuse.errors": "errors", "mmfuse.layers": "layers", "mmfuse.registry": "registry", "mmfuse.utils": "utils",
    "mmfuse.checkpoints": "checkpoints", "mmfuse.cli": "cli", "mmfuse.random_state": "random_state",
    "mmfuse.metrics": "metrics", "mmfuse.viz": "viz", "mmfuse.objectives": "objectives",
    "mmfuse.encoders": "encoders", "mmfuse.fusion": "fusion", "mmfuse.heads": "heads", "mmfuse.model": "model",
    "mmfuse.rl": "rl", "mmfuse.data": "data", "mmfuse.tasks": "tasks",
    "mmfuse.config": "config", "mmfuse.config_checks": "config", "mmfuse.config_ranges": "config",
    "mmfuse.systems": "systems", "mmfuse.callbacks": "callbacks",
    "mmfuse.evaluation": "evaluation", "mmfuse.runner": "runner",
    "mmfuse.training": "entry", "mmfuse.crossval": "entry", "mmfuse.prepare": "entry", "mmfuse.evaluation.run": "entry",
    "mmfuse.evaluation.pareto": "entry", "mmfuse.evaluation.interpolate": "entry",
}
FOUNDATION = {"errors", "layers", "registry", "utils", "checkpoints", "random_state"}
# The rooms each room may import (besides itself): downward only.
ALLOWED: dict[str, set[str]] = {
    "errors": set(), "layers": set(), "utils": set(), "registry": {"errors"}, "random_state": set(),
    "checkpoints": {"errors"}, "cli": {"errors"},
    "metrics": {"errors"},
    "viz": {"errors", "utils"},
    "objectives": FOUNDATION,
    "encoders": FOUNDATION,
    "fusion": FOUNDATION | {"encoders"},
    "heads": FOUNDATION | {"fusion"},
    "model": FOUNDATION | {"encoders", "fusion", "heads"},
    "rl": FOUNDATION | {"metrics", "fusion", "heads"},
    "data": FOUNDATION | {"metrics"},
    "tasks": FOUNDATION | {"metrics", "objectives", "heads", "fusion", "data"},
    "config": FOUNDATION | {"metrics", "objectives", "encoders", "fusion", "heads", "rl", "data", "tasks"},
    "systems": FOUNDATION | {"metrics", "objectives", "encoders", "fusion", "heads", "model", "rl", "tasks", "config"},
    "callbacks": FOUNDATION,
    "evaluation": FOUNDATION | {"metrics", "viz", "data", "config"},
    "runner": FOUNDATION | {"data", "config", "systems", "callbacks"},
    "entry": FOUNDATION | {"metrics", "viz", "objectives", "model", "rl", "data", "tasks", "config", "systems",
                           "callbacks", "evaluation", "runner", "entry"},
    "api": set(),  # mmfuse/__init__.py exports lazily (importlib): nothing inside mmfuse imports the package root
}
# What the issue forbids by name, checked on its own so the table above cannot quietly relax it.
MODEL_PARTS = {"layers", "encoders", "fusion", "heads", "model"}
NEVER_FROM_MODEL = {"data", "systems", "runner", "entry", "api"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def room(module: str) -> str:
    best = max((p for p in ROOM_OF if module == p or module.startswith(p + ".")), key=len)
    return ROOM_OF[best]


def imports_of(module: str) -> list[tuple[str, int]]:
    """``(imported mmfuse module, line)`` for every import statement of ``module``, wherever it stands.

    ``from X import Y`` counts as importing ``X.Y`` when that is a module, else ``X``; importing ``a.b.c``
    from outside package ``a.b`` also runs ``a.b``'s ``__init__`` first, which counts as importing it."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            if target != "mmfuse" and not target.startswith("mmfuse."):
                continue
            found.append((target, node.lineno))
            parts = target.split(".")
            for i in range(2, len(parts)):  # the packages above the target, except the lazy root
                parent = ".".join(parts[:i])
                if parent in MODULES and not (module == parent or module.startswith(parent + ".")):
                    found.append((parent, node.lineno))
    return found


GRAPH = {m: sorted({t for t, _ in imports_of(m) if t in MODULES and t != m}) for m in MODULES}


def find_cycle(graph: dict[str, Iterable[str]]) -> list[str]:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or [] (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop(0)
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return []


def test_the_walk_sees_the_package() -> None:
    """The walker finds the modules and their imports (a walk that saw nothing would pass every check)."""
    assert {"mmfuse.layers", "mmfuse.fusion.cross_attention", "mmfuse.training", "mmfuse.runner"} <= set(MODULES)
    assert "mmfuse.layers" in GRAPH["mmfuse.fusion.cross_attention"]
    assert "mmfuse.encoders" in GRAPH["mmfuse.fusion.base"]  # the package __init__ runs first
    assert "mmfuse.config_checks" in GRAPH["mmfuse.config"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a"]}) == []


def test_no_module_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_room_import_cycle() -> None:
    rooms: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        rooms.setdefault(room(m), set()).update(room(t) for t in targets if room(t) != room(m))
    cycle = find_cycle(rooms)
    assert not cycle, "rooms import each other: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str) -> None:
    mine = room(module)
    wrong = [f"line {line}: {target} ({room(target)})" for target, line in imports_of(module)
             if room(target) != mine and room(target) not in ALLOWED[mine]]
    assert not wrong, f"{module} ({mine}) may import only {sorted(ALLOWED[mine])}; it imports " + "; ".join(wrong)


def test_model_parts_never_import_data_systems_or_entry_points() -> None:
    for m in MODULES:
        if room(m) in MODEL_PARTS:
            bad = [t for t, _ in imports_of(m) if room(t) in NEVER_FROM_MODEL]
            assert not bad, f"{m} imports {bad}"
    assert not imports_of("mmfuse.layers"), "mmfuse.layers must import no other mmfuse module"
    assert not imports_of("mmfuse.errors"), "mmfuse.errors must import no other mmfuse module"


def test_every_module_has_a_room() -> None:
    assert set(ALLOWED) == set(ROOM_OF.values())
    for m in MODULES:
        assert room(m) in ALLOWED


def test_ci_runs_the_readme_test_command() -> None:
    """``.ci/run`` runs README command 2 step by step, so the checks a user runs are the checks CI runs."""
    repo = ROOT.parent
    readme = (repo / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith('pip install -e ".[dev]"'))
    steps = [s.strip() for s in command.split("&&")]
    ci = [line.strip() for line in (repo / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert ci == steps and {"ruff check .", "mypy"} <= set(steps)
