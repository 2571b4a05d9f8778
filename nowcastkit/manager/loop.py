"""The manager process: sockets, signals, and the loop that ties them together.

A DEALER socket connects to the broker for workers' messages, answered in
batches under one commit (:mod:`.batch`); a REP socket, the control socket, is
bound on loopback (``zmq.ports.control``, default the manager port + 2) for
launch requests from the scheduler and the operator's tools; a PUB socket
(``zmq.ports.monitor``, default the manager port + 3) publishes what the manager
sees and does (:mod:`.events`). Between batches the loop reaps exited workers,
enforces deadlines and acts on signals: SIGHUP reloads, SIGTERM/SIGINT stop.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
import traceback
from typing import Any

import yaml
import zmq

from nowcastkit import lifecycle
from nowcastkit import runs as run_control
from nowcastkit import store as st
from nowcastkit.config import Config
from nowcastkit.control import control_endpoint
from nowcastkit.flow import Flow
from nowcastkit.manager import batch, recovery
from nowcastkit.manager import control as control_commands
from nowcastkit.manager.dispatch import Launch, Manager
from nowcastkit.manager.launches import launch, on_exit
from nowcastkit.next_worker import NextWorker
from nowcastkit.sockets import bind

__all__ = ["main"]

log = logging.getLogger("manager")

_PRUNE_EVERY = 3600.0
_WATCH_ADOPTED = 0.5


def _serve(config: Config, args: argparse.Namespace, watch: lifecycle.SignalWatch) -> None:
    manager, launches = recovery.start(config, args.ignore_checklist)
    context = zmq.Context()
    # A DEALER, not a REP, so that every request waiting can be taken before any reply.
    sock = context.socket(zmq.DEALER)
    control = context.socket(zmq.REP)
    try:
        host, port = config["zmq"]["host"], config["zmq"]["ports"]["manager"]
        sock.connect(f"tcp://{host}:{port}")
        log.info("connected to %s port %s", host, port)
        _bind_control(control, config)
        manager.events.bind(context, config)
        launch(manager, launches)
        poller = zmq.Poller()
        for item in (sock, control, watch, manager.events.socket):
            poller.register(item, zmq.POLLIN)
        log.debug("listening...")
        _loop(manager, poller, sock, control, watch)
    finally:
        manager.file.write(manager.checklist, time.monotonic())
        log.info("shutting down")
        sock.close(linger=0)
        control.close(linger=0)
        manager.events.close()
        context.term()
        manager.store.conn.close()


def _bind_control(control: zmq.Socket, config: Config) -> None:
    bind(control, control_endpoint(config), config, "control", log)


def _loop(manager: Manager, poller, sock, control, watch) -> None:
    next_prune = time.monotonic() + _PRUNE_EVERY
    while True:
        ready = dict(poller.poll(_timeout_ms(manager, next_prune)))
        if sock in ready:
            _serve_workers(manager, sock)
        if control in ready:
            _serve_control(manager, control)
        if manager.events.socket in ready:
            manager.events.answer_subscriptions()
        if watch.fileno() in ready or watch.pending:
            signums = watch.take()
            if signal.SIGHUP in signums:
                _reload(manager)
            if {signal.SIGTERM, signal.SIGINT} & set(signums):
                return
        _tend_runs(manager)
        manager.file.flush(manager.checklist, time.monotonic())
        if time.monotonic() >= next_prune:
            recovery.prune(manager)
            next_prune = time.monotonic() + _PRUNE_EVERY


def _timeout_ms(manager: Manager, next_prune: float) -> int:
    wake = [next_prune]
    if manager.file.due is not None:
        wake.append(manager.file.due)
    if (deadline := run_control.next_deadline(manager.runs)) is not None:
        wake.append(deadline)
    if any(r.popen is None for r in manager.runs.active.values()):
        wake.append(time.monotonic() + _WATCH_ADOPTED)  # no SIGCHLD for runs we did not start
    return max(0, int((min(wake) - time.monotonic()) * 1000) + 1)


def _tend_runs(manager: Manager) -> None:
    run_control.enforce_deadlines(manager.runs, time.monotonic())
    for running, status in run_control.reap(manager.runs):
        _guarded(manager, lambda r=running, s=status: launch(manager, on_exit(manager, r, s)))


def _serve_workers(manager: Manager, sock: zmq.Socket) -> None:
    launches: list[Launch] = _guarded(manager, lambda: batch.serve(manager, sock)) or []
    _guarded(manager, lambda: launch(manager, launches))


def _guarded(manager: Manager, action) -> Any:
    """Run *action*; a bug or a failing store must not stop the manager, only be logged."""
    try:
        return action()
    except Exception:  # the loop's edge
        log.error("manager error:\n%s", traceback.format_exc().rstrip())
        return None


def _serve_control(manager: Manager, control: zmq.Socket) -> None:
    frames = control.recv_multipart()
    reply = _guarded(manager, lambda: _control_request(manager, frames))
    if reply is None:
        reply = {"ok": False, "error": "manager error; see the manager's log"}
    control.send(yaml.dump(reply, Dumper=yaml.CSafeDumper).encode())


def _control_request(manager: Manager, frames: list[bytes]) -> dict:
    try:
        request = yaml.load(frames[-1], Loader=yaml.CSafeLoader) if len(frames) == 1 else None
    except (yaml.YAMLError, ValueError):
        request = None
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        return {"ok": False, "error": "expected a YAML mapping with a command"}
    command = request["command"]
    if command == "ping":
        return {"ok": True, "pid": os.getpid(), "started": manager.started,
                "running": len(manager.runs.active)}  # fmt: skip
    if command == "launch":
        return _control_launch(manager, request)
    if command in control_commands.COMMANDS:
        return control_commands.COMMANDS[command](manager, request)
    return {"ok": False, "error": f"unknown command {command!r}"}


def _control_launch(manager: Manager, request: dict) -> dict:
    try:
        worker = NextWorker(
            request.get("worker"), request.get("args") or [], request.get("host", "localhost")
        )
    except (TypeError, ValueError) as err:
        return {"ok": False, "error": f"bad launch request: {err}"}
    if worker.name not in manager.config["message registry"]["workers"]:
        return {"ok": False, "error": f"worker {worker.name!r} is not in message registry.workers"}
    requester = str(request.get("by", "a control request"))
    # A requester that got no answer asks again with the same id: launch once.
    key = f"control-{request['id']}" if isinstance(request.get("id"), str) else None
    if key and (first := st.handled_reply(manager.store, key)) is not None:
        log.warning("launch request %s from %s was handled before; answering again", key, requester)
        return yaml.load(first, Loader=yaml.CSafeLoader)
    item = Launch(run_control.new_run_id(), worker)
    reply = {"ok": True, "run": item.run_id}
    with st.transaction(manager.store):
        st.add_run(manager.store, st.Run(item.run_id, worker.name, worker.module, worker.args,
                                         worker.host))  # fmt: skip
        if key:
            st.record_message(manager.store, key, requester, "launch",
                              yaml.dump(reply, Dumper=yaml.CSafeDumper))  # fmt: skip
    log.info("launch of %s requested by %s", worker.module, requester)
    launch(manager, [item])
    return reply


def _reload(manager: Manager) -> None:
    """SIGHUP: re-read the config, then the next workers module."""
    if lifecycle.reload_config(manager.config, "manager"):
        name = manager.config["message registry"]["next workers module"]
        if name != manager.flow.module_name:
            folder = manager.config.file.parent
            manager.flow = Flow(name, folder, groups=manager.flow.groups)
    manager.flow.refresh(force=True)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ignore-checklist",
        action="store_true",
        help="start with an empty checklist instead of the saved one",
    )


def main(argv: list[str] | None = None) -> int:
    description = "The manager: answers workers, keeps the checklist, launches what comes next."
    return lifecycle.run_process("manager", description, _serve, argv, _add_arguments)
