"""What the manager asks of Slurm, and how it reads the answers: argument lists and parsers.

    sbatch_argv(host, run_id, "run_model", timeout=7200)   # the job script goes on stdin
    job_script(host, ["-m", "pkg.run_model", "--run-date", "2026-12-01"])
    query_line(["nk-4f1c…", "nk-9a2b…"])                   # one look at all of a host's jobs
    parse_query(stdout)                                     # {"nk-4f1c…": Job(...)}
    judge(job, pending_for, pending_timeout)                # running, or how it ended

The system's own ``sbatch``, ``squeue``, ``sacct`` and ``scancel`` are run, on the login
node directly or through the ssh launcher. A run's job is named ``nk-<run id>``, so a
submit whose answer was lost can be found again by name; its id is kept too, as ids
start again after a controller state reset. ``--no-requeue``: Slurm's default would run
a worker again under the same id after a node failure.

One query asks about every job of a host: ``sacct`` where accounting works, else
``squeue --states=all``. A query that fails proves nothing, and ``squeue -j`` is never
used to conclude a job is gone (its exit 1 means an unknown id and an unreachable
controller alike). A job neither command knows any more left the queue without
reporting: never a success.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence

import attrs

from nowcastkit.hosts import Host
from nowcastkit.worker import REPORT_FILE_ENV, RUN_ID_ENV

__all__ = [
    "ENDED",
    "NEVER_CLEARS",
    "Job",
    "Verdict",
    "job_name",
    "job_script",
    "judge",
    "message_path",
    "parse_query",
    "parse_submit",
    "query_line",
    "sbatch_argv",
    "scancel_argv",
    "submit_failure",
]

JOB_PREFIX = "nk-"

#: The states of a job that has ended, and the crash reason each gives a run that did not
#: report (FAILED and COMPLETED say it with the exit status).
ENDED = {
    "COMPLETED": "exited without reporting to the manager",
    "FAILED": "exited without reporting to the manager",
    "CANCELLED": "cancelled",
    "TIMEOUT": "slurm time limit",
    "OUT_OF_MEMORY": "out of memory",
    "NODE_FAIL": "NODE_FAIL",
    "BOOT_FAIL": "BOOT_FAIL",
    "PREEMPTED": "PREEMPTED",
    "DEADLINE": "DEADLINE",
    "REVOKED": "REVOKED",
}
#: Pending reasons that do not clear by waiting: the job is cancelled at once.
NEVER_CLEARS = frozenset({
    "PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
    "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed",
    "DependencyNeverSatisfied",
})  # fmt: skip
_SQUEUE_FORMAT = "JobID:|,Name:|,State:|,Reason:|,exit_code:|"
_SACCT_FIELDS = "JobID,JobName,State,Reason,ExitCode"


def job_name(run_id: str) -> str:
    return f"{JOB_PREFIX}{run_id}"


def log_path(host: Host, worker: str, run_id: str) -> str:
    """Where run *run_id*'s job writes its output, on the cluster."""
    return f"{host.run_dir}/{worker}-{run_id}.log"


def message_path(host: Host, run_id: str) -> str:
    """Where a run on a ``report: file`` host leaves its final message."""
    return f"{host.run_dir}/{run_id}.msg"


def job_script(host: Host, worker_args: Sequence[str], run_id: str = "") -> str:
    """The batch script: the run id in the environment, the host's ``envvars`` sourced,
    then the worker exec'd.

    The run id is set here rather than with ``--export=ALL,NOWCASTKIT_RUN_ID=…``: with a
    variable in ``--export``, slurmd first runs the user's login shell, which took a job
    1-2 s longer to start (measured, Slurm 22.05).
    """
    module_part, args = list(worker_args[:2]), list(worker_args[2:])
    lines = ["#!/bin/sh", f"{RUN_ID_ENV}={shlex.quote(run_id)}; export {RUN_ID_ENV}"]
    if host.report == "file":
        lines.append(f"{REPORT_FILE_ENV}={shlex.quote(message_path(host, run_id))}; "
                     f"export {REPORT_FILE_ENV}")  # fmt: skip
    if host.envvars:
        lines.append(f". {shlex.quote(host.envvars)} || exit 126")
    lines.append("exec " + shlex.join([host.python, *module_part, host.config_file, *args]))
    return "\n".join(lines) + "\n"


def sbatch_argv(host: Host, run_id: str, worker: str, timeout: float | None) -> list[str]:
    """sbatch for run *run_id*; *timeout* (the registry's, seconds) becomes ``--time``."""
    argv = [
        "sbatch", "--parsable", "--no-requeue", f"--job-name={job_name(run_id)}",
        f"--output={log_path(host, worker, run_id)}", "--open-mode=append",
    ]  # fmt: skip
    if timeout:
        argv.append(f"--time={max(1, math.ceil(timeout / 60))}")
    return [*argv, *host.sbatch_options]


def scancel_argv(job_id: int) -> list[str]:
    return ["scancel", str(job_id)]


def query_line(names: Sequence[str]) -> str:
    """The shell line that reports on the jobs *names*: sacct's answer, else squeue's."""
    joined = ",".join(names)
    sacct = shlex.join(["sacct", "-n", "-P", "-X", "-S", "now-30days", f"--name={joined}",
                        "-o", _SACCT_FIELDS])  # fmt: skip
    squeue = shlex.join(["squeue", "-h", "--states=all", f"--name={joined}",
                         "-O", _SQUEUE_FORMAT])  # fmt: skip
    return (f"if out=$({sacct} 2>/dev/null); then echo 'nowcastkit sacct'; "
            f"printf '%s\\n' \"$out\"; else echo 'nowcastkit squeue'; {squeue} || exit 1; fi; "
            "echo 'nowcastkit queried'")  # fmt: skip


@attrs.frozen
class Job:
    """One job as the queue or the accounting reported it."""

    job_id: int
    name: str
    state: str
    reason: str = "None"
    #: The exit status (negative: the signal), when known.
    status: int | None = None


@attrs.frozen
class Verdict:
    """What a job's state means for its run: still going, or ended (and why), or stuck."""

    ended: bool
    status: int | None = None
    reason: str | None = None
    #: Stuck pending: to be cancelled, and then a crash naming the reason.
    cancel: bool = False


def parse_submit(stdout: str) -> int | None:
    """The job id ``sbatch --parsable`` printed (``ID`` or ``ID;cluster``), or None."""
    match = re.fullmatch(r"\s*(\d+)(?:;\S+)?\s*", stdout)
    return int(match[1]) if match else None


def submit_failure(returncode: int, stderr: str) -> tuple[str, bool]:
    """sbatch's or ssh's message, and whether the job may have been submitted all the same."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else f"sbatch exited {returncode} without a message"
    ambiguous = returncode == 255 or any(
        marker in stderr
        for marker in ("Unable to contact", "Socket timed out", "Zero Bytes", "timed out")
    )
    return message, ambiguous


def parse_query(stdout: str) -> dict[str, Job] | None:
    """The jobs a query reported, by name; None when its output is cut short or not one's."""
    lines = stdout.splitlines()
    if "nowcastkit queried" not in lines or not lines:
        return None
    source = next((line for line in lines if line in ("nowcastkit sacct", "nowcastkit squeue")),
                  None)  # fmt: skip
    if source is None:
        return None
    found: dict[str, Job] = {}
    for line in lines[lines.index(source) + 1 : lines.index("nowcastkit queried")]:
        fields = line.split("|")
        if len(fields) < 5 or not fields[0].isdigit() or not fields[1].startswith(JOB_PREFIX):
            continue
        job_id, name, state, reason, code = fields[:5]
        state = state.split()[0] if state else "UNKNOWN"  # sacct: "CANCELLED by 1000"
        status = _sacct_status(code) if source == "nowcastkit sacct" else _wait_status(code)
        job = Job(int(job_id), name, state, reason or "None", status)
        previous = found.get(name)
        if previous is None or job.job_id >= previous.job_id:
            found[name] = job
    return found


def _wait_status(text: str) -> int | None:
    """squeue's raw wait status: exit 3 is 768, SIGKILL is 9."""
    if not text.strip().isdigit():
        return None
    raw = int(text)
    return -(raw & 0x7F) if raw & 0x7F else raw >> 8


def _sacct_status(text: str) -> int | None:
    """sacct's ``EXIT:SIGNAL``."""
    match = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if match is None:
        return None
    code, sig = int(match[1]), int(match[2])
    return -sig if sig else code


def judge(job: Job | None, pending_for: float, pending_timeout: float) -> Verdict:
    """What *job* (None: no longer known to Slurm) means for its run."""
    if job is None:
        return Verdict(True, None, "left the queue without reporting")
    if job.state in ENDED:
        status = job.status if job.state in ("COMPLETED", "FAILED") else None
        if job.state == "COMPLETED" and status is None:
            status = 0
        return Verdict(True, status, ENDED[job.state])
    if job.state == "PENDING":
        if job.reason in NEVER_CLEARS:
            return Verdict(False, reason=f"pending: {job.reason}", cancel=True)
        if pending_for > pending_timeout:
            return Verdict(False, reason=f"pending for more than {pending_timeout:.0f} s "
                                         f"({job.reason})", cancel=True)  # fmt: skip
    return Verdict(False)
