"""``nowcastkit validate``: every problem at once, and dry runs of after_<worker>."""

import json
import subprocess
import sys

import yaml
from conftest import child_env


def validate(system, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", "validate", str(system.config_path), *args],
        capture_output=True, text=True, timeout=30, cwd=system.folder, env=env or child_env(),
    )  # fmt: skip


def test_a_good_system_is_valid(toy_system):
    result = validate(toy_system)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{toy_system.config_path}: valid"


def test_a_dashboard_beyond_loopback_needs_insecure_said(toy_system):
    toy_system.config["dashboard"] = {"host": "0.0.0.0", "port": 8080}
    toy_system.write_config()
    result = validate(toy_system)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"{toy_system.config_path}: dashboard.host: got '0.0.0.0', expected a loopback address: "
        "the dashboard has no authentication yet, so serving beyond loopback needs "
        "dashboard.insecure: true"
    )
    toy_system.config["dashboard"]["insecure"] = True
    toy_system.write_config()
    assert validate(toy_system).returncode == 0


def test_every_problem_is_reported_at_once_with_file_and_key(toy_system):
    config = toy_system.config
    config["checklist file"] = "$(NOWCAST.ENV.NOWCASTKIT_SURELY_UNSET)/c.yaml"
    config["zmq"]["ports"]["manager"] = "x"
    config["message registry"]["workers"]["ghost"] = {"success": "s"}
    config["scheduled workers"] = [{"workers.no_such_worker": {"every": "day", "at": "10:00"}}]
    toy_system.write_config()
    toy_system.write_next_workers(
        "def after_sleep(msg, config, checklist):\n    return []\n"
        "def after_awaken(msg, config, checklist):\n    return []\n"
        "def after_stray(msg, config, checklist):\n    return []\n"
    )
    result = validate(toy_system)
    assert result.returncode == 1
    path = toy_system.config_path
    lines = result.stdout.splitlines()
    assert (
        f"{path}: checklist file: environment variable NOWCASTKIT_SURELY_UNSET is not set" in lines
    )
    assert f"{path}: zmq.ports.manager: got 'x', expected int" in lines
    assert any(
        line.startswith(f"{path}: message registry.workers.ghost: no after_ghost") for line in lines
    )
    assert any(
        "after_stray: worker 'stray' is not in message registry.workers" in line for line in lines
    )
    assert (
        f"{path}: scheduled workers[0].workers.no_such_worker: worker module cannot be found"
        in lines
    )
    assert lines[-1] == f"{path}: 5 problems"

    as_json = json.loads(validate(toy_system, "--json").stdout)
    assert as_json["valid"] is False
    assert {p["key"] for p in as_json["problems"]} >= {"zmq.ports.manager", "after_stray"}


def test_a_next_workers_module_that_will_not_import_is_a_problem(toy_system):
    toy_system.write_next_workers("def after_sleep(msg, config, checklist)\n    return []\n")
    result = validate(toy_system)
    assert result.returncode == 1
    assert "message registry.next workers module: next workers module" in result.stdout
    assert "SyntaxError" in result.stdout


def test_dry_run_shows_what_would_launch_and_changes_nothing(toy_system):
    toy_system.write_next_workers(
        "from nowcastkit import NextWorker\n"
        "def after_sleep(msg, config, checklist):\n"
        "    checklist['touched'] = True\n"
        "    return [NextWorker('workers.awaken', args=['--x', str(msg.payload['n'])])]\n"
        "def after_awaken(msg, config, checklist):\n"
        "    return ([NextWorker('workers.sleep')], {'sleep', 'other'})\n"
    )
    checklist = toy_system.folder / "nowcast_checklist.yaml"
    checklist.write_text(yaml.safe_dump({"sleepyhead": {"sleep time": 1}}))
    before = checklist.read_text()

    result = validate(toy_system, "--dry-run", "sleep", "success", "--payload", "{n: 7}")
    assert result.returncode == 0, result.stderr
    assert "would launch:" in result.stdout
    assert "-m workers.awaken" in result.stdout and "--x 7" in result.stdout
    assert checklist.read_text() == before

    held = json.loads(validate(toy_system, "--dry-run", "awaken", "success", "--json").stdout)
    assert [w["module"] for w in held["launch"]] == ["workers.sleep"]
    assert held["hold"] == [{"until": ["other", "sleep"], "workers": []}]
    text = validate(toy_system, "--dry-run", "awaken", "success").stdout
    assert "would wait for other, sleep to finish" in text


def test_no_config_is_a_usage_error(toy_system):
    env = child_env()
    env.pop("NOWCAST_YAML", None)
    result = subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", "validate"],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no config file: give one or set NOWCAST_YAML" in result.stderr


def test_every_bad_scheduled_entry_is_reported(toy_system):
    toy_system.config["scheduler"] = {"timezone": "Nowhere/Atall"}
    toy_system.config["scheduled workers"] = [
        {"workers.sleep": {"every": "dya", "at": "05:15"}},
        {"workers.sleep": {"every": "day", "at": "25:00", "timezone": "Mars/Olympus"}},
        {"workers.awaken": {"every": "hour", "catch up": "twice"}},
        {"workers.awaken": {"every": "day", "at": "06:00"}},
        {"workers.no_such_worker": {"every": "day"}},
    ]
    toy_system.write_config()
    result = validate(toy_system)
    assert result.returncode == 1
    path = toy_system.config_path
    bad = [line.partition(": got")[0] for line in result.stdout.splitlines()[:-1]]
    assert bad == [
        f"{path}: scheduler.timezone",
        f"{path}: scheduled workers[0].workers.sleep.every",
        f"{path}: scheduled workers[1].workers.sleep.at",
        f"{path}: scheduled workers[1].workers.sleep.timezone",
        f"{path}: scheduled workers[2].workers.awaken.catch up",
        f"{path}: scheduled workers[4].workers.no_such_worker: worker module cannot be found",
    ]
    assert "got 'dya', expected second, minute" in result.stdout
    assert result.stdout.splitlines()[-1] == f"{path}: 6 problems"


def test_worker_modules_and_schedule_times_are_checked(toy_system):
    toy_system.config["scheduled workers"] = [
        {"workers.sleep": {"every": "dya", "at": "10:00"}},
        {"workers.rotate_logs": {"every": "day", "at": "10:00"}},
        {"workers.awaken": {"every": "day", "at": "25:00"}},
    ]
    toy_system.write_config()
    toy_system.write_next_workers(
        "from nowcastkit import NextWorker\n"
        "def after_sleep(msg, config, checklist):\n"
        "    return [NextWorker('workers.no_such_module'), NextWorker('workers.rotate_logs')]\n"
        "def after_awaken(msg, config, checklist):\n    return []\n"
    )
    result = validate(toy_system)
    assert result.returncode == 1
    path, flow = toy_system.config_path, toy_system.folder / "next_workers.py"
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{path}: scheduled workers[0].workers.sleep.every: got 'dya'")
               for line in lines), lines  # fmt: skip
    assert any(line.startswith(f"{path}: scheduled workers[2].workers.awaken.at: got '25:00'")
               for line in lines), lines  # fmt: skip
    assert (f"{path}: scheduled workers[1].workers.rotate_logs: worker 'rotate_logs' is not in "
            "message registry.workers") in lines  # fmt: skip
    assert (
        f'{flow}: line 3: NextWorker("workers.no_such_module"): worker module cannot be found'
        in lines
    )
    assert (f'{flow}: line 3: NextWorker("workers.rotate_logs"): worker \'rotate_logs\' is not in '
            "message registry.workers") in lines  # fmt: skip
    assert lines[-1] == f"{path}: 5 problems"


def test_the_schedule_is_checked_even_when_the_registry_is_unusable(toy_system):
    toy_system.config["message registry"] = {"workers": "all of them"}
    toy_system.config["scheduled workers"] = [{"workers.sleep": {"every": "dya", "at": "10:00"}}]
    toy_system.write_config()
    result = validate(toy_system)
    assert result.returncode == 1
    path = toy_system.config_path
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{path}: message registry.") for line in lines), lines
    assert any(line.startswith(f"{path}: scheduled workers[0].workers.sleep.every: got 'dya'")
               for line in lines), lines  # fmt: skip
    assert len(lines) - 1 == len(set(lines[:-1])), lines  # each problem once


def test_a_broker_exposed_without_curve_is_a_problem_issue_15(toy_system):
    toy_system.config["zmq"]["bind"] = "*"
    toy_system.write_config()
    result = validate(toy_system)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(
        f"{toy_system.config_path}: zmq.bind: got '*': the broker would accept anyone"
    )
    toy_system.config["zmq"]["insecure"] = True
    toy_system.write_config()
    assert validate(toy_system).returncode == 0
