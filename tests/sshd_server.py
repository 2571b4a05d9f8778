"""A real OpenSSH server in a folder, for the tests of runs on other hosts.

Its host key, the client key it lets in, its config, pid and log are in the folder; the
client side's options (``Sshd.options``) reach it with nothing from ``~/.ssh``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest
from conftest import wait_for

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@attrs.define
class Sshd:
    """The fixture's sshd, and the ssh options that reach it."""

    popen: subprocess.Popen
    port: int
    folder: Path
    options: list[str]

    def sessions(self) -> list[int]:
        """The pids of sshd's per-connection processes and everything they run."""
        found, todo = [], [self.popen.pid]
        while todo:
            children = Path(f"/proc/{todo.pop()}/task").glob("*/children")
            pids = [int(pid) for path in children for pid in path.read_text().split()]
            found += pids
            todo += pids
        return found


@contextlib.contextmanager
def serving_ssh(folder: Path, address: str, port: int, prefix: Sequence[str] = ()):
    """A real sshd on *address* that lets this user in with a key made for it; *prefix*
    runs it some other way (``ip netns exec NS``). Its sessions are killed at the end."""
    if not os.path.exists(SSHD):
        pytest.fail("no sshd on this machine: bin/test installs Debian's openssh-server")
    folder.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)],
                       check=True, timeout=30)  # fmt: skip
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nLogLevel ERROR\n"
    )
    host_key = (folder / "host_key.pub").read_text().split()
    known_as = address if port == 22 else f"[{address}]:{port}"  # as ssh looks it up
    (folder / "known_hosts").write_text(f"{known_as} {host_key[0]} {host_key[1]}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    with open(folder / "sshd.log", "wb") as log:
        proc = subprocess.Popen([*prefix, SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                                stderr=log)  # fmt: skip
    try:
        wait_for(lambda: accepts(address, port) or proc.poll() is not None, "sshd listening")
        assert proc.poll() is None, (folder / "sshd.log").read_text()
        yield Sshd(proc, port, folder, [
            "-F", "/dev/null", "-p", str(port), "-i", str(folder / "client_key"),
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={folder / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes",
        ])  # fmt: skip
    finally:
        # Its connections outlive it (each is a process of its own), and with them the
        # shared ssh connections of the client side: end them too.
        stop_gently(Sshd(proc, port, folder, []).sessions())
        proc.terminate()
        proc.wait(10)


def accepts(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def stop_gently(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL what is left after *grace*: a login shell killed outright can
    leave its startup's lock files behind (pyenv's rehash lock hangs every later session)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
