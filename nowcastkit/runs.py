"""Worker runs the manager launched: per-run logs, reaping, deadlines, crash reports.

    runs = Runs(log_dir=Path("logs/runs"))
    running = launch(runs, NextWorker("workers.sleep"), config)
    for running, status in reap(runs):      # after SIGCHLD
        if not running.reported:
            msg = crash_message(running, status)

Each run gets an id, passed to the worker in ``NOWCASTKIT_RUN_ID`` so its
messages name the run, and a log file ``<worker>-<run id>.log`` holding its
stdout and stderr. A run that exits without having reported becomes a
synthesized ``crash`` message, so a worker killed by SIGKILL or the OOM killer
reaches ``after_<worker>`` like any other outcome.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

from nowcastkit.config import Config
from nowcastkit.message import Message
from nowcastkit.next_worker import NextWorker
from nowcastkit.worker import RUN_ID_ENV

__all__ = [
    "RUN_ID_ENV",
    "Running",
    "Runs",
    "adopt",
    "crash_message",
    "deadline",
    "enforce_deadlines",
    "find_pid",
    "launch",
    "new_run_id",
    "next_deadline",
    "reap",
]

TERM_GRACE = 5.0
_TAIL_LINES = 20


@attrs.define(eq=False)
class Running:
    """A launched worker the manager is watching."""

    run_id: str
    worker: NextWorker
    log_path: Path
    popen: subprocess.Popen | None
    pid: int
    deadline: float | None = None
    reported: bool = False
    timed_out: bool = False
    term_sent: float | None = None
    #: Started by hand, not by the manager: watched by pid alone.
    by_hand: bool = False
    #: Not judged gone before this monotonic time (a run found dead at recovery
    #: may still have its final message waiting in the broker).
    not_before: float = 0.0


@attrs.define
class Runs:
    log_dir: Path
    active: dict[str, Running] = attrs.field(factory=dict)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def launch(runs: Runs, worker: NextWorker, config: Config, run_id: str | None = None) -> Running:
    """Start *worker* with its output in a per-run log file; raise OSError if it cannot start."""
    run_id = run_id or new_run_id()
    runs.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = runs.log_dir / f"{worker.name}-{run_id}.log"
    cmd = worker.command(config)
    if worker.host != "localhost":
        cmd[2:2] = ["env", f"{RUN_ID_ENV}={run_id}"]
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
    running = Running(run_id, worker, log_path, popen, popen.pid, deadline(config, worker.name))
    runs.active[run_id] = running
    return running


def adopt(
    runs: Runs,
    run_id: str,
    worker: NextWorker,
    pid: int,
    log_path: Path,
    *,
    by_hand: bool = False,
    grace: float = 0.0,
    deadline: float | None = None,
) -> Running:
    """Watch a run this manager did not start (an earlier manager did, or a person), by pid."""
    running = Running(
        run_id, worker, log_path, None, pid, deadline, by_hand=by_hand,
        not_before=time.monotonic() + grace,
    )  # fmt: skip
    runs.active[run_id] = running
    return running


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


def reap(runs: Runs) -> list[tuple[Running, int | None]]:
    """Runs that have exited since the last call, with their exit status (None if unknown)."""
    exited = []
    for running in list(runs.active.values()):
        status = _poll(running)
        if status is not _ALIVE:
            del runs.active[running.run_id]
            exited.append((running, status))
    return exited


_ALIVE = object()


def _poll(running: Running) -> Any:
    if running.popen is not None:
        status = running.popen.poll()
        return _ALIVE if status is None else status
    if time.monotonic() < running.not_before:
        return _ALIVE
    if running.by_hand:
        return _ALIVE if Path(f"/proc/{running.pid}").exists() else None
    return _ALIVE if is_alive(running.pid, running.run_id) else None


def is_alive(pid: int, run_id: str) -> bool:
    """True if *pid* is running and is the worker of *run_id* (not a reused pid)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{RUN_ID_ENV}={run_id}".encode() in environ.split(b"\0")


def enforce_deadlines(runs: Runs, now: float) -> None:
    """SIGTERM runs past their deadline; SIGKILL those still there after the grace period."""
    for running in runs.active.values():
        if running.deadline is None or now < running.deadline:
            continue
        running.timed_out = True
        if running.term_sent is None:
            running.term_sent = now
            _signal(running, signal.SIGTERM)
        elif now >= running.term_sent + TERM_GRACE:
            _signal(running, signal.SIGKILL)


def next_deadline(runs: Runs) -> float | None:
    """The monotonic time of the next deadline action, for the manager's poll timeout."""
    times = []
    for running in runs.active.values():
        if running.deadline is None:
            continue
        times.append(running.term_sent + TERM_GRACE if running.term_sent else running.deadline)
    return min(times, default=None)


def crash_message(running: Running, status: int | None) -> Message:
    """The ``crash`` message for a run that ended without reporting."""
    payload: dict[str, Any] = {"run id": running.run_id, "pid": running.pid}
    if running.timed_out:
        payload["reason"] = "timeout"
    else:
        payload["reason"] = "exited without reporting to the manager"
    if status is not None and status < 0:
        payload["signal"] = signal.Signals(-status).name
    elif status is not None:
        payload["exit status"] = status
    if running.log_path.name:
        payload["log"] = str(running.log_path)
        payload["last output"] = _tail(running.log_path)
    return Message(
        running.worker.name, "crash", payload, id=f"crash-{running.run_id}", run=running.run_id
    )


def _signal(running: Running, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(running.pid, signum)


def deadline(config: Config, name: str, launched: float | None = None) -> float | None:
    """The monotonic time a run of worker *name* launched at *launched* (epoch; default now)
    is past its registry ``timeout``, or None when it has none."""
    entry = config["message registry"]["workers"].get(name)
    timeout = entry.get("timeout") if isinstance(entry, dict) else None
    if not timeout:
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
