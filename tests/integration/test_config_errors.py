"""A bad config stops every entry point at once with one line naming file and key, status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import base_config, child_env, start_process

pytestmark = pytest.mark.timeout(60)

ENTRY_POINTS = ["nowcastkit.message_broker", "nowcastkit.manager", "workers.sleep"]


def run(module: str, config_path, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, str(config_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(),
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_wrong_type(tmp_path, module):
    config = base_config(tmp_path)
    config["zmq"]["ports"]["workers"] = "forty-three"
    path = tmp_path / "nowcast.yaml"
    path.write_text(yaml.safe_dump(config))
    line = one_line(run(module, path, tmp_path))
    assert line.endswith(f"{path}: zmq.ports.workers: got 'forty-three', expected int")


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_unset_environment_variable(tmp_path, module):
    config = base_config(tmp_path)
    config["checklist file"] = "$(NOWCAST.ENV.NOWCASTKIT_TEST_UNSET)/checklist.yaml"
    path = tmp_path / "nowcast.yaml"
    path.write_text(yaml.safe_dump(config))
    line = one_line(run(module, path, tmp_path))
    assert line.endswith(
        f"{path}: checklist file: environment variable NOWCASTKIT_TEST_UNSET is not set"
    )


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_missing_file(tmp_path, module):
    path = tmp_path / "nowhere.yaml"
    line = one_line(run(module, path, tmp_path))
    assert f"{path}: cannot read config file" in line


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_bad_logging_section(tmp_path, module):
    config = base_config(tmp_path)
    config["logging"]["handlers"]["console"]["class"] = "logging.NoSuchHandler"
    path = tmp_path / "nowcast.yaml"
    path.write_text(yaml.safe_dump(config))
    line = one_line(run(module, path, tmp_path))
    assert f"{path}: logging: " in line


@pytest.mark.parametrize(
    ("module", "section"),
    [
        ("nowcastkit.message_broker", "zmq"),
        ("nowcastkit.message_broker", "checklist file"),
        ("nowcastkit.manager", "zmq"),
        ("nowcastkit.manager", "message registry"),
        ("nowcastkit.manager", "checklist file"),
        ("nowcastkit.scheduler", "zmq"),
        ("nowcastkit.scheduler", "message registry"),
        ("nowcastkit.scheduler", "checklist file"),
        ("nowcastkit.dashboard", "zmq"),
        ("nowcastkit.dashboard", "checklist file"),
        ("workers.sleep", "zmq"),
        ("workers.sleep", "message registry"),
    ],
)
def test_a_process_without_a_section_it_needs_stops_in_one_line(tmp_path, module, section):
    config = base_config(tmp_path)
    del config[section]
    path = tmp_path / "nowcast.yaml"
    path.write_text(yaml.safe_dump(config))
    line = one_line(run(module, path, tmp_path))
    assert line.endswith(f"{path}: {section}: missing required key")


def test_the_broker_needs_no_message_registry(tmp_path):
    config = base_config(tmp_path)
    del config["message registry"]
    path = tmp_path / "nowcast.yaml"
    path.write_text(yaml.safe_dump(config))
    broker = start_process("broker", [sys.executable, "-m", "nowcastkit.message_broker",
                                      str(path)], tmp_path, tmp_path / "broker.log")  # fmt: skip
    try:
        broker.wait_for_line(r"workers? .*port \d+")
    finally:
        assert broker.stop() == 0, broker.output()
