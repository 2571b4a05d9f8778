"""The manager's watch on the config's deadlines: when to look, and what a look finds.

    watch = DeadlineWatch(deadlines.read(config))
    if watch.is_due(time.time()):
        verdicts, beat = watch.look(ledger, time.time())   # judged and recorded
        announce(verdicts, beat, events, notifier, host)    # then logged, published, alerted

The watch looks at each deadline's time (it tells the loop when, :meth:`wake_at`),
once at start (a manager that was down at a deadline's time still judges it), and
after each batch of messages while some deadline of today is missed, so the
recovery note follows the message that met it. What a look decides is recorded
in the store before anything is said, so a restarted manager says nothing twice:
one ``missed`` alert per deadline per day, one ``met late`` note.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import attrs

from nowcastkit import alerts
from nowcastkit.deadlines import DONE, Plan, Seen, Verdict, is_day_done, judge, next_due
from nowcastkit.manager.events import Events
from nowcastkit.manager.ledger import Ledger

__all__ = ["DeadlineWatch", "announce", "heartbeat_channel"]

log = logging.getLogger("manager")

_RETRY = 60.0


@attrs.define(eq=False)
class DeadlineWatch:
    """The deadlines, when the next one falls, and whether one of today's is still missed."""

    plan: Plan
    #: Epoch seconds of the next look; None until the first, which is at once.
    next_at: float | None = None
    #: Some deadline of today was missed and not yet met: look again after each batch.
    missing: bool = False

    def is_due(self, now: float, after_batch: bool = False) -> bool:
        if not self.plan.deadlines:
            return False
        return self.next_at is None or now >= self.next_at or (after_batch and self.missing)

    def wake_at(self, monotonic_now: float, now: float) -> float | None:
        """The next look as a monotonic time, for the loop's poll timeout."""
        if self.next_at is None:
            return None if not self.plan.deadlines else monotonic_now
        return monotonic_now + max(0.0, self.next_at - now)

    def look(self, ledger: Ledger, now: float) -> tuple[list[Verdict], bool]:
        """Judge today's deadlines and record what changed; and whether to ping the heartbeat."""
        deadlines = self.plan.deadlines
        # Should this look fail (the store), the next is in a minute, not at once, for ever.
        self.next_at = now + _RETRY
        since = min(d.today(now) for d in deadlines) - dt.timedelta(days=1)
        states = {
            (name, dt.date.fromisoformat(day)): state
            for (name, day), state in ledger.deadline_states(since.isoformat()).items()
        }
        verdicts = []
        for deadline in deadlines:
            day = deadline.today(now)
            state = states.get((deadline.name, day))
            if state in DONE:
                continue
            met_at = None
            if deadline.worker is not None:
                met_at = ledger.first_message(deadline.worker, deadline.type, *deadline.span(day))
            present = deadline.key is not None and deadline.key in ledger.checklist
            seen = Seen(state, met_at, present)
            verdict = judge(deadline, day, now, seen)
            if verdict is not None:
                verdicts.append(verdict)
                states[(deadline.name, day)] = verdict.state
        if verdicts:
            ledger.record_deadlines(
                (v.deadline.name, v.day.isoformat(), v.state, now) for v in verdicts
            )
        self.missing = any(states.get((d.name, d.today(now))) == "missed" for d in deadlines)
        self.next_at = next_due(deadlines, now)
        beat = (
            self.plan.heartbeat is not None
            and any(v.state in DONE for v in verdicts)
            and is_day_done(deadlines, now, states)
        )
        return verdicts, beat


def announce(
    verdicts: list[Verdict], beat: bool, events: Events, notifier: alerts.Notifier | None,
    host: str,
) -> None:  # fmt: skip
    """After the record: each verdict's log line, event and alert; the heartbeat's ping."""
    for verdict in verdicts:
        deadline, state = verdict.deadline, verdict.state
        fields = {"deadline": deadline.name, "expected": deadline.what, "by": deadline.when,
                  "day": verdict.day.isoformat()}  # fmt: skip
        if verdict.met_at is not None:
            fields["met at"] = verdict.met_at
        worker = deadline.worker or "-"
        if state == "met":
            log.info("deadline %r met: %s by %s", deadline.name, deadline.what, deadline.when)
            events.publish("deadline met", worker, **fields)
            continue
        if state == "recovered":
            log.warning("deadline %r met late: %s at %s", deadline.name, deadline.what,
                        _clock(verdict.met_at))  # fmt: skip
            events.publish("met late", worker, **fields)
        else:
            log.error("deadline %r missed: no %s by %s%s", deadline.name, deadline.what,
                      deadline.when, f" (met late, at {_clock(verdict.met_at)})"
                      if state == "late" else "")  # fmt: skip
            events.publish("missed", worker, **fields)
        if notifier is not None:
            notifier.submit(alerts.deadline_alert(
                host, deadline.name, deadline.what, deadline.when, deadline.worker,
                verdict.met_at, missed=state != "recovered"))  # fmt: skip
    if beat and notifier is not None:
        log.info("the day's deadlines are met; pinging the heartbeat")
        notifier.submit(alerts.Alert("heartbeat", "the day's deadlines are met", host))


def heartbeat_channel(plan: Plan) -> alerts.Channel | None:
    """Where the notifier sends the day's ping; None without ``heartbeat url``."""
    url = plan.heartbeat
    return None if url is None else alerts.Channel("heartbeat", alerts.Heartbeat(url))


def _clock(at: float | None) -> str:
    return "" if at is None else time.strftime("%H:%M:%S %z", time.localtime(at))
