"""Show the live checklist, or sections of it, as the manager holds it now.

    nowcastkit checklist                      # the whole checklist, YAML
    nowcastkit checklist sleepyhead awake     # only these sections
    nowcastkit checklist --json | jq .checklist.sleepyhead

When the manager does not answer, the checklist file is read instead and a
line on stderr says so (it is what the manager last wrote). Exit status 1 when
a KEY is not in the checklist; 2 for a usage or config error, or a checklist
file that cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nowcastkit import checklist as checklist_file
from nowcastkit.cli.output import dump_json, local_time
from nowcastkit.config import load_config
from nowcastkit.control import ManagerUnreachable, ask, control_endpoint
from nowcastkit.errors import NowcastkitError

__all__ = ["POSITIONALS", "add_arguments", "run"]

#: The positional list a first word that is not a config file belongs to.
POSITIONALS = "extra_keys"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("extra_keys", nargs="*", metavar="KEY", help="checklist sections to show")
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait for the manager"
    )
    parser.add_argument("--json", action="store_true", help="print the checklist as JSON")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    keys = list(args.extra_keys)
    try:
        reply = ask(control_endpoint(config), {"command": "checklist", "keys": keys}, args.timeout)
    except ManagerUnreachable:
        path = Path(config["checklist file"])
        checklist, source = _from_file(path, keys), str(path)
        mtime = path.stat().st_mtime if path.exists() else None
        print(f"nowcastkit checklist: the manager is not answering; showing {path} "
              f"as written at {local_time(mtime)}", file=sys.stderr)  # fmt: skip
    else:
        if not reply.get("ok"):
            raise _KeyMissing(f"{reply.get('error')}")
        checklist, source = reply["checklist"], "manager"
    if args.json:
        print(dump_json({"source": source, "checklist": checklist}))
    elif checklist:
        print(checklist_file.dump(checklist), end="")
    else:
        print("the checklist is empty")
    return 0


class _KeyMissing(NowcastkitError):
    exit_status = 1


def _from_file(path: Path, keys: list[str]) -> dict:
    checklist = checklist_file.read(path)
    for key in keys:
        if key not in checklist:
            raise _KeyMissing(f"{path}: checklist has no key {key!r}")
    return {key: checklist[key] for key in keys} if keys else checklist
