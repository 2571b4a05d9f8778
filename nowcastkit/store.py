"""The manager's durable state: an SQLite database next to the checklist.

    store = open_store(Path("logs/nowcast_state.sqlite"))
    with transaction(store):
        record_message(store, "a1b2", "sleep", "success", reply_text)
    history(store, worker="sleep")      # past runs, newest first

Holds the message ids already handled (with the reply sent, so a resent
message gets the same answer), every worker run (launch, pid, exit, outcome),
the race-condition groups still waiting, and the checklist itself, one row per
key (its value as JSON, or YAML where JSON would not read back the same; see
:mod:`nowcastkit.codec`). A key holding a str-keyed mapping is stored one row per
entry instead, so a message that updates one entry of a large mapping writes one
row. Every change is committed before the manager replies; WAL mode keeps readers
(the operator tools) from blocking the manager.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from nowcastkit import codec

__all__ = [
    "BY_HAND",
    "OUTCOMES",
    "PendingRetry",
    "Run",
    "Store",
    "add_pending_retry",
    "add_run",
    "count_runs",
    "deadline_states",
    "ended_as",
    "finish_run",
    "first_message",
    "get_meta",
    "handled_reply",
    "history",
    "load_checklist",
    "load_groups",
    "merge_checklist_entries",
    "open_read_only",
    "open_store",
    "pending_retries",
    "prune",
    "put_checklist",
    "record_deadline",
    "record_message",
    "runs_named",
    "save_groups",
    "set_meta",
    "set_run_pid",
    "state_paths",
    "stored_by_entry",
    "take_pending_retry",
    "transaction",
    "unfinished_runs",
]

#: The module recorded for a run that a person started by hand.
BY_HAND = "(run by hand)"
#: 2: checklist_entries, a key holding a str-keyed mapping stored one row per entry.
#: 3: runs.handle, how a launcher finds a run again (a Slurm job id, a remote run dir).
#: 4: runs.attempt, and pending_retries, the retries waiting out their back-off; deadlines,
#: the day's verdict on each deadline; messages.client and runs.client, the CURVE key a
#: message came with; an index on runs (worker, launched). All additive: an older manager
#: reads a schema 4 store as before.
SCHEMA_VERSION = 4
#: The value of a checklist row whose key is stored by entry (codec.encode never gives '').
_BY_ENTRY = ""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, type TEXT NOT NULL,
    received REAL NOT NULL, reply TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_received ON messages (received);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, worker TEXT NOT NULL, module TEXT NOT NULL,
    args TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER, parent TEXT,
    launched REAL NOT NULL, finished REAL, exit_status INTEGER, outcome TEXT,
    log_path TEXT NOT NULL DEFAULT '', handle TEXT);
CREATE INDEX IF NOT EXISTS runs_launched ON runs (launched);
CREATE INDEX IF NOT EXISTS runs_worker_launched ON runs (worker, launched);
CREATE TABLE IF NOT EXISTS race_groups (
    id INTEGER PRIMARY KEY, waiting TEXT NOT NULL, held TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checklist (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checklist_entries (
    key TEXT NOT NULL, entry TEXT NOT NULL, value TEXT NOT NULL, UNIQUE (key, entry));
CREATE TABLE IF NOT EXISTS pending_retries (
    parent TEXT PRIMARY KEY, worker TEXT NOT NULL, module TEXT NOT NULL, args TEXT NOT NULL,
    host TEXT NOT NULL, attempt INTEGER NOT NULL, attempts INTEGER NOT NULL,
    due REAL NOT NULL, after TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deadlines (
    name TEXT NOT NULL, day TEXT NOT NULL, state TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (name, day));
"""


def state_paths(config: Any) -> tuple[Path, Path]:
    """The store file and the folder of per-run logs (default: beside the checklist)."""
    folder = Path(config["checklist file"]).parent
    store = Path(config.get("state file") or folder / "nowcast_state.sqlite")
    return store, Path(config.get("run logs") or folder / "runs")


@attrs.frozen
class Run:
    """One launch of a worker, from launch to exit."""

    run_id: str
    worker: str
    module: str
    args: tuple[str, ...] = ()
    host: str = "localhost"
    pid: int | None = None
    parent: str | None = None
    launched: float = 0.0
    finished: float | None = None
    exit_status: int | None = None
    outcome: str | None = None
    log_path: str = ""
    #: How its launcher finds it again: ``{"launcher": "slurm", "job id": 42, ...}``.
    handle: dict | None = attrs.field(default=None, eq=False)
    #: Which run of its worker's attempts this is (1 unless it is a retry; see ``retry:``).
    attempt: int = 1
    #: The name of the CURVE key its report came with (None without CURVE).
    client: str | None = None


@attrs.frozen
class PendingRetry:
    """A retry waiting out its back-off: attempt *attempt* of *attempts*, after run *parent*."""

    parent: str
    worker: str
    module: str
    args: tuple[str, ...]
    host: str
    attempt: int
    attempts: int
    #: Epoch seconds it is due: a manager restarted meanwhile still knows when.
    due: float
    #: How the parent ended: ``failure`` or ``crash``.
    after: str


@attrs.define(eq=False)
class Store:
    path: Path
    conn: sqlite3.Connection
    #: Savepoints open inside the current transaction.
    depth: int = 0


def open_store(path: Path) -> Store:
    """Open (creating if needed) the store at *path*, in WAL mode with a busy timeout."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    store = Store(Path(path), conn)
    with transaction(store):
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        _add_columns(conn)
        if get_meta(store, "schema") == "1":
            _store_mappings_by_entry(store)
        set_meta(store, "schema", str(SCHEMA_VERSION))
    return store


#: Columns added since a table was first made: (table, column, type), each NULL at first.
#: runs.handle: schema 3; runs.attempt: 4; messages.client, runs.client: the CURVE key a
#: message came with.
_ADDED = (
    ("runs", "handle", "TEXT"), ("runs", "attempt", "INTEGER"),
    ("messages", "client", "TEXT"), ("runs", "client", "TEXT"),
)  # fmt: skip


def _add_columns(conn: sqlite3.Connection) -> None:
    """Add each column an older store lacks; an additive change, older managers ignore them."""
    for table, column, kind in _ADDED:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _store_mappings_by_entry(store: Store) -> None:
    """Rewrite a schema 1 store's mappings by entry, so that they take merges."""
    checklist = load_checklist(store)
    put_checklist(
        store, checklist, [key for key, value in checklist.items() if stored_by_entry(value)]
    )


@contextlib.contextmanager
def transaction(store: Store) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error.

    Inside an open transaction it is a SAVEPOINT instead: an error rolls back only
    what was done within it, and nothing is on disk until the outermost one commits.
    """
    conn = store.conn
    if conn.in_transaction:
        store.depth += 1
        name = f"nested_{store.depth}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled it all back itself (disk full)
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        finally:
            store.depth -= 1
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        # Inside the try: a COMMIT that fails (a deferred constraint, disk full) can
        # leave the transaction open, and the next BEGIN would fail on it.
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def get_meta(store: Store, name: str) -> str | None:
    row = store.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def set_meta(store: Store, name: str, value: str) -> None:
    store.conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))


def handled_reply(store: Store, msg_id: str) -> str | None:
    """The reply already sent for message *msg_id*, or None if it is new."""
    row = store.conn.execute("SELECT reply FROM messages WHERE id = ?", (msg_id,)).fetchone()
    return row[0] if row else None


def ended_as(store: Store, run_id: str) -> str | None:
    """How run *run_id* ended (its outcome, or "ended" when it has none); None if it has not."""
    row = store.conn.execute(
        "SELECT finished, outcome FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    return (row[1] or "ended") if row and row[0] is not None else None


def record_message(
    store: Store, msg_id: str, source: str, msg_type: str, reply: str, client: str | None = None
) -> None:
    """Record a handled message's reply; *client* is the name of the CURVE key it came with."""
    store.conn.execute(
        "INSERT OR REPLACE INTO messages (id, source, type, received, reply, client)"
        " VALUES (?,?,?,?,?,?)",
        (msg_id, source, msg_type, time.time(), reply, client),
    )


def first_message(store: Store, source: str, msg_type: str, since: float, until: float):
    """When the first *msg_type* message from *source* in [*since*, *until*) was handled."""
    row = store.conn.execute(
        "SELECT MIN(received) FROM messages WHERE source = ? AND type = ?"
        " AND received >= ? AND received < ?",
        (source, msg_type, since, until),
    ).fetchone()
    return row[0]


def record_deadline(store: Store, name: str, day: str, state: str, at: float) -> None:
    """Deadline *name*'s state on *day* (ISO date in its zone): missed, met, late, recovered."""
    store.conn.execute(
        "INSERT OR REPLACE INTO deadlines (name, day, state, at) VALUES (?, ?, ?, ?)",
        (name, day, state, at),
    )


def deadline_states(store: Store, since_day: str) -> dict[tuple[str, str], str]:
    """The recorded ``(name, day) -> state`` of days from *since_day* (ISO) on."""
    rows = store.conn.execute("SELECT name, day, state FROM deadlines WHERE day >= ?", (since_day,))
    return {(name, day): state for name, day, state in rows}


def add_run(store: Store, run: Run) -> None:
    store.conn.execute(
        "INSERT INTO runs (run_id, worker, module, args, host, pid, parent, launched, log_path,"
        " attempt) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            run.run_id, run.worker, run.module, json.dumps(list(run.args)), run.host,
            run.pid, run.parent, run.launched or time.time(), run.log_path,
            None if run.attempt == 1 else run.attempt,
        ),
    )  # fmt: skip


def add_pending_retry(store: Store, retry: PendingRetry) -> None:
    store.conn.execute(
        "INSERT OR REPLACE INTO pending_retries (parent, worker, module, args, host, attempt,"
        " attempts, due, after) VALUES (?,?,?,?,?,?,?,?,?)",
        (retry.parent, retry.worker, retry.module, json.dumps(list(retry.args)), retry.host,
         retry.attempt, retry.attempts, retry.due, retry.after),
    )  # fmt: skip


def take_pending_retry(store: Store, parent: str) -> None:
    """The retry after run *parent* is launched (or given up): it is pending no more."""
    store.conn.execute("DELETE FROM pending_retries WHERE parent = ?", (parent,))


def pending_retries(store: Store) -> list[PendingRetry]:
    """The retries waiting, soonest first; none from a store made before schema 4."""
    try:
        rows = store.conn.execute(
            "SELECT parent, worker, module, args, host, attempt, attempts, due, after"
            " FROM pending_retries ORDER BY due"
        ).fetchall()
    except sqlite3.OperationalError:  # a read-only store no schema 4 manager has opened
        return []
    return [PendingRetry(r[0], r[1], r[2], tuple(json.loads(r[3])), *r[4:]) for r in rows]


def set_run_pid(store: Store, run_id: str, pid: int | None, handle: dict | None = None) -> None:
    """Record where a started run is: its pid (here, or remote) and its launcher's handle,
    whose ``log`` (``host:path``) is where its log is kept."""
    store.conn.execute(
        "UPDATE runs SET pid = COALESCE(?, pid), handle = COALESCE(?, handle),"
        " log_path = COALESCE(?, log_path) WHERE run_id = ?",
        (pid, None if handle is None else json.dumps(handle), (handle or {}).get("log"), run_id),
    )


def finish_run(
    store: Store, run_id: str, outcome: str | None, exit_status: int | None = None,
    client: str | None = None,
) -> None:  # fmt: skip
    """Record a run's end; the outcome (message type) and the key it came with are kept once set."""
    store.conn.execute(
        "UPDATE runs SET finished = COALESCE(finished, ?), outcome = COALESCE(outcome, ?),"
        " exit_status = COALESCE(?, exit_status), client = COALESCE(client, ?) WHERE run_id = ?",
        (time.time(), outcome, exit_status, client, run_id),
    )


def unfinished_runs(store: Store) -> list[Run]:
    """Runs launched but not yet recorded as finished, oldest first."""
    return _runs(store, "WHERE finished IS NULL ORDER BY launched", ())


#: The outcome filters of :func:`history`, and how each reads in SQL.
OUTCOMES = {
    "success": "outcome LIKE 'success%'",
    "failure": "outcome LIKE 'failure%'",
    "crash": "finished IS NOT NULL AND (outcome IS NULL OR outcome LIKE 'crash%'"
    " OR outcome = 'launch failed')",
    "running": "finished IS NULL",
}


def history(
    store: Store,
    since: float | None = None,
    until: float | None = None,
    worker: str | None = None,
    failed: bool = False,
    *,
    outcome: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Run]:
    """Past and current runs matching the filters, newest first.

    *outcome* is one of :data:`OUTCOMES`; *limit* and *offset* take one page of them.
    """
    where, params = _history_where(since, until, worker, failed, outcome)
    page = "" if limit is None else f" LIMIT {int(limit)} OFFSET {int(offset)}"
    return _runs(store, f"{where} ORDER BY launched DESC{page}", params)


def count_runs(
    store: Store,
    since: float | None = None,
    until: float | None = None,
    worker: str | None = None,
    *,
    outcome: str | None = None,
) -> int:
    """How many runs :func:`history` would give for the same filters."""
    where, params = _history_where(since, until, worker, False, outcome)
    return store.conn.execute(f"SELECT count(*) FROM runs {where}", params).fetchone()[0]


def _history_where(
    since: float | None, until: float | None, worker: str | None, failed: bool, outcome: str | None
) -> tuple[str, tuple]:
    clauses, params = [], []
    filters = (("launched >= ?", since), ("launched < ?", until), ("worker = ?", worker))
    for clause, value in filters:
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if failed:
        clauses.append("(outcome IS NULL OR outcome NOT LIKE 'success%') AND finished IS NOT NULL")
    if outcome is not None:
        clauses.append(f"({OUTCOMES[outcome]})")
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), tuple(params)


def runs_named(store: Store, prefix: str, limit: int = 10) -> list[Run]:
    """The run whose id is *prefix*, else the runs whose ids begin with it (at most *limit*)."""
    exact = _runs(store, "WHERE run_id = ?", (prefix,))
    if exact or not prefix:
        return exact
    where = "WHERE substr(run_id, 1, ?) = ? ORDER BY launched DESC LIMIT ?"
    return _runs(store, where, (len(prefix), prefix, limit))


def _runs(store: Store, tail: str, params: tuple) -> list[Run]:
    # A store of schema 2 that no manager has opened since has no handle column.
    columns = {row[1] for row in store.conn.execute("PRAGMA table_info(runs)")}
    handle = "handle" if "handle" in columns else "NULL"
    attempt = "attempt" if "attempt" in columns else "NULL"
    client = "client" if "client" in columns else "NULL"
    rows = store.conn.execute(
        "SELECT run_id, worker, module, args, host, pid, parent, launched, finished,"
        f" exit_status, outcome, log_path, {handle}, {attempt}, {client} FROM runs {tail}",
        params,
    )
    return [_run(row) for row in rows]


def _run(row: tuple) -> Run:
    handle = json.loads(row[12]) if row[12] else None
    return Run(row[0], row[1], row[2], tuple(json.loads(row[3])), *row[4:12], handle,
               row[13] or 1, row[14])  # fmt: skip


def save_groups(store: Store, groups: list[tuple[set[str], list[dict[str, Any]]]]) -> None:
    """Replace the stored race-condition groups: (names still waiting, held workers)."""
    store.conn.execute("DELETE FROM race_groups")
    store.conn.executemany(
        "INSERT INTO race_groups (waiting, held) VALUES (?, ?)",
        [(json.dumps(sorted(waiting)), json.dumps(held)) for waiting, held in groups],
    )


def load_groups(store: Store) -> list[tuple[set[str], list[dict[str, Any]]]]:
    rows = store.conn.execute("SELECT waiting, held FROM race_groups ORDER BY id")
    return [(set(json.loads(waiting)), json.loads(held)) for waiting, held in rows]


def stored_by_entry(value: Any) -> bool:
    """Whether *value* is a mapping with str keys, which the store keeps one row per entry."""
    return isinstance(value, dict) and all(isinstance(entry, str) for entry in value)


def put_checklist(store: Store, checklist: dict, keys: list[str] | None = None) -> None:
    """Store the given keys of *checklist* whole (all keys, replacing the rest, when None).

    Each key's earlier row and entries are replaced: a mapping that :func:`stored_by_entry`
    takes gets a marker row and one row per entry, in its order; anything else one row.
    """
    every_key = keys is None
    keys = list(checklist if keys is None else dict.fromkeys(keys))  # each key once
    rows, entries = [], []
    for key in keys:  # encoded first: a value that will not encode changes nothing
        value = checklist[key]
        if stored_by_entry(value):
            rows.append((key, _BY_ENTRY))
            entries.extend((key, entry, codec.encode(item)) for entry, item in value.items())
        else:
            rows.append((key, codec.encode(value)))
    with transaction(store) as conn:
        if every_key:
            conn.execute("DELETE FROM checklist")
            conn.execute("DELETE FROM checklist_entries")
        else:
            conn.executemany("DELETE FROM checklist_entries WHERE key = ?", [(k,) for k in keys])
        conn.executemany("INSERT OR REPLACE INTO checklist (key, value) VALUES (?, ?)", rows)
        conn.executemany(
            "INSERT INTO checklist_entries (key, entry, value) VALUES (?, ?, ?)", entries
        )


def merge_checklist_entries(store: Store, key: str, entries: dict) -> None:
    """Store *entries* into the mapping of *key*, as ``mapping.update(entries)`` changes it.

    Only these entries' rows are written: an entry keeps its place, a new one goes last.
    *key* must be stored by entry already, and *entries* pass :func:`stored_by_entry`;
    the caller knows both (the manager's ledger does), so neither is looked up here.
    """
    # An upsert, not a replace: the row keeps its rowid, so the entry keeps its place.
    store.conn.executemany(
        "INSERT INTO checklist_entries (key, entry, value) VALUES (?, ?, ?)"
        " ON CONFLICT (key, entry) DO UPDATE SET value = excluded.value",
        [(key, entry, codec.encode(item)) for entry, item in entries.items()],
    )


def load_checklist(store: Store) -> dict:
    """The stored checklist, keys sorted, each mapping's entries in the order they came."""
    rows = store.conn.execute("SELECT key, value FROM checklist ORDER BY key").fetchall()
    mappings = {key: {} for key, value in rows if value == _BY_ENTRY}
    if mappings:  # a schema 1 store, opened read-only, has no checklist_entries table
        entries = store.conn.execute(
            "SELECT key, entry, value FROM checklist_entries ORDER BY rowid"
        )
        for key, entry, value in entries:
            if key in mappings:
                mappings[key][entry] = codec.decode(value)
    return {
        key: mappings[key] if value == _BY_ENTRY else codec.decode(value) for key, value in rows
    }


def prune(store: Store, older_than: float) -> tuple[int, int]:
    """Drop handled message ids and finished runs older than *older_than* (epoch seconds)."""
    messages = store.conn.execute("DELETE FROM messages WHERE received < ?", (older_than,))
    runs = store.conn.execute(
        "DELETE FROM runs WHERE finished IS NOT NULL AND finished < ?", (older_than,)
    )
    store.conn.execute("DELETE FROM deadlines WHERE at < ?", (older_than,))
    return messages.rowcount, runs.rowcount


def open_read_only(path: Path) -> Store:
    """Open an existing store for reading only, as the operator tools do.

    WAL mode lets this read while the manager writes; raise FileNotFoundError if absent.
    """
    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")
    return Store(path, conn)
