"""How fast the dashboard's pages are with a year of history in the store.

    python -m bench.dashboard                    # 100,000 runs, 30 requests a page
    python -m bench.dashboard --runs 2000 --repeat 5 --json out.json

Fills a store with RUNS runs over 365 days (four workers; mostly successes, some
failures, crashes and runs still going), starts a real broker, manager and dashboard
on it, and times each page over HTTP, as a browser gets it: p50 and p95 of REPEAT
requests. The baseline, in the same run: a bare SQLite query of the same rows, opened
read-only as the dashboard opens the store. Target: p95 <= 100 ms for every page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.system import NowcastSystem
from nowcastkit import store as st

WORKERS = ("load", "step", "victim", "tick")
TARGET_MS = 100.0
_DAY = 86400.0


def fill(path: Path, runs: int, now: float) -> list[str]:
    """Write *runs* runs over the year before *now*; return the ids of one day's runs."""
    store = st.open_store(path)
    step = 365 * _DAY / runs
    rows = []
    for i in range(runs):
        launched = now - 365 * _DAY + i * step
        worker = WORKERS[i % len(WORKERS)]
        going = i >= runs - 2
        outcome = None if going else ("failure" if i % 50 == 7 else "crash" if i % 97 == 3
                                      else "success")  # fmt: skip
        rows.append((f"{i:016x}", worker, f"workers.{worker}", "[]", "localhost", 1000 + i % 30000,
                     None, launched, None if going else launched + 30, None if going else 0,
                     outcome, ""))  # fmt: skip
    with st.transaction(store) as conn:
        conn.executemany(
            "INSERT INTO runs (run_id, worker, module, args, host, pid, parent, launched,"
            " finished, exit_status, outcome, log_path) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    store.conn.close()
    return [rows[runs // 2][0]]


def _timed(fn, repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": times[len(times) // 2],
            "p95_ms": times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]}  # fmt: skip


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as answer:
        answer.read()


def _query(path: Path, sql: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def pages(runs: int, middle_day: str, run_id: str, midnight: float, day_start: float) -> list:
    """(page, path, the bare query of the same rows, its parameters)."""
    columns = "SELECT * FROM runs"
    deep = max(1, runs // 2 // 50)
    return [
        ("today", "/", f"{columns} WHERE launched >= ? ORDER BY launched DESC", (midnight,)),
        ("runs, page 1", "/runs", f"{columns} ORDER BY launched DESC LIMIT 50", ()),
        (f"runs, page {deep:,}", f"/runs?page={deep}",
         f"{columns} ORDER BY launched DESC LIMIT 50 OFFSET {(deep - 1) * 50}", ()),
        ("runs of one worker", "/runs?worker=step",
         f"{columns} WHERE worker = ? ORDER BY launched DESC LIMIT 50", ("step",)),
        ("runs that crashed", "/runs?outcome=crash",
         f"{columns} WHERE outcome LIKE 'crash%' ORDER BY launched DESC LIMIT 50", ()),
        ("runs of one day", f"/runs?date={middle_day}",
         f"{columns} WHERE launched >= ? AND launched < ? ORDER BY launched DESC LIMIT 50",
         (day_start, day_start + _DAY)),
        ("one run", f"/runs/{run_id}", f"{columns} WHERE run_id = ?", (run_id,)),
        ("timeline of one day", f"/timeline?date={middle_day}",
         f"{columns} WHERE launched >= ? AND launched < ?", (day_start, day_start + _DAY)),
        ("checklist", "/checklist", "SELECT * FROM checklist", ()),
    ]  # fmt: skip


def measure(root: Path, runs: int, repeat: int) -> dict:
    now = time.time()
    system = NowcastSystem(root / "system", **{"keep history days": 400,
                                              "dashboard": {"port": 0}})  # fmt: skip
    store_path = st.state_paths(system.config)[0]
    (run_id,) = fill(store_path, runs, now)
    middle = dt.date.fromtimestamp(now - 182 * _DAY)
    day_start = dt.datetime.combine(middle, dt.time()).timestamp()
    midnight = dt.datetime.combine(dt.date.fromtimestamp(now), dt.time()).timestamp()
    try:
        system.start()
        port = system._start("dashboard", r"listening on http://127\.0\.0\.1:(\d+)/")[1]
        base = f"http://127.0.0.1:{port}"
        figures = {}
        for name, path, sql, params in pages(runs, str(middle), run_id, midnight, day_start):
            _get(base + path)  # warm: the first request of a page pays its imports
            page = _timed(lambda p=path: _get(base + p), repeat)
            bare = _timed(lambda s=sql, q=params: _query(store_path, s, q), repeat)
            figures[name] = {**page, "query_p50_ms": bare["p50_ms"],
                             "query_p95_ms": bare["p95_ms"], "path": path}  # fmt: skip
    finally:
        system.stop()
    return {"runs": runs, "repeat": repeat, "pages": figures}


def report(result: dict) -> str:
    header = f"{'page':<28}{'p50':>9}{'p95':>9}{'query p95':>11}{'ratio':>8}  target p95"
    lines = [f"dashboard pages with {result['runs']:,} runs in the store, "
             f"{result['repeat']} requests each", header]  # fmt: skip
    for name, f in result["pages"].items():
        ratio = f["p95_ms"] / f["query_p95_ms"]
        met = "met" if f["p95_ms"] <= TARGET_MS else "NOT MET"
        lines.append(f"{name:<28}{f['p50_ms']:>7.1f}ms{f['p95_ms']:>7.1f}ms"
                     f"{f['query_p95_ms']:>9.2f}ms{ratio:>8.1f}  {met}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the store")
    parser.add_argument("--repeat", type=int, default=30, help="requests of each page")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nk-bench-dash-") as folder:
        result = measure(Path(folder), args.runs, args.repeat)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
