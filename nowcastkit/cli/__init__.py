"""``nowcastkit``: the operator's command.

    nowcastkit status                        # what runs, what happened today, what is next
    nowcastkit monitor --worker sleep        # a live tap of the manager's events
    nowcastkit checklist sleepyhead          # the live checklist, or sections of it
    nowcastkit history --failed --since 2026-11-23
    nowcastkit logs --follow 4f1c             # a run's log, here or on its host, as it grows
    nowcastkit launch workers.sleep --sleep-time 2
    nowcastkit timeline -o today.html        # a day's runs as a picture
    nowcastkit validate                      # is nowcast.yaml (and the flow) right?
    nowcastkit validate --dry-run sleep success
    nowcastkit alert test ops-mail           # does the alert channel work?
    nowcastkit dashboard                     # the read-only web dashboard, live
    nowcastkit keys generate worker-host-1   # a CURVE key pair; keys allow, revoke, list

Each subcommand lives in its own module here; its docstring is its help.
Every subcommand takes the config file as an optional argument, defaulting
to ``$NOWCAST_YAML``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from nowcastkit.errors import NowcastkitError

# CommandLineInterface is the worker's command line (nowcastkit.worker_cli), reachable here
# because code written for the reference design finds it at nemo_nowcast.cli.
__all__ = ["CommandLineInterface", "config_argument", "main"]

_SUBCOMMANDS = (
    "status", "monitor", "checklist", "history", "logs", "launch", "cancel", "timeline",
    "validate", "alert", "dashboard", "keys",
)  # fmt: skip


def __getattr__(name: str) -> Any:
    """``nowcastkit.cli.CommandLineInterface``, imported only when asked for, so that the
    operator's command does not load the worker's."""
    if name == "CommandLineInterface":
        from nowcastkit.worker_cli import CommandLineInterface

        return CommandLineInterface
    raise AttributeError(f"module 'nowcastkit.cli' has no attribute {name!r}")


def config_argument(parser: argparse.ArgumentParser) -> None:
    """Add the optional config file argument every subcommand shares."""
    default = os.environ.get("NOWCAST_YAML")
    parser.add_argument(
        "config",
        nargs="?",
        default=Path(default) if default else None,
        type=Path,
        help="the system's nowcast.yaml (default: $NOWCAST_YAML)",
    )
    parser.set_defaults(default_config=Path(default) if default else None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nowcastkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMANDS:
        module = importlib.import_module(f"nowcastkit.cli.{name}")
        sub = commands.add_parser(
            name,
            help=module.__doc__.splitlines()[0],
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        config_argument(sub)
        module.add_arguments(sub)
        sub.set_defaults(positionals=getattr(module, "POSITIONALS", None))
        sub.set_defaults(run=module.run)
    return parser


def _shift_config(args: argparse.Namespace) -> None:
    """``checklist sleepyhead``: a first word that is no config file belongs to the command.

    The config is an optional first positional, so argparse gives it the first
    word even when the command's own positionals (keys, a worker) follow.
    """
    extra = getattr(args, "positionals", None)
    config = args.config
    if extra is None or config is None or config == args.default_config:
        return
    if config.suffix in (".yaml", ".yml") or config.is_file():
        return
    getattr(args, extra).insert(0, str(config))
    args.config = args.default_config


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; errors are one line on stderr, exit 2 (usage, config) or 1.

    With --debug, a traceback instead.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.config is None:
        parser.error("no config file: give one or set NOWCAST_YAML")
    _shift_config(args)
    # Importing circus (for status) calls logging.basicConfig: the commands print their own.
    logging.getLogger().handlers[:] = [logging.NullHandler()]
    try:
        return args.run(args)
    except NowcastkitError as err:
        if args.debug:
            raise
        sys.stderr.write(f"nowcastkit {args.command}: {err}\n")
        return getattr(err, "exit_status", 2)


if __name__ == "__main__":
    sys.exit(main())
