"""Runs on another host, started detached over ssh and watched by one poll per host.

    launcher = SshLauncher(remote_host(config, "arbutus"), control_path)
    run = launcher.start(worker, config, run_id, log_path)   # the ssh call is in flight
    launcher.tick(time.monotonic())                          # calls that ended, a poll if due
    run.poll()                                               # (True, status) once it ended

Nothing here waits on the network: every ssh call runs in the background, its
output to temporary files read once it ends (its end is a SIGCHLD, which wakes
the manager's loop). A launch prints the remote pid; the worker's own message
is how its run is known to be done, and a poll every ``poll interval`` of all
the host's runs at once is the safety net that finds a run gone without one.
A launch that ssh could not make (host unreachable, key refused) is tried again
at each poll until the run's deadline; one refused for an unknown host key is not.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from nowcastkit import ssh
from nowcastkit.config import Config
from nowcastkit.hosts import Host
from nowcastkit.manager.calls import Pace
from nowcastkit.next_worker import NextWorker

__all__ = ["RemoteRun", "SshLauncher"]

log = logging.getLogger("manager")

#: Looks at a run's host this long after its final message, to see it exit.
LOOKS_AFTER_REPORT = (2.0, 8.0)

LAUNCHING, WAITING, RUNNING, ENDED, FAILED = "launching", "waiting", "running", "ended", "failed"


@attrs.define(eq=False)
class RemoteRun:
    """A run on another host, as the supervisor sees it (a :class:`~.launchers.Process`)."""

    launcher: SshLauncher
    run_id: str
    worker: NextWorker
    pid: int | None = None
    state: str = LAUNCHING
    status: int | None = None
    tail: tuple[str, ...] = ()
    failure: ssh.SshFailure | None = None
    #: A signal to send once the launch in flight has given a pid.
    pending_signal: int | None = None
    wakes: bool = True

    def poll(self) -> tuple[bool, int | None]:
        return self.state == ENDED, self.status

    def signal(self, signum: int) -> None:
        self.launcher.signal(self, signum)

    def reported(self) -> None:
        self.launcher.look_soon(time.monotonic(), shared=True)

    @property
    def launch_failure(self) -> str | None:
        if self.state != FAILED:
            return None
        failure = self.failure
        return "cancelled before it started" if failure is None else \
            f"{failure.reason}: {failure.message}"  # fmt: skip

    @property
    def log(self) -> str:
        host = self.launcher.host
        return f"{host.name}:{host.run_dir}/{self.run_id}.log"

    def crash_details(self) -> dict:
        return {"host": self.launcher.host.name, "log": self.log, "last output": list(self.tail)}


@attrs.define(eq=False)
class SshLauncher:
    """Starts and watches the runs on one host; its calls never block the manager's loop."""

    host: Host
    control: str | None = None
    runs: dict[str, RemoteRun] = attrs.field(factory=dict)
    pace: Pace = attrs.field(factory=Pace)
    polling: bool = False
    #: Runs whose remote pid became known since the supervisor last asked, with the handle
    #: a later manager needs to find them again.
    located: dict[str, tuple[int | None, dict]] = attrs.field(factory=dict)

    def start(self, worker: NextWorker, config: Config, run_id: str, log_path: Path) -> RemoteRun:
        run = RemoteRun(self, run_id, worker)
        self.runs[run_id] = run
        self._launch(run)
        return run

    def adopt(self, run_id: str, worker: NextWorker, pid: int | None) -> RemoteRun:
        """Watch a run an earlier manager started; one with no pid yet is launched again,
        which starts it only if it never started."""
        run = RemoteRun(self, run_id, worker, pid, RUNNING if pid else LAUNCHING)
        self.runs[run_id] = run
        if pid is None:
            self._launch(run)
        self.look_soon(time.monotonic(), (0.0,))
        return run

    def tick(self, now: float) -> None:
        """Hand on the calls that have ended; poll, and try failed launches again, when due."""
        if not self.pace.tick(now) or not self.runs:
            return
        self.pace.looked(now, self.host.poll_interval)
        for run in self.runs.values():
            if run.state == WAITING:
                self._launch(run)
        pids = {run.run_id: run.pid for run in self.runs.values() if run.state == RUNNING}
        if pids and not self.polling:
            self.polling = True
            self._call(ssh.poll_line(self.host, pids), self._polled)

    def wake_at(self, now: float) -> float | None:
        return self.pace.wake_at() if self.runs else None

    def look_soon(
        self, now: float, after: tuple[float, ...] = LOOKS_AFTER_REPORT, shared: bool = False
    ) -> None:
        self.pace.look_soon(now, after, shared)

    def signal(self, run: RemoteRun, signum: int) -> None:
        if run.state == WAITING:
            run.state = FAILED
            log.error("%s worker run %s not started on %s before its deadline (%s)",
                      run.worker.name, run.run_id, self.host.name, run.launch_failure)  # fmt: skip
        elif run.state == LAUNCHING:
            run.pending_signal = signum
        elif run.state == RUNNING and run.pid is not None:
            name = signal.Signals(signum).name.removeprefix("SIG")

            def signalled(returncode: int, out: str, err: str) -> None:
                if returncode != 0:
                    log.warning("could not send %s to %s worker run %s on %s: %s", name,
                                run.worker.name, run.run_id, self.host.name,
                                ssh.parse_failure(returncode, err).message)  # fmt: skip
                self.look_soon(time.monotonic(), (1.0, 3.0))

            self._call(ssh.kill_line(run.run_id, run.pid, name), signalled)

    def forget(self, run_id: str) -> None:
        self.runs.pop(run_id, None)

    def _call(self, remote: str, then: Callable[[int, str, str], None]) -> None:
        self.pace.start(ssh.ssh_argv(self.host, remote, self.control), then)

    def _launch(self, run: RemoteRun) -> None:
        run.state = LAUNCHING
        args = ["-m", run.worker.module, *run.worker.args]
        self._call(ssh.launch_line(self.host, run.run_id, args),
                   lambda code, out, err: self._launched(run, code, out, err))  # fmt: skip

    def _launched(self, run: RemoteRun, returncode: int, out: str, err: str) -> None:
        pid = ssh.parse_launch(out) if returncode == 0 else None
        if pid is not None:
            run.pid, run.state, run.failure = pid, RUNNING, None
            self.located[run.run_id] = (pid, {"launcher": "ssh", "log": run.log})
            log.info("%s worker run %s started on %s: pid %d",
                     run.worker.name, run.run_id, self.host.name, pid)  # fmt: skip
            if run.pending_signal is not None:
                self.signal(run, run.pending_signal)
            return
        failure = ssh.parse_failure(returncode, err)
        if returncode == 0:
            failure = ssh.SshFailure("remote error", f"no pid in its output: {out[-200:]!r}", False)
        run.failure = failure
        if not failure.retry or run.pending_signal is not None:
            run.state = FAILED
            log.error("launch of %s worker run %s on %s failed (%s): %s", run.worker.module,
                      run.run_id, self.host.name, failure.reason, failure.message)  # fmt: skip
        else:
            run.state = WAITING
            log.warning("launch of %s worker run %s on %s failed (%s): %s; trying again in %.0f s",
                        run.worker.module, run.run_id, self.host.name, failure.reason,
                        failure.message, self.host.poll_interval)  # fmt: skip

    def _polled(self, returncode: int, out: str, err: str) -> None:
        self.polling = False
        found = ssh.parse_poll(out) if returncode == 0 else None
        if found is None:
            cut = ssh.SshFailure("remote error", f"output cut short: {out[-200:]!r}", True)
            failure = ssh.parse_failure(returncode, err) if returncode else cut
            log.warning("could not look at the runs on %s (%s): %s; their state is unknown "
                        "until the next poll", self.host.name, failure.reason,
                        failure.message)  # fmt: skip
            return
        for run_id, state in found.items():
            run = self.runs.get(run_id)
            if run is not None and run.state == RUNNING and state.ended:
                run.state, run.status, run.tail = ENDED, state.status, state.tail
