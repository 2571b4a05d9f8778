"""The scheduler as a real process beside a real broker and manager.

On-time launches through the manager, SIGHUP, SIGTERM, bad entries, catch-up,
and a manager that is down when a worker is due.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import signal

import pytest
import yaml
from conftest import NEXT_WORKERS, Process, System, wait_for

from nowcastkit import scheduler
from nowcastkit.config import load_config
from nowcastkit.scheduler.request import ManagerLauncher

pytestmark = pytest.mark.timeout(40)

# A worker that records when it started and its label, then reports to the manager.
STAMP = """\
import time

STARTED = time.time()

from pathlib import Path

from nowcastkit import NowcastWorker


def stamp(parsed_args, config, tell_manager):
    with open(Path(__file__).with_name("fires.txt"), "a") as f:
        f.write(f"{STARTED:.6f} {parsed_args.label}\\n")
    return {"label": parsed_args.label}


if __name__ == "__main__":
    worker = NowcastWorker("stamp", package="")
    worker.init_cli()
    worker.cli.add_argument("--label", default="")
    worker.run(stamp, lambda args: "success", lambda args: "failure")
"""


def setup(system: System, scheduled: list, **extra) -> None:
    """Register the stamp worker and write *scheduled* into the system's config."""
    (system.folder / "stamp.py").write_text(STAMP)
    system.write_next_workers(NEXT_WORKERS + "\n\ndef after_stamp(msg, config, checklist):\n"
                              "    return []\n")  # fmt: skip
    system.config["message registry"]["workers"]["stamp"] = {
        "checklist key": "stamp",
        "success": "stamp worker stamped",
        "failure": "stamp worker failed",
        "crash": "stamp worker crashed",
    }
    system.config["scheduled workers"] = scheduled
    system.config.update(extra)
    system.write_config()


def start_system(system: System) -> System:
    """Start the broker and the manager, after setup() has registered the stamp worker."""
    system.start_broker()
    system.start_manager()
    return system


def start_scheduler(system: System) -> Process:
    return system.spawn("scheduler", "-m", "nowcastkit.scheduler")


def fires(system: System, label: str | None = None) -> list[float]:
    """Start times of the stamp worker's runs, optionally only those with *label*."""
    path = system.folder / "fires.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [
        float(t) for t, _, rest in (line.partition(" ") for line in lines) if label in (None, rest)
    ]


def stop(process: Process) -> int | None:
    process.popen.send_signal(signal.SIGTERM)
    return process.popen.wait(5)


def test_launches_through_the_manager_within_a_second_and_stops_on_sigterm(toy_system):
    setup(
        toy_system,
        [{"stamp": {"every": "2 seconds", "cmd line opts": "--label tick"}}],
        scheduler={"timezone": "UTC"},
    )
    manager = start_system(toy_system).manager
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).replace(microsecond=0)
    toy_system.config["scheduled workers"].append(
        {"stamp": {"every": "day", "at": f"{at:%H:%M:%S}", "cmd line opts": "--label daily"}}
    )
    toy_system.write_config()
    scheduler = start_scheduler(toy_system)
    scheduler.wait_for_line(r"stamp every day at \S+ \(UTC\) --label daily: next run at")
    scheduler.wait_for_line(r"stamp every 2 seconds \(UTC\) --label tick: next run at")
    ticks = wait_for(lambda: len(fires(toy_system, "tick")) >= 2 and fires(toy_system, "tick"),
                     "ticks")  # fmt: skip
    (daily,) = wait_for(lambda: fires(toy_system, "daily"), "the daily run")

    # Every 2 seconds is due on even epoch seconds: lateness is the time past one.
    lateness = [t % 2 for t in ticks] + [daily - at.timestamp()]
    assert all(0 <= late < 1.0 for late in lateness), lateness
    assert len({math.floor(t / 2) for t in ticks}) == len(ticks), "two runs in one slot"
    # Each launch is a manager run: asked for by the scheduler, started and reaped there.
    launched = scheduler.wait_for_line(r"--label daily: launched by the manager as run (\w+) ")
    manager.wait_for_line(r"launch of stamp requested by scheduler")
    manager.wait_for_line(rf"launching stamp worker on localhost: run {launched[1]}, pid \d+")
    wait_for(lambda: toy_system.checklist().get("stamp"), "a stamp worker's report")
    assert "launching stamp worker" not in scheduler.output()
    assert stop(scheduler) == 0
    assert "shutting down" in scheduler.output()
    print("measured lateness (s):", ", ".join(f"{late:.3f}" for late in lateness))


def test_manager_down_at_fire_time_is_one_error_and_the_scheduler_goes_on(toy_system):
    setup(
        toy_system,
        [{"stamp": {"every": "second", "cmd line opts": "--label s"}}],
        scheduler={"timezone": "UTC", "manager timeout": 0.5},
    )
    running_system = start_system(toy_system)
    assert stop(running_system.manager) == 0
    port = running_system.config["zmq"]["ports"]["control"]
    scheduler = start_scheduler(running_system)

    error = wait_for(
        lambda: re.search(r"ERROR \[scheduler\] (.*)", scheduler.output()), "launch error"
    )
    assert re.fullmatch(
        r"stamp every second \(UTC\) --label s: not launched \(due [^)]+\): "
        rf"manager at tcp://127\.0\.0\.1:{port} did not answer within 0\.5s",
        error[1],
    ), error[0]
    assert fires(running_system) == []
    state = yaml.safe_load((running_system.folder / "scheduler_state.yaml").read_text())
    assert state["stamp every second (UTC) --label s"]["last fire"] is None

    # The manager comes back on its port: the next due run is launched through it.
    running_system.start_manager()
    scheduler.wait_for_line(r"--label s: launched by the manager as run \w+")
    wait_for(lambda: fires(running_system, "s"), "a run after the manager came back")
    assert scheduler.popen.poll() is None
    assert stop(scheduler) == 0


def test_sigterm_while_waiting_for_a_manager_that_is_down_stops_at_once(toy_system):
    setup(
        toy_system,
        [{"stamp": {"every": "second"}}],
        scheduler={"timezone": "UTC", "manager timeout": 30},
    )
    start_system(toy_system)
    assert stop(toy_system.manager) == 0
    scheduler = start_scheduler(toy_system)
    scheduler.wait_for_line(r"asking the manager at \S+ to launch stamp")
    scheduler.popen.send_signal(signal.SIGTERM)
    assert scheduler.popen.wait(3) == 0
    assert "not launched (due" in scheduler.output()
    assert "stopping before the manager answered" in scheduler.output()


def test_sighup_reloads_without_duplicating_and_keeps_schedule_on_bad_config(toy_system):
    setup(toy_system, [{"stamp": {"every": "second", "cmd line opts": "--label a"}}])
    running_system = start_system(toy_system)
    scheduler = start_scheduler(running_system)
    scheduler.wait_for_line(r"stamp every second --label a: next run at")
    wait_for(lambda: len(fires(running_system, "a")) >= 1, "first run")
    for count in (1, 2, 3):
        scheduler.popen.send_signal(signal.SIGHUP)
        wait_for(lambda n=count: scheduler.output().count("reloaded config from") == n, "reload")

    running_system.config["scheduled workers"].append({"stamp": {"every": "dya"}})
    running_system.write_config()
    scheduler.popen.send_signal(signal.SIGHUP)
    scheduler.wait_for_line(r"ERROR \[scheduler\] config reload failed, still running on the old")
    assert "scheduled workers[1].stamp.every: got 'dya'" in scheduler.output()

    seen = len(fires(running_system, "a"))
    wait_for(lambda: len(fires(running_system, "a")) >= seen + 2, "runs after the failed reload")
    assert stop(scheduler) == 0
    slots = [math.floor(t) for t in fires(running_system, "a")]
    assert len(slots) == len(set(slots)), f"more than one run in a second: {slots}"


def test_bad_entry_is_a_config_error_exit_2(toy_system):
    setup(
        toy_system,
        [{"stamp": {"every": "day", "at": "05:15"}}, {"stamp": {"every": "dya", "at": "05:15"}}],
    )
    scheduler = start_scheduler(toy_system)
    assert scheduler.popen.wait(10) == 2
    error = (
        f"scheduler: {toy_system.config_path}: scheduled workers[1].stamp.every: got 'dya', "
        "expected second, minute, hour, day, monday ... sunday, or N seconds|minutes|hours|days"
    )
    assert scheduler.output().splitlines() == [error]


def test_catch_up_once_across_restarts(toy_system):
    # Due twelve hours from now, so no real run falls inside the test.
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
    entry = {"every": "day", "at": f"{at:%H:%M}", "timezone": "UTC"}
    setup(
        toy_system,
        [
            {"stamp": dict(entry, **{"catch up": "once", "cmd line opts": "--label once"})},
            {"stamp": dict(entry, **{"cmd line opts": "--label none"})},
        ],
    )
    running_system = start_system(toy_system)
    first = start_scheduler(running_system)
    first.wait_for_line(r"stamp every day .* none: next run at")
    assert stop(first) == 0

    # Pretend the scheduler was down across a due time: set each last due back two days.
    state_path = running_system.folder / "scheduler_state.yaml"
    state = yaml.safe_load(state_path.read_text())
    assert len(state) == 2
    for record in state.values():
        last_due = dt.datetime.fromisoformat(record["last due"]) - dt.timedelta(days=2)
        record["last due"] = last_due.isoformat()
    state_path.write_text(yaml.safe_dump(state))

    second = start_scheduler(running_system)
    second.wait_for_line(r"once: missed run due .*; catching up")
    second.wait_for_line(r"none: missed run due .* skipped \(catch up: none\)")
    second.wait_for_line(r"once: launched by the manager as run \w+")
    second.wait_for_line(r"stamp every day .* none: next run at")
    wait_for(lambda: fires(running_system, "once"), "the caught-up run")
    assert stop(second) == 0

    third = start_scheduler(running_system)
    third.wait_for_line(r"stamp every day .* none: next run at")
    assert stop(third) == 0
    assert "missed run" not in third.output()
    assert "launched by the manager" not in third.output()
    assert [len(fires(running_system, label)) for label in ("once", "none")] == [1, 0]


def test_a_launch_request_asked_again_with_its_id_launches_once(running_system):
    # What the scheduler does when an answer is lost: ask again, same id.
    request = {"command": "launch", "worker": "workers.sleep", "args": ["--sleep-time", "0"],
               "by": "scheduler", "id": "4c1d"}  # fmt: skip
    first = running_system.control(request)
    assert first["ok"], first
    assert running_system.control(request) == first
    other = running_system.control(dict(request, id="9e2a"))
    assert other["ok"] and other["run"] != first["run"]
    manager = running_system.manager
    manager.wait_for_line(r"launch request control-4c1d from scheduler was handled before")
    wait_for(lambda: manager.output().count("launching workers.sleep worker") == 2, "two launches")
    assert manager.output().count(f"run {first['run']}, pid") == 1


def test_a_fire_caught_up_again_after_a_kill_before_the_state_was_saved_launches_once(
    running_system,
):
    # The scheduler asked the manager to launch a fire, then was killed before its
    # state file recorded it: on restart it catches the same fire up again.
    running_system.config["scheduled workers"] = [
        {"workers.sleep": {"every": "day", "at": "05:00", "catch up": "once",
                           "cmd line opts": "--sleep-time 0"}},
    ]  # fmt: skip
    running_system.config["scheduler"] = {"timezone": "UTC"}
    running_system.write_config()
    state_path = running_system.folder / "scheduler_state.yaml"
    identity = "workers.sleep every day at 05:00 (UTC) --sleep-time 0"
    before_the_fire = {identity: {"last due": "2024-05-02T05:00:00+00:00"}}
    now = dt.datetime(2024, 5, 3, 5, 0, 2, tzinfo=dt.UTC)
    run_ids = []
    for _restart in range(2):
        state_path.write_text(yaml.safe_dump(before_the_fire))
        launcher = ManagerLauncher()
        try:
            timer = scheduler.start(load_config(running_system.config_path), now, launcher)
        finally:
            launcher.close()
        run_ids.append(timer.state[identity]["last run"])
    assert run_ids[0] == run_ids[1] != "None"
    manager = running_system.manager
    manager.wait_for_line(r"was handled before; answering again")
    wait_for(lambda: f"run {run_ids[0]}, pid" in manager.output(), "the launch")
    assert manager.output().count("launching workers.sleep worker") == 1
