"""Ask the manager to launch a worker, tracked like any launch and continuing the flow.

    nowcastkit launch workers.sleep --sleep-time 2
    nowcastkit launch nowcast.yaml workers.sleep --sleep-time 2
    nowcastkit launch --json --host hpc workers.run_model 2026-11-23

WORKER is the worker's module, as in ``NextWorker``; its last part must be a
worker in ``message registry.workers``. Everything after WORKER goes to the
worker, so this command's own options come before it. The manager records the
run, gives it a run id and a log file, and calls ``after_<worker>`` when it
reports, as for a run that ``after_<worker>`` or the scheduler started.
Exit status 0 when the manager launched it, 1 when it did not answer or
refused; 2 for a usage or config error, a WORKER not in the registry included
(nothing is asked of the manager then).
"""

from __future__ import annotations

import argparse

from nowcastkit.cli.output import dump_json
from nowcastkit.config import load_config
from nowcastkit.control import control_endpoint, launch
from nowcastkit.errors import ConfigError, NowcastkitError
from nowcastkit.next_worker import NextWorker

__all__ = ["POSITIONALS", "add_arguments", "run"]

#: The positional list a first word that is not a config file belongs to.
POSITIONALS = "worker_command"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="localhost", help="host to run the worker on")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the manager"
    )
    parser.add_argument("--json", action="store_true", help="print the manager's answer as JSON")
    parser.add_argument("worker_command", nargs=argparse.REMAINDER, metavar="WORKER [ARGS ...]",
                        help="the worker's module and its arguments")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not args.worker_command:
        raise NowcastkitError("no WORKER given: nowcastkit launch WORKER [ARGS ...]")
    module, *worker_args = args.worker_command
    name = module.rpartition(".")[2]
    if name not in config["message registry"]["workers"]:
        raise ConfigError(
            config.file,
            "message registry.workers",
            f"has no worker {name!r}; not launching {module}",
        )
    worker = NextWorker(module, worker_args, args.host)
    run_id = launch(control_endpoint(config), worker, "nowcastkit launch", args.timeout)
    if args.json:
        print(dump_json({"run": run_id, "module": module, "args": worker_args,
                         "host": args.host}))  # fmt: skip
    else:
        print(f"manager launched {' '.join([module, *worker_args])} on {args.host}: "
              f"run {run_id}")  # fmt: skip
    return 0
