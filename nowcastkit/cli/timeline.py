"""Draw a day's runs as a picture: a row per worker, a bar per run, arrows for launches.

    nowcastkit timeline                       # today, to timeline-<date>.svg
    nowcastkit timeline --date 2026-11-23 -o runs.html

Bars are coloured by outcome (green success, red failure, orange crash — killed,
timed out or exited without reporting — blue still running, grey anything else);
an arrow goes from a run to each run it launched, and to its retry. A retry
still pending is a dashed outline at the time it is due.
Hover over a bar for its run id, attempt, times and outcome. Written by hand as SVG, so
it needs no plotting library; .html wraps the same SVG in a page, and .png
hands it to rsvg-convert (Debian's librsvg2-bin) when that is installed.
Exit status 0; 2 for a usage or config error (a bad --date or -o, say).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from nowcastkit import store as st
from nowcastkit.cli.history import attempt, outcome, read_runs, retry_note
from nowcastkit.cli.output import dump_json, duration, local_time
from nowcastkit.config import Config, load_config
from nowcastkit.errors import NowcastkitError

__all__ = ["COLOURS", "add_arguments", "colour", "day_picture", "run", "svg"]

COLOURS = {
    "success": "#2e7d32",
    "failure": "#c62828",
    "crash": "#ef6c00",
    "running": "#1565c0",
    "other": "#9e9e9e",
}
_LABEL, _WIDTH, _ROW, _TOP, _BAR = 170, 1000, 30, 40, 16
_STEPS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 10800, 21600)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", help="the day to draw, YYYY-MM-DD (default: today)")
    parser.add_argument(
        "-o", "--output", type=Path, help="FILE.svg, FILE.html, or FILE.png (needs rsvg-convert)"
    )
    parser.add_argument("--json", action="store_true", help="say what was written, as JSON")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    day = _day(args.date)
    output = args.output or Path(f"timeline-{day}.svg")
    if output.suffix not in (".svg", ".html", ".png"):
        raise NowcastkitError(
            f"-o {output}: got {output.suffix or 'no suffix'!r}, expected .svg, .html or .png"
        )
    converter = shutil.which("rsvg-convert") if output.suffix == ".png" else None
    if output.suffix == ".png" and converter is None:
        raise NowcastkitError(
            f"-o {output}: a PNG needs rsvg-convert on PATH (Debian package librsvg2-bin); "
            "or write .svg or .html"
        )
    runs, picture = day_picture(config, day, time.time())
    if output.suffix == ".html":
        picture = _html(picture, f"nowcast runs on {day}")
    if converter:
        subprocess.run([converter, "-o", str(output)], input=picture.encode(), check=True)
    else:
        output.write_text(picture)
    if args.json:
        print(dump_json({"file": str(output), "date": str(day), "runs": len(runs)}))
    else:
        print(f"wrote {output}: {len(runs)} runs on {day}")
    return 0


def day_picture(config: Config, day: dt.date, now: float) -> tuple[list[st.Run], str]:
    """The runs launched on *day* (local time), oldest first, and their SVG picture with
    attempts and pending retries, from the store read-only."""
    start = dt.datetime.combine(day, dt.time()).timestamp()
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time()).timestamp()
    runs, retries = read_runs(config, since=start, until=end)
    runs.sort(key=lambda r: r.launched)
    attempts = {r.run_id: attempt(config, r) for r in runs}
    return runs, svg(runs, f"nowcast runs on {day}", now, retries, attempts)


def _day(text: str | None) -> dt.date:
    if text is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise NowcastkitError(f"--date: got {text!r}, expected YYYY-MM-DD") from None


def colour(result: str) -> str:
    """The fill for a run's outcome (as ``history.outcome`` words it)."""
    if result in ("running", "success"):
        return COLOURS[result]
    if result.startswith("success"):
        return COLOURS["success"]
    if result.startswith("failure"):
        return COLOURS["failure"]
    if result.startswith(("crash", "exited ")) or result == "launch failed":
        return COLOURS["crash"]
    return COLOURS["other"]


def svg(
    runs: list[st.Run], title: str, now: float,
    retries: Mapping[str, st.PendingRetry] | None = None,
    attempts: Mapping[str, str] | None = None,
) -> str:  # fmt: skip
    """The SVG picture of *runs* (oldest first), with the *retries* pending after them (by
    parent run) and each run's attempt as ``history.attempt`` words it."""
    retries = {p: r for p, r in (retries or {}).items() if any(p == x.run_id for x in runs)}
    workers = list(dict.fromkeys(r.worker for r in runs))
    height = _TOP + _ROW * max(1, len(workers)) + 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_LABEL + _WIDTH + 20}" '
        f'height="{height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#424242"/></marker></defs>',
        f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    if not runs:
        parts.append(f'<text x="{_LABEL}" y="{_TOP + 20}">no runs</text></svg>')
        return "\n".join(parts)
    first = min(r.launched for r in runs)
    last = max([r.finished or now for r in runs] + [r.due for r in retries.values()])
    scale = _WIDTH / max(last - first, 1.0)

    def x(when: float) -> float:
        return round(_LABEL + (when - first) * scale, 1)

    rows = {name: _TOP + i * _ROW for i, name in enumerate(workers)}
    for name, y in rows.items():
        parts.append(f'<text x="10" y="{y + _BAR - 3}" class="worker">{escape(name)}</text>')
        parts.append(f'<line x1="{_LABEL}" x2="{_LABEL + _WIDTH}" y1="{y + _BAR / 2}" '
                     f'y2="{y + _BAR / 2}" stroke="#eeeeee"/>')  # fmt: skip
    parts += _ticks(first, last, x, _TOP + _ROW * len(workers))
    by_id = {r.run_id: r for r in runs}
    for r in runs:
        parts.append(_bar(r, x, rows[r.worker], now, (attempts or {}).get(r.run_id, "-"),
                          retries.get(r.run_id)))  # fmt: skip
    for retry in retries.values():
        due = local_time(retry.due)
        tip = f"{retry.worker}: attempt {retry.attempt}/{retry.attempts} due {due}"
        parts.append(f'<rect class="retry" data-parent={quoteattr(retry.parent)} '
                     f'x="{x(retry.due)}" y="{rows[retry.worker]}" width="6" height="{_BAR}" '
                     f'fill="none" stroke="#424242" stroke-dasharray="2,2">'
                     f"<title>{escape(tip)}</title></rect>")  # fmt: skip
    for r in runs:
        parent = by_id.get(r.parent) if r.parent else None
        if parent is not None:
            x1, y1 = x(parent.finished or r.launched), rows[parent.worker] + _BAR / 2
            x2, y2 = x(r.launched), rows[r.worker] + _BAR / 2
            parts.append(f'<path class="launch" d="M{x1},{y1} C{x1 + 20},{y1} {x2 - 20},{y2} '
                         f'{x2},{y2}" fill="none" stroke="#424242" '
                         f'marker-end="url(#arrow)"/>')  # fmt: skip
    parts += _legend(_TOP + _ROW * len(workers) + 35)
    parts.append("</svg>")
    return "\n".join(parts)


def _bar(r: st.Run, x, y: float, now: float, attempt: str, retry: st.PendingRetry | None) -> str:
    result = outcome(r)
    x1, x2 = x(r.launched), x(r.finished or now)
    which = "" if attempt == "-" else f" (attempt {attempt})"
    tip = (f"{r.worker} run {r.run_id}{which}: {result}{retry_note(retry)}\n"
           f"{local_time(r.launched)} to "
           f"{local_time(r.finished)} ({duration((r.finished or now) - r.launched)})")  # fmt: skip
    return (
        f'<rect class="run" data-run={quoteattr(r.run_id)} data-outcome={quoteattr(result)} '
        f"data-attempt={quoteattr(attempt)} "
        f'x="{x1}" y="{y}" width="{max(x2 - x1, 3)}" height="{_BAR}" rx="2" '
        f'fill="{colour(result)}"><title>{escape(tip)}</title></rect>'
    )


def _ticks(first: float, last: float, x, bottom: float) -> list[str]:
    span = max(last - first, 1.0)
    step = next((s for s in _STEPS if span / s <= 10), _STEPS[-1])
    parts = []
    tick = (first // step + 1) * step
    with_seconds = step < 60
    while tick < last:
        label = local_time(tick, with_date=False)
        label = label if with_seconds else label[:5]
        parts.append(f'<line x1="{x(tick)}" x2="{x(tick)}" y1="{_TOP - 6}" y2="{bottom}" '
                     f'stroke="#dddddd"/><text x="{x(tick)}" y="{bottom + 14}" '
                     f'text-anchor="middle" fill="#616161">{label}</text>')  # fmt: skip
        tick += step
    return parts


def _legend(y: float) -> list[str]:
    parts, left = [], _LABEL
    for name, fill in COLOURS.items():
        parts.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="{fill}"/>'
                     f'<text x="{left + 16}" y="{y + 10}">{name}</text>')  # fmt: skip
        left += 90
    return parts


def _html(picture: str, title: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"</head>\n<body>\n{picture}\n</body></html>\n"
    )
