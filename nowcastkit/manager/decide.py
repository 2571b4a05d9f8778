"""What a message does: every decision the manager makes, as a value.

    outcome = decide([tag, body], view)     # a worker's request, from the broker
    outcome = decide_exit(ended, view)      # a run that ended (a crash if it never reported)
    outcome = decide_launch(request, view)  # a launch asked on the control socket
    outcome = decide_retry(pending, view)   # a retry whose back-off is over

Each returns an :class:`Outcome`: the reply, the checklist change, the run it
finishes, the runs to launch, the race groups after it, and the log lines and
events that announce it once committed. Nothing here writes, sends, logs or
starts anything; the one effect is the call of the user's ``after_<worker>``.
The ledger (:mod:`.ledger`) commits the outcome, the manager process
(:mod:`.process`) then replies, announces and has the supervisor launch.

For a worker's message, in order: a frame that does not decode gets
``malformed message``; a worker not in the registry, or a type not registered
for it, gets an error; ``need`` gets the checklist key's value; a message seen
before (same id, or the same broker tag when the broker hands it over again)
gets its first reply and changes nothing; ``hello`` from a worker started by
hand records its run; ``clear checklist`` clears; anything else is an outcome:
its payload is merged into the worker's ``checklist key``, ``after_<worker>``
is called with the checklist as it will be, and what it returns goes through
the race groups (:mod:`nowcastkit.race`) to become the runs to launch.

A failure or crash that its worker's ``retry:`` policy retries is not an
outcome yet: the run is finished, a pending retry is stored, and nothing else
changes (no checklist change, no ``after_<worker>``): the last attempt decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import yaml

from nowcastkit import retry as retries
from nowcastkit import store as st
from nowcastkit.config import Config
from nowcastkit.errors import FlowError, MessageError
from nowcastkit.flow import Flow
from nowcastkit.message import Message
from nowcastkit.next_worker import NextWorker
from nowcastkit.race import RaceGroup, settle

__all__ = [
    "CLEARED",
    "MANAGER_REPLIES",
    "Change",
    "Ended",
    "Launch",
    "Outcome",
    "View",
    "decide",
    "decide_cancel_retry",
    "decide_exit",
    "decide_launch",
    "decide_retry",
]

MANAGER_REPLIES = {
    "ack": "message acknowledged",
    "checklist cleared": "system checklist cleared",
    "unregistered worker": "ERROR - message received from unregistered worker",
    "unregistered message type": "ERROR - unregistered message type received from worker",
    "no after_worker function": "ERROR - after_worker function not found in next_workers module",
    "malformed message": "ERROR - message could not be decoded",
    "after_worker error": "ERROR - next_workers module or after_worker function failed",
    "checklist key not found": "ERROR - requested checklist key not found",
    "manager error": "ERROR - manager failed to handle the message",
}
_NOT_MESSAGE_TYPES = frozenset(("checklist key", "timeout", "retry"))
_DEBUG, _INFO, _WARNING, _ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR

#: A log line: level, %-format and its arguments, logged once the outcome is committed.
Note = tuple[int, str, tuple]
#: An event for the monitor feed: name, worker and fields, published once committed.
Event = tuple[str, str, dict]


@attrs.frozen
class Launch:
    """A run to start once its outcome is committed and replied to."""

    run_id: str
    worker: NextWorker
    parent: str | None = None
    #: Which of its worker's attempts this run is: 2 and up for a retry.
    attempt: int = 1


@attrs.frozen
class Ended:
    """A run the supervisor saw end, with the ``crash`` message it is if it never reported."""

    run_id: str
    worker: NextWorker
    pid: int
    status: int | None
    crash: Message


@attrs.frozen
class Change:
    """A checklist change: *value* merged into (or replacing) *key*; all cleared for CLEARED."""

    key: str | None
    value: Any = None
    #: The key holds a mapping and so does *value*: update it entry by entry.
    merge: bool = False


CLEARED = Change(None)


@attrs.frozen
class View:
    """What a decision reads: the committed state and the manager's configuration."""

    config: Config
    flow: Flow
    checklist: Mapping[str, Any]
    groups: tuple[RaceGroup, ...]
    #: Runs launched that have not reported yet, oldest first: run id -> worker name.
    waiting: Mapping[str, str]
    #: The reply recorded for a message key, or None when the message is new.
    replied: Callable[[str], str | None]
    #: How a run ended (its outcome), or None while it runs or when it is not known.
    ended_as: Callable[[str], str | None]
    new_run_id: Callable[[], str]
    host: str
    #: A run's record as committed so far (this batch's writes included), or None.
    run: Callable[[str], st.Run | None] = lambda run_id: None
    #: Epoch seconds, for when a retry is due.
    now: float = 0.0
    #: A number in [0, 1] for each retry's back-off, so that retries spread out.
    jitter: Callable[[], float] = lambda: 0.5


@attrs.frozen
class Outcome:
    """What one message does, for the ledger to commit and the manager process to carry out."""

    #: The reply: a message to a worker, a mapping to a control client.
    reply: Message | dict
    #: The reply as sent, and as recorded under *key* so that a repeat gets it again.
    text: str
    source: str = "-"
    key: str | None = None
    #: The type of message answered, as recorded with its reply ("launch" for a control one).
    received: str = ""
    #: The message was handled before: *text* is its first reply and nothing else changes.
    repeat: bool = False
    change: Change | None = None
    #: The run this message reports on; its outcome is the type of message received.
    finished: str | None = None
    #: An ended run's exit status to record.
    exited: Ended | None = None
    launches: tuple[Launch, ...] = ()
    #: The race groups after this message, when it changed them.
    groups: tuple[RaceGroup, ...] | None = None
    #: A run started by hand, to record; watched by pid when it is on this host.
    by_hand: st.Run | None = None
    #: A retry to store: *finished* failed or crashed, and its worker tries again later.
    retry: st.PendingRetry | None = None
    #: The run whose pending retry this outcome launches (or drops).
    retried: str | None = None
    #: The final outcome's attempt and its worker's attempts, when the worker has ``retry:``.
    attempts: tuple[int, int] | None = None
    notes: tuple[Note, ...] = ()
    events: tuple[Event, ...] = ()
    malformed: bool = False
    #: The name of the CURVE key the message came with (None without CURVE).
    client: str | None = None


def decide(request: list[bytes], view: View) -> Outcome:
    """A worker's request as the broker hands it over (``[tag, body]``)."""
    tag, body = (request[0], request[1:]) if len(request) > 1 else (b"", request)
    try:
        if len(body) != 1:
            raise MessageError(f"message has {len(body)} frames, expected 1")
        msg = Message.deserialize(body[0])
    except MessageError as err:
        problem = str(err)
        return _reply(
            "malformed message", problem, malformed=True,
            notes=((_ERROR, "malformed message: %s", (problem,)),),
            events=(("malformed", "-", {"error": problem}),),
        )  # fmt: skip
    # Under CURVE the broker's tag ends with the name of the key the request came with.
    client = tag.partition(b" ")[2].decode(errors="replace") or None
    fields = {"type": msg.type, "host": msg.host, "pid": msg.pid, "id": msg.id, "run": msg.run,
              "payload": msg.payload, **({"key": client} if client else {})}  # fmt: skip
    return _answer(msg, tag, view, (("received", msg.source, fields),), client)


def _answer(
    msg: Message, tag: bytes, view: View, events: tuple[Event, ...], client: str | None = None
) -> Outcome:
    workers = view.config["message registry"]["workers"]
    source, msg_type = msg.source, msg.type
    answered = {"source": source, "received": msg_type, "events": events, "client": client}
    if source not in workers:
        note = (_ERROR, "message from unregistered worker %r: (%s)", (source, msg_type))
        return _reply("unregistered worker", source, notes=(note,), **answered)
    key = msg.id or (f"broker-{tag.decode(errors='replace')}" if tag else None)
    if msg_type == "hello":
        return _hello(msg, key, view, answered)
    registered = workers[source]
    if msg_type not in registered or msg_type in _NOT_MESSAGE_TYPES:
        note = (_ERROR, "unregistered message type from %s: %r", (source, msg_type))
        return _reply("unregistered message type", msg_type, notes=(note,), **answered)
    seen = (_DEBUG, "received message from %s: (%s) %s", (source, msg_type, registered[msg_type]))
    if msg_type == "need":
        return _need(msg, view, (seen,), answered)
    if key and (first := _repeat(msg, key, view, (seen,), answered)) is not None:
        return first
    if msg_type == "clear checklist":
        return _reply("checklist cleared", key=key, change=CLEARED,
                      notes=(seen, (_INFO, "checklist cleared", ())), **answered)  # fmt: skip
    if msg.run and (ended := view.ended_as(msg.run)) is not None:
        return _late(msg, key, ended, (seen,), answered)
    return _outcome(msg, key, view, _reporting_run(msg, view), (seen,), answered)


def _late(msg: Message, key: str | None, ended: str, notes: tuple[Note, ...],
          answered: dict) -> Outcome:  # fmt: skip
    """A report for a run that already has its outcome (a crash made of a lost connection,
    say): acknowledged and recorded, but after_<worker> has decided that run once already."""
    note = (_WARNING, "%s: message %s is for run %s, which already ended as %s; "
            "after_%s is not called again and the checklist is left as it is",
            (msg.source, key or "-", msg.run, ended, msg.source))  # fmt: skip
    return _reply("ack", key=key, notes=(*notes, note), **answered)


def _repeat(msg: Message, key: str, view: View, notes: tuple[Note, ...],
            answered: dict) -> Outcome | None:  # fmt: skip
    """The reply already sent for a message seen before (resent, or handed over again)."""
    first = view.replied(key)
    if first is None:
        return None
    note = (_WARNING, "%s: message %s was handled before; sending its reply again",
            (msg.source, key))  # fmt: skip
    return Outcome(Message.deserialize(first), first, key=key, repeat=True,
                   notes=(*notes, note), **answered)  # fmt: skip


def _need(msg: Message, view: View, notes: tuple[Note, ...], answered: dict) -> Outcome:
    key = msg.payload
    if not isinstance(key, str) or key not in view.checklist:
        note = (_ERROR, "%s needs checklist key %r, which the checklist does not have",
                (msg.source, key))  # fmt: skip
        return _reply("checklist key not found", key, notes=(*notes, note), **answered)
    return _reply("ack", view.checklist[key], notes=notes, **answered)


def _hello(msg: Message, key: str | None, view: View, answered: dict) -> Outcome:
    """A worker started by hand: record its run, once however often the hello comes."""
    if msg.run or msg.pid is None:
        return _reply("ack", **answered)
    if key and (first := _repeat(msg, key, view, (), answered)) is not None:
        return first
    run_id, host = view.new_run_id(), msg.host or "unknown"
    note = (_INFO, "%s worker started by hand on %s (pid %d) is run %s",
            (msg.source, host, msg.pid, run_id))  # fmt: skip
    return _reply(
        "ack", {"run": run_id}, key=key, notes=(note,),
        by_hand=st.Run(run_id, msg.source, st.BY_HAND, host=host, pid=msg.pid), **answered,
    )  # fmt: skip


def _reporting_run(msg: Message, view: View) -> str | None:
    """The run a message reports on: the one it names, or its worker's oldest still out."""
    if msg.run:
        return msg.run
    for run, name in view.waiting.items():
        if name == msg.source:
            return run
    return None


def _outcome(
    msg: Message, key: str | None, view: View, run_id: str | None,
    notes: tuple[Note, ...], answered: dict, exited: Ended | None = None,
) -> Outcome:  # fmt: skip
    """A worker's outcome (success, failure, crash, …): checklist, after_<worker>, launches."""
    policy = retries.worker_retry(view.config, msg.source)
    run = view.run(run_id) if policy is not None and run_id else None
    if run is not None and not _cancelled(exited):
        pending = retries.pending_after(policy, run, msg.type, view.now, view.jitter())
        if pending is not None:
            return _retrying(msg, key, pending, view.now, notes, answered, exited)
    attempts = (run.attempt, policy.attempts) if run is not None else None
    registered = view.config["message registry"]["workers"].get(msg.source) or {}
    # A payload of None leaves the checklist as it was, as in the reference design.
    checklist_key = registered.get("checklist key") if msg.payload is not None else None
    change = None
    if checklist_key:
        current = view.checklist.get(checklist_key)
        merge = type(current) is dict and type(msg.payload) is dict
        change = Change(checklist_key, msg.payload, merge)
        notes += ((_INFO, "checklist updated with [%s] items from %s worker",
                   (checklist_key, msg.source)),)  # fmt: skip
    elif msg.payload is not None:
        notes += ((_WARNING, "no checklist key registered for %s worker; payload not kept",
                   (msg.source,)),)  # fmt: skip
    done = {"key": key, "change": change, "finished": run_id, "exited": exited,
            "attempts": attempts}  # fmt: skip
    try:
        workers, must_finish = view.flow.after(msg, view.config, Seen(view.checklist, change))
    except FlowError as err:
        notes = ((_ERROR, "%s", (str(err),)), *notes)
        return _reply(err.reply_type, str(err), notes=notes, **done, **answered)
    settled = settle(view.groups, msg.source, workers, must_finish)
    events = answered.pop("events")
    for group in settled.opened:
        waiting = sorted(group.waiting)
        notes += ((_INFO, "race condition: what follows %s waits until all of them finish",
                   (waiting,)),)  # fmt: skip
        events += (("group opened", msg.source, {"waiting": waiting}),)
    for group in settled.released:
        modules = [worker.module for worker in group.held]
        notes += ((_INFO, "race condition resolved: releasing %s", (modules,)),)
        events += (("group released", msg.source, {"launching": modules}),)
    launches = tuple([Launch(view.new_run_id(), worker, run_id) for worker in settled.launch])
    reply, text = _PLAIN_REPLIES.get("ack") or _plain("ack")
    return Outcome(
        reply, text, answered["source"], key, answered["received"], change=change,
        finished=run_id, exited=exited, launches=launches, attempts=attempts,
        groups=settled.groups if settled.changed else None, notes=notes, events=events,
        client=answered.get("client"),
    )  # fmt: skip


def _retrying(
    msg: Message, key: str | None, pending: st.PendingRetry, now: float,
    notes: tuple[Note, ...], answered: dict, exited: Ended | None,
) -> Outcome:  # fmt: skip
    """A failure or crash its worker tries again: acknowledged, the run finished, the retry
    stored; the checklist and after_<worker> wait for the last attempt's outcome."""
    note = (_WARNING, "%s worker run %s: %s on attempt %d/%d; retrying in %.1fs",
            (msg.source, pending.parent, msg.type, pending.attempt - 1, pending.attempts,
             pending.due - now))  # fmt: skip
    event = ("retry pending", msg.source, {
        "run": pending.parent, "after": msg.type, "attempt": pending.attempt,
        "attempts": pending.attempts, "due": pending.due,
    })  # fmt: skip
    reply, text = _PLAIN_REPLIES.get("ack") or _plain("ack")
    return Outcome(
        reply, text, answered["source"], key, answered["received"], finished=pending.parent,
        exited=exited, retry=pending, notes=(*notes, note), events=(*answered["events"], event),
    )  # fmt: skip


def _cancelled(exited: Ended | None) -> bool:
    """A run an operator cancelled: its crash is final, not retried."""
    reason = exited.crash.payload.get("reason") if exited is not None else None
    return isinstance(reason, str) and reason.startswith("cancelled by ")


def decide_retry(pending: st.PendingRetry, view: View) -> Outcome:
    """A retry whose back-off is over: a new run, its parent the failed one, same module,
    args and host, launched as any other run is."""
    name = pending.worker
    if name not in view.config["message registry"]["workers"]:
        note = (_ERROR, "%s is no longer in message registry.workers; its retry after run %s "
                "is dropped", (name, pending.parent))  # fmt: skip
        return Outcome({}, "", name, retried=pending.parent, notes=(note,))
    worker = NextWorker(pending.module, pending.args, pending.host)
    launch = Launch(view.new_run_id(), worker, pending.parent, pending.attempt)
    note = (_INFO, "retrying %s worker after run %s's %s: attempt %d/%d is run %s",
            (name, pending.parent, pending.after, pending.attempt, pending.attempts,
             launch.run_id))  # fmt: skip
    event = ("retry", name, {"run": launch.run_id, "parent": pending.parent,
                             "attempt": pending.attempt, "attempts": pending.attempts})  # fmt: skip
    return Outcome({}, "", name, received="retry", launches=(launch,), retried=pending.parent,
                   notes=(note,), events=(event,))  # fmt: skip


def decide_cancel_retry(pending: st.PendingRetry, view: View, by: str) -> Outcome:
    """An operator's cancel of a retry still waiting out its back-off: it is dropped, and
    the run it followed stays as it ended (no after_<worker>, no alert)."""
    reply = {"ok": True, "retry cancelled": True, "run": pending.parent,
             "worker": pending.worker, "attempt": pending.attempt,
             "attempts": pending.attempts, "after": pending.after}  # fmt: skip
    note = (_WARNING, "%s worker: retry %d/%d after run %s's %s cancelled, as %s asked",
            (pending.worker, pending.attempt, pending.attempts, pending.parent, pending.after,
             by))  # fmt: skip
    event = ("retry cancelled", pending.worker, {"parent": pending.parent, "by": by,
             "attempt": pending.attempt, "attempts": pending.attempts})  # fmt: skip
    return _control(reply, source=by, retried=pending.parent, notes=(note,), events=(event,))


def decide_exit(ended: Ended, view: View) -> Outcome:
    """A run ended: its exit is recorded; if it never reported, it is its worker's crash."""
    name, crash = ended.worker.name, ended.crash
    exit_event = ("exit", name, {"run": ended.run_id, "pid": ended.pid, "status": ended.status})
    if ended.run_id not in view.waiting:
        how = "has exited" if ended.status is None else f"exited with status {ended.status}"
        where = _where(ended)
        process = f"worker process {ended.pid}" if where == f"pid {ended.pid}" else where
        note = (_DEBUG, "%s worker run %s: %s %s", (name, ended.run_id, process, how))
        return Outcome(crash, "", name, exited=ended, notes=(note,), events=(exit_event,))
    payload = crash.payload
    how = payload.get("signal") or (
        f"exit status {payload['exit status']}" if "exit status" in payload else "no exit status"
    )
    notes: tuple[Note, ...] = (
        (_ERROR, "%s worker run %s (%s) ended without reporting (%s, %s); handling it as a crash",
         (name, ended.run_id, _where(ended), payload["reason"], how)),
    )  # fmt: skip
    events = (exit_event, ("crash", name, {"run": ended.run_id, "type": "crash",
                                           "payload": crash.payload}))  # fmt: skip
    if name not in view.config["message registry"]["workers"]:
        notes += ((_ERROR, "%s is not in message registry.workers; no after_%s to call",
                   (name, name)),)  # fmt: skip
        return Outcome(crash, "", name, finished=ended.run_id, received="crash", exited=ended,
                       notes=notes, events=events)  # fmt: skip
    answered = {"source": name, "received": "crash", "events": events}
    return _outcome(crash, crash.id, view, ended.run_id, notes, answered, ended)


def _where(ended: Ended) -> str:
    """Where the run was: ``pid 4242``, ``pid 4242 on arbutus``, ``job 17 on nibi``."""
    payload = ended.crash.payload
    place = f" on {payload['host']}" if payload.get("host") else ""
    if payload.get("job id") is not None:
        return f"job {payload['job id']}{place}"
    return f"pid {ended.pid}{place}" if ended.pid is not None else f"not started{place}"


def decide_launch(request: dict, view: View) -> Outcome:
    """A launch asked on the control socket: ``{"worker", "args", "host", "by", "id"}``."""
    try:
        worker = NextWorker(
            request.get("worker"), request.get("args") or [], request.get("host", "localhost")
        )
    except (TypeError, ValueError) as err:
        return _control({"ok": False, "error": f"bad launch request: {err}"})
    if worker.name not in view.config["message registry"]["workers"]:
        return _control(
            {"ok": False, "error": f"worker {worker.name!r} is not in message registry.workers"}
        )
    requester = str(request.get("by", "a control request"))
    # A requester that got no answer asks again with the same id: launch once.
    key = f"control-{request['id']}" if isinstance(request.get("id"), str) else None
    if key and (first := view.replied(key)) is not None:
        note = (_WARNING, "launch request %s from %s was handled before; answering again",
                (key, requester))  # fmt: skip
        reply = yaml.load(first, Loader=yaml.CSafeLoader)
        return Outcome(reply, first, requester, key, "launch", repeat=True, notes=(note,))
    launch = Launch(view.new_run_id(), worker)
    note = (_INFO, "launch of %s requested by %s", (worker.module, requester))
    return _control({"ok": True, "run": launch.run_id}, source=requester, key=key,
                    received="launch", launches=(launch,), notes=(note,))  # fmt: skip


def _control(reply: dict, **fields: Any) -> Outcome:
    return Outcome(reply, yaml.dump(reply, Dumper=yaml.CSafeDumper), **fields)


def _reply(reply_type: str, payload: object = None, **fields: Any) -> Outcome:
    """An outcome with a reply from the manager and nothing else (unless *fields* say)."""
    if payload is None:  # the common replies, made and serialized once
        reply, text = _PLAIN_REPLIES.get(reply_type) or _plain(reply_type)
    else:
        reply = Message("manager", reply_type, payload)
        text = reply.serialize()
    return Outcome(reply, text, **fields)


_PLAIN_REPLIES: dict[str, tuple[Message, str]] = {}


def _plain(reply_type: str) -> tuple[Message, str]:
    reply = Message("manager", reply_type)
    _PLAIN_REPLIES[reply_type] = reply, reply.serialize()
    return _PLAIN_REPLIES[reply_type]


class Seen(Mapping):
    """The checklist as ``after_<worker>`` sees it: read-only, with this message's change in.

    Nothing is copied until the changed key is read; a merged mapping is then a new dict.
    The committed checklist changes only when the outcome is committed.
    """

    __slots__ = ("_base", "_change", "_merged")

    def __init__(self, base: Mapping[str, Any], change: Change | None) -> None:
        self._base, self._change, self._merged = base, change, None

    def __getitem__(self, key: str) -> Any:
        change = self._change
        if change is None or key != change.key:
            return self._base[key]
        if not change.merge:
            return change.value
        if self._merged is None:
            self._merged = {**self._base[key], **change.value}
        return self._merged

    def __contains__(self, key: object) -> bool:
        return key in self._base or (self._change is not None and key == self._change.key)

    def __iter__(self) -> Iterator[str]:
        yield from self._base
        change = self._change
        if change is not None and change.key not in self._base:
            yield change.key

    def __len__(self) -> int:
        change = self._change
        return len(self._base) + (change is not None and change.key not in self._base)

    def __repr__(self) -> str:
        return repr(dict(self))
