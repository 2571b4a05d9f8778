"""The manager process: owns the sockets and the signal watch, and steps the loop.

    manager = ManagerProcess.start(config)   # the ledger, the supervisor, the flow
    manager.open(zmq.Context(), watch)        # connect, bind, start recovered runs
    while manager.step():                     # one poll and what it brought
        pass

A DEALER socket connects to the broker for workers' messages: every request
waiting is taken, decided and committed as one batch (:mod:`.ledger`), then
replied to, then its runs are started (:mod:`.supervisor`). The DEALER is what
lets it take several requests before answering any: a request arrives as a
REQ envelope (routing frames, an empty delimiter), the broker's tag and the
body, and the envelope goes back in front of the reply, as a REP would send it.

A REP socket, the control socket, is bound on loopback (``zmq.ports.control``,
default the manager port + 2) for launch requests and the tools' questions; a
PUB socket (``zmq.ports.monitor``, default + 3) publishes what the manager sees
and does (:mod:`.events`). Between batches the loop hands ended runs back
through :func:`~.decide.decide_exit`, launches the retries whose back-off is over
(:func:`~.decide.decide_retry`), writes the checklist file when due, and acts on
signals: SIGHUP reloads, SIGTERM/SIGINT stop.

With ``alerts:`` in the config, a :class:`~nowcastkit.alerts.Notifier` sends,
on its own thread, an alert for each run's final failure or crash (the last of
its ``retry:`` attempts) once it is committed, and one at start when an earlier
manager left runs unfinished. With ``deadlines:``, a
:class:`~.deadline_watch.DeadlineWatch` judges them at their times and after
batches, and a missed one alerts; ``heartbeat url`` is pinged when the day's are met.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import yaml
import zmq

from nowcastkit import alerts, deadlines, lifecycle, logs, security
from nowcastkit import store as st
from nowcastkit.config import Config
from nowcastkit.control import control_endpoint
from nowcastkit.dashboard.settings import dashboard_link
from nowcastkit.endpoints import broker_endpoint, is_ipc, private_folder
from nowcastkit.errors import ConfigError
from nowcastkit.flow import Flow
from nowcastkit.gate import Gate
from nowcastkit.manager import control as commands
from nowcastkit.manager.deadline_watch import DeadlineWatch, announce, heartbeat_channel
from nowcastkit.manager.decide import (
    Launch,
    Outcome,
    decide,
    decide_cancel_retry,
    decide_exit,
    decide_launch,
    decide_retry,
)
from nowcastkit.manager.events import Events
from nowcastkit.manager.ledger import Ledger, failed
from nowcastkit.manager.supervisor import Supervisor
from nowcastkit.message import Message
from nowcastkit.next_worker import NextWorker
from nowcastkit.retry import kind_of as retry_kind
from nowcastkit.sockets import NOBLOCK, bind, send_frames

__all__ = ["BATCH_SIZE", "ManagerProcess", "main"]

log = logging.getLogger("manager")

#: Most requests handled under one commit; bounds the latency a burst adds to its first reply.
BATCH_SIZE = 64
_PRUNE_EVERY = 3600.0
_FAILED = {"ok": False, "error": "manager error; see the manager's log"}


@attrs.define(eq=False)
class ManagerProcess:
    """The running manager: its owners, its sockets, and the loop's bookkeeping."""

    config: Config
    flow: Flow
    ledger: Ledger
    supervisor: Supervisor
    events: Events = attrs.field(factory=Events)
    host: str = attrs.field(factory=socket.gethostname)
    started: float = attrs.field(factory=time.time)
    malformed: int = 0
    #: Runs recovered at start that were committed but never started.
    recovered: list[Launch] = attrs.field(factory=list)
    workers: zmq.Socket | None = None
    control: zmq.Socket | None = None
    watch: lifecycle.SignalWatch | None = None
    poller: zmq.Poller | None = None
    next_prune: float = 0.0
    #: Sends alerts on a thread of its own; None without ``alerts:`` or ``heartbeat url``.
    notifier: alerts.Notifier | None = None
    deadlines: DeadlineWatch = attrs.field(factory=lambda: DeadlineWatch(deadlines.Plan()))
    #: The control and monitor sockets' allow-list when CURVE is on.
    gate: Gate | None = None

    @classmethod
    def start(cls, config: Config, ignore_checklist: bool = False) -> ManagerProcess:
        """The manager with its state recovered: what the last one committed, runs watched."""
        channels = alerts.channels(config)  # a bad alerts: section stops it before anything
        plan = deadlines.read(config)
        flow = Flow(config["message registry"]["next workers module"], Path(config.file).parent)
        flow.refresh()
        ledger = Ledger.open(config, ignore_checklist)
        supervisor = Supervisor(config, st.state_paths(config)[1])
        manager = cls(config, flow, ledger, supervisor, deadlines=DeadlineWatch(plan))
        unfinished = ledger.unfinished()
        manager.recovered, found = supervisor.recover(unfinished, manager.host)
        ledger.record_started(found, [])
        if channels or plan.heartbeat:
            manager.notifier = alerts.Notifier(channels, heartbeat_channel(plan))
            manager.notifier.start()
            if unfinished and channels:
                runs = [f"{run.worker} run {run.run_id}" for run in unfinished]
                alert = alerts.recovered_alert(manager.host, runs, len(manager.recovered))
                manager.notifier.submit(alert)
        ledger.prune(config)
        manager.next_prune = time.monotonic() + _PRUNE_EVERY
        return manager

    def open(self, context: zmq.Context, watch: lifecycle.SignalWatch | None = None) -> None:
        """Connect to the broker, bind the control and monitor sockets, start recovered runs."""
        self.workers = context.socket(zmq.DEALER)
        self.control = context.socket(zmq.REP)
        secure = self._secure(context)
        self.workers.connect(broker_endpoint(self.config, "manager"))
        if is_ipc(self.config):
            private_folder(self.config)
            log.info("connected to %s", broker_endpoint(self.config, "manager"))
        else:
            host, port = self.config["zmq"]["host"], self.config["zmq"]["ports"]["manager"]
            log.info("connected to %s port %s", host, port)
        secure(self.control)
        bind(self.control, str(control_endpoint(self.config)), self.config, "control", log)
        self.events.bind(context, self.config, secure)
        self.launch(self.recovered)
        self.recovered = []
        self.watch, self.poller = watch, zmq.Poller()
        for item in (self.workers, self.control, watch, self.events.socket):
            if item is not None:
                self.poller.register(item, zmq.POLLIN)
        log.debug("listening...")

    def _secure(self, context: zmq.Context) -> Callable[[zmq.Socket], None]:
        """With CURVE: the broker connection's keys, and what makes a socket of ours a server.

        The control and monitor sockets are CURVE servers with the manager's key pair,
        their allow-list the broker's, checked by the manager's own gate.
        """
        if not security.is_curve(self.config):
            return lambda _sock: None
        security.curve_client(self.workers, self.config, "manager")
        if is_ipc(self.config):  # the private folder keeps everyone else out
            return lambda _sock: None
        name = security.client_key_name(self.config, "manager")
        self.gate = Gate.open(context, self.config, log)  # before binding: fail closed
        return lambda sock: security.curve_server(sock, self.config, name)

    def close(self) -> None:
        log.info("shutting down")
        if self.gate is not None:
            self.gate.close()
        if self.notifier is not None:
            self.notifier.stop()
        self.ledger.close()
        for sock in (self.workers, self.control):
            if sock is not None:
                sock.close(linger=0)
        self.events.close()

    def step(self) -> bool:
        """Wait for what comes next and act on it; False once asked to stop."""
        ready = dict(self.poller.poll(self._timeout_ms()))
        if self.workers in ready:
            _guarded(self.serve_workers)
        if self.deadlines.is_due(time.time(), after_batch=self.workers in ready):
            _guarded(self.look_at_deadlines)
        if self.control in ready:
            self.serve_control()
        if self.events.socket in ready:
            self.events.answer_subscriptions()
        if self.watch is not None and (self.watch.fileno() in ready or self.watch.pending):
            signums = set(self.watch.take())
            if signal.SIGHUP in signums:
                self.reload()
            if lifecycle.STOP & signums:
                return False
        now = time.monotonic()
        _guarded(lambda: self.tend(now))
        self.ledger.flush(now)
        if now >= self.next_prune:
            _guarded(lambda: self.ledger.prune(self.config))
            self.next_prune = now + _PRUNE_EVERY
        return True

    def _timeout_ms(self) -> int:
        now = time.monotonic()
        wake = [self.next_prune, self.ledger.wake_at(), self.supervisor.wake_at(now),
                self.deadlines.wake_at(now, time.time())]  # fmt: skip
        return max(0, int((min(t for t in wake if t is not None) - now) * 1000) + 1)

    def answer(self, requests: list[list[bytes]]) -> tuple[list[list[bytes]], list[Launch]]:
        """Reply frames for each request (``[tag, body]``), in order, and the runs to start.

        All of them are committed at once; nothing is replied, logged or published of a
        batch whose commit failed, and each of its requests gets ``manager error``.
        """
        with self.flow.checked_once():
            outcomes = self._commit(requests, decide)
        if outcomes is None:
            outcomes = [failed()] * len(requests)
        replies = []
        for request, outcome in zip(requests, outcomes, strict=True):
            text = outcome.text.encode()
            replies.append([request[0], text] if len(request) > 1 else [text])
        return replies, [launch for outcome in outcomes for launch in outcome.launches]

    def serve_workers(self) -> None:
        """Answer every request waiting on the workers' socket, then start their runs."""
        envelopes, requests = [], []
        for frames in _receive(self.workers):
            try:
                cut = frames.index(b"")
            except ValueError:  # a REP socket drops these too: there is no one to reply to
                log.error("request without a routing envelope (%d frames) dropped", len(frames))
                continue
            envelopes.append(frames[:cut])
            requests.append(frames[cut + 1 :])
        if not requests:
            return
        replies, launches = self.answer(requests)
        for envelope, reply in zip(envelopes, replies, strict=True):
            try:
                send_frames(self.workers, [*envelope, b"", *reply], NOBLOCK)
            except zmq.Again:  # broker gone: it resends the request, answered from the store
                log.warning("broker not reachable; reply dropped, the request will come again")
        self.launch(launches)

    def tend(self, now: float) -> None:
        """Hand the runs that ended back through decide_exit; start what they lead to.

        Remote pids learnt and runs that could not be started at all are recorded first,
        then the final messages runs left in files are handled as if they had been sent.
        """
        ended = self.supervisor.tick(now)
        located, handles, unstarted = self.supervisor.news()
        self.ledger.record_started(located, unstarted, handles)
        reports = self.supervisor.take_reports()
        if reports:  # before the runs' ends: a run that left its message did report
            self.launch(self.answer([[text.encode()] for text in reports])[1])
        if ended:
            outcomes = self._commit(ended, decide_exit, replied=False) or []
            self.launch([launch for outcome in outcomes for launch in outcome.launches])
        due = self.ledger.due_retries(time.time())
        if due:
            outcomes = self._commit(due, decide_retry, replied=False) or []
            self.launch([launch for outcome in outcomes for launch in outcome.launches])

    def look_at_deadlines(self) -> None:
        """Judge the deadlines, record what changed, then say it (log, feed, alerts)."""
        verdicts, beat = self.deadlines.look(self.ledger, time.time())
        announce(verdicts, beat, self.events, self.notifier, self.host)

    def launch(self, launches: list[Launch]) -> None:
        """Start committed runs and record their pids; one that fails does not stop the rest."""
        if not launches:
            return
        started, failed = self.supervisor.start(launches)
        parents = {launch.run_id: launch.parent for launch in launches}
        for running in started:
            worker = running.worker
            self.events.publish(
                "launch", worker.name, run=running.run_id, module=worker.module,
                args=list(worker.args), host=worker.host, pid=running.pid,
                parent=parents[running.run_id],
            )  # fmt: skip
        self.ledger.record_started(
            {running.run_id: running.pid for running in started if running.pid is not None},
            [item.run_id for item in failed],
        )

    def serve_control(self) -> None:
        frames = self.control.recv_multipart()
        reply = _guarded(lambda: self._control_request(frames)) or _FAILED
        self.control.send(yaml.dump(reply, Dumper=yaml.CSafeDumper).encode())

    def _control_request(self, frames: list[bytes]) -> dict:
        try:
            request = yaml.load(frames[-1], Loader=yaml.CSafeLoader) if len(frames) == 1 else None
        except (yaml.YAMLError, ValueError):
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": "expected a YAML mapping with a command"}
        command = request["command"]
        if command == "ping":
            return {"ok": True, "pid": os.getpid(), "started": self.started,
                    "running": len(self.supervisor.active)}  # fmt: skip
        if command == "launch":
            outcomes = self._commit([request], decide_launch, replied=False)
            if not outcomes or not isinstance(outcomes[0].reply, dict):
                return _FAILED
            self.launch(list(outcomes[0].launches))
            return outcomes[0].reply
        if command == "cancel":
            return self._cancel(request)
        if command == "status":
            return commands.status(self.ledger, self.supervisor, self._facts())
        if command == "checklist":
            return commands.checklist(self.ledger.checklist, request)
        return {"ok": False, "error": f"unknown command {command!r}"}

    def _cancel(self, request: dict) -> dict:
        """Stop a run going now, or drop a pending retry in a commit of its own."""
        found = commands.cancel(self.supervisor, self.ledger.retries, request)
        if isinstance(found, dict):
            return found
        by = str(request.get("by") or "a control request")
        outcomes = self._commit([found], partial(decide_cancel_retry, by=by), replied=False)
        if not outcomes or not isinstance(outcomes[0].reply, dict):
            return _FAILED
        return outcomes[0].reply

    def _facts(self) -> dict:
        return {"pid": os.getpid(), "host": self.host, "started": self.started,
                "malformed": self.malformed, "events dropped": self.events.dropped}  # fmt: skip

    def _commit(
        self, items: list, decide_one: Callable[[Any, Any], Outcome], replied: bool = True
    ) -> list[Outcome] | None:
        """Decide and commit *items*; once committed, log and publish what they did."""
        ledger, config, flow, host = self.ledger, self.config, self.flow, self.host
        outcomes = ledger.commit(
            items, lambda item: decide_one(item, ledger.view(config, flow, host))
        )
        if outcomes is None:
            return None
        ledger.announce(time.monotonic())
        # The batch's log lines in one go: one write per handler, not one per line.
        logs.log_lines(log, [note for outcome in outcomes for note in outcome.notes])
        for outcome in outcomes:
            self._announce(outcome, replied)
        return outcomes

    def _announce(self, outcome: Outcome, replied: bool) -> None:
        publish = self.events.publish
        for event, worker, fields in outcome.events:
            publish(event, worker, **fields)
        if replied and isinstance(outcome.reply, Message):
            publish("reply", outcome.source, type=outcome.reply.type, payload=outcome.reply.payload)
        self.malformed += outcome.malformed
        final = outcome.retry is None and not outcome.repeat
        if self.notifier is not None and final and retry_kind(outcome.received) is not None:
            self._alert_final(outcome)
        if outcome.finished is not None:
            self.supervisor.reported(outcome.finished)
        run = outcome.by_hand
        if run is not None and run.host == self.host and not outcome.repeat:
            self.supervisor.adopt(run.run_id, NextWorker(run.worker), run.pid, by_hand=True)

    def _alert_final(self, outcome: Outcome) -> None:
        """A committed final crash (reported, or made of its exit) or failure, to the notifier."""
        run = outcome.finished
        if run is None:  # a report for a run already ended, or from no run: no new outcome
            return
        payload = outcome.exited.crash.payload if outcome.exited is not None else {}
        running = self.supervisor.active.get(run)
        log_path = str(running.log_path) if running is not None and running.log_path.name else ""
        if outcome.received == "crash":
            alert = alerts.crash_alert(outcome.source, run, payload, self.host, log_path)
        else:
            alert = alerts.failure_alert(outcome.source, run, outcome.received, self.host, log_path)
        alert = alerts.with_attempts(alert, outcome.attempts)
        self.notifier.submit(alerts.with_link(alert, dashboard_link(self.config, run, self.host)))

    def reload(self) -> None:
        """SIGHUP: re-read the config, the allow-list, then the next workers module."""
        reloaded = lifecycle.reload_config(self.config, "manager")
        if self.gate is not None:
            self.gate.reload()
        if reloaded:
            name = self.config["message registry"]["next workers module"]
            if name != self.flow.module_name:
                self.flow = Flow(name, self.config.file.parent)
            alerts.reload_channels(self.notifier, self.config, "manager")
            self._reload_deadlines()
        self.flow.refresh(force=True)

    def _reload_deadlines(self) -> None:
        """The new deadlines, looked at once at once; a bad section keeps the old ones."""
        try:
            plan = deadlines.read(self.config)
        except ConfigError as err:
            log.error("deadlines reload failed, still watching the old ones: %s", err)
            return
        self.deadlines = DeadlineWatch(plan)
        if self.notifier is not None:
            self.notifier.heartbeat = heartbeat_channel(plan)
        elif plan.heartbeat:
            log.warning("heartbeat url added; restart the manager for that to take effect")


def _check(config: Config) -> None:
    """What stops the manager before it opens anything: a bad alerts: or deadlines: section."""
    alerts.channels(config)
    deadlines.read(config)


def _receive(sock: zmq.Socket, limit: int = BATCH_SIZE) -> list[list[bytes]]:
    """The requests waiting on *sock* (at most *limit*), without waiting for more."""
    requests = []
    while len(requests) < limit:
        try:
            requests.append(sock.recv_multipart(flags=zmq.NOBLOCK))
        except zmq.Again:
            break
    return requests


def _guarded(action: Callable[[], Any]) -> Any:
    """Run *action*; a bug or a failing store must not stop the manager, only be logged."""
    try:
        return action()
    except Exception:  # the loop's edge
        log.error("manager error:\n%s", traceback.format_exc().rstrip())
        return None


def _serve(config: Config, args: argparse.Namespace, watch: lifecycle.SignalWatch) -> None:
    manager = ManagerProcess.start(config, args.ignore_checklist)
    context = zmq.Context()
    try:
        manager.open(context, watch)
        while manager.step():
            pass
    finally:
        manager.close()
        context.term()


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ignore-checklist",
        action="store_true",
        help="start with an empty checklist instead of the saved one",
    )


def main(argv: list[str] | None = None) -> int:
    description = "The manager: answers workers, keeps the checklist, launches what comes next."
    return lifecycle.run_process("manager", description, _serve, argv, _add_arguments, check=_check)
