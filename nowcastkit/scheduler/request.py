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
import time
import uuid

import attrs
import zmq

from nowcastkit.config import Config
from nowcastkit.control import ManagerUnreachable, control_endpoint, launch
from nowcastkit.lifecycle import SignalWatch
from nowcastkit.next_worker import NextWorker
from nowcastkit.scheduler.entries import manager_timeout

__all__ = ["ManagerLauncher"]

log = logging.getLogger("scheduler")

# One attempt waits this long for an answer before trying a fresh socket.
_ATTEMPT = 3.0


@attrs.define(eq=False)
class ManagerLauncher:
    """Launches a worker by asking the manager; returns the manager's run id.

    *request_id* names the launch: the scheduler derives it from the entry and the
    fire it is for, so a fire asked again, by a retry or by a scheduler restarted
    before it saved its state, is launched once. Raises NowcastkitError, one line,
    when the manager refuses, does not answer in time, or a SIGTERM/SIGINT arrives.
    """

    watch: SignalWatch | None = None
    attempt: float = _ATTEMPT
    context: zmq.Context = attrs.field(factory=zmq.Context)

    def __call__(self, config: Config, worker: NextWorker, request_id: str | None = None) -> str:
        endpoint = control_endpoint(config, "scheduler")
        request_id = request_id or uuid.uuid4().hex  # the same for every attempt
        total = manager_timeout(config)
        log.debug("asking the manager at %s to launch %s", endpoint, worker.module)
        deadline = time.monotonic() + total
        while (left := deadline - time.monotonic()) > 0:
            try:
                return launch(
                    endpoint, worker, "scheduler", min(self.attempt, left),
                    request_id=request_id, watch=self.watch, context=self.context,
                )  # fmt: skip
            except ManagerUnreachable as err:
                if not err.silent:
                    raise
                log.debug("no answer from the manager at %s yet; asking again", endpoint)
        raise ManagerUnreachable(
            f"manager at {endpoint} did not answer within {total:g}s", silent=True
        )

    def close(self) -> None:
        self.context.term()
