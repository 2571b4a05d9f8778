"""Shared fixtures: real broker and manager processes on free loopback ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
import zmq

from nowcastkit import control
from nowcastkit.config import Config

REPO = Path(__file__).resolve().parents[1]
# A system written for the reference design, as it is before migrating: its own tests run
# only in a migrated copy (tests/integration/test_migration.py).
collect_ignore = ["reference_system"]

NEXT_WORKERS = """\
from nowcastkit import NextWorker


def after_sleep(msg, config, checklist):
    return []


def after_awaken(msg, config, checklist):
    return []
"""


def wait_for(check, what: str, timeout: float = 10.0):
    """Poll *check* until it returns something truthy; fail saying what never came."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.02)
    return result


def base_config(folder: Path) -> dict[str, Any]:
    """A toy-system config for *folder*: console logging, ports 0 (the broker picks)."""
    return {
        "checklist file": str(folder / "nowcast_checklist.yaml"),
        # Tests read the checklist file right after each reply: no coalescing of writes.
        "checklist write delay": 0,
        "python": sys.executable,
        "logging": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "simple": {"format": "%(asctime)s %(levelname)s [%(name)s] %(message)s"}
            },
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "level": "DEBUG",
                    "formatter": "simple",
                    "stream": "ext://sys.stdout",
                }
            },
            "root": {"level": "DEBUG", "handlers": ["console"]},
        },
        "zmq": {
            "host": "127.0.0.1",
            "ports": {"manager": 0, "workers": 0, "control": 0, "monitor": 0},
            "reply timeout": 5,
            "reply attempts": 2,
        },
        "message registry": {
            "manager": {"ack": "message acknowledged"},
            "next workers module": "next_workers",
            "workers": {
                "sleep": {
                    "checklist key": "sleepyhead",
                    "success": "sleep worker slept well",
                    "failure": "sleep worker slept badly",
                    "crash": "sleep worker crashed",
                },
                "awaken": {
                    "checklist key": "awake",
                    "success": "awaken worker awoke",
                    "failure": "awaken worker failed to awaken",
                    "crash": "awaken worker crashed",
                },
            },
        },
    }


@attrs.define(eq=False)
class Process:
    """A real child process whose combined output goes to a log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """Wait until the output has a line matching *pattern*; return the match."""
        regex = re.compile(pattern)

        def seen():
            match = regex.search(self.output())
            if match is None and self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.popen.returncode}:\n{self.output()}"
                )
            return match

        return wait_for(seen, f"{pattern!r} in {self.name} output", timeout)

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode


def start_process(name: str, argv: list[str], cwd: Path, log_path: Path) -> Process:
    log_file = open(log_path, "wb")  # noqa: SIM115 - the child owns it for its life
    popen = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env(),
    )
    log_file.close()
    return Process(name, popen, log_path)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def left_running(folder: Path) -> list[str]:
    """The command lines of live processes that name *folder*: what a run left behind."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not a process
            continue
        line = " ".join(arg.decode(errors="replace") for arg in argv if arg)
        if str(folder) in line:
            found.append(f"{proc.name}: {line}")
    return found


def start_refused(config_path: Path) -> subprocess.CompletedProcess:
    """Start a manager on a config it should refuse; its exit status and one line on stderr."""
    return subprocess.run(
        [sys.executable, "-m", "nowcastkit.manager", str(config_path)],
        capture_output=True, text=True, timeout=30, cwd=config_path.parent, env=child_env(),
    )  # fmt: skip


@attrs.define(eq=False)
class System:
    """A running broker and manager for one test, and ways to talk to them."""

    folder: Path
    config_path: Path
    config: dict
    broker: Process | None = None
    manager: Process | None = None
    processes: list[Process] = attrs.field(factory=list)
    context: zmq.Context = attrs.field(factory=zmq.Context)

    @property
    def workers_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.config['zmq']['ports']['workers']}"

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))

    def write_next_workers(self, text: str) -> None:
        """Replace the system's next_workers.py, as an operator editing it would."""
        (self.folder / "next_workers.py").write_text(text)

    def start_broker(self) -> Process:
        self.broker = self.spawn("message_broker", "-m", "nowcastkit.message_broker")
        ports = self.config["zmq"]["ports"]
        if not ports["workers"] or not ports["manager"]:
            worker_port = self.broker.wait_for_line(r"worker socket bound to port (\d+)")
            manager_port = self.broker.wait_for_line(r"manager socket bound to port (\d+)")
            ports["workers"], ports["manager"] = int(worker_port[1]), int(manager_port[1])
            self.write_config()
        return self.broker

    def start_manager(self, *args: str) -> Process:
        """Start the manager; control and monitor ports of 0 become the ones it bound."""
        self.manager = self.spawn("manager", "-m", "nowcastkit.manager", *args)
        self.manager.wait_for_line(r"listening\.\.\.")
        ports = self.config["zmq"]["ports"]
        for name in ("control", "monitor"):
            if not ports.get(name):
                bound = self.manager.wait_for_line(rf"{name} socket bound to port (\d+)")
                ports[name] = int(bound[1])
                self.write_config()
        return self.manager

    def control(self, request: dict, timeout: float = 5.0) -> dict:
        """Send one request to the manager's control socket; return its answer."""
        config = Config(self.config, self.config_path)
        return control.ask(control.control_endpoint(config), request, timeout)

    def spawn(self, name: str, *argv: str) -> Process:
        log_path = self.folder / f"{name}-{len(self.processes)}.log"
        process = start_process(
            name, [sys.executable, *argv, str(self.config_path)], self.folder, log_path
        )
        self.processes.append(process)
        return process

    def run_worker(
        self, module: str, *args: str, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", module, str(self.config_path), *args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(),
        )

    def checklist(self) -> dict:
        path = Path(self.config["checklist file"])
        return yaml.safe_load(path.read_text()) if path.exists() else {}

    def request(self, frames: list[bytes], timeout: float = 5.0) -> list[bytes]:
        """Send raw frames as a worker's REQ socket would; return the reply frames."""
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.workers_endpoint)
        try:
            sock.send_multipart(frames)
            assert sock.poll(timeout * 1000), f"no reply to {frames!r} within {timeout}s"
            return sock.recv_multipart()
        finally:
            sock.close()

    def send(self, source: str, msg_type: str, payload: Any = None) -> dict:
        """Send one message on the wire protocol, by hand; return the decoded reply."""
        body = yaml.safe_dump({"source": source, "type": msg_type, "payload": payload})
        (reply,) = self.request([body.encode()])
        return yaml.safe_load(reply)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        # destroy, not term: a socket a failed test left open would block term forever,
        # in C, where the test timeout cannot reach it.
        self.context.destroy(linger=0)


@pytest.fixture
def toy_system(tmp_path: Path):
    """A config and next_workers module in tmp_path; nothing running yet."""
    system = System(tmp_path, tmp_path / "nowcast.yaml", base_config(tmp_path))
    system.write_config()
    system.write_next_workers(NEXT_WORKERS)
    yield system
    system.close()


@pytest.fixture
def running_system(toy_system: System):
    """A real broker and manager on free loopback ports, manager listening."""
    toy_system.start_broker()
    toy_system.start_manager()
    return toy_system


@pytest.fixture
def sshd(tmp_path: Path):
    """A real sshd on 127.0.0.1 that lets this user in with a key made for the test."""
    from sshd_server import free_port, serving_ssh

    with serving_ssh(tmp_path / "sshd", "127.0.0.1", free_port()) as server:
        yield server


def _need_slurm() -> None:
    from slurm_cluster import missing_programs

    if missing := missing_programs():
        pytest.fail(f"no {', '.join(missing)} on this machine: bin/system-packages installs "
                    "Debian's slurmctld, slurmd, slurm-client and munge")  # fmt: skip


@pytest.fixture(scope="session")
def slurm():
    """A real single-node Slurm for the whole session; SLURM_CONF names it meanwhile."""
    from slurm_cluster import start_cluster

    _need_slurm()
    folder = Path(tempfile.mkdtemp(prefix="nk-slurm-"))  # short: munged's socket path
    cluster = None
    try:
        with pytest.MonkeyPatch.context() as patch:
            cluster = start_cluster(folder)
            patch.setenv("SLURM_CONF", str(cluster.conf_path))
            yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def make_slurm(monkeypatch):
    """Start a fresh cluster of one's own for this test: ``make_slurm(min_job_age=5)``.

    Takes SlurmCluster's options (min_job_age, slurmd_timeout, extra_config); SLURM_CONF
    names the last one made until the test ends, when each is stopped.
    """
    from slurm_cluster import start_cluster

    _need_slurm()
    made = []

    def make(**options):
        folder = Path(tempfile.mkdtemp(prefix="nk-slurm-"))
        made.append((folder, None))
        cluster = start_cluster(folder, **options)
        made[-1] = (folder, cluster)
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf_path))
        return cluster

    yield make
    for folder, cluster in reversed(made):
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
