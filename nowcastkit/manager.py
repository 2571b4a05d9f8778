"""The manager: answers every worker message, keeps the checklist, launches what comes next.

    python -m nowcastkit.manager nowcast.yaml [--ignore-checklist]

For each message it checks the registry, merges the payload into the
checklist at the worker's ``checklist key``, writes the checklist file, calls
``after_<worker>(msg, config, checklist)`` from the next workers module,
replies, then launches the returned workers. Every message gets a reply;
nothing a message carries or ``after_<worker>`` raises stops the manager.
SIGHUP reloads the config and the next workers module between messages.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import attrs
import zmq

from nowcastkit import checklist as checklist_file
from nowcastkit import lifecycle
from nowcastkit.config import Config
from nowcastkit.errors import FlowError, MessageError, NowcastkitError
from nowcastkit.flow import Flow
from nowcastkit.message import Message
from nowcastkit.worker import NextWorker

__all__ = ["MANAGER_REPLIES", "Manager", "handle", "main"]

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


@attrs.define
class Manager:
    """The manager's state between messages."""

    config: Config
    flow: Flow
    checklist: dict = attrs.field(factory=dict)
    children: list[subprocess.Popen] = attrs.field(factory=list)

    @property
    def checklist_path(self) -> Path:
        return Path(self.config["checklist file"])

    def words(self, reply_type: str) -> str:
        configured = self.config["message registry"].get("manager", {})
        return configured.get(reply_type) or MANAGER_REPLIES.get(reply_type, "")


def start(config: Config) -> Manager:
    """A manager with the next workers module loaded and an empty checklist."""
    flow = Flow(_flow_module(config), Path(config.file).resolve().parent)
    flow.refresh()
    return Manager(config, flow)


def load_checklist(manager: Manager, ignore_checklist: bool = False) -> None:
    if ignore_checklist:
        log.info("ignoring checklist file; starting with an empty checklist")
    else:
        manager.checklist = checklist_file.load(manager.checklist_path)


def _flow_module(config: Config) -> str:
    return config["message registry"]["next workers module"]


def handle(manager: Manager, frames: list[bytes]) -> tuple[Message, list[NextWorker]]:
    """Answer one request: the reply to send and the workers to launch after it."""
    try:
        if len(frames) != 1:
            raise MessageError(f"message has {len(frames)} frames, expected 1")
        msg = Message.deserialize(frames[0])
    except MessageError as err:
        log.error("malformed message: %s", err)
        return _reply(manager, "malformed message", str(err)), []
    workers = manager.config["message registry"]["workers"]
    if msg.source not in workers:
        log.error("message from unregistered worker %r: (%s)", msg.source, msg.type)
        return _reply(manager, "unregistered worker", msg.source), []
    registered = workers[msg.source]
    if msg.type not in registered or msg.type in _NOT_MESSAGE_TYPES:
        log.error("unregistered message type from %s: %r", msg.source, msg.type)
        return _reply(manager, "unregistered message type", msg.type), []
    log.debug("received message from %s: (%s) %s", msg.source, msg.type, registered[msg.type])
    if msg.type == "need":
        return _need(manager, msg), []
    if msg.type == "clear checklist":
        return _clear_checklist(manager), []
    return _continue(manager, msg, registered)


def _reply(manager: Manager, reply_type: str, payload: Any = None) -> Message:
    return Message("manager", reply_type, payload)


def _need(manager: Manager, msg: Message) -> Message:
    key = msg.payload
    if not isinstance(key, str) or key not in manager.checklist:
        log.error("%s needs checklist key %r, which the checklist does not have", msg.source, key)
        return _reply(manager, "checklist key not found", key)
    return _reply(manager, "ack", manager.checklist[key])


def _clear_checklist(manager: Manager) -> Message:
    logging.getLogger("checklist").info("checklist:\n%s", checklist_file.dump(manager.checklist))
    manager.checklist.clear()
    _save_checklist(manager)
    log.info("checklist cleared")
    return _reply(manager, "checklist cleared")


def _continue(manager: Manager, msg: Message, registered: dict) -> tuple[Message, list]:
    key = registered.get("checklist key")
    if msg.payload is None:
        # Nothing to keep: a failure or crash leaves the worker's last section in place,
        # as the reference design's manager does.
        pass
    elif key:
        checklist_file.merge(manager.checklist, key, msg.payload)
        log.info("checklist updated with [%s] items from %s worker", key, msg.source)
        _save_checklist(manager)
    else:
        log.warning("no checklist key registered for %s worker; payload not kept", msg.source)
    try:
        workers = manager.flow.next_workers(msg, manager.config, manager.checklist)
    except FlowError as err:
        log.error("%s", err)
        return _reply(manager, err.reply_type, str(err)), []
    return _reply(manager, "ack"), workers


def _save_checklist(manager: Manager) -> None:
    try:
        checklist_file.write(manager.checklist_path, manager.checklist)
    except OSError as err:
        log.error("checklist file write failed (the checklist is kept in memory): %s", err)


def launch(manager: Manager, workers: list[NextWorker]) -> None:
    """Launch each worker; one that fails to start does not stop the rest."""
    for worker in workers:
        try:
            manager.children.append(worker.launch(manager.config, "manager"))
        except (OSError, NowcastkitError) as err:
            log.error("launch of %s worker on %s failed: %s", worker.module, worker.host, err)


def reap(manager: Manager) -> None:
    """Collect exited workers so none is left a zombie."""
    running = []
    for child in manager.children:
        status = child.poll()
        if status is None:
            running.append(child)
        else:
            log.debug("worker process %d exited with status %d", child.pid, status)
    manager.children = running


def reload(manager: Manager) -> None:
    """SIGHUP: re-read the config, then the next workers module."""
    if lifecycle.reload_config(manager.config, "manager"):
        name = _flow_module(manager.config)
        if name != manager.flow.module_name:
            folder = Path(manager.config.file).resolve().parent
            manager.flow = Flow(name, folder, groups=manager.flow.groups)
    manager.flow.refresh(force=True)


def _serve(config: Config, args: argparse.Namespace, watch: lifecycle.SignalWatch) -> None:
    manager = start(config)
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    host, port = config["zmq"]["host"], config["zmq"]["ports"]["manager"]
    sock.connect(f"tcp://{host}:{port}")
    log.info("connected to %s port %s", host, port)
    load_checklist(manager, args.ignore_checklist)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(watch, zmq.POLLIN)
    log.debug("listening...")
    try:
        while True:
            ready = dict(poller.poll())
            if sock in ready:
                _serve_one(manager, sock)
            if watch in ready or watch.pending:
                signums = watch.take()
                reap(manager)
                if signal.SIGHUP in signums:
                    reload(manager)
                if {signal.SIGTERM, signal.SIGINT} & set(signums):
                    break
    finally:
        _save_checklist(manager)
        log.info("shutting down")
        sock.close(linger=0)
        context.term()


def _serve_one(manager: Manager, sock: zmq.Socket) -> None:
    frames = sock.recv_multipart()
    try:
        reply, workers = handle(manager, frames)
    except Exception:  # the loop's edge: a bug must not stop the manager
        log.error("failed to handle message:\n%s", traceback.format_exc().rstrip())
        reply, workers = _reply(manager, "manager error"), []
    sock.send(reply.serialize().encode())
    log.debug("sent reply: (%s) %s", reply.type, manager.words(reply.type))
    launch(manager, workers)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ignore-checklist",
        action="store_true",
        help="start with an empty checklist instead of loading the checklist file",
    )


def main(argv: list[str] | None = None) -> int:
    return lifecycle.run_process("manager", __doc__.splitlines()[0], _serve, argv, _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
