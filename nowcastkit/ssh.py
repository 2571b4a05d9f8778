"""What the manager asks of another host over ssh: argument lists, never shell lines from data.

    ssh_argv(host, remote_line, control_path)          # ['ssh', '-o', 'BatchMode=yes', ...]
    launch_line(host, run_id, ["-m", "pkg.worker", "--run-date", "2026-12-01"])
    parse_launch(stdout)                                # the remote pid
    poll_line(host, {"4f1c…": 31337})                   # one look at every run there
    parse_poll(stdout)                                  # {"4f1c…": RemoteState(...)}

It runs the system's OpenSSH client, so the user's ``~/.ssh/config`` applies (ProxyJump,
certificates, agents). ssh joins what follows the host into one string that the
remote shell splits again, so that string is built here with :func:`shlex.join`:
an argument such as ``'; rm -rf ~'`` reaches the worker as itself. The options
make a call fail rather than hang: no password prompts (``BatchMode``), a
connect timeout, and keep-alives that notice a server gone quiet; one connection
per host is shared (``ControlMaster``) so that a launch or a poll costs a round trip.

A detached run is started by a small POSIX ``sh`` wrapper under ``setsid``: it writes
``<run dir>/<run>.pid``, sends the worker's output to ``<run>.log`` and, when the
worker ends, its exit status (128 + N for signal N, as sh reports it) to
``<run>.status``. Starting a run id twice starts it once. The scripts are one line
without ``!``, so that csh and tcsh login shells pass them on unharmed.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from nowcastkit.hosts import Host, remote_host

#: Its warnings are the manager's (the operator tools only share its connections).
log = logging.getLogger("manager")

__all__ = [
    "SSH_OPTIONS",
    "RemoteState",
    "SshFailure",
    "kill_line",
    "launch_line",
    "log_line",
    "parse_failure",
    "parse_launch",
    "parse_poll",
    "poll_line",
    "ssh_argv",
    "ssh_command",
]

#: Fail rather than hang: no prompts, a connect timeout, and a dead server noticed in 2 min.
SSH_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=30",
    "-o", "ServerAliveCountMax=4",
)  # fmt: skip
#: Lines of a run's remote log sent back with its end.
TAIL_LINES = 20

# Each is run as ``sh -c SCRIPT nowcastkit ARGS...``; the ARGS are the data.
_RUN = (
    "dir=$1 run=$2 envvars=$3; shift 3; "
    'echo $$ >"$dir/$run.pid.new" && mv -f -- "$dir/$run.pid.new" "$dir/$run.pid"; '
    "trap : HUP INT TERM; "
    'if [ -z "$envvars" ] || [ -r "$envvars" ]; then '
    'if [ -n "$envvars" ]; then . "$envvars"; fi; "$@"; status=$?; '
    'else echo "nowcastkit: cannot read envvars file $envvars"; status=126; fi; '
    'echo "$status" >"$dir/$run.status.new" && mv -f -- "$dir/$run.status.new" "$dir/$run.status"'
)
_LAUNCH = (
    "run_script=$1 dir=$2 run=$3; shift 3; "
    '[ -d "$dir" ] || mkdir -p -- "$dir" || exit 97; '
    'if (set -C; : >"$dir/$run.launch") 2>/dev/null; then '
    "NOWCASTKIT_RUN_ID=$run; export NOWCASTKIT_RUN_ID; "
    'setsid sh -c "$run_script" nowcastkit "$dir" "$run" "$@" </dev/null >>"$dir/$run.log" 2>&1 & '
    'fi; n=0; while [ $n -lt 1000 ] && [ -z "$(cat -- "$dir/$run.pid" 2>/dev/null)" ]; do '
    "sleep 0.01 2>/dev/null || sleep 1; n=$((n+1)); done; "
    'pid=$(cat -- "$dir/$run.pid" 2>/dev/null) && [ -n "$pid" ] || exit 98; '
    'echo "nowcastkit pid $pid"'
)
# A pid is the run's if its environment names the run (not a pid reused since); ps would
# not do, as it cuts its lines at 80 columns without a terminal.
_OURS = (
    'ours() { if [ -r "/proc/$1/environ" ]; then tr "\\000" "\\n" <"/proc/$1/environ" '
    '| grep -qxF "NOWCASTKIT_RUN_ID=$2"; else kill -0 "$1" 2>/dev/null; fi; }; '
)
_POLL = (
    _OURS + "dir=$1; shift; "
    "while [ $# -ge 2 ]; do run=$1 pid=$2; shift 2; "
    'if [ -f "$dir/$run.status" ]; then state="ended $(cat -- "$dir/$run.status")"; '
    'elif ours "$pid" "$run"; then state=running; '
    'elif [ -f "$dir/$run.status" ]; then state="ended $(cat -- "$dir/$run.status")"; '
    "else state=gone; fi; "
    'echo "nowcastkit run $run $state"; '
    f'case $state in running) ;; *) tail -n {TAIL_LINES} -- "$dir/$run.log" 2>/dev/null '
    "| sed 's/^/| /';; esac; "
    'done; echo "nowcastkit polled"'
)
_KILL = (
    _OURS + "sig=$1 run=$2 pid=$3; "
    'if ours "$pid" "$run"; then '
    'kill -s "$sig" -- "-$pid" 2>/dev/null || kill -s "$sig" "$pid"; echo "nowcastkit signalled"; '
    'else echo "nowcastkit not running"; fi'
)


def ssh_argv(host: Host, remote: str, control_path: str | None = None) -> list[str]:
    """The argv that runs the shell line *remote* on *host*, sharing one connection there.

    The host's ``ssh options`` come before the defaults so they can override them (ssh
    keeps the first value it is given for an option).
    """
    shared = () if control_path is None else (
        "-o", "ControlMaster=auto", "-o", f"ControlPath={control_path}",
        "-o", "ControlPersist=600",
    )  # fmt: skip
    target = host.ssh_host or host.name
    return ["ssh", *host.ssh_options, *SSH_OPTIONS, *shared, "-T", "--", target, remote]


def _worker_argv(host: Host, worker_args: Sequence[str]) -> list[str]:
    module_part, args = list(worker_args[:2]), list(worker_args[2:])
    return [host.python, *module_part, host.config_file, *args]


def ssh_command(
    config: Any, host: str, worker_args: Sequence[str], env: Mapping[str, str] | None = None
) -> list[str]:
    """The argv that runs ``python WORKER_ARGS`` on *host* for as long as its ssh session lasts.

    *worker_args* are ``["-m", module, *args]``; the remote ``config file`` is put after the
    module, as a local launch puts the local one. *env* is set in the worker's environment.
    """
    entry = remote_host(config, host)
    argv = _worker_argv(entry, worker_args)
    assignments = [f"{name}={value}" for name, value in (env or {}).items()]
    remote = shlex.join(["exec", "env", *assignments, *argv] if assignments else ["exec", *argv])
    if entry.envvars:
        remote = f". {shlex.quote(entry.envvars)} && {remote}"
    return ssh_argv(entry, remote)


def launch_line(host: Host, run_id: str, worker_args: Sequence[str]) -> str:
    """The remote line that starts run *run_id* detached and prints ``nowcastkit pid N``."""
    return shlex.join([
        "sh", "-c", _LAUNCH, "nowcastkit", _RUN, host.run_dir, run_id, host.envvars or "",
        *_worker_argv(host, worker_args),
    ])  # fmt: skip


def poll_line(host: Host, pids: Mapping[str, int]) -> str:
    """The remote line that reports on each run of *pids* (run id to remote pid)."""
    pairs = [str(item) for run_id, pid in pids.items() for item in (run_id, pid)]
    return shlex.join(["sh", "-c", _POLL, "nowcastkit", host.run_dir, *pairs])


def kill_line(run_id: str, pid: int, signal_name: str) -> str:
    """The remote line that sends *signal_name* (``TERM``) to run *run_id*'s process group."""
    return shlex.join(["sh", "-c", _KILL, "nowcastkit", signal_name, run_id, str(pid)])


def log_line(path: str, lines: int, follow: bool = False) -> str:
    """The remote line that prints the last *lines* lines of the log at *path*, and follows
    it if asked (``tail -F``: a log not there yet, or made anew, is waited for)."""
    return shlex.join(["tail", "-n", str(lines), *(["-F"] if follow else []), "--", path])


@attrs.frozen
class RemoteState:
    """What a poll found of one run: still running, ended (with its status), or gone."""

    run_id: str
    ended: bool
    #: The exit status (negative: the signal); None when it left none (killed hard).
    status: int | None = None
    tail: tuple[str, ...] = ()


@attrs.frozen
class SshFailure:
    """Why ssh could not do what was asked, in ssh's own words, and whether to try again."""

    reason: str
    message: str
    retry: bool


_PID = re.compile(r"^nowcastkit pid (\d+)$", re.MULTILINE)
_RUN_LINE = re.compile(r"^nowcastkit run (\S+) (running|gone|ended ?(.*))$")


def parse_launch(stdout: str) -> int | None:
    """The remote pid a launch printed (a login banner may come before it), or None."""
    found = _PID.findall(stdout)
    return int(found[-1]) if found else None


def parse_poll(stdout: str) -> dict[str, RemoteState] | None:
    """Each run a poll reported on, or None when its output is cut short or not a poll's."""
    found: dict[str, RemoteState] = {}
    current, tail, complete = None, [], False
    for line in stdout.splitlines():
        if current is not None and line.startswith("| "):
            tail.append(line[2:])
            continue
        if current is not None:
            found[current.run_id] = attrs.evolve(current, tail=tuple(tail))
            current, tail = None, []
        match = _RUN_LINE.match(line)
        if match:
            run_id, state, status = match.groups()
            current = RemoteState(
                run_id, state != "running", _status(status) if status is not None else None
            )
        elif line == "nowcastkit polled":
            complete = True
    if current is not None:
        found[current.run_id] = attrs.evolve(current, tail=tuple(tail))
    return found if complete else None


def _status(text: str) -> int | None:
    """sh's ``$?``: 128 + N for a worker killed by signal N, given back as -N."""
    if not text.strip().isdigit():
        return None
    value = int(text)
    return -(value - 128) if 128 < value < 128 + 65 else value


_HOST_KEY = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
             "host key for", "No matching host key")  # fmt: skip
_REFUSED_KEY = ("Permission denied",)


def parse_failure(returncode: int, stderr: str) -> SshFailure:
    """Tell apart why an ssh call failed: the host's key, our key, or the host not there."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else f"ssh exited {returncode} without a message"
    if any(marker in stderr for marker in _HOST_KEY):
        return SshFailure("unknown host key", message, retry=False)
    if any(marker in stderr for marker in _REFUSED_KEY):
        return SshFailure("key refused", message, retry=True)
    if returncode == 255:
        return SshFailure("unreachable", message, retry=True)
    return SshFailure("remote error", message, retry=False)
