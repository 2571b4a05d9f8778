"""The message broker: the one process that never moves.

    python -m nowcastkit.message_broker nowcast.yaml

Workers' REQ sockets connect to a ROUTER on ``zmq.ports.workers``; the
manager's DEALER socket connects to a DEALER on ``zmq.ports.manager``; frames are
relayed both ways, each request held until its reply has passed back (see
:class:`Relay`), so a manager killed while holding a message gets it again
when it comes back. Both sockets bind to ``zmq.host`` (loopback for
``localhost``) unless ``zmq.bind`` names another interface (``"*"`` for all).
A port of 0 binds a free port; the log says which.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import logging
import signal
import sys
import time
import uuid
from collections.abc import Iterator

import attrs
import zmq

from nowcastkit import lifecycle, security
from nowcastkit.config import Config
from nowcastkit.endpoints import broker_endpoint, is_ipc, private_folder
from nowcastkit.gate import Gate, RateLimit
from nowcastkit.handshake import monitor_event
from nowcastkit.message import max_message_size
from nowcastkit.sockets import NOBLOCK, bind, send_frames

__all__ = ["Relay", "bind_address", "main"]

# Named as operators know it from their log filters, not after the module path.
log = logging.getLogger("message_broker")


def bind_address(config: Config) -> str:
    """The interface the broker binds: ``zmq.bind`` if set, else ``zmq.host``."""
    return config["zmq"].get("bind") or config["zmq"]["host"]


def _bind(sock: zmq.Socket, config: Config, role: str) -> int:
    endpoint = broker_endpoint(config, role, bind=True)
    return bind(sock, endpoint, config, role, log, "worker" if role == "workers" else role)


@attrs.define(eq=False)
class Relay:
    """Requests on their way to the manager, and those it has not answered yet.

    Each request is tagged on its way out (the manager sees ``[tag, body]``
    after the REQ envelope); the tag stays in ``outstanding`` until the reply comes
    back. When the manager's connection drops, and again when a manager connects,
    every outstanding request goes back into the backlog, and the manager answers
    a request it already handled from its store instead of handling it again; only
    the first reply to a tag goes on to the worker.
    """

    instance: str = attrs.field(factory=lambda: uuid.uuid4().hex[:8])
    serial: Iterator[int] = attrs.field(factory=itertools.count)
    backlog: collections.deque = attrs.field(factory=collections.deque)
    outstanding: dict[bytes, list] = attrs.field(factory=dict)

    def accept(self, frames: list[bytes], key_name: str | None = None) -> None:
        """Queue a worker's request, tagged, for the manager.

        With CURVE, the tag ends with a space and the name of the client's key, which
        the manager records; the manager's own connection is authenticated too.
        """
        envelope, body = _split(frames)
        tag = f"{self.instance}:{next(self.serial)}{f' {key_name}' if key_name else ''}".encode()
        tagged = [*envelope, b"", tag, *body]
        self.outstanding[tag] = tagged
        self.backlog.append(tagged)

    def forward(self, manager: zmq.Socket) -> None:
        """Pass queued requests to the manager for as long as it takes them."""
        while self.backlog:
            try:
                send_frames(manager, self.backlog[0], NOBLOCK)
            except zmq.Again:  # no manager connected: a blocking send would stop the broker
                return
            self.backlog.popleft()

    def answer(self, frames: list[bytes]) -> list[bytes] | None:
        """Strip the tag from the manager's reply; return the frames for the worker.

        None for a tag already answered: a request sent twice is answered twice, and a
        REQ socket would take the second reply for the answer to its next request.
        """
        envelope, body = _split(frames)
        if len(body) >= 2:
            if self.outstanding.pop(body[0], None) is None:
                return None
            body = body[1:]
        return [*envelope, b"", *body]

    def requeue(self) -> int:
        """A manager went away or came: queue every unanswered request again."""
        waiting = {id(frames) for frames in self.backlog}
        lost = [frames for frames in self.outstanding.values() if id(frames) not in waiting]
        self.backlog.extendleft(reversed(lost))
        return len(lost)


def _split(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Routing envelope and body, around the first empty frame (REQ's delimiter)."""
    try:
        cut = frames.index(b"")
    except ValueError:
        return frames[:1], frames[1:]
    return frames[:cut], frames[cut + 1 :]


def _check(config: Config) -> None:
    """Fail closed: a broker reachable beyond loopback without CURVE does not start."""
    if (refusal := security.exposure(config)) is not None:
        raise refusal


def _warn_if_open(config: Config) -> None:
    address = bind_address(config)
    if is_ipc(config) or security.is_curve(config) or security.is_loopback(address):
        return
    log.warning(
        "zmq.insecure: true: bound to %r without CURVE; anyone who can reach these ports "
        "can send any worker's messages and make the manager launch workers", address,
    )  # fmt: skip


@attrs.define(eq=False)
class _Broker:
    """The broker's sockets, its gate when CURVE is on, and the relay between them."""

    config: Config
    context: zmq.Context
    workers: zmq.Socket
    manager: zmq.Socket
    gate: Gate | None = None
    relay: Relay = attrs.field(factory=Relay)
    events: zmq.Socket | None = None
    failures: zmq.Socket | None = None
    limit: RateLimit = attrs.field(factory=RateLimit)

    @classmethod
    def open(cls, config: Config) -> _Broker:
        context = zmq.Context()
        broker = cls(config, context, context.socket(zmq.ROUTER), context.socket(zmq.DEALER))
        # A larger frame is refused by ZeroMQ itself, which drops that connection.
        broker.workers.setsockopt(zmq.MAXMSGSIZE, max_message_size(config))
        if is_ipc(config):
            private_folder(config)
        if security.is_curve(config):
            broker.gate = Gate.open(context, config, log)  # before binding: fail closed
            for sock in (broker.workers, broker.manager):
                security.curve_server(sock, config)
        _bind(broker.workers, config, "workers")
        _bind(broker.manager, config, "manager")
        # ZeroMQ reports a disconnection before the socket drops the dead peer's pipe, so
        # a request resent at once can still go down that pipe and be lost: the next
        # manager's handshake (reported once its pipe is handed to the socket) resends it.
        broker.events = broker.manager.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | _FAILED
        )
        broker.failures = broker.workers.get_monitor_socket(_FAILED)
        return broker

    def receive(self) -> None:
        """A worker's request, tagged with its key's name when CURVE is on."""
        if self.gate is None:
            self.relay.accept(self.workers.recv_multipart(NOBLOCK))
            return
        frames = self.workers.recv_multipart(NOBLOCK, copy=False)
        self.relay.accept([frame.bytes for frame in frames], frames[-1].get("User-Id"))

    def receive_all(self) -> None:
        """Every request waiting, up to a bound so the replies are not held back."""
        for _ in range(_BURST):
            try:
                self.receive()
            except zmq.Again:
                return

    def reply_all(self) -> None:
        """Pass every reply waiting on to its worker; drop a second reply to a request."""
        recv, answer, workers = self.manager.recv_multipart, self.relay.answer, self.workers
        for _ in range(_BURST):
            try:
                reply = answer(recv(NOBLOCK))
            except zmq.Again:
                return
            if reply is None:
                log.debug("second reply to a request dropped")
            else:
                send_frames(workers, reply)

    def watch_manager(self) -> None:
        event, value = monitor_event(self.events)
        if event == _FAILED:
            self.handshake_failed("manager", value)
        elif count := self.relay.requeue():
            log.warning(
                "manager %s; %d unanswered requests will be resent",
                "disconnected" if event == zmq.EVENT_DISCONNECTED else "connected",
                count,
            )

    def handshake_failed(self, role: str, code: int) -> None:
        """A handshake that failed before ZAP saw a key: no CURVE, or the wrong server key.

        ZeroMQ names no peer for these; the gate logs the rejections it decides itself.
        """
        why = _WHY.get(code, f"protocol error {code:#x}")
        held = self.limit.admit((role, code), time.monotonic())
        if held is not None:
            more = f" ({held} more since the last line)" if held else ""
            log.warning("%s socket: handshake rejected: %s%s", role, why, more)

    def close(self) -> None:
        for sock in (self.manager, self.workers):
            sock.disable_monitor()
        self.workers.close(linger=0)
        self.manager.close(linger=1000)
        if self.gate is not None:
            self.gate.close()
        self.context.destroy(linger=0)


_FAILED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
#: Frames taken from one socket before the other is looked at again.
_BURST = 64
_WHY = {
    0x11000001: "could not decrypt its hello: it has the wrong broker public key",
    0x11000002: "security mechanism mismatch: a client without CURVE, or CURVE not set here",
}


def _serve(config: Config, _args: argparse.Namespace, watch: lifecycle.SignalWatch) -> None:
    _warn_if_open(config)
    broker = _Broker.open(config)
    workers, manager, relay = broker.workers, broker.manager, broker.relay
    try:
        poller = zmq.Poller()
        for item in (workers, manager, broker.events, broker.failures, watch):
            poller.register(item, zmq.POLLIN)
        sending = False  # whether the poll also waits for the manager to take more
        while True:
            ready = dict(poller.poll())
            if workers in ready:
                broker.receive_all()
            if ready.get(manager, 0) & zmq.POLLIN:
                broker.reply_all()
            if broker.events in ready:
                broker.watch_manager()
            if broker.failures in ready:
                broker.handshake_failed("worker", monitor_event(broker.failures)[1])
            relay.forward(manager)
            if sending != bool(relay.backlog):
                sending = not sending
                poller.modify(manager, zmq.POLLIN | (zmq.POLLOUT if sending else 0))
            if watch.fileno() in ready or watch.pending:
                signums = watch.take()
                if signal.SIGHUP in signums:
                    lifecycle.reload_config(config, "message_broker")
                    if broker.gate is not None:
                        broker.gate.reload()
                if {signal.SIGTERM, signal.SIGINT} & set(signums):
                    log.info("shutting down")
                    return
    finally:
        broker.close()


def main(argv: list[str] | None = None) -> int:
    return lifecycle.run_process(
        "message_broker",
        __doc__.splitlines()[0],
        _serve,
        argv,
        check=_check,
        needs=("checklist file", "zmq"),  # the ipc folder is beside the checklist by default
    )


if __name__ == "__main__":
    sys.exit(main())
