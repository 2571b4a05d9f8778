"""The control socket's read-only commands; the tools ask them through :mod:`nowcastkit.control`.

    ask(control_endpoint(config), {"command": "status"})   # pid, start, runs, groups, retries
    ask(control_endpoint(config), {"command": "checklist", "keys": ["sleepyhead"]})
    ask(control_endpoint(config), {"command": "cancel", "run": "4f1c…", "by": "ops"})

Requests and replies are small YAML mappings; every reply has ``ok``. ``ping``
and ``launch`` are answered in :mod:`nowcastkit.manager.process`; these read the
committed state and the runs going now, and ``cancel`` stops one of them (or finds the
retry pending that the manager is to drop).
"""

from __future__ import annotations

from collections.abc import Mapping

from nowcastkit import store as st
from nowcastkit.manager.ledger import Ledger
from nowcastkit.manager.supervisor import Supervisor

__all__ = ["cancel", "checklist", "status"]


def status(ledger: Ledger, supervisor: Supervisor, facts: dict) -> dict:
    """The manager's *facts* (pid, start, …), its running runs, race groups and checklist keys."""
    launched = {run.run_id: run for run in st.unfinished_runs(ledger.store)}
    running = []
    for run_id, item in supervisor.active.items():
        record = launched.get(run_id)
        remote = item.process.crash_details() or {}
        running.append({
            "run": run_id, "worker": item.worker.name, "module": item.worker.module,
            "args": list(item.worker.args), "host": item.worker.host, "pid": item.pid,
            "launched": record.launched if record else None, "by hand": item.by_hand,
            "job id": remote.get("job id"), "slurm state": remote.get("slurm state") or None,
        })  # fmt: skip
    groups = [
        {"waiting": sorted(group.waiting), "held": [w.module for w in group.held]}
        for group in ledger.groups
    ]
    retries = [
        {"worker": retry.worker, "after run": retry.parent, "after": retry.after,
         "attempt": retry.attempt, "attempts": retry.attempts, "due": retry.due}
        for retry in sorted(ledger.retries.values(), key=lambda retry: retry.due)
    ]  # fmt: skip
    return {
        "ok": True, **facts, "running": running, "race groups": groups, "retries": retries,
        "checklist keys": sorted(map(str, ledger.checklist)),
    }  # fmt: skip


def checklist(checklist: Mapping, request: dict) -> dict:
    """The live checklist, or the sections named in ``keys``."""
    keys = request.get("keys") or []
    if not isinstance(keys, list):
        return {"ok": False, "error": f"keys: got {keys!r}, expected a list"}
    missing = [key for key in keys if key not in checklist]
    if missing:
        return {"ok": False, "error": f"checklist has no key {missing[0]!r}"}
    chosen = {key: checklist[key] for key in keys} if keys else checklist
    return {"ok": True, "checklist": chosen}


def cancel(
    supervisor: Supervisor, retries: Mapping[str, st.PendingRetry], request: dict
) -> dict | st.PendingRetry:
    """Stop a run going now (it ends as its worker's ``crash``, ``cancelled by ...``); or,
    for a run whose retry waits out its back-off, that retry, for the manager to drop."""
    run_id, by = request.get("run"), str(request.get("by") or "a control request")
    if not isinstance(run_id, str):
        return {"ok": False, "error": f"run: got {run_id!r}, expected a run id"}
    # A run that reported its failure may not be reaped yet: it is one candidate, not two.
    known = dict.fromkeys([*retries, *supervisor.active]) if run_id else {}
    matches = [run for run in known if run.startswith(run_id)]
    if len(matches) != 1:
        how = "no run going now or retry pending" if not matches else \
            f"{len(matches)} runs going now or with a retry pending"  # fmt: skip
        return {"ok": False, "error": f"{how} matches {run_id!r}"}
    if matches[0] in retries:
        return retries[matches[0]]
    running = supervisor.cancel(matches[0], by)
    if running is None:
        return {"ok": False, "error": f"run {matches[0]} was started by hand; stop it there"}
    return {"ok": True, "run": running.run_id, "worker": running.worker.name,
            "host": running.worker.host}  # fmt: skip
