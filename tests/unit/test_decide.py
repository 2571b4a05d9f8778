"""What a message does, decided without sockets, a store or a process: values in, a value out."""

from __future__ import annotations

import itertools
import logging

import attrs
import pytest
import yaml
from conftest import base_config

from nowcastkit import Message, NextWorker
from nowcastkit import store as st
from nowcastkit.config import load_config
from nowcastkit.flow import Flow
from nowcastkit.manager.decide import (
    CLEARED,
    Change,
    Ended,
    Launch,
    View,
    decide,
    decide_cancel_retry,
    decide_exit,
    decide_launch,
    decide_retry,
)
from nowcastkit.race import RaceGroup

pytestmark = pytest.mark.timeout(30)

NEXT_WORKERS = """\
from nowcastkit import NextWorker

SEEN = []


def after_sleep(msg, config, checklist):
    SEEN.append((msg.type, dict(checklist), dict(checklist.get("sleepyhead") or {})))
    if msg.payload == {"change": "it"}:
        checklist["sleepyhead"] = "changed by after_sleep"
    if msg.type == "crash":
        return [NextWorker("workers.sleep", args=["again"])]
    return [NextWorker("workers.awaken", args=[msg.type])], {"awaken"}


def after_awaken(msg, config, checklist):
    return [NextWorker("workers.sleep")]
"""


@pytest.fixture
def setting(tmp_path):
    config = base_config(tmp_path)
    config["message registry"]["workers"]["awaken"] = {"checklist key": "awake", "success": "up"}
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "next_workers.py").write_text(NEXT_WORKERS)
    flow = Flow("next_workers", tmp_path)
    flow.refresh()
    return load_config(tmp_path / "nowcast.yaml"), flow


def make_view(setting, checklist=None, groups=(), waiting=None, replied=None, ended=None) -> View:
    config, flow = setting
    ids = (f"run{n}" for n in itertools.count(1))
    return View(config, flow, checklist if checklist is not None else {}, groups,
                waiting or {}, (replied or {}).get, (ended or {}).get, lambda: next(ids),
                "here")  # fmt: skip


def request(msg: Message, tag: bytes = b"tag-1") -> list[bytes]:
    return [tag, msg.serialize().encode()]


def seen(setting) -> list:
    return setting[1].module.SEEN


def test_a_report_merges_its_payload_calls_after_worker_and_launches_what_it_returns(setting):
    checklist = {"sleepyhead": {"slept": 1, "kept": True}}
    view = make_view(setting, checklist, waiting={"old": "sleep", "r9": "awaken"})
    outcome = decide(request(Message("sleep", "success", {"slept": 2}, id="m1")), view)

    assert (outcome.reply.type, outcome.key, outcome.received) == ("ack", "m1", "success")
    assert outcome.change == Change("sleepyhead", {"slept": 2}, merge=True)
    assert outcome.finished == "old"  # its worker's oldest run still out
    [launch] = outcome.launches
    assert (launch.worker, launch.parent) == (NextWorker("workers.awaken", ["success"]), "old")
    assert outcome.groups == (RaceGroup(frozenset({"awaken"})),)
    # after_sleep saw the checklist as it will be; the view's own is untouched until committed.
    assert seen(setting) == [
        ("success", {"sleepyhead": {"slept": 2, "kept": True}}, {"slept": 2, "kept": True})
    ]
    assert checklist == {"sleepyhead": {"slept": 1, "kept": True}}
    texts = [text % args for _level, text, args in outcome.notes]
    assert "checklist updated with [sleepyhead] items from sleep worker" in texts
    assert "race condition: what follows ['awaken'] waits until all of them finish" in texts
    assert [event[:2] for event in outcome.events] == [
        ("received", "sleep"), ("group opened", "sleep"),
    ]  # fmt: skip


def test_after_worker_cannot_change_the_checklist_behind_the_store(setting):
    view = make_view(setting, {"sleepyhead": "before"})
    outcome = decide(request(Message("sleep", "success", {"change": "it"})), view)
    assert outcome.reply.type == "after_worker error"
    assert "does not support item assignment" in outcome.reply.payload
    assert outcome.change == Change("sleepyhead", {"change": "it"})  # the payload still counts
    assert (outcome.launches, outcome.groups) == ((), None)
    assert view.checklist == {"sleepyhead": "before"}


def test_a_message_seen_before_gets_its_first_reply_and_decides_nothing_again(setting):
    first = Message("manager", "ack").serialize()
    view = make_view(setting, replied={"m1": first, "broker-tag-7": first})
    for msg, tag in [(Message("sleep", "success", {"n": 2}, id="m1"), b"t"),
                     (Message("sleep", "success", {"n": 3}), b"tag-7")]:  # fmt: skip
        outcome = decide(request(msg, tag), view)
        assert (outcome.repeat, outcome.text, outcome.change) == (True, first, None)
    assert seen(setting) == []


@pytest.mark.parametrize(
    ("frames", "reply_type"),
    [
        ([b"t", b"not: [yaml"], "malformed message"),
        ([b"t", b"a", b"b"], "malformed message"),
        (request(Message("ghost", "success")), "unregistered worker"),
        (request(Message("sleep", "made up")), "unregistered message type"),
        (request(Message("sleep", "timeout")), "unregistered message type"),
        (request(Message("sleep", "need", "nothing")), "checklist key not found"),
    ],
)
def test_what_cannot_be_handled_gets_an_error_reply_and_changes_nothing(
    setting, frames, reply_type
):
    config = setting[0]
    config["message registry"]["workers"]["sleep"]["need"] = "needs"
    outcome = decide(frames, make_view(setting))
    assert outcome.reply.type == reply_type
    assert (outcome.change, outcome.key, outcome.launches, outcome.finished) == (
        None, None, (), None,
    )  # fmt: skip
    assert any(level == logging.ERROR for level, _text, _args in outcome.notes)
    assert outcome.malformed == (reply_type == "malformed message")


def test_need_and_clear_checklist(setting):
    config = setting[0]
    config["message registry"]["workers"]["sleep"].update({"need": "n", "clear checklist": "c"})
    view = make_view(setting, {"sleepyhead": {"slept": 1}})
    outcome = decide(request(Message("sleep", "need", "sleepyhead")), view)
    assert (outcome.reply.type, outcome.reply.payload, outcome.change) == (
        "ack", {"slept": 1}, None,
    )  # fmt: skip
    outcome = decide(request(Message("sleep", "clear checklist", id="c1")), view)
    assert (outcome.reply.type, outcome.change, outcome.key) == ("checklist cleared", CLEARED, "c1")
    assert view.checklist == {"sleepyhead": {"slept": 1}}


def test_a_hello_from_a_worker_started_by_hand_is_a_run_of_its_own(setting):
    outcome = decide(request(Message("sleep", "hello", host="here", pid=42)), make_view(setting))
    assert outcome.reply.payload == {"run": "run1"}
    assert (outcome.by_hand.run_id, outcome.by_hand.pid, outcome.key) == (
        "run1",
        42,
        "broker-tag-1",
    )
    outcome = decide(request(Message("sleep", "hello", pid=42, run="run1")), make_view(setting))
    assert (outcome.reply.type, outcome.by_hand) == ("ack", None)


def ended(run_id: str, status: int | None = -9) -> Ended:
    reason = "exited without reporting to the manager"
    payload = {"run id": run_id, "reason": reason, "signal": "SIGKILL"}
    crash = Message("sleep", "crash", payload, id=f"crash-{run_id}", run=run_id)
    return Ended(run_id, NextWorker("workers.sleep"), 4242, status, crash)


def test_a_run_that_ends_without_reporting_is_its_workers_crash(setting):
    groups = (RaceGroup(frozenset({"sleep", "other"})),)
    outcome = decide_exit(ended("r1"), make_view(setting, groups=groups, waiting={"r1": "sleep"}))
    assert (outcome.finished, outcome.received, outcome.exited.status) == ("r1", "crash", -9)
    # A crash counts as reported: what after_sleep returns is held until "other" reports.
    again = NextWorker("workers.sleep", args=["again"])
    assert (outcome.launches, outcome.groups) == ((), (RaceGroup(frozenset({"other"}), (again,)),))
    assert [event[0] for event in outcome.events] == ["exit", "crash"]
    assert [msg_type for msg_type, *_ in seen(setting)] == ["crash"]


def test_a_run_that_ends_after_reporting_only_has_its_exit_recorded(setting):
    outcome = decide_exit(ended("r1", 0), make_view(setting, waiting={"r2": "sleep"}))
    assert (outcome.finished, outcome.exited.status, outcome.launches) == (None, 0, ())
    assert seen(setting) == []


def test_a_launch_request_is_checked_and_launched_once(setting):
    view = make_view(setting)
    assert decide_launch({"worker": 7}, view).reply["ok"] is False
    refused = decide_launch({"worker": "pkg.ghost"}, view)
    assert refused.reply == {
        "ok": False,
        "error": "worker 'ghost' is not in message registry.workers",
    }
    outcome = decide_launch(
        {"worker": "workers.sleep", "args": ["1"], "id": "x@1", "by": "me"}, view
    )
    assert (outcome.reply, outcome.key) == ({"ok": True, "run": "run1"}, "control-x@1")
    assert [launch.worker for launch in outcome.launches] == [NextWorker("workers.sleep", ["1"])]
    again = make_view(setting, replied={"control-x@1": outcome.text})
    repeat = decide_launch({"worker": "workers.sleep", "id": "x@1"}, again)
    assert (repeat.repeat, repeat.reply, repeat.launches) == (True, outcome.reply, ())


def test_a_report_for_a_run_that_already_ended_is_acknowledged_and_decides_nothing(setting):
    view = make_view(setting, {"sleepyhead": "before"}, ended={"r1": "crash"})
    late = Message("sleep", "success", {"slept": 9}, id="m9", run="r1")
    outcome = decide(request(late), view)
    assert (outcome.reply.type, outcome.key, outcome.received) == ("ack", "m9", "success")
    assert (outcome.change, outcome.finished, outcome.launches, outcome.groups) == (
        None, None, (), None,
    )  # fmt: skip
    assert seen(setting) == []  # after_sleep already decided run r1, as a crash
    [warning] = [text % args for level, text, args in outcome.notes if level == logging.WARNING]
    assert "run r1, which already ended as crash; after_sleep is not called again" in warning


def with_retry(setting, view_runs: dict[str, st.Run], **fields) -> View:
    """A view of a config whose sleep worker has ``retry: {attempts: 3, backoff: 10}``."""
    setting[0]["message registry"]["workers"]["sleep"]["retry"] = {"attempts": 3, "backoff": 10}
    view = make_view(setting, waiting={run_id: "sleep" for run_id in view_runs}, **fields)
    return attrs.evolve(view, run=view_runs.get, now=1000.0, jitter=lambda: 0.0)


def a_run(run_id: str, attempt: int = 1) -> st.Run:
    return st.Run(run_id, "sleep", "workers.sleep", ("--sleep-time", "2"), "localhost",
                  attempt=attempt)  # fmt: skip


def test_a_failure_retried_finishes_the_run_stores_the_retry_and_decides_nothing_else(setting):
    view = with_retry(setting, {"r1": a_run("r1")}, checklist={"sleepyhead": {"slept": 1}})
    msg = Message("sleep", "failure", {"slept": 0}, id="m1", run="r1")
    outcome = decide(request(msg), view)
    assert (outcome.reply.type, outcome.finished, outcome.key) == ("ack", "r1", "m1")
    assert outcome.retry == st.PendingRetry("r1", "sleep", "workers.sleep",
                                            ("--sleep-time", "2"), "localhost", 2, 3, 1010.0,
                                            "failure")  # fmt: skip
    assert (outcome.change, outcome.launches, outcome.groups) == (None, (), None)
    assert seen(setting) == []  # after_sleep waits for the last attempt
    texts = [text % args for _level, text, args in outcome.notes]
    assert "sleep worker run r1: failure on attempt 1/3; retrying in 10.0s" in texts
    assert [event[0] for event in outcome.events] == ["received", "retry pending"]


def test_the_last_attempts_outcome_is_the_one_after_worker_sees(setting):
    view = with_retry(setting, {"r3": a_run("r3", attempt=3)})
    outcome = decide(request(Message("sleep", "failure", run="r3")), view)
    assert (outcome.retry, outcome.attempts, outcome.finished) == (None, (3, 3), "r3")
    assert [msg_type for msg_type, *_ in seen(setting)] == ["failure"]
    success = decide(request(Message("sleep", "success", run="r3")), view)
    assert (success.retry, success.attempts) == (None, (3, 3))


def test_a_crash_retried_is_not_its_workers_crash_yet(setting):
    view = with_retry(setting, {"r1": a_run("r1", attempt=2)})
    outcome = decide_exit(ended("r1"), view)
    assert (outcome.received, outcome.exited.status, outcome.retry.attempt) == ("crash", -9, 3)
    assert outcome.retry.due == 1020.0  # the second retry waits twice the back-off
    assert (outcome.launches, outcome.groups, seen(setting)) == ((), None, [])


def test_a_run_an_operator_cancelled_is_not_retried(setting):
    view = with_retry(setting, {"r1": a_run("r1")})
    cancelled = ended("r1")
    cancelled.crash.payload["reason"] = "cancelled by ops"
    outcome = decide_exit(cancelled, view)
    assert (outcome.received, outcome.retry, outcome.attempts) == ("crash", None, (1, 3))
    assert [msg_type for msg_type, *_ in seen(setting)] == ["crash"]


def test_without_retry_or_for_a_run_started_by_hand_a_failure_is_final_at_once(setting):
    plain = make_view(setting, waiting={"r1": "sleep"})
    assert decide(request(Message("sleep", "failure", run="r1")), plain).retry is None
    by_hand = attrs.evolve(a_run("r1"), module=st.BY_HAND)
    view = with_retry(setting, {"r1": by_hand})
    outcome = decide(request(Message("sleep", "failure", run="r1")), view)
    assert (outcome.retry, outcome.attempts) == (None, (1, 3))
    assert len(seen(setting)) == 2


def test_a_retry_due_is_a_new_run_of_the_same_worker_whose_parent_failed(setting):
    pending = st.PendingRetry("r1", "sleep", "workers.sleep", ("-x",), "arbutus", 2, 3, 1.0,
                              "crash")  # fmt: skip
    outcome = decide_retry(pending, make_view(setting))
    (launch,) = outcome.launches
    assert launch == Launch("run1", NextWorker("workers.sleep", ["-x"], "arbutus"), "r1", 2)
    assert (outcome.retried, outcome.received) == ("r1", "retry")
    assert [text % args for _level, text, args in outcome.notes] == [
        "retrying sleep worker after run r1's crash: attempt 2/3 is run run1"
    ]
    gone = attrs.evolve(pending, worker="ghost", module="ghost")
    dropped = decide_retry(gone, make_view(setting))
    assert (dropped.launches, dropped.retried) == ((), "r1")


def test_a_cancelled_retry_is_dropped_and_nothing_else_happens(setting):
    pending = st.PendingRetry("r1", "sleep", "workers.sleep", (), "localhost", 2, 3, 1.0,
                              "failure")  # fmt: skip
    outcome = decide_cancel_retry(pending, make_view(setting), by="nowcastkit cancel")
    assert outcome.retried == "r1"
    assert (outcome.launches, outcome.change, outcome.finished, outcome.retry) == (
        (), None, None, None)  # fmt: skip
    assert outcome.reply == {"ok": True, "retry cancelled": True, "run": "r1",
                             "worker": "sleep", "attempt": 2, "attempts": 3,
                             "after": "failure"}  # fmt: skip
    assert [text % args for _level, text, args in outcome.notes] == [
        "sleep worker: retry 2/3 after run r1's failure cancelled, as nowcastkit cancel asked"
    ]
    assert [event for event, _worker, _fields in outcome.events] == ["retry cancelled"]
