"""Deadlines (issue 14): read from the config, judged with an injected clock, DST days
included, and watched by the manager against its real store."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from conftest import base_config

from nowcastkit import deadlines
from nowcastkit.config import Config, load_config
from nowcastkit.deadlines import Deadline, Seen, is_day_done, judge, next_due
from nowcastkit.errors import ConfigError
from nowcastkit.manager import ManagerProcess

FILE = Path("/srv/nowcast.yaml")
REGISTRY = {"workers": {"make_feeds": {"success": "fed", "failure": "not fed"}}}
VANCOUVER = ZoneInfo("America/Vancouver")
UTC = dt.UTC


def config(entries, **more) -> Config:
    return Config({"deadlines": entries, "message registry": REGISTRY, **more}, FILE)


def feeds(by="06:30", zone="America/Vancouver", **more) -> dict:
    return {"name": "forecast published", "worker": "make_feeds", "type": "success",
            "by": by, "timezone": zone, **more}  # fmt: skip


def at(zone: ZoneInfo, *fields: int, fold: int = 0) -> float:
    return dt.datetime(*fields, tzinfo=zone, fold=fold).timestamp()


def utc(*fields: int) -> str:
    return dt.datetime(*fields, tzinfo=UTC).isoformat()


def test_deadlines_are_read_with_their_defaults():
    plan = deadlines.read(config([
        feeds(), {"name": "forcing", "checklist key": "weather", "by": "04:00:30",
                  "timezone": "UTC", "days": ["monday", "friday"]},
    ], **{"heartbeat url": "https://hc-ping.com/uuid"}))  # fmt: skip
    feed, forcing = plan.deadlines
    assert (feed.worker, feed.type, feed.key, feed.by) == ("make_feeds", "success", None,
                                                           dt.time(6, 30))  # fmt: skip
    assert feed.days == frozenset(range(7)) and feed.zone.key == "America/Vancouver"
    assert (forcing.key, forcing.days, forcing.by) == ("weather", {0, 4}, dt.time(4, 0, 30))
    assert plan.heartbeat == "https://hc-ping.com/uuid"
    assert deadlines.read(config(None)) == deadlines.Plan()


@pytest.mark.parametrize(("entry", "problem"), [
    (feeds(by="6:30"), 'deadlines[0].by: got \'6:30\', expected a quoted "HH:MM"'),
    (feeds(by=390), "(YAML reads 06:30 unquoted as a number)"),
    (feeds(by="24:00"), "deadlines[0].by: got '24:00'"),
    (feeds(zone="America/Vancover"), "deadlines[0].timezone: got 'America/Vancover', expected "
                                     "an IANA time zone"),
    ({**feeds(), "worker": "make_feed"}, "deadlines[0].worker: got 'make_feed', expected a "
                                         "worker in message registry.workers"),
    ({**feeds(), "type": "sucess"}, "deadlines[0].type: got 'sucess', expected a message type "
                                    "of make_feeds: success, failure"),
    (feeds(days="weekday"), "deadlines[0].days: got 'weekday', expected every day, weekdays"),
    (feeds(days=["mon"]), "deadlines[0].days: got ['mon']"),
    ({**feeds(), "checklist key": "x"}, "deadlines[0]: expected exactly one of worker, "
                                        "checklist key"),
    ({k: v for k, v in feeds().items() if k != "timezone"}, "deadlines[0].timezone: missing"),
    ({**feeds(), "when": "06:30"}, "deadlines[0].when: unknown key"),
])  # fmt: skip
def test_a_bad_deadline_is_one_line_naming_the_file_key_and_value(entry, problem):
    with pytest.raises(ConfigError) as raised:
        deadlines.read(config([entry]))
    text = str(raised.value)
    assert text.startswith("/srv/nowcast.yaml: deadlines[0]") and problem in text
    assert "\n" not in text


def test_two_deadlines_of_one_name_and_a_bad_heartbeat_are_problems_and_no_secret_is_quoted():
    found = deadlines.problems(config([feeds(), feeds()], **{"heartbeat url": "hc/sekrit"}))
    assert [str(p) for p in found] == [
        "/srv/nowcast.yaml: heartbeat url: expected an http or https URL",
        "/srv/nowcast.yaml: deadlines[1].name: got 'forecast published', expected a name no "
        "other deadline has",
    ]


def deadline(by=dt.time(6, 30), zone=VANCOUVER, days=range(7), **more) -> Deadline:
    return Deadline("forecast published", by, zone, frozenset(days), **more)


def test_a_deadline_is_met_missed_then_recovered_or_found_late():
    d, day = deadline(worker="make_feeds"), dt.date(2026, 6, 10)
    due = at(VANCOUVER, 2026, 6, 10, 6, 30)
    assert judge(d, day, due - 1, Seen()) is None  # not yet
    assert judge(d, day, due, Seen(met_at=due - 600)).state == "met"
    assert judge(d, day, due, Seen()).state == "missed"
    assert judge(d, day, due + 60, Seen("missed")) is None  # said once
    recovered = judge(d, day, due + 900, Seen("missed", met_at=due + 800))
    assert (recovered.state, recovered.met_at) == ("recovered", due + 800)
    # The manager was down at 06:30 and the feeds came at 06:45: one alert that says both.
    assert judge(d, day, due + 3600, Seen(met_at=due + 900)).state == "late"
    for done in ("met", "late", "recovered"):
        assert judge(d, day, due + 7200, Seen(done, met_at=due + 900)) is None


def test_a_checklist_key_is_judged_at_the_first_look_at_or_after_its_time():
    d, day = deadline(key="weather"), dt.date(2026, 6, 10)
    due = at(VANCOUVER, 2026, 6, 10, 6, 30)
    assert judge(d, day, due + 5, Seen(present=True)).state == "met"
    assert judge(d, day, due + 5, Seen()).state == "missed"
    assert judge(d, day, due + 99, Seen("missed", present=True)).state == "recovered"


def test_a_day_the_deadline_is_not_kept_is_skipped():
    d = deadline(worker="make_feeds", days=range(5))  # weekdays
    sunday = dt.date(2026, 6, 14)
    assert judge(d, sunday, at(VANCOUVER, 2026, 6, 14, 12), Seen()) is None
    # Saturday 12:00 to the next: Monday 06:30.
    assert next_due([d], at(VANCOUVER, 2026, 6, 13, 12)) == at(VANCOUVER, 2026, 6, 15, 6, 30)


def test_spring_forward_a_time_that_does_not_exist_takes_the_offset_before_the_change():
    # 2026-03-08 in Vancouver: 02:00 PST becomes 03:00 PDT; 02:30 never shows on a clock.
    day = dt.date(2026, 3, 8)
    d = deadline(by=dt.time(2, 30), worker="make_feeds")
    due = d.due(day)
    assert dt.datetime.fromtimestamp(due, UTC).isoformat() == utc(2026, 3, 8, 10, 30)
    assert dt.datetime.fromtimestamp(due, VANCOUVER).strftime("%H:%M %Z") == "03:30 PDT"
    start, end = d.span(day)
    assert end - start == 23 * 3600
    assert judge(d, day, at(VANCOUVER, 2026, 3, 8, 3, 15), Seen()) is None  # 03:15 PDT: not yet
    assert judge(d, day, due, Seen()).state == "missed"
    # An 06:30 deadline that day is 06:30 PDT, 13:30 UTC (PST's would be 14:30).
    six = deadline(worker="make_feeds").due(day)
    assert dt.datetime.fromtimestamp(six, UTC).isoformat() == utc(2026, 3, 8, 13, 30)


def test_fall_back_a_time_that_comes_twice_is_the_first():
    # 2026-11-01 in Vancouver: 02:00 PDT becomes 01:00 PST; 01:30 comes twice.
    day = dt.date(2026, 11, 1)
    d = deadline(by=dt.time(1, 30), worker="make_feeds")
    first, second = at(VANCOUVER, 2026, 11, 1, 1, 30), at(VANCOUVER, 2026, 11, 1, 1, 30, fold=1)
    assert d.due(day) == first == second - 3600
    assert dt.datetime.fromtimestamp(first, UTC).isoformat() == utc(2026, 11, 1, 8, 30)
    start, end = d.span(day)
    assert end - start == 25 * 3600
    # Fed between the two 01:30s: late, judged at the first.
    assert judge(d, day, second, Seen(met_at=first + 60)).state == "late"
    assert judge(d, day, second, Seen(met_at=first - 60)).state == "met"
    # The next day's deadline is 24 h and 1 h after: 01:30 PST on 2026-11-02.
    assert next_due([d], first) == at(VANCOUVER, 2026, 11, 2, 1, 30) == first + 25 * 3600


def test_the_day_is_done_when_each_of_its_deadlines_is_met_on_time_or_late():
    a = deadline(worker="make_feeds")
    b = Deadline("forcing", dt.time(4), UTC, frozenset(range(5)), key="weather")
    now, sunday = at(VANCOUVER, 2026, 6, 10, 12), at(VANCOUVER, 2026, 6, 14, 12)
    day = dt.date(2026, 6, 10)
    assert not is_day_done([a, b], now, {(a.name, day): "met"})
    assert is_day_done([a, b], now, {(a.name, day): "met", (b.name, day): "recovered"})
    assert not is_day_done([a, b], now, {(a.name, day): "met", (b.name, day): "missed"})
    assert is_day_done([a, b], sunday, {(a.name, dt.date(2026, 6, 14)): "late"})  # b not kept


@pytest.fixture
def make_manager(tmp_path):
    """A manager (not opened: no sockets) on a real store, with deadlines set for today."""
    made = []

    def make(entries, **more):
        data = base_config(tmp_path)
        data["message registry"]["workers"]["make_feeds"] = {"success": "fed"}
        data.update(deadlines=entries, **more)
        (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(data))
        flow = "def after_make_feeds(msg, config, checklist):\n    return []\n"
        (tmp_path / "next_workers.py").write_text(flow)
        manager = ManagerProcess.start(load_config(tmp_path / "nowcast.yaml"))
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.ledger.store.conn.close()


def handled(manager, source: str, msg_type: str, when: float) -> None:
    """A message the manager handled at *when*, as its store records it."""
    manager.ledger.store.conn.execute(
        "INSERT INTO messages (id, source, type, received, reply) VALUES (?, ?, ?, ?, '')",
        (f"m{when}", source, msg_type, when),
    )


def test_the_manager_records_a_missed_deadline_once_across_a_restart_then_its_recovery(
    make_manager,
):
    entries = [feeds(by="06:30", zone="UTC")]
    # Tomorrow: what the store records is kept for ``keep history days`` of real time.
    day = dt.datetime.now(UTC).date() + dt.timedelta(days=1)
    due = at(UTC, day.year, day.month, day.day, 6, 30)
    first = make_manager(entries)
    assert first.deadlines.look(first.ledger, due - 60) == ([], False)
    assert first.deadlines.next_at == due
    verdicts, _ = first.deadlines.look(first.ledger, due + 1)
    assert [v.state for v in verdicts] == ["missed"] and first.deadlines.missing
    first.ledger.store.conn.close()

    again = make_manager(entries)  # a restart: the store says it was said
    assert again.deadlines.look(again.ledger, due + 120) == ([], False)
    handled(again, "make_feeds", "failure", due + 130)  # not the type it waits for
    assert again.deadlines.look(again.ledger, due + 140) == ([], False)
    handled(again, "make_feeds", "success", due + 150)
    verdicts, beat = again.deadlines.look(again.ledger, due + 160)
    assert [(v.state, v.met_at) for v in verdicts] == [("recovered", due + 150)]
    assert not beat and not again.deadlines.missing  # no heartbeat url
    assert again.deadlines.next_at == due + 86400


def test_the_heartbeat_is_due_once_when_the_days_last_deadline_is_met(make_manager):
    forcing = {"name": "forcing", "checklist key": "weather", "by": "07:00", "timezone": "UTC"}
    entries = [feeds(by="06:30", zone="UTC"), forcing]
    manager = make_manager(entries, **{"heartbeat url": "http://127.0.0.1:9/ping"})
    handled(manager, "make_feeds", "success", at(UTC, 2026, 6, 10, 5))
    verdicts, beat = manager.deadlines.look(manager.ledger, at(UTC, 2026, 6, 10, 6, 30))
    assert [v.state for v in verdicts] == ["met"] and not beat
    manager.ledger.checklist["weather"] = {"ok": True}
    verdicts, beat = manager.deadlines.look(manager.ledger, at(UTC, 2026, 6, 10, 7))
    assert [v.state for v in verdicts] == ["met"] and beat
    assert manager.deadlines.look(manager.ledger, at(UTC, 2026, 6, 10, 8)) == ([], False)


def test_a_look_that_fails_is_tried_again_in_a_minute_not_at_once(make_manager):
    manager = make_manager([feeds(by="06:30", zone="UTC")])
    manager.ledger.store.conn.close()  # the store fails under it
    now = at(UTC, 2026, 6, 10, 6, 31)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        manager.deadlines.look(manager.ledger, now)
    assert manager.deadlines.next_at == now + 60
    assert not manager.deadlines.is_due(now + 59) and manager.deadlines.is_due(now + 60)
