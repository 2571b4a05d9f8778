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
import uuid
from collections.abc import Iterator

import attrs
import zmq
from zmq.utils.monitor import recv_monitor_message

from nowcastkit import lifecycle, security
from nowcastkit.config import Config
from nowcastkit.message import max_message_size
from nowcastkit.sockets import NOBLOCK, bind, send_frames

__all__ = ["Relay", "bind_address", "main"]

# Named as operators know it from their log filters, not after the module path.
log = logging.getLogger("message_broker")


def bind_address(config: Config) -> str:
    """The interface the broker binds: ``zmq.bind`` if set, else ``zmq.host``."""
    return config["zmq"].get("bind") or config["zmq"]["host"]


def _bind(sock: zmq.Socket, config: Config, role: str) -> int:
    host, port = bind_address(config), config["zmq"]["ports"][role]
    endpoint = f"tcp://{host}:{port or '*'}"
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

    def accept(self, frames: list[bytes]) -> None:
        """Queue a worker's request, tagged, for the manager."""
        envelope, body = _split(frames)
        tag = f"{self.instance}:{next(self.serial)}".encode()
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
    if not security.is_curve(config) and not security.is_loopback(address):
        log.warning(
            "zmq.insecure: true: bound to %r without CURVE; anyone who can reach these ports "
            "can send any worker's messages and make the manager launch workers", address,
        )  # fmt: skip


def _serve(config: Config, _args: argparse.Namespace, watch: lifecycle.SignalWatch) -> None:
    _warn_if_open(config)
    context = zmq.Context()
    workers = context.socket(zmq.ROUTER)
    # A larger frame is refused by ZeroMQ itself, which drops that connection.
    workers.setsockopt(zmq.MAXMSGSIZE, max_message_size(config))
    manager = context.socket(zmq.DEALER)
    relay = Relay()
    try:
        _bind(workers, config, "workers")
        _bind(manager, config, "manager")
        # ZeroMQ reports a disconnection before the socket drops the dead peer's pipe, so
        # a request resent at once can still go down that pipe and be lost: the next
        # manager's handshake (reported once its pipe is handed to the socket) resends it.
        events = manager.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        poller = zmq.Poller()
        poller.register(workers, zmq.POLLIN)
        poller.register(events, zmq.POLLIN)
        poller.register(watch, zmq.POLLIN)
        while True:
            poller.register(manager, zmq.POLLIN | (zmq.POLLOUT if relay.backlog else 0))
            ready = dict(poller.poll())
            if workers in ready:
                relay.accept(workers.recv_multipart())
            if ready.get(manager, 0) & zmq.POLLIN:
                reply = relay.answer(manager.recv_multipart())
                if reply is None:
                    log.debug("second reply to a request dropped")
                else:
                    send_frames(workers, reply)
            if events in ready:
                event = recv_monitor_message(events)["event"]
                if count := relay.requeue():
                    log.warning(
                        "manager %s; %d unanswered requests will be resent",
                        "disconnected" if event == zmq.EVENT_DISCONNECTED else "connected",
                        count,
                    )
            relay.forward(manager)
            if watch.fileno() in ready or watch.pending:
                signums = watch.take()
                if signal.SIGHUP in signums:
                    lifecycle.reload_config(config, "message_broker")
                if {signal.SIGTERM, signal.SIGINT} & set(signums):
                    log.info("shutting down")
                    return
    finally:
        manager.disable_monitor()
        workers.close(linger=0)
        manager.close(linger=1000)
        context.destroy(linger=0)


def main(argv: list[str] | None = None) -> int:
    return lifecycle.run_process(
        "message_broker", __doc__.splitlines()[0], _serve, argv, check=_check
    )


if __name__ == "__main__":
    sys.exit(main())
