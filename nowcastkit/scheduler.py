"""The scheduler: launches workers at set times, for one nowcast system.

    python -m nowcastkit.scheduler nowcast.yaml

    scheduled workers:
      - workers.sleep: {every: day, at: "05:15", cmd line opts: "--sleep-time 3"}
      - workers.awaken: {every: 10 minutes, timezone: UTC, catch up: once}

The schedule library supplies the vocabulary and the job list: its builder
parses and checks each ``at`` for its unit (as NEMO_Nowcast relied on), and an
owned ``schedule.Scheduler`` holds the jobs, tagged by entry, ordered by next
run. nowcastkit supplies the clock: fire times are aware UTC instants from pure
functions of an injected ``now`` using stdlib zoneinfo (no pytz), anchored to
the calendar so a restart computes the same times (catch-up needs that), right
on DST days, and the loop sleeps until the next one. schedule's run_pending and
idle_seconds are not used: they compare naive local times, which fire early or
repeatedly in the hour the clocks go back. Last fires persist beside the
checklist in ``scheduler_state.yaml``; SIGHUP reloads, SIGTERM/SIGINT stop.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import functools
import logging
import os
import re
import select
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import schedule
import yaml

from nowcastkit import checklist as checklist_file
from nowcastkit import lifecycle, logs
from nowcastkit.config import Config
from nowcastkit.errors import ConfigError, NowcastkitError
from nowcastkit.worker import NextWorker

__all__ = [
    "Entry",
    "Timer",
    "build_jobs",
    "launch_locally",
    "load_entries",
    "main",
    "missed_run",
    "next_fire",
    "previous_fire",
    "reload",
    "start",
    "step",
]

# Named as operators know it from their log filters, not after the module path.
log = logging.getLogger("scheduler")

UTC = dt.UTC
STATE_FILE = "scheduler_state.yaml"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CATCH_UP = ("none", "once")
_KEYS = ("every", "at", "cmd line opts", "timezone", "catch up")
_EVERY = re.compile(r"^(?:(\d+)\s+)?(second|minute|hour|day)s?$")
_EVERY_FORMS = "second, minute, hour, day, monday ... sunday, or N seconds|minutes|hours|days"
_AT_FORMS = {
    "days": 'a quoted "HH:MM" or "HH:MM:SS"',
    "hours": 'a quoted ":MM" or "MM:SS"',
    "minutes": 'a quoted ":SS"',
    "seconds": "no at (an entry every N seconds has none)",
}
# Longer intervals read better in the next unit up (and keep the maths bounded).
_MAX_INTERVAL = {"seconds": 86400, "minutes": 1440, "hours": 24, "days": 366}
_MODULE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# Wake at least this often so a stepped wall clock (NTP, suspend) is noticed.
_MAX_SLEEP = 60.0

Launcher = Callable[[Config, NextWorker], subprocess.Popen]


@attrs.frozen
class Entry:
    """One validated ``scheduled workers`` entry: every *interval* *unit* [on *weekday*] [*at*]."""

    module: str
    every: str
    unit: str = attrs.field(validator=attrs.validators.in_(("seconds", "minutes", "hours", "days")))
    interval: int = 1
    weekday: int | None = None
    at: str = ""
    at_time: dt.time = dt.time(0)
    args: tuple[str, ...] = ()
    timezone: str = ""
    catch_up: str = attrs.field(default="none", validator=attrs.validators.in_(CATCH_UP))
    identity: str = ""

    @property
    def zone(self) -> dt.tzinfo:
        return zone(self.timezone)

    def describe(self) -> str:
        """The identity without its duplicate counter, for log lines."""
        words = [self.module, "every", self.every]
        words += ["at", self.at] if self.at else []
        words += [f"({self.timezone})"] if self.timezone else []
        return " ".join(words + list(self.args))


def zone(name: str) -> dt.tzinfo:
    """The IANA zone *name*, or the host's zone (``TZ``, then /etc/localtime) for ""."""
    if name:
        return ZoneInfo(name)
    tz_env = os.environ.get("TZ", "").lstrip(":")
    if tz_env:
        try:
            return ZoneInfo(tz_env)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


# ---- config: every entry validated at load, one line per problem ----


def load_entries(config: Config) -> tuple[Entry, ...]:
    """The validated ``scheduled workers`` of *config*; absent or empty gives ``()``."""
    path = config.file
    section = config.get("scheduled workers")
    if section is None:
        return ()
    if not isinstance(section, list):
        raise ConfigError(
            path, "scheduled workers", f"got {section!r}, expected a list of worker entries"
        )
    default_zone = _global_timezone(config)
    entries, seen = [], collections.Counter()
    for i, item in enumerate(section):
        entry = _entry(item, f"scheduled workers[{i}]", default_zone, path)
        identity = entry.describe()
        seen[identity] += 1
        if seen[identity] > 1:  # the same line twice runs twice; each keeps its own state
            identity = f"{identity} #{seen[identity]}"
        entries.append(attrs.evolve(entry, identity=identity))
    return tuple(entries)


def _global_timezone(config: Config) -> str:
    section = config.get("scheduler")
    if section is None:
        return ""
    if not isinstance(section, dict):
        raise ConfigError(config.file, "scheduler", f"got {section!r}, expected a mapping")
    for key in section:
        if key != "timezone":
            raise ConfigError(config.file, f"scheduler.{key}", "unknown key, expected timezone")
    return _timezone(section.get("timezone", ""), config.file, "scheduler.timezone")


def _entry(item: Any, where: str, default_zone: str, path: Path) -> Entry:
    if not isinstance(item, dict) or len(item) != 1:
        raise ConfigError(path, where, f"got {item!r}, expected {{worker module: {{every: ...}}}}")
    ((module, options),) = item.items()
    if not isinstance(module, str) or not _MODULE.match(module):
        raise ConfigError(path, where, f"got worker module {module!r}, expected a module name")
    where = f"{where}.{module}"
    if not isinstance(options, dict):
        raise ConfigError(path, where, f"got {options!r}, expected a mapping with every")
    for key in options:
        if key not in _KEYS:
            raise ConfigError(
                path, f"{where}.{key}", f"unknown key, expected one of {', '.join(_KEYS)}"
            )
    if "every" not in options:
        raise ConfigError(path, f"{where}.every", "missing required key")
    every = options["every"]
    unit, interval, weekday = _parse_every(every, path, f"{where}.every")
    at = options.get("at")
    at_time = dt.time(0) if at is None else _parse_at(at, unit, path, f"{where}.at")
    catch_up = options.get("catch up", "none")
    if catch_up not in CATCH_UP:
        raise ConfigError(path, f"{where}.catch up", f"got {catch_up!r}, expected none or once")
    return Entry(
        module=module,
        every=every.strip(),
        unit=unit,
        interval=interval,
        weekday=weekday,
        at=at or "",
        at_time=at_time,
        args=_parse_args(options.get("cmd line opts"), path, f"{where}.cmd line opts"),
        timezone=_timezone(options.get("timezone", default_zone), path, f"{where}.timezone"),
        catch_up=catch_up,
    )


def _parse_every(value: Any, path: Path, key: str) -> tuple[str, int, int | None]:
    text = value.strip().lower() if isinstance(value, str) else None
    if text in WEEKDAYS:
        return "days", 1, WEEKDAYS.index(text)
    match = _EVERY.match(text) if text else None
    if match is None:
        raise ConfigError(path, key, f"got {value!r}, expected {_EVERY_FORMS}")
    interval, unit = int(match[1] or 1), f"{match[2]}s"
    if not 1 <= interval <= _MAX_INTERVAL[unit]:
        raise ConfigError(path, key, f"got {value!r}, expected 1 to {_MAX_INTERVAL[unit]} {unit}")
    return unit, interval, None


def _parse_at(value: Any, unit: str, path: Path, key: str) -> dt.time:
    """Check *value* with schedule's own ``at`` rules for *unit*; return the parsed time."""
    if not isinstance(value, str):
        hint = " (unquoted HH:MM reads as a number in YAML)" if isinstance(value, int) else ""
        raise ConfigError(path, key, f"got {value!r}, expected {_AT_FORMS[unit]}{hint}")
    try:
        return getattr(schedule.Scheduler().every(1), unit).at(value).at_time
    except schedule.ScheduleValueError:
        raise ConfigError(path, key, f"got {value!r}, expected {_AT_FORMS[unit]}") from None


def _parse_args(value: Any, path: Path, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(arg, str) for arg in value):
        return tuple(value)
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as err:
            raise ConfigError(path, key, f"got {value!r}, expected shell words: {err}") from None
    raise ConfigError(path, key, f"got {value!r}, expected a string of options")


def _timezone(value: Any, path: Path, key: str) -> str:
    if value == "":
        return ""
    if isinstance(value, str):
        try:
            zone(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return value
    raise ConfigError(path, key, f"got {value!r}, expected an IANA zone name like Europe/London")


# ---- next-fire maths: pure, aware datetimes in, UTC out ----


def next_fire(entry: Entry, after: dt.datetime) -> dt.datetime:
    """The first fire time of *entry* strictly after *after*."""
    if entry.unit in ("seconds", "minutes"):
        previous, period = _grid(entry, after)
        return previous + period
    return next(t for t in _fires(entry, after, forward=True) if t > after)


def previous_fire(entry: Entry, now: dt.datetime) -> dt.datetime:
    """The last fire time of *entry* at or before *now*."""
    if entry.unit in ("seconds", "minutes"):
        return _grid(entry, now)[0]
    return next(t for t in _fires(entry, now, forward=False) if t <= now)


def _grid(entry: Entry, now: dt.datetime) -> tuple[dt.datetime, dt.timedelta]:
    # Seconds and minutes count on the UTC clock from the epoch: every 15 minutes
    # is :00, :15, :30, :45 whatever the zone, and the same after a restart.
    period = dt.timedelta(**{entry.unit: entry.interval})
    offset = dt.timedelta(seconds=entry.at_time.second if entry.unit == "minutes" else 0)
    elapsed = (now - _EPOCH - offset) // _MICROSECOND
    periods = elapsed // (period // _MICROSECOND)
    return _EPOCH + offset + periods * period, period


def _fires(entry: Entry, start: dt.datetime, forward: bool) -> Iterator[dt.datetime]:
    """Candidate fire times from around *start*, in order, forward or backward."""
    sign = 1 if forward else -1
    tz = entry.zone
    if entry.unit == "hours":
        # Step whole minutes in UTC so every elapsed hour counts once, even the
        # repeated one when clocks go back; the local clock picks the minute.
        base = start.astimezone(UTC).replace(second=entry.at_time.second, microsecond=0)
        for i in range(-1, 50 * 60):
            t = base + dt.timedelta(minutes=sign * i)
            local = t.astimezone(tz)
            if local.minute == entry.at_time.minute and local.hour % entry.interval == 0:
                yield t
        return
    # Days: the local date decides; a time the clocks skip runs as far past the
    # change as it was meant after it (02:30 -> 03:30), a repeated time runs once.
    day = start.astimezone(tz).date()
    for i in range(-1, entry.interval + 9):
        date = day + dt.timedelta(days=sign * i)
        if _is_fire_day(entry, date):
            yield dt.datetime.combine(date, entry.at_time, tzinfo=tz).astimezone(UTC)


def _is_fire_day(entry: Entry, date: dt.date) -> bool:
    if entry.weekday is not None:
        return date.weekday() == entry.weekday
    return date.toordinal() % entry.interval == 0


def missed_run(entry: Entry, last_due: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """The latest due time of *entry* after *last_due* and up to *now*, if one was missed."""
    if last_due is None:
        return None
    due = previous_fire(entry, now)
    return due if due > last_due else None


# ---- the timer: jobs, launches, state ----


def launch_locally(config: Config, worker: NextWorker) -> subprocess.Popen:
    """Start *worker* from the scheduler itself; the one place that launches."""
    return worker.launch(config, "scheduler")


@attrs.define
class Timer:
    """The scheduler's state between wake-ups."""

    config: Config
    launcher: Launcher = launch_locally
    entries: dict[str, Entry] = attrs.field(factory=dict)
    jobs: schedule.Scheduler = attrs.field(factory=schedule.Scheduler)
    state: dict[str, dict[str, str | None]] = attrs.field(factory=dict)
    children: list[tuple[str, subprocess.Popen]] = attrs.field(factory=list)

    @property
    def state_path(self) -> Path:
        return Path(self.config["checklist file"]).parent / STATE_FILE


def build_jobs(
    entries: tuple[Entry, ...], now: dt.datetime, on_due: Callable[..., Any]
) -> schedule.Scheduler:
    """A new ``schedule.Scheduler`` with one job per entry, tagged with its identity."""
    jobs = schedule.Scheduler()
    for entry in entries:
        job = jobs.every(entry.interval)
        job = getattr(job, WEEKDAYS[entry.weekday] if entry.weekday is not None else entry.unit)
        if entry.at:
            job = job.at(entry.at)
        job.tag(entry.identity).do(on_due, entry)
        # schedule's own guess is naive local time; the zone-aware fire replaces it.
        job.next_run = next_fire(entry, now)
    return jobs


def start(config: Config, now: dt.datetime, launcher: Launcher = launch_locally) -> Timer:
    """A timer for *config*'s entries; catches up missed runs marked ``catch up: once``."""
    entries = load_entries(config)
    timer = Timer(config, launcher)
    saved = _load_state(timer.state_path)
    for entry in entries:
        record = saved.get(entry.identity, {})
        last_due = _parse_time(record.get("last due"))
        # Every run due up to now is accounted for from here: caught up or skipped.
        timer.state[entry.identity] = {
            "last due": _format_time(previous_fire(entry, now)),
            "last fire": record.get("last fire"),
        }
        missed = missed_run(entry, last_due, now)
        if missed is not None and entry.catch_up == "once":
            log.info(
                "%s: missed run due %s; catching up once", entry.identity, _local(missed, entry)
            )
            fire(timer, entry, missed, now)
        elif missed is not None:
            log.warning(
                "%s: missed run due %s while the scheduler was down; skipped (catch up: none)",
                entry.identity,
                _local(missed, entry),
            )
    _schedule(timer, entries, now)
    return timer


def _schedule(timer: Timer, entries: tuple[Entry, ...], now: dt.datetime) -> None:
    """Replace the jobs with one per entry; an entry kept from before keeps its next run."""
    if not entries:
        log.info("no scheduled workers in %s; nothing to launch", timer.config.file)
    kept = {_identity(job): job.next_run for job in timer.jobs.get_jobs()}
    timer.entries = {entry.identity: entry for entry in entries}
    timer.jobs = build_jobs(entries, now, functools.partial(fire, timer))
    for job in timer.jobs.get_jobs():
        entry = timer.entries[_identity(job)]
        job.next_run = kept.get(entry.identity, job.next_run)
        log.info("%s: next run at %s", entry.identity, _local(job.next_run, entry))
    # A new entry has nothing to catch up from before now; a removed one is forgotten.
    old, timer.state = timer.state, {}
    for entry in entries:
        last_due = _format_time(previous_fire(entry, now))
        timer.state[entry.identity] = old.get(entry.identity) or {
            "last due": last_due,
            "last fire": None,
        }
    _save_state(timer)


def step(timer: Timer, now: dt.datetime) -> None:
    """Launch every job due at *now*, then move each to its next fire after *now*."""
    due_jobs = sorted(job for job in timer.jobs.get_jobs() if job.next_run <= now)
    for job in due_jobs:
        job.job_func(job.next_run, now)
        job.last_run = now
        # A fire later than one period skips the slots it slept through, as
        # schedule's run_pending does, rather than launching a burst.
        job.next_run = next_fire(timer.entries[_identity(job)], now)
    if due_jobs:
        _save_state(timer)


def fire(timer: Timer, entry: Entry, due: dt.datetime, now: dt.datetime) -> None:
    """Launch *entry*'s worker for its run *due*, and record it."""
    worker = NextWorker(entry.module, entry.args)
    record = timer.state.setdefault(entry.identity, {"last fire": None})
    record["last due"] = _format_time(due)
    try:
        popen = timer.launcher(timer.config, worker)
    except (OSError, NowcastkitError) as err:
        log.error("%s: launch failed: %s", entry.identity, err)
        return
    timer.children.append((entry.module, popen))
    record["last fire"] = _format_time(now)
    log.info(
        "%s: launched in process %d (due %s, %.3fs late)",
        entry.identity,
        popen.pid,
        _local(due, entry),
        (now - due).total_seconds(),
    )


def reap(timer: Timer) -> None:
    """Collect exited workers so none is left a zombie."""
    running = []
    for module, child in timer.children:
        status = child.poll()
        if status is None:
            running.append((module, child))
        else:
            log.info("%s worker (process %d) exited with status %d", module, child.pid, status)
    timer.children = running


def reload(timer: Timer, now: dt.datetime, configure_logging: bool = True) -> bool:
    """SIGHUP: re-read the config and rebuild the jobs; a bad config keeps the old schedule."""
    fresh = Config()
    try:
        fresh.load(timer.config.file)
        entries = load_entries(fresh)
        if configure_logging:
            logs.configure(fresh, long_running=True)
    except NowcastkitError as err:
        log.error("config reload failed, still running on the old schedule: %s", err)
        return False
    timer.config = fresh
    log.info("reloaded config from %s", fresh.file)
    _schedule(timer, entries, now)
    return True


def _identity(job: schedule.Job) -> str:
    (identity,) = job.tags
    return identity


def _local(when: dt.datetime, entry: Entry) -> str:
    return when.astimezone(entry.zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _format_time(when: dt.datetime) -> str:
    return when.astimezone(UTC).isoformat()


def _parse_time(text: Any) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return when if when is None or when.tzinfo else when.replace(tzinfo=UTC)


def _load_state(path: Path) -> dict[str, dict[str, str | None]]:
    """The saved state; a missing, unreadable or corrupt file gives ``{}`` (no catch-up)."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
    try:
        state = yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError, ValueError) as err:
        log.warning("scheduler state %s not loaded (%s); no runs will be caught up", path, err)
        return {}
    if not isinstance(state, dict):
        log.warning("scheduler state %s is not a mapping; no runs will be caught up", path)
        return {}
    return {key: value for key, value in state.items() if isinstance(value, dict)}


def _save_state(timer: Timer) -> None:
    try:
        checklist_file.write(timer.state_path, timer.state)
    except OSError as err:
        log.error("scheduler state write failed (missed runs may not be caught up): %s", err)


# ---- the process ----


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _serve(config: Config, args: argparse.Namespace, watch: lifecycle.SignalWatch) -> None:
    timer = start(config, _now())
    while True:
        step(timer, _now())
        reap(timer)
        next_run = timer.jobs.get_next_run()
        wait = None if next_run is None else (next_run - _now()).total_seconds()
        select.select([watch], [], [], None if wait is None else min(max(wait, 0), _MAX_SLEEP))
        signums = watch.take()
        if signal.SIGHUP in signums:
            reload(timer, _now(), configure_logging=not args.debug)
        if {signal.SIGTERM, signal.SIGINT} & set(signums):
            break
    reap(timer)
    log.info("shutting down; %d launched workers still running", len(timer.children))


def main(argv: list[str] | None = None) -> int:
    return lifecycle.run_process("scheduler", __doc__.splitlines()[0], _serve, argv)


if __name__ == "__main__":
    sys.exit(main())
