"""Launched worker runs: per-run logs, exits without a report, deadlines."""

import os
import signal
import time

import pytest
import yaml
from conftest import base_config, wait_for

from nowcastkit import NextWorker
from nowcastkit import runs as rn
from nowcastkit.config import load_config

WORKER = """\
import os, sys, time
print("started", os.environ["NOWCASTKIT_RUN_ID"], flush=True)
print("to stderr", file=sys.stderr, flush=True)
if sys.argv[2:] == ["exit3"]:
    sys.exit(3)
if sys.argv[2:] == ["ignore-term"]:
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(60)
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    (tmp_path / "tiny.py").write_text(WORKER)
    raw = base_config(tmp_path)
    raw["message registry"]["workers"]["tiny"] = {"crash": "tiny crashed", "timeout": 0.5}
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    runs = rn.Runs(tmp_path / "runs")
    yield runs, load_config(tmp_path / "nowcast.yaml")
    for running in runs.active.values():
        os.killpg(running.pid, signal.SIGKILL)


def _reaped(runs):
    return wait_for(lambda: rn.reap(runs), "exited run")


def test_sigkilled_worker_becomes_a_crash_with_its_output(setup):
    runs, config = setup
    running = rn.launch(runs, NextWorker("tiny"), config)
    wait_for(lambda: "started" in running.log_path.read_text(), "worker output")
    os.kill(running.pid, signal.SIGKILL)
    [(done, status)] = _reaped(runs)
    msg = rn.crash_message(done, status)
    assert (msg.source, msg.type) == ("tiny", "crash")
    assert msg.payload["signal"] == "SIGKILL"
    assert msg.payload["run id"] == running.run_id
    assert running.log_path.name == f"tiny-{running.run_id}.log"


def test_exit_status_and_last_output_are_reported(setup):
    runs, config = setup
    rn.launch(runs, NextWorker("tiny", args=["exit3"]), config)
    [(done, status)] = _reaped(runs)
    payload = rn.crash_message(done, status).payload
    assert payload["exit status"] == 3
    assert payload["reason"] == "exited without reporting to the manager"
    assert payload["last output"][-2:] == [f"started {done.run_id}", "to stderr"]


def test_deadline_terms_then_kills(setup):
    runs, config = setup
    running = rn.launch(runs, NextWorker("tiny", args=["ignore-term"]), config)
    wait_for(lambda: "started" in running.log_path.read_text(), "worker output")
    assert running.deadline is not None
    rn.TERM_GRACE, grace = 0.3, rn.TERM_GRACE
    try:
        deadline = time.monotonic() + 10
        while running.run_id in runs.active:
            assert time.monotonic() < deadline, "timed-out run never ended"
            rn.enforce_deadlines(runs, time.monotonic())
            exited = rn.reap(runs)
            time.sleep(0.02)
    finally:
        rn.TERM_GRACE = grace
    [(done, status)] = exited
    payload = rn.crash_message(done, status).payload
    assert payload["reason"] == "timeout"
    assert payload["signal"] == "SIGKILL"  # it ignored SIGTERM


def test_adopted_run_is_watched_by_pid_and_run_id(setup):
    runs, config = setup
    first = rn.Runs(runs.log_dir)
    running = rn.launch(first, NextWorker("tiny"), config)
    wait_for(lambda: "started" in running.log_path.read_text(), "worker output")
    assert rn.is_alive(running.pid, running.run_id)
    assert not rn.is_alive(running.pid, "another-run")
    rn.adopt(runs, running.run_id, running.worker, running.pid, running.log_path)
    assert rn.reap(runs) == []
    os.kill(running.pid, signal.SIGKILL)
    running.popen.wait(5)
    [(done, status)] = _reaped(runs)
    assert done.run_id == running.run_id and status is None
