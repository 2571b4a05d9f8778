"""Deadlines: what must have happened by a time of day, read from ``deadlines:`` and judged.

    deadlines:
      - {name: forecast published, worker: make_feeds, type: success, by: "06:30",
         timezone: America/Vancouver, days: every day}
      - {name: forcing arrived, checklist key: weather, by: "04:00", timezone: UTC,
         days: [monday, wednesday, friday]}
    heartbeat url: "$(NOWCAST.ENV.HEARTBEAT_URL)"

    plan = read(config)                       # ConfigError, one line, on the first problem
    due = plan.deadlines[0].due(day)          # epoch seconds, or None on a day it skips
    verdict = judge(deadline, day, now, seen)  # None, or the state it moves to

Everything here is a pure function of values: the manager
(:mod:`nowcastkit.manager.deadline_watch`) gathers what happened today, asks
:func:`judge`, records the verdicts in its store and only then alerts. A time
that does not exist on a day the clocks go forward (02:30 in America/Vancouver
on 2026-03-08) is read with the offset before the change, so it falls an hour
later on the wall clock (03:30 PDT); a time that comes twice on the day they go
back (01:30 on 2026-11-01) is the first of the two (PDT).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from nowcastkit.config import Config
from nowcastkit.errors import ConfigError

__all__ = [
    "DONE",
    "WEEKDAYS",
    "Deadline",
    "Plan",
    "Seen",
    "Verdict",
    "is_day_done",
    "judge",
    "next_due",
    "problems",
    "read",
]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: States after which a deadline's day needs nothing more: met on time, met late (after its
#: missed alert), or found met late at the first look (one alert that says both).
DONE = frozenset(("met", "recovered", "late"))
_DAYS = {"every day": range(7), "weekdays": range(5), "weekends": range(5, 7)}
_KEYS = ("name", "worker", "type", "checklist key", "by", "timezone", "days")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


@attrs.frozen
class Deadline:
    """One deadline: a worker's message of *type*, or a checklist *key*, by *by* in *zone*."""

    name: str
    by: dt.time
    zone: ZoneInfo
    days: frozenset[int]
    worker: str | None = None
    type: str = "success"
    key: str | None = None

    def today(self, now: float) -> dt.date:
        """The date in the deadline's time zone at epoch *now*."""
        return dt.datetime.fromtimestamp(now, self.zone).date()

    def due(self, day: dt.date) -> float | None:
        """When it falls on *day* (epoch seconds); None on a day it is not kept."""
        if day.weekday() not in self.days:
            return None
        # fold=0: a time skipped by DST takes the old offset, a repeated time its first.
        return dt.datetime.combine(day, self.by, self.zone).timestamp()

    def span(self, day: dt.date) -> tuple[float, float]:
        """*day* from its local midnight to the next (23 or 25 hours on a DST day)."""
        start = dt.datetime.combine(day, dt.time(), self.zone)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.zone)
        return start.timestamp(), end.timestamp()

    @property
    def what(self) -> str:
        """What must happen, as a person says it."""
        if self.key is not None:
            return f"checklist key {self.key!r} present"
        return f"{self.worker} {self.type}"

    @property
    def when(self) -> str:
        shown = self.by.strftime("%H:%M:%S" if self.by.second else "%H:%M")
        return f"{shown} {self.zone.key}"


@attrs.frozen
class Plan:
    """The config's deadlines and its heartbeat URL (None when absent)."""

    deadlines: tuple[Deadline, ...] = ()
    heartbeat: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class Seen:
    """What is known of one deadline on one day when it is judged."""

    #: What was recorded for it already: None, or "missed", "met", "late", "recovered".
    state: str | None = None
    #: When its worker first sent the message that day (epoch seconds), if it has.
    met_at: float | None = None
    #: Whether its checklist key is in the checklist now.
    present: bool = False


@attrs.frozen
class Verdict:
    """A deadline's new state on a day: "met", "missed", "late" or "recovered"."""

    deadline: Deadline
    day: dt.date
    state: str
    due: float
    met_at: float | None = None


def judge(deadline: Deadline, day: dt.date, now: float, seen: Seen) -> Verdict | None:
    """The state *deadline* moves to on *day* at *now*, or None when nothing changes.

    A checklist key's deadline is judged at the manager's first look at or after its
    time: present then is met (the manager cannot tell when a key arrived, and a false
    alarm is worse than a late one); absent is missed, and present later is recovered.
    """
    due = deadline.due(day)
    if due is None or now < due or seen.state in DONE:
        return None
    if deadline.key is not None:
        met_at = now if seen.present else None
        on_time = seen.present and seen.state is None
    else:
        met_at = seen.met_at
        on_time = met_at is not None and met_at <= due
    if on_time:
        return Verdict(deadline, day, "met", due, met_at)
    if met_at is None:
        return None if seen.state == "missed" else Verdict(deadline, day, "missed", due)
    state = "recovered" if seen.state == "missed" else "late"
    return Verdict(deadline, day, state, due, met_at)


def next_due(deadlines: Iterable[Deadline], now: float) -> float | None:
    """The first time after *now* that any of *deadlines* falls, within the next 8 days."""
    times = []
    for deadline in deadlines:
        today = deadline.today(now)
        for ahead in range(8):
            due = deadline.due(today + dt.timedelta(days=ahead))
            if due is not None and due > now:
                times.append(due)
                break
    return min(times, default=None)


def is_day_done(deadlines: Iterable[Deadline], now: float, states: Mapping) -> bool:
    """Whether every deadline that falls today (each in its own zone) is met, on time or not.

    *states* maps ``(name, day)`` to the recorded state. A day with no deadline is not done:
    the heartbeat is for the days the system has something to show.
    """
    kept = [(d, d.today(now)) for d in deadlines if d.due(d.today(now)) is not None]
    return bool(kept) and all(states.get((d.name, day)) in DONE for d, day in kept)


def read(config: Config) -> Plan:
    """The deadlines and heartbeat URL of *config*; the first problem raised."""
    plan, errors = _read(config)
    if errors:
        raise errors[0]
    return plan


def problems(config: Config) -> list[ConfigError]:
    """Every problem with *config*'s ``deadlines`` and ``heartbeat url``, for ``validate``."""
    return _read(config)[1]


def _read(config: Config) -> tuple[Plan, list[ConfigError]]:
    path, found = config.file, []
    heartbeat = config.get("heartbeat url")
    if heartbeat is not None and not _is_http_url(heartbeat):
        # Never quote it: a healthchecks URL's path is its secret.
        found.append(ConfigError(path, "heartbeat url", "expected an http or https URL"))
    section = config.get("deadlines")
    if section is None:
        return Plan((), heartbeat if not found else None), found
    if not isinstance(section, list):
        found.append(ConfigError(path, "deadlines", f"got {section!r}, expected a list"))
        return Plan(), found
    registry = config.get("message registry")
    workers = registry.get("workers") if isinstance(registry, dict) else None
    deadlines, names = [], set()
    for index, entry in enumerate(section):
        where = f"deadlines[{index}]"
        deadline = _deadline(entry, where, workers if isinstance(workers, dict) else {},
                             path, found)  # fmt: skip
        if deadline is not None and deadline.name in names:
            text = f"got {deadline.name!r}, expected a name no other deadline has"
            found.append(ConfigError(path, f"{where}.name", text))
        elif deadline is not None:
            names.add(deadline.name)
            deadlines.append(deadline)
    return Plan(tuple(deadlines), heartbeat), found


def _deadline(
    entry: Any, where: str, workers: dict, path: Path | None, found: list[ConfigError]
) -> Deadline | None:
    if not isinstance(entry, dict):
        found.append(ConfigError(path, where, f"got {entry!r}, expected a mapping with name, "
                                 "worker or checklist key, by and timezone"))  # fmt: skip
        return None
    before = len(found)

    def problem(key: str, text: str) -> None:
        found.append(ConfigError(path, f"{where}.{key}" if key else where, text))

    for key in entry:
        if key not in _KEYS:
            problem(key, f"unknown key; expected {', '.join(_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        problem("name", "missing required key" if "name" not in entry else
                f"got {name!r}, expected text")  # fmt: skip
    worker, key = entry.get("worker"), entry.get("checklist key")
    msg_type = entry.get("type", "success")
    if (worker is None) == (key is None):
        problem("", "expected exactly one of worker, checklist key")
    elif worker is not None:
        registered = workers.get(worker) if isinstance(worker, str) else None
        if not isinstance(registered, dict):
            problem("worker", f"got {worker!r}, expected a worker in message registry.workers")
        elif not isinstance(msg_type, str) or msg_type not in registered or msg_type in (
                "checklist key", "timeout"):  # fmt: skip
            types = ", ".join(t for t in registered if t not in ("checklist key", "timeout"))
            problem("type", f"got {msg_type!r}, expected a message type of {worker}: {types}")
    elif not isinstance(key, str) or not key:
        problem("checklist key", f"got {key!r}, expected text")
    elif "type" in entry:
        problem("type", "a checklist key's deadline has no type")
    by = _time(entry.get("by"), problem)
    zone = _zone(entry.get("timezone"), problem)
    days = _days(entry.get("days", "every day"), problem)
    if len(found) > before:
        return None
    return Deadline(name, by, zone, days, worker, msg_type if worker else "success", key)


def _time(value: Any, problem) -> dt.time | None:
    match = _TIME.match(value) if isinstance(value, str) else None
    if match is None:
        hint = " (YAML reads 06:30 unquoted as a number)" if isinstance(value, int) else ""
        expected = f'expected a quoted "HH:MM" or "HH:MM:SS", 00:00 to 23:59{hint}'
        problem("by", "missing required key" if value is None else f"got {value!r}, {expected}")
        return None
    return dt.time(int(match[1]), int(match[2]), int(match[3] or 0))


def _zone(value: Any, problem) -> ZoneInfo | None:
    if value is None:
        problem("timezone", "missing required key (an IANA name such as America/Vancouver)")
        return None
    try:
        if not isinstance(value, str) or not value:
            raise ValueError(value)
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        problem("timezone", f"got {value!r}, expected an IANA time zone such as "
                "America/Vancouver or UTC")  # fmt: skip
        return None


def _days(value: Any, problem) -> frozenset[int] | None:
    if isinstance(value, str) and value in _DAYS:
        return frozenset(_DAYS[value])
    if isinstance(value, list) and value and all(v in WEEKDAYS for v in value):
        return frozenset(WEEKDAYS.index(v) for v in value)
    problem("days", f"got {value!r}, expected every day, weekdays, weekends, or a list of "
            "monday ... sunday")  # fmt: skip
    return None


def _is_http_url(value: Any) -> bool:
    if isinstance(value, str) and "$(NOWCAST.ENV." in value:  # unset; config's check says so
        return True
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        return parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False
