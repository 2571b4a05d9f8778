"""Config loading: substitution, validation and one-line errors naming file and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from nowcastkit import Config, ConfigError
from nowcastkit.config import load_config

# The seed's toy config, verbatim from issue 2.
SEED_CONFIG = """\
checklist file: $(NOWCAST.ENV.NOWCAST_LOGS)/nowcast_checklist.yaml
python: $(NOWCAST.ENV.NOWCAST_ENV)/bin/python
logging:
  version: 1
  disable_existing_loggers: False
  formatters: {simple: {format: '%(asctime)s %(levelname)s [%(name)s] %(message)s'}}
  handlers: {console: {class: logging.StreamHandler, level: DEBUG, formatter: simple, stream: ext://sys.stdout}}
  root: {level: DEBUG, handlers: [console]}
zmq:
  host: localhost
  ports: {manager: 4343, workers: 4344}
message registry:
  manager:
    ack: message acknowledged
    checklist cleared: system checklist cleared
    unregistered worker: ERROR - message received from unregistered worker
    unregistered message type: ERROR - unregistered message type received from worker
    no after_worker function: ERROR - after_worker function not found in next_workers module
  next workers module: next_workers
  workers:
    sleep:
      checklist key: sleepyhead
      success: sleep worker slept well
      failure: sleep worker slept badly
      crash: sleep worker crashed
"""


def minimal() -> dict:
    return {
        "checklist file": "/tmp/nowcast_checklist.yaml",
        "zmq": {"host": "localhost", "ports": {"manager": 4343, "workers": 4344}},
        "message registry": {
            "next workers module": "next_workers",
            "workers": {"sleep": {"checklist key": "sleepyhead", "success": "slept well"}},
        },
    }


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "nowcast.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "\n" not in text, f"config error is not one line: {text!r}"
    assert text.startswith(f"{path}: "), text
    return text


def test_seed_toy_config_loads_as_is(tmp_path, monkeypatch):
    monkeypatch.setenv("NOWCAST_LOGS", "/var/log/toy")
    monkeypatch.setenv("NOWCAST_ENV", "/opt/toy-env")
    config = load_config(write(tmp_path, SEED_CONFIG))
    assert config["checklist file"] == "/var/log/toy/nowcast_checklist.yaml"
    assert config["python"] == "/opt/toy-env/bin/python"
    assert config["zmq"]["ports"] == {"manager": 4343, "workers": 4344}
    assert config["message registry"]["next workers module"] == "next_workers"
    assert config["message registry"]["workers"]["sleep"]["checklist key"] == "sleepyhead"


def test_repo_nowcast_yaml_loads(monkeypatch):
    monkeypatch.setenv("NOWCAST_LOGS", "/var/log/toy")
    monkeypatch.setenv("NOWCAST_ENV", "/opt/toy-env")
    repo_config = Path(__file__).resolve().parents[2] / "nowcast.yaml"
    config = load_config(repo_config)
    assert config["message registry"]["next workers module"] == "example_system.next_workers"


def test_config_is_a_plain_mutable_mapping_with_its_file(tmp_path, monkeypatch):
    path = write(tmp_path, minimal())
    config = Config()
    config.load(path)
    assert config.file == path
    assert "zmq" in config
    assert config.get("no such key", "default") == "default"
    assert config["zmq"]["host"] == "localhost"
    assert type(config["zmq"]) is dict and type(config["zmq"]["ports"]) is dict
    assert set(config) == {"checklist file", "zmq", "message registry"}
    config["figures"] = {"storage path": "/results"}
    monkeypatch.setitem(config, "checklist file", "/elsewhere.yaml")
    assert config["figures"] == {"storage path": "/results"}
    assert config["checklist file"] == "/elsewhere.yaml"
    del config["figures"]
    assert "figures" not in config


# The base config a reference-design system's tests load, then add to or set items on.
TEST_BASE_CONFIG = """\
# Items required by the Config instance
checklist file: nowcast_checklist.yaml
python: python
logging:
  handlers: []
"""


def test_a_test_suites_base_config_loads_without_the_sections_a_system_runs_on(tmp_path):
    path = write(tmp_path, TEST_BASE_CONFIG)
    config = Config()
    config.load(path)
    assert config["logging"] == {"handlers": []}
    assert "zmq" not in config and "message registry" not in config
    with path.open("a") as file:  # as such a suite's fixtures add their fragments
        file.write("message registry:\n  workers:\n    download:\n      success: got it\n")
    config.load(path)
    assert config["message registry"]["workers"]["download"] == {"success": "got it"}


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("zmq: {host: 127}", "zmq.host: got 127, expected str"),
        ("zmq: {ports: {manager: 70000}}", "zmq.ports.manager: got 70000, expected 0 to 65535"),
        ("message registry: {workers: {w: nope}}", "message registry.workers.w: got 'nope'"),
        ("checklist file: [a]", "checklist file: got ['a'], expected str"),
    ],
)
def test_what_is_present_and_wrong_is_still_one_line_when_nothing_is_required(
    tmp_path, fragment, expected
):
    path = write(tmp_path, "python: python\n" + fragment + "\n")
    with pytest.raises(ConfigError) as caught:
        Config().load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_sections_needed_are_required_and_stay_required_on_reload(tmp_path):
    path = write(tmp_path, minimal())
    config = Config()
    config.load(path, ["zmq"])
    data = minimal()
    del data["zmq"]
    write(tmp_path, data)
    with pytest.raises(ConfigError, match=r": zmq: missing required key$"):
        config.load(path)  # a reload (SIGHUP) needs what the first load needed
    assert config["zmq"]["host"] == "localhost"  # the old contents kept
    del data["message registry"]
    write(tmp_path, data | {"zmq": minimal()["zmq"]})
    config.load(path)  # the registry was never needed
    assert "message registry" not in config
    assert load_config(path, ["zmq"])["zmq"]["host"] == "localhost"


def test_env_vars_substituted_in_every_string_value(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGS", "/logs")
    monkeypatch.setenv("WHO", "sleepy")
    data = minimal()
    data["checklist file"] = "$(NOWCAST.ENV.LOGS)_v2/x"
    data["message registry"]["workers"]["sleep"]["success"] = "$(NOWCAST.ENV.WHO) slept well"
    data["deep"] = {
        "list": ["a $(NOWCAST.ENV.WHO) b", {"k": "$(NOWCAST.ENV.LOGS)$(NOWCAST.ENV.WHO)"}]
    }
    config = load_config(write(tmp_path, data))
    assert config["checklist file"] == "/logs_v2/x"
    assert config["message registry"]["workers"]["sleep"]["success"] == "sleepy slept well"
    assert config["deep"] == {"list": ["a sleepy b", {"k": "/logssleepy"}]}


def test_unset_env_var_names_variable_and_key_path(tmp_path, monkeypatch):
    monkeypatch.delenv("NOWCASTKIT_TEST_UNSET", raising=False)
    data = minimal()
    data["deep"] = {"list": ["ok", "$(NOWCAST.ENV.NOWCASTKIT_TEST_UNSET)/x"]}
    text = load_error(write(tmp_path, data))
    assert "deep.list[1]" in text
    assert "NOWCASTKIT_TEST_UNSET" in text
    assert "not set" in text


@pytest.mark.parametrize(
    ("remove", "key_path"),
    [
        (("checklist file",), "checklist file"),
        (("zmq",), "zmq"),
        (("zmq", "host"), "zmq.host"),
        (("zmq", "ports", "workers"), "zmq.ports.workers"),
        (("message registry", "next workers module"), "message registry.next workers module"),
        (("message registry", "workers"), "message registry.workers"),
    ],
)
def test_missing_required_key_is_named(tmp_path, remove, key_path):
    data = minimal()
    parent = data
    for key in remove[:-1]:
        parent = parent[key]
    del parent[remove[-1]]
    text = load_error(write(tmp_path, data))
    assert f": {key_path}: missing required key" in text


@pytest.mark.parametrize(
    ("key_path", "value", "expected"),
    [
        (("zmq", "ports", "workers"), "4344", "expected int"),
        (("zmq", "ports", "manager"), True, "expected int"),
        (("zmq", "ports", "manager"), 70000, "expected 0 to 65535"),
        (("zmq", "host"), 127, "expected str"),
        (("zmq", "reply timeout"), 0, "expected a positive number"),
        (("zmq", "reply attempts"), 1.5, "expected int"),
        (("checklist file",), ["a", "b"], "expected str"),
        (("message registry", "workers", "sleep"), "sleepyhead", "expected a mapping"),
        (("message registry", "workers", "sleep", "success"), 3, "expected a description"),
        (("message registry", "workers", "sleep", "timeout"), -1, "expected seconds > 0"),
    ],
)
def test_wrong_type_names_key_value_and_expectation(tmp_path, key_path, value, expected):
    data = minimal()
    parent = data
    for key in key_path[:-1]:
        parent = parent[key]
    parent[key_path[-1]] = value
    text = load_error(write(tmp_path, data))
    assert f": {'.'.join(key_path)}: " in text
    assert repr(value) in text
    assert expected in text


def test_bad_yaml_is_one_line_with_position(tmp_path):
    path = write(
        tmp_path,
        textwrap.dedent("""\
        checklist file: x
        zmq: {host: localhost
        message registry: {}
        """),
    )
    text = load_error(path)
    assert "not valid YAML at line" in text


@pytest.mark.parametrize("text", ["", "- a list\n- not a mapping\n", "just text\n"])
def test_file_that_is_not_a_mapping(tmp_path, text):
    assert "expected a mapping of keys" in load_error(write(tmp_path, text))


def test_missing_file(tmp_path):
    text = load_error(tmp_path / "nowcast.yaml")
    assert "cannot read config file" in text


def test_failed_reload_keeps_old_contents(tmp_path):
    path = write(tmp_path, minimal())
    config = load_config(path)
    path.write_text("zmq: [")
    with pytest.raises(ConfigError):
        config.load(path)
    assert config["zmq"]["host"] == "localhost"


@pytest.mark.parametrize(
    ("zmq", "expected"),
    [
        ({"insecure": "yes"}, "zmq.insecure: got 'yes', expected bool"),
        ({"transport": "udp"}, "zmq.transport: got 'udp', expected tcp or ipc"),
        ({"curve": {"broker": "broker"}}, "zmq.curve.keys: missing required key"),
        (
            {"curve": {"keys": "k", "broker": "b", "clients": {"worker": "w"}}},
            "zmq.curve.clients.worker: expected one of manager, scheduler, cli, workers",
        ),
    ],
)
def test_security_keys_are_checked_issue_15(tmp_path, zmq, expected):
    data = minimal()
    data["zmq"].update(zmq)
    assert load_error(write(tmp_path, data)).endswith(expected)
