"""The ssh command for a remote worker: an argument list, the remote line quoted."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from nowcastkit import NextWorker
from nowcastkit.config import Config
from nowcastkit.errors import ConfigError
from nowcastkit.ssh import SSH_OPTIONS, ssh_command

pytestmark = pytest.mark.timeout(30)


def config(**entry) -> Config:
    host = {"python": "/opt/py 3/bin/python", "config file": "/opt/nowcast.yaml", **entry}
    return Config({"run": {"enabled hosts": {"arbutus": host}}}, Path("/sys/nowcast.yaml"))


def test_the_remote_line_splits_back_into_the_workers_own_arguments():
    args = ["'; touch INJECTED; '", "$(id)", "a b", ""]
    cmd = NextWorker("pkg.run_model", args, "arbutus").command(config(), {"RUN": "r1"})
    assert cmd[: 1 + len(SSH_OPTIONS)] == ["ssh", *SSH_OPTIONS]
    assert cmd[-4:-1] == ["-T", "--", "arbutus"]
    assert shlex.split(cmd[-1]) == [
        "exec", "env", "RUN=r1", "/opt/py 3/bin/python", "-m", "pkg.run_model",
        "/opt/nowcast.yaml", *args,
    ]  # fmt: skip


def test_ssh_host_options_and_envvars():
    entry = {"ssh host": "arbutus.cloud", "ssh options": ["-o", "ControlPersist=600"],
             "envvars": "/home/me/my env.sh"}  # fmt: skip
    cmd = NextWorker("pkg.w", host="arbutus").command(config(**entry))
    assert cmd[-6:-1] == ["-o", "ControlPersist=600", "-T", "--", "arbutus.cloud"]
    assert cmd[-1].startswith(". '/home/me/my env.sh' && exec ")


@pytest.mark.parametrize(
    ("host", "entry", "key"),
    [
        ("-oProxyCommand=x", None, "run.enabled hosts.-oProxyCommand=x"),
        ("arbutus", {"ssh host": "-oProxyCommand=x"}, "run.enabled hosts.arbutus.ssh host"),
        ("arbutus", {"ssh options": "-v"}, "run.enabled hosts.arbutus.ssh options"),
        ("arbutus", {"python": 3}, "run.enabled hosts.arbutus.python"),
        ("arbutus", {"envvars": ""}, "run.enabled hosts.arbutus.envvars"),
        ("hpc", None, "run.enabled hosts.hpc"),
    ],
)
def test_a_bad_host_entry_is_a_config_error_naming_its_key(host, entry, key):
    with pytest.raises(ConfigError) as caught:
        ssh_command(config(**(entry or {})), host, ["-m", "pkg.w"])
    assert caught.value.key == key
    assert str(caught.value).startswith(f"/sys/nowcast.yaml: {key}: ")
