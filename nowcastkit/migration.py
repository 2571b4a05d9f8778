"""A system written for the reference design: what nowcastkit stands in for, what to change.

    stand_in("nemo_nowcast.workers.rotate_logs", reference_installed())  # "workers.rotate_logs"
    reference_imports(ast.parse(source))      # [Finding(3, "imports nemo_nowcast: ...")]
    dispatch_gaps(tree, registry["workers"])  # after_<worker> dicts lacking registered types

A flow may name the reference design's own workers as module strings
(``NextWorker("nemo_nowcast.workers.clear_checklist")``); without that package
installed, the manager launches the built-in worker of the same name instead.
The rest are pure functions over a module's syntax tree, for ``nowcastkit validate``.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

__all__ = [
    "BUILT_IN_TYPES",
    "BUILT_IN_WORKERS",
    "REFERENCE_PACKAGE",
    "Finding",
    "built_in_gaps",
    "dispatch_gaps",
    "logging_port_pools",
    "reference_imports",
    "reference_installed",
    "stand_in",
    "translated",
]

#: The top-level package of the reference design.
REFERENCE_PACKAGE = "nemo_nowcast"
#: The reference design's workers that nowcastkit has built in, by the same names.
BUILT_IN_WORKERS = ("awaken", "clear_checklist", "rotate_logs", "sleep")
#: The message types each built-in worker sends (the reference design's send the same):
#: its registry entry needs each, or the worker cannot report.
BUILT_IN_TYPES = {name: ("success", "failure", "crash") for name in BUILT_IN_WORKERS}
BUILT_IN_TYPES["clear_checklist"] += ("clear checklist",)


def stand_in(module: str, installed: bool) -> str | None:
    """The built-in worker module that runs for *module*, or None when *module* runs itself.

    ``nemo_nowcast.workers.X`` is stood in for unless that package is *installed*;
    ``nowcastkit.workers.X``, the same string after the documented rename, always.
    """
    package, _, name = module.rpartition(".")
    if name not in BUILT_IN_WORKERS:
        return None
    if package == "nowcastkit.workers" or (
        package == f"{REFERENCE_PACKAGE}.workers" and not installed
    ):
        return f"workers.{name}"
    return None


def reference_installed() -> bool:
    """Whether the reference design's package can be imported here."""
    try:
        return importlib.util.find_spec(REFERENCE_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


@attrs.frozen
class Finding:
    """One thing to change (or, when *informational*, to know) at *line* of a file."""

    line: int
    text: str
    informational: bool = False


def reference_imports(
    tree: ast.Module, has: Callable[[str], bool] = lambda dotted: True
) -> list[Finding]:
    """Each import statement that names the reference design's package, and what to do: the
    rewrite, or by hand where nowcastkit lacks what the rewrite would name (*has* says)."""
    found = []
    for node in ast.walk(tree):
        names = [name for name in _imported(node) if _is_reference(name)]
        if not names:
            continue
        wanted = [_renamed(name) for name in names]
        if isinstance(node, ast.ImportFrom):
            wanted = [f"{wanted[0]}.{alias.name}" for alias in node.names if alias.name != "*"]
        missing = [name for name in wanted if not has(name)]
        found.append(Finding(node.lineno, f"imports {', '.join(names)}: " + (
            _by_hand(missing) if missing else "import it from nowcastkit")))  # fmt: skip
    return found


def _by_hand(missing: list[str]) -> str:
    built_in = [m for m in missing if m.startswith("nowcastkit.workers.")]
    if built_in:
        return (f"nowcastkit's built-in workers are the workers package: import "
                f"{built_in[0].removeprefix('nowcastkit.')} by hand")  # fmt: skip
    return f"nowcastkit has no {', '.join(missing)}: change it by hand"


def translated(tree: ast.Module) -> ast.Module:
    """*tree* with its imports of the reference design's package made from nowcastkit, as
    the documented ``sed`` would make them; names keep their bindings."""
    tree = copy.deepcopy(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and _is_reference(node.module):
            node.module = _renamed(node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_reference(alias.name):
                    alias.asname = alias.asname or (None if "." in alias.name else alias.name)
                    alias.name = _renamed(alias.name)
    return tree


def dispatch_gaps(tree: ast.Module, registry: Mapping[str, Any]) -> list[Finding]:
    """Registered message types missing from the literal dict an ``after_<worker>`` looks its
    result up in (``return actions[msg.type]``): each would be a KeyError in the manager.
    Keys set later by a literal (``actions["success"] = ...``) count; a dict given keys the
    code computes (``actions[msg.type] = ...``, ``update``) is not judged."""
    found = []
    for func in tree.body:
        if not isinstance(func, ast.FunctionDef) or not func.name.startswith("after_"):
            continue
        entry = registry.get(func.name.removeprefix("after_"))
        if not isinstance(entry, Mapping) or not func.args.args:
            continue
        registered = [t for t in entry if t not in _NOT_TYPES]
        dicts = _literal_dicts(func)
        msg = func.args.args[0].arg
        for node in ast.walk(func):
            if not (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
                    and isinstance(node.value, ast.Name) and _is_type_of(node.slice, msg)
                    and node.value.id in dicts):  # fmt: skip
                continue
            line, keys = dicts[node.value.id]
            missing = [t for t in registered if t not in keys]
            if missing:
                found.append(Finding(line, f"{func.name}: {node.value.id}[{msg}.type] has no "
                                     f"{', '.join(map(repr, missing))}: a KeyError in the "
                                     "manager for a registered message type"))  # fmt: skip
    return found


def built_in_gaps(modules: Iterable[str], workers: Mapping[str, Any]) -> dict[str, str]:
    """For each built-in worker among *modules* (``workers.X``, ``nowcastkit.workers.X``,
    ``nemo_nowcast.workers.X``) what its ``message registry.workers`` entry lacks, by name."""
    found = {}
    for module in modules:
        package, _, name = module.rpartition(".")
        if name not in BUILT_IN_WORKERS or package not in _BUILT_IN_PACKAGES or name in found:
            continue
        entry = workers.get(name)  # an unregistered one is a problem of its own
        if isinstance(entry, Mapping) and (missing := [t for t in BUILT_IN_TYPES[name]
                                                       if t not in entry]):  # fmt: skip
            found[name] = (f"no {', '.join(map(repr, missing))} message type, which the "
                           f"built-in {name} worker sends")  # fmt: skip
    return found


def logging_port_pools(ports: Any) -> list[str]:
    """The keys of ``zmq.ports.logging`` that name the reference design's per-process
    ports and pools, which nowcastkit does not use (its aggregator binds one port)."""
    if not isinstance(ports, Mapping):
        return []
    return [str(key) for key in ports if key != "aggregator"]


_BUILT_IN_PACKAGES = frozenset(("workers", "nowcastkit.workers", f"{REFERENCE_PACKAGE}.workers"))
#: Registry keys no after_<worker> sees: settings, and the types the manager answers itself.
_NOT_TYPES = frozenset(("checklist key", "timeout", "retry", "hello", "need", "clear checklist"))


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module]
    return []


def _is_reference(name: str) -> bool:
    return name == REFERENCE_PACKAGE or name.startswith(f"{REFERENCE_PACKAGE}.")


def _renamed(name: str) -> str:
    return "nowcastkit" + name.removeprefix(REFERENCE_PACKAGE)


def _literal_dicts(func: ast.FunctionDef) -> dict[str, tuple[int, set[str]]]:
    """The names assigned a dict with only literal string keys in *func*: line and keys."""
    found = {}
    for node in ast.walk(func):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Dict)
                and all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                        for k in node.value.keys)):  # fmt: skip
            found[node.targets[0].id] = (node.lineno, {k.value for k in node.value.keys})
    for node in ast.walk(func):  # keys set later: a literal one counts, any other unknowable
        name, key = _stored_key(node)
        if name in found and isinstance(key, ast.Constant) and isinstance(key.value, str):
            found[name][1].add(key.value)
        elif name in found:
            del found[name]
    return found


def _stored_key(node: ast.AST) -> tuple[str | None, ast.AST | None]:
    """``d[key] = ...`` (name d, key), or ``d.update(...)`` and the like (name d, None)."""
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
        if isinstance(node.value, ast.Name):
            return node.value.id, node.slice
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in ("update", "setdefault") and isinstance(node.func.value, ast.Name):
            return node.func.value.id, None
    elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        return node.target.id, None
    return None, None


def _is_type_of(node: ast.AST, msg: str) -> bool:
    """``msg.type``, for the message argument's name *msg*."""
    return (isinstance(node, ast.Attribute) and node.attr == "type"
            and isinstance(node.value, ast.Name) and node.value.id == msg)  # fmt: skip
