"""The manager's loopback sockets, seen from outside: where they are and how to ask.

    reply = ask(control_endpoint(config), {"command": "status"})
    reply = ask(control_endpoint(config), {"command": "launch", "worker": "workers.sleep",
                                           "id": "entry@2026-12-01T10:00:00+00:00"})

The CLI, the scheduler and the tests all ask through :func:`ask`, and every
failure to get an answer is one :class:`ManagerUnreachable`, so callers tell a
silent manager from a refusal (``ok: false`` in the reply) in one way. Requests
and replies are small YAML mappings. This module imports nothing of the
manager, so the tools start without loading it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import attrs
import yaml
import zmq

from nowcastkit import handshake, security
from nowcastkit.config import Config
from nowcastkit.endpoints import is_ipc, manager_endpoint
from nowcastkit.errors import NowcastkitError
from nowcastkit.lifecycle import STOP, SignalWatch

__all__ = [
    "HELLO_PREFIX",
    "Endpoint",
    "LaunchRefused",
    "ManagerUnreachable",
    "ask",
    "control_endpoint",
    "launch",
    "monitor_endpoint",
]

#: Subscribing to this prefix plus a token gets one ``hello`` event back on that topic.
HELLO_PREFIX = "-hello/"


class ManagerUnreachable(NowcastkitError):
    """No usable answer from the manager's control socket: silent, unreadable, or interrupted."""

    exit_status = 1

    def __init__(self, text: str, *, silent: bool = False) -> None:
        #: No answer came at all: asking again may help, unlike an unreadable answer.
        self.silent = silent
        super().__init__(text)


class Launchable(Protocol):
    """What a launch request names: a NextWorker (typed so, this module does not import it)."""

    module: str
    args: Sequence[str]
    host: str


class LaunchRefused(NowcastkitError):
    """The manager answered a launch request with a refusal (an unregistered worker, say)."""

    exit_status = 1


@attrs.frozen
class Endpoint:
    """One of the manager's sockets, and how *role* proves itself to it when CURVE is on.

    Its ``str`` is the ZeroMQ address, so it prints and formats as one.
    """

    address: str
    config: Config | None = attrs.field(default=None, eq=False, repr=False)
    role: str = "cli"

    def __str__(self) -> str:
        return self.address

    @property
    def is_curve(self) -> bool:
        """CURVE is on and the socket is not in the private ipc folder."""
        config = self.config
        return config is not None and security.is_curve(config) and not is_ipc(config)

    def secure(self, sock: zmq.Socket) -> None:
        """Give a client socket *role*'s key pair and the manager's public key, with CURVE on."""
        if self.is_curve:
            manager = security.client_key_name(self.config, "manager")
            security.curve_client(sock, self.config, self.role, server=manager)


def control_endpoint(config: Config, role: str = "cli") -> Endpoint:
    """Where the manager's control socket listens: loopback (default manager port + 2), or ipc."""
    return Endpoint(manager_endpoint(config, "control", 2), config, role)


def monitor_endpoint(config: Config, role: str = "cli") -> Endpoint:
    """Where the manager publishes its events: loopback (default manager port + 3), or ipc."""
    return Endpoint(manager_endpoint(config, "monitor", 3), config, role)


def ask(
    endpoint: str | Endpoint,
    request: dict,
    timeout: float = 3.0,
    *,
    watch: SignalWatch | None = None,
    context: zmq.Context | None = None,
) -> dict:
    """Send *request* on a fresh REQ socket and return the reply mapping.

    Raises ManagerUnreachable when no reply comes within *timeout* seconds, the
    reply is not a mapping, or (with *watch*) a SIGTERM/SIGINT arrives first.
    """
    sock = (context or zmq.Context.instance()).socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    monitor = None
    try:
        if isinstance(endpoint, Endpoint) and endpoint.is_curve:
            endpoint.secure(sock)
            monitor = sock.get_monitor_socket(handshake.EVENTS)
        try:
            sock.connect(str(endpoint))
            sock.send(yaml.dump(request, Dumper=yaml.CSafeDumper).encode())
        except zmq.ZMQError as err:
            raise ManagerUnreachable(f"manager: cannot ask on {endpoint}: {err}") from None
        answer = _wait(sock, timeout, watch, monitor and _Refusals(endpoint, monitor))
        if answer is None:
            raise ManagerUnreachable(
                f"manager: no answer on {endpoint} within {timeout:g}s", silent=True
            )
    finally:
        if monitor is not None:
            sock.disable_monitor()
            monitor.close(linger=0)
        sock.close()
    try:
        reply = yaml.load(answer, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError):
        reply = None
    if not isinstance(reply, dict):
        raise ManagerUnreachable(f"manager: unreadable answer on {endpoint}: {answer[:200]!r}")
    return reply


def launch(
    endpoint: str | Endpoint,
    worker: Launchable,
    by: str,
    timeout: float,
    *,
    request_id: str | None = None,
    watch: SignalWatch | None = None,
    context: zmq.Context | None = None,
) -> str:
    """Ask the manager to launch *worker* for *by*; return the run id it gives.

    A *request_id* the manager has seen before is answered with the run it started
    then. Raises ManagerUnreachable as :func:`ask` does, LaunchRefused on a refusal.
    """
    request = {"command": "launch", "worker": worker.module, "args": list(worker.args),
               "host": worker.host, "by": by}  # fmt: skip
    if request_id is not None:
        request["id"] = request_id
    reply = ask(endpoint, request, timeout, watch=watch, context=context)
    if reply.get("ok") is not True:
        raise LaunchRefused(f"manager refused: {reply.get('error', 'no reason given')}")
    return str(reply.get("run"))


class _Refusals:
    """A CURVE client socket's handshakes: a refusal is a ManagerUnreachable at once, saying why."""

    def __init__(self, endpoint: Endpoint, monitor: zmq.Socket) -> None:
        self.endpoint, self.monitor, self.handshakes = endpoint, monitor, handshake.Handshakes()

    def check(self) -> None:
        verdict = self.handshakes.see(*handshake.monitor_event(self.monitor))
        if verdict not in (None, handshake.RECONNECTED):
            config, role = self.endpoint.config, self.endpoint.role
            name = security.client_key_name(config, role)
            key = f"{name}, from {security.key_file(config, name, secret=True)}"
            server = security.key_file(config, security.client_key_name(config, "manager"),
                                       secret=False)  # fmt: skip
            raise ManagerUnreachable(handshake.refusal(
                verdict, self.endpoint.address, f"the {role}'s key", key, str(server),
                server="the manager's control socket"))  # fmt: skip


def _wait(
    sock: zmq.Socket, timeout: float, watch: SignalWatch | None, refusals: _Refusals | None = None
) -> bytes | None:
    """The answer, or None when none came in *timeout* seconds."""
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    if watch is not None:
        poller.register(watch, zmq.POLLIN)
    if refusals is not None:
        poller.register(refusals.monitor, zmq.POLLIN)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready = dict(poller.poll(int(left * 1000) + 1))
        if sock in ready:
            return sock.recv()
        if refusals is not None and refusals.monitor in ready:
            refusals.check()
        # A registered fd comes back as its number, not as the object.
        if watch is not None and watch.fileno() in ready:
            if STOP & set(watch.pending):
                raise ManagerUnreachable("stopping before the manager answered")
            # Another signal (SIGHUP) waits for the caller's loop; stop polling its fd.
            poller.unregister(watch)
    return None
