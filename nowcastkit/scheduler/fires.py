"""Fire times: pure functions of an entry and an aware instant, UTC out.

Times are anchored to the clock and the calendar, not to when the scheduler
started, so a restarted scheduler computes the same ones (catch-up needs that).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from nowcastkit.scheduler.entries import Entry

__all__ = ["missed_run", "next_fire", "previous_fire"]

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


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


def missed_run(entry: Entry, last_due: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """The latest due time of *entry* after *last_due* and up to *now*, if one was missed."""
    if last_due is None:
        return None
    due = previous_fire(entry, now)
    return due if due > last_due else None


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
