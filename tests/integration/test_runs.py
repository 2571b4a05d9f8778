"""The supervisor's runs: per-run logs, exits without a report, deadlines, adopted pids."""

import os
import signal
import time
from pathlib import Path

import attrs
import pytest
import yaml
from conftest import base_config, wait_for

from nowcastkit import NextWorker
from nowcastkit.config import load_config
from nowcastkit.manager import supervisor as sv
from nowcastkit.manager.decide import Launch
from nowcastkit.manager.launchers import is_alive

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
    supervisor = sv.Supervisor(load_config(tmp_path / "nowcast.yaml"), tmp_path / "runs")
    yield supervisor
    for running in supervisor.active.values():
        os.killpg(running.pid, signal.SIGKILL)


def start(supervisor, worker: NextWorker, run_id: str = "r1"):
    [running], failed = supervisor.start([Launch(run_id, worker)])
    assert failed == []
    return running


def _ended(supervisor):
    return wait_for(lambda: supervisor.tick(time.monotonic()), "ended run")


def test_sigkilled_worker_becomes_a_crash_with_its_output(setup):
    running = start(setup, NextWorker("tiny"))
    wait_for(lambda: "started" in running.log_path.read_text(), "worker output")
    os.kill(running.pid, signal.SIGKILL)
    [ended] = _ended(setup)
    msg = ended.crash
    assert (msg.source, msg.type) == ("tiny", "crash")
    assert msg.payload["signal"] == "SIGKILL"
    assert msg.payload["run id"] == running.run_id
    assert running.log_path.name == f"tiny-{running.run_id}.log"


def test_exit_status_and_last_output_are_reported(setup):
    start(setup, NextWorker("tiny", args=["exit3"]))
    [ended] = _ended(setup)
    payload = ended.crash.payload
    assert ended.status == payload["exit status"] == 3
    assert payload["reason"] == "exited without reporting to the manager"
    assert payload["last output"][-2:] == [f"started {ended.run_id}", "to stderr"]


def test_a_worker_that_cannot_start_is_reported_failed_and_the_rest_start(setup):
    started, failed = setup.start(
        [Launch("r1", NextWorker("tiny", host="nowhere")), Launch("r2", NextWorker("tiny"))]
    )
    assert [item.run_id for item in failed] == ["r1"]  # no such host in run.enabled hosts
    assert [running.run_id for running in started] == ["r2"]


def test_deadline_terms_then_kills(setup, monkeypatch):
    running = start(setup, NextWorker("tiny", args=["ignore-term"]))
    wait_for(lambda: "started" in running.log_path.read_text(), "worker output")
    assert running.deadline is not None
    monkeypatch.setattr(sv, "TERM_GRACE", 0.3)
    deadline = time.monotonic() + 10
    while running.run_id in setup.active:
        assert time.monotonic() < deadline, "timed-out run never ended"
        ended = setup.tick(time.monotonic())
        time.sleep(0.02)
    [ended] = ended
    payload = ended.crash.payload
    assert payload["reason"] == "timeout"
    assert payload["signal"] == "SIGKILL"  # it ignored SIGTERM


@attrs.define
class Unkillable:
    """A run that outlives every signal: a remote one whose host stopped answering."""

    pid: int | None = None
    wakes: bool = True
    launch_failure: None = None
    signals: list = attrs.field(factory=list)

    def poll(self):
        return False, None

    def signal(self, signum):
        self.signals.append(signum)

    def reported(self):
        pass

    def crash_details(self):
        return None


def test_a_run_that_outlives_its_kill_is_signalled_again_at_a_pace_not_in_a_spin(setup):
    process = Unkillable()
    now = time.monotonic()
    setup.active["r9"] = sv.Running("r9", NextWorker("tiny"), Path(""), process, deadline=now)
    for step in range(200):  # 20 simulated seconds of a loop woken every 0.1 s
        setup.tick(now + step * 0.1)
        assert setup.wake_at(now + step * 0.1) > now + step * 0.1
    assert process.signals[0] == signal.SIGTERM
    assert 3 <= process.signals.count(signal.SIGKILL) <= 4  # every TERM_GRACE (5 s)
    del setup.active["r9"]


def test_adopted_run_is_watched_by_pid_and_run_id(setup):
    first = sv.Supervisor(setup.config, setup.log_dir)
    running = start(first, NextWorker("tiny"))
    wait_for(lambda: "started" in running.log_path.read_text(), "worker output")
    assert is_alive(running.pid, running.run_id)
    assert not is_alive(running.pid, "another-run")
    setup.adopt(running.run_id, running.worker, running.pid)
    assert setup.tick(time.monotonic()) == []
    assert setup.wake_at(0.0) == sv.WATCH_EVERY  # no SIGCHLD for it: looked at on a timer
    os.kill(running.pid, signal.SIGKILL)
    running.process.popen.wait(5)
    [ended] = _ended(setup)
    assert ended.run_id == running.run_id and ended.status is None
