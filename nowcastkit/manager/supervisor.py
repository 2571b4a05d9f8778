"""The supervisor: owns the worker runs going now, from start to their end.

    supervisor = Supervisor(config, log_dir)
    started, failed = supervisor.start(launches)   # committed runs, after their replies
    for ended in supervisor.tick(time.monotonic()):
        outcome = decide_exit(ended, view)         # a crash if the run never reported

Each run gets a log file ``<worker>-<run id>.log`` holding its stdout and stderr.
A run past its registry ``timeout`` gets SIGTERM, then SIGKILL after
``TERM_GRACE`` seconds. A run that ends is handed back as an :class:`Ended`,
with the ``crash`` message it becomes if it never reported; whether it did is
the ledger's to know, so :func:`~.decide.decide_exit` judges. How a run is
started is the launcher's business: here (:mod:`.launchers`), or detached on
another host over ssh (:mod:`.remote`), one launcher per host.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import attrs

from nowcastkit import migration
from nowcastkit import store as st
from nowcastkit.config import Config, worker_timeout
from nowcastkit.errors import NowcastkitError
from nowcastkit.hosts import remote_host
from nowcastkit.manager.cluster import SlurmLauncher
from nowcastkit.manager.decide import Ended, Launch
from nowcastkit.manager.launchers import (
    Launcher,
    LocalLauncher,
    Process,
    WatchedPid,
    find_pid,
    is_alive,
)
from nowcastkit.manager.remote import SshLauncher
from nowcastkit.message import Message
from nowcastkit.next_worker import NextWorker
from nowcastkit.ssh_connections import control_path

__all__ = ["RECOVERY_GRACE", "TERM_GRACE", "Running", "Supervisor", "deadline"]

log = logging.getLogger("manager")

#: Seconds between a timed-out run's SIGTERM and its SIGKILL.
TERM_GRACE = 5.0
#: Seconds a run found dead at start is given for its final message to arrive.
RECOVERY_GRACE = 3.0
#: How often runs that send no SIGCHLD (adopted ones) are looked at.
WATCH_EVERY = 0.5
_TAIL_LINES = 20


@attrs.define(eq=False)
class Running:
    """A run the supervisor is watching."""

    run_id: str
    worker: NextWorker
    log_path: Path
    process: Process
    deadline: float | None = None
    timed_out: bool = False
    term_sent: float | None = None
    by_hand: bool = False
    #: Who cancelled it (``nowcastkit cancel``), when someone did.
    cancelled_by: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid


@attrs.define(eq=False)
class Supervisor:
    """The runs going now; nothing else starts, signals or reaps them."""

    config: Config
    log_dir: Path
    launcher: Launcher = attrs.field(factory=LocalLauncher)
    active: dict[str, Running] = attrs.field(factory=dict)
    #: The launcher of each host whose runs are detached over ssh or are Slurm jobs.
    remotes: dict[str, SshLauncher | SlurmLauncher] = attrs.field(factory=dict)
    #: Runs that could not be started at all, since the manager last asked: id to reason.
    unstarted: dict[str, str] = attrs.field(factory=dict)
    #: Whether the reference design's package is here (else its workers are stood in for).
    reference: bool = attrs.field(factory=migration.reference_installed)
    #: The reference design's worker modules already said to be stood in for.
    stood_in: set[str] = attrs.field(factory=set)

    def start(self, launches: list[Launch]) -> tuple[list[Running], list[Launch]]:
        """Start committed runs: those started and those that failed to (logged), in order.

        A remote run is started when its ssh call is made; its pid comes later
        (:meth:`news`).
        """
        started, failed = [], []
        for item in launches:
            worker = self._runnable(item.worker)
            log_path = self.log_dir / f"{worker.name}-{item.run_id}.log"
            try:
                launcher = self.launcher_for(worker.host)
                process = launcher.start(worker, self.config, item.run_id, log_path)
            except (OSError, NowcastkitError) as err:
                log.error("launch of %s worker on %s failed: %s", worker.module, worker.host, err)
                failed.append(item)
                continue
            running = Running(
                item.run_id, worker, log_path, process, deadline(self.config, worker.name)
            )
            self.active[item.run_id] = running
            pid = "" if running.pid is None else f", pid {running.pid}"
            log.info("launching %s worker on %s: run %s%s",
                     worker.module, worker.host, item.run_id, pid)  # fmt: skip
            started.append(running)
        return started, failed

    def _runnable(self, worker: NextWorker) -> NextWorker:
        """*worker*, or the built-in worker that stands in for the reference design's."""
        module = migration.stand_in(worker.module, self.reference)
        if module is None:
            return worker
        if worker.module not in self.stood_in:
            self.stood_in.add(worker.module)
            log.info("launching %s, nowcastkit's built-in, for %s", module, worker.module)
        return attrs.evolve(worker, module=module)

    def launcher_for(self, host: str) -> Launcher:
        """Here for localhost and attached ssh runs; the host's own for detached ones.

        Raises ConfigError for a host ``run.enabled hosts`` lacks or gets wrong.
        """
        if host == "localhost":
            return self.launcher
        entry = remote_host(self.config, host)
        if entry.launcher == "ssh" and not entry.detached:
            return self.launcher
        kind = SlurmLauncher if entry.launcher == "slurm" else SshLauncher
        remote = self.remotes.get(host)
        if not isinstance(remote, kind):
            folder = st.state_paths(self.config)[0].parent
            remote = self.remotes[host] = kind(entry, control_path(folder.absolute()))
        remote.host = entry  # a reloaded config takes effect at the next call
        return remote

    def news(self) -> tuple[dict[str, int | None], dict[str, dict], dict[str, str]]:
        """Since last asked: the remote pids learnt, with their launchers' handles (what a
        later manager needs to find the runs again), and the runs found impossible to start."""
        located, handles = {}, {}
        for remote in self.remotes.values():
            for run_id, (pid, handle) in remote.located.items():
                located[run_id], handles[run_id] = pid, handle
            remote.located.clear()
        unstarted, self.unstarted = self.unstarted, {}
        return located, handles, unstarted

    def take_reports(self) -> list[str]:
        """Final messages runs left in files (``report: file``), to be handled as if sent."""
        reports = []
        for remote in self.remotes.values():
            if isinstance(remote, SlurmLauncher):
                reports += remote.reports
                remote.reports.clear()
        return reports

    def cancel(self, run_id: str, by: str) -> Running | None:
        """Stop run *run_id* as a deadline would (TERM, then KILL; scancel for a job)."""
        running = self.active.get(run_id)
        if running is None or running.by_hand:
            return None
        log.warning("cancelling %s worker run %s on %s, as %s asked",
                    running.worker.name, run_id, running.worker.host, by)  # fmt: skip
        running.cancelled_by, running.deadline = by, time.monotonic()
        return running

    def reported(self, run_id: str) -> None:
        """Run *run_id*'s final message is in; its launcher may want to see it exit."""
        running = self.active.get(run_id)
        if running is not None:
            running.process.reported()

    def adopt(self, run_id: str, worker: NextWorker, pid: int, *, by_hand: bool = False,
              grace: float = 0.0, deadline: float | None = None) -> Running:  # fmt: skip
        """Watch by pid a run this manager did not start."""
        process = WatchedPid(pid, run_id, by_hand, time.monotonic() + grace)
        log_path = Path("") if by_hand else self.log_dir / f"{worker.name}-{run_id}.log"
        running = Running(run_id, worker, log_path, process, deadline, by_hand=by_hand)
        self.active[run_id] = running
        return running

    def recover(self, unfinished: list[st.Run], here: str) -> tuple[list[Launch], dict[str, int]]:
        """Watch again the runs an earlier manager left: the runs never started, pids found.

        Runs still going are watched by pid, with their deadline counted from their
        launch; runs that ended while no manager was there end after a grace, so that
        a final message still waiting in the broker is taken first.
        """
        launches, found = [], {}
        for run in unfinished:
            by_hand = run.module == st.BY_HAND
            worker = NextWorker(run.worker if by_hand else run.module, run.args, run.host)
            if not by_hand and self._adopt_remote(run, worker):
                continue
            pid = run.pid or find_pid(run.run_id)
            if pid is None or (by_hand and run.host != here):
                if not by_hand:
                    log.warning("starting %s worker run %s: committed but never started",
                                run.module, run.run_id)  # fmt: skip
                    launches.append(Launch(run.run_id, worker, run.parent))
                continue
            alive = Path(f"/proc/{pid}").exists() if by_hand else is_alive(pid, run.run_id)
            self.adopt(
                run.run_id, worker, pid, by_hand=by_hand,
                grace=0.0 if alive else RECOVERY_GRACE,
                deadline=None if by_hand else deadline(self.config, worker.name, run.launched),
            )  # fmt: skip
            how = "is still running; watching it again" if alive else \
                "ended while the manager was down"  # fmt: skip
            log.info("%s worker run %s (pid %d) %s", worker.name, run.run_id, pid, how)
            if run.pid is None:
                found[run.run_id] = pid
        return launches, found

    def _adopt_remote(self, run: st.Run, worker: NextWorker) -> bool:
        """Watch again a run detached on another host; False if it is not one."""
        try:
            launcher = self.launcher_for(run.host) if run.host != "localhost" else None
        except NowcastkitError:
            launcher = None
        if isinstance(launcher, SlurmLauncher):
            timeout = worker_timeout(self.config, worker.name)
            process = launcher.adopt(run.run_id, worker, run.handle, timeout)
        elif isinstance(launcher, SshLauncher):
            process = launcher.adopt(run.run_id, worker, run.pid)
        else:
            return False
        log_path = self.log_dir / f"{worker.name}-{run.run_id}.log"
        self.active[run.run_id] = Running(
            run.run_id, worker, log_path, process, deadline(self.config, worker.name, run.launched)
        )
        job = (run.handle or {}).get("job id")
        how = (f"job {job}; tracking it again" if job else
               f"pid {run.pid}; watching it again" if run.pid else
               "not known to have started; looking for it")  # fmt: skip
        log.info("%s worker run %s on %s: %s", worker.name, run.run_id, run.host, how)
        return True

    def tick(self, now: float) -> list[Ended]:
        """Act on deadlines, then hand back the runs that have ended since the last tick."""
        for remote in self.remotes.values():
            remote.tick(now)
        for running in self.active.values():
            if running.deadline is not None and now >= running.deadline:
                running.timed_out = running.cancelled_by is None
                if running.term_sent is None:
                    running.term_sent = now
                    running.process.signal(signal.SIGTERM)
                elif now >= running.term_sent + TERM_GRACE:
                    running.process.signal(signal.SIGKILL)
                    running.term_sent = now  # again in TERM_GRACE, if it is still there
        ended = []
        for running in list(self.active.values()):
            if running.process.launch_failure is not None:
                self._drop(running)
                self.unstarted[running.run_id] = running.process.launch_failure
                continue
            done, status = running.process.poll()
            if done:
                self._drop(running)
                ended.append(
                    Ended(running.run_id, running.worker, running.pid, status,
                          crash_message(running, status))
                )  # fmt: skip
        return ended

    def _drop(self, running: Running) -> None:
        del self.active[running.run_id]
        remote = self.remotes.get(running.worker.host)
        if remote is not None:
            remote.forget(running.run_id)

    def wake_at(self, now: float) -> float | None:
        """The monotonic time the next tick is due by: a deadline, or a pid to look at."""
        times = [
            running.term_sent + TERM_GRACE if running.term_sent else running.deadline
            for running in self.active.values()
            if running.deadline is not None
        ]
        remotes = (remote.wake_at(now) for remote in self.remotes.values())
        times += [at for at in remotes if at is not None]
        if any(not running.process.wakes for running in self.active.values()):
            times.append(now + WATCH_EVERY)
        return min(times, default=None)


def crash_message(running: Running, status: int | None) -> Message:
    """The ``crash`` message a run becomes when it ends without reporting."""
    payload: dict[str, Any] = {"run id": running.run_id, "pid": running.pid}
    if running.cancelled_by is not None:
        payload["reason"] = f"cancelled by {running.cancelled_by}"
    elif running.timed_out:
        payload["reason"] = "timeout"
    else:
        payload["reason"] = "exited without reporting to the manager"
    if status is not None and status < 0:
        payload["signal"] = signal.Signals(-status).name
    elif status is not None:
        payload["exit status"] = status
    details = running.process.crash_details()
    if details is not None:
        reason = details.pop("reason", None)
        if reason and not running.timed_out and running.cancelled_by is None:
            payload["reason"] = reason
        payload.update(details)
    elif running.log_path.name:
        payload["log"] = str(running.log_path)
        payload["last output"] = _tail(running.log_path)
    return Message(
        running.worker.name, "crash", payload, id=f"crash-{running.run_id}", run=running.run_id
    )


def deadline(config: Config, name: str, launched: float | None = None) -> float | None:
    """The monotonic time a run of worker *name* launched at *launched* (epoch; default now)
    is past its registry ``timeout``, or None when it has none."""
    timeout = worker_timeout(config, name)
    if timeout is None:
        return None
    age = 0.0 if launched is None else max(0.0, time.time() - launched)
    return time.monotonic() + timeout - age


def _tail(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    return lines[-_TAIL_LINES:]
