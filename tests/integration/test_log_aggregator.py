"""The log aggregator with real processes on loopback: what lands in its files, and what a
dead or restarted aggregator does to the processes that log to it (nothing)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from nowcastkit import keys
from tests.conftest import REPO, child_env, wait_for
from tests.integration.log_aggregation import (
    chatty,
    debug_log,
    start_aggregator,
    use_aggregator,
    wait_in_log,
)
from tests.remote_runs import chain_across

pytestmark = pytest.mark.timeout(60)

HOST = re.escape(os.uname().nodename)


def test_worker_and_manager_lines_land_in_the_aggregators_files_issue_16(toy_system):
    use_aggregator(toy_system)
    start_aggregator(toy_system)
    toy_system.start_broker()
    toy_system.start_manager()
    reply = toy_system.control({"command": "launch", "worker": "workers.sleep",
                                "args": ["--sleep-time", "0"]})  # fmt: skip
    assert reply["ok"], reply
    run = reply["run"]
    wait_in_log(toy_system, rf"^\S+ \S+ INFO \[sleep\] \[{HOST} {run}\] slept for 0 seconds$")
    wait_in_log(toy_system, rf"INFO \[manager\] \[{HOST} -\] listening|\[manager\] \[{HOST} -\]")
    wait_in_log(toy_system, rf"\[message_broker\] \[{HOST} -\] worker socket bound to port")
    # The PUBHandler of the publisher schema was replaced, and said so once per process.
    assert re.search(r"\[sleep\] .*handler zmq_pub: zmq.log.handlers.PUBHandler replaced",
                     debug_log(toy_system))  # fmt: skip
    info = (toy_system.folder / "nowcast.log").read_text()
    assert "DEBUG" not in info and f"[sleep] [{os.uname().nodename} {run}] slept" in info
    # The manager's per-run log file still has the run's own lines.
    run_log = toy_system.folder / "runs" / f"sleep-{run}.log"
    wait_for(lambda: "slept for 0 seconds" in run_log.read_text(), f"the line in {run_log}")


def test_rotate_logs_rotates_the_aggregators_files_and_the_aggregator_follows(toy_system):
    registry = yaml.safe_load((REPO / "nowcast.yaml").read_text())["message registry"]["workers"]
    for name in ("rotate_logs", "clear_checklist"):
        toy_system.config["message registry"]["workers"][name] = registry[name]
    toy_system.write_next_workers((REPO / "example_system" / "next_workers.py").read_text())
    use_aggregator(toy_system)
    start_aggregator(toy_system)
    toy_system.start_broker()
    toy_system.start_manager()
    folder = toy_system.folder
    files = [folder / name for name in ("nowcast.log", "nowcast.debug.log", "checklist.log")]
    for argv in (("workers.sleep", "--sleep-time", "0"), ("workers.clear_checklist",)):
        assert toy_system.run_worker(*argv).returncode == 0
    wait_for(lambda: "checklist:" in files[2].read_text(), "the checklist dump in checklist.log")
    files[0].chmod(0o640)

    result = toy_system.run_worker("workers.rotate_logs")
    assert result.returncode == 0, result.stdout + result.stderr

    assert sorted(toy_system.checklist()["log files"]) == sorted(map(str, files))
    assert files[0].stat().st_mode & 0o777 == 0o640
    old = [path.with_name(path.name + ".1").read_text() for path in files]
    assert "[sleep]" in old[1] and "checklist:" in old[2]
    # rotate_logs' own last lines, sent after the rollover, start the new files.
    wait_in_log(toy_system, r"\[rotate_logs\] \S+ \S+ log files rotated$")
    assert "[sleep]" not in debug_log(toy_system)
    assert toy_system.run_worker("workers.sleep", "--sleep-time", "0").returncode == 0
    wait_in_log(toy_system, r"\[sleep\] \S+ \S+ slept for 0 seconds$")
    assert files[1].with_name("nowcast.debug.log.1").read_text() == old[1]


def test_a_worker_run_by_hand_names_the_run_the_manager_gave_it(toy_system):
    use_aggregator(toy_system)
    start_aggregator(toy_system)
    toy_system.start_broker()
    toy_system.start_manager()
    result = toy_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stderr
    found = wait_in_log(toy_system, rf"\[sleep\] \[{HOST} ([0-9a-f-]+)\] slept for 0 seconds")
    assert found[1] != "-"


def test_an_aggregator_killed_and_restarted_never_blocks_or_kills_a_worker(toy_system):
    use_aggregator(toy_system)
    aggregator = start_aggregator(toy_system)
    started = time.monotonic()
    worker = chatty(toy_system, 3.0)
    wait_in_log(toy_system, r"\[chatty\] \[\S+ run-chatty\] line 20$")
    aggregator.popen.send_signal(signal.SIGKILL)
    aggregator.popen.wait(5)
    time.sleep(0.5)  # the worker logs on with no aggregator for that long
    start_aggregator(toy_system)
    _out, err = worker.communicate(timeout=10)
    assert worker.returncode == 0, err
    # 3 s of logging and at most a second's linger: the dead aggregator cost it nothing more.
    assert time.monotonic() - started < 3.0 + 1.0 + 2.0
    last = wait_in_log(toy_system, r"\[chatty\] \[\S+ run-chatty\] last line (\d+)$")
    numbers = [int(n) for n in re.findall(r"\[chatty\] \S+ \S+ line (\d+)$", debug_log(toy_system),
                                          re.MULTILINE)]  # fmt: skip
    assert numbers and max(numbers) < int(last[1])


def test_with_no_aggregator_at_all_a_worker_exits_within_its_linger(toy_system):
    use_aggregator(toy_system, port=_free_port())
    started = time.monotonic()
    worker = chatty(toy_system, 0.2)
    _out, err = worker.communicate(timeout=10)
    assert worker.returncode == 0, err
    assert time.monotonic() - started < 0.2 + 1.0 + 2.0
    assert re.search(r"nowcastkit: \d+ log records not sent to the log aggregator at tcp://", err)


def test_a_publisher_handler_class_that_does_not_exist_is_a_one_line_error(toy_system):
    use_aggregator(toy_system, port=_free_port())
    handler = toy_system.config["logging"]["publisher"]["handlers"]["zmq_pub"]
    handler["class"] = "nowcastkit.nope.Handler"
    toy_system.write_config()
    result = toy_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"sleep: {toy_system.config_path}: logging.publisher: ")
    assert "nowcastkit.nope" in line


def test_bad_logging_ports_stop_the_aggregator_with_one_line(toy_system):
    use_aggregator(toy_system)
    toy_system.config["zmq"]["ports"]["logging"]["aggregator"] = "x"
    toy_system.config["zmq"]["ports"]["logging"]["workers"] = [4357, {"port": 1}]
    toy_system.write_config()
    result = _aggregator_refused(toy_system)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line == (f"log_aggregator: {toy_system.config_path}: zmq.ports.logging.aggregator: "
                    "got 'x', expected 0 to 65535")  # fmt: skip


def test_the_aggregator_fails_closed_beyond_loopback_without_curve(toy_system):
    use_aggregator(toy_system, port=_free_port())
    toy_system.config["zmq"]["bind"] = "*"
    toy_system.write_config()
    result = _aggregator_refused(toy_system)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "zmq.bind: got '*': the broker would accept anyone" in line


def test_a_taken_aggregator_port_is_a_one_line_error(toy_system):
    use_aggregator(toy_system)
    start_aggregator(toy_system)
    result = _aggregator_refused(toy_system)
    assert result.returncode == 1
    assert "zmq.ports.logging.aggregator: cannot bind tcp://127.0.0.1:" in debug_log(toy_system)


def _aggregator_refused(system) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nowcastkit.log_aggregator", str(system.config_path)],
        capture_output=True, text=True, timeout=30, cwd=system.folder, env=child_env(),
    )  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_worker_over_ssh_publishes_to_the_aggregator_issue_12(toy_system, sshd):
    use_aggregator(toy_system)
    start_aggregator(toy_system)
    runs = chain_across(toy_system, "far", {"ssh host": "127.0.0.1", "ssh options": sshd.options})
    _awaken, sleep = runs
    assert sleep["host"] == "far"
    # The remote run read the host's config file (this one): the broker's host, the
    # aggregator's port; its run id came from the launch, in NOWCASTKIT_RUN_ID.
    wait_in_log(toy_system, rf"\[sleep\] \[{HOST} {sleep['run']}\] slept for 0 seconds$")
    remote_log = toy_system.folder / "remote runs" / f"{sleep['run']}.log"
    assert "[sleep] slept for 0 seconds" in remote_log.read_text()


def test_with_ipc_the_aggregator_listens_in_the_ipc_folder(toy_system):
    folder = toy_system.folder / "sockets"
    toy_system.config["zmq"]["transport"] = "ipc"
    toy_system.config["zmq"]["ipc folder"] = str(folder)
    use_aggregator(toy_system, port=0)
    start_aggregator(toy_system)
    wait_in_log(
        toy_system, rf"aggregator socket bound to ipc://{re.escape(str(folder))}/logging\.sock$"
    )
    worker = chatty(toy_system, 0.1)
    _out, err = worker.communicate(timeout=10)
    assert worker.returncode == 0, err
    wait_in_log(toy_system, r"\[chatty\] \[\S+ run-chatty\] last line \d+$")
    assert [p.name for p in folder.iterdir()] == ["logging.sock"]


def test_beyond_loopback_with_curve_only_allowed_keys_get_their_lines_in(toy_system):
    folder = toy_system.folder / "keys"
    clients = {"manager": "manager", "scheduler": "scheduler", "cli": "ops", "workers": "host1"}
    for name in ("broker", "stranger", *clients.values()):
        keys.generate(folder, name)
    for name in clients.values():
        keys.allow(folder / "allowed", folder / f"{name}.key")
    toy_system.config["zmq"].update(bind="*", curve={"keys": "keys", "broker": "broker",
                                                     "clients": clients})  # fmt: skip
    use_aggregator(toy_system)
    aggregator = start_aggregator(toy_system)
    wait_in_log(toy_system, r"\[log_aggregator\] \[\S+ -\] CURVE on: 4 allowed keys in ")
    worker = chatty(toy_system, 0.1)
    assert worker.wait(10) == 0, worker.stderr.read()
    wait_in_log(toy_system, r"\[chatty\] \[\S+ run-chatty\] last line \d+$")

    toy_system.config["zmq"]["curve"]["clients"]["workers"] = "stranger"
    toy_system.write_config()
    started = time.monotonic()
    stranger = chatty(toy_system, 0.1)
    _out, err = stranger.communicate(timeout=10)
    assert stranger.returncode == 0, err
    assert time.monotonic() - started < 0.1 + 1.0 + 2.0
    wait_in_log(toy_system, r"handshake rejected from 127\.0\.0\.1.*: key not allowed")
    assert re.search(r"nowcastkit: \d+ log records not sent to the log aggregator", err)
    assert debug_log(toy_system).count("last line") == 1
    assert aggregator.popen.poll() is None


@pytest.mark.timeout(120)
def test_a_slurm_job_publishes_to_the_aggregator_issue_12(slurm, toy_system):
    use_aggregator(toy_system)
    start_aggregator(toy_system)
    _awaken, sleep = chain_across(toy_system, "hpc", {"launcher": "slurm"})
    assert sleep["host"] == "hpc" and isinstance(sleep["job id"], int)
    wait_in_log(toy_system, rf"\[sleep\] \[{HOST} {sleep['run']}\] slept for 0 seconds$")
    job_log = toy_system.folder / "remote runs" / f"sleep-{sleep['run']}.log"
    assert "[sleep] slept for 0 seconds" in job_log.read_text()
