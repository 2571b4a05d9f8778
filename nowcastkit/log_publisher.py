"""The publisher handler: a process's log records, sent as JSON to the one log aggregator.

    handler = Publisher()                     # the publisher schema's root handler
    handler.start(config, "sleep", run_id)    # connect; records before this wait, a few
    logging.getLogger("sleep").info("slept")  # queued at once, never waited for

Each record is one JSON frame on a PUSH socket that connects to the aggregator's one
PULL socket (:mod:`nowcastkit.log_aggregator`), over tcp to the broker's host or, with
``zmq.transport: ipc``, in the ipc folder. Nothing the process does waits for the
aggregator: a record is put in a queue, and a thread of the handler's own, which alone
uses the socket, sends it. While the aggregator is away (not started yet, restarting,
unreachable) up to ``SNDHWM`` records wait, sent as soon as it is back, and the oldest
beyond that are dropped and counted; at exit they get at most ``LINGER_MS`` to go, and
the count of those that never went is one line on stderr. Records in flight when an
aggregator dies are lost with it.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sys
import threading
import time
from typing import Any

from nowcastkit.config import CLIENT_ROLES, Config
from nowcastkit.errors import ConfigError

__all__ = ["LINGER_MS", "SNDHWM", "Publisher", "encode"]

#: Records held for an aggregator that is not there, and queued for one that is slow.
SNDHWM = 1000
#: Milliseconds a process's exit waits, at most, for queued records to go.
LINGER_MS = 1000

# The LogRecord fields the aggregator needs to format a line as the process would have.
_FIELDS = ("name", "levelno", "levelname", "created", "msecs", "relativeCreated", "pathname",
           "filename", "module", "funcName", "lineno", "process", "processName", "thread",
           "threadName", "stack_info")  # fmt: skip


def encode(record: logging.LogRecord, origin: dict[str, Any]) -> bytes:
    """*record* as one JSON frame: its fields, its message with the arguments put in, and
    any traceback as text, plus *origin* (``host``, ``run``, ``process_name``)."""
    fields = {field: getattr(record, field, None) for field in _FIELDS}
    fields["msg"] = record.getMessage()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    fields["exc_text"] = record.exc_text
    fields.update(origin)
    return json.dumps(fields, default=str).encode()


class Publisher(logging.Handler):
    """Sends each record to the log aggregator without ever blocking the process."""

    def __init__(self, level: int | str = logging.NOTSET, **_ignored: Any) -> None:
        # **_ignored: the keyword arguments a replaced PUBHandler entry had (root_topic...).
        super().__init__(level)
        self.origin: dict[str, Any] = {"host": os.uname().nodename, "run": None}
        self.endpoint = ""
        self.dropped = 0
        self._pending: collections.deque[bytes] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._sender: threading.Thread | None = None

    def start(self, config: Config, process: str, run: str | None = None) -> None:
        """Connect to the aggregator (with this process's key pair under CURVE)."""
        import zmq

        from nowcastkit import endpoints, security

        self.origin.update(run=run, process_name=process)
        if not endpoints.is_ipc(config) and not endpoints.aggregator_port(config):
            raise ConfigError(config.file, "zmq.ports.logging.aggregator",
                              "got 0: publishers need the log aggregator's port")  # fmt: skip
        self.endpoint = endpoints.aggregator_endpoint(config)
        context = zmq.Context(io_threads=1)  # its own: the worker ends its context first
        sock = context.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, SNDHWM)
        # Queue only on a live connection: the records waiting for one stay in _pending,
        # so that those never sent are known and counted.
        sock.setsockopt(zmq.IMMEDIATE, 1)
        if security.is_curve(config):
            role = process if process in CLIENT_ROLES else "workers"
            security.curve_client(sock, config, role)
        sock.connect(self.endpoint)
        self._sender = threading.Thread(
            target=self._send_all, args=(context, sock), name="log publisher", daemon=True
        )
        self._sender.start()

    def name_run(self, run: str | None) -> None:
        """Name the run in the records from now on (a worker learns its run id from hello)."""
        self.origin["run"] = run

    def emit(self, record: logging.LogRecord) -> None:
        try:
            frame = encode(record, self.origin)
        except Exception:
            self.handleError(record)
            return
        with self._wake:
            if len(self._pending) == SNDHWM:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(frame)
            self._wake.notify()

    def _send_all(self, context: Any, sock: Any) -> None:
        """The sender thread: send what waits, oldest first; at a stop, LINGER_MS at most."""
        import zmq

        deadline = None
        while True:
            with self._wake:
                if not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping and deadline is None:
                    deadline = time.monotonic() + LINGER_MS / 1000
            if deadline is not None and (not self._pending or time.monotonic() >= deadline):
                break
            if not self._send_some(sock, zmq.NOBLOCK):
                sock.poll(100, zmq.POLLOUT)  # no connection, or a full queue: wait a little
        left = 0 if deadline is None else max(deadline - time.monotonic(), 0)
        sock.close(linger=int(left * 1000))
        context.term()

    def _send_some(self, sock: Any, flags: int) -> bool:
        """Send waiting records until none is left (True) or ZeroMQ would wait (False)."""
        import zmq

        while True:
            with self._wake:
                if not self._pending:
                    return True
                frame = self._pending[0]
            try:
                sock.send(frame, flags)
            except zmq.ZMQError:  # Again
                return False
            with self._wake:
                if self._pending and self._pending[0] is frame:
                    self._pending.popleft()

    def close(self) -> None:
        """Give the waiting records at most LINGER_MS to go; say how many never went."""
        sender, self._sender = self._sender, None
        if sender is not None:
            with self._wake:
                self._stopping = True
                self._wake.notify()
            sender.join(LINGER_MS / 1000 + 1.0)
        with self._wake:
            dropped, self.dropped = self.dropped + len(self._pending), 0
            self._pending.clear()
        if dropped and sender is not None:
            # Logging cannot report its own loss; this reaches the run's log file.
            sys.stderr.write(f"nowcastkit: {dropped} log records not sent to the log "
                             f"aggregator at {self.endpoint}\n")  # fmt: skip
        super().close()
