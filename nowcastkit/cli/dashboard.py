"""Serve the read-only web dashboard: today, runs and their logs, timeline, checklist.

    nowcastkit dashboard                      # http://127.0.0.1:4347/ until Ctrl-C
    nowcastkit dashboard nowcast.yaml

The same long-running process as ``python -m nowcastkit.dashboard CONFIG`` (run
that one under circus or supervisord). It binds ``dashboard.host`` and
``dashboard.port`` (loopback and 4347 by default; an address beyond loopback
needs ``dashboard.insecure: true``) and answers GET and HEAD only. Logs go where
the config's ``logging`` section says. Exit status 0 when stopped by SIGTERM or
Ctrl-C; 1 when it cannot listen; 2 for a config error.
"""

from __future__ import annotations

import argparse

from nowcastkit import dashboard

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--console", action="store_true", help="log everything to the console")


def run(args: argparse.Namespace) -> int:
    return dashboard.main([str(args.config), *(["--debug"] if args.console else [])])
