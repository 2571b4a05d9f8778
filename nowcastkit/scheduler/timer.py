"""The timer: one job per entry, the state file, and the loop that sleeps until the next fire.

``step(timer, now)`` fires what is due; ``run`` (the process) repeats it,
sleeping until the next due job and acting on signals between fires: SIGHUP
reloads, SIGTERM/SIGINT stop. With ``alerts:`` in the config, a fire the
manager did not launch is a ``not launched`` alert, sent by the scheduler's own
:class:`~nowcastkit.alerts.Notifier` (the manager may be the trouble).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import select
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import schedule
import yaml

from nowcastkit import alerts, lifecycle, logs, security
from nowcastkit import checklist as checklist_file
from nowcastkit.config import Config
from nowcastkit.control import control_endpoint
from nowcastkit.errors import NowcastkitError
from nowcastkit.next_worker import NextWorker
from nowcastkit.scheduler.entries import WEEKDAYS, Entry, load_entries
from nowcastkit.scheduler.fires import missed_run, next_fire, previous_fire
from nowcastkit.scheduler.request import ManagerLauncher

__all__ = ["STATE_FILE", "Launcher", "Timer", "build_jobs", "fire", "main", "reload",
           "request_id", "start", "step"]  # fmt: skip

# Named as operators know it from their log filters, not after the module path.
log = logging.getLogger("scheduler")

UTC = dt.UTC
STATE_FILE = "scheduler_state.yaml"
# Wake at least this often so a stepped wall clock (NTP, suspend) is noticed.
_MAX_SLEEP = 60.0

#: Launches a worker for the request id given and returns its run id; raises
#: NowcastkitError when it could not. The same request id launches once.
Launcher = Callable[[Config, NextWorker, str], str]


@attrs.define
class Timer:
    """The scheduler's state between wake-ups."""

    config: Config
    launcher: Launcher
    entries: dict[str, Entry] = attrs.field(factory=dict)
    jobs: schedule.Scheduler = attrs.field(factory=schedule.Scheduler)
    state: dict[str, dict[str, str | None]] = attrs.field(factory=dict)
    #: Alerts on a fire not launched; None without ``alerts:``.
    notifier: alerts.Notifier | None = None

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


def start(config: Config, now: dt.datetime, launcher: Launcher) -> Timer:
    """A timer for *config*'s entries; catches up missed runs marked ``catch up: once``."""
    entries = load_entries(config)
    timer = Timer(config, launcher)
    saved = _load_state(timer.state_path)
    for entry in entries:
        record = saved.get(entry.identity, {})
        last_due = _parse_time(record.get("last due"))
        # Every run due up to now is accounted for from here: caught up or skipped.
        last_handled = _format_time(previous_fire(entry, now))
        timer.state[entry.identity] = {"last fire": None, **record, "last due": last_handled}
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
    """Fire every job due at *now*, then move each to its next fire after *now*."""
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
    """Have *entry*'s worker launched for its run *due*, and record whether it was."""
    record = timer.state.setdefault(entry.identity, {"last fire": None})
    record["last due"] = _format_time(due)
    try:
        worker = NextWorker(entry.module, entry.args)
        run_id = timer.launcher(timer.config, worker, request_id(entry, due))
    except NowcastkitError as err:
        # "last fire" stays at the last launch that happened.
        record["last error"] = f"{_format_time(now)}: {err}"
        log.error("%s: not launched (due %s): %s", entry.identity, _local(due, entry), err)
        if timer.notifier is not None:
            timer.notifier.submit(alerts.unlaunched_alert(
                socket.gethostname(), entry.identity, NextWorker(entry.module).name,
                _local(due, entry), str(err)))  # fmt: skip
        return
    record.update({"last fire": _format_time(now), "last run": run_id, "last error": None})
    log.info(
        "%s: launched by the manager as run %s (due %s, %.3fs late)",
        entry.identity,
        run_id,
        _local(due, entry),
        (now - due).total_seconds(),
    )


def request_id(entry: Entry, due: dt.datetime) -> str:
    """The launch request's id for *entry*'s fire *due*: the same every time it is asked.

    A scheduler killed after the manager launched a fire but before it saved its
    state catches that fire up again on restart; the manager has seen the id and
    answers with the run it already started.
    """
    return f"{entry.identity}@{_format_time(due)}"


def reload(timer: Timer, now: dt.datetime, configure_logging: bool = True) -> bool:
    """SIGHUP: re-read the config and rebuild the jobs; a bad config keeps the old schedule."""
    fresh = Config()
    try:
        fresh.load(timer.config.file, timer.config.needs)
        entries = load_entries(fresh)
        if configure_logging:
            logs.configure(fresh, long_running=True, process="scheduler")
    except NowcastkitError as err:
        log.error("config reload failed, still running on the old schedule: %s", err)
        return False
    timer.config = fresh
    log.info("reloaded config from %s", fresh.file)
    alerts.reload_channels(timer.notifier, fresh, "scheduler")
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
    launcher = ManagerLauncher(watch)
    channels = alerts.channels(config)
    notifier = alerts.Notifier(channels) if channels else None
    try:
        log.info("launch requests go to the manager at %s", control_endpoint(config))
        if notifier is not None:
            notifier.start()
        timer = start(config, _now(), launcher)
        timer.notifier = notifier
        _loop(timer, args, watch)
    finally:
        if notifier is not None:
            notifier.stop()
        launcher.close()
    log.info("shutting down")


def _loop(timer: Timer, args: argparse.Namespace, watch: lifecycle.SignalWatch) -> None:
    while True:
        step(timer, _now())
        next_run = timer.jobs.get_next_run()
        wait = None if next_run is None else (next_run - _now()).total_seconds()
        select.select([watch], [], [], None if wait is None else min(max(wait, 0), _MAX_SLEEP))
        signums = watch.take()
        if signal.SIGHUP in signums:
            reload(timer, _now(), configure_logging=not args.debug)
        if {signal.SIGTERM, signal.SIGINT} & set(signums):
            return


def main(argv: list[str] | None = None) -> int:
    """``python -m nowcastkit.scheduler CONFIG``: exit 2 for a bad config or entry."""
    description = "The scheduler: has the manager launch workers at set times."
    return lifecycle.run_process("scheduler", description, _serve, argv, check=_check)


def _check(config: Config) -> None:
    """What stops the scheduler before it starts: a bad entry, a bad alerts: section, and
    with CURVE a missing or unreadable key pair of its own."""
    load_entries(config)
    alerts.channels(config)
    if security.is_curve(config):
        security.client_key_name(config, "scheduler")
        if problems := security.curve_problems(config):
            raise problems[0]
