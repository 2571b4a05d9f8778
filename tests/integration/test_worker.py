"""Worker processes against a real broker and manager: logs, options, failures, timeouts."""

from __future__ import annotations

import re
import socket
import time

import pytest
from conftest import System

pytestmark = pytest.mark.timeout(60)

# A worker exercising the contract: how it ends depends on --mode.
FLAKY_WORKER = '''\
"""Flaky worker for tests."""

from nowcastkit import NowcastWorker, WorkerError


def main():
    worker = NowcastWorker("flaky", description=__doc__)
    worker.init_cli()
    worker.cli.add_argument("--mode", default="ok")
    worker.run(work, lambda args: "success", lambda args: "failure")


def work(parsed_args, config, tell_manager):
    if parsed_args.mode == "worker-error":
        raise WorkerError("the input file is missing")
    if parsed_args.mode == "exception":
        raise ZeroDivisionError("the worker has a bug")
    if parsed_args.mode == "bad-type":
        tell_manager("not registered")
    if parsed_args.mode == "path-payload":
        from pathlib import Path

        return {"file": Path("/results/file.nc")}
    return {"mode": parsed_args.mode}


if __name__ == "__main__":
    main()
'''


def log_lines(output: str) -> list[str]:
    """The messages of a worker's log lines, without timestamps."""
    return [match[1] for match in re.finditer(r"^\S+ \S+ \w+ \[\w+\] (.*)$", output, re.MULTILINE)]


@pytest.fixture
def flaky_system(toy_system: System):
    toy_system.config["message registry"]["workers"]["flaky"] = {
        "checklist key": "flaky",
        "success": "flaky worker worked",
        "failure": "flaky worker failed",
        "crash": "flaky worker crashed",
    }
    (toy_system.folder / "flaky.py").write_text(FLAKY_WORKER)
    toy_system.write_next_workers("def after_flaky(msg, config, checklist):\n    return []\n")
    toy_system.start_broker()
    toy_system.start_manager()
    return toy_system


def test_sleep_worker_logs_the_round_trip_in_order(running_system):
    result = running_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    port = running_system.config["zmq"]["ports"]["workers"]
    lines = log_lines(result.stdout)
    assert re.fullmatch(r"running in process \d+", lines[0])
    assert lines[1:] == [
        f"read config from {running_system.config_path}",
        f"connected to 127.0.0.1 port {port}",
        "slept for 0 seconds",
        "sent message: (success) sleep worker slept well",
        "received message from manager: (ack) message acknowledged",
        "shutting down",
    ]
    assert result.stderr == ""
    assert running_system.checklist() == {"sleepyhead": {"sleep time": 0}}


def test_sleep_time_option_in_debug_mode_without_any_system(toy_system):
    started = time.monotonic()
    result = toy_system.run_worker("workers.sleep", "--sleep-time", "1", "--debug")
    assert time.monotonic() - started >= 1
    assert result.returncode == 0, result.stdout + result.stderr
    lines = log_lines(result.stdout)
    assert "slept for 1 seconds" in lines
    assert "debug mode: would have sent message: (success) sleep worker slept well" in lines
    assert not any(line.startswith("connected to") for line in lines)
    assert not toy_system.checklist()


@pytest.mark.parametrize(
    ("mode", "msg_type", "payload", "logged"),
    [
        ("ok", "success", {"mode": "ok"}, None),
        ("worker-error", "failure", None, r"ERROR \[flaky\] the input file is missing"),
        (
            "exception",
            "crash",
            None,
            r"CRITICAL \[flaky\] unhandled exception:\nTraceback .*\n(.*\n)*ZeroDivisionError",
        ),
        ("bad-type", "crash", None, r"message type 'not registered' is not registered"),
        ("path-payload", "crash", None, r"CRITICAL \[flaky\] flaky: payload of 'success'"),
    ],
    ids=["success", "worker-error", "exception", "unregistered-type", "path-payload"],
)
def test_worker_outcome_reaches_the_manager(flaky_system, mode, msg_type, payload, logged):
    result = flaky_system.run_worker("flaky", "--mode", mode)
    assert result.returncode == 0, result.stdout + result.stderr
    if logged:
        assert re.search(logged, result.stdout), result.stdout
    assert f"sent message: ({msg_type}) flaky worker" in result.stdout
    flaky_system.manager.wait_for_line(rf"received message from flaky: \({msg_type}\)")
    assert flaky_system.checklist() == ({"flaky": payload} if payload else {})


def test_error_reply_from_manager_exits_non_zero(toy_system):
    toy_system.write_next_workers("def after_sleep(msg, config, checklist):\n    raise KeyError\n")
    toy_system.start_broker()
    toy_system.start_manager()
    result = toy_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 1
    assert "ERROR [sleep] received message from manager: (after_worker error)" in result.stdout


def test_unregistered_worker_exits_non_zero_with_one_line(running_system):
    del running_system.config["message registry"]["workers"]["sleep"]
    running_system.write_config()
    result = running_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 1
    (critical,) = [line for line in result.stdout.splitlines() if "CRITICAL" in line]
    assert "message registry.workers: worker 'sleep' is not registered" in critical


def reply_timeout_config(system: System, workers_port: int) -> None:
    system.config["zmq"].update({"reply timeout": 0.3, "reply attempts": 2})
    system.config["zmq"]["ports"]["workers"] = workers_port
    system.write_config()


def assert_gave_up(result, endpoint: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("no reply from manager within 0.3s; resending") == 1
    (critical,) = [line for line in result.stdout.splitlines() if "CRITICAL" in line]
    assert f"no reply from manager via {endpoint} after 2 sends over " in critical
    assert critical.endswith("s; is the message broker running?")


def test_reply_timeout_with_no_manager_exits_non_zero(toy_system):
    toy_system.start_broker()
    reply_timeout_config(toy_system, toy_system.config["zmq"]["ports"]["workers"])
    started = time.monotonic()
    result = toy_system.run_worker("workers.sleep", "--sleep-time", "0", timeout=20)
    assert time.monotonic() - started < 10
    assert_gave_up(result, toy_system.workers_endpoint)


def test_reply_timeout_with_no_broker_exits_non_zero(toy_system):
    # A bound but not listening socket keeps the port ours and refuses connections.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        reply_timeout_config(toy_system, port)
        started = time.monotonic()
        result = toy_system.run_worker("workers.sleep", "--sleep-time", "0", timeout=20)
    assert time.monotonic() - started < 10
    assert_gave_up(result, f"tcp://127.0.0.1:{port}")


def test_a_broker_restarted_while_a_worker_waits_gets_the_request_at_once_issue_15(toy_system):
    """The request died with the broker; the reconnect resends it, not the 30 s reply timeout."""
    toy_system.config["zmq"].update({"reply timeout": 30, "reply attempts": 1})
    first = toy_system.start_broker()
    worker = toy_system.spawn("worker", "-m", "workers.sleep", "--sleep-time", "0")
    worker.wait_for_line(r"sent message: \(success\)")
    first.popen.kill()
    first.popen.wait(5)
    restarted = time.monotonic()
    toy_system.start_broker()
    toy_system.start_manager()
    worker.wait_for_line(r"received message from manager: \(ack\)")
    assert time.monotonic() - restarted < 5
    assert worker.popen.wait(5) == 0
    assert "reconnected to the broker; resending at once" in worker.output()
    assert toy_system.checklist() == {"sleepyhead": {"sleep time": 0}}
