"""How a run is started and watched: the seam where remote and batch launchers plug in.

    launcher = LocalLauncher()
    process = launcher.start(NextWorker("workers.sleep"), config, run_id, log_path)
    process.poll()            # (False, None) while it runs, (True, status) once it ended
    process.signal(SIGTERM)   # its deadline passed

A launcher turns a committed run into a :class:`Process`, a handle the
supervisor polls and signals and nothing else; a run found again after a
manager restart is watched through :class:`WatchedPid`. Each run carries its id
in ``NOWCASTKIT_RUN_ID``, so its messages name it and its pid can be found again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Protocol

import attrs

from nowcastkit.config import Config
from nowcastkit.next_worker import NextWorker
from nowcastkit.worker import RUN_ID_ENV

__all__ = [
    "Launcher",
    "LocalLauncher",
    "LocalProcess",
    "Process",
    "WatchedPid",
    "find_pid",
    "is_alive",
]

log = logging.getLogger("manager")


class Process(Protocol):
    """A started run, as the supervisor sees it."""

    #: None while a remote launch has not yet said it.
    pid: int | None
    #: Whether its end is signalled (SIGCHLD), so the supervisor need not poll it on a timer.
    wakes: bool
    #: Why it could not be started at all, once that is final; None otherwise.
    launch_failure: str | None

    def poll(self) -> tuple[bool, int | None]:
        """Whether it has ended, and its exit status (negative: the signal; None: unknown)."""

    def signal(self, signum: int) -> None:
        """Send *signum* to the run and whatever it started."""

    def reported(self) -> None:
        """Its final message is in: look for its end soon."""

    def crash_details(self) -> dict | None:
        """What its crash message says of it beyond the local log (host, remote log and its
        last lines, a job id, a reason), or None."""


class Launcher(Protocol):
    """Starts a worker run; raises OSError or NowcastkitError when it cannot."""

    def start(self, worker: NextWorker, config: Config, run_id: str, log_path: Path) -> Process:
        """Start *worker* as run *run_id*, its output going to *log_path*."""


@attrs.define(eq=False)
class LocalProcess:
    """A child process of the manager."""

    popen: subprocess.Popen
    wakes: bool = True
    launch_failure: None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def reported(self) -> None:
        pass

    def crash_details(self) -> None:
        return None

    def poll(self) -> tuple[bool, int | None]:
        status = self.popen.poll()
        return status is not None, status

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)


@attrs.define(eq=False)
class LocalLauncher:
    """Runs the worker's command here, in a session of its own, output to the run's log.

    A worker on a host configured ``detached: false`` is run by the ssh client here
    (:func:`nowcastkit.ssh.ssh_command`): the run lasts as long as its ssh session.
    """

    def start(self, worker: NextWorker, config: Config, run_id: str, log_path: Path) -> Process:
        cmd = worker.command(config, {RUN_ID_ENV: run_id})
        log.debug("%s", cmd)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, RUN_ID_ENV: run_id},
                # Its own session: a Ctrl-C meant for circusd, or a manager restart,
                # must not kill a model run that is half done.
                start_new_session=True,
            )
        return LocalProcess(popen)


@attrs.define(eq=False)
class WatchedPid:
    """A run this manager did not start, watched by pid: an earlier manager's, or a person's.

    A run started by hand is known by its pid alone; one an earlier manager started must
    also carry its run id, so that a reused pid is not mistaken for it. It is not judged
    ended before *not_before* (a run found dead at start may still have its final message
    waiting in the broker).
    """

    pid: int
    run_id: str
    by_hand: bool = False
    not_before: float = 0.0
    wakes: bool = False
    launch_failure: None = None

    def reported(self) -> None:
        pass

    def crash_details(self) -> None:
        return None

    def poll(self) -> tuple[bool, int | None]:
        if time.monotonic() < self.not_before:
            return False, None
        if self.by_hand:
            return not Path(f"/proc/{self.pid}").exists(), None
        return not is_alive(self.pid, self.run_id), None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


def find_pid(run_id: str) -> int | None:
    """The pid of the live process carrying *run_id* in its environment, if any."""
    marker = f"{RUN_ID_ENV}={run_id}".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    return int(proc.name)
            except OSError:
                continue
    return None


def is_alive(pid: int, run_id: str) -> bool:
    """True if *pid* is running and is the worker of *run_id* (not a reused pid)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{RUN_ID_ENV}={run_id}".encode() in environ.split(b"\0")
