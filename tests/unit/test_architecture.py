"""The shape of the package: no import cycles, and the tools start without the manager."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nowcastkit"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each nowcastkit module and the nowcastkit modules it imports, type-checking ones too."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):  # nowcastkit uses no relative imports
                base = node.module or ""
                # ``from pkg import mod`` imports the module pkg.mod; ``from mod import x``, mod.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each set of modules that import one another, directly or round a loop (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("tool", ["nowcastkit.cli", "nowcastkit.scheduler", "nowcastkit.control"])
def test_the_tools_start_without_importing_the_manager(tool):
    check = (
        f"import sys, {tool}\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('nowcastkit.manager'))\n"
        "print(' '.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.split() == []


def imported_by(path: Path) -> set[str]:
    """The top-level names of every module *path* imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.partition(".")[0])
    return found


def test_deciding_touches_no_socket_store_process_file_or_clock():
    effects = {"zmq", "sqlite3", "subprocess", "os", "socket", "time", "signal", "shutil", "io"}
    assert imported_by(PACKAGE / "manager" / "decide.py") & effects == set()
    assert imported_by(PACKAGE / "race.py") & effects == set()


@pytest.mark.parametrize("module", ["ssh.py", "slurm.py", "hosts.py"])
def test_what_is_asked_of_other_hosts_is_built_and_read_without_running_anything(module):
    """The remote lines and their parsers are values; only the launchers run them."""
    effects = {"zmq", "sqlite3", "subprocess", "os", "socket", "time", "signal", "shutil"}
    assert imported_by(PACKAGE / module) & effects == set()


def test_only_the_manager_process_holds_the_whole_manager():
    """No other module takes the process's state: each owner gets what it owns."""
    users = sorted(
        module_name(path) for path in PACKAGE.rglob("*.py") if "ManagerProcess" in path.read_text()
    )
    assert users == ["nowcastkit.manager", "nowcastkit.manager.process"]
