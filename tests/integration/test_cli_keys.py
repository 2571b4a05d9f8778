"""``nowcastkit keys``: key pairs made with a 0600 secret, and the allow-list kept (issue 15)."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys

import pytest
import zmq.auth
from conftest import child_env

pytestmark = pytest.mark.timeout(60)


def keys(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", "keys", *args],
        capture_output=True, text=True, timeout=30, cwd=cwd, env=child_env(),
    )  # fmt: skip


def test_generate_writes_a_pair_with_the_secret_at_0600(tmp_path):
    result = keys(tmp_path, "generate", "host1", "--dir", "k")
    assert result.returncode == 0, result.stderr
    public, secret = tmp_path / "k" / "host1.key", tmp_path / "k" / "host1.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["host1.key", "host1.key_secret"]
    # ZeroMQ's certificate format: pyzmq's own reader takes both files.
    public_key, none = zmq.auth.load_certificate(public)
    assert none is None
    assert zmq.auth.load_certificate(secret)[0] == public_key
    assert "secret-key" not in public.read_text()


def test_generate_never_overwrites_a_pair_unless_forced(tmp_path):
    keys(tmp_path, "generate", "host1", "--dir", ".")
    before = (tmp_path / "host1.key_secret").read_text()
    again = keys(tmp_path, "generate", "host1", "--dir", ".")
    assert again.returncode == 2
    assert again.stderr == (
        "nowcastkit keys: host1.key: exists; revoke and remove it first, or use --force\n"
    )
    assert (tmp_path / "host1.key_secret").read_text() == before
    assert keys(tmp_path, "generate", "host1", "--dir", ".", "--force").returncode == 0
    assert (tmp_path / "host1.key_secret").read_text() != before


def test_allow_list_and_revoke_with_the_config_folders(toy_system):
    toy_system.config["zmq"]["curve"] = {"keys": "keys", "broker": "broker"}
    toy_system.write_config()
    folder, config = toy_system.folder, str(toy_system.config_path)
    assert keys(folder, config, "generate", "host1").returncode == 0
    allowed = keys(folder, config, "allow", "keys/host1.key")
    assert allowed.stdout.startswith(f"allowed: {folder}/keys/allowed/host1.key")
    listed = json.loads(keys(folder, config, "list", "--json").stdout)
    public_key = zmq.auth.load_certificate(folder / "keys" / "host1.key")[0]
    assert [entry["name"] for entry in listed["keys"]] == ["host1"]
    assert listed["keys"][0]["fingerprint"] == hashlib.sha256(public_key).hexdigest()[:16]
    assert keys(folder, config, "revoke", "host1").returncode == 0
    assert keys(folder, config, "list").stdout == f"{folder}/keys/allowed: no keys\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["allow", "k/host1.key_secret", "--dir", "a"],
         "k/host1.key_secret: holds a secret key; allow its .key file instead"),
        (["revoke", "ghost", "--dir", "a"], "a/ghost.key: no such allowed key"),
        (["generate", "../up", "--dir", "a"],
         "'../up': expected a key name of letters, digits, '_', '.', '@', '-'"),
        (["list"], "list: no config file and no --dir: give either"),
        (["shred"], "got 'shred', expected an action: generate, allow, revoke, list"),
    ],
)  # fmt: skip
def test_bad_requests_are_one_line_and_exit_2(tmp_path, args, expected):
    keys(tmp_path, "generate", "host1", "--dir", "k")
    (tmp_path / "a").mkdir()
    result = keys(tmp_path, *args)
    assert (result.returncode, result.stderr) == (2, f"nowcastkit keys: {expected}\n")
