"""The ZAP handler of a process's CURVE servers: the allow-list, and who was turned away.

    gate = Gate.open(context, config, log)   # before any bind, so no client slips in first
    curve_server(sock, config); sock.bind(endpoint)
    gate.reload()                            # on SIGHUP: the allow-list folder read again
    gate.close()

pyzmq's :class:`~zmq.auth.thread.ThreadAuthenticator` answers the ZAP requests on
a thread of its own; the gate gives it the allow-list as a callback, so that each
admitted client's User-Id is its key's name (the manager records it per message)
and each rejection is logged at WARNING with the peer's address and the key's
fingerprint, at most once a minute per address and key.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from nowcastkit import security
from nowcastkit.config import Config
from nowcastkit.errors import ConfigError
from nowcastkit.keys import KeyFileError, allowed_keys, fingerprint

__all__ = ["Gate", "RateLimit"]

#: Seconds between two log lines about the same rejected address and key.
_QUIET_FOR = 60.0


class RateLimit:
    """When a line about *subject* may be logged again; counts the ones held back meanwhile."""

    def __init__(self, every: float = _QUIET_FOR) -> None:
        self.every = every
        self.next: dict[Any, float] = {}
        self.held: dict[Any, int] = {}

    def admit(self, subject: Any, now: float) -> int | None:
        """The number of lines held back since the last, if one may be logged now; else None."""
        if now < self.next.get(subject, 0.0):
            self.held[subject] = self.held.get(subject, 0) + 1
            return None
        self.next[subject] = now + self.every
        return self.held.pop(subject, 0)


class _Authenticator(ThreadAuthenticator):
    """pyzmq's authenticator, telling the gate each request's peer address."""

    def __init__(self, context: zmq.Context, gate: Gate) -> None:
        super().__init__(context, log=logging.getLogger("nowcastkit.gate.zap"))
        self.gate = gate

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # One request at a time on the authenticator's thread: the address stays its own.
        self.gate.peer = msg[3].decode(errors="replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.gate.names.get(z85.encode(client_public_key), "?")


class Gate:
    """The allow-list of one process's CURVE servers, and the authenticator that applies it."""

    def __init__(self, folder: Path, log: logging.Logger, config: Config) -> None:
        self.folder, self.log, self.config = folder, log, config
        self.names: dict[bytes, str] = {}
        self.peer = "?"
        self.limit = RateLimit()
        self.authenticator: _Authenticator | None = None

    @classmethod
    def open(cls, context: zmq.Context, config: Config, log: logging.Logger) -> Gate:
        """Read the allow-list and start answering ZAP requests; call before binding."""
        gate = cls(security.allowed_folder(config), log, config)
        gate.names = gate._read()
        gate.authenticator = _Authenticator(context, gate)
        gate.authenticator.start()
        gate.authenticator.configure_curve_callback(security.ZAP_DOMAIN, gate)
        log.info("CURVE on: %d allowed keys in %s", len(gate.names), gate.folder)
        return gate

    def callback(self, _domain: str, client_key: bytes) -> bool:
        """The authenticator's question: is this z85 client key allowed?"""
        if client_key in self.names:
            return True
        self.rejected(self.peer, fingerprint(client_key), "key not allowed")
        return False

    def rejected(self, peer: str, key: str, why: str) -> None:
        """Log a turned-away handshake, at most once a minute for the same peer and key."""
        held = self.limit.admit((peer, key), time.monotonic())
        if held is not None:
            more = f" ({held} more since the last line)" if held else ""
            self.log.warning("handshake rejected from %s, key %s: %s%s", peer, key, why, more)

    def reload(self) -> None:
        """SIGHUP: read the allow-list folder again; keep the old list if it cannot be read."""
        try:
            self.folder = security.allowed_folder(self.config)
            self.names = self._read()
        except (ConfigError, KeyError) as err:
            self.log.error("allow-list reload failed, still using the old one: %s", err)
            return
        self.log.info("allow-list reloaded: %d allowed keys in %s", len(self.names), self.folder)

    def close(self) -> None:
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None

    def _read(self) -> dict[bytes, str]:
        try:
            return allowed_keys(self.folder)
        except KeyFileError as err:
            raise ConfigError(self.config.file, "zmq.curve.allowed", str(err)) from None
