"""Reading Slurm's answers: job ids, queue and accounting lines, and what each state means.

The sacct and OUT_OF_MEMORY lines are as Slurm 22.05 prints them: the test cluster has
no accounting database and no cgroups, so those cannot be produced there.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import attrs
import pytest

from nowcastkit import NextWorker, slurm
from nowcastkit.config import Config
from nowcastkit.hosts import Host
from nowcastkit.manager.cluster import SlurmLauncher

pytestmark = pytest.mark.timeout(30)

HOST = Host("nibi", "/opt/py/bin/python", "/opt/nowcast.yaml", None, envvars="/opt/my env",
            launcher="slurm", run_dir="/scratch/runs",
            sbatch_options=("--account=rrg-x",))  # fmt: skip


def test_sbatch_names_the_job_for_its_run_and_never_requeues_it():
    argv = slurm.sbatch_argv(HOST, "4f1c", "run_model", 7200.5)
    assert argv == [
        "sbatch", "--parsable", "--no-requeue", "--job-name=nk-4f1c",
        "--output=/scratch/runs/run_model-4f1c.log", "--open-mode=append",
        "--time=121", "--account=rrg-x",
    ]  # fmt: skip
    assert "--time" not in " ".join(slurm.sbatch_argv(HOST, "4f1c", "run_model", None))


def test_the_job_script_sources_envvars_then_execs_the_worker_quoted():
    script = slurm.job_script(HOST, ["-m", "pkg.run", "a b", "$(id)"], "4f1c")
    first, run_id, source, run = script.splitlines()
    assert first == "#!/bin/sh" and source == ". '/opt/my env' || exit 126"
    assert run_id == "NOWCASTKIT_RUN_ID=4f1c; export NOWCASTKIT_RUN_ID"
    assert shlex.split(run) == ["exec", "/opt/py/bin/python", "-m", "pkg.run",
                                "/opt/nowcast.yaml", "a b", "$(id)"]  # fmt: skip


@pytest.mark.parametrize(("out", "job"), [("42\n", 42), ("42;cedar\n", 42), ("", None),
                                          ("Submitted batch job 42\n", None)])  # fmt: skip
def test_a_job_id_is_read_only_from_parsable_output(out, job):
    assert slurm.parse_submit(out) == job


def test_squeue_lines_give_each_jobs_state_and_wait_status():
    out = ("nowcastkit squeue\n1|nk-a|FAILED|NonZeroExitCode|768|\n2|nk-b|RUNNING|None|0|\n"
           "3|nk-c|FAILED|JobLaunchFailure|9|\n4|other|RUNNING|None|0|\n"
           "nowcastkit queried\n")  # fmt: skip
    assert slurm.parse_query(out) == {
        "nk-a": slurm.Job(1, "nk-a", "FAILED", "NonZeroExitCode", 3),
        "nk-b": slurm.Job(2, "nk-b", "RUNNING", "None", 0),
        "nk-c": slurm.Job(3, "nk-c", "FAILED", "JobLaunchFailure", -9),
    }


def test_sacct_lines_give_each_jobs_state_and_exit_code():
    out = ("nowcastkit sacct\n7|nk-a|CANCELLED by 1000|None|0:15\n8|nk-b|OUT_OF_MEMORY|None|0:125\n"
           "9|nk-c|FAILED|NonZeroExitCode|3:0\nnowcastkit queried\n")  # fmt: skip
    found = slurm.parse_query(out)
    assert found["nk-a"] == slurm.Job(7, "nk-a", "CANCELLED", "None", -15)
    assert slurm.judge(found["nk-b"], 0, 60) == slurm.Verdict(True, None, "out of memory")
    assert found["nk-c"].status == 3


def test_a_query_cut_short_proves_nothing():
    assert slurm.parse_query("nowcastkit squeue\n1|nk-a|RUNNING|None|0|\n") is None
    assert slurm.parse_query("") is None


@pytest.mark.parametrize(
    ("job", "pending_for", "verdict"),
    [
        (None, 0, slurm.Verdict(True, None, "left the queue without reporting")),
        (slurm.Job(1, "nk-a", "COMPLETED", status=0), 0,
         slurm.Verdict(True, 0, "exited without reporting to the manager")),
        (slurm.Job(1, "nk-a", "TIMEOUT", "TimeLimit", -15), 0,
         slurm.Verdict(True, None, "slurm time limit")),
        (slurm.Job(1, "nk-a", "NODE_FAIL", "NodeDown"), 0, slurm.Verdict(True, None, "NODE_FAIL")),
        (slurm.Job(1, "nk-a", "PENDING", "Priority"), 10, slurm.Verdict(False)),
        (slurm.Job(1, "nk-a", "PENDING", "PartitionConfig"), 0,
         slurm.Verdict(False, reason="pending: PartitionConfig", cancel=True)),
        (slurm.Job(1, "nk-a", "PENDING", "Resources"), 61,
         slurm.Verdict(False, reason="pending for more than 60 s (Resources)", cancel=True)),
        (slurm.Job(1, "nk-a", "RUNNING"), 1000, slurm.Verdict(False)),
    ],
)  # fmt: skip
def test_what_each_state_means_for_the_run(job, pending_for, verdict):
    assert slurm.judge(job, pending_for, 60) == verdict


def test_a_submit_that_may_have_gone_through_is_told_from_a_refusal():
    lost = "sbatch: error: Batch job submission failed: Unable to contact slurm controller"
    assert slurm.submit_failure(1, lost) == (lost, True)
    refused = "sbatch: error: Batch job submission failed: Invalid partition name specified"
    assert slurm.submit_failure(1, refused) == (refused, False)
    assert slurm.submit_failure(255, "Connection closed by 10.0.0.1 port 22")[1]


def test_a_report_file_host_tells_the_worker_where_to_leave_its_message():
    host = attrs.evolve(HOST, report="file")
    lines = slurm.job_script(host, ["-m", "pkg.run"], "4f1c").splitlines()
    assert (
        lines[2] == "NOWCASTKIT_REPORT_FILE=/scratch/runs/4f1c.msg; export NOWCASTKIT_REPORT_FILE"
    )


@attrs.define(eq=False)
class Unrun(SlurmLauncher):
    """A launcher whose commands are kept, to be answered by the test, instead of run."""

    made: list = attrs.field(factory=list)

    def _run(self, argv, then, stdin=None) -> None:
        self.made.append((argv, then))

    def answer(self, what: str, returncode: int = 0, out: str = "") -> None:
        [call] = [call for call in self.made if what in " ".join(call[0])]
        self.made.remove(call)
        call[1](returncode, out, "")


def test_a_job_submitted_while_a_query_is_in_flight_is_left_to_the_next_query():
    launcher = Unrun(attrs.evolve(HOST, poll_interval=60.0))
    config = Config({"message registry": {"workers": {}}}, Path("/sys/nowcast.yaml"))
    launcher.start(NextWorker("a"), config, "r1", Path("/x"))
    launcher.answer("nk-r1", out="1\n")
    launcher.tick(time.monotonic())  # the first query: it asks about r1 alone
    [(query, _)] = launcher.made
    assert "nk-r1" in query[-1] and launcher.queries == 1
    b = launcher.start(NextWorker("b"), config, "r2", Path("/x"))
    launcher.answer("nk-r2", out="2\n")
    launcher.answer("nowcastkit queried", out="nowcastkit squeue\n1|nk-r1|RUNNING|None|0|\n"
                                              "nowcastkit queried\n")  # fmt: skip
    assert b.state == "queued" and launcher.made == []  # neither judged gone, nor resubmitted
    launcher.pace.soon, launcher.pace.next_look = [], 0.0  # the next poll is due
    launcher.tick(time.monotonic())
    [(query, _)] = launcher.made
    assert "nk-r1" in query[-1] and "nk-r2" in query[-1]


def test_a_recovered_run_not_found_is_submitted_with_its_registry_time_limit():
    launcher = Unrun(HOST)
    launcher.adopt("r3", NextWorker("a"), None, timeout=120)  # committed, no job id recorded
    launcher.tick(time.monotonic())
    launcher.answer("nowcastkit queried", out="nowcastkit squeue\nnowcastkit queried\n")
    [(submit, _)] = launcher.made
    assert "--job-name=nk-r3" in submit[-1] and "--time=2" in submit[-1]
