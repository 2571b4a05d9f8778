"""The ``scheduled workers`` section: each entry parsed and checked into an :class:`Entry`.

Every problem is a one-line :class:`ConfigError` naming the file, the entry's
key path, the value and what was expected. :func:`load_entries` raises the
first; :func:`entry_problems` lists them all, for ``nowcastkit validate``.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import schedule

from nowcastkit.config import Config
from nowcastkit.errors import ConfigError

__all__ = [
    "CATCH_UP",
    "DEFAULT_MANAGER_TIMEOUT",
    "WEEKDAYS",
    "Entry",
    "entry_problems",
    "load_entries",
    "manager_timeout",
    "zone",
]

UTC = dt.UTC
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CATCH_UP = ("none", "once")
#: Seconds the scheduler keeps asking a manager that does not answer a launch request.
DEFAULT_MANAGER_TIMEOUT = 15.0
_KEYS = ("every", "at", "cmd line opts", "timezone", "catch up")
_GLOBAL_KEYS = ("timezone", "manager timeout")
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
_T = TypeVar("_T")


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


def load_entries(config: Config) -> tuple[Entry, ...]:
    """The validated ``scheduled workers`` of *config*; absent or empty gives ``()``.

    Raises the first problem found (of the entries or of the ``scheduler`` section).
    """
    entries, problems = _read(config)
    if problems:
        raise problems[0]
    return entries


def entry_problems(config: Config) -> list[ConfigError]:
    """Every problem with *config*'s ``scheduler`` section and ``scheduled workers``."""
    return _read(config)[1]


def manager_timeout(config: Config) -> float:
    """``scheduler.manager timeout``: how long one launch request may take, in seconds."""
    section = config.get("scheduler")
    value = section.get("manager timeout") if isinstance(section, dict) else None
    return DEFAULT_MANAGER_TIMEOUT if value is None else float(value)


def _read(config: Config) -> tuple[tuple[Entry, ...], list[ConfigError]]:
    path, problems = config.file, []
    default_zone = _global_section(config, problems)
    section = config.get("scheduled workers")
    if section is None:
        return (), problems
    if not isinstance(section, list):
        key = "scheduled workers"
        problems.append(ConfigError(path, key, f"got {section!r}, expected a list of entries"))
        return (), problems
    entries, seen = [], collections.Counter()
    for i, item in enumerate(section):
        entry = _entry(item, f"scheduled workers[{i}]", default_zone, path, problems)
        if entry is None:
            continue
        identity = entry.describe()
        seen[identity] += 1
        if seen[identity] > 1:  # the same line twice runs twice; each keeps its own state
            identity = f"{identity} #{seen[identity]}"
        entries.append(attrs.evolve(entry, identity=identity))
    return tuple(entries), problems


def _global_section(config: Config, problems: list[ConfigError]) -> str:
    """The ``scheduler`` section's checks; returns its timezone ("" for the host's)."""
    section, path = config.get("scheduler"), config.file
    if section is None:
        return ""
    if not isinstance(section, dict):
        problems.append(ConfigError(path, "scheduler", f"got {section!r}, expected a mapping"))
        return ""
    for key in section:
        if key not in _GLOBAL_KEYS:
            expected = f"unknown key, expected one of {', '.join(_GLOBAL_KEYS)}"
            problems.append(ConfigError(path, f"scheduler.{key}", expected))
    timeout = section.get("manager timeout")
    if timeout is not None and not (
        isinstance(timeout, int | float) and not isinstance(timeout, bool) and 0 < timeout <= 600
    ):
        expected = f"got {timeout!r}, expected seconds above 0, at most 600"
        problems.append(ConfigError(path, "scheduler.manager timeout", expected))
    zone_name = _checked(
        problems, _timezone, section.get("timezone", ""), path, "scheduler.timezone"
    )
    return zone_name or ""


def _checked(problems: list[ConfigError], parse: Callable[..., _T], *args: Any) -> _T | None:
    """*parse(*args)*, or None with its ConfigError added to *problems*."""
    try:
        return parse(*args)
    except ConfigError as err:
        problems.append(err)
        return None


def _entry(
    item: Any, where: str, default_zone: str, path: Path, problems: list[ConfigError]
) -> Entry | None:
    """The entry *item*, or None when it has problems (each added to *problems*)."""
    if not isinstance(item, dict) or len(item) != 1:
        expected = "expected {worker module: {every: ...}}"
        problems.append(ConfigError(path, where, f"got {item!r}, {expected}"))
        return None
    ((module, options),) = item.items()
    if not isinstance(module, str) or not _MODULE.match(module):
        problems.append(
            ConfigError(path, where, f"got worker module {module!r}, expected a module name")
        )
        return None
    where = f"{where}.{module}"
    if not isinstance(options, dict):
        problems.append(ConfigError(path, where, f"got {options!r}, expected a mapping with every"))
        return None
    return _options(module, options, where, default_zone, path, problems)


def _options(
    module: str,
    options: dict,
    where: str,
    default_zone: str,
    path: Path,
    problems: list[ConfigError],
) -> Entry | None:
    """The entry for *module* with *options*, or None when they have problems."""
    before = len(problems)
    for key in options:
        if key not in _KEYS:
            expected = f"unknown key, expected one of {', '.join(_KEYS)}"
            problems.append(ConfigError(path, f"{where}.{key}", expected))
    if "every" not in options:
        problems.append(ConfigError(path, f"{where}.every", "missing required key"))
    every = options.get("every")
    parsed = None
    if "every" in options:
        parsed = _checked(problems, _parse_every, every, path, f"{where}.every")
    at = options.get("at")
    at_time = dt.time(0)
    if parsed is not None and at is not None:
        at_time = _checked(problems, _parse_at, at, parsed[0], path, f"{where}.at")
    catch_up = options.get("catch up", "none")
    if catch_up not in CATCH_UP:
        expected = f"got {catch_up!r}, expected none or once"
        problems.append(ConfigError(path, f"{where}.catch up", expected))
    args = _checked(problems, _parse_args, options.get("cmd line opts"), path,
                    f"{where}.cmd line opts")  # fmt: skip
    timezone = _checked(problems, _timezone, options.get("timezone", default_zone), path,
                        f"{where}.timezone")  # fmt: skip
    if len(problems) > before or parsed is None:
        return None
    unit, interval, weekday = parsed
    return Entry(
        module=module,
        every=every.strip(),
        unit=unit,
        interval=interval,
        weekday=weekday,
        at=at or "",
        at_time=at_time,
        args=args,
        timezone=timezone,
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
