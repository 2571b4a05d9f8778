"""``nowcastkit``: the operator's command.

    nowcastkit validate                      # is nowcast.yaml (and the flow) right?
    nowcastkit validate --dry-run sleep success

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

from nowcastkit.errors import NowcastkitError
from nowcastkit.worker_cli import CommandLineInterface

# The worker command line, importable from here as it was in the reference design.
__all__ = ["CommandLineInterface", "config_argument", "main"]

_SUBCOMMANDS = ("validate",)


def config_argument(parser: argparse.ArgumentParser) -> None:
    """Add the optional config file argument every subcommand shares."""
    parser.add_argument(
        "config",
        nargs="?",
        default=os.environ.get("NOWCAST_YAML"),
        type=Path,
        help="the system's nowcast.yaml (default: $NOWCAST_YAML)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowcastkit", description=__doc__.splitlines()[0])
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
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; errors are one line on stderr, exit 2 (with --debug, a traceback)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.config is None:
        parser.error("no config file: give one or set NOWCAST_YAML")
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        return args.run(args)
    except NowcastkitError as err:
        if args.debug:
            raise
        sys.stderr.write(f"nowcastkit {args.command}: {err}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
