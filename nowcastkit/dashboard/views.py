"""What each dashboard page shows, as plain data: the page's JSON, and what its HTML renders.

    query = run_query({"worker": "sleep", "outcome": "crash", "page": "2"})
    runs(config, query)                  # {"runs": [...], "total": 130, "page": 2, ...}
    today(config, manager, circus, now)  # manager: the control socket's status answer

Each function reads the manager's store read-only (WAL: never blocking the manager) and
is synchronous: the server runs them off its event loop.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import attrs

from nowcastkit import checklist as checklist_file
from nowcastkit import store as st
from nowcastkit.cli import status
from nowcastkit.cli.history import as_dict, log_file, open_history
from nowcastkit.cli.logs import last_lines
from nowcastkit.cli.output import iso
from nowcastkit.cli.timeline import day_picture
from nowcastkit.config import Config
from nowcastkit.control import ManagerUnreachable, ask, control_endpoint
from nowcastkit.errors import NowcastkitError

__all__ = [
    "PAGE_SIZE",
    "BadQuery",
    "RunQuery",
    "ask_manager",
    "checklist",
    "log_tail",
    "parse_day",
    "run",
    "run_query",
    "runs",
    "timeline",
    "today",
]

PAGE_SIZE = 50
#: Lines of a run's log shown before it is followed.
TAIL_LINES = 200


class BadQuery(NowcastkitError):
    """A page asked for with a bad parameter: a 400, naming it."""


@attrs.frozen
class RunQuery:
    worker: str | None = None
    outcome: str | None = None
    day: dt.date | None = None
    page: int = 1


def run_query(params: dict[str, str]) -> RunQuery:
    """The runs page's filters from its query parameters (empty ones are no filter)."""
    outcome = params.get("outcome") or None
    if outcome is not None and outcome not in st.OUTCOMES:
        raise BadQuery(f"outcome: got {outcome!r}, expected one of {', '.join(st.OUTCOMES)}")
    day = parse_day(params["date"]) if params.get("date") else None
    page = params.get("page") or "1"
    if not page.isdigit() or int(page) < 1:
        raise BadQuery(f"page: got {page!r}, expected a page number from 1")
    return RunQuery(params.get("worker") or None, outcome, day, int(page))


def parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"date: got {text!r}, expected YYYY-MM-DD") from None


def ask_manager(config: Config, timeout: float) -> dict:
    """The manager's own status answer, or ``{"ok": False, "error": ...}`` when it is silent."""
    try:
        return ask(control_endpoint(config), {"command": "status"}, timeout)
    except ManagerUnreachable as err:
        return {"ok": False, "error": str(err)}


def today(config: Config, manager: dict, circus: dict | None, now: float) -> dict:
    """The Today page: processes, workers running now, each worker's last outcome, next fires."""
    running = [
        {**r, "started": iso(r.get("launched")), "log": f"/runs/{r['run']}#log"}
        for r in manager.get("running", []) if manager.get("ok")
    ]  # fmt: skip
    return {
        "now": iso(now), "circus": circus, "manager": _manager_summary(manager),
        "running": running, "last outcomes": status.last_outcomes(config, now),
        "next fires": status.next_fires(config, now),
    }  # fmt: skip


def _manager_summary(manager: dict) -> dict:
    if not manager.get("ok"):
        return {"ok": False, "error": manager.get("error")}
    keys = ("pid", "host", "started", "malformed", "race groups")
    return {"ok": True, **{key: manager.get(key) for key in keys}}


def runs(config: Config, query: RunQuery) -> dict:
    """One page of run history, newest first, and how many pages the filters give."""
    since = until = None
    if query.day is not None:
        since = dt.datetime.combine(query.day, dt.time()).timestamp()
        until = dt.datetime.combine(query.day + dt.timedelta(days=1), dt.time()).timestamp()
    store = open_history(config)
    found, total = [], 0
    if store is not None:
        try:
            total = st.count_runs(store, since, until, query.worker, outcome=query.outcome)
            found = st.history(store, since, until, query.worker, outcome=query.outcome,
                               limit=PAGE_SIZE, offset=(query.page - 1) * PAGE_SIZE)  # fmt: skip
        finally:
            store.conn.close()
    return {
        "filters": {"worker": query.worker, "outcome": query.outcome,
                    "date": query.day and str(query.day)},
        "workers": list(config["message registry"]["workers"]), "outcomes": list(st.OUTCOMES),
        "page": query.page, "pages": max(1, -(-total // PAGE_SIZE)), "total": total,
        "runs": [as_dict(config, r) for r in found],
    }  # fmt: skip


def run(config: Config, run_id: str) -> dict | None:
    """One run, with the end of its log; None when the store has no such run."""
    store = open_history(config)
    if store is None:
        return None
    try:
        found = [r for r in st.runs_named(store, run_id) if r.run_id == run_id]
    finally:
        store.conn.close()
    if not found:
        return None
    shown = as_dict(config, found[0])
    return {"run": shown, "log": log_tail(config, found[0])}


def log_tail(config: Config, r: st.Run) -> dict:
    """The last lines of a run's log here; a remote log is named, for ``nowcastkit logs``."""
    path = log_file(config, r)
    if not path:
        return {"path": None, "text": "", "size": 0, "note": "started by hand: it has no log"}
    host, colon, _there = r.log_path.partition(":")
    if colon and host == r.host != "localhost":
        return {"path": path, "text": "", "size": 0,
                "note": f"on {host}: read it with nowcastkit logs --follow {r.run_id}"}  # fmt: skip
    try:
        with open(path, "rb") as file:
            text, size = last_lines(file, TAIL_LINES)
    except FileNotFoundError:
        return {"path": path, "text": "", "size": 0, "note": "no log file yet"}
    return {"path": path, "text": text.decode(errors="replace"), "size": size, "note": None}


def timeline(config: Config, day: dt.date, now: float) -> dict:
    """The day's runs as the timeline SVG that ``nowcastkit timeline`` draws."""
    found, picture = day_picture(config, day, now)
    return {"date": str(day), "runs": len(found), "svg": picture}


def checklist(config: Config, timeout: float) -> dict:
    """The live checklist from the manager; the checklist file when the manager is silent."""
    try:
        reply = ask(control_endpoint(config), {"command": "checklist", "keys": []}, timeout)
    except ManagerUnreachable:
        reply = {}
    if reply.get("ok"):
        return {"source": "manager", "written": None, "checklist": reply["checklist"]}
    path = Path(config["checklist file"])
    try:
        found = checklist_file.read(path) if path.exists() else {}
    except NowcastkitError as err:
        return {"source": str(path), "written": None, "checklist": {}, "error": str(err)}
    written = iso(path.stat().st_mtime) if path.exists() else None
    return {"source": str(path), "written": written, "checklist": found}
