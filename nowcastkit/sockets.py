"""Binding the system's listening sockets, and sending multipart messages.

    port = bind(sock, "tcp://127.0.0.1:0", config, "monitor", logging.getLogger("manager"))
    send_frames(sock, frames, NOBLOCK)          # sock.send_multipart(frames, zmq.NOBLOCK)

Every listening socket is bound from a ``zmq.ports`` key, so a port that is taken
is a config error naming that key, and the port bound (the free one the system
picked, for a port of 0) is logged in the line operators and tests look for.

pyzmq's flags are enum members, and its ``send_multipart`` works out
``SNDMORE | flags`` for every frame but the last, in Python enum code: a few
microseconds a frame, on each of the four frames of every request and reply the
broker and the manager pass. ``send_frames`` sends the same frames with the flags as
plain ints.
"""

from __future__ import annotations

import logging

import zmq

from nowcastkit.config import Config
from nowcastkit.errors import ConfigError

__all__ = ["NOBLOCK", "bind", "send_frames"]

NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)


def bind(sock: zmq.Socket, endpoint: str, config: Config, port_key: str,
         log: logging.Logger, label: str | None = None) -> int:  # fmt: skip
    """Bind *sock* to *endpoint* and log ``<label> socket bound to port N``; return N.

    An ``ipc://`` endpoint is logged as ``bound to ipc://PATH`` and returns 0.
    Raises ConfigError for ``zmq.ports.<port_key>`` when the bind fails.
    """
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as err:
        raise ConfigError(
            config.file, f"zmq.ports.{port_key}", f"cannot bind {endpoint}: {err}"
        ) from None
    if endpoint.startswith("ipc://"):
        log.info("%s socket bound to %s", label or port_key, endpoint)
        return 0
    port = int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rpartition(":")[2])
    log.info("%s socket bound to port %d", label or port_key, port)
    return port


def send_frames(sock: zmq.Socket, frames: list[bytes], flags: int = 0) -> None:
    """``sock.send_multipart(frames, flags)``, for frames that are all bytes."""
    if any(type(frame) is not bytes for frame in frames):  # pyzmq checks them all first
        sock.send_multipart(frames, flags)
        return
    send, more = sock.send, int(flags) | _SNDMORE
    for frame in frames[:-1]:
        send(frame, more)
    send(frames[-1], flags)
