"""Never stall silently, never lose state: crashes, deadlines, duplicates, kills and recovery."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import zmq
from conftest import child_env, wait_for

from nowcastkit import NextWorker, control
from nowcastkit import store as st
from nowcastkit.config import load_config

RECORDING_NEXT_WORKERS = """\
import time
from pathlib import Path

import yaml

from nowcastkit import NextWorker

CALLS = Path(__file__).with_name("calls.log")


def _record(msg):
    entry = {"source": msg.source, "type": msg.type, "payload": msg.payload, "at": time.time()}
    with open(CALLS, "a") as f:
        f.write(yaml.safe_dump([entry]))


def after_sleep(msg, config, checklist):
    _record(msg)
    return []


def after_awaken(msg, config, checklist):
    _record(msg)
    return []


def after_step(msg, config, checklist):
    n = msg.payload["n"] if isinstance(msg.payload, dict) else None
    if msg.type == "success" and n < TOTAL:
        return [NextWorker("step", args=[str(n + 1)])]
    _record(msg)
    return []

TOTAL = {total}
"""

STEP_WORKER = '''\
"""A chain step: note that it ran, then report its number."""
import os
import random
import time
from pathlib import Path

from nowcastkit import NowcastWorker


def work(parsed_args, config, tell_manager):
    time.sleep(random.uniform(0, {pause}))
    with open(Path(config.file).with_name("steps.log"), "a") as f:
        f.write(f"{{parsed_args.n}} {{os.getpid()}}\\n")
    return {{"n": parsed_args.n}}


worker = NowcastWorker("step")
worker.init_cli()
worker.cli.add_argument("n", type=int)
worker.run(work, lambda a: "success", lambda a: "failure")
'''


def calls(system) -> list[dict]:
    path = system.folder / "calls.log"
    return yaml.safe_load(path.read_text()) if path.exists() else []


def steps(system) -> list[int]:
    path = system.folder / "steps.log"
    return [int(line.split()[0]) for line in path.read_text().split("\n") if line]


@pytest.fixture
def lifecycle_system(toy_system):
    """A system whose after_ functions record each call, with a `step` chain worker."""
    registry = toy_system.config["message registry"]["workers"]
    registry["step"] = {"checklist key": "steps", "success": "ok", "failure": "bad", "crash": "x"}
    registry["sleep"]["timeout"] = 60
    toy_system.config["zmq"]["resend for"] = 30
    toy_system.write_config()
    toy_system.write_next_workers(RECORDING_NEXT_WORKERS.replace("{total}", "10"))
    (toy_system.folder / "step.py").write_text(STEP_WORKER.format(pause=0.05))
    return toy_system


def launched_pid(system, module: str) -> int:
    match = system.manager.wait_for_line(
        rf"launching {module} worker on localhost: run \w+, pid (\d+)"
    )
    return int(match[1])


def test_sigkilled_worker_reaches_after_worker_as_a_crash(lifecycle_system):
    system = lifecycle_system
    system.start_broker()
    system.start_manager()
    answer = system.control(
        {"command": "launch", "worker": "workers.sleep", "args": ["--sleep-time", "30"]}
    )
    assert answer["ok"], answer
    pid = launched_pid(system, "workers.sleep")
    wait_for(lambda: (system.folder / "runs" / f"sleep-{answer['run']}.log").exists(), "run log")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    (crash,) = wait_for(lambda: calls(system), "after_sleep call", timeout=5)
    detected = crash["at"] - time.time() + time.monotonic() - killed
    assert crash["type"] == "crash"
    assert crash["payload"]["signal"] == "SIGKILL"
    assert crash["payload"]["run id"] == answer["run"]
    assert detected < 1.0, f"crash reached after_sleep {detected:.2f}s after the kill"


def launch_with_timeout(system, timeout: float) -> dict:
    """Start the system with sleep's registry timeout set; launch a sleep that overstays it."""
    system.config["message registry"]["workers"]["sleep"]["timeout"] = timeout
    system.write_config()
    system.start_broker()
    system.start_manager()
    return system.control(
        {"command": "launch", "worker": "workers.sleep", "args": ["--sleep-time", "30"]}
    )


def test_a_worker_past_its_timeout_is_stopped_and_reported(lifecycle_system):
    system = lifecycle_system
    launch_with_timeout(system, 0.5)
    (crash,) = wait_for(lambda: calls(system), "after_sleep call", timeout=10)
    assert crash["type"] == "crash"
    assert crash["payload"]["reason"] == "timeout"
    assert crash["payload"]["signal"] == "SIGTERM"


def test_a_run_recovered_after_a_manager_restart_keeps_its_timeout(lifecycle_system):
    system = lifecycle_system
    answer = launch_with_timeout(system, 3)
    launched = time.monotonic()
    pid = launched_pid(system, "workers.sleep")
    system.manager.popen.kill()
    system.manager.popen.wait(5)
    system.start_manager()
    system.manager.wait_for_line(rf"run {answer['run']} \(pid {pid}\) is still running")
    (crash,) = wait_for(lambda: calls(system), "after_sleep call", timeout=15)
    # The deadline counts from the launch, not from the restart.
    assert time.monotonic() - launched < 3 + 5
    assert crash["type"] == "crash"
    assert crash["payload"]["reason"] == "timeout"
    # Not this manager's child, so its exit status is not known; it is gone (or a zombie
    # left for init to reap).
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"


def test_a_worker_run_by_hand_is_watched_by_pid(lifecycle_system):
    system = lifecycle_system
    system.start_broker()
    system.start_manager()
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers.sleep", str(system.config_path), "--sleep-time", "30"],
        cwd=system.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(),
    )  # fmt: skip
    system.manager.wait_for_line(rf"started by hand on \S+ \(pid {worker.pid}\)")
    worker.kill()
    worker.wait(5)
    (crash,) = wait_for(lambda: calls(system), "after_sleep call", timeout=5)
    assert (crash["type"], crash["payload"]["pid"]) == ("crash", worker.pid)


def test_a_duplicate_message_id_is_handled_once(lifecycle_system):
    system = lifecycle_system
    system.start_broker()
    system.start_manager()
    body = yaml.safe_dump(
        {"source": "sleep", "type": "success", "payload": {"sleep time": 1}, "id": "dup-1"}
    ).encode()
    first = system.request([body])
    second = system.request([body])
    assert first == second
    assert yaml.safe_load(first[0])["type"] == "ack"
    assert [c["type"] for c in calls(system)] == ["success"]
    system.manager.wait_for_line("message dup-1 was handled before")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_manager_killed_mid_chain_the_chain_completes_exactly_once(lifecycle_system, seed):
    system = lifecycle_system
    system.start_broker()
    system.start_manager()
    rng = random.Random(seed)
    system.control({"command": "launch", "worker": "step", "args": ["1"]})
    for _ in range(3):
        time.sleep(rng.uniform(0.05, 0.4))  # a random instant in the chain, not a sync
        system.manager.popen.kill()
        system.manager.popen.wait(5)
        system.start_manager()
    wait_for(lambda: calls(system), "the chain's last step", timeout=60)
    assert sorted(steps(system)) == list(range(1, 11)), "a step was lost or ran twice"
    # The checklist file is written just after after_step returns: poll for it.
    wait_for(lambda: system.checklist()["steps"] == {"n": 10}, "the last step in the checklist")
    assert [c["payload"]["n"] for c in calls(system)] == [10]


@pytest.mark.timeout(60)
def test_broker_killed_while_a_worker_waits_the_resend_is_answered(lifecycle_system):
    system = lifecycle_system
    system.config["zmq"]["reply timeout"] = 0.5
    system.write_config()
    system.write_next_workers(
        RECORDING_NEXT_WORKERS.replace("{total}", "10").replace(
            "def after_sleep(msg, config, checklist):\n",
            "def after_sleep(msg, config, checklist):\n"
            "    CALLS.with_name('holding').touch()\n    time.sleep(1)\n",
        )
    )
    broker = system.start_broker()
    system.start_manager()
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers.sleep", str(system.config_path), "--sleep-time", "0"],
        cwd=system.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**child_env(), "NOWCASTKIT_RUN_ID": "by-test"},
    )  # fmt: skip
    # The manager holds the message (after_sleep has begun) when the broker is killed.
    wait_for(lambda: (system.folder / "holding").exists(), "after_sleep to begin")
    broker.popen.kill()
    broker.popen.wait(5)
    system.start_broker()
    out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, out
    assert "(ack) message acknowledged" in out
    assert [c["type"] for c in calls(system)] == ["success"]


@pytest.mark.timeout(120)
def test_no_zombies_after_a_fifty_worker_chain(lifecycle_system):
    system = lifecycle_system
    system.write_next_workers(RECORDING_NEXT_WORKERS.replace("{total}", "50"))
    (system.folder / "step.py").write_text(STEP_WORKER.format(pause=0))
    system.start_broker()
    manager = system.start_manager()
    system.control({"command": "launch", "worker": "step", "args": ["1"]})
    wait_for(lambda: calls(system), "the chain's last step", timeout=90)
    assert sorted(steps(system)) == list(range(1, 51))

    def children():
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == manager.popen.pid:
                found.append(fields[0])
        return found

    wait_for(lambda: children() == [], "all of the manager's children reaped", timeout=10)


def test_a_waiting_race_group_survives_a_manager_kill(lifecycle_system):
    system = lifecycle_system
    system.write_next_workers(
        RECORDING_NEXT_WORKERS.replace("{total}", "10")
        + "\n\ndef after_awaken(msg, config, checklist):\n"
        "    _record(msg)\n"
        "    return ([], {'sleep', 'awaken2'})\n\n"
        "def after_sleep(msg, config, checklist):\n"
        "    _record(msg)\n"
        "    return [NextWorker('step', args=['10'])]\n"
    )
    system.start_broker()
    system.start_manager()
    assert system.send("awaken", "success")["type"] == "ack"
    assert system.send("sleep", "success")["type"] == "ack"  # held: awaken2 has not reported
    system.manager.popen.kill()
    system.manager.popen.wait(5)
    system.config["message registry"]["workers"]["awaken2"] = {"success": "ok"}
    system.write_config()
    system.write_next_workers(
        (system.folder / "next_workers.py").read_text()
        + "\n\ndef after_awaken2(msg, config, checklist):\n    return []\n"
    )
    system.start_manager()
    system.manager.wait_for_line(r"race condition group still waiting for \['awaken2'\]")
    assert not (system.folder / "steps.log").exists()
    assert system.send("awaken2", "success")["type"] == "ack"
    wait_for(lambda: (system.folder / "steps.log").exists(), "the held step worker to run")
    assert steps(system) == [10]


def test_old_message_ids_and_runs_are_pruned(lifecycle_system):
    system = lifecycle_system
    system.config["keep history days"] = 1e-5  # about a second
    system.write_config()
    system.start_broker()
    system.start_manager()
    assert system.send("sleep", "success", {"sleep time": 1})["type"] == "ack"
    time.sleep(1.5)  # the records must age past the retention; nothing to poll for
    system.manager.stop()
    system.start_manager()
    line = system.manager.wait_for_line(r"pruned (\d+) message ids and (\d+) runs")
    assert int(line[1]) >= 1
    assert re.search("pruned", system.manager.output())


def test_manager_killed_holding_a_message_a_plain_client_still_gets_its_answer(lifecycle_system):
    """A reference-design worker sends once, with no id, and never resends."""
    system = lifecycle_system
    system.write_next_workers(
        RECORDING_NEXT_WORKERS.replace("{total}", "10").replace(
            "def after_sleep(msg, config, checklist):\n",
            "def after_sleep(msg, config, checklist):\n"
            "    CALLS.with_name('entered').touch()\n"
            "    time.sleep(1)\n",
        )
    )
    system.start_broker()
    system.start_manager()
    plain = system.context.socket(zmq.REQ)
    plain.setsockopt(zmq.LINGER, 0)
    plain.connect(system.workers_endpoint)
    plain.send(yaml.safe_dump({"source": "sleep", "type": "success", "payload": None}).encode())
    wait_for(lambda: (system.folder / "entered").exists(), "after_sleep to start")
    system.manager.popen.kill()
    system.manager.popen.wait(5)
    system.start_manager()
    assert plain.poll(15_000), "the plain client never got its answer"
    assert yaml.safe_load(plain.recv())["type"] == "ack"
    plain.close()
    assert [c["type"] for c in calls(system)] == ["success"]
    system.broker.wait_for_line(r"manager disconnected; 1 unanswered requests will be resent")


def test_next_worker_launch_from_a_worker_is_a_run_of_the_manager(lifecycle_system):
    # The reference design's NextWorker.launch started an untracked process; here the
    # manager launches it, so its outcome reaches after_<worker> and nothing is left unreaped.
    system = lifecycle_system
    system.start_broker()
    system.start_manager()
    config = load_config(system.config_path)
    run_id = NextWorker("workers.sleep", args=["--sleep-time", "0"]).launch(config, "launcher")
    pid = launched_pid(system, "workers.sleep")
    (call,) = wait_for(lambda: calls(system), "after_sleep call", timeout=15)
    assert (call["source"], call["type"]) == ("sleep", "success")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the run reaped")
    (run,) = st.history(st.open_read_only(st.state_paths(config)[0]), worker="sleep")
    assert (run.run_id, run.outcome) == (run_id, "success")


def test_next_worker_launch_says_so_when_the_manager_is_down(lifecycle_system):
    system = lifecycle_system
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        system.config["zmq"]["ports"]["control"] = unused.getsockname()[1]
    system.write_config()
    config = load_config(system.config_path)
    with pytest.raises(control.ManagerUnreachable, match=r"no answer on tcp://127\.0\.0\.1:\d+"):
        NextWorker("workers.sleep").launch(config, "launcher", timeout=0.5)
