"""Print the end of a run's log, here or on its host; with --follow, what it writes next.

    nowcastkit logs 4f1c2a9b0d1e7f36          # the last 20 lines of that run's log
    nowcastkit logs --lines 100 4f1c          # a run id's start will do, if it is one run's
    nowcastkit logs --follow nowcast.yaml 4f1c

RUN is a run id as ``history`` shows it, or the start of one that begins no other
run's id. The log is the one ``history`` shows: a file here (local runs, and Slurm
runs whose login node is this machine), or ``HOST:PATH`` on the host the run ran on,
read there with ``tail`` over ssh as the manager reaches that host (``run.enabled
hosts``; the manager's shared connection is used when it has one). --follow prints
what is added to the log until the manager's store says the run has ended (and its
exit is recorded, or 5 s later), then exits 0; Ctrl-C stops it sooner, exit status
130; it also waits for a remote run to start. Options go before the config file
and RUN. The store is only read, about once a second. Exit status 1 for a RUN that
is no run or more than one, a log that is not there (or a remote run not started
yet), or an ssh call that failed (ssh's last line says why); 2 for a usage or config
error (a host not in the config, say).
"""

from __future__ import annotations

import argparse
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import attrs

from nowcastkit import ssh
from nowcastkit import store as st
from nowcastkit.cli.history import log_file, open_history, outcome
from nowcastkit.config import Config, load_config
from nowcastkit.errors import NowcastkitError
from nowcastkit.hosts import Host, remote_host
from nowcastkit.ssh_connections import control_path

__all__ = ["add_arguments", "last_lines", "run"]

#: Seconds between looks at the store while following.
STORE_POLL = 1.0
#: Seconds between looks at a local log's size while following.
FILE_POLL = 0.2
#: Seconds to wait, once a run has ended, for the manager to record its exit.
EXIT_GRACE = 5.0
#: Seconds a remote ``tail -F`` goes on after the run's end, for its last lines to arrive.
DRAIN = 1.0
_BLOCK = 64 * 1024

Write = Callable[[bytes], None]


class LogsError(NowcastkitError):
    exit_status = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN", help="a run id, or the start of one")
    parser.add_argument("-n", "--lines", type=_count, default=20, metavar="N",
                        help="print the last N lines (default 20)")  # fmt: skip
    parser.add_argument("-f", "--follow", action="store_true",
                        help="go on printing what the run writes until it ends")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_history(config)
    if store is None:
        raise LogsError(f"no run {args.run_id!r}: no manager has made its store yet")
    try:
        found = _find(store, args.run_id)
        watch = _Watch(store, found) if args.follow else None
        place = _where(config, found)
        while place is None:  # a remote run whose launch the manager has not recorded yet
            if watch is None:
                raise LogsError(f"run {found.run_id} has not started on {found.host} yet: "
                                "where its log will be is not known")  # fmt: skip
            if watch.ended(time.monotonic()):
                raise LogsError(f"run {found.run_id} ended before it started on {found.host}: "
                                "it has no log")  # fmt: skip
            time.sleep(FILE_POLL)
            place = _where(config, watch.run)
        host, path = place
        if host is None:
            _local(Path(path), args.lines, watch, _write)
        else:
            control = control_path(st.state_paths(config)[0].parent.absolute())
            _remote(host, path, args.lines, watch, control, _write)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # a reader such as ``head`` has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        store.conn.close()
    if watch is not None:
        sys.stderr.write(f"nowcastkit logs: run {found.run_id} has ended: {watch.outcome}\n")
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a number of lines, 0 or more")
    return value


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _find(store: st.Store, text: str) -> st.Run:
    """The run *text* names: its id, or the start of its id alone."""
    runs = st.runs_named(store, text, limit=4)
    if not runs:
        raise LogsError(f"no run {text!r} in {store.path}")
    if len(runs) > 1:
        ids = ", ".join(r.run_id for r in runs[:3]) + (", ..." if len(runs) > 3 else "")
        raise LogsError(f"run {text!r} is ambiguous: it begins the ids of {ids}")
    return runs[0]


def _where(config: Config, r: st.Run) -> tuple[Host | None, str] | None:
    """Where run *r*'s log is: a path here (no host), or a host to ssh to and a path there;
    None for a run on another host that is not known to have started yet."""
    path = log_file(config, r)
    if not path:
        raise LogsError(f"run {r.run_id} of {r.worker} was started by hand: it has no log file")
    name, colon, there = r.log_path.partition(":")
    if colon and name == r.host != "localhost":
        host = remote_host(config, name)
        if host.launcher == "slurm" and host.ssh_host is None:
            return None, there  # the manager is on the login node: the path is one here
        return host, there
    if r.host != "localhost" and not r.log_path:
        host = remote_host(config, r.host)
        if host.launcher == "slurm" or host.detached:
            return None  # its launcher gives the log's place once the run has started
    return None, path


@attrs.define
class _Watch:
    """Whether the store says a run has ended, looked at no more than once a STORE_POLL;
    the run as last read there."""

    store: st.Store
    run: st.Run
    next_look: float = 0.0
    ended_at: float | None = None
    done: bool = False
    outcome: str = ""

    def ended(self, now: float) -> bool:
        if self.done or now < self.next_look:
            return self.done
        self.next_look = now + STORE_POLL
        run_id = self.run.run_id
        found = [r for r in st.runs_named(self.store, run_id) if r.run_id == run_id]
        if not found:  # pruned from the store meanwhile
            self.done, self.outcome = True, "it is no longer in the store"
            return True
        r = self.run = found[0]
        if r.finished is None:
            return False
        self.ended_at = now if self.ended_at is None else self.ended_at
        self.done = r.exit_status is not None or now - self.ended_at >= EXIT_GRACE
        self.outcome = outcome(r)
        return self.done


def last_lines(file: BinaryIO, lines: int) -> tuple[bytes, int]:
    """The last *lines* lines of *file*, read backwards a block at a time, and its size."""
    end = file.seek(0, os.SEEK_END)
    start, data = end, b""
    while lines and start > 0 and data.count(b"\n") <= lines:
        step = min(_BLOCK, start)
        start -= step
        file.seek(start)
        data = file.read(step) + data
    if not lines:
        return b"", end
    ended = data.endswith(b"\n")
    kept = (data[:-1] if ended else data).split(b"\n")[-lines:]
    return b"\n".join(kept) + (b"\n" if ended else b""), end


def _local(path: Path, lines: int, watch: _Watch | None, write: Write) -> None:
    """Print the end of the log at *path*; while *watch* says the run goes on, what follows."""
    file = _open(path)
    if file is None and watch is None:
        raise LogsError(f"no log file {path}")
    try:
        position = 0
        if file is not None:
            text, position = last_lines(file, lines)
            write(text)
        while watch is not None:
            ended = watch.ended(time.monotonic())  # before the last read: nothing is missed
            file, position = _grown(path, file, position, write)
            if ended:
                if file is None:
                    raise LogsError(f"no log file {path}")
                return
            time.sleep(FILE_POLL)
    finally:
        if file is not None:
            file.close()


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")  # closed by the caller
    except FileNotFoundError:
        return None


def _grown(
    path: Path, file: BinaryIO | None, position: int, write: Write
) -> tuple[BinaryIO | None, int]:
    """Print what has been added to the log since *position*; a log made anew from its start."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return file, position
    if file is None or info.st_ino != os.fstat(file.fileno()).st_ino or info.st_size < position:
        if file is not None:
            file.close()
        file, position = _open(path), 0
        if file is None:
            return None, 0
    file.seek(position)
    while chunk := file.read(_BLOCK):
        write(chunk)
        position += len(chunk)
    return file, position


def _remote(
    host: Host, path: str, lines: int, watch: _Watch | None, control: str | None, write: Write
) -> None:
    """Print the end of the log at *path* on *host* through ssh; with *watch*, ``tail -F``
    until the run ends, when the ssh call is ended."""
    argv = ssh.ssh_argv(host, ssh.log_line(path, lines, watch is not None), control)
    with tempfile.TemporaryFile() as err:
        # A session of its own: Ctrl-C is this command's to handle, and it ends ssh.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, start_new_session=True)  # fmt: skip
        stopped = False
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                stop_at = None
                while True:
                    if selector.select(FILE_POLL):
                        chunk = os.read(proc.stdout.fileno(), _BLOCK)
                        if not chunk:
                            break
                        write(chunk)
                    now = time.monotonic()
                    if watch is not None and stop_at is None and watch.ended(now):
                        stop_at = now + DRAIN
                    if stop_at is not None and now >= stop_at:
                        stopped = True
                        break
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                returncode = proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                returncode = proc.wait()
            proc.stdout.close()
        if returncode != 0 and not stopped:
            err.seek(0)
            failure = ssh.parse_failure(returncode, err.read().decode(errors="replace"))
            raise LogsError(f"{host.name}: {failure.message}")
