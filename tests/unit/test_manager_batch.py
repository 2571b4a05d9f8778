"""Requests handled together under one commit: each answered once, a failing one undone alone."""

from __future__ import annotations

import logging

import pytest
import yaml
from conftest import base_config

from nowcastkit import Message, NextWorker, codec
from nowcastkit import store as state
from nowcastkit.config import load_config
from nowcastkit.manager import ManagerProcess
from nowcastkit.manager.decide import Ended, decide_exit, decide_launch
from nowcastkit.manager.events import Events

pytestmark = pytest.mark.timeout(60)

NEXT_WORKERS = """\
from pathlib import Path

from nowcastkit import NextWorker


def after_a(msg, config, checklist):
    return [], {"b", "c"}


def after_b(msg, config, checklist):
    return [NextWorker("sleep", args=["from_b"])]


def after_c(msg, config, checklist):
    return [NextWorker("sleep", args=["from_c"])]


def after_sleep(msg, config, checklist):
    with Path(config.file).with_name("after_sleep.calls").open("a") as calls:
        calls.write(f"{msg.id}\\n")
    return []
"""


@pytest.fixture
def manager(tmp_path):
    config = base_config(tmp_path)
    for name in "abc":
        config["message registry"]["workers"][name] = {"checklist key": name, "success": "done"}
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "next_workers.py").write_text(NEXT_WORKERS)
    manager = ManagerProcess.start(load_config(tmp_path / "nowcast.yaml"))
    yield manager
    manager.ledger.store.conn.close()


def request(tag: str, source: str, msg_id: str, payload=None) -> list[bytes]:
    body = Message(source, "success", payload, id=msg_id).serialize().encode()
    return [tag.encode(), body]


def reply_type(frames: list[bytes]) -> str:
    return Message.deserialize(frames[-1]).type


def stored(manager) -> tuple[dict, list]:
    return state.load_checklist(manager.ledger.store), state.load_groups(manager.ledger.store)


def test_requests_arriving_together_are_each_answered_once_and_a_failing_one_alone_undone(
    manager, tmp_path
):
    # A real store failure for one message: its id cannot be recorded.
    manager.ledger.store.conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.id = 'doomed'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    requests = [
        request("t1", "a", "a1", {"n": 1}),  # opens a group waiting for b and c
        request("t2", "b", "doomed", {"n": 2}),  # would report b; its savepoint is rolled back
        request("t3", "sleep", "s1", {"n": 3}),
        request("t4", "sleep", "s1", {"n": 4}),  # the same id again, in the same batch
        [b"t5", b"not: [valid"],
        request("t6", "c", "c1", {"n": 6}),
    ]
    replies, launches = manager.answer(requests)

    assert [frames[0] for frames in replies] == [b"t1", b"t2", b"t3", b"t4", b"t5", b"t6"]
    assert [reply_type(frames) for frames in replies] == [
        "ack", "manager error", "ack", "ack", "malformed message", "ack",
    ]  # fmt: skip
    assert replies[2] == [b"t3", replies[3][1]]
    assert (tmp_path / "after_sleep.calls").read_text() == "s1\n"
    assert launches == []  # c's worker is held until b reports
    assert manager.ledger.checklist == {"a": {"n": 1}, "sleepyhead": {"n": 3}, "c": {"n": 6}}
    assert [group.waiting for group in manager.ledger.groups] == [{"b"}]
    assert stored(manager) == (manager.ledger.checklist, [({"b"}, [held("from_c")])])
    assert not manager.ledger.store.conn.in_transaction

    manager.ledger.store.conn.execute("DROP TRIGGER refuse")
    replies, launches = manager.answer([request("t7", "b", "doomed", {"n": 7})])
    assert [reply_type(frames) for frames in replies] == ["ack"]
    assert sorted(item.worker.args[0] for item in launches) == ["from_b", "from_c"]
    assert manager.ledger.groups == ()
    assert stored(manager) == ({**manager.ledger.checklist, "b": {"n": 7}}, [])


def held(arg: str) -> dict:
    return {"module": "sleep", "args": [arg], "host": "localhost"}


def break_commits_after(conn, msg_id: str) -> None:
    """A real commit failure once *msg_id* is recorded: a deferred foreign key still broken."""
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE child (ref INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.execute(
        f"CREATE TRIGGER late AFTER INSERT ON messages WHEN NEW.id = '{msg_id}'"
        " BEGIN INSERT INTO child VALUES (42); END"
    )


def test_a_failed_commit_answers_every_request_with_an_error_and_keeps_memory_as_stored(
    manager, tmp_path
):
    manager.answer([request("t0", "sleep", "s0", {"n": 0})])
    before = stored(manager)
    conn = manager.ledger.store.conn
    break_commits_after(conn, "late")
    requests = [
        request("t1", "a", "a1", {"n": 1}),
        request("t2", "sleep", "late", {"n": 2}),
        request("t3", "c", "c1", {"n": 3}),
    ]
    replies, launches = manager.answer(requests)

    assert [(frames[0], reply_type(frames)) for frames in replies] == [
        (b"t1", "manager error"), (b"t2", "manager error"), (b"t3", "manager error"),
    ]  # fmt: skip
    assert launches == []
    assert stored(manager) == before
    assert (manager.ledger.checklist, manager.ledger.groups) == (before[0], ())
    assert not conn.in_transaction
    assert (tmp_path / "after_sleep.calls").read_text() == "s0\nlate\n"  # the call, not its effect

    conn.execute("DROP TRIGGER late")
    replies, _launches = manager.answer(requests)
    assert [reply_type(frames) for frames in replies] == ["ack", "ack", "ack"]
    assert stored(manager)[0] == manager.ledger.checklist == {
        "sleepyhead": {"n": 2}, "a": {"n": 1}, "c": {"n": 3},
    }  # fmt: skip


def test_a_hello_the_broker_hands_over_again_records_one_run(manager):
    # A worker run by hand on another host, so that no pid is watched here.
    hello = [b"t1", Message("sleep", "hello", host="elsewhere", pid=4242).serialize().encode()]
    first, _launches = manager.answer([hello])
    again, _launches = manager.answer([hello, hello])
    assert again == [first[0], first[0]]
    assert Message.deserialize(first[0][1]).payload["run"]
    assert [run.pid for run in state.unfinished_runs(manager.ledger.store)] == [4242]


class RecordingEvents(Events):
    """The manager's publisher, keeping what it was asked to publish."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[str] = []

    def publish(self, event: str, worker: str, **fields) -> None:
        self.published.append(f"{worker}/{event}")


def test_nothing_is_logged_or_published_of_a_batch_that_did_not_commit(manager, caplog):
    manager.events = RecordingEvents()
    break_commits_after(manager.ledger.store.conn, "c1")
    batch = [request("t1", "a", "a1", {"n": 1}), request("t2", "c", "c1", {"n": 3})]
    with caplog.at_level(logging.INFO, "manager"):
        replies, _launches = manager.answer(batch)
    assert [reply_type(frames) for frames in replies] == ["manager error", "manager error"]
    assert manager.events.published == []
    told = [r.getMessage() for r in caplog.records if r.levelno < logging.ERROR]
    assert told == []

    manager.ledger.store.conn.execute("DROP TRIGGER late")
    with caplog.at_level(logging.INFO, "manager"):
        manager.answer(batch)
    assert manager.events.published == [
        "a/received",
        "a/group opened",
        "a/reply",
        "c/received",
        "c/reply",
    ]
    assert "race condition: what follows ['b', 'c'] waits until all of them finish" in caplog.text


def test_a_key_holding_a_mapping_is_stored_entry_by_entry_as_long_as_it_can_be(manager):
    payloads = [
        {"n": 1},
        {"m": 2},
        {"n": 3},  # merged entry by entry
        {1: "int key"},  # no longer by entry: written whole
        {"o": 4},
        ["replaced"],
        {"p": 5},
        {"q": 6},
    ]
    conn = manager.ledger.store.conn
    for n, payload in enumerate(payloads):
        before = conn.total_changes
        replies, _launches = manager.answer([request(f"t{n}", "sleep", f"s{n}", payload)])
        assert [reply_type(frames) for frames in replies] == ["ack"]
        assert stored(manager)[0] == manager.ledger.checklist
        if n in (1, 2, 7):  # one entry's row and the message's
            assert conn.total_changes - before == 2
    assert manager.ledger.checklist["sleepyhead"] == {"p": 5, "q": 6}


def test_a_message_into_a_key_of_5000_entries_costs_what_its_payload_does(tmp_path, monkeypatch):
    config = base_config(tmp_path)
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "next_workers.py").write_text(NEXT_WORKERS)
    entries = {f"run {i:05d}": {"done": True, "files": [f"f{i}.nc"]} for i in range(5000)}
    (tmp_path / "nowcast_checklist.yaml").write_text(yaml.safe_dump({"sleepyhead": entries}))
    manager = ManagerProcess.start(load_config(tmp_path / "nowcast.yaml"))
    encoded = []
    encode = codec.encode
    monkeypatch.setattr(codec, "encode", lambda value: encoded.append(encode(value)) or encoded[-1])
    try:
        payload = {"run 00042": {"done": False}, "run 05000": {"done": True}}
        replies, _launches = manager.answer([request("t1", "sleep", "s1", payload)])
        assert [reply_type(frames) for frames in replies] == ["ack"]
        assert sum(map(len, encoded)) < 400  # the message, its reply, two entries: not 5,000
        assert stored(manager)[0] == manager.ledger.checklist
        assert manager.ledger.checklist["sleepyhead"] == {**entries, **payload}
        assert yaml.safe_load(manager.ledger.file.path.read_text()) == manager.ledger.checklist
    finally:
        manager.ledger.store.conn.close()


def test_a_late_report_after_a_run_became_a_crash_calls_after_worker_once(manager, tmp_path):
    ledger = manager.ledger

    def commit(items, decide_one):
        view = lambda: ledger.view(manager.config, manager.flow, manager.host)  # noqa: E731
        return ledger.commit(items, lambda item: decide_one(item, view()))

    [launched] = commit([{"command": "launch", "worker": "sleep", "by": "test"}], decide_launch)
    run = launched.launches[0].run_id
    crash = Message("sleep", "crash", {"reason": "lost"}, id=f"crash-{run}", run=run)
    commit([Ended(run, NextWorker("sleep"), 4242, 255, crash)], decide_exit)
    late = Message("sleep", "success", {"n": 1}, id="late", run=run).serialize().encode()
    replies, launches = manager.answer([[b"t1", late]])
    assert ([reply_type(frames) for frames in replies], launches) == (["ack"], [])
    assert (tmp_path / "after_sleep.calls").read_text() == f"crash-{run}\n"
    assert state.handled_reply(ledger.store, "late") is not None  # a resend gets the same ack
    assert [r.outcome for r in state.history(ledger.store)] == ["crash"]
