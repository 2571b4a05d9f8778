"""The notifier: alerts go out on a thread of their own, so no endpoint can delay the manager.

    notifier = Notifier(channels(config))
    notifier.start()
    notifier.submit(alert)        # never blocks: queued, or held back as a repeat
    notifier.stop()               # at shutdown: a short grace to send what is queued

:meth:`Notifier.submit` only puts the alert on a bounded queue; when the queue is
full the oldest alert is dropped, counted and logged, rather than the manager
waiting. The thread sends each alert to every channel that wants it, each
network wait at most *timeout* (5 s), in up to *attempts* (3) tries a second,
then two, apart; a refusal (HTTP 4xx, SMTP 5xx, a bad certificate) is not tried again.

Identical alerts (same kind, worker and summary, whatever the run) are
de-duplicated: after one is sent, the same one within *window* seconds (600,
ten minutes) is held back and counted, and the next one after the window says
how many were held back. So a worker crashing every minute the same way sends
one alert per ten minutes, not sixty an hour.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path

import attrs

from nowcastkit.alerts.alert import TAIL_LINES, Alert
from nowcastkit.alerts.channels import Channel, channels
from nowcastkit.config import Config
from nowcastkit.errors import AlertError, ConfigError

__all__ = ["Notifier", "reload_channels"]

log = logging.getLogger("alerts")


@attrs.define(eq=False)
class Notifier:
    """A bounded queue of alerts and the thread that sends them."""

    #: Replaced whole on reload: the thread reads it once per alert.
    channels: tuple[Channel, ...]
    #: Where a ``heartbeat`` alert goes (a GET), and nothing else; None without ``heartbeat url``.
    heartbeat: Channel | None = None
    capacity: int = 100
    window: float = 600.0
    timeout: float = 5.0
    attempts: int = 3
    pause: float = 1.0
    #: Alerts dropped because the queue was full.
    dropped: int = 0
    #: Identical alerts held back, in all.
    held: int = 0
    _queue: collections.deque = attrs.field(factory=collections.deque)
    _ready: threading.Condition = attrs.field(factory=threading.Condition)
    _stopping: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None
    #: Identity -> (monotonic time last sent, repeats held back since); the manager's thread's.
    _seen: dict = attrs.field(factory=dict)

    def start(self) -> None:
        # A daemon: a send stuck past the stop's grace must not keep the process alive.
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()
        names = ", ".join(f"{c.name} ({c.where})" for c in self.channels)
        if names:
            log.info("alerts go to %s", names)
        if self.heartbeat is not None:
            log.info("the day's ping goes to the %s", self.heartbeat.where)

    def submit(self, alert: Alert, now: float | None = None) -> bool:
        """Queue *alert* unless an identical one went out within the window; never blocks."""
        now = time.monotonic() if now is None else now
        last, repeats = self._seen.get(alert.identity, (None, 0))
        if last is not None and now - last < self.window:
            self._seen[alert.identity] = (last, repeats + 1)
            self.held += 1
            log.info("%s alert held back, the same as one sent %.0f s ago: %s",
                     alert.kind, now - last, alert.summary)  # fmt: skip
            return False
        self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        self._seen[alert.identity] = (now, 0)
        if repeats:
            alert = attrs.evolve(alert, repeats=repeats)
        with self._ready:
            if len(self._queue) >= self.capacity:
                oldest = self._queue.popleft()
                self.dropped += 1
                log.warning("alert queue full (%d); dropped the oldest, %s alert: %s "
                            "(%d dropped so far)", self.capacity, oldest.kind, oldest.summary,
                            self.dropped)  # fmt: skip
            self._queue.append(alert)
            self._ready.notify()
        return True

    def stop(self, grace: float = 2.0) -> None:
        """Give the thread *grace* seconds to send what is queued (one try each), then go."""
        self._stopping.set()
        with self._ready:
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(grace)
        with self._ready:
            left = len(self._queue) + bool(self._thread and self._thread.is_alive())
        if left:
            log.warning("stopping with %d alert%s not sent", left, "s"[: left != 1])

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping.is_set():
                    self._ready.wait()
                if not self._queue:
                    return
                alert = self._queue.popleft()
            try:
                self.deliver(alert)
            except Exception:  # the thread's edge: one bad alert must not end the sending
                log.exception("sending %s alert failed", alert.kind)

    def deliver(self, alert: Alert) -> list[tuple[Channel, AlertError | None]]:
        """Send *alert* to each channel that wants it, now, in this thread; what each did."""
        if not alert.log_lines and alert.log_path:
            alert = attrs.evolve(alert, log_lines=_tail(Path(alert.log_path)))
        results = []
        if alert.kind == "heartbeat":
            targets = (self.heartbeat,) if self.heartbeat is not None else ()
        else:
            targets = tuple(c for c in self.channels if c.wants(alert))
        for channel in targets:
            results.append((channel, self._send(channel, alert)))
        return results

    def _send(self, channel: Channel, alert: Alert) -> AlertError | None:
        about = f"{alert.kind} alert" + (f" for {alert.worker}" if alert.worker else "") + (
            f" run {alert.run}" if alert.run else "")  # fmt: skip
        if alert.kind == "heartbeat":
            about = "the day's ping"
        pause = self.pause
        for attempt in range(1, self.attempts + 1):
            try:
                channel.send(alert, self.timeout)
            except AlertError as err:
                last = attempt == self.attempts or not err.again or self._stopping.is_set()
                if last:
                    log.error("%s: %s not sent (attempt %d of %d): %s",
                              channel.name, about, attempt, self.attempts, err)  # fmt: skip
                    return err
                log.warning("%s: %s attempt %d of %d failed, trying again in %g s: %s",
                            channel.name, about, attempt, self.attempts, pause, err)  # fmt: skip
                if self._stopping.wait(pause):
                    pause = 0.0
                pause *= 2
            else:
                log.info("%s: %s sent (%s)", channel.name, about, channel.where)
                return None
        raise AssertionError("unreachable: the last attempt returns")


def reload_channels(notifier: Notifier | None, config: Config, process: str) -> None:
    """SIGHUP: *config*'s channels for a running notifier; a bad section keeps the old ones.

    A process started without a notifier needs a restart for an ``alerts:`` section added.
    """
    try:
        found = channels(config)
    except ConfigError as err:
        log.error("alerts reload failed, still sending to the old channels: %s", err)
        return
    if notifier is not None:
        notifier.channels = found
    elif found:
        log.warning("alerts: section added; restart the %s for that to take effect", process)


def _tail(path: Path) -> tuple[str, ...]:
    """The last lines of a run's log; none when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 8192))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ()
    return tuple(lines[-TAIL_LINES:])
