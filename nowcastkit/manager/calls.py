"""An ssh, sbatch or squeue call made in the background, and when a launcher next looks.

    pace = Pace()
    pace.start(["ssh", ..., "arbutus", line], then=handle_output)   # returns at once
    if pace.tick(now):          # calls that ended are handed on; True when a look is due
        pace.looked(now, host.poll_interval)

A call's output goes to temporary files, read once it ends (its end is a SIGCHLD,
which wakes the manager's loop), so nothing waits on the network.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import IO

import attrs

__all__ = ["CALL_LIMIT", "Call", "Pace"]

#: Seconds a call may take before it is killed (ssh's keep-alives end a frozen one first).
CALL_LIMIT = 180.0


@attrs.define(eq=False)
class Call:
    """One ssh call going on in the background."""

    popen: subprocess.Popen
    out: IO[bytes]
    err: IO[bytes]
    started: float
    then: Callable[[int, str, str], None]

    @classmethod
    def start(
        cls, argv: list[str], then: Callable[[int, str, str], None], stdin: str | None = None
    ) -> Call:
        """Run *argv* in a session of its own, *stdin* its input; *then* gets what it gave."""
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish)
        with tempfile.TemporaryFile() as given:
            given.write((stdin or "").encode())
            given.seek(0)
            popen = subprocess.Popen(
                argv, stdin=given, stdout=out, stderr=err, start_new_session=True
            )
        return cls(popen, out, err, time.monotonic(), then)

    def finish(self, now: float) -> bool:
        """If the call has ended (or outlived CALL_LIMIT and is killed), hand on its output."""
        returncode = self.popen.poll()
        if returncode is None:
            if now - self.started < CALL_LIMIT:
                return False
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            returncode = self.popen.wait()
            self.err.write(f"\nssh call killed after {CALL_LIMIT:.0f} s".encode())
        texts = []
        for stream in (self.out, self.err):
            stream.seek(0)
            texts.append(stream.read().decode(errors="replace"))
            stream.close()
        self.then(returncode, *texts)
        return True


@attrs.define(eq=False)
class Pace:
    """One host's calls in flight, and when its launcher next looks: every poll interval,
    sooner when asked (just after a submit, or a report)."""

    calls: list[Call] = attrs.field(factory=list)
    next_look: float = 0.0
    soon: list[float] = attrs.field(factory=list)

    def start(self, argv: list[str], then: Callable[[int, str, str], None],
              stdin: str | None = None) -> None:  # fmt: skip
        self.calls.append(Call.start(argv, then, stdin))

    def tick(self, now: float) -> bool:
        """Hand on the calls that have ended; whether a look is due."""
        self.calls = [call for call in self.calls if not call.finish(now)]
        if any(at <= now for at in self.soon):
            self.soon = [at for at in self.soon if at > now]
            self.next_look = min(self.next_look, now)
        return now >= self.next_look

    def looked(self, now: float, interval: float) -> None:
        self.next_look = now + interval

    def look_soon(self, now: float, after: tuple[float, ...], shared: bool = False) -> None:
        """Look *after* seconds from *now*. *shared*: a look already planned between one
        wanted and the one before it serves for it, so that runs reporting close together
        share their looks instead of each adding its own."""
        planned = [*self.soon, self.next_look] if shared else []
        since = now
        for at in (now + delay for delay in after):
            if not any(since <= look <= at for look in planned):
                self.soon.append(at)
            since = at

    def wake_at(self) -> float:
        return min([self.next_look, *self.soon])
