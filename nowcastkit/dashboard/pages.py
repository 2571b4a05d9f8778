"""The dashboard's HTML: each page rendered from its view's data (see :mod:`.views`).

    html = today_page(view, events)      # the whole page
    today_sections(view, events)         # {"running": "<table>…", …}: what the stream swaps

Server-rendered, escaped here and nowhere else; the little JavaScript there is
(``static/dashboard.js``) only swaps sections the stream sends, ticks durations and
follows a log. No inline scripts or styles, so the pages run under a strict CSP.
"""

from __future__ import annotations

import datetime as dt
import time
from html import escape
from urllib.parse import urlencode

from nowcastkit import checklist as checklist_file
from nowcastkit.cli.output import duration
from nowcastkit.cli.timeline import COLOURS, colour

__all__ = [
    "checklist_page",
    "error_page",
    "kind",
    "run_page",
    "runs_page",
    "timeline_page",
    "today_page",
    "today_sections",
]

_KINDS = {fill: name for name, fill in COLOURS.items()}
_NAV = (("/", "Today"), ("/runs", "Runs"), ("/timeline", "Timeline"), ("/checklist", "Checklist"))


def kind(result: str | None) -> str:
    """The colour class of an outcome: success, failure, crash, running or other."""
    return "none" if result is None else _KINDS[colour(result)]


def _page(title: str, here: str, body: str, live: str = "") -> str:
    nav = "".join(
        f'<a href="{href}"{" class=here" if href == here else ""}>{name}</a>' for href, name in _NAV
    )
    badge = f'<span id="live" class="live off" data-stream="{escape(live)}">connecting…</span>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · nowcastkit</title>"
        '<link rel="icon" href="data:,">'  # no favicon request
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head>\n'
        f'<body><header><span class="brand">nowcastkit</span><nav>{nav}</nav>'
        f"{badge if live else ''}</header>\n<main>{body}</main></body></html>\n"
    )


def _outcome(result: str | None) -> str:
    text = "no run today" if result is None else result
    return f'<span class="badge {kind(result)}">{escape(text)}</span>'


def _clock(text: str | None) -> str:
    return dt.datetime.fromisoformat(text).strftime("%H:%M:%S") if text else "&ndash;"


def _stamp(text: str | None) -> str:
    return dt.datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S") if text else "&ndash;"


def _run_link(run_id: str | None, text: str | None = None) -> str:
    if not run_id:
        return "&ndash;"
    return f'<a class="run" href="/runs/{escape(run_id)}">{escape(text or run_id[:8])}</a>'


def _table(headers: list[str], rows: list[list[str]], empty: str, wide: tuple = ()) -> str:
    """A table; the columns numbered in *wide* are left out on a phone's narrow screen."""
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'

    def cell(tag: str, i: int, text: str) -> str:
        return f"<{tag} class=wide>{text}</{tag}>" if i in wide else f"<{tag}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def today_sections(view: dict, events: list[dict]) -> dict[str, str]:
    """The Today page's live parts, by element id."""
    return {
        "processes": _processes(view), "running": _running(view), "outcomes": _outcomes(view),
        "fires": _fires(view), "events": _events(events),
    }  # fmt: skip


def today_page(view: dict, events: list[dict]) -> str:
    parts = today_sections(view, events)
    body = (
        '<div class="grid">'
        f'<section class="card"><h2>Processes</h2><div id="processes">{parts["processes"]}'
        "</div></section>"
        f'<section class="card"><h2>Running now</h2><div id="running">{parts["running"]}'
        "</div></section></div>"
        '<section class="card"><h2>Last outcome today</h2>'
        f'<div id="outcomes">{parts["outcomes"]}</div></section>'
        '<div class="grid">'
        f'<section class="card"><h2>Next scheduled fires</h2><div id="fires">{parts["fires"]}'
        "</div></section>"
        f'<section class="card"><h2>Latest events</h2><div id="events">{parts["events"]}'
        "</div></section></div>"
    )
    return _page("Today", "/", body, live="/events")


def _processes(view: dict) -> str:
    """A row per circus watcher, the manager's with its own answer; without circus, the
    manager alone."""
    circus, manager = view["circus"], view["manager"]
    watchers = circus["watchers"] if circus is not None and circus["running"] else {}
    rows = [[escape(name), _state(state == "active", state), "under circus"]
            for name, state in sorted(watchers.items()) if name != "manager"]  # fmt: skip
    if circus is not None and not circus["running"]:
        rows.insert(0, ["circusd", _state(False, "not running"),
                        f"no answer at {escape(circus['endpoint'])}"])  # fmt: skip
    if manager["ok"]:
        since = dt.datetime.fromtimestamp(manager["started"]).isoformat(timespec="seconds")
        up = f'<span data-since="{since}">{duration(time.time() - manager["started"])}</span>'
        detail = f"answering: pid {manager['pid']} on {escape(str(manager['host']))}, up {up}"
    else:
        detail = escape(manager.get("error") or "")
    state = watchers.get("manager", "answering" if manager["ok"] else "not answering")
    rows.append(["manager", _state(manager["ok"] and state in ("active", "answering"), state),
                 detail])  # fmt: skip
    rows.sort(key=lambda row: row[0])
    return _table(["Process", "State", "Detail"], rows, "no processes known")


def _state(good: bool, text: str) -> str:
    return f'<span class="badge {"success" if good else "crash"}">{escape(text)}</span>'


def _running(view: dict) -> str:
    rows = [
        [escape(r["worker"]), escape(" ".join(r["args"])), escape(str(r["host"])),
         "&ndash;" if r["pid"] is None else str(r["pid"]),
         f'<span data-since="{r["started"]}">…</span>' if r["started"] else "?",
         _run_link(r["run"]), f'<a href="{r["log"]}">log</a>']
        for r in view["running"]
    ]  # fmt: skip
    headers = ["Worker", "Args", "Host", "Pid", "Running for", "Run", "Log"]
    return _table(headers, rows, "no workers running", wide=(1, 2, 3))


def _outcomes(view: dict) -> str:
    rows = [
        [escape(t["worker"]), _outcome(t["outcome"]), _clock(t["started"]), _clock(t["finished"]),
         _run_link(t["run"]),
         f'<a class="log" href="/runs/{escape(t["run"])}#log">log</a>' if t["run"] else ""]
        for t in view["last outcomes"]
    ]  # fmt: skip
    headers = ["Worker", "Outcome", "Started", "Finished", "Run", "Log"]
    return _table(headers, rows, "no workers", wide=(2, 3))


def _fires(view: dict) -> str:
    rows = [[_stamp(f["next"]) if f["next"] else escape(f.get("error", "")), escape(f["entry"])]
            for f in view["next fires"]]  # fmt: skip
    return _table(["Next fire", "Entry"], rows, "nothing scheduled")


def _events(events: list[dict]) -> str:
    rows = [[e["time"], escape(e["event"]), escape(e["worker"]), escape(e["what"])]
            for e in events]  # fmt: skip
    headers = ["Time", "Event", "Worker", "What"]
    return _table(headers, rows, "no events since the page opened", wide=(3,))


def runs_page(view: dict) -> str:
    filters = view["filters"]
    form = _filter_form(view)
    rows = [
        [_run_link(r["run"]), escape(r["worker"]), escape(" ".join(r["args"])),
         escape(r["host"]), _stamp(r["started"]), _stamp(r["finished"]),
         duration(r["seconds"]), _outcome(r["outcome"]),
         f'<a class="log" href="/runs/{escape(r["run"])}#log">log</a>' if r["log"] else "&ndash;"]
        for r in view["runs"]
    ]  # fmt: skip
    headers = ["Run", "Worker", "Args", "Host", "Started", "Finished", "Took", "Outcome", "Log"]
    table = _table(headers, rows, "no runs match", wide=(2, 3, 5, 6))
    page, pages = view["page"], view["pages"]
    query = {k: v for k, v in filters.items() if v}

    def link(to: int, text: str) -> str:
        if not 1 <= to <= pages or to == page:
            return f'<span class="off">{text}</span>'
        return f'<a href="/runs?{escape(urlencode({**query, "page": to}))}">{text}</a>'

    pager = (f'<p class="pager">{link(page - 1, "← newer")} page {page} of {pages} '
             f'({view["total"]:,} runs) {link(page + 1, "older →")}</p>')  # fmt: skip
    body = f'<section class="card"><h2>Runs</h2>{form}{pager}{table}{pager}</section>'
    return _page("Runs", "/runs", body)


def _filter_form(view: dict) -> str:
    filters = view["filters"]

    def options(values: list[str], chosen: str | None, everything: str) -> str:
        shown = [f'<option value="">{everything}</option>']
        for value in values:
            selected = " selected" if value == chosen else ""
            shown.append(f'<option value="{escape(value)}"{selected}>{escape(value)}</option>')
        return "".join(shown)

    date = escape(filters["date"] or "")
    return (
        '<form class="filters" method="get" action="/runs">'
        f'<label>Worker <select name="worker">'
        f"{options(view['workers'], filters['worker'], 'every worker')}</select></label>"
        f'<label>Outcome <select name="outcome">'
        f"{options(view['outcomes'], filters['outcome'], 'any outcome')}</select></label>"
        f'<label>Date <input type="date" name="date" value="{date}"></label>'
        '<button type="submit">Show</button> <a href="/runs">clear</a></form>'
    )


def run_page(view: dict) -> str:
    r, log = view["run"], view["log"]
    facts = [
        ("Worker", escape(r["worker"])), ("Module", escape(r["module"])),
        ("Args", escape(" ".join(r["args"])) or "&ndash;"), ("Host", escape(r["host"])),
        ("Pid", "&ndash;" if r["pid"] is None else str(r["pid"])),
        ("Launched by", _run_link(r["parent"]) if r["parent"] else "&ndash;"),
        ("Started", _stamp(r["started"])), ("Finished", _stamp(r["finished"])),
        ("Took", duration(r["seconds"])), ("Exit status", escape(str(r["exit status"]))),
        ("Outcome", f'<span id="outcome">{_outcome(r["outcome"])}</span>'),
        ("Log file", escape(log["path"]) if log["path"] else "&ndash;"),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    live = r["outcome"] == "running" and log["note"] in (None, "no log file yet")
    stream = f"/runs/{r['run']}/log?offset={log['size']}" if live else ""
    note = f'<p class="empty">{escape(log["note"])}</p>' if log["note"] else ""
    following = '<span id="following">following while the run is live</span>' if live else ""
    body = (
        f'<section class="card"><h2>Run {escape(r["run"])}</h2>'
        f'<table class="facts">{rows}</table></section>'
        f'<section class="card" id="log"><h2>Log {following}</h2>{note}'
        f'<pre id="log-text" data-follow="{escape(stream)}">{escape(log["text"])}</pre></section>'
    )
    return _page(f"Run {r['run'][:8]}", "/runs", body)


def timeline_page(view: dict) -> str:
    day = dt.date.fromisoformat(view["date"])
    one = dt.timedelta(days=1)
    nav = (f'<p class="pager"><a href="/timeline?date={day - one}">← {day - one}</a> '
           f'<strong>{day}</strong>, {view["runs"]} runs '
           f'<a href="/timeline?date={day + one}">{day + one} →</a> · '
           f'<a href="/timeline">today</a></p>')  # fmt: skip
    body = (
        f'<section class="card"><h2>Timeline</h2>{nav}'
        f'<div class="timeline">{view["svg"]}</div>'
        '<div id="tip" hidden></div>'
        '<p class="hint">Hover over a bar for its run; click it to open the run.</p></section>'
    )
    return _page(f"Timeline {day}", "/timeline", body)


def checklist_page(view: dict) -> str:
    """One folded section per key, its value as the checklist file writes it."""
    if view["source"] == "manager":
        source = "live, from the manager"
    else:
        source = (f"the manager is not answering: from {escape(view['source'])}, written "
                  f"{_stamp(view['written'])}")  # fmt: skip
    keys = "".join(
        f'<details data-key="{escape(str(key))}"><summary>{escape(str(key))}'
        f'<span class="size">{_size(value)}</span></summary>'
        f"<pre>{escape(checklist_file.dump({key: value}))}</pre></details>"
        for key, value in view["checklist"].items()
    )
    body = (
        f'<section class="card"><h2>Checklist</h2><p class="hint">{source}</p>'
        f"{keys or '<p class=empty>the checklist is empty</p>'}</section>"
    )
    return _page("Checklist", "/checklist", body)


def _size(value: object) -> str:
    if isinstance(value, dict | list):
        noun = ("entry", "entries") if isinstance(value, dict) else ("item", "items")
        return f"{len(value)} {noun[len(value) != 1]}"
    return escape(str(value))[:60]


def error_page(status: int, reason: str, text: str) -> str:
    body = (
        f'<section class="card"><h2>{status} {escape(reason)}</h2><p>{escape(text)}</p></section>'
    )
    return _page(f"{status} {reason}", "", body)
