"""The dashboard's tap of the manager's event feed, and the pages that listen to it.

    feed = Feed(monitor_endpoint(config))
    listener = feed.listen()        # an asyncio.Queue: one browser's EventSource stream
    await feed.run(on_event)        # until feed.close(); on_event() after each event

One SUB socket for every browser: the manager sees one monitor, whatever the number
of pages open. ZeroMQ reconnects it to a restarted manager and subscribes again, and
the manager answers the hello subscription again then, so the pages hear at once that
it is back. Owns the socket, the listeners and the last few events.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid
from collections.abc import Awaitable, Callable

import attrs
import zmq
import zmq.asyncio

from nowcastkit.cli.monitor import describe
from nowcastkit.cli.output import local_time
from nowcastkit.control import HELLO_PREFIX, Endpoint

__all__ = ["RECENT", "Feed"]

log = logging.getLogger("dashboard")

#: Events kept for the Today page.
RECENT = 12
#: Messages a browser may fall behind by before it is sent only the newest.
_BACKLOG = 100


@attrs.define(eq=False)
class Feed:
    #: The manager's monitor socket; an :class:`Endpoint` brings its CURVE keys when on.
    endpoint: str | Endpoint
    context: zmq.asyncio.Context = attrs.field(factory=zmq.asyncio.Context)
    listeners: set[asyncio.Queue] = attrs.field(factory=set)
    recent: collections.deque = attrs.field(factory=lambda: collections.deque(maxlen=RECENT))
    #: Whether the manager has answered our hello since we last lost it.
    manager_seen: bool = False
    _socket: zmq.asyncio.Socket | None = None

    def listen(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(_BACKLOG)
        self.listeners.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue) -> None:
        self.listeners.discard(queue)

    def send(self, name: str, data: dict) -> None:
        """Give every listener one ``event: name`` message; a full one loses its oldest."""
        text = f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"
        for queue in self.listeners:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(text)

    def lines(self) -> list[dict]:
        """The recent events, newest first, as the Today page lists them."""
        return [
            {"time": local_time(e["time"], with_date=False), "event": str(e["event"]),
             "worker": str(e["worker"]), "what": _described(e), "run": e.get("run")}
            for e in reversed(self.recent)
        ]  # fmt: skip

    async def run(self, on_event: Callable[[], Awaitable[None] | None]) -> None:
        """Receive events until :meth:`close`; call *on_event* after each (hello too)."""
        sock = self._socket = self.context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        if isinstance(self.endpoint, Endpoint):
            self.endpoint.secure(sock)
        sock.connect(str(self.endpoint))
        sock.setsockopt_string(zmq.SUBSCRIBE, "")
        sock.setsockopt_string(zmq.SUBSCRIBE, f"{HELLO_PREFIX}{uuid.uuid4().hex}")
        log.info("listening to the manager's events at %s", self.endpoint)
        while self._socket is not None:
            try:
                topic, body = await sock.recv_multipart()
                event = json.loads(body)
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            except ValueError:  # a frame that is not an event: skip it, never stop
                log.warning("unreadable event on %s", self.endpoint)
                continue
            if topic.startswith(HELLO_PREFIX.encode()):
                if not self.manager_seen:
                    log.info("manager's event feed is live")
                self.manager_seen = True
            elif isinstance(event, dict) and {"time", "event", "worker"} <= set(event):
                self.recent.append(event)
            result = on_event()
            if result is not None:
                await result

    def close(self) -> None:
        """End every listener's stream and close the socket."""
        for queue in self.listeners:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)  # the stream's end
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        self.context.destroy(linger=0)


def _described(event: dict) -> str:
    """What the monitor says of *event*; an event of a shape it does not know, as it came."""
    try:
        return describe(event)
    except (KeyError, TypeError, AttributeError):
        return json.dumps(event, default=str)
