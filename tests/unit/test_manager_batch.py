"""Requests handled together under one commit: each answered once, a failing one undone alone."""

from __future__ import annotations

import logging

import pytest
import yaml
from conftest import base_config

from nowcastkit import Message
from nowcastkit import store as state
from nowcastkit.config import load_config
from nowcastkit.manager.batch import answer
from nowcastkit.manager.events import Events
from nowcastkit.manager.recovery import start

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
    manager, _launches = start(load_config(tmp_path / "nowcast.yaml"))
    yield manager
    manager.store.conn.close()


def request(tag: str, source: str, msg_id: str, payload=None) -> list[bytes]:
    body = Message(source, "success", payload, id=msg_id).serialize().encode()
    return [tag.encode(), body]


def reply_type(frames: list[bytes]) -> str:
    return Message.deserialize(frames[-1]).type


def stored(manager) -> tuple[dict, list]:
    return state.load_checklist(manager.store), state.load_groups(manager.store)


def test_requests_arriving_together_are_each_answered_once_and_a_failing_one_alone_undone(
    manager, tmp_path
):
    # A real store failure for one message: its id cannot be recorded.
    manager.store.conn.execute(
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
    replies, launches = answer(manager, requests)

    assert [frames[0] for frames in replies] == [b"t1", b"t2", b"t3", b"t4", b"t5", b"t6"]
    assert [reply_type(frames) for frames in replies] == [
        "ack", "manager error", "ack", "ack", "malformed message", "ack",
    ]  # fmt: skip
    assert replies[2] == [b"t3", replies[3][1]]
    assert (tmp_path / "after_sleep.calls").read_text() == "s1\n"
    assert launches == []  # c's worker is held until b reports
    assert manager.checklist == {"a": {"n": 1}, "sleepyhead": {"n": 3}, "c": {"n": 6}}
    assert [group.waiting for group in manager.flow.groups] == [{"b"}]
    assert stored(manager) == (manager.checklist, [({"b"}, [held("from_c")])])
    assert not manager.store.conn.in_transaction

    manager.store.conn.execute("DROP TRIGGER refuse")
    replies, launches = answer(manager, [request("t7", "b", "doomed", {"n": 7})])
    assert [reply_type(frames) for frames in replies] == ["ack"]
    assert sorted(item.worker.args[0] for item in launches) == ["from_b", "from_c"]
    assert manager.flow.groups == []
    assert stored(manager) == ({**manager.checklist, "b": {"n": 7}}, [])


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
    answer(manager, [request("t0", "sleep", "s0", {"n": 0})])
    before = stored(manager)
    conn = manager.store.conn
    break_commits_after(conn, "late")
    requests = [
        request("t1", "a", "a1", {"n": 1}),
        request("t2", "sleep", "late", {"n": 2}),
        request("t3", "c", "c1", {"n": 3}),
    ]
    replies, launches = answer(manager, requests)

    assert [(frames[0], reply_type(frames)) for frames in replies] == [
        (b"t1", "manager error"), (b"t2", "manager error"), (b"t3", "manager error"),
    ]  # fmt: skip
    assert launches == []
    assert stored(manager) == before
    assert (manager.checklist, manager.flow.groups) == (before[0], [])
    assert not conn.in_transaction
    assert (tmp_path / "after_sleep.calls").read_text() == "s0\nlate\n"  # the call, not its effect

    conn.execute("DROP TRIGGER late")
    replies, _launches = answer(manager, requests)
    assert [reply_type(frames) for frames in replies] == ["ack", "ack", "ack"]
    assert stored(manager)[0] == manager.checklist == {
        "sleepyhead": {"n": 2}, "a": {"n": 1}, "c": {"n": 3},
    }  # fmt: skip


def test_a_hello_the_broker_hands_over_again_records_one_run(manager):
    # A worker run by hand on another host, so that no pid is watched here.
    hello = [b"t1", Message("sleep", "hello", host="elsewhere", pid=4242).serialize().encode()]
    first, _launches = answer(manager, [hello])
    again, _launches = answer(manager, [hello, hello])
    assert again == [first[0], first[0]]
    assert Message.deserialize(first[0][1]).payload["run"]
    assert [run.pid for run in state.unfinished_runs(manager.store)] == [4242]


class RecordingEvents(Events):
    """The manager's publisher, keeping what it was asked to publish."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[str] = []

    def publish(self, event: str, worker: str, **fields) -> None:
        self.published.append(f"{worker}/{event}")


def test_nothing_is_logged_or_published_of_a_batch_that_did_not_commit(manager, caplog):
    manager.events = RecordingEvents()
    break_commits_after(manager.store.conn, "c1")
    batch = [request("t1", "a", "a1", {"n": 1}), request("t2", "c", "c1", {"n": 3})]
    with caplog.at_level(logging.INFO, "manager"):
        replies, _launches = answer(manager, batch)
    assert [reply_type(frames) for frames in replies] == ["manager error", "manager error"]
    assert manager.events.published == []
    told = [r.getMessage() for r in caplog.records if r.levelno < logging.ERROR]
    assert told == []

    manager.store.conn.execute("DROP TRIGGER late")
    with caplog.at_level(logging.INFO, "manager"):
        answer(manager, batch)
    assert manager.events.published == [
        "a/received",
        "a/group opened",
        "a/reply",
        "c/received",
        "c/reply",
    ]
    assert "race condition: what follows ['b', 'c'] waits until all of them finish" in caplog.text
