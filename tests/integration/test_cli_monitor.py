"""``nowcastkit monitor``: a live tap of the manager's events, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import child_env
from tests.integration.operator_tools import CHAIN

pytestmark = pytest.mark.timeout(60)


def start_monitor(system, *options: str) -> subprocess.Popen:
    """A monitor process, returned once it says its subscription is live."""
    monitor = subprocess.Popen(
        [sys.executable, "-m", "nowcastkit.cli", "monitor", "--timeout", "30", *options,
         str(system.config_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    line = monitor.stderr.readline()
    assert "monitoring the manager at tcp://127.0.0.1:" in line, line
    return monitor


def finish(monitor: subprocess.Popen) -> list[str]:
    try:
        out, err = monitor.communicate(timeout=30)
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()
    assert monitor.returncode == 0, err
    return out.splitlines()


def test_monitor_sees_a_chains_events_in_order(running_system):
    running_system.write_next_workers(CHAIN)
    everything = start_monitor(running_system, "--json", "--count", "8")
    awaken_only = start_monitor(running_system, "--worker", "awaken", "--type", "received",
                                "--count", "1")  # fmt: skip
    reply = running_system.control({"command": "launch", "worker": "workers.sleep",
                                    "args": ["--sleep-time", "0"]})  # fmt: skip

    events = [json.loads(line) for line in finish(everything)]
    seen = [(e["event"], e["worker"]) for e in events]
    assert sorted(seen) == sorted([
        ("launch", "sleep"), ("received", "sleep"), ("reply", "sleep"), ("exit", "sleep"),
        ("launch", "awaken"), ("received", "awaken"), ("reply", "awaken"), ("exit", "awaken"),
    ])  # fmt: skip
    # Each run's own events in order; awaken starts only after sleep's reply.
    for worker in ("sleep", "awaken"):
        assert [k for k, w in seen if w == worker] == ["launch", "received", "reply", "exit"]
    assert seen.index(("reply", "sleep")) < seen.index(("launch", "awaken"))
    sleep_run = reply["run"]
    launch_sleep, received = events[0], events[1]
    assert launch_sleep["run"] == sleep_run and launch_sleep["args"] == ["--sleep-time", "0"]
    assert received["type"] == "success" and received["run"] == sleep_run
    assert received["pid"] == launch_sleep["pid"] and received["host"] and received["id"]
    assert received["payload"] == {"sleep time": 0}
    launch_awaken = next(e for e in events if e["event"] == "launch" and e["worker"] == "awaken")
    assert launch_awaken["parent"] == sleep_run
    assert next(e for e in events if e["event"] == "exit" and e["worker"] == "sleep")["status"] == 0

    (line,) = finish(awaken_only)
    assert "received" in line and " awaken " in line and "(success) from pid " in line


def test_monitor_reports_a_crash_and_filters_payloads(running_system):
    crashes = start_monitor(running_system, "--type", "crash", "--count", "1")
    payloads = start_monitor(running_system, "--payload-only", "--count", "1")
    running_system.control({"command": "launch", "worker": "workers.sleep",
                            "args": ["--sleep-time", "x"]})  # fmt: skip
    (line,) = finish(crashes)
    assert " crash " in line and "exited without reporting to the manager (exit status 2)" in line
    (payload,) = finish(payloads)
    crash = json.loads(payload)
    assert crash["reason"] == "exited without reporting to the manager"
    assert crash["exit status"] == 2


def test_monitor_times_out_without_its_count_and_waits_for_a_manager(toy_system):
    toy_system.config["zmq"]["ports"].update(manager=1, monitor=1)  # nothing listens there
    toy_system.write_config()
    result = subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", "monitor", "--count", "1", "--timeout", "2.5",
         str(toy_system.config_path)],
        capture_output=True, text=True, timeout=30, env=child_env(),
    )  # fmt: skip
    assert result.returncode == 1
    assert "waiting for the manager's monitor socket at tcp://127.0.0.1:1" in result.stderr
