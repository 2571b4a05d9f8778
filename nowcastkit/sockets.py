"""Binding the system's listening sockets: one error naming the config key, one log line.

    port = bind(sock, "tcp://127.0.0.1:0", config, "monitor", logging.getLogger("manager"))

Every listening socket is bound from a ``zmq.ports`` key, so a port that is taken
is a config error naming that key, and the port bound (the free one the system
picked, for a port of 0) is logged in the line operators and tests look for.
"""

from __future__ import annotations

import logging

import zmq

from nowcastkit.config import Config
from nowcastkit.errors import ConfigError

__all__ = ["bind"]


def bind(sock: zmq.Socket, endpoint: str, config: Config, port_key: str,
         log: logging.Logger, label: str | None = None) -> int:  # fmt: skip
    """Bind *sock* to *endpoint* and log ``<label> socket bound to port N``; return N.

    Raises ConfigError for ``zmq.ports.<port_key>`` when the bind fails.
    """
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as err:
        raise ConfigError(
            config.file, f"zmq.ports.{port_key}", f"cannot bind {endpoint}: {err}"
        ) from None
    port = int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rpartition(":")[2])
    log.info("%s socket bound to port %d", label or port_key, port)
    return port
