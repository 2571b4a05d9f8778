"""Runs as Slurm jobs, submitted on the login node directly or over ssh, tracked by one query.

    launcher = SlurmLauncher(remote_host(config, "nibi"), control_path)
    job = launcher.start(worker, config, run_id, log_path)   # sbatch is in flight
    launcher.tick(time.monotonic())                          # answers, and a query if due
    job.poll()                                               # (True, status) once it ended

Like :mod:`.remote`, nothing here waits: sbatch, the query, scancel and the fetch of
a log's last lines each run in the background. The worker's own message is how
its run is known to be done; the query is the safety net, once per ``poll
interval`` for all of the host's jobs, with quick looks 5, 15 and 45 s after a
submit and a back-off after a failed query. A submit that may have gone through
(the controller unreachable, ssh cut) is looked up by job name before it is made
again; one sbatch refused outright is a launch failure.
"""

from __future__ import annotations

import logging
import shlex
import signal
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from nowcastkit import slurm, ssh
from nowcastkit.config import Config, worker_timeout
from nowcastkit.hosts import Host
from nowcastkit.manager.calls import Pace
from nowcastkit.next_worker import NextWorker

__all__ = ["SlurmJob", "SlurmLauncher"]

log = logging.getLogger("manager")

LOOKS_AFTER_SUBMIT = (5.0, 15.0, 45.0)
LOOKS_AFTER_REPORT = (2.0, 10.0, 30.0)
#: The first wait after a failed query; doubled each time, up to the poll interval.
BACKOFF = 5.0

SUBMITTING, LOOKUP, QUEUED, ENDING, ENDED, FAILED = (
    "submitting", "lookup", "queued", "ending", "ended", "failed")  # fmt: skip


@attrs.define(eq=False)
class SlurmJob:
    """A run submitted as a Slurm job (a :class:`~.launchers.Process`)."""

    launcher: SlurmLauncher
    run_id: str
    worker: NextWorker
    job_id: int | None = None
    state: str = SUBMITTING
    submitted: float = attrs.field(factory=time.time)
    slurm_state: str = ""
    status: int | None = None
    reason: str | None = None
    tail: tuple[str, ...] = ()
    failure: str | None = None
    pending_signal: int | None = None
    #: The registry timeout, seconds: sbatch's ``--time`` (a resubmit keeps it).
    timeout: float | None = None
    #: Why it was cancelled, when nowcastkit cancelled it for being stuck.
    stuck: str | None = None
    pid: None = None
    wakes: bool = True

    def poll(self) -> tuple[bool, int | None]:
        return self.state == ENDED, self.status

    def signal(self, signum: int) -> None:
        self.launcher.signal(self, signum)

    def reported(self) -> None:
        self.launcher.look_soon(time.monotonic(), LOOKS_AFTER_REPORT, shared=True)

    @property
    def launch_failure(self) -> str | None:
        return self.failure if self.state == FAILED else None

    @property
    def log(self) -> str:
        host = self.launcher.host
        return f"{host.name}:{slurm.log_path(host, self.worker.name, self.run_id)}"

    def crash_details(self) -> dict:
        details = {"host": self.launcher.host.name, "job id": self.job_id,
                   "slurm state": self.slurm_state, "log": self.log,
                   "last output": list(self.tail)}  # fmt: skip
        if self.reason:
            details["reason"] = self.reason
        return details

    def handle(self) -> dict:
        return {"launcher": "slurm", "job id": self.job_id, "job name": slurm.job_name(self.run_id),
                "submitted": self.submitted, "log": self.log}  # fmt: skip


@attrs.define(eq=False)
class SlurmLauncher:
    """Submits and tracks the jobs of one Slurm host."""

    host: Host
    control: str | None = None
    jobs: dict[str, SlurmJob] = attrs.field(factory=dict)
    pace: Pace = attrs.field(factory=Pace)
    querying: bool = False
    backoff: float = BACKOFF
    #: Runs whose job id became known since the supervisor last asked, with their handles.
    located: dict[str, tuple[None, dict]] = attrs.field(factory=dict)
    #: How many queries were made: the poll load, for the benchmarks and the tests.
    queries: int = 0
    #: Final messages left in files by runs on a ``report: file`` host, not yet handled.
    reports: list[str] = attrs.field(factory=list)

    def start(self, worker: NextWorker, config: Config, run_id: str, log_path: Path) -> SlurmJob:
        job = SlurmJob(self, run_id, worker, timeout=worker_timeout(config, worker.name))
        self.jobs[run_id] = job
        self._submit(job)
        return job

    def adopt(self, run_id: str, worker: NextWorker, handle: dict | None,
              timeout: float | None = None) -> SlurmJob:  # fmt: skip
        """Track a job an earlier manager submitted; one with no job id is looked up by name
        (and submitted, with *timeout* as its ``--time``, only if not found)."""
        handle = handle or {}
        job_id = handle.get("job id") if isinstance(handle.get("job id"), int) else None
        job = SlurmJob(self, run_id, worker, job_id, QUEUED if job_id else LOOKUP,
                       float(handle.get("submitted") or time.time()), timeout=timeout)  # fmt: skip
        self.jobs[run_id] = job
        self.look_soon(time.monotonic(), (0.0,))
        return job

    def tick(self, now: float) -> None:
        due = self.pace.tick(now)
        waiting = [job for job in self.jobs.values() if job.state in (QUEUED, LOOKUP)]
        if not due or not waiting or self.querying:
            return
        self.pace.looked(now, self.host.poll_interval)
        self.querying, self.queries = True, self.queries + 1
        names = [slurm.job_name(job.run_id) for job in waiting]
        asked = {job.run_id for job in waiting}
        self._run(["sh", "-c", slurm.query_line(names)],
                  lambda code, out, err: self._queried(asked, code, out, err))  # fmt: skip

    def wake_at(self, now: float) -> float | None:
        return self.pace.wake_at() if self.jobs else None

    def look_soon(self, now: float, after: tuple[float, ...], shared: bool = False) -> None:
        self.pace.look_soon(now, after, shared)

    def forget(self, run_id: str) -> None:
        self.jobs.pop(run_id, None)

    def signal(self, job: SlurmJob, signum: int) -> None:
        """Deadline or cancel: scancel the job (again, for SIGKILL); stop a submit not made."""
        if job.state in (SUBMITTING, LOOKUP):
            job.pending_signal = signum
        elif job.state == QUEUED and job.job_id is not None:
            self._cancel(job, signal.Signals(signum).name)

    def _cancel(self, job: SlurmJob, why: str) -> None:
        def done(returncode: int, out: str, err: str) -> None:
            if returncode != 0:
                message = slurm.submit_failure(returncode, err)[0]
                log.warning("scancel of job %s (%s worker run %s) failed: %s",
                            job.job_id, job.worker.name, job.run_id, message)  # fmt: skip
            self.look_soon(time.monotonic(), (1.0, 5.0))

        log.info("cancelling job %s of %s worker run %s on %s (%s)", job.job_id, job.worker.name,
                 job.run_id, self.host.name, why)  # fmt: skip
        self._run(slurm.scancel_argv(job.job_id), done)

    def _run(self, argv: list[str], then: Callable[[int, str, str], None],
             stdin: str | None = None) -> None:  # fmt: skip
        """Run *argv* on the login node: here, or over ssh."""
        if self.host.ssh_host is not None:
            line = argv[2] if argv[:2] == ["sh", "-c"] else shlex.join(argv)
            argv = ssh.ssh_argv(self.host, line, self.control)
        self.pace.start(argv, then, stdin)

    def _submit(self, job: SlurmJob) -> None:
        job.state = SUBMITTING
        argv = slurm.sbatch_argv(self.host, job.run_id, job.worker.name, job.timeout)
        args = ["-m", job.worker.module, *job.worker.args]
        script = slurm.job_script(self.host, args, job.run_id)
        line = f"mkdir -p -- {shlex.quote(self.host.run_dir)} && {shlex.join(argv)}"
        self._run(["sh", "-c", line],
                  lambda code, out, err: self._submitted(job, code, out, err), script)  # fmt: skip

    def _submitted(self, job: SlurmJob, returncode: int, out: str, err: str) -> None:
        job_id = slurm.parse_submit(out) if returncode == 0 else None
        if job_id is not None:
            self._queued(job, job_id, "submitted as")
            return
        message, ambiguous = slurm.submit_failure(returncode, err)
        if ambiguous:
            job.state = LOOKUP
            log.warning("submit of %s worker run %s on %s may have failed (%s); looking for "
                        "job %s before trying again", job.worker.module, job.run_id,
                        self.host.name, message, slurm.job_name(job.run_id))  # fmt: skip
            self.look_soon(time.monotonic(), (BACKOFF,))
        else:
            job.state, job.failure = FAILED, f"sbatch refused: {message}"
            log.error("launch of %s worker run %s on %s failed: sbatch refused: %s",
                      job.worker.module, job.run_id, self.host.name, message)  # fmt: skip

    def _queued(self, job: SlurmJob, job_id: int, how: str) -> None:
        job.job_id, job.state = job_id, QUEUED
        self.located[job.run_id] = (None, job.handle())
        log.info("%s worker run %s on %s %s job %d",
                 job.worker.name, job.run_id, self.host.name, how, job_id)  # fmt: skip
        self.look_soon(time.monotonic(), LOOKS_AFTER_SUBMIT)
        if job.pending_signal is not None:
            self._cancel(job, "its deadline passed while it was submitted")

    def _queried(self, asked: set[str], returncode: int, out: str, err: str) -> None:
        """Act on the answer about the runs *asked* of; a job submitted while the query was
        in flight is not in it, and is left for the next one (its looks are due)."""
        self.querying = False
        now = time.monotonic()
        found = slurm.parse_query(out) if returncode == 0 else None
        if found is None:
            message = slurm.submit_failure(returncode, err)[0] if returncode else \
                f"output cut short: {out[-200:]!r}"  # fmt: skip
            log.warning("could not query the jobs on %s: %s; trying again in %.0f s",
                        self.host.name, message, self.backoff)  # fmt: skip
            self.pace.looked(now, self.backoff)
            self.backoff = min(self.backoff * 2, self.host.poll_interval)
            return
        self.backoff = BACKOFF
        for job in [job for job in self.jobs.values() if job.run_id in asked]:
            seen = found.get(slurm.job_name(job.run_id))
            if job.state == LOOKUP:
                if seen is not None:
                    self._queued(job, seen.job_id, "found, submitted earlier as")
                elif job.pending_signal is not None:
                    job.state, job.failure = FAILED, "cancelled before it was submitted"
                else:
                    self._submit(job)
            elif job.state == QUEUED:
                self._judge(job, seen)

    def _judge(self, job: SlurmJob, seen: slurm.Job | None) -> None:
        if seen is not None:
            job.job_id, job.slurm_state = seen.job_id, seen.state
        verdict = slurm.judge(seen, time.time() - job.submitted, self.host.pending_timeout)
        if verdict.cancel and job.stuck is None:
            job.stuck = verdict.reason
            log.error("job %s of %s worker run %s on %s is %s", job.job_id, job.worker.name,
                      job.run_id, self.host.name, verdict.reason)  # fmt: skip
            self._cancel(job, verdict.reason or "stuck")
        if not verdict.ended:
            return
        job.status, job.reason, job.state = verdict.status, job.stuck or verdict.reason, ENDING
        if seen is None:
            job.slurm_state = "(gone)"
        path = slurm.log_path(self.host, job.worker.name, job.run_id)
        line = shlex.join(["tail", "-n", str(ssh.TAIL_LINES), "--", path])
        if self.host.report == "file":
            message = shlex.quote(slurm.message_path(self.host, job.run_id))
            line += f"; echo {_MESSAGE_MARK}; cat -- {message} 2>/dev/null"

        def fetched(returncode: int, out: str, err: str) -> None:
            tail, _, message = out.partition(f"{_MESSAGE_MARK}\n")
            job.tail = tuple(tail.splitlines()[-ssh.TAIL_LINES :])
            if message.strip():
                self.reports.append(message)
            job.state = ENDED

        self._run(["sh", "-c", line], fetched)


_MESSAGE_MARK = "nowcastkit message"
