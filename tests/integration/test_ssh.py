"""Workers on another host through a real OpenSSH server on loopback, started by the fixture."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import base_config, wait_for

from nowcastkit import NextWorker
from nowcastkit.config import load_config
from nowcastkit.manager.decide import Launch
from nowcastkit.manager.supervisor import Supervisor

pytestmark = pytest.mark.timeout(60)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

#: The "remote" worker: writes what it was given, then exits as a worker that reported.
ECHO_ARGS = """\
import json, os, sys
with open(os.environ["ECHO_TO"], "w") as f:
    json.dump({"argv": sys.argv[1:], "run": os.environ.get("NOWCASTKIT_RUN_ID")}, f)
"""

DANGEROUS = ["'; touch INJECTED; '", "$(touch INJECTED)", "`touch INJECTED`", "a b", "", "*"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """A real sshd on 127.0.0.1 that lets this user in with a key made for the test."""
    if not os.path.exists(SSHD):
        pytest.fail("no sshd on this machine: bin/test installs Debian's openssh-server")
    folder = tmp_path / "sshd"
    folder.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)],
                       check=True, timeout=30)  # fmt: skip
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = free_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nLogLevel ERROR\n"
    )
    host_key = (folder / "host_key.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    with open(folder / "sshd.log", "wb") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stderr=log)
    try:
        wait_for(lambda: _accepts(port) or proc.poll() is not None, "sshd listening")
        assert proc.poll() is None, (folder / "sshd.log").read_text()
        yield [
            "-F", "/dev/null", "-p", str(port), "-i", str(folder / "client_key"),
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={folder / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes",
        ]  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def remote(tmp_path, sshd, monkeypatch):
    """A config whose host ``far`` is this machine reached through the fixture's sshd."""
    (tmp_path / "echo_args.py").write_text(ECHO_ARGS)
    envvars = tmp_path / "remote env"  # a space: the path must reach the shell quoted
    envvars.write_text(
        f"export PYTHONPATH='{tmp_path}'\nexport ECHO_TO='{tmp_path / 'echoed.json'}'\n"
    )
    raw = base_config(tmp_path)
    raw["message registry"]["workers"]["echo_args"] = {"crash": "crashed"}
    raw["run"] = {"enabled hosts": {"far": {
        "ssh host": "127.0.0.1", "ssh options": sshd, "python": sys.executable,
        "config file": str(tmp_path / "remote nowcast.yaml"), "envvars": str(envvars),
    }}}  # fmt: skip
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return load_config(tmp_path / "nowcast.yaml")


def test_a_remote_worker_gets_its_arguments_as_given_and_none_runs_in_the_shell(remote, tmp_path):
    supervisor = Supervisor(remote, tmp_path / "runs")
    [running], failed = supervisor.start([Launch("r1", NextWorker("echo_args", DANGEROUS, "far"))])
    assert failed == []
    [ended] = wait_for(lambda: supervisor.tick(time.monotonic()), "the ssh run to end", 30)
    assert ended.status == 0, running.log_path.read_text()
    echoed = json.loads((tmp_path / "echoed.json").read_text())
    assert echoed == {"argv": [str(tmp_path / "remote nowcast.yaml"), *DANGEROUS], "run": "r1"}
    assert not list(tmp_path.rglob("INJECTED")) and not (Path.home() / "INJECTED").exists()


def test_an_unreachable_host_fails_fast_with_sshs_own_words(remote, tmp_path):
    remote["run"]["enabled hosts"]["far"]["ssh options"] = ["-p", str(free_port())]
    supervisor = Supervisor(remote, tmp_path / "runs")
    started = time.monotonic()
    [running], _failed = supervisor.start([Launch("r2", NextWorker("echo_args", [], "far"))])
    [ended] = wait_for(lambda: supervisor.tick(time.monotonic()), "the ssh run to end", 30)
    assert time.monotonic() - started < 15  # BatchMode and ConnectTimeout: no hang
    assert ended.status == 255
    assert "Connection refused" in running.log_path.read_text()


def test_validate_refuses_a_host_that_ssh_would_read_as_an_option(tmp_path):
    raw = base_config(tmp_path)
    raw["run"] = {"enabled hosts": {"-oProxyCommand=touch INJECTED": {
        "python": "python3", "config file": "nowcast.yaml"}}}  # fmt: skip
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "next_workers.py").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", "validate", str(tmp_path / "nowcast.yaml")],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "run.enabled hosts.-oProxyCommand=touch INJECTED: got" in done.stdout
    assert "a host name cannot begin with '-'" in done.stdout
    assert not (tmp_path / "INJECTED").exists()
