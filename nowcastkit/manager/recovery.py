"""Starting the manager: open the store and pick up where the last manager stopped.

Waiting race-condition groups come back as they were; runs still going are
watched again by pid; runs that ended while no manager was there become
crashes (after a short grace, in case their final message is still waiting in
the broker); runs committed but never started are started now.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from nowcastkit import checklist as checklist_file
from nowcastkit import runs as run_control
from nowcastkit import store as st
from nowcastkit.config import Config
from nowcastkit.flow import Flow, RaceGroup
from nowcastkit.manager.dispatch import Launch, Manager
from nowcastkit.next_worker import NextWorker

__all__ = ["DEFAULT_KEEP_DAYS", "RECOVERY_GRACE", "prune", "start"]

log = logging.getLogger("manager")

DEFAULT_KEEP_DAYS = 60
#: Seconds a run found dead at start is given for its final message to arrive.
RECOVERY_GRACE = 3.0


def start(config: Config, ignore_checklist: bool = False) -> tuple[Manager, list[Launch]]:
    """A manager with its state recovered, and the runs it must start now."""
    flow = Flow(config["message registry"]["next workers module"], Path(config.file).parent)
    flow.refresh()
    store_path, run_logs = st.state_paths(config)
    store = st.open_store(store_path)
    manager = Manager(config, flow, store, run_control.Runs(run_logs))
    _recover_checklist(manager, ignore_checklist)
    flow.groups = [
        RaceGroup(waiting, [NextWorker(**held) for held in held_workers])
        for waiting, held_workers in st.load_groups(store)
    ]
    for group in flow.groups:
        log.info("race condition group still waiting for %s", sorted(group.waiting))
    launches = _recover_runs(manager)
    prune(manager)
    return manager, launches


def _recover_checklist(manager: Manager, ignore_checklist: bool) -> None:
    store, path = manager.store, manager.file.path
    if ignore_checklist:
        log.info("ignoring the saved checklist; starting with an empty one")
        manager.checklist = {}
    elif st.get_meta(store, "checklist") is None:
        manager.checklist = checklist_file.load(path)
    else:
        on_file = checklist_file.load(path, quiet=True)
        manager.checklist = st.load_checklist(store)
        if path.exists() and on_file != manager.checklist:
            aside = checklist_file.set_aside(path, "differs")
            log.warning(
                "checklist file %s differs from the manager's store; kept it as %s "
                "and rewrote it from the store", path, aside,
            )  # fmt: skip
        log.info("checklist loaded from %s (%d keys)", store.path, len(manager.checklist))
    with st.transaction(store):
        st.put_checklist(store, manager.checklist)
        st.set_meta(store, "checklist", "in store")
    manager.file.forget()
    manager.file.write(manager.checklist, time.monotonic())
    # The start-up write must not hold back the first message's: that one is written at once.
    manager.file.unpaced()


def _recover_runs(manager: Manager) -> list[Launch]:
    launches = []
    for run in st.unfinished_runs(manager.store):
        by_hand = run.module == st.BY_HAND
        worker = NextWorker(run.worker if by_hand else run.module, run.args, run.host)
        log_path = manager.runs.log_dir / f"{worker.name}-{run.run_id}.log"
        pid = run.pid or run_control.find_pid(run.run_id)
        if pid is None:
            if by_hand:
                continue
            log.warning(
                "starting %s worker run %s: committed but never started", run.module, run.run_id
            )
            launches.append(Launch(run.run_id, worker, run.parent))
            continue
        alive = Path(f"/proc/{pid}").exists() if by_hand else run_control.is_alive(pid, run.run_id)
        grace = 0.0 if alive else RECOVERY_GRACE
        # A run's timeout counts from its launch, whichever manager launched it.
        deadline = (
            None if by_hand else run_control.deadline(manager.config, worker.name, run.launched)
        )
        run_control.adopt(
            manager.runs, run.run_id, worker, pid, log_path, by_hand=by_hand, grace=grace,
            deadline=deadline,
        )  # fmt: skip
        log.info(
            "%s worker run %s (pid %d) %s", worker.name, run.run_id, pid,
            "is still running; watching it again" if alive else "ended while the manager was down",
        )  # fmt: skip
        if run.pid is None:
            with st.transaction(manager.store):
                st.set_run_pid(manager.store, run.run_id, pid)
    return launches


def prune(manager: Manager) -> None:
    """Forget handled message ids and finished runs older than ``keep history days``."""
    days = manager.config.get("keep history days") or DEFAULT_KEEP_DAYS
    with st.transaction(manager.store):
        messages, runs = st.prune(manager.store, time.time() - days * 86400)
    if messages or runs:
        log.info("pruned %d message ids and %d runs older than %d days", messages, runs, days)
