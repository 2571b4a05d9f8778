"""Signals for long-running processes: handlers record, the loop acts.

A signal handler only appends the signal number to a list; a socketpair set as
the wake-up fd makes a blocked ``zmq.Poller.poll`` return at once, so the loop
can act on the signal between messages. A second SIGTERM or SIGINT, for a loop
stuck in a message, is left to its default action and stops the process at once.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable

import attrs

from nowcastkit import logs
from nowcastkit.config import SECTIONS, Config, load_config
from nowcastkit.errors import NowcastkitError

__all__ = ["HANDLED", "STOP", "SignalWatch", "reload_config", "run_process", "watch_signals"]

# SIGCHLD wakes the manager to reap a finished worker at once.
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
#: The signals that ask a process to stop.
STOP = frozenset((signal.SIGTERM, signal.SIGINT))


@attrs.define(eq=False)
class SignalWatch:
    """The recorded signals and the wake-up fd to register with a poller."""

    reader: socket.socket
    writer: socket.socket
    signums: tuple[int, ...] = HANDLED
    pending: list[int] = attrs.field(factory=list)

    def fileno(self) -> int:
        return self.reader.fileno()

    def take(self) -> list[int]:
        """Drain the wake-up fd and return the signals seen since the last call."""
        try:
            while self.reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        taken, self.pending[:] = list(self.pending), []
        return taken

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum in self.signums:
            signal.signal(signum, signal.SIG_DFL)
        self.reader.close()
        self.writer.close()


def watch_signals(signums: tuple[int, ...] = HANDLED) -> SignalWatch:
    """Install recording handlers for *signums*; call from the main thread only."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    watch = SignalWatch(reader, writer, signums)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for signum in signums:
        signal.signal(signum, functools.partial(_record, watch))
    return watch


def _record(watch: SignalWatch, signum: int, _frame: object) -> None:
    """Record *signum* for the loop; after a first stop signal, the next one stops at once.

    The loop acts on a stop between messages, so a hung ``after_<worker>`` would keep
    the process from ever stopping but by SIGKILL. A second SIGTERM or SIGINT gets the
    default action, death by that signal: the store is left as a SIGKILL leaves it,
    whole, since every change is committed before its reply.
    """
    watch.pending.append(signum)
    if signum in STOP:
        for stop in STOP:
            signal.signal(stop, signal.SIG_DFL)


def run_process(
    name: str,
    description: str,
    body: Callable[[Config, argparse.Namespace, SignalWatch], None],
    argv: list[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    check: Callable[[Config], object] | None = None,
    needs: Iterable[str] = SECTIONS,
) -> int:
    """Entry point shared by the long-running processes; returns the exit status.

    Parses ``CONFIG_FILE [--debug]``, loads the config with the sections in *needs*
    (a missing one is a config error), runs *check* on it (a
    NowcastkitError there is a config error too: its line on stderr, exit 2),
    sets up logging once, logs the start-up lines operators look for, and runs
    *body* with signals watched.
    """
    parser = argparse.ArgumentParser(prog=f"python -m nowcastkit.{name}", description=description)
    parser.add_argument("config_file", help="path of the system's nowcast.yaml")
    parser.add_argument("--debug", action="store_true", help="log everything to the console")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    log = logging.getLogger(name)
    try:
        config = load_config(args.config_file, needs)
        if check is not None:
            check(config)
        if args.debug:
            logs.configure_console()
        else:
            logs.configure(config, long_running=True, process=name)
    except NowcastkitError as err:
        sys.stderr.write(f"{name}: {err}\n")
        return 2
    log.info("running in process %d", os.getpid())
    log.info("read config from %s", config.file)
    watch = watch_signals()
    try:
        body(config, args, watch)
    except NowcastkitError as err:
        log.critical("%s", err)
        return 1
    finally:
        watch.close()
    return 0


def reload_config(config: Config, name: str) -> bool:
    """Re-read *config* in place for SIGHUP; keep the old one (and say so) when the new is bad."""
    log = logging.getLogger(name)
    try:
        config.load(config.file)
        logs.configure(config, long_running=True, process=name)
    except NowcastkitError as err:
        log.error("config reload failed, still running on the old config: %s", err)
        return False
    log.info("reloaded config from %s", config.file)
    return True
