"""The scheduler as a real process: on-time launches, SIGHUP, SIGTERM, bad config, catch-up."""

from __future__ import annotations

import datetime as dt
import math
import signal
import sys
from pathlib import Path

import pytest
import yaml
from conftest import Process, base_config, start_process, wait_for

pytestmark = pytest.mark.timeout(40)

# A worker that only records when it started and with what options.
STAMP = """\
import sys, time
from pathlib import Path

with open(Path(__file__).with_name("fires.txt"), "a") as f:
    f.write(f"{time.time():.6f} {' '.join(sys.argv[2:])}\\n")
"""


def setup(folder: Path, scheduled: list, **extra) -> Path:
    (folder / "stamp.py").write_text(STAMP)
    config = base_config(folder)
    config["scheduled workers"] = scheduled
    config.update(extra)
    path = folder / "nowcast.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_scheduler(folder: Path, name: str = "scheduler") -> Process:
    log_path = folder / f"{name}.log"
    argv = [sys.executable, "-m", "nowcastkit.scheduler", str(folder / "nowcast.yaml")]
    return start_process(name, argv, folder, log_path)


def fires(folder: Path, label: str | None = None) -> list[float]:
    """Start times of the stamp worker's runs, optionally only those with *label*."""
    path = folder / "fires.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [
        float(t) for t, _, rest in (line.partition(" ") for line in lines) if label in (None, rest)
    ]


def stop(process: Process) -> int | None:
    process.popen.send_signal(signal.SIGTERM)
    return process.popen.wait(5)


@pytest.fixture
def processes():
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def test_launches_within_a_second_of_due_time_and_stops_on_sigterm(tmp_path, processes):
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).replace(microsecond=0)
    setup(
        tmp_path,
        [
            {"stamp": {"every": "2 seconds", "cmd line opts": "tick"}},
            {"stamp": {"every": "day", "at": f"{at:%H:%M:%S}", "cmd line opts": "daily"}},
        ],
        scheduler={"timezone": "UTC"},
    )
    scheduler = start_scheduler(tmp_path)
    processes.append(scheduler)
    scheduler.wait_for_line(r"stamp every day at \S+ \(UTC\) daily: next run at")
    scheduler.wait_for_line(r"stamp every 2 seconds \(UTC\) tick: next run at")
    ticks = wait_for(lambda: len(fires(tmp_path, "tick")) >= 2 and fires(tmp_path, "tick"), "ticks")
    (daily,) = wait_for(lambda: fires(tmp_path, "daily"), "the daily run")

    # Every 2 seconds is due on even epoch seconds: lateness is the time past one.
    lateness = [t % 2 for t in ticks] + [daily - at.timestamp()]
    assert all(0 <= late < 1.0 for late in lateness), lateness
    assert len({math.floor(t / 2) for t in ticks}) == len(ticks), "two runs in one slot"
    wait_for(
        lambda: scheduler.output().count("exited with status 0") >= len(ticks) + 1,
        "every launched worker reaped",
    )
    assert stop(scheduler) == 0
    assert "shutting down" in scheduler.output()
    print("measured lateness (s):", ", ".join(f"{late:.3f}" for late in lateness))


def test_sighup_reloads_without_duplicating_and_keeps_schedule_on_bad_config(tmp_path, processes):
    path = setup(tmp_path, [{"stamp": {"every": "second", "cmd line opts": "a"}}])
    scheduler = start_scheduler(tmp_path)
    processes.append(scheduler)
    scheduler.wait_for_line(r"stamp every second a: next run at")
    wait_for(lambda: len(fires(tmp_path, "a")) >= 1, "first run")
    for count in (1, 2, 3):
        scheduler.popen.send_signal(signal.SIGHUP)
        wait_for(lambda n=count: scheduler.output().count("reloaded config from") == n, "reload")

    config = yaml.safe_load(path.read_text())
    config["scheduled workers"].append({"stamp": {"every": "dya"}})
    path.write_text(yaml.safe_dump(config))
    scheduler.popen.send_signal(signal.SIGHUP)
    scheduler.wait_for_line(r"ERROR \[scheduler\] config reload failed, still running on the old")
    assert "scheduled workers[1].stamp.every: got 'dya'" in scheduler.output()

    seen = len(fires(tmp_path, "a"))
    wait_for(lambda: len(fires(tmp_path, "a")) >= seen + 2, "runs after the failed reload")
    assert stop(scheduler) == 0
    slots = [math.floor(t) for t in fires(tmp_path, "a")]
    assert len(slots) == len(set(slots)), f"more than one run in a second: {slots}"


def test_bad_entry_refuses_to_start(tmp_path, processes):
    setup(
        tmp_path,
        [{"stamp": {"every": "day", "at": "05:15"}}, {"stamp": {"every": "dya", "at": "05:15"}}],
    )
    scheduler = start_scheduler(tmp_path)
    processes.append(scheduler)
    assert scheduler.popen.wait(10) != 0
    error = f"{tmp_path / 'nowcast.yaml'}: scheduled workers[1].stamp.every: got 'dya', expected"
    lines = [line for line in scheduler.output().splitlines() if error in line]
    assert len(lines) == 1, scheduler.output()
    assert "next run at" not in scheduler.output()


def test_catch_up_once_across_restarts(tmp_path, processes):
    # Due twelve hours from now, so no real run falls inside the test.
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
    entry = {"every": "day", "at": f"{at:%H:%M}", "timezone": "UTC"}
    setup(
        tmp_path,
        [
            {"stamp": dict(entry, **{"catch up": "once", "cmd line opts": "once"})},
            {"stamp": dict(entry, **{"cmd line opts": "none"})},
        ],
    )
    first = start_scheduler(tmp_path, "first")
    processes.append(first)
    first.wait_for_line(r"stamp every day .* none: next run at")
    assert stop(first) == 0

    # Pretend the scheduler was down across a due time: set each last due back two days.
    state_path = tmp_path / "scheduler_state.yaml"
    state = yaml.safe_load(state_path.read_text())
    assert len(state) == 2
    for record in state.values():
        last_due = dt.datetime.fromisoformat(record["last due"]) - dt.timedelta(days=2)
        record["last due"] = last_due.isoformat()
    state_path.write_text(yaml.safe_dump(state))

    second = start_scheduler(tmp_path, "second")
    processes.append(second)
    second.wait_for_line(r"once: missed run due .*; catching up")
    second.wait_for_line(r"none: missed run due .* skipped \(catch up: none\)")
    second.wait_for_line(r"stamp every day .* none: next run at")
    wait_for(lambda: fires(tmp_path, "once"), "the caught-up run")
    wait_for(lambda: "exited with status 0" in second.output(), "caught-up worker reaped")
    assert stop(second) == 0

    third = start_scheduler(tmp_path, "third")
    processes.append(third)
    third.wait_for_line(r"stamp every day .* none: next run at")
    assert stop(third) == 0
    assert "missed run" not in third.output()
    assert "launched in process" not in third.output()
    assert [len(fires(tmp_path, label)) for label in ("once", "none")] == [1, 0]
