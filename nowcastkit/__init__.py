"""nowcastkit: operational pipelines of short-lived workers, a manager and a ZeroMQ broker.

    from nowcastkit import NowcastWorker, NextWorker, WorkerError

Worker modules build a :class:`NowcastWorker`; a system's ``next_workers``
module returns :class:`NextWorker` lists from ``after_<worker>`` functions.
"""

from nowcastkit.config import Config
from nowcastkit.errors import ConfigError, MessageError, NowcastkitError, WorkerError
from nowcastkit.message import Message
from nowcastkit.worker import NextWorker, NowcastWorker
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
