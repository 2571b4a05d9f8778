"""The log aggregator: every process's log records, written through one schema.

    python -m nowcastkit.log_aggregator nowcast.yaml

With ``logging.publisher`` in the config, every process and worker sends its records
here (:mod:`nowcastkit.log_publisher`), and this process writes them through the
``logging.aggregator`` schema: the system's rotating log files, an e-mail for
CRITICAL, whatever that schema says. It binds one PULL socket, on
``zmq.ports.logging.aggregator`` (default: the manager port + 5) of the broker's
interface, under the broker's rules: loopback unless ``zmq.bind`` says otherwise,
and beyond loopback only with CURVE or ``zmq.insecure``; with ``zmq.transport:
ipc``, ``logging.sock`` in the ipc folder. Every publisher, here or on another
host, connects to it, so no pool of ports is needed.

Each record keeps its logger's name, and gets ``logger_name`` (the same, as the
reference design's aggregator formats have it), ``host``, ``run`` (the run id, or
``-``) and ``process_name`` for the formats to show.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import sys
import time
from typing import Any

import zmq

from nowcastkit import endpoints, lifecycle, security
from nowcastkit.config import Config
from nowcastkit.gate import Gate, RateLimit
from nowcastkit.logs import AGGREGATOR
from nowcastkit.sockets import bind

__all__ = ["decode", "main"]

log = logging.getLogger(AGGREGATOR)

#: Records taken from the socket between two looks at the signals.
_BATCH = 256


def decode(frame: bytes) -> logging.LogRecord | None:
    """The record a publisher sent, ready for the aggregator's handlers; None if not one."""
    try:
        data = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    if not isinstance(data.get("levelno"), int) or not isinstance(data.get("msg"), str):
        return None
    data.update(args=None, exc_info=None, logger_name=data["name"])
    data["levelname"] = logging.getLevelName(data["levelno"])
    data["host"] = data.get("host") or "?"
    data["run"] = data.get("run") or "-"
    data["process_name"] = data.get("process_name") or data["name"]
    return logging.makeLogRecord(data)


def _local_fields() -> None:
    """Give this process's own records the fields the aggregator's formats may show."""
    make, host = logging.getLogRecordFactory(), os.uname().nodename

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.logger_name, record.host, record.run = record.name, host, "-"
        record.process_name = AGGREGATOR
        return record

    logging.setLogRecordFactory(factory)


def _check(config: Config) -> None:
    """Fail closed, as the broker does: beyond loopback only with CURVE or zmq.insecure."""
    if (refusal := security.exposure(config)) is not None:
        raise refusal


def _write(record: logging.LogRecord) -> None:
    """Hand *record* to its logger's handlers, as the aggregator schema sets them up."""
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


class _Socket:
    """The aggregator's PULL socket, and its gate under CURVE."""

    def __init__(self, config: Config) -> None:
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.PULL)
        self.gate: Gate | None = None
        if endpoints.is_ipc(config):
            endpoints.private_folder(config)
        if security.is_curve(config):
            self.gate = Gate.open(self.context, config, log)  # before binding: fail closed
            security.curve_server(self.sock, config)
        endpoint = endpoints.aggregator_endpoint(config, bind=True)
        bind(self.sock, endpoint, config, "logging.aggregator", log, "aggregator")

    def close(self) -> None:
        self.sock.close(linger=0)
        if self.gate is not None:
            self.gate.close()
        self.context.destroy(linger=0)


def _wait_for_schema(config: Config, watch: lifecycle.SignalWatch) -> bool:
    """Without ``logging.aggregator``, idle until a reload brings one (True) or a stop (False).

    circus and supervisord keep the watcher; a process that exited would be restarted
    again and again.
    """
    while not isinstance((config.get("logging") or {}).get("aggregator"), dict):
        log.info("no logging.aggregator section in %s: nothing to aggregate; waiting for "
                 "a SIGHUP that brings one, or a stop", config.file)  # fmt: skip
        while not (signums := watch.take()):
            select.select([watch], [], [])  # the wake-up fd: no signal is missed
        if lifecycle.STOP & set(signums):
            log.info("shutting down")
            return False
        if signal.SIGHUP in signums:
            lifecycle.reload_config(config, AGGREGATOR)
    return True


def _serve(config: Config, _args: argparse.Namespace, watch: lifecycle.SignalWatch) -> None:
    if not _wait_for_schema(config, watch):
        return
    sock = _Socket(config)
    limit = RateLimit()
    try:
        poller = zmq.Poller()
        poller.register(sock.sock, zmq.POLLIN)
        poller.register(watch, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if sock.sock in ready:
                _drain(sock.sock, limit)
            if watch.fileno() in ready or watch.pending:
                signums = watch.take()
                if signal.SIGHUP in signums:
                    lifecycle.reload_config(config, AGGREGATOR)
                    if sock.gate is not None:
                        sock.gate.reload()
                if lifecycle.STOP & set(signums):
                    log.info("shutting down")
                    return
    finally:
        sock.close()


def _drain(sock: zmq.Socket, limit: RateLimit) -> None:
    """Write the records waiting on the socket, a batch at most; a bad frame is one line."""
    for _ in range(_BATCH):
        try:
            frame = sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        record = decode(frame)
        if record is None:
            held = limit.admit("bad frame", time.monotonic())
            if held is not None:
                more = f" ({held} more since the last line)" if held else ""
                log.warning("dropped a frame that is not a log record: %r%s", frame[:80], more)
            continue
        _write(record)


def main(argv: list[str] | None = None) -> int:
    _local_fields()
    return lifecycle.run_process(AGGREGATOR, __doc__.splitlines()[0], _serve, argv, check=_check)


if __name__ == "__main__":
    sys.exit(main())
