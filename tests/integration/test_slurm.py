"""Runs as jobs of a real single-node Slurm (munged, slurmctld, slurmd) started by the fixture.

The cluster has no accounting database (``sacct`` says so), so the launcher tracks jobs
with ``squeue --states=all``; its sacct reading is tested on recorded lines in
tests/unit/test_slurm.py. OUT_OF_MEMORY needs cgroups, which this machine's Slurm lacks:
its mapping is tested there too.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import base_config, wait_for
from remote_runs import chain_across, echo_worker, ended, pids_of, starts, unstarted

from nowcastkit import NextWorker
from nowcastkit import store as st
from nowcastkit.config import load_config
from nowcastkit.manager.decide import Launch
from nowcastkit.manager.supervisor import Supervisor

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def cluster_config(tmp_path, monkeypatch):
    """A config whose host ``hpc`` is a Slurm cluster whose login node is this machine."""
    envvars = echo_worker(tmp_path)
    raw = base_config(tmp_path)
    raw["message registry"]["workers"]["echo_args"] = {"crash": "crashed"}
    raw["run"] = {"enabled hosts": {"hpc": {
        "launcher": "slurm", "python": sys.executable, "envvars": str(envvars),
        "config file": str(tmp_path / "nowcast.yaml"), "run dir": str(tmp_path / "slurm runs"),
        "poll interval": 1,
    }}}  # fmt: skip
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return load_config(tmp_path / "nowcast.yaml")


def hpc(config, **entry):
    config["run"]["enabled hosts"]["hpc"].update(entry)
    return config


def run_on(supervisor: Supervisor, run_id: str, *args: str) -> None:
    started, failed = supervisor.start([Launch(run_id, NextWorker("echo_args", args, "hpc"))])
    assert failed == [] and started[0].pid is None


def job_id(supervisor: Supervisor, run_id: str) -> int:
    return starts(supervisor, run_id)[run_id][1]["job id"]


def jobs_named(cluster, run_id: str) -> list[str]:
    done = cluster.run("squeue", "-h", "--states=all", f"--name=nk-{run_id}", "-o", "%i|%T")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_job_runs_the_worker_with_its_arguments_and_ends_as_it_exited(
    slurm, cluster_config, tmp_path
):
    supervisor = Supervisor(cluster_config, tmp_path / "runs")
    run_on(supervisor, "s1", "a b", "'; touch INJECTED")
    [(pid, handle)] = starts(supervisor, "s1").values()
    assert pid is None and handle["launcher"] == "slurm" and handle["job name"] == "nk-s1"
    run = ended(supervisor)
    assert run.status == 0
    payload = run.crash.payload
    assert (payload["reason"], payload["slurm state"]) == (
        "exited without reporting to the manager", "COMPLETED")  # fmt: skip
    assert payload["job id"] == handle["job id"]
    assert payload["last output"] == ["echoed"]
    assert payload["log"] == f"hpc:{tmp_path}/slurm runs/echo_args-s1.log"
    assert yaml.safe_load((tmp_path / "echoed.json").read_text())["argv"][1:] == [
        "a b", "'; touch INJECTED"]  # fmt: skip
    assert not list(tmp_path.rglob("INJECTED"))


def test_an_exit_status_a_kill_and_a_scancel_each_say_what_happened(
    slurm, cluster_config, tmp_path
):
    supervisor = Supervisor(cluster_config, tmp_path / "runs")
    run_on(supervisor, "s2", "--exit", "3")
    run = ended(supervisor)
    assert (run.status, run.crash.payload["slurm state"]) == (3, "FAILED")
    run_on(supervisor, "s3", "--sleep", "60")
    starts(supervisor, "s3")
    wait_for(lambda: pids_of("s3"), "the job to start")
    [worker] = [
        pid for pid in pids_of("s3") if b"echo_args" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    os.kill(worker, signal.SIGKILL)
    run = ended(supervisor)
    assert (run.status, run.crash.payload["signal"]) == (-9, "SIGKILL")
    run_on(supervisor, "s4", "--sleep", "60")
    job = job_id(supervisor, "s4")
    wait_for(lambda: pids_of("s4"), "the job to start")
    assert slurm.run("scancel", str(job)).returncode == 0
    run = ended(supervisor)
    assert (run.crash.payload["reason"], run.crash.payload["slurm state"]) == (
        "cancelled", "CANCELLED")  # fmt: skip


def test_a_deadline_cancels_the_job_and_is_a_timeout(slurm, cluster_config, tmp_path):
    cluster_config["message registry"]["workers"]["echo_args"]["timeout"] = 3
    supervisor = Supervisor(cluster_config, tmp_path / "runs")
    run_on(supervisor, "s5", "--sleep", "60")
    run = ended(supervisor)
    assert (run.crash.payload["reason"], run.crash.payload["slurm state"]) == (
        "timeout", "CANCELLED")  # fmt: skip
    wait_for(lambda: not pids_of("s5"), "the job's processes to be gone")


def test_a_job_that_can_never_start_is_cancelled_naming_the_reason(slurm, cluster_config, tmp_path):
    config = hpc(cluster_config, **{"sbatch options": ["--cpus-per-task=64"]})
    supervisor = Supervisor(config, tmp_path / "runs")
    run_on(supervisor, "s6")
    run = ended(supervisor)
    assert run.crash.payload["reason"] == "pending: PartitionConfig"
    assert jobs_named(slurm, "s6") == [f"{run.crash.payload['job id']}|CANCELLED"]


def test_a_refused_submit_is_a_launch_failure_with_sbatchs_words(slurm, cluster_config, tmp_path):
    config = hpc(cluster_config, **{"sbatch options": ["--partition=nosuch"]})
    supervisor = Supervisor(config, tmp_path / "runs")
    run_on(supervisor, "s7")
    reason = unstarted(supervisor, "s7")
    assert reason.startswith("sbatch refused: sbatch: error: Batch job submission failed: ")


def test_a_job_submitted_but_not_recorded_is_found_by_name_not_submitted_again(
    slurm, cluster_config, tmp_path
):
    """The manager died between sbatch and recording the job id: a new one adopts the job."""
    script = f"#!/bin/sh\nexec {sys.executable} -c 'import time; time.sleep(2)'\n"
    done = slurm.run("sbatch", "--parsable", "--job-name=nk-s8", f"--output={tmp_path}/s8.log",
                     input=script)  # fmt: skip
    submitted = int(done.stdout)
    supervisor = Supervisor(cluster_config, tmp_path / "runs")
    recorded = st.Run("s8", "echo_args", "echo_args", (), "hpc", launched=time.time())
    assert supervisor.recover([recorded], "here") == ([], {})
    assert job_id(supervisor, "s8") == submitted
    run = ended(supervisor)
    assert (run.status, run.crash.payload["job id"]) == (0, submitted)
    assert jobs_named(slurm, "s8") == [f"{submitted}|COMPLETED"]


def test_a_stopped_controller_proves_nothing_and_the_job_is_tracked_again(
    make_slurm, cluster_config, tmp_path, caplog
):
    cluster = make_slurm(extra_config=["MessageTimeout=2"])
    supervisor = Supervisor(cluster_config, tmp_path / "runs")
    run_on(supervisor, "s9", "--sleep", "6")
    starts(supervisor, "s9")
    wait_for(lambda: pids_of("s9"), "the job to start")
    cluster.stop_controller()
    wait_for(lambda: supervisor.tick(time.monotonic()) or "could not query" in caplog.text,
             "a failed query", 30)  # fmt: skip
    assert "Unable to contact slurm controller" in caplog.text
    assert "s9" in supervisor.active
    cluster.start_controller()
    run = ended(supervisor, 60)
    assert (run.run_id, run.status, run.crash.payload["slurm state"]) == ("s9", 0, "COMPLETED")


def test_a_job_purged_from_the_queue_left_it_without_reporting(
    make_slurm, cluster_config, tmp_path
):
    cluster = make_slurm(min_job_age=5)
    done = cluster.run("sbatch", "--parsable", "--job-name=nk-s10", f"--output={tmp_path}/x.log",
                       input="#!/bin/sh\ntrue\n")  # fmt: skip
    job = int(done.stdout)
    wait_for(lambda: jobs_named(cluster, "s10") == [], "the job to be purged", 30)
    supervisor = Supervisor(cluster_config, tmp_path / "runs")
    handle = {"launcher": "slurm", "job id": job, "job name": "nk-s10", "submitted": time.time()}
    recorded = st.Run("s10", "echo_args", "echo_args", (), "hpc", launched=time.time(),
                      handle=handle)  # fmt: skip
    supervisor.recover([recorded], "here")
    run = ended(supervisor)
    assert run.crash.payload["reason"] == "left the queue without reporting"
    assert run.status is None


def test_a_chain_runs_a_step_as_a_slurm_job_through_the_manager(slurm, toy_system):
    awaken, sleep = chain_across(toy_system, "hpc", {"launcher": "slurm"})
    assert (sleep["host"], sleep["outcome"], awaken["host"]) == ("hpc", "success", "localhost")
    assert awaken["parent"] == sleep["run"]
    assert isinstance(sleep["job id"], int) and sleep["pid"] is None
    assert sleep["log"] == f"hpc:{toy_system.folder}/remote runs/sleep-{sleep['run']}.log"


def test_a_job_that_cannot_reach_the_broker_reports_by_file(slurm, toy_system):
    """``report: file``: the worker leaves its message in the run dir; the manager fetches it
    when the job ends, and it is handled once, as if it had been sent."""
    awaken, sleep = chain_across(toy_system, "hpc", {"launcher": "slurm", "report": "file"})
    assert (sleep["outcome"], awaken["parent"]) == ("success", sleep["run"])
    log = (toy_system.folder / "remote runs" / f"sleep-{sleep['run']}.log").read_text()
    assert "reporting by file" in log and "connected to" not in log


def test_a_cancelled_job_is_scancelled_and_says_who_cancelled_it(slurm, cluster_config, tmp_path):
    supervisor = Supervisor(cluster_config, tmp_path / "runs")
    run_on(supervisor, "s11", "--sleep", "60")
    job = job_id(supervisor, "s11")
    assert supervisor.cancel("s11", "ops") is not None
    run = ended(supervisor)
    assert (run.crash.payload["reason"], run.crash.payload["slurm state"]) == (
        "cancelled by ops", "CANCELLED")  # fmt: skip
    assert jobs_named(slurm, "s11") == [f"{job}|CANCELLED"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_job_past_its_slurm_time_limit_ends_as_a_timeout(slurm, cluster_config, tmp_path):
    """``--time=1`` and no registry timeout: Slurm's limit, not nowcastkit's deadline, ends
    the job (slurmctld looks at time limits every 30 s, so 60 to 90 s after its start)."""
    assert "timeout" not in cluster_config["message registry"]["workers"]["echo_args"]
    supervisor = Supervisor(hpc(cluster_config, **{"sbatch options": ["--time=1"]}),
                            tmp_path / "runs")  # fmt: skip
    run_on(supervisor, "s13", "--sleep", "300")
    starts(supervisor, "s13")
    wait_for(lambda: pids_of("s13"), "the job to start")
    started = time.monotonic()
    run = ended(supervisor, 150)
    assert time.monotonic() - started >= 55
    payload = run.crash.payload
    assert (payload["reason"], payload["slurm state"], run.status) == (
        "slurm time limit", "TIMEOUT", None)  # fmt: skip
    assert payload["last output"][0] == "echoed"
    assert payload["last output"][-1].endswith(" DUE TO TIME LIMIT ***")  # slurmstepd's word
    wait_for(lambda: not pids_of("s13"), "the job's processes to be gone", 40)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_node_that_stops_answering_fails_its_job(make_slurm, cluster_config, tmp_path):
    """slurmd killed: after SlurmdTimeout the controller sets the node down and the job
    NODE_FAIL, while its processes, out of slurmd's reach, go on until slurmd is back."""
    cluster = make_slurm(slurmd_timeout=10)
    supervisor = Supervisor(cluster_config, tmp_path / "runs")
    run_on(supervisor, "s12", "--sleep", "300")
    starts(supervisor, "s12")
    wait_for(lambda: pids_of("s12"), "the job to start")
    cluster.kill_slurmd()
    killed = time.monotonic()
    try:
        run = ended(supervisor, 90)
        took = time.monotonic() - killed
    finally:
        cluster.start_slurmd()
    assert took >= 9  # not before SlurmdTimeout
    payload = run.crash.payload
    assert (payload["reason"], payload["slurm state"], run.status) == (
        "NODE_FAIL", "NODE_FAIL", None)  # fmt: skip
    assert jobs_named(cluster, "s12") == [f"{payload['job id']}|NODE_FAIL"]
    wait_for(lambda: not pids_of("s12"), "slurmd back, the failed job's processes gone", 40)
