"""The publisher handler: a process's log records, sent as JSON to the one log aggregator.

    handler = Publisher()                     # the publisher schema's root handler
    handler.start(config, "sleep", run_id)    # connect; records before this wait, a few
    logging.getLogger("sleep").info("slept")  # queued at once, never waited for

Each record is one JSON frame on a PUSH socket that connects to the aggregator's one
PULL socket (:mod:`nowcastkit.log_aggregator`), over tcp to the broker's host or, with
``zmq.transport: ipc``, in the ipc folder. Nothing here waits for the aggregator:
ZeroMQ queues up to ``SNDHWM`` records while it is away (not started yet, restarting,
unreachable) and further records are dropped and counted; at exit the queue gets at
most ``LINGER`` to drain. Records sent while the aggregator is down may be lost.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from nowcastkit.config import CLIENT_ROLES, Config
from nowcastkit.errors import ConfigError

__all__ = ["LINGER_MS", "SNDHWM", "Publisher", "encode"]

#: Records ZeroMQ holds for an aggregator that is not there (more are dropped).
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
        self._early: list[bytes] = []
        self._context: Any = None
        self._socket: Any = None

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
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        if security.is_curve(config):
            role = process if process in CLIENT_ROLES else "workers"
            security.curve_client(sock, config, role)
        sock.connect(self.endpoint)
        self._context, self._socket = context, sock
        early, self._early = self._early, []
        for frame in early:
            self._send(frame)

    def name_run(self, run: str | None) -> None:
        """Name the run in the records from now on (a worker learns its run id from hello)."""
        self.origin["run"] = run

    def emit(self, record: logging.LogRecord) -> None:
        try:
            frame = encode(record, self.origin)
        except Exception:
            self.handleError(record)
            return
        if self._socket is None:
            if len(self._early) < SNDHWM:
                self._early.append(frame)
            else:
                self.dropped += 1
            return
        self._send(frame)

    def _send(self, frame: bytes) -> None:
        import zmq

        try:
            self._socket.send(frame, zmq.NOBLOCK)
        except zmq.ZMQError:  # Again: the queue is full, the aggregator away that long
            self.dropped += 1

    def close(self) -> None:
        """Give queued records at most LINGER_MS to go; say how many were dropped."""
        self.acquire()
        try:
            if self._socket is not None:
                self._socket.close()
                self._context.term()
                self._socket = self._context = None
            dropped, self.dropped = self.dropped + len(self._early), 0
            self._early = []
        finally:
            self.release()
        if dropped:
            # Logging cannot report its own loss; this reaches the run's log file.
            sys.stderr.write(f"nowcastkit: {dropped} log records not sent to the log "
                             f"aggregator at {self.endpoint or '(not connected)'}\n")  # fmt: skip
        super().close()
