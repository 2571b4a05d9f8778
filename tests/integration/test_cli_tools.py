"""``nowcastkit`` launch, history, checklist and timeline against a real broker and manager."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.operator_tools import CHAIN, history, nowcastkit, run_chain

pytestmark = pytest.mark.timeout(60)
SVG = "{http://www.w3.org/2000/svg}"


def test_launch_runs_a_registered_worker_and_the_flow_continues(running_system):
    running_system.write_next_workers(CHAIN)
    result = nowcastkit(running_system, "launch", "workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "manager launched workers.sleep --sleep-time 0 on localhost: run "
    )
    run_id = result.stdout.split()[-1]
    wait_for(lambda: "awake" in running_system.checklist(), "awaken's report")

    runs = wait_for(lambda: [r for r in history(running_system) if r["finished"]][1:] and
                    history(running_system), "two finished runs")  # fmt: skip
    awaken, sleep = runs
    assert sleep["run"] == run_id and sleep["args"] == ["--sleep-time", "0"]
    assert awaken["parent"] == run_id

    as_json = nowcastkit(
        running_system, "launch", "workers.sleep", "--sleep-time", "0", options=("--json",)
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["module"] == "workers.sleep"


def test_launch_refuses_an_unregistered_worker_and_a_silent_manager(running_system):
    result = nowcastkit(running_system, "launch", "workers.nope")
    assert result.returncode == 2
    assert result.stderr == (
        f"nowcastkit launch: {running_system.config_path}: message registry.workers: "
        "has no worker 'nope'; not launching workers.nope\n"
    )
    running_system.manager.stop()
    result = nowcastkit(running_system, "launch", "workers.sleep", options=("--timeout", "0.5"))
    assert result.returncode == 1
    assert result.stderr.startswith("nowcastkit launch: manager: no answer on tcp://127.0.0.1:")


def test_cancel_stops_a_run_going_now_and_it_ends_as_a_crash(running_system):
    reply = running_system.control({"command": "launch", "worker": "workers.sleep",
                                    "args": ["--sleep-time", "60"]})  # fmt: skip
    run_id = reply["run"]
    wait_for(lambda: history(running_system)[0]["pid"], "the run's pid")
    result = nowcastkit(running_system, "cancel", run_id[:6])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"manager is stopping sleep worker run {run_id} on localhost\n"
    wait_for(lambda: running_system.checklist().get("sleepyhead", {}).get("reason")
             == "cancelled by nowcastkit cancel", "the crash it became")  # fmt: skip
    assert history(running_system)[0]["outcome"] == "crash"
    again = nowcastkit(running_system, "cancel", run_id)
    assert (again.returncode, again.stderr) == (
        1,
        f"nowcastkit cancel: no run going now or retry pending matches {run_id!r}\n",
    )


def test_history_shows_runs_with_outcomes_logs_and_filters(running_system):
    awaken, sleep = run_chain(running_system)
    # A worker that fails at its command line exits without reporting: a crash.
    bad = running_system.control({"command": "launch", "worker": "workers.sleep",
                                  "args": ["--sleep-time", "x"]})  # fmt: skip
    crashed = wait_for(lambda: [r for r in history(running_system, "--failed") if r["finished"]],
                       "the crashed run")  # fmt: skip
    assert [r["run"] for r in crashed] == [bad["run"]]
    assert crashed[0]["outcome"] == "crash"

    assert sleep["outcome"] == "success" and awaken["outcome"] == "success"
    assert sleep["host"] == "localhost" and sleep["seconds"] >= 0
    assert Path(sleep["log"]).read_text().count("slept for 0 seconds") == 1

    result = nowcastkit(running_system, "history")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RUN", "WORKER", "ARGS", "HOST", "ATTEMPT", "STARTED",
                                "FINISHED", "TOOK", "OUTCOME", "LOG"]  # fmt: skip
    assert len(lines) == 4
    row = next(line for line in lines if line.startswith(sleep["run"]))
    assert " sleep " in row and "--sleep-time 0" in row and " success " in row
    assert row.endswith(sleep["log"])

    assert [r["run"] for r in history(running_system, "--worker", "awaken")] == [awaken["run"]]
    assert history(running_system, "--since", "2999-01-01") == []
    assert history(running_system, "--until", "2000-01-01") == []
    assert len(history(running_system, "--limit", "1")) == 1
    bad_date = nowcastkit(running_system, "history", "--since", "23/11/2026")
    assert bad_date.returncode == 2
    assert "--since: got '23/11/2026', expected YYYY-MM-DD" in bad_date.stderr


def test_checklist_from_the_manager_then_from_the_file_when_it_is_down(running_system):
    run_chain(running_system)
    result = nowcastkit(running_system, "checklist")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("awake:\n  awoke at: ")
    assert "sleepyhead:\n  sleep time: 0\n" in result.stdout

    only = json.loads(
        nowcastkit(running_system, "checklist", "sleepyhead", options=("--json",)).stdout
    )
    assert only == {"source": "manager", "checklist": {"sleepyhead": {"sleep time": 0}}}
    missing = nowcastkit(running_system, "checklist", "nosuch")
    assert missing.returncode == 1
    assert missing.stderr == "nowcastkit checklist: checklist has no key 'nosuch'\n"

    running_system.manager.stop()
    fallback = nowcastkit(
        running_system, "checklist", "sleepyhead", options=("--timeout", "0.5", "--json")
    )
    assert fallback.returncode == 0, fallback.stderr
    assert "the manager is not answering; showing" in fallback.stderr
    assert json.loads(fallback.stdout)["checklist"] == {"sleepyhead": {"sleep time": 0}}


def test_timeline_draws_a_bar_per_run_and_an_arrow_per_launch(running_system):
    awaken, sleep = run_chain(running_system)
    out = running_system.folder / "day.svg"
    result = nowcastkit(running_system, "timeline", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: 2 runs on ")

    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG}svg"
    bars = {
        bar.get("data-run"): bar for bar in root.iter(f"{SVG}rect") if bar.get("class") == "run"
    }
    assert set(bars) == {sleep["run"], awaken["run"]}
    assert {bar.get("data-outcome") for bar in bars.values()} == {"success"}
    assert len([p for p in root.iter(f"{SVG}path") if p.get("class") == "launch"]) == 1
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "worker"]
    assert labels == ["sleep", "awaken"]

    page = running_system.folder / "day.html"
    as_json = nowcastkit(running_system, "timeline", "-o", str(page), "--json")
    assert json.loads(as_json.stdout)["runs"] == 2
    assert page.read_text().startswith("<!DOCTYPE html>") and "<svg" in page.read_text()

    png = nowcastkit(running_system, "timeline", "-o", str(running_system.folder / "day.png"))
    if shutil.which("rsvg-convert"):
        assert png.returncode == 0, png.stderr
        assert (running_system.folder / "day.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert png.returncode == 2 and "a PNG needs rsvg-convert" in png.stderr
    bad = nowcastkit(running_system, "timeline", "-o", "day.gif")
    assert bad.returncode == 2 and "expected .svg, .html or .png" in bad.stderr
    empty = nowcastkit(running_system, "timeline", "--date", "2000-01-01", "-o", str(out))
    assert empty.returncode == 0 and "0 runs" in empty.stdout
    assert ET.parse(out).getroot().tag == f"{SVG}svg"
