"""Stop a run going now, as its deadline would: it ends as its worker's crash; or drop
the retry a failed run is waiting to have.

    nowcastkit cancel 4f1c
    nowcastkit cancel nowcast.yaml 4f1c2b7e9a0d4c11

RUN is a run id, or the start of one that only one run going now has (as
``nowcastkit status`` lists them). A run here gets SIGTERM, then SIGKILL 5 s
later; one on another host gets the same over ssh, to its whole process group;
a Slurm job is cancelled with scancel. The run then ends as a ``crash`` of its
worker with the reason ``cancelled by nowcastkit cancel`` (``after_<worker>`` is
called as for any crash).

A run that failed or crashed and whose retry is still waiting out its back-off
(``history`` says ``retry 2/3 due ...``) has that retry dropped instead, in one
commit of the manager's: no retry is due after it, and it stays as it ended
(``after_<worker>`` is not called, no alert goes). Exit status 0 when the
manager is stopping the run or dropped its retry, 1 when it did not answer or
knows no such run going now or retry pending.
"""

from __future__ import annotations

import argparse

from nowcastkit.cli.output import dump_json
from nowcastkit.config import load_config
from nowcastkit.control import ManagerUnreachable, ask, control_endpoint
from nowcastkit.errors import NowcastkitError

__all__ = ["POSITIONALS", "add_arguments", "run"]

POSITIONALS = "run_id"


class CancelRefused(NowcastkitError):
    """The manager knows no such run going now, nor a retry pending after it."""

    exit_status = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the manager")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the manager's answer as JSON")
    parser.add_argument("run_id", nargs="*", metavar="RUN",
                        help="the run to stop, or the run whose pending retry to drop")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if len(args.run_id) != 1:
        raise NowcastkitError("give one RUN: nowcastkit cancel RUN")
    request = {"command": "cancel", "run": args.run_id[0], "by": "nowcastkit cancel"}
    reply = ask(control_endpoint(config), request, args.timeout)
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ManagerUnreachable(f"unreadable answer from the manager: {reply!r}")
    if not reply["ok"]:
        raise CancelRefused(str(reply.get("error")))
    if args.json:
        print(dump_json(reply))
    elif reply.get("retry cancelled"):
        print(f"manager dropped {reply['worker']} worker's retry {reply['attempt']}/"
              f"{reply['attempts']} after run {reply['run']}'s {reply['after']}: no retry "
              "is due")  # fmt: skip
    else:
        print(f"manager is stopping {reply['worker']} worker run {reply['run']} on "
              f"{reply['host']}")  # fmt: skip
    return 0
