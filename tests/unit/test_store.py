"""The manager's SQLite store: handled ids, runs, groups, checklist rows, pruning."""

import datetime
import multiprocessing
import time

import pytest

from nowcastkit import store as st


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
    checklist = {"new": {"files": ["a.nc"]}, "dated": {"day": datetime.date(2026, 11, 23)}}
    with st.transaction(store):
        st.put_checklist(store, checklist)
        # A row as an earlier version wrote it: block YAML.
        store.conn.execute(
            "INSERT INTO checklist (key, value) VALUES ('old', ?)", ("files:\n- b.nc\nn: 1\n",)
        )
    rows = dict(store.conn.execute("SELECT key, value FROM checklist"))
    assert rows["new"] == '{"files": ["a.nc"]}'
    assert st.load_checklist(store) == {**checklist, "old": {"files": ["b.nc"], "n": 1}}


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
