"""The control socket's read-only commands; the tools ask them through :mod:`nowcastkit.control`.

    ask(control_endpoint(config), {"command": "status"})   # pid, start, runs, race groups
    ask(control_endpoint(config), {"command": "checklist", "keys": ["sleepyhead"]})

Requests and replies are small YAML mappings; every reply has ``ok``. ``ping``
and ``launch`` live in :mod:`nowcastkit.manager.loop`; the commands here only
read the manager's memory (and its store, for the runs' launch times).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from nowcastkit import store as st
from nowcastkit.manager.dispatch import Manager

__all__ = ["COMMANDS", "checklist", "status"]


def status(manager: Manager, request: dict) -> dict:
    """The manager's pid and start, its running runs, race groups and malformed count."""
    launched = {run.run_id: run for run in st.unfinished_runs(manager.store)}
    running = []
    for run_id, item in manager.runs.active.items():
        record = launched.get(run_id)
        running.append({
            "run": run_id, "worker": item.worker.name, "module": item.worker.module,
            "args": list(item.worker.args), "host": item.worker.host, "pid": item.pid,
            "launched": record.launched if record else None, "by hand": item.by_hand,
        })  # fmt: skip
    groups = [
        {"waiting": sorted(group.waiting), "held": [w.module for w in group.held]}
        for group in manager.flow.groups
    ]
    return {
        "ok": True, "pid": os.getpid(), "host": manager.host,
        "started": manager.started, "running": running, "race groups": groups,
        "malformed": manager.malformed, "checklist keys": sorted(map(str, manager.checklist)),
        "events dropped": manager.events.dropped,
    }  # fmt: skip


def checklist(manager: Manager, request: dict) -> dict:
    """The live checklist, or the sections named in ``keys``."""
    keys = request.get("keys") or []
    if not isinstance(keys, list):
        return {"ok": False, "error": f"keys: got {keys!r}, expected a list"}
    missing = [key for key in keys if key not in manager.checklist]
    if missing:
        return {"ok": False, "error": f"checklist has no key {missing[0]!r}"}
    chosen = {key: manager.checklist[key] for key in keys} if keys else manager.checklist
    return {"ok": True, "checklist": chosen}


COMMANDS: dict[str, Callable[[Manager, dict], dict]] = {"status": status, "checklist": checklist}
