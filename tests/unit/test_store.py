"""The manager's SQLite store: handled ids, runs, groups, checklist rows, pruning."""

import datetime
import multiprocessing
import sqlite3
import time

import pytest

from nowcastkit import store as st

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(tmp_path):
    s = st.open_store(tmp_path / "state.sqlite")
    yield s
    s.conn.close()


def test_a_handled_message_returns_its_reply(store):
    assert st.handled_reply(store, "m1") is None
    with st.transaction(store):
        st.record_message(store, "m1", "sleep", "success", "reply text")
    assert st.handled_reply(store, "m1") == "reply text"


def test_a_failed_transaction_leaves_nothing_behind(store):
    with pytest.raises(RuntimeError), st.transaction(store):
        st.record_message(store, "m1", "sleep", "success", "reply")
        raise RuntimeError("boom")
    assert st.handled_reply(store, "m1") is None


def test_runs_from_launch_to_finish(store):
    with st.transaction(store):
        st.add_run(store, st.Run("r1", "sleep", "workers.sleep", ("--sleep-time", "1")))
        st.set_run_pid(store, "r1", 4242)
    (run,) = st.unfinished_runs(store)
    assert (run.pid, run.args, run.finished) == (4242, ("--sleep-time", "1"), None)
    with st.transaction(store):
        st.finish_run(store, "r1", "success")
        st.finish_run(store, "r1", "crash", exit_status=0)  # the first outcome is kept
    assert st.unfinished_runs(store) == []
    (done,) = st.history(store, worker="sleep")
    assert (done.outcome, done.exit_status) == ("success", 0)
    assert st.history(store, failed=True) == []


def test_history_filters_by_time_and_failure(store):
    now = time.time()
    with st.transaction(store):
        for i, outcome in enumerate(["success", "failure", "crash"]):
            st.add_run(store, st.Run(f"r{i}", "sleep", "workers.sleep", launched=now + i))
            st.finish_run(store, f"r{i}", outcome)
    assert [r.run_id for r in st.history(store)] == ["r2", "r1", "r0"]
    assert [r.run_id for r in st.history(store, since=now + 1)] == ["r2", "r1"]
    assert [r.run_id for r in st.history(store, until=now + 1)] == ["r0"]
    assert [r.run_id for r in st.history(store, failed=True)] == ["r2", "r1"]


def test_a_run_is_found_by_its_id_or_a_prefix_of_it_that_is_its_alone(store):
    now = time.time()
    with st.transaction(store):
        for i, run_id in enumerate(["ab12", "ab34", "ab", "c%_d"]):
            st.add_run(store, st.Run(run_id, "sleep", "workers.sleep", launched=now + i))
    assert [r.run_id for r in st.runs_named(store, "ab1")] == ["ab12"]
    assert [r.run_id for r in st.runs_named(store, "ab")] == ["ab"]  # the whole id wins
    assert [r.run_id for r in st.runs_named(store, "a")] == ["ab", "ab34", "ab12"]
    assert [r.run_id for r in st.runs_named(store, "a", limit=2)] == ["ab", "ab34"]
    assert st.runs_named(store, "c%") != [] and st.runs_named(store, "%") == []  # no LIKE
    assert st.runs_named(store, "") == [] and st.runs_named(store, "zz") == []


def test_race_groups_round_trip(store):
    groups = [({"a", "b"}, [{"module": "x", "args": [], "host": "localhost"}]), ({"c"}, [])]
    with st.transaction(store):
        st.save_groups(store, groups)
    assert st.load_groups(store) == groups
    with st.transaction(store):
        st.save_groups(store, [])
    assert st.load_groups(store) == []


def test_checklist_rows_update_only_named_keys(store):
    checklist = {"sleepyhead": {"sleep time": 5}, "awake": {"at": "now"}}
    with st.transaction(store):
        st.put_checklist(store, checklist)
    checklist["sleepyhead"] = {"sleep time": 7}
    checklist["awake"] = "not stored"
    with st.transaction(store):
        st.put_checklist(store, checklist, ["sleepyhead"])
    assert st.load_checklist(store) == {"sleepyhead": {"sleep time": 7}, "awake": {"at": "now"}}
    with st.transaction(store):
        st.put_checklist(store, {})
    assert st.load_checklist(store) == {}


def test_checklist_rows_are_json_and_yaml_rows_still_load(store):
    checklist = {"new": ["a.nc"], "dated": {"day": datetime.date(2026, 11, 23)}}
    with st.transaction(store):
        st.put_checklist(store, checklist)
        # A row as an earlier version wrote it: block YAML.
        store.conn.execute(
            "INSERT INTO checklist (key, value) VALUES ('old', ?)", ("files:\n- b.nc\nn: 1\n",)
        )
    rows = dict(store.conn.execute("SELECT key, value FROM checklist"))
    assert rows["new"] == '["a.nc"]'
    entries = store.conn.execute("SELECT key, entry, value FROM checklist_entries").fetchall()
    assert entries == [("dated", "day", "2026-11-23\n")]
    assert st.load_checklist(store) == {**checklist, "old": {"files": ["b.nc"], "n": 1}}


def _entries(store: st.Store, key: str) -> list[str]:
    rows = store.conn.execute(
        "SELECT entry FROM checklist_entries WHERE key = ? ORDER BY rowid", (key,)
    )
    return [entry for (entry,) in rows]


def test_mixed_checklists_round_trip_by_entry_and_whole(store):
    checklist = {
        "files": {"z.nc": {"size": 3}, "a.nc": None, "m.nc": [1, 2.5, "x"]},
        "list": [{"a": 1}],
        "empty": {},
        "numbered": {1: "one", 2: "two"},  # not all str: one row, as before
        "text": "plain",
    }
    with st.transaction(store):
        st.put_checklist(store, checklist)
    loaded = st.load_checklist(store)
    assert loaded == checklist
    assert list(loaded) == sorted(checklist)
    assert list(loaded["files"]) == ["z.nc", "a.nc", "m.nc"]  # as stored, not sorted
    assert _entries(store, "files") == ["z.nc", "a.nc", "m.nc"]
    assert _entries(store, "numbered") == []

    checklist["files"] = ["now a list"]
    with st.transaction(store):
        st.put_checklist(store, checklist, ["files"])
    assert _entries(store, "files") == []
    assert st.load_checklist(store) == checklist

    checklist["files"] = {"b.nc": 1, "a.nc": 2}
    checklist["list"] = {"was": "a list"}
    with st.transaction(store):
        st.put_checklist(store, checklist, ["files", "list"])
        st.merge_checklist_entries(store, "empty", {"first": 1})
    checklist["empty"]["first"] = 1
    assert st.load_checklist(store) == checklist
    assert _entries(store, "files") == ["b.nc", "a.nc"]


def test_merged_entries_keep_their_order_across_a_reopen(tmp_path):
    path = tmp_path / "state.sqlite"
    store = st.open_store(path)
    checklist = {"k": {"b": 1, "a": 2, "c": 3}}
    with st.transaction(store):
        st.put_checklist(store, checklist)
    for payload in ({"a": 20, "d": 4}, {"b": [1], "e": {"x": 1}}, {"d": None}):
        with st.transaction(store):
            st.merge_checklist_entries(store, "k", payload)
        checklist["k"].update(payload)
        loaded = st.load_checklist(store)
        assert (loaded, list(loaded["k"])) == (checklist, list(checklist["k"]))
    store.conn.close()
    store = st.open_store(path)
    loaded = st.load_checklist(store)
    store.conn.close()
    assert (loaded, list(loaded["k"])) == (checklist, ["b", "a", "c", "d", "e"])


# The checklist tables and rows as schema 1 wrote them: one row per key.
_SCHEMA_1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE checklist (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema', '1'), ('checklist', 'in store');
INSERT INTO checklist VALUES ('files', '{"b.nc": 1, "a.nc": {"n": 2}}'), ('list', '[1, 2]'),
    ('yaml', 'day: 2026-11-23
n: 1
'), ('empty', '{}');
"""


def test_a_schema_1_store_loads_and_takes_merges(tmp_path):
    path = tmp_path / "state.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_1)
    conn.close()
    expected = {
        "empty": {},
        "files": {"b.nc": 1, "a.nc": {"n": 2}},
        "list": [1, 2],
        "yaml": {"day": datetime.date(2026, 11, 23), "n": 1},
    }
    reader = st.open_read_only(path)  # an operator tool, before the manager upgraded it
    assert st.load_checklist(reader) == expected
    reader.conn.close()

    store = st.open_store(path)
    assert st.get_meta(store, "schema") == str(st.SCHEMA_VERSION) == "4"
    assert st.load_checklist(store) == expected
    with st.transaction(store):
        st.merge_checklist_entries(store, "files", {"c.nc": 3, "b.nc": 10})
        st.merge_checklist_entries(store, "yaml", {"n": 2})
        st.merge_checklist_entries(store, "empty", {"e": 1})
    store.conn.close()
    store = st.open_store(path)
    loaded = st.load_checklist(store)
    store.conn.close()
    assert loaded == {
        **expected,
        "empty": {"e": 1},
        "files": {"b.nc": 10, "a.nc": {"n": 2}, "c.nc": 3},
        "yaml": {"day": datetime.date(2026, 11, 23), "n": 2},
    }
    assert list(loaded["files"]) == ["b.nc", "a.nc", "c.nc"]


def test_merging_one_entry_into_a_large_mapping_writes_one_row(store):
    checklist = {"big": {f"f{i:05d}.nc": {"done": True, "n": i} for i in range(5000)}}
    with st.transaction(store):
        st.put_checklist(store, checklist)
    for payload in ({"f00042.nc": {"done": False}}, {"new.nc": {"n": -1}}):
        before = store.conn.total_changes
        with st.transaction(store):
            st.merge_checklist_entries(store, "big", payload)
        assert store.conn.total_changes - before == 1
        checklist["big"].update(payload)
    before = store.conn.total_changes
    with st.transaction(store):
        st.put_checklist(store, checklist, ["big"])  # whole: every entry rewritten
    assert store.conn.total_changes - before > 2 * 5000
    assert st.load_checklist(store) == checklist


def test_prune_drops_old_ids_and_finished_runs_only(store):
    with st.transaction(store):
        st.record_message(store, "old", "sleep", "success", "r")
        st.add_run(store, st.Run("done", "sleep", "workers.sleep"))
        st.finish_run(store, "done", "success")
        st.add_run(store, st.Run("running", "sleep", "workers.sleep"))
    with st.transaction(store):
        assert st.prune(store, time.time() + 1) == (1, 1)
    assert [r.run_id for r in st.history(store)] == ["running"]


def _hammer(path, worker):
    s = st.open_store(path)
    for i in range(50):
        with st.transaction(s):
            st.record_message(s, f"{worker}-{i}", "sleep", "success", "r")
    s.conn.close()


def test_concurrent_writers_do_not_lose_records(tmp_path):
    path = tmp_path / "state.sqlite"
    st.open_store(path).conn.close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    s = st.open_store(path)
    count = s.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    s.conn.close()
    assert count == 150


# The runs table as schema 2 wrote it: no handle.
_SCHEMA_2_RUNS = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema', '2');
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, worker TEXT NOT NULL, module TEXT NOT NULL,
    args TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER, parent TEXT,
    launched REAL NOT NULL, finished REAL, exit_status INTEGER, outcome TEXT,
    log_path TEXT NOT NULL DEFAULT '');
INSERT INTO runs (run_id, worker, module, args, host, pid, launched)
    VALUES ('r1', 'sleep', 'workers.sleep', '[]', 'localhost', 42, 1.0);
"""


def test_a_schema_2_store_is_read_as_it_is_then_keeps_launcher_handles(tmp_path):
    path = tmp_path / "state.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_2_RUNS)
    conn.close()
    reader = st.open_read_only(path)  # an operator tool, before the manager upgraded it
    [run] = st.history(reader)
    assert (run.run_id, run.pid, run.handle) == ("r1", 42, None)
    reader.conn.close()
    store = st.open_store(path)
    with st.transaction(store):
        st.set_run_pid(store, "r1", None, {"launcher": "slurm", "job id": 7})
    [run] = st.unfinished_runs(store)
    assert (run.pid, run.handle) == (42, {"launcher": "slurm", "job id": 7})
    store.conn.close()


def test_a_schema_3_store_reads_as_first_attempts_then_keeps_attempts_and_pending_retries(
    tmp_path,
):
    path = tmp_path / "state.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_2_RUNS + "ALTER TABLE runs ADD COLUMN handle TEXT;")
    conn.close()
    reader = st.open_read_only(path)  # an operator tool, before the manager upgraded it
    assert [run.attempt for run in st.history(reader)] == [1]
    assert st.pending_retries(reader) == []
    reader.conn.close()

    store = st.open_store(path)
    retry = st.PendingRetry("r2", "sleep", "workers.sleep", ("-x",), "arbutus", 3, 4, 99.5,
                            "failure nowcast")  # fmt: skip
    with st.transaction(store):
        st.add_run(store, st.Run("r2", "sleep", "workers.sleep", ("-x",), "arbutus",
                                 parent="r1", attempt=2))  # fmt: skip
        st.add_pending_retry(store, retry)
    store.conn.close()
    store = st.open_store(path)
    assert [(run.run_id, run.attempt) for run in st.unfinished_runs(store)] == [
        ("r1", 1), ("r2", 2),
    ]  # fmt: skip
    assert st.pending_retries(store) == [retry]
    with st.transaction(store):
        st.take_pending_retry(store, "r2")
    assert st.pending_retries(store) == []
    store.conn.close()


def _runs_of_a_day(store) -> None:
    """Ten runs, one a minute: sleep and awaken in turn, each outcome among them."""
    outcomes = ["success", "failure", "crash", None, "launch failed"]
    with st.transaction(store):
        for i in range(10):
            worker = ("sleep", "awaken")[i % 2]
            st.add_run(
                store, st.Run(f"r{i}", worker, f"workers.{worker}", launched=1000.0 + 60 * i)
            )
            if i < 9:  # the last one is still running
                store.conn.execute(
                    "UPDATE runs SET finished = ?, outcome = ? WHERE run_id = ?",
                    (1030.0 + 60 * i, outcomes[i % 5], f"r{i}"),
                )


def test_history_pages_and_outcome_filters_agree_with_their_counts(store):
    _runs_of_a_day(store)
    ids = [r.run_id for r in st.history(store)]
    assert ids == [f"r{i}" for i in range(9, -1, -1)]
    pages = [st.history(store, limit=4, offset=offset) for offset in (0, 4, 8)]
    assert [r.run_id for page in pages for r in page] == ids
    expected = {"success": {"r0", "r5"}, "failure": {"r1", "r6"},
                "crash": {"r2", "r7", "r3", "r8", "r4"}, "running": {"r9"}}  # fmt: skip
    for outcome, runs in expected.items():
        assert {r.run_id for r in st.history(store, outcome=outcome)} == runs, outcome
        assert st.count_runs(store, outcome=outcome) == len(runs)
    assert st.count_runs(store, worker="sleep", outcome="crash") == 3
    assert st.count_runs(store, since=1000.0 + 60 * 5) == 5


def test_a_workers_page_of_history_is_read_through_its_index(store):
    plan = store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT run_id FROM runs WHERE worker = ? ORDER BY launched DESC"
        " LIMIT 50", ("sleep",),
    ).fetchall()  # fmt: skip
    assert "runs_worker_launched" in " ".join(str(row) for row in plan)


def test_an_older_store_gets_the_client_columns_added_and_keeps_its_rows_issue_15(tmp_path):
    """An additive change: a store made before CURVE opens, its rows whole, the columns NULL."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        columns = "id TEXT PRIMARY KEY, source TEXT, type TEXT, received REAL, reply TEXT"
        old.execute(f"CREATE TABLE messages ({columns})")
        old.execute("INSERT INTO messages VALUES ('m0', 'sleep', 'success', 1.0, 'ack')")
    store = st.open_store(path)
    assert st.handled_reply(store, "m0") == "ack"
    with st.transaction(store):
        st.record_message(store, "m1", "sleep", "success", "ack", client="host1")
        st.add_run(store, st.Run("r1", "sleep", "workers.sleep", launched=1.0))
        st.finish_run(store, "r1", "success", 0, client="host1")
    rows = store.conn.execute("SELECT id, client FROM messages ORDER BY id").fetchall()
    assert rows == [("m0", None), ("m1", "host1")]
    assert st.history(store)[0].client == "host1"
    store.conn.close()
