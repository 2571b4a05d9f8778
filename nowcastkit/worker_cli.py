"""The command line every worker shares: ``python -m PKG.WORKER CONFIG_FILE [--debug] ...``.

The parser has the config file argument; the worker adds ``--debug``
(:meth:`NowcastWorker.init_cli`), so a worker's own options follow in the order
the reference design's tests look them up (``cli.parser._actions``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["CommandLineInterface", "arrow_date"]


def arrow_date(text: str) -> Any:
    """Parse ``YYYY-MM-DD`` to an arrow date at midnight (argparse type)."""
    import arrow  # only workers with a date option pay for arrow

    try:
        return arrow.get(text, "YYYY-MM-DD")
    except (arrow.parser.ParserError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unrecognized date format: {text!r} - please use YYYY-MM-DD"
        ) from None


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own, given the terminal's width: its default imports shutil (and with it
    zlib, bz2 and lzma) for that, on every worker's way to its first message."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:  # fmt: skip
        super().__init__(
            prog, indent_increment, max_help_position, _columns() - 2 if width is None else width
        )


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` gives it: $COLUMNS, the tty, 80."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class CommandLineInterface:
    """A worker's argument parser with the config file argument built in."""

    def __init__(self, module_name: str, package: str = "workers", description: str = "") -> None:
        self.module_name = module_name
        self.package = package
        self.description = description
        self.parser: argparse.ArgumentParser | None = None

    def build_parser(self, add_help: bool = True) -> None:
        self.parser = argparse.ArgumentParser(
            prog=f"python -m {self.package}.{self.module_name}",
            description=self.description,
            add_help=add_help,
            formatter_class=_HelpFormatter,
        )
        self.parser.add_argument("config_file", help="path of the system's nowcast.yaml")

    #: The date option's argparse type, on the class and its instances, as worker modules
    #: and their tests call it (``CommandLineInterface.arrow_date("2026-12-01")``).
    arrow_date = staticmethod(arrow_date)
    _arrow_date = arrow_date

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        self._parser().add_argument(*args, **kwargs)

    def add_date_option(self, name: str, default: Any, help: str) -> None:
        """Add an option taking a YYYY-MM-DD date, parsed to an arrow date."""
        self._parser().add_argument(
            name,
            type=arrow_date,
            default=default,
            help=f"{help} Use YYYY-MM-DD format. Defaults to {default:YYYY-MM-DD}.",
        )

    def parse_args(self, argv: list[str] | None = None) -> argparse.Namespace:
        return self._parser().parse_args(argv)

    def _parser(self) -> argparse.ArgumentParser:
        if self.parser is None:
            self.build_parser()
        return self.parser
