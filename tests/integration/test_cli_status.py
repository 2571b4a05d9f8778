"""``nowcastkit status``: a real circusd for the processes, or a broker and manager alone."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.conftest import wait_for
from tests.integration.operator_tools import nowcastkit, run_chain
from tests.integration.test_circus import _env, _kill_leftovers, _wait_ready, start_circus

pytestmark = pytest.mark.timeout(90)


def test_status_under_circus_is_healthy_until_a_watcher_stops(tmp_path):
    entry = {"every": "day", "at": "05:15", "cmd line opts": "--sleep-time 0"}
    system = start_circus(tmp_path, schedule=[{"workers.sleep": entry}])
    try:
        _wait_ready(system)
        # circus.ini beside nowcast.yaml names circusd's endpoint.
        env = _env(tmp_path)
        result = nowcastkit(system, "status", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == f"circus at ipc://{tmp_path}/circus.sock:"
        assert [line.split() for line in lines[2:7]] == [
            ["dashboard", "active"], ["log_aggregator", "active"], ["manager", "active"],
            ["message_broker", "active"], ["scheduler", "active"],
        ]  # fmt: skip
        assert lines[7].startswith(f"manager: answering, pid {system.pid('manager')} on ")
        assert "workers running now: none" in lines
        today = lines[lines.index("last outcome today:") + 1 :]
        assert today[0].split() == ["WORKER", "OUTCOME", "STARTED", "FINISHED", "RUN"]
        assert {" ".join(row.split()[:4]) for row in today[1:5]} == {
            f"{name} no run today" for name in ("sleep", "awaken", "rotate_logs", "clear_checklist")
        }
        fires = lines[lines.index("next scheduled fires:") + 2]
        assert fires.endswith("workers.sleep every day at 05:15 --sleep-time 0")
        assert lines[-1] == "checklist keys: (empty)"

        report = json.loads(nowcastkit(system, "status", options=("--json",), env=env).stdout)
        assert report["healthy"] is True and report["problems"] == []
        assert report["circus"]["watchers"] == {
            "dashboard": "active", "log_aggregator": "active", "manager": "active",
            "message_broker": "active", "scheduler": "active",
        }  # fmt: skip
        assert report["manager"]["pid"] == system.pid("manager")
        assert report["next fires"][0]["next"].split("T")[1].startswith("05:15:00")

        system.ctl("stop", "scheduler")
        stopped = nowcastkit(system, "status", env=env)
        assert stopped.returncode == 1
        assert "PROBLEM: circus: watcher scheduler is stopped" in stopped.stdout
        system.quit()
    finally:
        _kill_leftovers(system)


def test_status_without_circus_shows_runs_outcomes_and_checklist(running_system):
    awaken, sleep = run_chain(running_system)
    result = nowcastkit(running_system, "status", options=("--no-circus",))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"manager: answering, pid {running_system.manager.popen.pid} ")
    today = {row.split()[0]: row for row in lines[lines.index("last outcome today:") + 2 :][:2]}
    for run in (sleep, awaken):
        assert today[run["worker"]].split()[1] == "success"
        assert today[run["worker"]].endswith(run["run"])
    assert lines[-1] == "checklist keys: awake, sleepyhead"

    # A running worker shows with its args, pid and run.
    reply = running_system.control({"command": "launch", "worker": "workers.sleep",
                                    "args": ["--sleep-time", "20"]})  # fmt: skip
    options = ("--json", "--no-circus")

    def running_now():
        report = json.loads(nowcastkit(running_system, "status", options=options).stdout)
        return report["manager"]["running"] and report

    report = wait_for(running_now, "a running worker in the status")
    (running,) = report["manager"]["running"]
    assert running["run"] == reply["run"] and running["args"] == ["--sleep-time", "20"]
    text = nowcastkit(running_system, "status", options=("--no-circus",)).stdout
    row = text.splitlines()[text.splitlines().index("workers running now:") + 2]
    assert row.split()[:4] == ["sleep", "--sleep-time", "20", "localhost"]
    assert row.endswith(reply["run"])
    os.kill(running["pid"], signal.SIGKILL)


def test_status_says_circus_is_not_running_and_the_manager_is_not_answering(running_system):
    gone = f"ipc://{running_system.folder}/no-circus.sock"
    result = nowcastkit(running_system, "status", options=("--circus", gone, "--timeout", "0.5"))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == f"circus: NOT RUNNING (no answer at {gone})"

    running_system.manager.stop()
    result = nowcastkit(running_system, "status", options=("--no-circus", "--timeout", "0.5"))
    assert result.returncode == 1
    assert result.stdout.startswith("manager: NOT ANSWERING (manager: no answer on tcp://")
    assert "checklist keys (from the checklist file): (empty)" in result.stdout
    report = json.loads(nowcastkit(running_system, "status", options=(
        "--no-circus", "--timeout", "0.5", "--json")).stdout)  # fmt: skip
    assert report["healthy"] is False and report["manager"]["ok"] is False
