"""The toy system under a real circusd started on a generated copy of the repo's circus.ini.

The copy moves circus's control and pub/sub channels to ipc:// paths in tmp_path
and checks for exited processes more often; the watchers are the repo's own.
"""

from __future__ import annotations

import configparser
import contextlib
import datetime as dt
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import attrs
import psutil
import pytest
import yaml
import zmq
from circus.client import CircusClient

from tests.conftest import REPO, child_env, wait_for

pytestmark = pytest.mark.timeout(90)

WATCHERS = ("log_aggregator", "message_broker", "manager", "scheduler", "dashboard")
CIRCUSCTL = str(Path(sys.executable).with_name("circusctl"))
CIRCUSD = str(Path(sys.executable).with_name("circusd"))
_FLOW = (REPO / "example_system" / "next_workers.py").read_text()


def _free_ports(count: int) -> list[int]:
    # The broker must come back on the same ports after a restart, so the config
    # needs fixed numbers; a port freed here could in principle be taken first.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _write_circus_ini(folder: Path, ipc: Path | None = None) -> Path:
    """The repo's circus.ini, its channels in *folder*; with *ipc* (the nowcast system's ipc
    folder), in that folder, stats channel and circusd-stats included, as docs/circus.md says."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "circus.ini")
    sockets = ipc or folder
    parser["circus"]["endpoint"] = f"ipc://{sockets}/circus.sock"
    parser["circus"]["pubsub_endpoint"] = f"ipc://{sockets}/circus-pubsub.sock"
    if ipc is not None:
        parser["circus"]["statsd"] = "True"
        parser["circus"]["stats_endpoint"] = f"ipc://{sockets}/circus-stats.sock"
    parser["circus"]["check_delay"] = "0.2"
    path = folder / "circus.ini"
    with path.open("w") as f:
        parser.write(f)
    return path


def _write_nowcast_yaml(
    folder: Path, schedule: list | None = None, ipc: Path | None = None
) -> Path:
    config = yaml.safe_load((REPO / "nowcast.yaml").read_text())
    config["zmq"]["host"] = "127.0.0.1"
    if ipc is not None:
        config["zmq"]["transport"] = "ipc"
        config["zmq"]["ipc folder"] = str(ipc)
    # All four fixed: the defaults (manager port + 2 and + 3) could be taken already.
    names = ("manager", "workers", "control", "monitor")
    *ports, dashboard = _free_ports(len(names) + 1)
    config["zmq"]["ports"] = dict(zip(names, ports, strict=True))
    config["dashboard"] = {"port": dashboard}
    # A reply lost with a killed broker is sent again after 2s, not 30s.
    config["zmq"]["reply timeout"] = 2
    config["zmq"]["reply attempts"] = 5
    config["message registry"]["next workers module"] = "next_workers"
    # The tests read the checklist file right after each reply: no coalescing of writes.
    config["checklist write delay"] = 0
    if schedule is not None:
        config["scheduled workers"] = schedule
    path = folder / "nowcast.yaml"
    path.write_text(yaml.safe_dump(config))
    (folder / "next_workers.py").write_text(_FLOW)
    return path


@attrs.define(eq=False)
class Circus:
    """A circusd running the toy system in a folder, and what it has started."""

    folder: Path
    popen: subprocess.Popen
    client: CircusClient
    seen: dict[int, psutil.Process] = attrs.field(factory=dict)

    @property
    def endpoint(self) -> str:
        return self.client.endpoint

    def output(self) -> str:
        return (self.folder / "circusd.log").read_text(errors="replace")

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.output()))

    def call(self, command: str, **props) -> dict:
        reply = self.client.send_message(command, **props)
        assert reply["status"] == "ok", reply
        return reply

    def pid(self, watcher: str) -> int | None:
        """The watcher's one process id, remembered for the leftover check."""
        pids = self.call("list", name=watcher)["pids"]
        for pid in pids:
            if pid not in self.seen:
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.seen[pid] = psutil.Process(pid)
        return pids[0] if len(pids) == 1 else None

    def statuses(self) -> dict[str, str]:
        return self.call("status")["statuses"]

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            [CIRCUSCTL, "--endpoint", self.endpoint, "--timeout", "10", *args],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def run_worker(self, module: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", module, str(self.folder / "nowcast.yaml"), *args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=30,
            env=_env(self.folder),
        )

    def checklist(self) -> dict:
        path = self.folder / "logs" / "nowcast_checklist.yaml"
        return yaml.safe_load(path.read_text()) if path.exists() else {}

    def quit(self) -> None:
        """Stop circus and check that nothing it started is left running."""
        for child in psutil.Process(self.popen.pid).children(recursive=True):
            self.seen.setdefault(child.pid, child)
        if self.popen.poll() is None:
            self.client.call({"command": "quit", "properties": {}})
        self.popen.wait(30)
        wait_for(
            lambda: not [p for p in self.seen.values() if p.is_running()],
            "exit of every process circus started",
        )


def _env(folder: Path) -> dict[str, str]:
    env = child_env()
    env["NOWCAST_ENV"] = sys.prefix
    env["NOWCAST_LOGS"] = str(folder / "logs")
    env["NOWCAST_YAML"] = str(folder / "nowcast.yaml")
    return env


def start_circus(folder: Path, schedule: list | None = None, ipc: Path | None = None) -> Circus:
    """circusd on the toy system in *folder*; with *ipc*, every socket in that folder."""
    (folder / "logs").mkdir()
    _write_nowcast_yaml(folder, schedule, ipc)
    ini = _write_circus_ini(folder, ipc)
    with (folder / "circusd.log").open("wb") as log_file:
        popen = subprocess.Popen(
            [CIRCUSD, str(ini)],
            cwd=folder,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_env(folder),
            start_new_session=True,
        )
    client = CircusClient(endpoint=f"ipc://{ipc or folder}/circus.sock", timeout=10)
    return Circus(folder, popen, client)


@pytest.fixture
def circus(tmp_path: Path):
    """The toy system running under circusd in tmp_path, broker and manager ready."""
    system = start_circus(tmp_path)
    try:
        _wait_ready(system)
        yield system
        system.quit()
    finally:
        _kill_leftovers(system)


def _wait_ready(system: Circus, watchers: tuple[str, ...] = WATCHERS) -> None:
    wait_for(lambda: system.count(r"Arbiter now waiting for commands"), "circusd start", 20)
    wait_for(
        lambda: system.statuses() == dict.fromkeys(watchers, "active"),
        f"{len(watchers)} active watchers",
        20,
    )
    wait_for(lambda: system.count(r"manager socket bound to (port|ipc://)"), "broker bound")
    wait_for(lambda: system.count(r"\[manager\] listening\.\.\."), "manager listening")


def _kill_leftovers(system: Circus) -> None:
    if system.popen.poll() is None:
        os.killpg(system.popen.pid, signal.SIGKILL)
        system.popen.wait(10)
    for process in system.seen.values():
        if process.is_running():
            process.kill()
    system.client.stop()


def _restarted(system: Circus, watcher: str, old_pid: int) -> int:
    return wait_for(
        lambda: (pid := system.pid(watcher)) not in (None, old_pid) and pid,
        f"new {watcher} process",
    )


def test_startup_output_matches_the_tutorial(circus):
    output = circus.output()
    for line in (
        r"circus\[\d+\] \[INFO\] Starting master on pid \d+",
        r"circus\[\d+\] \[INFO\] message_broker started",
        r"circus\[\d+\] \[INFO\] manager started",
        r"circus\[\d+\] \[INFO\] scheduler started",
        r"INFO \[message_broker\] running in process \d+",
        r"INFO \[message_broker\] read config from .*nowcast\.yaml",
        r"INFO \[message_broker\] worker socket bound to port \d+",
        r"INFO \[manager\] next workers module loaded from .*next_workers\.py",
        r"INFO \[manager\] connected to 127\.0\.0\.1 port \d+",
        r"WARNING \[manager\] checklist load failed",
        r"DEBUG \[manager\] listening\.\.\.",
    ):
        assert re.search(line, output), f"{line!r} not in circusd output:\n{output}"
    # The log aggregator, then the broker: circus starts watchers in priority order.
    assert output.index("log_aggregator started") < output.index("message_broker started")
    assert output.index("message_broker started") < output.index("manager started")
    assert re.search(r"INFO \[log_aggregator\] no logging.aggregator section in", output)
    assert circus.ctl("status").split() == [
        "dashboard:",
        "active",
        "log_aggregator:",
        "active",
        "manager:",
        "active",
        "message_broker:",
        "active",
        "scheduler:",
        "active",
    ]


def test_killed_manager_is_restarted_and_keeps_the_checklist(circus):
    result = circus.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert circus.checklist() == {"sleepyhead": {"sleep time": 0}}
    old_pid = circus.pid("manager")

    os.kill(old_pid, signal.SIGKILL)

    _restarted(circus, "manager", old_pid)
    wait_for(lambda: circus.count(r"\[manager\] listening\.\.\.") == 2, "manager listening again")
    assert circus.count(r"\[manager\] checklist loaded from") == 1
    result = circus.run_worker("workers.awaken")
    assert result.returncode == 0, result.stdout + result.stderr
    checklist = circus.checklist()
    assert checklist["sleepyhead"] == {"sleep time": 0}
    assert "awoke at" in checklist["awake"]


def test_killed_broker_is_restarted_and_a_waiting_worker_gets_its_reply(circus):
    # The manager takes a while over sleep's message, so the broker dies with the
    # reply in flight; the worker must send again and get its answer.
    slow_flow = _FLOW.replace(
        "def after_sleep(msg, config, checklist):\n",
        "def after_sleep(msg, config, checklist):\n    __import__('time').sleep(1)\n",
    )
    (circus.folder / "next_workers.py").write_text(slow_flow)
    old_pid = circus.pid("message_broker")
    config_path = str(circus.folder / "nowcast.yaml")
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers.sleep", config_path, "--sleep-time", "0"],
        cwd=circus.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(circus.folder),
    )
    try:
        wait_for(lambda: circus.count(r"received message from sleep"), "sleep's message")
        os.kill(old_pid, signal.SIGKILL)
        _restarted(circus, "message_broker", old_pid)
        output, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    # The reply reaches the worker through the new broker, or the worker sends
    # again on a fresh socket after the reply timeout; either way it is answered.
    assert worker.returncode == 0, output
    assert "received message from manager: (ack) message acknowledged" in output

    result = circus.run_worker("workers.awaken")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "awake" in circus.checklist()


def test_killed_scheduler_is_restarted(circus):
    wait_for(lambda: circus.count(r"INFO \[scheduler\] running in process") == 1, "scheduler")
    old_pid = circus.pid("scheduler")
    os.kill(old_pid, signal.SIGKILL)
    _restarted(circus, "scheduler", old_pid)
    wait_for(lambda: circus.count(r"INFO \[scheduler\] running in process") == 2, "scheduler again")
    wait_for(lambda: circus.statuses() == dict.fromkeys(WATCHERS, "active"), "all active")


def test_reload_and_hup_reload_config_without_restarts(circus):
    pids = {name: circus.pid(name) for name in ("message_broker", "manager")}

    circus.ctl("reload")

    wait_for(lambda: circus.count(r"\[message_broker\] reloaded config from"), "broker reload")
    wait_for(lambda: circus.count(r"\[manager\] reloaded config from"), "manager reload")
    circus.ctl("signal", "manager", "hup")
    wait_for(lambda: circus.count(r"\[manager\] reloaded config from") == 2, "manager HUP reload")
    assert {name: circus.pid(name) for name in pids} == pids
    result = circus.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scheduled_worker_runs_on_time(tmp_path):
    due = (dt.datetime.now() + dt.timedelta(seconds=4)).replace(microsecond=0)
    entry = {"every": "day", "at": f"{due:%H:%M:%S}", "cmd line opts": "--sleep-time 0"}
    system = start_circus(tmp_path, schedule=[{"workers.sleep": entry}])
    try:
        _wait_ready(system)
        wait_for(lambda: system.count(r"\[scheduler\] .*next run at"), "scheduler start", 20)

        late = wait_for(
            lambda: re.search(
                r"\[scheduler\] .*launched by the manager as run (\w+) .*, ([\d.]+)s late",
                system.output(),
            ),
            "scheduled launch",
            20,
        )
        assert float(late[2]) < 1.0, late[0]
        # The manager made the launch: it recorded the run, and the worker reported to it.
        launched = rf"\[manager\] launching workers\.sleep worker on localhost: run {late[1]}"
        wait_for(lambda: system.count(launched), "the manager's launch of the run")
        assert system.count(r"\[manager\] launch of workers\.sleep requested by scheduler") == 1
        wait_for(lambda: system.checklist().get("sleepyhead"), "scheduled sleep's report")
        system.quit()
    finally:
        _kill_leftovers(system)


def test_with_zmq_ipc_circus_endpoints_live_in_the_0700_folder_too_issue_15(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)  # circusd binds first, so the folder is made before it starts
    system = start_circus(tmp_path, ipc=run)
    try:
        _wait_ready(system, (*WATCHERS, "circusd-stats"))
        sockets = {"circus", "circus-pubsub", "circus-stats", "workers", "manager", "control",
                   "monitor"}  # fmt: skip
        wait_for(lambda: {p.stem for p in run.iterdir()} >= sockets, "every socket in run/")
        assert {p.stem for p in run.iterdir()} == sockets
        assert all(stat.S_ISSOCK(p.stat().st_mode) for p in run.iterdir())
        assert stat.S_IMODE(run.stat().st_mode) == 0o700
        assert not list(tmp_path.glob("*.sock"))  # nothing left beside it, on tcp or not

        status = system.ctl("status")  # circusctl --endpoint ipc://.../run/circus.sock
        assert system.endpoint == f"ipc://{run}/circus.sock"
        assert sorted(status.split()) == sorted(
            [*(f"{w}:" for w in (*WATCHERS, "circusd-stats")), *["active"] * 6]
        )
        # circusd-stats publishes on the stats socket: a subscriber there hears from it
        with zmq.Context() as context, context.socket(zmq.SUB) as sub:
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(f"ipc://{run}/circus-stats.sock")
            assert sub.poll(15_000), "no stats on the ipc stats socket within 15 s"
            assert sub.recv_multipart()[0].startswith(b"stat.")
        worker = system.run_worker("workers.sleep", "--sleep-time", "0")
        assert worker.returncode == 0, worker.stderr
        wait_for(lambda: "sleepyhead" in system.checklist(), "the checklist's sleepyhead")
        system.quit()
    finally:
        _kill_leftovers(system)
