"""The shape of `clarity/`, checked from its source (AST, nothing imported but in a subprocess):

(a) only `clarity/platform/` touches the operating system directly: no other module imports or calls
    `fcntl`, `prctl`, `posix_fadvise`, `malloc_trim` or `mallopt` (by name, attribute or a ctypes lookup
    string), nor has a string literal containing "/proc";
(b) only `clarity/config/environment.py` reads the environment (`os.environ`, `os.getenv`, or `from os import` them);
(c) imports point down the floors of `FLOORS` (a module may import its own floor or lower ones), and every
    import of `clarity.*` names a module that exists;
(d) no import cycle between modules of clarity/, deferred imports inside functions included
    (`if TYPE_CHECKING:` imports excluded: they never run);
(e) clarity/ has no `testing` package, imports nothing of `tests`, and `import clarity` loads no `tests`.

Every failure names the file, the line and the rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "clarity"

# Lowest first. A module belongs to the entry with the longest matching pattern (a file, or a folder
# ending in "/"); it may import modules of its own floor or of a lower one. Floors are numbered like the
# layering they describe; 6.x: inside engines/, base.py below hybrid.py below the rest.
# Adjusted to the code: clarity/__init__.py only holds __version__ and imports nothing, and
# coordination/lease.py and mcp_server.py read __version__ from it, so it sits on floor 1, not 12.
FLOORS: list[tuple[float, tuple[str, ...]]] = [
    (1, ("clarity/errors.py", "clarity/layout.py", "clarity/values.py", "clarity/__init__.py")),
    (2, ("clarity/platform/",)),
    (3, ("clarity/timings.py", "clarity/project.py")),
    (4, ("clarity/config/", "clarity/faults.py")),
    (5, ("clarity/encoders/",)),
    (6.0, ("clarity/engines/base.py",)),
    (6.1, ("clarity/engines/hybrid.py",)),
    (6.2, ("clarity/engines/",)),
    (7, ("clarity/memory/",)),
    (8, ("clarity/coordination/",)),
    (9, ("clarity/context.py", "clarity/session_client.py", "clarity/demo.py", "clarity/capture/")),
    (10, ("clarity/mcp_context.py",)),
    (11, ("clarity/mcp_server.py", "clarity/mcp_stdio.py")),
    (12, ("clarity/cli/", "clarity/ui/", "clarity/__main__.py")),
]

OS_ONLY_NAMES = frozenset({"fcntl", "prctl", "posix_fadvise", "malloc_trim", "mallopt"})
ENV_NAMES = frozenset({"environ", "environb", "getenv", "getenvb"})
CONFIG = "clarity/config/environment.py"


@dataclass(frozen=True)
class Import:
    source: str  # clarity/x/y.py
    line: int
    target: str  # dotted module name as written and resolved (clarity.a.b), or an outside module
    deferred: bool  # inside a function
    type_only: bool  # under `if TYPE_CHECKING:`

    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Module:
    rel: str  # clarity/x/y.py
    name: str  # clarity.x.y
    tree: ast.Module


@cache
def modules() -> dict[str, Module]:
    """Every module of clarity/, by dotted name."""
    out: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(REPO).as_posix()
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        out[name] = Module(rel, name, ast.parse(path.read_text(encoding="utf-8"), filename=rel))
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, deferred: bool = False, type_only: bool = False) -> Iterator[tuple[ast.AST, bool, bool]]:
    """(node, deferred, type_only) for every node below `node`."""
    for child in ast.iter_child_nodes(node):
        child_deferred = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, deferred, type_only
            for stmt in child.body:
                yield stmt, deferred, True
                yield from _walk(stmt, deferred, True)
            for stmt in child.orelse:
                yield stmt, deferred, type_only
                yield from _walk(stmt, deferred, type_only)
            continue
        yield child, child_deferred, type_only
        yield from _walk(child, child_deferred, type_only)


def _package_of(mod: Module) -> str:
    return mod.name if mod.rel.endswith("__init__.py") else mod.name.rpartition(".")[0]


@cache
def imports() -> list[Import]:
    mods = modules()
    out: list[Import] = []
    for mod in mods.values():
        for node, deferred, type_only in _walk(mod.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    out.append(Import(mod.rel, node.lineno, alias.name, deferred, type_only))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _package_of(mod)
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    target = sub if sub in mods else module  # `from pkg import submodule` imports the submodule
                    out.append(Import(mod.rel, node.lineno, target, deferred, type_only))
    return out


def floor_of(rel: str) -> float | None:
    best: tuple[int, float] | None = None
    for floor, patterns in FLOORS:
        for pattern in patterns:
            if rel == pattern or (pattern.endswith("/") and rel.startswith(pattern)):
                if best is None or len(pattern) > best[0]:
                    best = (len(pattern), floor)
    return best[1] if best else None


def _docstrings(tree: ast.Module) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def _report(rule: str, problems: list[str]) -> str:
    def key(problem: str) -> tuple[str, int, str]:
        file, _, rest = problem.partition(":")
        line = rest.partition(":")[0]
        return file, int(line) if line.isdigit() else 0, problem

    return f"{len(problems)} violation(s) of rule {rule}:\n  " + "\n  ".join(sorted(problems, key=key))


# ---- (a) ----------------------------------------------------------------------------------------

def test_a_only_the_platform_package_touches_the_os_directly() -> None:
    problems: list[str] = []
    for mod in modules().values():
        if mod.rel.startswith("clarity/platform/"):
            continue
        docstrings = _docstrings(mod.tree)
        for node in ast.walk(mod.tree):
            line = getattr(node, "lineno", 0)
            where = f"{mod.rel}:{line}: rule (a) platform-only"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in OS_ONLY_NAMES:
                        problems.append(f"{where}: imports {alias.name}")
            elif isinstance(node, ast.ImportFrom):
                if (node.module or "").split(".")[0] in OS_ONLY_NAMES:
                    problems.append(f"{where}: imports from {node.module}")
                for alias in node.names:
                    if alias.name in OS_ONLY_NAMES:
                        problems.append(f"{where}: imports {alias.name} from {node.module}")
            elif isinstance(node, ast.Attribute) and node.attr in OS_ONLY_NAMES:
                problems.append(f"{where}: uses .{node.attr}")
            elif isinstance(node, ast.Name) and node.id in OS_ONLY_NAMES:
                problems.append(f"{where}: uses {node.id}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if node.value in OS_ONLY_NAMES:
                    problems.append(f"{where}: looks up {node.value!r} by name")
                elif "/proc" in node.value:
                    problems.append(f"{where}: string {node.value[:60]!r} reads /proc")
    assert not problems, _report("(a): OS calls outside clarity/platform/", problems)


# ---- (b) ----------------------------------------------------------------------------------------

def test_b_only_config_reads_the_environment() -> None:
    problems: list[str] = []
    for mod in modules().values():
        if mod.rel == CONFIG:
            continue
        os_names = {"os"}
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Import):
                os_names |= {a.asname for a in node.names if a.name == "os" and a.asname}
        for node in ast.walk(mod.tree):
            where = f"{mod.rel}:{getattr(node, 'lineno', 0)}: rule (b) environment"
            if isinstance(node, ast.Attribute) and node.attr in ENV_NAMES and isinstance(node.value, ast.Name) \
                    and node.value.id in os_names:
                problems.append(f"{where}: reads {node.value.id}.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module in ("os", "posix"):
                for alias in node.names:
                    if alias.name in ENV_NAMES:
                        problems.append(f"{where}: imports {alias.name} from {node.module}")
    assert not problems, _report(f"(b): the environment read outside {CONFIG}", problems)


# ---- (c) ----------------------------------------------------------------------------------------

def test_c_every_module_has_a_floor_and_every_floor_a_module() -> None:
    rels = [m.rel for m in modules().values()]
    unplaced = [f"{rel}:1: rule (c) floors: no floor in FLOORS" for rel in rels if floor_of(rel) is None]
    stale = [f"tests/test_layers.py: rule (c) floors: pattern {p!r} matches no file in clarity/"
             for _, patterns in FLOORS for p in patterns
             if not any(r == p or (p.endswith("/") and r.startswith(p)) for r in rels)]
    assert not unplaced + stale, _report("(c): floors", unplaced + stale)


def test_c_imports_point_down_the_floors() -> None:
    mods = modules()
    problems: list[str] = []
    for imp in imports():
        if imp.type_only or not (imp.target == "clarity" or imp.target.startswith("clarity.")):
            continue
        target = mods.get(imp.target)
        if target is None:
            problems.append(f"{imp.where()}: rule (c) layers: imports {imp.target}, which is no module of clarity/")
            continue
        mine, theirs = floor_of(imp.source), floor_of(target.rel)
        if mine is not None and theirs is not None and theirs > mine:
            how = "deferred import" if imp.deferred else "import"
            problems.append(f"{imp.where()}: rule (c) layers: {how} of {target.rel} (floor {theirs:g}) from floor "
                            f"{mine:g}")
    assert not problems, _report("(c): imports pointing up the layers", problems)


# ---- (d) ----------------------------------------------------------------------------------------

def _graph() -> dict[str, dict[str, Import]]:
    """module -> {imported module: the first import that makes the edge}, TYPE_CHECKING excluded."""
    mods = modules()
    by_rel = {m.rel: m.name for m in mods.values()}
    graph: dict[str, dict[str, Import]] = {name: {} for name in mods}
    for imp in imports():
        if imp.type_only or imp.target not in mods:
            continue
        source = by_rel[imp.source]
        if imp.target != source:
            graph[source].setdefault(imp.target, imp)
    return graph


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    cycles = []
    for comp in components:
        members = set(comp)
        start = comp[0]
        prev: dict[str, str] = {}
        queue = deque([start])
        found = None
        while queue and found is None:
            v = queue.popleft()
            for w in sorted(graph[v]):
                if w not in members:
                    continue
                if w == start:
                    found = v
                    break
                if w not in prev:
                    prev[w] = v
                    queue.append(w)
        path = [start]
        step = found
        while step is not None and step != start:
            path.append(step)
            step = prev.get(step)
        cycles.append([start, *reversed(path[1:]), start])
    return cycles


def test_d_no_import_cycles() -> None:
    graph = _graph()
    problems = []
    for cycle in _cycles(graph):
        steps = [f"{graph[a][b].where()} ({'deferred ' if graph[a][b].deferred else ''}import {b})"
                 for a, b in zip(cycle, cycle[1:], strict=False)]
        problems.append(f"{steps[0].split(' ')[0]}: rule (d) cycle: " + " -> ".join(cycle) + "\n      via "
                        + "\n      via ".join(steps))
    assert not problems, _report("(d): import cycles", problems)


def test_d_the_cycle_finder_finds_a_planted_cycle() -> None:
    """The check above could pass by finding nothing: a graph with a known cycle proves it looks."""
    def imp(line: int, target: str) -> Import:
        return Import("clarity/x.py", line, target, False, False)

    graph = {"a": {"b": imp(1, "b")}, "b": {"c": imp(2, "c")}, "c": {"a": imp(3, "a"), "d": imp(4, "d")},
             "d": {}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b": imp(1, "b")}, "b": {}}) == []


# ---- (e) ----------------------------------------------------------------------------------------

def test_e_no_testing_package_and_no_imports_of_tests() -> None:
    problems = [f"clarity/{name}: rule (e) testing: clarity/ has a testing package"
                for name in ("testing", "testing.py") if (PACKAGE / name).exists()]
    for imp in imports():
        if imp.target == "tests" or imp.target.startswith("tests."):
            problems.append(f"{imp.where()}: rule (e) testing: imports {imp.target}")
    assert not problems, _report("(e): test code inside clarity/", problems)


@pytest.mark.parametrize("module", ["clarity", "clarity.cli"])
def test_e_importing_clarity_loads_nothing_of_tests(module: str) -> None:
    script = (f"import sys, {module}\n"
              "print(sorted(m for m in sys.modules if m == 'tests' or m.startswith('tests.')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"rule (e) testing: `import {module}` loaded {out.stdout.strip()}"
