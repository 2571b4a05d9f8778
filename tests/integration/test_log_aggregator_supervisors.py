"""The log aggregator under a real circusd (the repo's circus.ini) and a real supervisord (the
program section docs/logging.md gives): started first, and SIGHUP reloads it in place."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml
from circus.client import CircusClient

from tests.conftest import REPO, System, wait_for
from tests.integration.log_aggregation import debug_log, logging_section, wait_in_log
from tests.integration.test_circus import (
    Circus,
    _env,
    _free_ports,
    _kill_leftovers,
    _write_circus_ini,
    _write_nowcast_yaml,
)

pytestmark = pytest.mark.timeout(90)

SUPERVISORD = shutil.which("supervisord") or "/usr/bin/supervisord"
SUPERVISORCTL = shutil.which("supervisorctl") or "/usr/bin/supervisorctl"


def _aggregated_system(folder: Path) -> System:
    """The circus tests' toy system, logging through the publisher and aggregator schemas."""
    (folder / "logs").mkdir()
    path = _write_nowcast_yaml(folder)
    config = yaml.safe_load(path.read_text())
    config["logging"] = logging_section(folder / "logs")
    # Fixed, as the broker's are: a restarted aggregator comes back where publishers look.
    config["zmq"]["ports"]["logging"] = {"aggregator": _free_ports(1)[0]}
    path.write_text(yaml.safe_dump(config))
    return System(folder / "logs", path, config)


def _reloads_on_hup(system: System, hup, pid: int) -> None:
    wait_in_log(system, r"\[log_aggregator\] \[\S+ -\] aggregator socket bound to port \d+$", 20)
    hup()
    wait_in_log(system, r"\[log_aggregator\] \[\S+ -\] reloaded config from .*nowcast\.yaml$")
    text = debug_log(system)
    assert text.count("aggregator socket bound to port") == 1, text  # reloaded, not restarted
    assert os.kill(pid, 0) is None


def test_sighup_reloads_the_aggregator_under_circus(tmp_path):
    system = _aggregated_system(tmp_path)
    ini = _write_circus_ini(tmp_path)
    with (tmp_path / "circusd.log").open("wb") as log_file:
        popen = subprocess.Popen([str(Path(sys.executable).with_name("circusd")), str(ini)],
                                 cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=_env(tmp_path),
                                 start_new_session=True)  # fmt: skip
    circus = Circus(tmp_path, popen, CircusClient(endpoint=f"ipc://{tmp_path}/circus.sock",
                                                  timeout=10))  # fmt: skip
    try:
        wait_for(lambda: circus.count(r"Arbiter now waiting for commands"), "circusd start", 20)
        pid = wait_for(lambda: circus.pid("log_aggregator"), "the aggregator's pid", 20)
        # Every long-running process's lines reach the aggregator's files.
        for name in ("message_broker", "manager", "scheduler"):
            wait_in_log(system, rf"\[{name}\] \[\S+ -\] running in process \d+$", 20)
        output = circus.output()
        assert output.index("log_aggregator started") < output.index("message_broker started")
        _reloads_on_hup(system, lambda: circus.ctl("signal", "log_aggregator", "hup"), pid)
        assert circus.pid("log_aggregator") == pid
        circus.quit()
    finally:
        if popen.poll() is None:  # a failure above: remember every process circus started
            for child in psutil.Process(popen.pid).children(recursive=True):
                circus.seen.setdefault(child.pid, child)
        _kill_leftovers(circus)


def supervisord_conf(folder: Path) -> str:
    """docs/logging.md's supervisord section, with the daemon's own files in *folder*."""
    docs = (REPO / "docs" / "logging.md").read_text()
    program = re.search(r"```ini\n(\[program:log_aggregator\].*?)```", docs, re.S)[1]
    return f"""\
[supervisord]
nodaemon = true
logfile = {folder}/supervisord.log
pidfile = {folder}/supervisord.pid
childlogdir = {folder}

[unix_http_server]
file = {folder}/supervisor.sock
chmod = 0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{folder}/supervisor.sock

{program}"""


@pytest.fixture
def supervisord(tmp_path: Path):
    """A real supervisord running docs/logging.md's program section; stopped at the end."""
    if not os.access(SUPERVISORD, os.X_OK):
        pytest.skip("no supervisord: bin/system-packages installs Debian's supervisor package")
    system = _aggregated_system(tmp_path)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(supervisord_conf(tmp_path))
    with (tmp_path / "supervisord.out").open("wb") as out:
        popen = subprocess.Popen([SUPERVISORD, "-c", str(conf)], cwd=tmp_path, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=_env(tmp_path), start_new_session=True)  # fmt: skip

    def ctl(*args: str) -> str:
        result = subprocess.run([SUPERVISORCTL, "-c", str(conf), *args], capture_output=True,
                                text=True, timeout=20)  # fmt: skip
        return result.stdout

    try:
        yield system, ctl
        ctl("shutdown")
        popen.wait(20)
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(10)


def test_sighup_reloads_the_aggregator_under_supervisord(supervisord):
    system, ctl = supervisord
    running = wait_for(lambda: re.search(r"log_aggregator\s+RUNNING\s+pid (\d+)",
                                         ctl("status")), "the aggregator RUNNING", 20)  # fmt: skip
    pid = int(running[1])
    _reloads_on_hup(system, lambda: ctl("signal", "HUP", "log_aggregator"), pid)
    assert re.search(rf"log_aggregator\s+RUNNING\s+pid {pid},", ctl("status"))
    ctl("stop", "log_aggregator")
    wait_in_log(system, r"\[log_aggregator\] \[\S+ -\] shutting down$")
