"""Show the system's health: processes, manager, running workers, today's outcomes, next fires.

    nowcastkit status                         # circus endpoint from circus.ini beside the config
    nowcastkit status --circus tcp://127.0.0.1:5555 --json
    nowcastkit status --no-circus             # a system not run under circus

Exit status 0 when all is well; 1 when the manager does not answer, circus is
not running, or a circus watcher is not active — so it serves as a health check;
2 for a usage or config error.
The circus endpoint is --circus (an endpoint or a circus.ini), else the
config's ``circus endpoint``, else ``[circus] endpoint`` of circus.ini beside
the config or in the current folder, else tcp://127.0.0.1:5555.
"""

from __future__ import annotations

import argparse
import configparser
import datetime as dt
import time
from pathlib import Path

from circus.client import CircusClient
from circus.exc import CallError

from nowcastkit import checklist as checklist_file
from nowcastkit import scheduler
from nowcastkit import store as st
from nowcastkit.cli.history import outcome, read_runs, retry_note
from nowcastkit.cli.output import dump_json, duration, iso, local_time, table
from nowcastkit.config import Config, load_config
from nowcastkit.control import ManagerUnreachable, ask, control_endpoint
from nowcastkit.errors import NowcastkitError

__all__ = ["add_arguments", "ask_circus", "circus_endpoint", "last_outcomes", "next_fires", "run"]

DEFAULT_CIRCUS = "tcp://127.0.0.1:5555"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--circus", metavar="ENDPOINT|INI", help="where circusd listens")
    parser.add_argument("--no-circus", action="store_true", help="do not ask circus")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for answers")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    report = gather(config, args)
    if args.json:
        print(dump_json(report))
    else:
        print(render(report))
    return 0 if report["healthy"] else 1


def gather(config: Config, args: argparse.Namespace) -> dict:
    """Everything status shows, as plain data."""
    now = time.time()
    circus = None if args.no_circus else ask_circus(_endpoint(args, config), args.timeout)
    try:
        manager = ask(control_endpoint(config), {"command": "status"}, args.timeout)
    except ManagerUnreachable as err:
        manager = {"ok": False, "error": str(err)}
    if manager.get("ok"):
        keys, keys_from = manager["checklist keys"], "manager"
    else:
        path = Path(config["checklist file"])
        keys, keys_from = sorted(map(str, _read_checklist(path))), str(path)
    problems = [] if manager.get("ok") else [manager["error"]]
    if circus is not None:
        problems += circus["problems"]
    return {
        "healthy": not problems, "problems": problems, "circus": circus, "manager": manager,
        "today": last_outcomes(config, now), "next fires": next_fires(config, now),
        "checklist keys": keys, "checklist keys from": keys_from,
    }  # fmt: skip


def circus_endpoint(config: Config, given: str | None = None) -> str:
    """The circus endpoint: *given* (endpoint or ini), the config, a circus.ini, the default."""
    if given and "://" in given:
        return given
    if not given and isinstance(config.get("circus endpoint"), str):
        return config["circus endpoint"]
    candidates = [Path(given)] if given else [config.file.parent / "circus.ini", Path("circus.ini")]
    for ini in candidates:
        parser = configparser.ConfigParser(interpolation=None)
        if parser.read(ini) and parser.has_option("circus", "endpoint"):
            return parser["circus"]["endpoint"]
    return DEFAULT_CIRCUS


def _endpoint(args: argparse.Namespace, config: Config) -> str:
    return circus_endpoint(config, args.circus)


def ask_circus(endpoint: str, timeout: float) -> dict:
    client = CircusClient(endpoint=endpoint, timeout=timeout)
    try:
        reply = client.send_message("status")
    except CallError:
        return {"endpoint": endpoint, "running": False, "watchers": {},
                "problems": [f"circus: not running (no answer at {endpoint})"]}  # fmt: skip
    finally:
        client.stop()
    watchers = reply.get("statuses", {})
    problems = [f"circus: watcher {name} is {state}" for name, state in sorted(watchers.items())
                if state != "active"]  # fmt: skip
    return {"endpoint": endpoint, "running": True, "watchers": watchers, "problems": problems}


def _read_checklist(path: Path) -> dict:
    try:
        return checklist_file.read(path)
    except NowcastkitError:
        return {}


def last_outcomes(config: Config, now: float) -> list[dict]:
    """The newest run today of each registered worker (and of any other that ran)."""
    midnight = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    runs, retries = read_runs(config, since=midnight.timestamp())
    newest: dict[str, st.Run] = {}
    for r in runs:
        newest.setdefault(r.worker, r)
    names = list(config["message registry"]["workers"]) + sorted(set(newest) - set(
        config["message registry"]["workers"]))  # fmt: skip
    return [
        {"worker": name, "outcome": outcome(newest[name]) + retry_note(retries.get(
            newest[name].run_id)), "run": newest[name].run_id,
         "started": iso(newest[name].launched), "finished": iso(newest[name].finished)}
        if name in newest else
        {"worker": name, "outcome": None, "run": None, "started": None, "finished": None}
        for name in names
    ]  # fmt: skip


def next_fires(config: Config, now: float) -> list[dict]:
    after = dt.datetime.fromtimestamp(now, dt.UTC)
    try:
        entries = scheduler.load_entries(config)
    except NowcastkitError as err:  # a bad entry: validate has the details
        return [{"entry": "scheduled workers", "next": None, "error": str(err)}]
    return [
        {"entry": entry.describe(), "module": entry.module,
         "next": scheduler.next_fire(entry, after).astimezone().isoformat(timespec="seconds")}
        for entry in entries
    ]  # fmt: skip


def render(report: dict) -> str:
    """The status report as a terminal reads it."""
    lines = []
    circus = report["circus"]
    if circus is not None and circus["running"]:
        lines.append(f"circus at {circus['endpoint']}:")
        rows = [[name, state] for name, state in sorted(circus["watchers"].items())]
        lines.append(table(["WATCHER", "STATE"], rows, indent="  "))
    elif circus is not None:
        lines.append(f"circus: NOT RUNNING (no answer at {circus['endpoint']})")
    lines += _render_manager(report["manager"])
    lines.append("")
    lines.append("last outcome today:")
    rows = [[t["worker"], t["outcome"] or "no run today", _clock(t["started"]),
             _clock(t["finished"]), t["run"] or ""] for t in report["today"]]  # fmt: skip
    lines.append(table(["WORKER", "OUTCOME", "STARTED", "FINISHED", "RUN"], rows, indent="  "))
    if report["next fires"]:
        lines.append("")
        lines.append("next scheduled fires:")
        rows = [[f["next"] or f.get("error"), f["entry"]] for f in report["next fires"]]
        lines.append(table(["NEXT FIRE", "ENTRY"], rows, indent="  "))
    source = "" if report["checklist keys from"] == "manager" else " (from the checklist file)"
    lines.append("")
    lines.append(f"checklist keys{source}: {', '.join(report['checklist keys']) or '(empty)'}")
    if report["problems"]:
        lines.append("")
        lines += [f"PROBLEM: {problem}" for problem in report["problems"]]
    return "\n".join(lines)


def _render_manager(manager: dict) -> list[str]:
    if not manager.get("ok"):
        return [f"manager: NOT ANSWERING ({manager['error']})"]
    up = duration(time.time() - manager["started"])
    lines = [f"manager: answering, pid {manager['pid']} on {manager['host']}, "
             f"running since {local_time(manager['started'])} ({up})"]  # fmt: skip
    if manager["malformed"]:
        lines.append(f"  {manager['malformed']} malformed messages since it started")
    for group in manager["race groups"]:
        lines.append(f"  race group waiting for {', '.join(group['waiting'])}; "
                     f"holding {', '.join(group['held']) or 'nothing yet'}")  # fmt: skip
    for retry in manager.get("retries") or []:
        lines.append(f"  retry pending: {retry['worker']} worker: attempt {retry['attempt']}/"
                     f"{retry['attempts']} after run {retry['after run']}'s {retry['after']}, "
                     f"due {local_time(retry['due'])} "
                     f"(in {duration(max(0.0, retry['due'] - time.time()))})")  # fmt: skip
    lines.append("")
    if not manager["running"]:
        lines.append("workers running now: none")
        return lines
    lines.append("workers running now:")
    rows = [
        [r["worker"], " ".join(r["args"]), r["host"], _where(r),
         duration(time.time() - r["launched"]) if r["launched"] else "?", r["run"]]
        for r in manager["running"]
    ]  # fmt: skip
    lines.append(table(["WORKER", "ARGS", "HOST", "PID", "RUNNING FOR", "RUN"], rows, indent="  "))
    return lines


def _where(run: dict) -> str:
    """A pid, or a Slurm job and its state (``job 17 RUNNING``); ``-`` while being started."""
    if run.get("job id") is not None:
        return f"job {run['job id']} {run.get('slurm state') or 'submitted'}"
    return "-" if run["pid"] is None else str(run["pid"])


def _clock(text: str | None) -> str:
    return dt.datetime.fromisoformat(text).strftime("%H:%M:%S") if text else "-"
