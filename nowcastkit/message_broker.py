"""The message broker: the one process that never moves.

    python -m nowcastkit.message_broker nowcast.yaml

Workers' REQ sockets connect to a ROUTER on ``zmq.ports.workers``; the
manager's REP socket connects to a DEALER on ``zmq.ports.manager``; frames are
relayed both ways untouched. Both sockets bind to ``zmq.host`` (loopback for
``localhost``) unless ``zmq.bind`` names another interface (``"*"`` for all).
A port of 0 binds a free port; the log says which.
"""

from __future__ import annotations

import argparse
import collections
import logging
import signal
import sys

import zmq

from nowcastkit import lifecycle
from nowcastkit.config import Config
from nowcastkit.errors import ConfigError

__all__ = ["bind_address", "main"]

# Named as operators know it from their log filters, not after the module path.
log = logging.getLogger("message_broker")


def bind_address(config: Config) -> str:
    """The interface the broker binds: ``zmq.bind`` if set, else ``zmq.host``."""
    return config["zmq"].get("bind") or config["zmq"]["host"]


def _bind(sock: zmq.Socket, config: Config, role: str) -> int:
    host, port = bind_address(config), config["zmq"]["ports"][role]
    endpoint = f"tcp://{host}:{port or '*'}"
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as err:
        raise ConfigError(
            config.file, f"zmq.ports.{role}", f"cannot bind {endpoint}: {err}"
        ) from None
    bound = int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rpartition(":")[2])
    log.info("%s socket bound to port %d", "worker" if role == "workers" else role, bound)
    return bound


def _serve(config: Config, _args: argparse.Namespace, watch: lifecycle.SignalWatch) -> None:
    context = zmq.Context()
    workers = context.socket(zmq.ROUTER)
    manager = context.socket(zmq.DEALER)
    # Requests wait here while no manager is connected: a DEALER with no peer
    # would block the send, and with it the whole broker.
    backlog: collections.deque[list] = collections.deque()
    try:
        _bind(workers, config, "workers")
        _bind(manager, config, "manager")
        poller = zmq.Poller()
        poller.register(workers, zmq.POLLIN)
        poller.register(watch, zmq.POLLIN)
        while True:
            poller.register(manager, zmq.POLLIN | (zmq.POLLOUT if backlog else 0))
            ready = dict(poller.poll())
            if workers in ready:
                backlog.append(workers.recv_multipart(copy=False))
            if ready.get(manager, 0) & zmq.POLLIN:
                _relay_reply(manager, workers)
            _forward(backlog, manager)
            if watch in ready or watch.pending:
                signums = watch.take()
                if signal.SIGHUP in signums:
                    lifecycle.reload_config(config, "message_broker")
                if {signal.SIGTERM, signal.SIGINT} & set(signums):
                    log.info("shutting down")
                    return
    finally:
        workers.close(linger=0)
        manager.close(linger=1000)
        context.term()


def _forward(backlog: collections.deque, manager: zmq.Socket) -> None:
    """Pass waiting requests to the manager for as long as it takes them."""
    while backlog:
        try:
            manager.send_multipart(backlog[0], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        backlog.popleft()


def _relay_reply(manager: zmq.Socket, workers: zmq.Socket) -> None:
    frames = manager.recv_multipart(copy=False)
    try:
        workers.send_multipart(frames, copy=False)
    except zmq.ZMQError as err:
        log.warning("reply could not be relayed to its worker: %s", err)


def main(argv: list[str] | None = None) -> int:
    return lifecycle.run_process("message_broker", __doc__.splitlines()[0], _serve, argv)


if __name__ == "__main__":
    sys.exit(main())
