"""Show past runs from the manager's store, newest first, with each run's log file.

    nowcastkit history                               # the last 50 runs
    nowcastkit history --since 2026-11-23 --worker sleep
    nowcastkit history --failed --until 2026-11-23 --json

DATE is YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], local time; a bare --until date
includes that whole day. --failed keeps runs that ended without a success*
outcome (failure, crash, launch failed, exited without reporting). ATTEMPT is
the run's attempt of its worker's ``retry:`` attempts (``2/3``); a run whose
retry is pending says when it is due (``failure, retry 2/3 due 10:05:03``).
The store is only read, so this is safe while the manager runs. Exit status 0; 2 for a
usage or config error (a bad DATE, say) or a store that cannot be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from nowcastkit import store as st
from nowcastkit.cli.output import dump_json, duration, iso, local_time, table
from nowcastkit.config import Config, load_config
from nowcastkit.errors import NowcastkitError
from nowcastkit.retry import worker_retry

__all__ = [
    "add_arguments",
    "attempt",
    "log_file",
    "open_history",
    "outcome",
    "parse_date",
    "read_runs",
    "retry_note",
    "run",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="DATE", help="runs launched at or after DATE")
    parser.add_argument("--until", metavar="DATE", help="runs launched before DATE")
    parser.add_argument("--worker", metavar="W", help="runs of worker W only")
    parser.add_argument("--failed", action="store_true", help="runs that did not succeed")
    parser.add_argument("--limit", type=int, default=50, help="at most N runs (0: all)")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    since = parse_date(args.since, "--since") if args.since else None
    until = parse_date(args.until, "--until", end_of_day=True) if args.until else None
    runs, retries = read_runs(config, since, until, args.worker, args.failed)
    runs = runs[: args.limit] if args.limit > 0 else runs
    if args.json:
        print(dump_json([as_dict(config, r, retries.get(r.run_id)) for r in runs]))
        return 0
    if not runs:
        print("no runs match")
        return 0
    rows = [
        [r.run_id, r.worker, " ".join(r.args), _host(r), attempt(config, r),
         local_time(r.launched), local_time(r.finished),
         duration(r.finished and r.finished - r.launched),
         outcome(r) + retry_note(retries.get(r.run_id)), log_file(config, r) or "-"]
        for r in runs
    ]  # fmt: skip
    headers = ["RUN", "WORKER", "ARGS", "HOST", "ATTEMPT", "STARTED", "FINISHED", "TOOK",
               "OUTCOME", "LOG"]  # fmt: skip
    if any(r.client for r in runs):  # under CURVE: the key each run reported with
        headers.insert(4, "KEY")
        for row, r in zip(rows, runs, strict=True):
            row.insert(4, r.client or "-")
    print(table(headers, rows))
    return 0


def read_runs(
    config: Config, since: float | None = None, until: float | None = None,
    worker: str | None = None, failed: bool = False,
) -> tuple[list[st.Run], dict[str, st.PendingRetry]]:  # fmt: skip
    """The runs matching the filters, newest first, and the retries pending, by parent run."""
    store = open_history(config)
    if store is None:
        return [], {}
    try:
        runs = st.history(store, since, until, worker, failed)
        return runs, {retry.parent: retry for retry in st.pending_retries(store)}
    finally:
        store.conn.close()


def attempt(config: Config, r: st.Run) -> str:
    """``2/3`` for a worker with ``retry:``; the bare number, or ``-`` for 1, without."""
    policy = worker_retry(config, r.worker)
    if policy is not None:
        return f"{r.attempt}/{policy.attempts}"
    return "-" if r.attempt == 1 else str(r.attempt)


def retry_note(retry: st.PendingRetry | None) -> str:
    """``, retry 2/3 due 10:05:03`` after the outcome of a run whose retry is pending."""
    if retry is None:
        return ""
    return f", retry {retry.attempt}/{retry.attempts} due {local_time(retry.due, False)}"


def parse_date(text: str, option: str, end_of_day: bool = False) -> float:
    """A local date or date-time as epoch seconds; a bare date as its midnight (or the next)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise NowcastkitError(
            f"{option}: got {text!r}, expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]"
        ) from None
    if end_of_day and len(text) == 10:
        when += dt.timedelta(days=1)
    return when.timestamp()


def open_history(config: Config) -> st.Store | None:
    """The manager's store opened read-only, or None when no manager has made one yet."""
    path = st.state_paths(config)[0]
    try:
        return st.open_read_only(path)
    except FileNotFoundError:
        return None
    except Exception as err:  # sqlite3 errors: unreadable file, not a database
        raise NowcastkitError(f"{path}: cannot read the manager's store: {err}") from None


def outcome(r: st.Run) -> str:
    """The run's outcome as an operator reads it: its message type, or how it ended."""
    if r.outcome:
        return r.outcome
    if r.finished is None:
        return "running"
    return "exited" if r.exit_status is None else f"exited {r.exit_status}"


def log_file(config: Config, r: st.Run) -> str:
    """The run's own log file; runs started by hand have none."""
    if r.log_path:
        return r.log_path
    if r.module == st.BY_HAND:
        return ""
    return str(Path(st.state_paths(config)[1]) / f"{r.worker}-{r.run_id}.log")


def _host(r: st.Run) -> str:
    """The host, and the Slurm job the run was there: ``nibi job 17``."""
    job = (r.handle or {}).get("job id")
    return r.host if job is None else f"{r.host} job {job}"


def as_dict(config: Config, r: st.Run, retry: st.PendingRetry | None = None) -> dict:
    policy = worker_retry(config, r.worker)
    return {
        "run": r.run_id, "worker": r.worker, "module": r.module, "args": list(r.args),
        "host": r.host, "pid": r.pid, "parent": r.parent, "started": iso(r.launched),
        "finished": iso(r.finished), "seconds": r.finished and round(r.finished - r.launched, 3),
        "outcome": outcome(r), "exit status": r.exit_status, "log": log_file(config, r) or None,
        "job id": (r.handle or {}).get("job id"), "key": r.client, "attempt": r.attempt,
        "attempts": policy.attempts if policy else None,
        "retry due": iso(retry.due) if retry else None,
    }  # fmt: skip
