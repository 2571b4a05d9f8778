"""nowcastkit: operational pipelines of short-lived workers, a manager and a ZeroMQ broker.

    from nowcastkit import NowcastWorker, NextWorker, WorkerError

Worker modules build a :class:`NowcastWorker`; a system's ``next_workers``
module returns :class:`NextWorker` lists from ``after_<worker>`` functions.
Names are imported on first use, so a worker loads only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nowcastkit.config import Config
    from nowcastkit.errors import ConfigError, MessageError, NowcastkitError, WorkerError
    from nowcastkit.message import Message
    from nowcastkit.next_worker import NextWorker
    from nowcastkit.worker import NowcastWorker
    from nowcastkit.worker_cli import CommandLineInterface

__all__ = [
    "CommandLineInterface",
    "Config",
    "ConfigError",
    "Message",
    "MessageError",
    "NextWorker",
    "NowcastWorker",
    "NowcastkitError",
    "WorkerError",
]

_HOMES = {
    "CommandLineInterface": "nowcastkit.worker_cli",
    "Config": "nowcastkit.config",
    "ConfigError": "nowcastkit.errors",
    "Message": "nowcastkit.message",
    "MessageError": "nowcastkit.errors",
    "NextWorker": "nowcastkit.next_worker",
    "NowcastWorker": "nowcastkit.worker",
    "NowcastkitError": "nowcastkit.errors",
    "WorkerError": "nowcastkit.errors",
}


#: Submodules reached as attributes (``nowcastkit.cli.CommandLineInterface``), as code
#: written for the reference design reaches its package's after ``import nemo_nowcast``.
_SUBMODULES = frozenset(("cli", "config", "fileutils", "message", "next_worker", "worker"))


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"nowcastkit.{name}")
    if name not in _HOMES:
        raise AttributeError(f"module 'nowcastkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
