"""An alert as a value, and how it reads in an e-mail and in a chat message.

alert = crash_alert("sleep", "r17", {"reason": "timeout", "signal": "SIGKILL"}, "arbutus")
alert.summary            # 'sleep worker crashed: timeout (SIGKILL)'
email_text(alert)        # the plain-text body of the e-mail
webhook_body(alert)      # {"text": ...}: what a Slack-compatible webhook is posted
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "EVENTS",
    "TAIL_LINES",
    "Alert",
    "crash_alert",
    "deadline_alert",
    "email_subject",
    "email_text",
    "failure_alert",
    "probe_alert",
    "recovered_alert",
    "unlaunched_alert",
    "webhook_body",
    "with_attempts",
    "with_link",
]

#: The kinds of alert the manager raises today; a channel's ``events`` names some of them.
EVENTS = ("crash", "failure", "recovered", "missed", "met late", "not launched")
#: How many of a run's last log lines an alert carries.
TAIL_LINES = 20
#: "heartbeat" is the day's ping of the heartbeat URL, never sent to a channel.
_KINDS = (*EVENTS, "test", "heartbeat")


@attrs.frozen(eq=False)
class Alert:
    """One thing an operator should hear about: what happened, to which run, and its evidence."""

    kind: str = attrs.field(validator=attrs.validators.in_(_KINDS))
    #: One line, without the run id, so that the same trouble on another run reads the same.
    summary: str
    #: The manager's host.
    host: str
    worker: str | None = None
    run: str | None = None
    #: Facts worth a line each: exit status or signal, reason, pid, job id, ...
    details: Mapping[str, Any] = attrs.field(factory=dict)
    #: The run's last log lines; read from *log_path* when the alert is sent if empty.
    log_lines: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    log_path: str = ""
    #: Epoch seconds it happened.
    at: float = attrs.field(factory=time.time)
    #: How many identical alerts were held back since the last one of these was sent.
    repeats: int = 0

    @property
    def identity(self) -> tuple[str, str | None, str]:
        """What makes two alerts the same: kind, worker and summary, not the run."""
        return (self.kind, self.worker, self.summary)


def crash_alert(worker: str, run: str | None, payload: Any, host: str, log_path: str = "") -> Alert:
    """A run's crash: *payload* is its crash message's (reason, exit status or signal, ...)."""
    payload = payload if isinstance(payload, Mapping) else {}
    how = payload.get("signal") or (
        f"exit status {payload['exit status']}" if "exit status" in payload else ""
    )
    reason = str(payload.get("reason") or "reported a crash")
    summary = f"{worker} worker crashed: {reason}" + (f" ({how})" if how else "")
    details = {
        key: payload[key]
        for key in ("reason", "exit status", "signal", "pid", "host", "job id", "state")
        if payload.get(key) is not None
    }
    lines = payload.get("last output")
    return Alert(
        "crash", summary, host, worker, run, details,
        log_lines=[str(line) for line in lines] if isinstance(lines, list) else [],
        log_path=str(payload.get("log") or log_path),
    )  # fmt: skip


def failure_alert(worker: str, run: str, msg_type: str, host: str, log_path: str = "") -> Alert:
    """A run's final ``failure`` (or ``failure <name>``) message; its log's tail goes with it."""
    summary = f"{worker} worker failed" + (f" ({msg_type})" if msg_type != "failure" else "")
    return Alert("failure", summary, host, worker, run, {"reported": msg_type}, log_path=log_path)


def with_attempts(alert: Alert, attempts: tuple[int, int] | None) -> Alert:
    """*alert* saying which of its worker's ``retry:`` attempts failed (``3 of 3``)."""
    if attempts is None:
        return alert
    return attrs.evolve(alert, details={"attempt": f"{attempts[0]} of {attempts[1]}",
                                        **alert.details})  # fmt: skip


def with_link(alert: Alert, link: str) -> Alert:
    """*alert* with the address of its run's page on the dashboard (none when empty)."""
    if not link:
        return alert
    return attrs.evolve(alert, details={**alert.details, "dashboard": link})


def recovered_alert(host: str, runs: list[str], restarted: int) -> Alert:
    """The manager started and found *runs* (``"sleep run r12"``) an earlier one left."""
    count = f"{len(runs)} unfinished run{'s'[: len(runs) != 1]}"
    details: dict[str, Any] = {"runs": ", ".join(runs)}
    if restarted:
        details["started again"] = f"{restarted} committed but never started"
    return Alert("recovered", f"manager restarted with {count}", host, details=details)


def deadline_alert(
    host: str, name: str, what: str, by: str, worker: str | None, met_at: float | None = None,
    missed: bool = True,
) -> Alert:  # fmt: skip
    """Deadline *name* (*what* by *by*) passed unmet (*missed*), or was met at *met_at*.

    A missed one met before the alert could go (the manager was down) says both, as
    ``missed``; the note after a ``missed`` alert is ``met late``.
    """
    details: dict[str, Any] = {"deadline": name, "expected": f"{what} by {by}"}
    late = "" if met_at is None else time.strftime("%H:%M:%S %z", time.localtime(met_at))
    if late:
        details["met at"] = late
    if missed:
        summary = f"deadline {name!r} missed: no {what} by {by}" + (
            f" (met late, at {late})" if late else "")  # fmt: skip
        return Alert("missed", summary, host, worker, details=details)
    return Alert("met late", f"deadline {name!r} met late, at {late}", host, worker,
                 details=details)  # fmt: skip


def unlaunched_alert(host: str, entry: str, worker: str, due: str, error: str) -> Alert:
    """The scheduler could not have *entry*'s fire *due* launched: *error* says why."""
    return Alert("not launched", f"scheduled {worker} not launched: {error}", host, worker,
                 details={"entry": entry, "due": due})  # fmt: skip


def probe_alert(host: str, channel: str) -> Alert:
    """What ``nowcastkit alert test`` sends."""
    return Alert("test", f"test alert for channel {channel}", host, details={"channel": channel})


def _headline(alert: Alert) -> str:
    return f"[nowcast {alert.kind}] {alert.host}: {alert.summary}"


def _facts(alert: Alert) -> list[tuple[str, str]]:
    facts = [("when", time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(alert.at)))]
    facts += [(k, str(v)) for k, v in (("worker", alert.worker), ("run", alert.run)) if v]
    facts += [(str(k), str(v)) for k, v in alert.details.items()]
    if alert.log_path:
        facts.append(("log", alert.log_path))
    if alert.repeats:
        facts.append(("held back", f"{alert.repeats} identical alerts since the last one sent"))
    return facts


def email_subject(alert: Alert) -> str:
    return _headline(alert)


def email_text(alert: Alert) -> str:
    """The plain-text body: the headline, one fact a line, then the log's last lines."""
    width = max(len(name) for name, _ in _facts(alert))
    lines = [_headline(alert), ""]
    lines += [f"{name + ':':<{width + 1}} {value}" for name, value in _facts(alert)]
    if alert.log_lines:
        lines += ["", f"last {len(alert.log_lines)} lines of the log:", ""]
        lines += [f"    {line}" for line in alert.log_lines]
    return "\n".join(lines) + "\n"


def webhook_body(alert: Alert) -> dict[str, str]:
    """A Slack-compatible payload: ``text`` in Slack's markup, which Mattermost reads too."""
    lines = [f"*{_escape(_headline(alert))}*"]
    lines += [f"• {name}: {_escape(value)}" for name, value in _facts(alert)]
    if alert.log_lines:
        tail = "\n".join(alert.log_lines).replace("```", "'''")
        lines.append(f"```\n{_escape(tail)}\n```")
    return {"text": "\n".join(lines)}


def _escape(text: str) -> str:
    """Slack's three control characters, as its message formatting asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
