"""``zmq.transport: ipc``: every socket in one 0700 folder no other user can enter (issue 15)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import zmq
from conftest import System

pytestmark = pytest.mark.timeout(60)

# Run as another user, by the system's python (the tests' own may live in a private home):
# connect to a Unix socket as ZeroMQ's ipc transport does, and say how it went.
KNOCK = """\
import socket, sys
try:
    socket.socket(socket.AF_UNIX).connect(sys.argv[1])
    print("connected")
except OSError as err:
    print(err.strerror)
"""
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def ipc_system(toy_system: System):
    toy_system.config["zmq"]["transport"] = "ipc"
    toy_system.config["zmq"]["ipc folder"] = str(toy_system.folder / "run")
    # Ports are not used; non-zero so that the fixtures do not wait for a port to be logged.
    toy_system.config["zmq"]["ports"] = {"manager": 1, "workers": 1, "control": 1, "monitor": 1}
    toy_system.write_config()
    toy_system.start_broker().wait_for_line(r"manager socket bound to ipc://")
    toy_system.start_manager()
    return toy_system


def test_everything_runs_over_ipc_in_a_private_folder(ipc_system):
    folder = ipc_system.folder / "run"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    sockets = {path.name for path in folder.iterdir()}
    assert sockets == {"workers.sock", "manager.sock", "control.sock", "monitor.sock"}
    result = ipc_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"connected to ipc://{folder}/workers.sock" in result.stdout
    assert ipc_system.checklist() == {"sleepyhead": {"sleep time": 0}}
    assert ipc_system.control({"command": "ping"})["ok"] is True
    assert "bound to port" not in ipc_system.broker.output()


@pytest.fixture
def other_user():
    if os.getuid() != 0 or not (shutil.which("useradd") and shutil.which("runuser")):
        pytest.skip("needs root, useradd and runuser to act as another user")
    name = f"nkipc{os.getpid() % 100000}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)


def knock(user: str, path: Path) -> str:
    done = subprocess.run(
        [shutil.which("runuser"), "-u", user, "--", SYSTEM_PYTHON, "-c", KNOCK, str(path)],
        capture_output=True, text=True, timeout=30, cwd="/", env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_another_user_cannot_connect(ipc_system, other_user):
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"no {SYSTEM_PYTHON} for the other user to run")
    # First, that the other user can connect at all: a socket in a folder open to everyone.
    open_folder = Path(tempfile.mkdtemp(prefix="nk-open-"))
    open_folder.chmod(0o777)
    rep = ipc_system.context.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    try:
        rep.bind(f"ipc://{open_folder}/open.sock")
        (open_folder / "open.sock").chmod(0o777)
        assert knock(other_user, open_folder / "open.sock") == "connected"
    finally:
        rep.close()
        shutil.rmtree(open_folder, ignore_errors=True)
    assert pwd.getpwnam(other_user).pw_uid != os.getuid()
    folder = ipc_system.folder / "run"
    # The folder alone keeps them out, whatever umask made the sockets (circusd's, say).
    (folder / "workers.sock").chmod(0o777)
    for name in ("workers", "manager", "control", "monitor"):
        assert knock(other_user, folder / f"{name}.sock") == "Permission denied"
    assert ipc_system.checklist() == {}
