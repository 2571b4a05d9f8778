"""Helpers for the tests of runs on other hosts: a worker that echoes, and ticking a supervisor."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from conftest import REPO, wait_for

from nowcastkit.manager.supervisor import Supervisor

#: The "remote" worker: writes what it was given, then exits without reporting, as asked.
ECHO_ARGS = """\
import json, os, sys, time
with open(os.environ["ECHO_TO"], "w") as f:
    json.dump({"argv": sys.argv[1:], "run": os.environ.get("NOWCASTKIT_RUN_ID")}, f)
print("echoed", flush=True)
args = sys.argv[2:]
if args[:1] == ["--sleep"]:
    time.sleep(float(args[1]))
sys.exit(int(args[1]) if args[:1] == ["--exit"] else 0)
"""


def echo_worker(folder: Path) -> Path:
    """Write echo_args.py and an envvars file that makes it importable; the envvars path."""
    (folder / "echo_args.py").write_text(ECHO_ARGS)
    envvars = folder / "remote env"  # a space: the path must reach the shell quoted
    envvars.write_text(f"export PYTHONPATH='{folder}'\nexport ECHO_TO='{folder / 'echoed.json'}'\n")
    return envvars


def pids_of(run_id: str) -> list[int]:
    """The local processes carrying *run_id* in their environment: here, the "remote" ones."""
    marker = f"NOWCASTKIT_RUN_ID={run_id}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def ended(supervisor: Supervisor, timeout: float = 30):
    """Tick *supervisor* until one run ends; that run."""
    [run] = wait_for(lambda: supervisor.tick(time.monotonic()), "a run to end", timeout)
    return run


def starts(supervisor: Supervisor, *run_ids: str) -> dict[str, tuple]:
    """Tick until each run's start is known; its pid and its launcher's handle, by run."""
    seen = {}

    def look():
        supervisor.tick(time.monotonic())
        pids, handles, _ = supervisor.news()
        seen.update({run_id: (pid, handles.get(run_id)) for run_id, pid in pids.items()})
        return all(run_id in seen for run_id in run_ids)

    wait_for(look, f"the starts of {run_ids}", 20)
    return seen


def located(supervisor: Supervisor, *run_ids: str) -> list[int | None]:
    """Tick until each run's start is known; their remote pids."""
    seen = starts(supervisor, *run_ids)
    return [seen[run_id][0] for run_id in run_ids]


def unstarted(supervisor: Supervisor, run_id: str, timeout: float = 20) -> str:
    """Tick until *run_id* is found impossible to start; the reason."""

    def look():
        assert supervisor.tick(time.monotonic()) == []
        return supervisor.news()[2].get(run_id)

    return wait_for(look, f"run {run_id} to be given up", timeout)


def counted_chain(folder: Path) -> str:
    """A next_workers module: sleep, then awaken here; each after_sleep call is counted."""
    calls = str(folder / "after_sleep.calls")
    return f"""\
from nowcastkit import NextWorker


def after_sleep(msg, config, checklist):
    with open({calls!r}, "a") as f:
        f.write(msg.type + "\\n")
    return [NextWorker("workers.awaken")] if msg.type == "success" else []


def after_awaken(msg, config, checklist):
    return []
"""


def serve_across(system, host: str, entry: dict) -> None:
    """Start *system*'s broker and manager, with *host* configured by *entry* and a flow in
    which a good sleep (on any host) is followed by awaken here."""
    envvars = system.folder / "repo env"
    envvars.write_text(f"export PYTHONPATH='{REPO}'\n")
    system.config["run"] = {"enabled hosts": {host: {
        "python": sys.executable, "config file": str(system.config_path),
        "envvars": str(envvars), "run dir": str(system.folder / "remote runs"),
        "poll interval": 1, **entry,
    }}}  # fmt: skip
    system.write_config()
    system.write_next_workers(counted_chain(system.folder))
    system.start_broker()
    system.start_manager()


def chain_across(system, host: str, entry: dict) -> list[dict]:
    """Run sleep on *host* (configured by *entry*) and awaken here, through a real manager;
    the two runs as ``nowcastkit history`` shows them, once both have finished."""
    from tests.integration.operator_tools import history

    serve_across(system, host, entry)
    reply = system.control({"command": "launch", "worker": "workers.sleep",
                            "args": ["--sleep-time", "0"], "host": host})  # fmt: skip
    assert reply["ok"], reply
    wait_for(lambda: "awake" in system.checklist(), "awaken's report", 40)
    runs = wait_for(lambda: (h := history(system)) and len(h) == 2
                    and all(r["finished"] for r in h) and h, "two finished runs", 20)  # fmt: skip
    assert (system.folder / "after_sleep.calls").read_text() == "success\n"
    return runs
