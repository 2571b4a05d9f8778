"""The one error root: every error nowcastkit raises for a user is one line."""

from __future__ import annotations

__all__ = [
    "AlertError",
    "ConfigError",
    "FlowError",
    "MessageError",
    "NowcastkitError",
    "WorkerError",
]


class NowcastkitError(Exception):
    """Root of every error nowcastkit raises on purpose."""


class ConfigError(NowcastkitError):
    """A config file is missing, unreadable, or has a bad key or value."""

    def __init__(self, path: object, key: str, problem: str) -> None:
        self.path, self.key, self.problem = path, key, problem
        where = f"{path}: {key}" if key else f"{path}"
        super().__init__(f"{where}: {problem}")


class AlertError(NowcastkitError):
    """An alert that did not go out: the channel, the step and what the far end said.

    ``again`` is whether another attempt might go better (a timeout, a 5xx), not a refusal.
    """

    exit_status = 1

    def __init__(self, text: str, again: bool = False) -> None:
        self.again = again
        super().__init__(text)


class MessageError(NowcastkitError):
    """A message that cannot be encoded, decoded or sent."""


class WorkerError(NowcastkitError):
    """Raised in a worker function to report a failure (the worker's `failure` type)."""


class FlowError(NowcastkitError):
    """The next_workers module failed: it would not load, lacks or raised in ``after_<worker>``.

    ``reply_type`` is the manager reply the worker gets for it.
    """

    def __init__(self, reply_type: str, text: str) -> None:
        self.reply_type = reply_type
        super().__init__(text)
