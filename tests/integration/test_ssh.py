"""Workers on another host through a real OpenSSH server on loopback, started by the fixture;
and once across a real network boundary, the host a network namespace behind a veth pair."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import yaml
from conftest import REPO, base_config, wait_for
from remote_runs import chain_across, echo_worker, ended, located, pids_of, unstarted
from sshd_server import accepts, free_port, serving_ssh, stop_gently

from nowcastkit import NextWorker
from nowcastkit import store as st
from nowcastkit.config import load_config
from nowcastkit.manager.decide import Launch
from nowcastkit.manager.supervisor import Supervisor

pytestmark = pytest.mark.timeout(60)


DANGEROUS = ["'; touch INJECTED; '", "$(touch INJECTED)", "`touch INJECTED`", "a b", "", "*"]


@pytest.fixture
def remote(tmp_path, sshd, monkeypatch):
    """A config whose host ``far`` is this machine reached through the fixture's sshd."""
    envvars = echo_worker(tmp_path)
    raw = base_config(tmp_path)
    raw["message registry"]["workers"]["echo_args"] = {"crash": "crashed"}
    raw["run"] = {"enabled hosts": {"far": {
        "ssh host": "127.0.0.1", "ssh options": sshd.options, "python": sys.executable,
        "config file": str(tmp_path / "remote nowcast.yaml"), "envvars": str(envvars),
        "run dir": str(tmp_path / "remote runs"), "poll interval": 1,
    }}}  # fmt: skip
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return load_config(tmp_path / "nowcast.yaml")


def far(config, **entry):
    config["run"]["enabled hosts"]["far"].update(entry)
    return config


def test_a_remote_worker_gets_its_arguments_as_given_and_none_runs_in_the_shell(remote, tmp_path):
    supervisor = Supervisor(remote, tmp_path / "runs")
    [running], failed = supervisor.start([Launch("r1", NextWorker("echo_args", DANGEROUS, "far"))])
    assert failed == [] and running.pid is None  # the ssh call is in flight, the loop is not held
    run = ended(supervisor)
    assert run.status == 0
    echoed = json.loads((tmp_path / "echoed.json").read_text())
    assert echoed == {"argv": [str(tmp_path / "remote nowcast.yaml"), *DANGEROUS], "run": "r1"}
    assert not list(tmp_path.rglob("INJECTED")) and not (Path.home() / "INJECTED").exists()
    assert run.crash.payload["host"] == "far"
    assert run.crash.payload["log"] == f"far:{tmp_path}/remote runs/r1.log"
    assert run.crash.payload["last output"] == ["echoed"]


def test_an_exit_status_and_a_signal_come_back_from_the_other_host(remote, tmp_path):
    supervisor = Supervisor(remote, tmp_path / "runs")
    supervisor.start([Launch("r2", NextWorker("echo_args", ["--exit", "3"], "far"))])
    assert ended(supervisor).crash.payload["exit status"] == 3
    supervisor.start([Launch("r3", NextWorker("echo_args", ["--sleep", "60"], "far"))])
    [wrapper] = located(supervisor, "r3")
    for pid in set(pids_of("r3")) - {wrapper}:
        os.kill(pid, signal.SIGKILL)
    run = ended(supervisor)
    assert (run.pid, run.status, run.crash.payload["signal"]) == (wrapper, -9, "SIGKILL")


def test_an_unreachable_host_is_tried_again_until_the_deadline_then_given_up(
    remote, tmp_path, caplog
):
    remote["message registry"]["workers"]["echo_args"]["timeout"] = 3
    supervisor = Supervisor(far(remote, **{"ssh options": ["-p", str(free_port())]}), tmp_path)
    started = time.monotonic()
    supervisor.start([Launch("r4", NextWorker("echo_args", [], "far"))])
    reason = unstarted(supervisor, "r4")
    assert 3 <= time.monotonic() - started < 15  # ConnectTimeout: no attempt hangs
    assert reason.startswith("unreachable: ssh: connect to host 127.0.0.1 port ")
    assert reason.endswith("Connection refused")
    assert caplog.text.count("trying again in 1 s") >= 2


def test_an_unknown_host_key_is_given_up_at_once(remote, sshd, tmp_path, caplog):
    (tmp_path / "empty_known_hosts").write_text("")
    options = [o.replace(str(sshd.folder / "known_hosts"), str(tmp_path / "empty_known_hosts"))
               for o in sshd.options]  # fmt: skip
    supervisor = Supervisor(far(remote, **{"ssh options": options}), tmp_path / "runs")
    supervisor.start([Launch("r5", NextWorker("echo_args", [], "far"))])
    assert unstarted(supervisor, "r5") == "unknown host key: Host key verification failed."
    assert "trying again" not in caplog.text
    assert not (tmp_path / "echoed.json").exists()


def test_a_deadline_stops_the_whole_remote_process_group(remote, tmp_path):
    remote["message registry"]["workers"]["echo_args"]["timeout"] = 2
    supervisor = Supervisor(remote, tmp_path / "runs")
    supervisor.start([Launch("r6", NextWorker("echo_args", ["--sleep", "60"], "far"))])
    run = ended(supervisor)
    assert run.crash.payload["reason"] == "timeout"
    assert run.status == -signal.SIGTERM
    wait_for(lambda: not pids_of("r6"), "nothing of the run left on the other host")


def test_a_new_manager_adopts_remote_runs_and_starts_none_twice(remote, tmp_path):
    first = Supervisor(remote, tmp_path / "runs")
    first.start([Launch("r7", NextWorker("echo_args", ["--sleep", "2"], "far")),
                 Launch("r8", NextWorker("echo_args", ["--sleep", "2"], "far"))])  # fmt: skip
    pid, _ = located(first, "r7", "r8")
    # The manager restarts: r7's pid was recorded, r8's launch was committed but not its pid.
    second = Supervisor(remote, tmp_path / "runs")
    launches, found = second.recover([
        st.Run("r7", "echo_args", "echo_args", ("--sleep", "2"), "far", pid, launched=time.time()),
        st.Run("r8", "echo_args", "echo_args", ("--sleep", "2"), "far", None, launched=time.time()),
    ], "here")  # fmt: skip
    assert (launches, found) == ([], {})
    runs = []
    wait_for(lambda: runs.extend(second.tick(time.monotonic())) or len(runs) == 2, "both to end")
    assert {run.run_id: run.status for run in runs} == {"r7": 0, "r8": 0}
    for run_id in ("r7", "r8"):
        assert (tmp_path / "remote runs" / f"{run_id}.log").read_text() == "echoed\n"


def test_a_frozen_server_is_noticed_and_proves_nothing_about_the_run(
    remote, sshd, tmp_path, caplog
):
    quick = ["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2", "-o", "ConnectTimeout=2"]
    supervisor = Supervisor(far(remote, **{"ssh options": quick + sshd.options}), tmp_path)
    supervisor.start([Launch("r9", NextWorker("echo_args", ["--sleep", "60"], "far"))])
    located(supervisor, "r9")
    frozen = [sshd.popen.pid, *sshd.sessions()]  # the listener and the shared connection
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: supervisor.tick(time.monotonic()) or "could not look" in caplog.text,
                 "the frozen poll to fail", 20)  # fmt: skip
        assert "could not look at the runs on far (unreachable)" in caplog.text
        assert "r9" in supervisor.active  # a failed look proves nothing
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for pid in pids_of("r9"):
            os.kill(pid, signal.SIGKILL)
    assert ended(supervisor).run_id == "r9"  # the server back, the next look sees it gone


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


def test_a_chain_crosses_to_the_other_host_and_back_through_the_manager(toy_system, sshd):
    runs = chain_across(toy_system, "far", {"ssh host": "127.0.0.1", "ssh options": sshd.options})
    awaken, sleep = runs
    assert (sleep["host"], sleep["outcome"], awaken["host"]) == ("far", "success", "localhost")
    assert awaken["parent"] == sleep["run"]
    remote_runs = toy_system.folder / "remote runs"
    assert sleep["pid"] == int((remote_runs / f"{sleep['run']}.pid").read_text())
    assert sleep["log"] == f"far:{remote_runs}/{sleep['run']}.log"


def test_a_cancelled_remote_run_loses_its_whole_process_group(remote, tmp_path):
    supervisor = Supervisor(remote, tmp_path / "runs")
    supervisor.start([Launch("r10", NextWorker("echo_args", ["--sleep", "60"], "far"))])
    located(supervisor, "r10")
    assert supervisor.cancel("r10", "ops") is not None
    run = ended(supervisor)
    assert (run.crash.payload["reason"], run.status) == ("cancelled by ops", -signal.SIGTERM)
    wait_for(lambda: not pids_of("r10"), "nothing of the run left on the other host")


IP = shutil.which("ip") or "/usr/sbin/ip"


def ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([IP, *argv], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 or not check, f"ip {' '.join(argv)}: {done.stderr}"
    return done


@attrs.define
class Namespace:
    """A network namespace joined to this one by a veth pair, a /30 between the two ends."""

    name: str
    veth: str
    #: The address of this side's end, and of the end inside the namespace.
    here: str
    there: str

    def pids(self) -> list[int]:
        return [int(pid) for pid in ip("netns", "pids", self.name, check=False).stdout.split()]


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 in 10.231.0.0/16 none of whose addresses this machine's addresses and routes
    name (parallel runs of the suite each make their own)."""
    taken = ip("-o", "-4", "addr").stdout + ip("-4", "route").stdout
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.231.{random.randrange(256)}.{random.randrange(64) * 4}/30")
        if not any(str(address) in taken for address in net):
            return net
    raise AssertionError(f"no free /30 in 10.231.0.0/16:\n{taken}")


@pytest.fixture
def namespace():
    """A network namespace of the test's own, ``lo`` up, a veth pair to this one; all of it,
    and every process left inside, gone at the end."""
    if not os.access(IP, os.X_OK):
        pytest.fail("no ip on this machine: bin/system-packages installs Debian's iproute2")
    tag = secrets.token_hex(4)
    made = ip("netns", "add", f"nk-{tag}", check=False)
    if made.returncode != 0:
        if any(word in made.stderr for word in ("Permission denied", "Operation not permitted")):
            pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
        raise AssertionError(f"ip netns add nk-{tag}: {made.stderr}")
    net = _free_subnet()
    here, there = (str(address) for address in net.hosts())
    ns = Namespace(f"nk-{tag}", f"nk{tag}h", here, there)
    try:
        ip("link", "add", ns.veth, "type", "veth", "peer", "name", f"nk{tag}n", "netns", ns.name)
        ip("addr", "add", f"{here}/30", "dev", ns.veth)
        ip("link", "set", ns.veth, "up")
        ip("-n", ns.name, "addr", "add", f"{there}/30", "dev", f"nk{tag}n")
        ip("-n", ns.name, "link", "set", f"nk{tag}n", "up")
        ip("-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        try:
            stop_gently(ns.pids())  # what sshd's sessions left: the detached runs
            wait_for(lambda: not ns.pids(), f"the processes in {ns.name} to die")
        finally:
            _delete(ns)


def _delete(ns: Namespace) -> None:
    ip("netns", "del", ns.name)
    # The veth goes with the namespace, once the kernel has let go of it.
    deadline = time.monotonic() + 5
    while ip("link", "show", ns.veth, check=False).returncode == 0:
        if time.monotonic() > deadline:
            ip("link", "del", ns.veth, check=False)
            break
        time.sleep(0.05)


@pytest.fixture
def sshd_there(tmp_path, namespace):
    """A real sshd inside the namespace, on its end of the veth only."""
    prefix = [IP, "netns", "exec", namespace.name]
    with serving_ssh(tmp_path / "sshd-there", namespace.there, 22, prefix) as server:
        yield server


def test_a_chain_crosses_a_network_boundary_to_the_other_host_and_back(
    toy_system, namespace, sshd_there
):
    """The far host is a network namespace: its worker reaches the broker across the veth,
    at ``zmq.host``, the one address the broker binds."""
    toy_system.config["zmq"]["host"] = namespace.here
    # Beyond loopback without CURVE: the broker starts only when told so (issue 15).
    toy_system.config["zmq"]["insecure"] = True
    folder = toy_system.folder
    envvars = folder / "far env"
    envvars.write_text(f"export PYTHONPATH='{REPO}'\n"
                       f"readlink /proc/$$/ns/net >'{folder / 'far netns'}'\n")  # fmt: skip
    runs = chain_across(toy_system, "far", {
        "ssh host": namespace.there, "ssh options": sshd_there.options, "envvars": str(envvars),
    })  # fmt: skip
    awaken, sleep = runs
    assert (sleep["host"], sleep["outcome"], awaken["host"]) == ("far", "success", "localhost")
    assert awaken["parent"] == sleep["run"]
    inside = f"net:[{os.stat(f'/run/netns/{namespace.name}').st_ino}]"
    assert (folder / "far netns").read_text().strip() == inside != os.readlink("/proc/self/ns/net")
    port = toy_system.config["zmq"]["ports"]["workers"]
    log = (folder / "remote runs" / f"{sleep['run']}.log").read_text()
    assert f"connected to {namespace.here} port {port}" in log
    assert not accepts("127.0.0.1", port)  # bound to the veth's address, not to loopback


def test_a_server_that_never_answers_is_a_launch_failure_within_connect_timeout(
    remote, sshd, tmp_path
):
    remote["message registry"]["workers"]["echo_args"]["timeout"] = 4
    options = ["-o", "ConnectTimeout=2", *sshd.options]
    supervisor = Supervisor(far(remote, **{"ssh options": options}), tmp_path / "runs")
    os.kill(sshd.popen.pid, signal.SIGSTOP)  # the kernel accepts; no banner ever comes
    try:
        started = time.monotonic()
        supervisor.start([Launch("r11", NextWorker("echo_args", [], "far"))])
        reason = unstarted(supervisor, "r11")
    finally:
        os.kill(sshd.popen.pid, signal.SIGCONT)
    assert time.monotonic() - started < 12
    assert reason.startswith("unreachable: ") and "timed out" in reason
