"""The manager's contract against real broker and manager processes on loopback ports."""

from __future__ import annotations

import re
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml
import zmq
from conftest import System, start_process, wait_for

pytestmark = pytest.mark.timeout(60)

ACK = {"source": "manager", "type": "ack", "payload": None}

# A worker module the manager can launch: it leaves <name>.ran beside the config file.
TOUCH_WORKER = """\
import sys
from pathlib import Path

Path(sys.argv[1]).with_name(sys.argv[2] + ".ran").touch()
"""

RACE_FLOW = """\
from nowcastkit import NextWorker


def after_a(msg, config, checklist):
    return [NextWorker("touch", args=["a_now"])], {"b", "c"}


def after_b(msg, config, checklist):
    return [NextWorker("touch", args=["from_b"])]


def after_c(msg, config, checklist):
    return [NextWorker("touch", args=["from_c"])]


def after_d(msg, config, checklist):
    return [NextWorker("touch", args=["d_now"])], {"f"}


def after_f(msg, config, checklist):
    return [NextWorker("touch", args=["from_f"])]


def after_e(msg, config, checklist):
    return [NextWorker("touch", args=["e"])], set()
"""


def register(system: System, name: str, **types: str) -> None:
    system.config["message registry"]["workers"][name] = {
        key.replace("_", " "): words for key, words in types.items()
    }


def served(system: System) -> None:
    """A valid message right after a bad one gets its ack and updates the checklist."""
    reply = system.send("sleep", "success", {"sleep time": 7})
    assert reply == ACK
    assert system.checklist()["sleepyhead"] == {"sleep time": 7}


def launched(system: System, name: str) -> list[str]:
    """The manager's debug lines for launches of the touch worker with argument *name*."""
    needle = f"'-m', 'touch', '{system.config_path}', '{name}']"
    return [line for line in system.manager.output().splitlines() if needle in line]


def test_worker_message_updates_checklist_and_calls_after_worker(toy_system):
    toy_system.write_next_workers(
        "from pathlib import Path\n\n"
        "def after_sleep(msg, config, checklist):\n"
        "    calls = Path(config.file).with_name('after_sleep.calls')\n"
        "    with calls.open('a') as f:\n"
        "        f.write(f'{msg.type} {checklist}\\n')\n"
        "    return []\n"
    )
    toy_system.start_broker()
    toy_system.start_manager()
    assert toy_system.send("sleep", "success", {"sleep time": 0}) == ACK
    assert toy_system.checklist() == {"sleepyhead": {"sleep time": 0}}
    calls = (toy_system.folder / "after_sleep.calls").read_text()
    assert calls == "success {'sleepyhead': {'sleep time': 0}}\n"
    toy_system.manager.wait_for_line(
        r"DEBUG \[manager\] received message from sleep: \(success\) sleep worker slept well"
    )
    toy_system.manager.wait_for_line(r"checklist updated with \[sleepyhead\] items from sleep")


@pytest.mark.parametrize("msg_type", ["failure", "crash"])
def test_message_without_payload_keeps_the_last_section(running_system, msg_type):
    assert running_system.send("sleep", "success", {"sleep time": 5}) == ACK
    assert running_system.send("sleep", msg_type) == ACK
    assert running_system.checklist() == {"sleepyhead": {"sleep time": 5}}


def test_unregistered_worker(running_system):
    reply = running_system.send("nobody", "success")
    assert reply == {"source": "manager", "type": "unregistered worker", "payload": "nobody"}
    running_system.manager.wait_for_line(r"ERROR \[manager\] message from unregistered worker")
    served(running_system)


@pytest.mark.parametrize("msg_type", ["bogus", "checklist key"])
def test_unregistered_message_type(running_system, msg_type):
    reply = running_system.send("sleep", msg_type)
    assert reply == {"source": "manager", "type": "unregistered message type", "payload": msg_type}
    running_system.manager.wait_for_line(r"ERROR \[manager\] unregistered message type from sleep")
    served(running_system)


@pytest.mark.parametrize(
    ("frames", "cause"),
    [
        ([b"source: [sleep\ntype: success\n"], "not valid YAML"),
        ([b"just some text"], "not a mapping: got str"),
        ([b"- source\n- type\n- payload\n"], "not a mapping: got list"),
        ([b"source: sleep\ntype: success\n"], "keys: got source, type"),
        ([b"source: sleep\ntype: success\npayload: 1\nextra: 2\n"], "keys: got extra"),
        ([b"source: [sleep]\ntype: success\npayload: null\n"], "message source: got"),
        ([b"source: sleep\ntype: {a: 1}\npayload: null\n"], "message type: got"),
        ([b"\xff\xfe\x00\x80\x81junk"], "not UTF-8"),
        ([b"source: sleep\x00\n"], "not valid YAML"),
        ([b"source: sleep\ntype: success\npayload: null\n", b"second frame"], "has 2 frames"),
        ([b"[" * 100_000], "nested deeper than 200 levels"),
        ([b"- " * 2_000 + b"x"], "nested deeper than 200 levels"),
    ],
    ids=[
        "not-yaml",
        "scalar",
        "list",
        "missing-key",
        "extra-key",
        "source-type",
        "type-type",
        "binary-junk",
        "nul-byte",
        "multi-frame",
        "deeply-nested",
        "deeper-than-libyaml-allows",
    ],
)
def test_malformed_frame_gets_error_reply_then_next_message_is_served(
    running_system, frames, cause
):
    (reply,) = running_system.request(frames)
    body = yaml.safe_load(reply)
    assert body["source"] == "manager"
    assert body["type"] == "malformed message"
    assert cause in body["payload"]
    running_system.manager.wait_for_line(r"ERROR \[manager\] malformed message: .*" + cause)
    served(running_system)
    assert running_system.manager.popen.poll() is None


def test_need_hit_and_miss(toy_system):
    toy_system.config["message registry"]["workers"]["sleep"]["need"] = "sleep worker needs"
    toy_system.start_broker()
    toy_system.start_manager()
    toy_system.send("sleep", "success", {"sleep time": 3})
    reply = toy_system.send("sleep", "need", "sleepyhead")
    assert reply == {"source": "manager", "type": "ack", "payload": {"sleep time": 3}}
    reply = toy_system.send("sleep", "need", "no such key")
    assert reply == {
        "source": "manager",
        "type": "checklist key not found",
        "payload": "no such key",
    }
    toy_system.manager.wait_for_line(r"ERROR \[manager\] sleep needs checklist key 'no such key'")
    served(toy_system)


def test_clear_checklist_logs_then_clears(toy_system):
    register(toy_system, "tidy", clear_checklist="tidy worker cleared the checklist")
    toy_system.start_broker()
    toy_system.start_manager()
    toy_system.send("sleep", "success", {"sleep time": 4})
    reply = toy_system.send("tidy", "clear checklist")
    assert reply == {"source": "manager", "type": "checklist cleared", "payload": None}
    assert toy_system.checklist() == {}
    toy_system.manager.wait_for_line(
        r"INFO \[checklist\] checklist:\nsleepyhead:\n  sleep time: 4\n"
    )
    served(toy_system)


def test_missing_after_worker_function(toy_system):
    register(toy_system, "orphan", checklist_key="orphan", success="orphan worker done")
    toy_system.start_broker()
    toy_system.start_manager()
    reply = toy_system.send("orphan", "success", {"x": 1})
    assert reply["type"] == "no after_worker function"
    assert "after_orphan" in reply["payload"]
    toy_system.manager.wait_for_line(r"ERROR \[manager\] no after_orphan function")
    served(toy_system)


def test_exception_in_after_worker_then_next_message_served(toy_system):
    toy_system.write_next_workers(
        "def after_sleep(msg, config, checklist):\n"
        "    if msg.type == 'failure':\n"
        "        raise RuntimeError('flow is broken')\n"
        "    return []\n"
    )
    toy_system.start_broker()
    toy_system.start_manager()
    reply = toy_system.send("sleep", "failure")
    assert reply == {
        "source": "manager",
        "type": "after_worker error",
        "payload": "after_sleep raised RuntimeError: flow is broken",
    }
    toy_system.manager.wait_for_line(r"ERROR \[manager\] after_sleep raised:\nTraceback")
    served(toy_system)


def test_syntax_error_in_next_workers_then_next_message_served(running_system):
    running_system.write_next_workers("def after_sleep(msg, config, checklist)\n    return []\n")
    reply = running_system.send("sleep", "success", {"sleep time": 1})
    assert reply["type"] == "after_worker error"
    assert "SyntaxError" in reply["payload"]
    running_system.manager.wait_for_line(r"ERROR \[manager\] next workers module .* SyntaxError")
    # The checklist is still kept while the flow is broken.
    assert running_system.checklist() == {"sleepyhead": {"sleep time": 1}}
    running_system.write_next_workers("def after_sleep(msg, config, checklist):\n    return []\n")
    served(running_system)
    running_system.manager.wait_for_line(r"next workers module reloaded from")


def test_next_workers_file_deleted_and_restored(running_system):
    source = running_system.folder / "next_workers.py"
    text = source.read_text()
    source.unlink()
    assert running_system.send("sleep", "success")["type"] == "after_worker error"
    source.write_text(text)
    served(running_system)


def test_hot_edit_of_next_workers_takes_effect_without_restart(running_system):
    result = running_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert running_system.checklist() == {"sleepyhead": {"sleep time": 0}}
    running_system.write_next_workers(
        "from nowcastkit import NextWorker\n\n\n"
        "def after_sleep(msg, config, checklist):\n"
        "    return [NextWorker('workers.awaken')] if msg.type == 'success' else []\n\n\n"
        "def after_awaken(msg, config, checklist):\n"
        "    return []\n"
    )
    result = running_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    checklist = wait_for(
        lambda: "awake" in running_system.checklist() and running_system.checklist(),
        "awake key in the checklist",
    )
    assert set(checklist["awake"]) == {"awoke at"}
    running_system.manager.wait_for_line(r"launching workers.awaken worker on localhost")
    assert running_system.manager.popen.poll() is None
    # Compiled at start and after the edit only, not once per message.
    assert running_system.manager.output().count("next workers module loaded from") == 2


@pytest.fixture
def race_system(toy_system):
    for name in "abcdef":
        register(toy_system, name, checklist_key=name, success=f"{name} worker done")
    (toy_system.folder / "touch.py").write_text(TOUCH_WORKER)
    toy_system.write_next_workers(RACE_FLOW)
    toy_system.start_broker()
    toy_system.start_manager()
    return toy_system


def test_two_race_groups_at_once(race_system):
    folder = race_system.folder

    def ran(name):
        return wait_for(lambda: (folder / f"{name}.ran").exists(), f"launch of {name}")

    assert race_system.send("a", "success") == ACK
    ran("a_now")  # the racers' launch is not held
    assert race_system.send("d", "success") == ACK
    ran("d_now")
    assert race_system.send("f", "success") == ACK
    ran("from_f")  # d's group is complete; a's still waits for b and c
    assert race_system.send("c", "success") == ACK
    race_system.send("nobody", "success")  # any reply: the launches after c are done by now
    assert launched(race_system, "from_c") == []
    assert race_system.send("b", "success") == ACK
    ran("from_b")
    ran("from_c")
    race_system.manager.wait_for_line(r"race condition resolved: releasing \['touch', 'touch'\]")


def test_empty_race_set_launches_its_workers(race_system):
    assert race_system.send("e", "success") == ACK
    wait_for(lambda: (race_system.folder / "e.ran").exists(), "launch of e's worker")


def test_failed_launch_does_not_skip_the_rest(toy_system):
    (toy_system.folder / "touch.py").write_text(TOUCH_WORKER)
    toy_system.write_next_workers(
        "from nowcastkit import NextWorker\n\n\n"
        "def after_sleep(msg, config, checklist):\n"
        "    return [NextWorker('touch', args=['x'], host='nowhere'),\n"
        "            NextWorker('touch', args=['after'])]\n"
    )
    toy_system.start_broker()
    toy_system.start_manager()
    assert toy_system.send("sleep", "success") == ACK
    wait_for(lambda: (toy_system.folder / "after.ran").exists(), "launch after a failed one")
    toy_system.manager.wait_for_line(r"ERROR \[manager\] launch of touch worker on nowhere failed")


def test_seed_layout_next_workers_beside_config(toy_system):
    """`next workers module: next_workers` is found beside the config, whatever the cwd."""
    elsewhere = toy_system.folder / "elsewhere"
    elsewhere.mkdir()
    toy_system.start_broker()
    manager = start_process(
        "manager",
        [sys.executable, "-m", "nowcastkit.manager", str(toy_system.config_path)],
        elsewhere,
        toy_system.folder / "manager-elsewhere.log",
    )
    toy_system.processes.append(manager)
    toy_system.manager = manager
    manager.wait_for_line(r"listening\.\.\.")
    assert f"next workers module loaded from {toy_system.folder / 'next_workers.py'}" in (
        manager.output()
    )
    served(toy_system)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"", "is empty"),
        (b"sleepyhead: [unclosed\n", "is not valid YAML"),
        (b"7\n", "is not a mapping"),
    ],
)
def test_empty_or_corrupt_checklist_moved_aside_at_start(toy_system, text, problem):
    path = toy_system.folder / "nowcast_checklist.yaml"
    path.write_bytes(text)
    toy_system.start_broker()
    manager = toy_system.start_manager()
    match = manager.wait_for_line(
        rf"WARNING \[manager\] checklist file {path} {problem}.*; moved it aside to (\S+)"
    )
    backup = toy_system.folder / match[1].rpartition("/")[2]
    assert backup.read_bytes() == text
    manager.wait_for_line(r"running with empty checklist")
    served(toy_system)
    assert toy_system.checklist() == {"sleepyhead": {"sleep time": 7}}


def test_missing_checklist_at_start_logs_warning(running_system):
    running_system.manager.wait_for_line(r"WARNING \[manager\] checklist load failed")
    running_system.manager.wait_for_line(r"WARNING \[manager\] running with empty checklist")


def test_existing_checklist_is_loaded_or_ignored(toy_system):
    path = toy_system.folder / "nowcast_checklist.yaml"
    path.write_text("earlier: {run: 1}\n")
    toy_system.config["message registry"]["workers"]["sleep"]["need"] = "needs"
    toy_system.start_broker()
    toy_system.start_manager()
    assert toy_system.send("sleep", "need", "earlier")["payload"] == {"run": 1}
    toy_system.manager.stop()
    toy_system.start_manager("--ignore-checklist")
    assert toy_system.send("sleep", "need", "earlier")["type"] == "checklist key not found"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_zero_with_checklist_saved(running_system, signum):
    running_system.send("sleep", "success", {"sleep time": 2})
    path = running_system.folder / "nowcast_checklist.yaml"
    path.unlink()
    running_system.manager.popen.send_signal(signum)
    assert running_system.manager.popen.wait(10) == 0
    assert running_system.checklist() == {"sleepyhead": {"sleep time": 2}}
    assert "INFO [manager] shutting down" in running_system.manager.output()


def catches(pid: int, signum: int) -> bool:
    """Whether process *pid* has a handler for *signum* (its SigCgt mask in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE)[1], 16)
    return bool(mask & 1 << (signum - 1))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_stop_signal_stops_a_manager_stuck_in_after_worker_at_once(toy_system, signum):
    toy_system.write_next_workers(
        "import time\nfrom pathlib import Path\n\n"
        "def after_sleep(msg, config, checklist):\n"
        "    folder = Path(config.file).parent\n"
        "    (folder / 'in_after').touch()\n"
        "    while (folder / 'hang').exists():\n"
        "        time.sleep(0.01)\n"
        "    return []\n"
    )
    (toy_system.folder / "hang").touch()
    toy_system.start_broker()
    manager = toy_system.start_manager()
    sock = toy_system.context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(toy_system.workers_endpoint)
    sock.send(yaml.safe_dump({"source": "sleep", "type": "success", "payload": {"n": 1}}).encode())
    wait_for(lambda: (toy_system.folder / "in_after").exists(), "after_sleep to start")
    manager.popen.send_signal(signum)
    # The first is recorded for the loop, stuck in after_sleep; the handler gives way.
    wait_for(lambda: not catches(manager.popen.pid, signum), "the first signal recorded")
    assert manager.popen.poll() is None
    manager.popen.send_signal(signum)
    assert manager.popen.wait(3) == -signum
    store = sqlite3.connect(toy_system.folder / "nowcast_state.sqlite")
    assert store.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store.close()
    # Nothing was lost: the next manager gets the message in hand and answers it.
    (toy_system.folder / "hang").unlink()
    toy_system.start_manager()
    assert sock.poll(10_000), "the message in hand at the second signal was not answered"
    assert yaml.safe_load(sock.recv()) == ACK
    sock.close()
    assert toy_system.checklist() == {"sleepyhead": {"n": 1}}


def test_sighup_reloads_config_and_next_workers(running_system):
    register(running_system, "late", checklist_key="late", success="late worker done")
    running_system.config["message registry"]["next workers module"] = "other_flow"
    (running_system.folder / "other_flow.py").write_text(
        "from pathlib import Path\n\n"
        "def after_late(msg, config, checklist):\n"
        "    Path(config.file).with_name('other_flow.called').touch()\n"
        "    return []\n"
    )
    assert running_system.send("late", "success")["type"] == "unregistered worker"
    running_system.write_config()
    running_system.manager.popen.send_signal(signal.SIGHUP)
    running_system.manager.wait_for_line(r"INFO \[manager\] reloaded config from")
    assert running_system.send("late", "success", {"on time": False}) == ACK
    assert (running_system.folder / "other_flow.called").exists()
    assert running_system.checklist()["late"] == {"on time": False}


def test_sighup_with_bad_config_keeps_the_old_one(running_system):
    running_system.config_path.write_text("zmq: [\n")
    running_system.manager.popen.send_signal(signal.SIGHUP)
    running_system.manager.wait_for_line(
        r"ERROR \[manager\] config reload failed, still running on the old config: "
        + str(running_system.config_path)
    )
    served(running_system)


def test_sigterm_during_a_message_finishes_it_then_exits_zero(toy_system):
    toy_system.write_next_workers(
        "from pathlib import Path\n\n"
        "def after_sleep(msg, config, checklist):\n"
        "    folder = Path(config.file).parent\n"
        "    (folder / 'in_after').touch()\n"
        "    while not (folder / 'release').exists():\n"
        "        pass\n"
        "    return []\n"
    )
    toy_system.start_broker()
    manager = toy_system.start_manager()
    sock = toy_system.context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(toy_system.workers_endpoint)
    try:
        sock.send(
            yaml.safe_dump({"source": "sleep", "type": "success", "payload": {"n": 1}}).encode()
        )
        wait_for(lambda: (toy_system.folder / "in_after").exists(), "after_sleep to start")
        manager.popen.send_signal(signal.SIGTERM)
        (toy_system.folder / "release").touch()
        assert sock.poll(10_000), "no reply to the message in hand at SIGTERM"
        assert yaml.safe_load(sock.recv()) == ACK
    finally:
        sock.close()
    assert manager.popen.wait(10) == 0
    assert toy_system.checklist() == {"sleepyhead": {"n": 1}}
