"""Runs the manager starts, and what it does when one ends.

    launch(manager, launches)                  # after the replies that asked for them
    launch(manager, on_exit(manager, run, 0))  # a reaped run; a crash if it never reported

A run is committed to the store before it is started (:class:`~.dispatch.Launch`),
so a manager killed in between starts it on recovery; its pid follows once known.
A run that exits without having reported is handled as its worker's ``crash``
message, through the same path as any message, so ``after_<worker>`` decides.
"""

from __future__ import annotations

import logging

from nowcastkit import runs as run_control
from nowcastkit import store as st
from nowcastkit.errors import NowcastkitError
from nowcastkit.manager.changes import atomic
from nowcastkit.manager.dispatch import Launch, Manager, process

__all__ = ["launch", "on_exit"]

log = logging.getLogger("manager")


def launch(manager: Manager, launches: list[Launch]) -> None:
    """Start committed runs; one that fails to start does not stop the rest."""
    started, failed = [], []
    for item in launches:
        worker = item.worker
        try:
            running = run_control.launch(manager.runs, worker, manager.config, item.run_id)
        except (OSError, NowcastkitError) as err:
            log.error("launch of %s worker on %s failed: %s", worker.module, worker.host, err)
            failed.append(item.run_id)
            continue
        log.info(
            "launching %s worker on %s: run %s, pid %d",
            worker.module, worker.host, item.run_id, running.pid,
        )  # fmt: skip
        log.debug("%s", worker.command(manager.config))
        manager.events.publish(
            "launch", worker.name, run=item.run_id, module=worker.module, args=list(worker.args),
            host=worker.host, pid=running.pid, parent=item.parent,
        )  # fmt: skip
        started.append((item.run_id, running.pid))
    if started or failed:
        with st.transaction(manager.store):
            for run_id, pid in started:
                st.set_run_pid(manager.store, run_id, pid)
            for run_id in failed:
                st.finish_run(manager.store, run_id, "launch failed")


def on_exit(manager: Manager, running: run_control.Running, status: int | None) -> list[Launch]:
    """A run ended: record it; if it never reported, handle it as that worker's crash."""
    with st.transaction(manager.store):
        st.finish_run(manager.store, running.run_id, None, exit_status=status)
    name = running.worker.name
    manager.events.publish("exit", name, run=running.run_id, pid=running.pid, status=status)
    if running.reported:
        how = "has exited" if status is None else f"exited with status {status}"
        log.debug("%s worker run %s: worker process %d %s", name, running.run_id, running.pid, how)
        return []
    msg = run_control.crash_message(running, status)
    how = msg.payload.get("signal") or f"exit status {msg.payload.get('exit status')}"
    log.error(
        "%s worker run %s (pid %d) ended without reporting (%s, %s); handling it as a crash",
        name, running.run_id, running.pid, msg.payload["reason"], how,
    )  # fmt: skip
    with atomic(manager.store, manager.changes):
        manager.changes.after_commit(
            lambda: manager.events.publish(
                "crash", name, run=running.run_id, type="crash", payload=msg.payload
            )
        )
        if name not in manager.config["message registry"]["workers"]:
            log.error("%s is not in message registry.workers; no after_%s to call", name, name)
            st.finish_run(manager.store, running.run_id, "crash")
            return []
        _reply_unused, launches = process(manager, msg, msg.id)
    return launches
