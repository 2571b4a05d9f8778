"""What the manager asks of another host over ssh: the argv, and the scripts the remote sh runs.

The scripts are run here with the local ``/bin/sh`` (dash): it is what they meet on the
other host, and ssh only carries the line. The real sshd is in tests/integration/test_ssh.py.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for

from nowcastkit import NextWorker, ssh
from nowcastkit.config import Config
from nowcastkit.errors import ConfigError
from nowcastkit.hosts import Host, remote_host
from nowcastkit.ssh import SSH_OPTIONS, ssh_command

pytestmark = pytest.mark.timeout(30)


def config(**entry) -> Config:
    host = {"python": "/opt/py 3/bin/python", "config file": "/opt/nowcast.yaml", **entry}
    return Config({"run": {"enabled hosts": {"arbutus": host}}}, Path("/sys/nowcast.yaml"))


def test_the_remote_line_splits_back_into_the_workers_own_arguments():
    args = ["'; touch INJECTED; '", "$(id)", "a b", ""]
    cmd = NextWorker("pkg.run_model", args, "arbutus").command(config(), {"RUN": "r1"})
    assert cmd[: 1 + len(SSH_OPTIONS)] == ["ssh", *SSH_OPTIONS]
    assert cmd[-4:-1] == ["-T", "--", "arbutus"]
    assert shlex.split(cmd[-1]) == [
        "exec", "env", "RUN=r1", "/opt/py 3/bin/python", "-m", "pkg.run_model",
        "/opt/nowcast.yaml", *args,
    ]  # fmt: skip


def test_ssh_host_options_come_first_so_they_can_override_the_defaults():
    entry = {"ssh host": "arbutus.cloud", "ssh options": ["-o", "ServerAliveInterval=2"],
             "envvars": "/home/me/my env.sh"}  # fmt: skip
    cmd = NextWorker("pkg.w", host="arbutus").command(config(**entry))
    assert cmd[:3] == ["ssh", "-o", "ServerAliveInterval=2"]  # ssh keeps an option's first value
    assert cmd[-3:-1] == ["--", "arbutus.cloud"]
    assert cmd[-1].startswith(". '/home/me/my env.sh' && exec ")


def test_a_shared_connection_lives_in_the_control_path_given():
    cmd = ssh.ssh_argv(remote_host(config(), "arbutus"), "true", "/state/ssh-%C")
    assert "ControlPath=/state/ssh-%C" in cmd and "ControlMaster=auto" in cmd


@pytest.mark.parametrize(
    ("host", "entry", "key"),
    [
        ("-oProxyCommand=x", None, "run.enabled hosts.-oProxyCommand=x"),
        ("arbutus", {"ssh host": "-oProxyCommand=x"}, "run.enabled hosts.arbutus.ssh host"),
        ("arbutus", {"ssh options": "-v"}, "run.enabled hosts.arbutus.ssh options"),
        ("arbutus", {"python": 3}, "run.enabled hosts.arbutus.python"),
        ("arbutus", {"envvars": ""}, "run.enabled hosts.arbutus.envvars"),
        ("arbutus", {"launcher": "pbs"}, "run.enabled hosts.arbutus.launcher"),
        ("arbutus", {"poll interval": 0}, "run.enabled hosts.arbutus.poll interval"),
        ("arbutus", {"detached": "yes"}, "run.enabled hosts.arbutus.detached"),
        ("arbutus", {"run dir": None}, "run.enabled hosts.arbutus.run dir"),
        ("arbutus", {"sbatch options": "--nodes=4"}, "run.enabled hosts.arbutus.sbatch options"),
        ("arbutus", {"report": "file"}, "run.enabled hosts.arbutus.report"),
        ("hpc", None, "run.enabled hosts.hpc"),
    ],
)
def test_a_bad_host_entry_is_a_config_error_naming_its_key(host, entry, key):
    with pytest.raises(ConfigError) as caught:
        ssh_command(config(**(entry or {})), host, ["-m", "pkg.w"])
    assert caught.value.key == key
    assert str(caught.value).startswith(f"/sys/nowcast.yaml: {key}: ")


def test_host_defaults():
    host = remote_host(config(), "arbutus")
    assert (host.launcher, host.detached, host.run_dir, host.poll_interval) == (
        "ssh", True, ".nowcastkit/runs", 60.0)  # fmt: skip
    assert remote_host(config(launcher="slurm"), "arbutus").poll_interval == 120.0


def test_the_scripts_are_one_line_without_history_characters():
    host = Host("h", "python3", "c.yaml", "h")
    for line in (ssh.launch_line(host, "r1", ["-m", "w"]), ssh.poll_line(host, {"r1": 1}),
                 ssh.kill_line("r1", 1, "TERM")):  # fmt: skip
        assert "\n" not in line and "!" not in line  # csh would expand '!' and stop at '\n'


@pytest.fixture
def here(tmp_path):
    """A host entry whose run dir has a space in it, run by the local sh."""
    return Host("here", sys.executable, str(tmp_path / "remote nowcast.yaml"), "here",
                run_dir=str(tmp_path / "run dir"))  # fmt: skip


def sh(line: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=20)


def launch(host: Host, run_id: str, code: str, *args: str) -> int:
    done = sh(ssh.launch_line(host, run_id, ["-c", code, *args]))
    assert done.returncode == 0, done.stderr
    pid = ssh.parse_launch(done.stdout)
    assert pid is not None, done.stdout
    return pid


def ended(host: Host, run_id: str, pid: int) -> ssh.RemoteState:
    def look():
        state = ssh.parse_poll(sh(ssh.poll_line(host, {run_id: pid})).stdout)[run_id]
        return state if state.ended else None

    return wait_for(look, f"run {run_id} to end")


def test_a_detached_run_gets_its_arguments_its_run_id_and_leaves_its_status(here):
    code = "import os, sys; print(sys.argv[1:], os.environ['NOWCASTKIT_RUN_ID']); sys.exit(3)"
    pid = launch(here, "r1", code, "a b", "'; touch INJECTED", "")
    state = ended(here, "r1", pid)
    assert state.status == 3
    assert state.tail == (f"[{here.config_file!r}, 'a b', \"'; touch INJECTED\", ''] r1",)
    assert not list(Path(here.run_dir).parent.rglob("INJECTED"))


def test_starting_a_run_id_twice_starts_it_once(here):
    code = "import time; print('started'); time.sleep(30)"
    first = launch(here, "r1", code)
    assert launch(here, "r1", code) == first
    kill = sh(ssh.kill_line("r1", first, "KILL"))
    assert kill.stdout.strip() == "nowcastkit signalled"
    assert ended(here, "r1", first).status is None  # the wrapper died too: no status left
    assert (Path(here.run_dir) / "r1.log").read_text().count("started") <= 1


def test_a_kill_reaches_the_whole_process_group_and_the_status_says_the_signal(here):
    code = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)']); print('ready', flush=True); time.sleep(60)"
    )
    pid = launch(here, "r2", code)
    log = Path(here.run_dir) / "r2.log"
    wait_for(lambda: "ready" in log.read_text(), "the worker to start its child")
    group = lambda: sh(f"ps -o pid= -g {pid}").stdout.split()  # noqa: E731
    assert len(group()) >= 3  # the wrapper, the worker, its child
    assert sh(ssh.kill_line("r2", pid, "TERM")).stdout.strip() == "nowcastkit signalled"
    assert ended(here, "r2", pid).status == -signal.SIGTERM
    wait_for(lambda: not group(), "the worker's child to be gone too")


def test_a_kill_or_poll_for_a_pid_now_someone_elses_does_nothing(here):
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert sh(ssh.kill_line("r3", other.pid, "TERM")).stdout.strip() == "nowcastkit not running"
        state = ssh.parse_poll(sh(ssh.poll_line(here, {"r3": other.pid})).stdout)["r3"]
        assert state.ended and state.status is None  # gone: the pid is not the run's
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_missing_envvars_file_is_said_and_ends_the_run_126(here, tmp_path):
    host = Host(here.name, here.python, here.config_file, "here", envvars=str(tmp_path / "nope"),
                run_dir=here.run_dir)  # fmt: skip
    pid = launch(host, "r4", "print('not run')")
    state = ended(host, "r4", pid)
    assert state.status == 126
    assert state.tail == (f"nowcastkit: cannot read envvars file {tmp_path / 'nope'}",)


def test_poll_output_cut_short_proves_nothing():
    assert ssh.parse_poll("nowcastkit run r1 gone\n| last line\n") is None
    found = ssh.parse_poll("banner\nnowcastkit run r1 running\nnowcastkit run r2 ended 137\n"
                           "| x\n| | y\nnowcastkit polled\n")  # fmt: skip
    assert found == {
        "r1": ssh.RemoteState("r1", False),
        "r2": ssh.RemoteState("r2", True, -9, ("x", "| y")),
    }


def test_a_pid_after_a_login_banner_is_found():
    assert ssh.parse_launch("Welcome to arbutus\nnowcastkit pid 4242\n") == 4242
    assert ssh.parse_launch("nowcastkit pid\n") is None


@pytest.mark.parametrize(
    ("code", "stderr", "reason", "retry"),
    [
        (255, "Host key verification failed.\r\n", "unknown host key", False),
        (255, "root@127.0.0.1: Permission denied (publickey).\r\n", "key refused", True),
        (255, "ssh: connect to host 127.0.0.1 port 9: Connection refused\r\n", "unreachable", True),
        (
            255,
            "ssh: connect to host 10.9.9.9 port 22: Connection timed out\r\n",
            "unreachable",
            True,
        ),
        (98, "", "remote error", False),
    ],
)
def test_ssh_failures_are_told_apart(code, stderr, reason, retry):
    failure = ssh.parse_failure(code, stderr)
    assert (failure.reason, failure.retry) == (reason, retry)
    assert failure.message == (stderr.strip() or "ssh exited 98 without a message")
