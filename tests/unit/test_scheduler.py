"""The scheduler's pure parts: entries from config, next-fire maths, catch-up, reload."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nowcastkit import scheduler
from nowcastkit.config import load_config
from nowcastkit.errors import ConfigError, NowcastkitError
from nowcastkit.scheduler import (
    Entry,
    entry_problems,
    load_entries,
    missed_run,
    next_fire,
    previous_fire,
)
from nowcastkit.scheduler import entries as scheduler_entries

UTC = dt.UTC
NEW_YORK = "America/New_York"


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone))


def write_config(folder: Path, scheduled, **extra) -> Path:
    data = {
        "checklist file": str(folder / "nowcast_checklist.yaml"),
        "zmq": {"host": "127.0.0.1", "ports": {"manager": 0, "workers": 0}},
        "message registry": {"next workers module": "next_workers", "workers": {}},
        **extra,
    }
    if scheduled is not None:
        data["scheduled workers"] = scheduled
    path = folder / "nowcast.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def entries_of(tmp_path: Path, scheduled, **extra) -> tuple[Entry, ...]:
    return load_entries(load_config(write_config(tmp_path, scheduled, **extra)))


def entry(tmp_path: Path, options: dict, module: str = "workers.sleep") -> Entry:
    (only,) = entries_of(tmp_path, [{module: options}])
    return only


# ---- every and at forms ----


@pytest.mark.parametrize(
    ("options", "unit", "interval", "weekday", "at_time"),
    [
        ({"every": "second"}, "seconds", 1, None, dt.time(0)),
        ({"every": "10 seconds"}, "seconds", 10, None, dt.time(0)),
        ({"every": "minute", "at": ":30"}, "minutes", 1, None, dt.time(0, 0, 30)),
        ({"every": "15 minutes"}, "minutes", 15, None, dt.time(0)),
        ({"every": "hour", "at": ":15"}, "hours", 1, None, dt.time(0, 15)),
        ({"every": "hour", "at": "15:30"}, "hours", 1, None, dt.time(0, 15, 30)),
        ({"every": "6 hours"}, "hours", 6, None, dt.time(0)),
        ({"every": "day", "at": "05:15"}, "days", 1, None, dt.time(5, 15)),
        ({"every": "day", "at": "05:15:07"}, "days", 1, None, dt.time(5, 15, 7)),
        ({"every": "2 days", "at": "23:00"}, "days", 2, None, dt.time(23)),
        ({"every": "monday", "at": "09:00"}, "days", 1, 0, dt.time(9)),
        ({"every": "Sunday"}, "days", 1, 6, dt.time(0)),
    ],
)
def test_every_and_at_forms(tmp_path, options, unit, interval, weekday, at_time):
    parsed = entry(tmp_path, options)
    assert (parsed.unit, parsed.interval, parsed.weekday, parsed.at_time) == (
        unit,
        interval,
        weekday,
        at_time,
    )


def test_nemo_entry_keeps_module_and_options(tmp_path):
    parsed = entry(tmp_path, {"every": "day", "at": "05:15", "cmd line opts": "--sleep-time 3"})
    assert parsed.module == "workers.sleep"
    assert parsed.args == ("--sleep-time", "3")
    assert parsed.catch_up == "none"
    assert parsed.identity == "workers.sleep every day at 05:15 --sleep-time 3"


@pytest.mark.parametrize(
    ("options", "now", "expected"),
    [
        ({"every": "second"}, utc(2024, 5, 1, 12, 0, 3, 500), utc(2024, 5, 1, 12, 0, 4)),
        ({"every": "10 seconds"}, utc(2024, 5, 1, 12, 0, 3), utc(2024, 5, 1, 12, 0, 10)),
        ({"every": "10 seconds"}, utc(2024, 5, 1, 12, 0, 10), utc(2024, 5, 1, 12, 0, 20)),
        ({"every": "minute", "at": ":30"}, utc(2024, 5, 1, 12, 0, 45), utc(2024, 5, 1, 12, 1, 30)),
        ({"every": "15 minutes"}, utc(2024, 5, 1, 12, 7), utc(2024, 5, 1, 12, 15)),
        ({"every": "hour", "at": ":15"}, utc(2024, 5, 1, 12, 20), utc(2024, 5, 1, 13, 15)),
        (
            {"every": "hour", "at": "15:30"},
            utc(2024, 5, 1, 12, 15, 29),
            utc(2024, 5, 1, 12, 15, 30),
        ),
        ({"every": "6 hours"}, utc(2024, 5, 1, 13), utc(2024, 5, 1, 18)),
        ({"every": "day", "at": "05:15"}, utc(2024, 5, 1, 5, 15), utc(2024, 5, 2, 5, 15)),
        ({"every": "day", "at": "05:15:07"}, utc(2024, 5, 1, 5), utc(2024, 5, 1, 5, 15, 7)),
        ({"every": "monday", "at": "09:00"}, utc(2024, 5, 1, 12), utc(2024, 5, 6, 9)),
        ({"every": "monday", "at": "09:00"}, utc(2024, 5, 6, 8), utc(2024, 5, 6, 9)),
        # 2024-05-02 has an even ordinal (738643), so every 2 days runs on it.
        ({"every": "2 days", "at": "23:00"}, utc(2024, 5, 1, 12), utc(2024, 5, 2, 23)),
    ],
)
def test_next_fire_each_form(tmp_path, options, now, expected):
    parsed = entry(tmp_path, dict(options, timezone="UTC"))
    assert next_fire(parsed, now) == expected
    assert previous_fire(parsed, expected) == expected


def test_fire_times_do_not_depend_on_when_the_scheduler_started(tmp_path):
    parsed = entry(tmp_path, {"every": "15 minutes", "timezone": "UTC"})
    starts = [utc(2024, 5, 1, 12, 0, s) for s in (1, 17, 59)]
    assert {next_fire(parsed, start) for start in starts} == {utc(2024, 5, 1, 12, 15)}


# ---- timezones ----


def test_timezone_per_entry(tmp_path):
    parsed = entry(tmp_path, {"every": "day", "at": "05:15", "timezone": "Europe/London"})
    # 05:15 BST is 04:15 UTC in summer.
    assert next_fire(parsed, utc(2024, 7, 1, 6)) == utc(2024, 7, 2, 4, 15)


def test_global_timezone_applies_unless_the_entry_has_its_own(tmp_path):
    first, second = entries_of(
        tmp_path,
        [
            {"workers.sleep": {"every": "day", "at": "09:00"}},
            {"workers.sleep": {"every": "day", "at": "09:00", "timezone": "UTC"}},
        ],
        scheduler={"timezone": "Asia/Tokyo"},
    )
    assert first.timezone == "Asia/Tokyo"
    assert next_fire(first, utc(2024, 5, 1, 12)) == utc(2024, 5, 2, 0)
    assert next_fire(second, utc(2024, 5, 1, 12)) == utc(2024, 5, 2, 9)


def test_default_is_the_hosts_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    parsed = entry(tmp_path, {"every": "day", "at": "09:00"})
    assert parsed.timezone == ""
    assert next_fire(parsed, utc(2024, 5, 1, 12)) == utc(2024, 5, 2, 0)


def test_daily_time_on_the_day_clocks_go_forward(tmp_path):
    parsed = entry(tmp_path, {"every": "day", "at": "05:15", "timezone": NEW_YORK})
    assert next_fire(parsed, utc(2024, 3, 9, 0)) == local(NEW_YORK, 2024, 3, 9, 5, 15)
    assert next_fire(parsed, utc(2024, 3, 9, 12)) == utc(2024, 3, 10, 9, 15)  # EDT now


def test_skipped_time_runs_as_far_after_the_change(tmp_path):
    parsed = entry(tmp_path, {"every": "day", "at": "02:30", "timezone": NEW_YORK})
    # 2024-03-10 02:30 does not exist in New York: it runs at 03:30 EDT.
    fire = next_fire(parsed, utc(2024, 3, 9, 12))
    assert fire == local(NEW_YORK, 2024, 3, 10, 3, 30)
    assert next_fire(parsed, fire) == local(NEW_YORK, 2024, 3, 11, 2, 30)


def test_repeated_time_runs_once_when_clocks_go_back(tmp_path):
    parsed = entry(tmp_path, {"every": "day", "at": "01:30", "timezone": NEW_YORK})
    first = next_fire(parsed, utc(2024, 11, 2, 12))
    # The first 01:30 (EDT); inter-zone == is always False for a repeated time.
    assert first == utc(2024, 11, 3, 5, 30)
    assert next_fire(parsed, first) == local(NEW_YORK, 2024, 11, 4, 1, 30)


def test_hourly_counts_every_elapsed_hour_when_clocks_go_back(tmp_path):
    parsed = entry(tmp_path, {"every": "hour", "at": ":30", "timezone": NEW_YORK})
    fires, now = [], utc(2024, 11, 3, 4)
    for _ in range(4):
        now = next_fire(parsed, now)
        fires.append(now)
    assert fires == [utc(2024, 11, 3, h, 30) for h in (4, 5, 6, 7)]


def test_hourly_has_no_gap_when_clocks_go_forward(tmp_path):
    parsed = entry(tmp_path, {"every": "hour", "timezone": NEW_YORK})
    assert next_fire(parsed, utc(2024, 3, 10, 6, 30)) == utc(2024, 3, 10, 7)  # 03:00 EDT


def test_every_n_hours_follows_the_local_clock(tmp_path):
    parsed = entry(tmp_path, {"every": "6 hours", "at": ":30", "timezone": "Asia/Kolkata"})
    # Kolkata is UTC+05:30: 06:30 local is 01:00 UTC.
    assert next_fire(parsed, utc(2024, 5, 1, 0)) == utc(2024, 5, 1, 1)


ZONES = ["UTC", NEW_YORK, "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu"]
FORMS = [
    {"every": "7 seconds"},
    {"every": "minute", "at": ":05"},
    {"every": "hour", "at": "20:10"},
    {"every": "3 hours"},
    {"every": "day", "at": "02:30"},
    {"every": "3 days", "at": "01:30:05"},
    {"every": "friday", "at": "00:00"},
]


@settings(max_examples=150, deadline=None)
@given(
    options=st.sampled_from(FORMS),
    zone=st.sampled_from(ZONES),
    now=st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2040, 1, 1), timezones=st.just(UTC)),
)
def test_previous_and_next_fire_bracket_now(options, zone, now):
    parsed = _entry_without_file(options, zone)
    before, after = previous_fire(parsed, now), next_fire(parsed, now)
    assert before <= now < after
    assert next_fire(parsed, before) == after or before == now
    assert previous_fire(parsed, after - dt.timedelta(microseconds=1)) == before


def _entry_without_file(options: dict, zone: str) -> Entry:
    problems: list[ConfigError] = []
    item = {"w": dict(options, timezone=zone)}
    parsed = scheduler_entries._entry(item, "x", "", Path("t.yaml"), problems)
    assert parsed is not None, problems
    return parsed


# ---- bad entries: one line each, naming file, key, value and expectation ----


@pytest.mark.parametrize(
    ("scheduled", "key", "words"),
    [
        ([{"w": {"every": "dya"}}], "scheduled workers[0].w.every", "got 'dya', expected second,"),
        ([{"w": {"every": 5}}], "scheduled workers[0].w.every", "got 5, expected"),
        ([{"w": {"every": "0 minutes"}}], "scheduled workers[0].w.every", "1 to 1440 minutes"),
        ([{"w": {"every": "25 hours"}}], "scheduled workers[0].w.every", "1 to 24 hours"),
        ([{"w": {"every": "9999999 days"}}], "scheduled workers[0].w.every", "1 to 366 days"),
        ([{"w": {"at": "05:15"}}], "scheduled workers[0].w.every", "missing required key"),
        ([{"w": {"every": "day", "at": "25:00"}}], "scheduled workers[0].w.at", '"HH:MM"'),
        ([{"w": {"every": "day", "at": ":30"}}], "scheduled workers[0].w.at", "got ':30'"),
        ([{"w": {"every": "day", "at": 315}}], "scheduled workers[0].w.at", "reads as a number"),
        ([{"w": {"every": "hour", "at": "5:00"}}], "scheduled workers[0].w.at", '":MM"'),
        ([{"w": {"every": "minute", "at": "10:00"}}], "scheduled workers[0].w.at", '":SS"'),
        ([{"w": {"every": "10 seconds", "at": ":05"}}], "scheduled workers[0].w.at", "no at"),
        (
            [{"w": {"every": "day", "timezone": "Mars/Olympus"}}],
            "scheduled workers[0].w.timezone",
            "got 'Mars/Olympus', expected an IANA zone name",
        ),
        (
            [{"w": {"every": "day", "catch up": "twice"}}],
            "scheduled workers[0].w.catch up",
            "got 'twice', expected none or once",
        ),
        (
            [{"w": {"every": "day", "catch up": False}}],
            "scheduled workers[0].w.catch up",
            "got False",
        ),
        ([{"w": {"every": "day", "evry": "day"}}], "scheduled workers[0].w.evry", "unknown key"),
        (
            [{"w": {"every": "day", "cmd line opts": "--a 'b"}}],
            "scheduled workers[0].w.cmd line opts",
            "expected shell words",
        ),
        (
            [{"a": {"every": "day"}}, {"b": {"every": "dya"}}, {"c": {"every": "day"}}],
            "scheduled workers[1].b.every",
            "got 'dya'",
        ),
        (["workers.sleep"], "scheduled workers[0]", "expected {worker module"),
        ([{"a": {"every": "day"}, "b": {}}], "scheduled workers[0]", "expected {worker module"),
        ([{"w": "every day"}], "scheduled workers[0].w", "expected a mapping with every"),
        ({"w": {"every": "day"}}, "scheduled workers", "expected a list"),
    ],
)
def test_bad_entry_is_a_one_line_error(tmp_path, scheduled, key, words):
    with pytest.raises(ConfigError) as caught:
        entries_of(tmp_path, scheduled)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'nowcast.yaml'}: {key}: ")
    assert words in message


@pytest.mark.parametrize(
    ("section", "key"),
    [({"timezone": "Nowhere"}, "scheduler.timezone"), ({"tz": "UTC"}, "scheduler.tz")],
)
def test_bad_global_scheduler_section(tmp_path, section, key):
    with pytest.raises(ConfigError, match=f": {key}: "):
        entries_of(tmp_path, [], scheduler=section)


@pytest.mark.parametrize("timeout", [0, -1, "soon", True, 601])
def test_bad_manager_timeout(tmp_path, timeout):
    key = "scheduler.manager timeout"
    with pytest.raises(ConfigError, match=f": {key}: got {timeout!r}, expected seconds"):
        entries_of(tmp_path, [], scheduler={"manager timeout": timeout})


def test_manager_timeout_default_and_set(tmp_path):
    assert scheduler.manager_timeout(load_config(write_config(tmp_path, []))) == 15.0
    path = write_config(tmp_path, [], scheduler={"manager timeout": 2.5})
    assert scheduler.manager_timeout(load_config(path)) == 2.5


def test_every_problem_of_every_entry_is_listed(tmp_path):
    path = write_config(
        tmp_path,
        [
            {"a": {"every": "dya", "timezone": "Mars/Olympus", "catch up": "twice"}},
            {"b": {"every": "day", "at": "25:00"}},
            {"c": {"every": "day"}},
            {"d": {"at": ":30", "evry": "day"}},
        ],
        scheduler={"timezone": "Nowhere"},
    )
    found = [(p.key, p.problem.split(",")[0]) for p in entry_problems(load_config(path))]
    assert found == [
        ("scheduler.timezone", "got 'Nowhere'"),
        ("scheduled workers[0].a.every", "got 'dya'"),
        ("scheduled workers[0].a.catch up", "got 'twice'"),
        ("scheduled workers[0].a.timezone", "got 'Mars/Olympus'"),
        ("scheduled workers[1].b.at", "got '25:00'"),
        ("scheduled workers[3].d.evry", "unknown key"),
        ("scheduled workers[3].d.every", "missing required key"),
    ]


def test_unquoted_at_from_yaml_text_is_caught(tmp_path):
    path = write_config(tmp_path, None)
    path.write_text(path.read_text() + "scheduled workers:\n- w: {every: day, at: 17:15}\n")
    with pytest.raises(ConfigError, match=r"got 1035, expected a quoted"):
        load_entries(load_config(path))


@pytest.mark.parametrize("scheduled", [None, []])
def test_absent_or_empty_schedule_is_no_entries(tmp_path, scheduled):
    assert entries_of(tmp_path, scheduled) == ()


def test_same_module_several_times_keeps_each_entry(tmp_path):
    entries = entries_of(
        tmp_path,
        [
            {"workers.sleep": {"every": "day", "at": "05:15"}},
            {"workers.sleep": {"every": "day", "at": "17:15"}},
            {"workers.sleep": {"every": "day", "at": "05:15"}},
        ],
    )
    assert [e.identity for e in entries] == [
        "workers.sleep every day at 05:15",
        "workers.sleep every day at 17:15",
        "workers.sleep every day at 05:15 #2",
    ]


# ---- catch-up decisions ----


def daily(tmp_path: Path, catch_up: str = "once") -> Entry:
    return entry(tmp_path, {"every": "day", "at": "05:00", "timezone": "UTC", "catch up": catch_up})


def test_missed_run_is_the_latest_due_after_the_last(tmp_path):
    parsed = daily(tmp_path)
    last = utc(2024, 5, 1, 5)
    assert missed_run(parsed, last, utc(2024, 5, 3, 12)) == utc(2024, 5, 3, 5)


def test_no_missed_run_when_the_last_due_was_handled(tmp_path):
    parsed = daily(tmp_path)
    assert missed_run(parsed, utc(2024, 5, 3, 5), utc(2024, 5, 3, 12)) is None
    assert missed_run(parsed, utc(2024, 5, 2, 5), utc(2024, 5, 3, 4, 59)) is None


def test_no_missed_run_without_state(tmp_path):
    assert missed_run(daily(tmp_path), None, utc(2024, 5, 3, 12)) is None


@pytest.fixture
def launches():
    """An in-memory launcher: records the workers and answers with a run id, as the manager."""
    launched, request_ids = [], []

    def launch(config, worker, request_id):
        launched.append(worker)
        request_ids.append(request_id)
        return f"run-{len(launched)}"

    launch.launched = launched
    launch.request_ids = request_ids
    return launch


def catch_up_config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path,
        [
            {"once": {"every": "day", "at": "05:00", "catch up": "once"}},
            {"none": {"every": "day", "at": "05:00"}},
        ],
        scheduler={"timezone": "UTC"},
    )


def test_restart_catches_up_once_and_never_doubles(tmp_path, launches):
    config = load_config(catch_up_config(tmp_path))
    scheduler.start(config, utc(2024, 5, 1, 12), launches)
    assert launches.launched == []
    # Down across two due times: "once" runs once, "none" does not.
    timer = scheduler.start(config, utc(2024, 5, 3, 12), launches)
    assert [w.module for w in launches.launched] == ["once"]
    state = yaml.safe_load((tmp_path / "scheduler_state.yaml").read_text())
    assert state["once every day at 05:00 (UTC)"]["last due"] == "2024-05-03T05:00:00+00:00"
    # Restarted again the same day: nothing more.
    scheduler.start(config, utc(2024, 5, 3, 13), launches)
    assert len(launches.launched) == 1
    assert timer.state["once every day at 05:00 (UTC)"]["last run"] == "run-1"


def test_a_fire_asks_with_the_same_request_id_however_often_it_is_asked(tmp_path, launches):
    # A scheduler killed after the launch but before saving its state catches the
    # fire up again: the same id lets the manager answer with the run it started.
    config = load_config(catch_up_config(tmp_path))
    scheduler.start(config, utc(2024, 5, 1, 12), launches)
    state = (tmp_path / "scheduler_state.yaml").read_bytes()
    for _restart in range(2):
        (tmp_path / "scheduler_state.yaml").write_bytes(state)
        scheduler.start(config, utc(2024, 5, 3, 12), launches)
    assert launches.request_ids == ["once every day at 05:00 (UTC)@2024-05-03T05:00:00+00:00"] * 2
    # The next day's fire is another launch.
    scheduler.start(config, utc(2024, 5, 4, 12), launches)
    assert launches.request_ids[2] == "once every day at 05:00 (UTC)@2024-05-04T05:00:00+00:00"


def test_corrupt_state_means_no_catch_up(tmp_path, launches, caplog):
    config = load_config(catch_up_config(tmp_path))
    (tmp_path / "scheduler_state.yaml").write_text("{not yaml")
    with caplog.at_level(logging.WARNING, "scheduler"):
        scheduler.start(config, utc(2024, 5, 3, 12), launches)
    assert launches.launched == []
    assert "no runs will be caught up" in caplog.text


# ---- the timer: step and reload ----


def test_step_launches_each_due_job_once(tmp_path, launches):
    path = write_config(tmp_path, [{"w": {"every": "10 seconds", "cmd line opts": "--x 1"}}])
    timer = scheduler.start(load_config(path), utc(2024, 5, 1, 12, 0, 1), launches)
    scheduler.step(timer, utc(2024, 5, 1, 12, 0, 9))
    assert launches.launched == []
    scheduler.step(timer, utc(2024, 5, 1, 12, 0, 10, 300))
    scheduler.step(timer, utc(2024, 5, 1, 12, 0, 10, 400))
    assert [(w.module, w.args) for w in launches.launched] == [("w", ("--x", "1"))]
    assert timer.jobs.get_next_run() == utc(2024, 5, 1, 12, 0, 20)
    state = yaml.safe_load((tmp_path / "scheduler_state.yaml").read_text())
    assert state["w every 10 seconds --x 1"] == {
        "last due": "2024-05-01T12:00:10+00:00",
        "last fire": "2024-05-01T12:00:10.000300+00:00",
        "last run": "run-1",
        "last error": None,
    }


def test_a_launch_the_manager_did_not_make_is_one_error_and_not_recorded_as_a_fire(
    tmp_path, caplog
):
    def down(config, worker, request_id):
        raise NowcastkitError("manager at tcp://127.0.0.1:4345 did not answer within 15s")

    path = write_config(tmp_path, [{"w": {"every": "10 seconds"}}], scheduler={"timezone": "UTC"})
    timer = scheduler.start(load_config(path), utc(2024, 5, 1, 12, 0, 1), down)
    with caplog.at_level(logging.INFO, "scheduler"):
        scheduler.step(timer, utc(2024, 5, 1, 12, 0, 10))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "w every 10 seconds (UTC): not launched (due 2024-05-01 12:00:10 UTC): "
        "manager at tcp://127.0.0.1:4345 did not answer within 15s"
    ]
    state = yaml.safe_load((tmp_path / "scheduler_state.yaml").read_text())
    assert state["w every 10 seconds (UTC)"]["last fire"] is None
    assert "did not answer" in state["w every 10 seconds (UTC)"]["last error"]
    # The loop goes on: the next slot is still scheduled.
    assert timer.jobs.get_next_run() == utc(2024, 5, 1, 12, 0, 20)


def test_rebuilding_from_the_same_config_gives_the_same_jobs(tmp_path):
    entries = entries_of(
        tmp_path, [{"a": {"every": "minute"}}, {"a": {"every": "minute"}}, {"b": {"every": "day"}}]
    )
    now = utc(2024, 5, 1, 12)

    def jobs():
        built = scheduler.build_jobs(entries, now, lambda *args: None)
        return sorted((tuple(job.tags), job.next_run) for job in built.get_jobs())

    assert jobs() == jobs()
    assert len(jobs()) == 3


def test_reload_keeps_one_job_per_entry(tmp_path, launches):
    path = write_config(tmp_path, [{"a": {"every": "minute"}}, {"b": {"every": "hour"}}])
    timer = scheduler.start(load_config(path), utc(2024, 5, 1, 12), launches)
    before = sorted((tuple(j.tags), j.next_run) for j in timer.jobs.get_jobs())
    for _ in range(3):
        assert scheduler.reload(timer, utc(2024, 5, 1, 12, 0, 30), configure_logging=False)
    assert sorted((tuple(j.tags), j.next_run) for j in timer.jobs.get_jobs()) == before


def test_reload_adds_and_removes_entries(tmp_path, launches):
    path = write_config(tmp_path, [{"a": {"every": "minute"}}])
    timer = scheduler.start(load_config(path), utc(2024, 5, 1, 12), launches)
    write_config(tmp_path, [{"b": {"every": "hour"}}])
    scheduler.reload(timer, utc(2024, 5, 1, 12), configure_logging=False)
    assert [tuple(j.tags) for j in timer.jobs.get_jobs()] == [("b every hour",)]
    assert list(timer.state) == ["b every hour"]


def test_bad_reload_keeps_the_old_schedule(tmp_path, launches, caplog):
    path = write_config(tmp_path, [{"a": {"every": "minute"}}])
    timer = scheduler.start(load_config(path), utc(2024, 5, 1, 12), launches)
    write_config(tmp_path, [{"a": {"every": "minute"}}, {"b": {"every": "dya"}}])
    with caplog.at_level(logging.ERROR, "scheduler"):
        assert not scheduler.reload(timer, utc(2024, 5, 1, 12), configure_logging=False)
    assert "still running on the old schedule" in caplog.text
    assert "scheduled workers[1].b.every: got 'dya'" in caplog.text
    assert [tuple(j.tags) for j in timer.jobs.get_jobs()] == [("a every minute",)]
