"""The built-in rotate_logs and clear_checklist workers against a real broker and manager."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, System, wait_for

pytestmark = pytest.mark.timeout(60)

# The toy system's own flow and registry entries, so the tests exercise what it ships.
_FLOW = (REPO / "example_system" / "next_workers.py").read_text()
_REGISTRY = yaml.safe_load((REPO / "nowcast.yaml").read_text())["message registry"]["workers"]

CHAIN = """\
from nowcastkit import NextWorker


def after_sleep(msg, config, checklist):
    return {"crash": [], "failure": [], "success": [NextWorker("workers.awaken")]}[msg.type]


def after_awaken(msg, config, checklist):
    return {"crash": [], "failure": [], "success": [NextWorker("workers.rotate_logs")]}[msg.type]


def after_rotate_logs(msg, config, checklist):
    return []
"""


def _file_handler(path: Path, level: str, **extra) -> dict:
    return {
        "class": "logging.handlers.RotatingFileHandler",
        "level": level,
        "formatter": "simple",
        "filename": str(path),
        **extra,
    }


@pytest.fixture
def logged_system(toy_system: System):
    """A running broker and manager logging to rotating files, with the built-in workers."""
    logs = toy_system.folder / "logs"
    logs.mkdir()
    for name in ("rotate_logs", "clear_checklist"):
        toy_system.config["message registry"]["workers"][name] = _REGISTRY[name]
    section = toy_system.config["logging"]
    section["handlers"]["nowcast_log"] = _file_handler(logs / "nowcast.log", "DEBUG", backupCount=3)
    # maxBytes is small so a process that rotated on its own would show it at once.
    section["handlers"]["checklist"] = _file_handler(
        logs / "checklist.log", "INFO", backupCount=3, maxBytes=64
    )
    section["loggers"] = {
        "checklist": {"level": "INFO", "propagate": False, "handlers": ["checklist"]}
    }
    section["root"]["handlers"].append("nowcast_log")
    toy_system.write_config()
    toy_system.write_next_workers(_FLOW)
    toy_system.start_broker()
    toy_system.start_manager()
    return toy_system


def _run_ok(system: System, module: str, *args: str):
    result = system.run_worker(module, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _clear(system: System) -> None:
    result = _run_ok(system, "workers.clear_checklist")
    assert "received message from manager: (checklist cleared)" in result.stdout


def test_clear_checklist_logs_then_clears(logged_system):
    _run_ok(logged_system, "workers.sleep", "--sleep-time", "0")
    assert logged_system.checklist() == {"sleepyhead": {"sleep time": 0}}

    _clear(logged_system)

    assert logged_system.checklist() == {}
    logged = (logged_system.folder / "logs" / "checklist.log").read_text()
    assert "INFO [checklist] checklist:\nsleepyhead:\n  sleep time: 0\n" in logged


def test_clear_checklist_debug_sends_nothing(logged_system):
    _run_ok(logged_system, "workers.sleep", "--sleep-time", "0")

    result = _run_ok(logged_system, "workers.clear_checklist", "--debug")

    assert "would have sent message: (clear checklist)" in result.stdout
    assert logged_system.checklist() == {"sleepyhead": {"sleep time": 0}}


def test_rotate_logs_rolls_over_and_long_running_processes_follow(logged_system):
    logs = logged_system.folder / "logs"
    nowcast_log, checklist_log = logs / "nowcast.log", logs / "checklist.log"
    _run_ok(logged_system, "workers.sleep", "--sleep-time", "0")
    # Two checklist dumps, each bigger than maxBytes: the manager must not rotate on its own.
    _clear(logged_system)
    _run_ok(logged_system, "workers.sleep", "--sleep-time", "0")
    _clear(logged_system)
    assert checklist_log.stat().st_size > 64
    assert sorted(p.name for p in logs.iterdir()) == ["checklist.log", "nowcast.log"]
    nowcast_log.chmod(0o640)
    checklist_log.chmod(0o600)

    _run_ok(logged_system, "workers.rotate_logs")

    rotated = logged_system.checklist()["log files"]
    assert sorted(rotated) == [str(checklist_log), str(nowcast_log)]
    assert nowcast_log.stat().st_mode & 0o777 == 0o640
    assert checklist_log.stat().st_mode & 0o777 == 0o600
    old_nowcast, old_checklist = (
        (logs / "nowcast.log.1").read_text(),
        (logs / "checklist.log.1").read_text(),
    )
    assert "[manager] checklist cleared" in old_nowcast
    assert old_checklist.count("INFO [checklist] checklist:") == 2
    assert "[manager] checklist cleared" not in nowcast_log.read_text()

    _run_ok(logged_system, "workers.sleep", "--sleep-time", "0")
    _clear(logged_system)

    # The manager's new lines land in the new files, none in the rotated ones.
    new_nowcast = nowcast_log.read_text()
    assert "[manager] received message from sleep: (success)" in new_nowcast
    assert "[manager] checklist cleared" in new_nowcast
    assert (logs / "nowcast.log.1").read_text() == old_nowcast
    assert checklist_log.read_text().count("INFO [checklist] checklist:") == 1
    assert (logs / "checklist.log.1").read_text() == old_checklist
    assert not (logs / "checklist.log.2").exists()


def test_rotate_logs_with_no_rotating_handlers_rotates_nothing(toy_system):
    toy_system.config["message registry"]["workers"]["rotate_logs"] = _REGISTRY["rotate_logs"]
    toy_system.write_config()
    toy_system.write_next_workers(_FLOW)
    toy_system.start_broker()
    toy_system.start_manager()

    result = _run_ok(toy_system, "workers.rotate_logs")

    assert "no rotating log file handlers configured" in result.stdout
    assert toy_system.checklist() == {"log files": []}


def test_chain_sleep_awaken_rotate_logs(logged_system):
    logged_system.write_next_workers(CHAIN)

    _run_ok(logged_system, "workers.sleep", "--sleep-time", "0")

    checklist = wait_for(
        lambda: (c := logged_system.checklist()).get("log files") and c,
        "rotate_logs report in the checklist",
        timeout=20,
    )
    assert checklist["sleepyhead"] == {"sleep time": 0}
    assert "awoke at" in checklist["awake"]
    output = logged_system.manager.output()
    launches = re.findall(r"launching (\S+) worker on localhost", output)
    assert launches == ["workers.awaken", "workers.rotate_logs"]
    wait_for(
        lambda: (
            len(
                re.findall(
                    r"worker process \d+ exited with status 0", logged_system.manager.output()
                )
            )
            == 2
        ),
        "exits of the two launched workers",
    )
