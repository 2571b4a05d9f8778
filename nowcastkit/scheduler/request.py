"""Launch requests: the scheduler asks the manager to start a worker, never starts one itself.

The manager records the run, starts it, reaps it and reports it if it crashes.
A request goes to the manager's control socket (loopback) on a REQ socket; a
manager that does not answer (down, or restarting under circus) is asked again
on a fresh socket until ``scheduler.manager timeout`` seconds have passed. The
request carries an id that stays the same across those attempts, so a manager
that got it twice launches once.
"""

from __future__ import annotations

import logging
import signal
import time
import uuid

import attrs
import yaml
import zmq

from nowcastkit.config import Config
from nowcastkit.errors import NowcastkitError
from nowcastkit.lifecycle import SignalWatch
from nowcastkit.manager import control_endpoint
from nowcastkit.next_worker import NextWorker
from nowcastkit.scheduler.entries import manager_timeout

__all__ = ["ManagerLauncher"]

log = logging.getLogger("scheduler")

# One attempt waits this long for an answer before trying a fresh socket.
_ATTEMPT = 3.0
_STOP = frozenset((signal.SIGTERM, signal.SIGINT))


@attrs.define(eq=False)
class ManagerLauncher:
    """Launches a worker by asking the manager; returns the manager's run id.

    Raises NowcastkitError, one line, when the manager refuses, does not answer
    in time, or a SIGTERM/SIGINT arrives while waiting for it.
    """

    watch: SignalWatch | None = None
    attempt: float = _ATTEMPT
    context: zmq.Context = attrs.field(factory=zmq.Context)

    def __call__(self, config: Config, worker: NextWorker) -> str:
        endpoint = control_endpoint(config)
        request = {
            "command": "launch",
            "worker": worker.module,
            "args": list(worker.args),
            "host": worker.host,
            "by": "scheduler",
            "id": uuid.uuid4().hex,
        }
        body = yaml.dump(request, Dumper=yaml.CSafeDumper).encode()
        total = manager_timeout(config)
        log.debug("asking the manager at %s to launch %s", endpoint, worker.module)
        deadline = time.monotonic() + total
        while True:
            answer = self._ask(endpoint, body, min(self.attempt, deadline - time.monotonic()))
            if answer is not None:
                return _run_id(answer, endpoint)
            if time.monotonic() >= deadline:
                break
            log.debug("no answer from the manager at %s yet; asking again", endpoint)
        raise NowcastkitError(f"manager at {endpoint} did not answer within {total:g}s")

    def close(self) -> None:
        self.context.term()

    def _ask(self, endpoint: str, body: bytes, timeout: float) -> bytes | None:
        """One attempt on a fresh socket: the answer, or None when none came in *timeout*."""
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            try:
                sock.connect(endpoint)
                sock.send(body)
            except zmq.ZMQError as err:
                raise NowcastkitError(f"cannot ask the manager at {endpoint}: {err}") from None
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            if self.watch is not None:
                poller.register(self.watch, zmq.POLLIN)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready = dict(poller.poll(int(left * 1000) + 1))
                if sock in ready:
                    return sock.recv()
                # A registered fd comes back as its number, not as the object.
                if self.watch is not None and self.watch.fileno() in ready:
                    if _STOP & set(self.watch.pending):
                        raise NowcastkitError("stopping before the manager answered")
                    # Another signal (SIGHUP) waits for the loop; stop polling its fd.
                    poller.unregister(self.watch)
            return None
        finally:
            sock.close()


def _run_id(answer: bytes, endpoint: str) -> str:
    try:
        reply = yaml.load(answer, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError):
        reply = None
    if not isinstance(reply, dict):
        raise NowcastkitError(f"manager at {endpoint} sent an unreadable answer: {answer[:200]!r}")
    if reply.get("ok") is not True:
        raise NowcastkitError(f"manager refused: {reply.get('error', 'no reason given')}")
    return str(reply.get("run"))
