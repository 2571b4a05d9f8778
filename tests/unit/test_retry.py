"""A worker's retry policy and its back-off: pure values and functions."""

from __future__ import annotations

import attrs
import pytest
import yaml
from conftest import base_config
from hypothesis import given
from hypothesis import strategies as s

from nowcastkit import store as st
from nowcastkit.cli.monitor import describe
from nowcastkit.config import load_config
from nowcastkit.retry import (
    Retry,
    from_value,
    kind_of,
    pending_after,
    problems,
    wait,
    worker_retry,
)

pytestmark = pytest.mark.timeout(30)

POLICY = Retry(attempts=4, backoff=10, max=35)


def test_the_wait_doubles_from_backoff_up_to_max_less_up_to_half_of_it_by_jitter():
    assert [wait(POLICY, attempt, jitter=0.0) for attempt in (1, 2, 3, 4)] == [10, 20, 35, 35]
    assert [wait(POLICY, attempt, jitter=1.0) for attempt in (1, 2, 3)] == [5, 10, 17.5]
    assert wait(Retry(3, backoff=0.25, max=1), 1, 0.5) == pytest.approx(0.1875)


@given(s.integers(1, 10_000), s.floats(0, 1), s.floats(0, 1e4), s.floats(0, 1e4))
def test_a_wait_is_never_over_max_nor_under_half_the_undelayed_one(attempt, jitter, a, b):
    policy = Retry(3, backoff=min(a, b), max=max(a, b))
    undelayed = min(policy.max, policy.backoff * 2.0 ** min(attempt - 1, 64))
    assert undelayed / 2 <= wait(policy, attempt, jitter) <= policy.max


def test_attempts_count_every_run_the_first_included():
    once = Retry(1)
    assert not once.retries("failure", 1)
    assert [POLICY.retries("crash", n) for n in (1, 2, 3, 4)] == [True, True, True, False]
    assert not Retry(3, on={"crash"}).retries("failure", 1)
    with pytest.raises(ValueError, match="attempts: got 0"):
        Retry(0)


@pytest.mark.parametrize(("msg_type", "kind"), [
    ("crash", "crash"), ("failure", "failure"), ("failure nowcast", "failure"),
    ("success", None), ("failures", None), ("success failure", None),
])  # fmt: skip
def test_failure_types_of_nemo_style_systems_count_as_failure(msg_type, kind):
    assert kind_of(msg_type) == kind


def test_a_retry_follows_a_failed_attempt_with_the_same_module_args_and_host():
    run = st.Run("r1", "sleep", "workers.sleep", ("--sleep-time", "3"), "arbutus", attempt=2)
    retry = pending_after(POLICY, run, "failure nowcast", now=1000.0, jitter=0.0)
    assert retry == st.PendingRetry("r1", "sleep", "workers.sleep", ("--sleep-time", "3"),
                                    "arbutus", 3, 4, 1020.0, "failure nowcast")  # fmt: skip
    assert pending_after(POLICY, run, "success", 1000.0, 0.0) is None
    assert pending_after(POLICY, attrs.evolve(run, attempt=4), "crash", 1000.0, 0.0) is None
    by_hand = attrs.evolve(run, module=st.BY_HAND)
    assert pending_after(POLICY, by_hand, "crash", 1000.0, 0.0) is None


def test_defaults_and_a_valid_value():
    value = {"attempts": 3}
    assert problems(value) == []
    assert from_value(value) == Retry(3, 60.0, 900.0, frozenset({"crash", "failure"}))
    value = {"attempts": 2, "backoff": 0.5, "max": 2.5, "on": ["crash"]}
    assert from_value(value) == Retry(2, 0.5, 2.5, frozenset({"crash"}))


@pytest.mark.parametrize(("value", "found"), [
    ({"attempts": 0}, [("retry.attempts", "got 0, expected a whole number >= 1 "
                                          "(every run counts, the first included)")]),
    ({"attempts": True}, [("retry.attempts", "got True, expected a whole number >= 1 "
                                             "(every run counts, the first included)")]),
    ({"attempts": 2, "backoff": "1m"}, [("retry.backoff", "got '1m', expected seconds >= 0")]),
    ({"attempts": 2, "backoff": 60, "max": 30},
     [("retry.max", "got 30, expected seconds >= backoff (60)")]),
    ({"attempts": 2, "on": []}, [("retry.on", "got [], expected a list of crash, failure")]),
    ({"attempts": 2, "on": "crash"},
     [("retry.on", "got 'crash', expected a list of crash, failure")]),
    ([3], [("retry", "got [3], expected a mapping of attempts, backoff, max, on")]),
])  # fmt: skip
def test_each_problem_names_its_key_and_value(value, found):
    assert problems(value) == found


def test_the_monitor_words_the_retry_events():
    pending = {"event": "retry pending", "worker": "sleep", "run": "r1", "after": "crash",
               "attempt": 2, "attempts": 3, "due": 1764666773.0}  # fmt: skip
    assert describe(pending).startswith("run r1: crash; attempt 2/3 due ")
    launched = {"event": "retry", "worker": "sleep", "run": "r2", "parent": "r1",
                "attempt": 2, "attempts": 3}  # fmt: skip
    assert describe(launched) == "attempt 2/3 is run r2, after run r1"


def test_worker_retry_reads_the_registry_entry(tmp_path):
    config = base_config(tmp_path)
    config["message registry"]["workers"]["sleep"]["retry"] = {"attempts": 2, "backoff": 1.5}
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(config))
    loaded = load_config(tmp_path / "nowcast.yaml")
    assert worker_retry(loaded, "sleep") == Retry(2, 1.5, 900.0)
    assert worker_retry(loaded, "awaken") is None and worker_retry(loaded, "ghost") is None
