"""The manager's event feed: a PUB socket that ``nowcastkit monitor`` taps.

    events = Events()
    events.bind(context, config)            # zmq.ports.monitor, default manager port + 3
    events.publish("launch", "sleep", run="4f1c…", module="workers.sleep", pid=2705)

Each event is two frames: a topic ``<worker>/<event>`` (so a subscriber can
filter by worker with a prefix) and a JSON body. Publishing never blocks the
manager: PUB drops what a slow subscriber cannot take, past a small send
high-water mark. The socket is an XPUB so the manager sees subscriptions: a
subscription to ``-hello/<token>`` is answered at once with an event on that
topic, which tells a new monitor that everything it subscribed before is in
effect (no sleeping to beat ZeroMQ's slow-joiner race). The manager keeps the
topics subscribed to, so an event no monitor wants is never even encoded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
import zmq

from nowcastkit.config import Config
from nowcastkit.control import HELLO_PREFIX, monitor_endpoint
from nowcastkit.errors import ConfigError
from nowcastkit.sockets import bind

__all__ = ["Events"]

log = logging.getLogger("manager")

# Enough for a burst of a few hundred events; beyond it a slow monitor misses events.
_SEND_HWM = 1000


def _plain(_sock: zmq.Socket) -> None:
    """No CURVE: the socket as it is."""


@attrs.define(eq=False)
class Events:
    """The manager's publisher; without a bound socket, publishing does nothing."""

    socket: zmq.Socket | None = None
    dropped: int = 0
    #: Topic prefixes some monitor subscribes to (hello tokens aside).
    topics: set[str] = attrs.field(factory=set)

    def bind(
        self, context: zmq.Context, config: Config, secure: Callable[[zmq.Socket], None] = _plain
    ) -> None:
        """Bind the feed; *secure* makes the socket a CURVE server first when CURVE is on."""
        sock = context.socket(zmq.XPUB)
        secure(sock)
        sock.setsockopt(zmq.SNDHWM, _SEND_HWM)
        sock.setsockopt(zmq.LINGER, 0)
        # Every subscription reaches the manager, even one another monitor already made.
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        try:
            bind(sock, str(monitor_endpoint(config)), config, "monitor", log)
        except ConfigError:
            sock.close()
            raise
        self.socket = sock

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def publish(self, event: str, worker: str, **fields: Any) -> None:
        """Send one event; drop it rather than wait when no one can take it."""
        if not self.topics:  # no monitor: the common case, a message at a time
            return
        topic = f"{worker}/{event}"
        if self.socket is None or not any(map(topic.startswith, self.topics)):
            return
        body = {"time": time.time(), "event": event, "worker": worker, **fields}
        frames = [topic.encode(), json.dumps(body, default=str).encode()]
        try:
            self.socket.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1

    def answer_subscriptions(self) -> None:
        """Note (un)subscriptions; answer each hello subscription on its own topic."""
        while self.socket is not None:
            try:
                frame = self.socket.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            topic, subscribed = frame[1:].decode(errors="replace"), frame[:1] == b"\x01"
            if topic.startswith(HELLO_PREFIX):
                if subscribed:
                    self._hello(frame[1:])
            elif subscribed:
                self.topics.add(topic)
            else:  # XPUB passes this on only when no one is left on that topic
                self.topics.discard(topic)

    def _hello(self, topic: bytes) -> None:
        body = json.dumps({"time": time.time(), "event": "hello", "worker": "-"})
        try:
            self.socket.send_multipart([topic, body.encode()], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
