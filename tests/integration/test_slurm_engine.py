"""The Slurm fixture gives a working single-node cluster that a user can submit to."""

from __future__ import annotations

import uuid

import pytest
from conftest import wait_for
from slurm_cluster import SlurmCluster

#: A job that runs until the test creates the file it waits for (no sleep as a clock).
WAIT_FOR_GO = """\
#!/bin/sh
echo started
while [ ! -e "{go}" ]; do sleep 0.1; done
echo done
"""


def submit(cluster: SlurmCluster, script: str, *options: str) -> str:
    done = cluster.run("sbatch", "--parsable", *options, input=script)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def state(cluster: SlurmCluster, name: str) -> list[str]:
    done = cluster.run("squeue", "-h", "--states=all", f"--name={name}", "-o", "%i|%j|%T")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.timeout(30)
def test_a_script_from_stdin_runs_and_writes_its_output_file(slurm, tmp_path):
    out = tmp_path / "job.log"
    job_id = submit(slurm, "#!/bin/sh\necho hello from $SLURM_JOB_ID\n", f"--output={out}")
    assert job_id.isdigit()
    wait_for(lambda: out.exists() and out.read_text() == f"hello from {job_id}\n",
             "the job's output", 20)  # fmt: skip


@pytest.mark.timeout(30)
def test_a_job_is_found_by_its_name_while_running_and_once_completed(slurm, tmp_path):
    name = f"nk-{uuid.uuid4().hex[:8]}"
    go = tmp_path / "go"
    job_id = submit(slurm, WAIT_FOR_GO.format(go=go), f"--job-name={name}",
                    f"--output={tmp_path / 'job.log'}")  # fmt: skip
    wait_for(lambda: state(slurm, name) == [f"{job_id}|{name}|RUNNING"], "job running", 20)
    go.touch()
    wait_for(lambda: state(slurm, name) == [f"{job_id}|{name}|COMPLETED"], "job completed", 20)
    assert state(slurm, "nk-no-such-job") == []


@pytest.mark.timeout(45)
def test_a_running_job_survives_the_controller_going_down_and_coming_back(make_slurm, tmp_path):
    cluster = make_slurm()
    name, go, log = "nk-restart", tmp_path / "go", tmp_path / "job.log"
    job_id = submit(cluster, WAIT_FOR_GO.format(go=go), f"--job-name={name}", f"--output={log}")
    wait_for(lambda: state(cluster, name) == [f"{job_id}|{name}|RUNNING"], "job running", 20)
    cluster.stop_controller()
    cluster.start_controller()
    assert state(cluster, name) == [f"{job_id}|{name}|RUNNING"]
    go.touch()
    wait_for(lambda: state(cluster, name) == [f"{job_id}|{name}|COMPLETED"], "job completed", 20)
    assert log.read_text() == "started\ndone\n"
