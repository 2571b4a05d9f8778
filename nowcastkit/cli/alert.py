"""Send a test alert through each channel in ``alerts:``, or the one named, and say how it went.

    nowcastkit alert test                   # every channel
    nowcastkit alert test ops-mail          # just that one
    nowcastkit alert nowcast.yaml test ops-chat

Each channel is tried once, now, from here (not through the manager), with the
same 5 s timeout the manager's notifier uses, and its filters (``events``,
``workers``) do not apply. One line per channel: ``sent``, or ``failed`` and
exactly what went wrong (the refused connection, the HTTP status, the SMTP
server's answer, the certificate problem). Exit status 0 when every channel
sent, 1 when any failed; 2 for a usage or config error (no ``alerts:``, an
unknown channel, a bad ``alerts:`` section).
"""

from __future__ import annotations

import argparse
import socket

from nowcastkit.alerts import channels, probe_alert
from nowcastkit.config import load_config
from nowcastkit.errors import AlertError, ConfigError, NowcastkitError

__all__ = ["POSITIONALS", "add_arguments", "run"]

#: The positional list a first word that is not a config file belongs to.
POSITIONALS = "words"

_TIMEOUT = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("words", nargs="*", metavar="test [CHANNEL]",
                        help="the action, test, and optionally one channel's name")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if not args.words or args.words[0] != "test" or len(args.words) > 2:
        raise NowcastkitError("usage: nowcastkit alert [CONFIG] test [CHANNEL]")
    if args.config is None:
        raise NowcastkitError("no config file: give one or set NOWCAST_YAML")
    config = load_config(args.config)
    found = channels(config)
    if not found:
        raise ConfigError(config.file, "alerts", "no channels configured; nothing to test")
    if len(args.words) == 2:
        name = args.words[1]
        found = tuple(channel for channel in found if channel.name == name)
        if not found:
            known = ", ".join(str(name) for name in config["alerts"])
            raise ConfigError(config.file, "alerts", f"has no channel {name!r}; it has {known}")
    host = socket.gethostname()
    failed = 0
    for channel in found:
        try:
            channel.send(probe_alert(host, channel.name), _TIMEOUT)
        except AlertError as err:
            failed += 1
            print(f"{channel.name}: failed: {err}")
        else:
            print(f"{channel.name}: sent ({channel.where})")
    return 1 if failed else 0
