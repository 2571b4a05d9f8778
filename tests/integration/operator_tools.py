"""Helpers shared by the operator tool tests: run ``nowcastkit`` and a small chain."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import child_env, wait_for

CHAIN = """\
from nowcastkit import NextWorker


def after_sleep(msg, config, checklist):
    if msg.type == "success":
        return [NextWorker("workers.awaken")]
    return []


def after_awaken(msg, config, checklist):
    return []
"""


def nowcastkit(
    system, *args: str, options: tuple[str, ...] = (), env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``nowcastkit SUBCOMMAND [OPTIONS] CONFIG ARGS`` for *system*; return the process."""
    command, *rest = args
    config = getattr(system, "config_path", system.folder / "nowcast.yaml")
    return subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", command, *options, str(config), *rest],
        capture_output=True, text=True, timeout=30, cwd=system.folder, env=env or child_env(),
    )  # fmt: skip


def history(system, *args: str) -> list[dict]:
    result = nowcastkit(system, "history", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_chain(system) -> list[dict]:
    """Launch sleep (which launches awaken) through the control socket; both runs, finished."""
    system.write_next_workers(CHAIN)
    reply = system.control({"command": "launch", "worker": "workers.sleep",
                            "args": ["--sleep-time", "0"]})  # fmt: skip
    assert reply["ok"], reply
    return wait_for(
        lambda: (
            (runs := history(system))
            and len(runs) == 2
            and all(r["finished"] for r in runs)
            and runs
        ),
        "two finished runs in the history",
        20,
    )
