"""What the manager does with one message: check it, record it, call ``after_<worker>``.

Every change a message makes — checklist keys, the runs to launch, race-condition
groups, the reply itself — is written to the store in one transaction (a
savepoint when the loop handles a batch of requests in one) and committed before
the reply goes out; if it is rolled back, its changes to memory are undone with
it (:mod:`.changes`). A message seen before (same id, or the same broker tag
when the broker hands it over again) gets its first reply and changes nothing.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import attrs

from nowcastkit import checklist as checklist_file
from nowcastkit import runs as run_control
from nowcastkit import store as st
from nowcastkit.config import Config
from nowcastkit.errors import FlowError, MessageError
from nowcastkit.flow import Flow, RaceGroup
from nowcastkit.manager.changes import Changes, atomic
from nowcastkit.manager.checklist_file import ChecklistFile
from nowcastkit.manager.events import Events
from nowcastkit.message import Message
from nowcastkit.next_worker import NextWorker

__all__ = [
    "MANAGER_REPLIES",
    "Launch",
    "Manager",
    "handle",
    "process",
]

# Named as operators know it from their log filters, not after the module path.
log = logging.getLogger("manager")

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
_NOT_MESSAGE_TYPES = frozenset(("checklist key", "timeout"))


@attrs.frozen
class Launch:
    """A worker run committed to the store, to be started once the reply is sent."""

    run_id: str
    worker: NextWorker
    parent: str | None = None


@attrs.define(eq=False)
class Manager:
    """The manager's state between messages."""

    config: Config
    flow: Flow
    store: st.Store
    runs: run_control.Runs
    checklist: dict = attrs.field(factory=dict)
    host: str = attrs.field(factory=socket.gethostname)
    started: float = attrs.field(factory=time.time)
    malformed: int = 0
    events: Events = attrs.field(factory=Events)
    file: ChecklistFile = attrs.field()
    #: The race-condition groups as last stored, so an unchanged list is not rewritten.
    saved_groups: list | None = None
    #: Undo and after-commit steps of the transaction now open.
    changes: Changes = attrs.field(factory=Changes)

    @file.default
    def _file(self) -> ChecklistFile:
        return ChecklistFile.from_config(self.config)


def handle(manager: Manager, frames: list[bytes]) -> tuple[list[bytes], list[Launch]]:
    """Answer one request (``[tag, body]`` from the broker): reply frames and runs to start.

    Committed on return, unless a transaction is open (a batch): then its changes
    are a savepoint in it, undone, in the store and in memory, if this raises.
    """
    tag, body = (frames[0], frames[1:]) if len(frames) > 1 else (b"", frames)
    with atomic(manager.store, manager.changes):
        reply, launches, source = _answer(manager, tag, body)
        manager.changes.after_commit(
            lambda: manager.events.publish("reply", source, type=reply.type, payload=reply.payload)
        )
    text = _text(reply).encode()
    return ([tag, text] if tag else [text]), launches


def _answer(manager: Manager, tag: bytes, body: list[bytes]) -> tuple[Message, list[Launch], str]:
    """The reply, the runs to start, and the sender's name ("-" when unknown)."""
    try:
        if len(body) != 1:
            raise MessageError(f"message has {len(body)} frames, expected 1")
        msg = Message.deserialize(body[0])
    except MessageError as err:
        problem = str(err)
        manager.malformed += 1
        log.error("malformed message: %s", problem)
        manager.changes.after_commit(
            lambda: manager.events.publish("malformed", "-", error=problem)
        )
        return _reply("malformed message", problem), [], "-"
    seen = {"type": msg.type, "host": msg.host, "pid": msg.pid, "id": msg.id, "run": msg.run,
            "payload": msg.payload}  # fmt: skip
    manager.changes.after_commit(lambda: manager.events.publish("received", msg.source, **seen))
    reply, launches = _reply_to(manager, msg, tag)
    return reply, launches, msg.source


def _reply_to(manager: Manager, msg: Message, tag: bytes) -> tuple[Message, list[Launch]]:
    workers = manager.config["message registry"]["workers"]
    if msg.source not in workers:
        log.error("message from unregistered worker %r: (%s)", msg.source, msg.type)
        return _reply("unregistered worker", msg.source), []
    key = msg.id or (f"broker-{tag.decode(errors='replace')}" if tag else None)
    if msg.type == "hello":
        return _hello(manager, msg, key), []
    registered = workers[msg.source]
    if msg.type not in registered or msg.type in _NOT_MESSAGE_TYPES:
        log.error("unregistered message type from %s: %r", msg.source, msg.type)
        return _reply("unregistered message type", msg.type), []
    log.debug("received message from %s: (%s) %s", msg.source, msg.type, registered[msg.type])
    if msg.type == "need":
        return _need(manager, msg), []
    if (first := _first_reply(manager, msg, key)) is not None:
        return first, []
    if msg.type == "clear checklist":
        return _clear_checklist(manager, msg, key), []
    return process(manager, msg, key)


def _first_reply(manager: Manager, msg: Message, key: str | None) -> Message | None:
    """The reply already sent for a message seen before (resent, or handed over again)."""
    if key and (first := st.handled_reply(manager.store, key)) is not None:
        log.warning("%s: message %s was handled before; sending its reply again", msg.source, key)
        return Message.deserialize(first)
    return None


def _reply(reply_type: str, payload: object = None) -> Message:
    return Message("manager", reply_type, payload)


_PLAIN_REPLIES: dict[str, str] = {}


def _text(reply: Message) -> str:
    """The reply's wire text; the common payload-less replies are serialized once."""
    if reply.payload is not None or reply.id is not None:
        return reply.serialize()
    text = _PLAIN_REPLIES.get(reply.type)
    if text is None:
        text = _PLAIN_REPLIES[reply.type] = reply.serialize()
    return text


def _need(manager: Manager, msg: Message) -> Message:
    key = msg.payload
    if not isinstance(key, str) or key not in manager.checklist:
        log.error("%s needs checklist key %r, which the checklist does not have", msg.source, key)
        return _reply("checklist key not found", key)
    return _reply("ack", manager.checklist[key])


def _hello(manager: Manager, msg: Message, key: str | None) -> Message:
    """A worker started by hand: record its run and watch its pid when it is on this host."""
    if msg.run or msg.pid is None:
        return _reply("ack")
    if (first := _first_reply(manager, msg, key)) is not None:
        return first  # one run per hello: a second would end as a crash
    run_id = run_control.new_run_id()
    host = msg.host or "unknown"
    reply = _reply("ack", {"run": run_id})
    with atomic(manager.store, manager.changes):
        st.add_run(manager.store, st.Run(run_id, msg.source, st.BY_HAND, host=host, pid=msg.pid))
        if key:
            st.record_message(manager.store, key, msg.source, msg.type, _text(reply))
        if host == manager.host:
            worker = NextWorker(msg.source)
            run_control.adopt(manager.runs, run_id, worker, msg.pid, Path(""), by_hand=True)
            manager.changes.undo(lambda: manager.runs.active.pop(run_id, None))
    log.info(
        "%s worker started by hand on %s (pid %d) is run %s", msg.source, host, msg.pid, run_id
    )
    return reply


def _clear_checklist(manager: Manager, msg: Message, key: str | None) -> Message:
    text = manager.file.text(manager.checklist)
    logging.getLogger("checklist").info("checklist:\n%s", text)
    reply = _reply("checklist cleared")
    with atomic(manager.store, manager.changes):
        cleared = dict(manager.checklist)
        manager.checklist.clear()
        manager.file.forget()
        manager.changes.undo(lambda: _restore(manager, cleared))
        st.put_checklist(manager.store, {})
        if key:
            st.record_message(manager.store, key, msg.source, msg.type, _text(reply))
        manager.changes.after_commit(lambda: _cleared(manager, text))
    return reply


def _restore(manager: Manager, cleared: dict) -> None:
    manager.checklist.update(cleared)
    manager.file.forget()


def _cleared(manager: Manager, text: str) -> None:
    manager.file.cleared(text, time.monotonic())
    log.info("checklist cleared")


def process(manager: Manager, msg: Message, key: str | None) -> tuple[Message, list[Launch]]:
    """A worker's outcome: checklist, after_<worker>, race groups, runs to launch, reply."""
    registered = manager.config["message registry"]["workers"].get(msg.source) or {}
    # A payload of None leaves the checklist as it was, as in the reference design.
    checklist_key = registered.get("checklist key") if msg.payload is not None else None
    groups_before = list(manager.flow.groups)
    # Within a request's savepoint (handle), an error here undoes that whole request.
    with atomic(manager.store, manager.changes, join=True):
        run_id = _reporting_run(manager, msg)
        _keep_for_undo(manager, checklist_key)
        if checklist_key:
            checklist_file.merge(manager.checklist, checklist_key, msg.payload)
            manager.file.forget(checklist_key)
            st.put_checklist(manager.store, manager.checklist, [checklist_key])
        try:
            workers = manager.flow.next_workers(msg, manager.config, manager.checklist)
            reply = _reply("ack")
        except FlowError as err:
            log.error("%s", err)
            workers, reply = [], _reply(err.reply_type, str(err))
        launches = [Launch(run_control.new_run_id(), worker, run_id) for worker in workers]
        for item in launches:
            st.add_run(manager.store, _run_record(item))
        if run_id:
            st.finish_run(manager.store, run_id, msg.type)
        groups = [_group_record(g) for g in manager.flow.groups]
        if groups != manager.saved_groups:
            st.save_groups(manager.store, groups)
        if key:
            st.record_message(manager.store, key, msg.source, msg.type, _text(reply))
        manager.saved_groups = groups
        events = _group_events(groups_before, manager.flow.groups)
        manager.changes.after_commit(lambda: _announce(manager, msg, checklist_key, events))
    return reply, launches


def _keep_for_undo(manager: Manager, checklist_key: str | None) -> None:
    """Register how to put back the checklist key and the race groups that *process* changes."""
    checklist, flow, saved_groups = manager.checklist, manager.flow, manager.saved_groups
    listed = list(flow.groups)
    members = [(group, set(group.waiting), list(group.held)) for group in listed]
    if checklist_key:
        had, value = checklist_key in checklist, checklist.get(checklist_key)
        value = dict(value) if isinstance(value, dict) else value  # merge updates it in place

    def undo() -> None:
        for group, waiting, held in members:
            group.waiting, group.held = waiting, held
        flow.groups = listed
        manager.saved_groups = saved_groups
        if checklist_key:
            if had:
                checklist[checklist_key] = value
            else:
                checklist.pop(checklist_key, None)
            manager.file.forget(checklist_key)

    manager.changes.undo(undo)


def _announce(
    manager: Manager, msg: Message, checklist_key: str | None, events: list[tuple[str, dict]]
) -> None:
    """Events and log lines for a committed outcome; the checklist file follows."""
    for event, fields in events:
        if event == "group opened":
            log.info("race condition: what follows %s waits until all of them finish",
                     fields["waiting"])  # fmt: skip
        else:
            log.info("race condition resolved: releasing %s", fields["launching"])
        manager.events.publish(event, msg.source, **fields)
    if checklist_key:
        log.info("checklist updated with [%s] items from %s worker", checklist_key, msg.source)
        manager.file.changed(manager.checklist, time.monotonic())
    elif msg.payload is not None:
        log.warning("no checklist key registered for %s worker; payload not kept", msg.source)


def _reporting_run(manager: Manager, msg: Message) -> str | None:
    """The run this outcome ends: named in the message, or the oldest of that worker's."""
    if msg.run:
        running = manager.runs.active.get(msg.run)
        if running is not None:
            _mark_reported(manager, running)
        return msg.run
    for running in manager.runs.active.values():
        if running.worker.name == msg.source and not running.reported:
            _mark_reported(manager, running)
            return running.run_id
    return None


def _mark_reported(manager: Manager, running: run_control.Running) -> None:
    was = running.reported
    running.reported = True
    manager.changes.undo(lambda: setattr(running, "reported", was))


def _run_record(item: Launch) -> st.Run:
    worker = item.worker
    return st.Run(
        item.run_id, worker.name, worker.module, worker.args, worker.host, parent=item.parent
    )


def _group_events(before: list[RaceGroup], after: list[RaceGroup]) -> list[tuple[str, dict]]:
    """The groups a message opened and released, as events to publish once it is committed."""
    events = [
        ("group opened", {"waiting": sorted(group.waiting)})
        for group in after
        if not any(group is old for old in before)
    ]
    for group in before:
        if not any(group is new for new in after):
            events.append(("group released", {"launching": [w.module for w in group.held]}))
    return events


def _group_record(group: RaceGroup) -> tuple[set[str], list[dict]]:
    held = [{"module": w.module, "args": list(w.args), "host": w.host} for w in group.held]
    return group.waiting, held
