"""Make CURVE key pairs and keep the broker's allow-list of client keys.

    nowcastkit keys generate worker-host-1            # in zmq.curve.keys: NAME.key, NAME.key_secret
    nowcastkit keys generate broker --dir /srv/keys
    nowcastkit keys allow keys/worker-host-1.key       # copy it into zmq.curve.allowed
    nowcastkit keys revoke worker-host-1
    nowcastkit keys list                               # NAME and fingerprint of each allowed key

The secret file is written at mode 0600, atomically. The broker and the manager
re-read the allow-list on SIGHUP (``circusctl signal message_broker hup``), so an
allowed or revoked key counts from then on, without a restart. ``--dir`` names the
folder instead of the config's; without a config, ``--dir`` is needed. Exit status
2 for a usage error or a key file that cannot be read or written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nowcastkit import keys, security
from nowcastkit.cli.output import dump_json, table
from nowcastkit.config import load_config
from nowcastkit.errors import NowcastkitError

__all__ = ["POSITIONALS", "add_arguments", "run"]

#: The positional list a first word that is not a config file belongs to.
POSITIONALS = "words"
_ACTIONS = {"generate": "NAME", "allow": "NAME.key", "revoke": "NAME", "list": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("words", nargs="*", metavar="ACTION [NAME]",
                        help="generate NAME, allow NAME.key, revoke NAME, or list")  # fmt: skip
    parser.add_argument("--dir", type=Path, help="the key folder (generate) or allow-list folder")
    parser.add_argument("--force", action="store_true", help="generate: replace an existing pair")
    parser.add_argument("--json", action="store_true", help="list: print JSON")


def run(args: argparse.Namespace) -> int:
    action, name = _words(args.words)
    folder = args.dir or _config_folder(args.config, action)
    if action == "generate":
        public, secret = keys.generate(folder, name, force=args.force)
        print(f"public key: {public}\nsecret key: {secret} (mode 0600: keep it on its host)")
    elif action == "allow":
        print(f"allowed: {keys.allow(folder, Path(name))}; send the broker and manager SIGHUP")
    elif action == "revoke":
        print(f"revoked: {keys.revoke(folder, name)}; send the broker and manager SIGHUP")
    else:
        allowed = sorted(
            (who, keys.fingerprint(key)) for key, who in keys.allowed_keys(folder).items()
        )
        if args.json:
            rows = [{"name": who, "fingerprint": mark} for who, mark in allowed]
            print(dump_json({"folder": str(folder), "keys": rows}))
        else:
            print(table(["NAME", "FINGERPRINT"], allowed) if allowed else f"{folder}: no keys")
    return 0


def _words(words: list[str]) -> tuple[str, str]:
    if not words or words[0] not in _ACTIONS:
        got = f"got {words[0]!r}, " if words else ""
        raise NowcastkitError(f"{got}expected an action: {', '.join(_ACTIONS)}")
    action, wanted = words[0], _ACTIONS[words[0]]
    if len(words) != (2 if wanted else 1):
        raise NowcastkitError(f"{action}: expected {wanted or 'nothing more'}, got {words[1:]}")
    return action, words[1] if wanted else ""


def _config_folder(config_path: Path | None, action: str) -> Path:
    """The config's keys folder for generate, its allow-list folder for the rest."""
    if config_path is None:
        raise NowcastkitError(f"{action}: no config file and no --dir: give either")
    config = load_config(config_path)
    if not security.is_curve(config):
        raise NowcastkitError(f"{config.file}: zmq.curve: not set; give --dir, or set it")
    if action == "generate":
        return security.keys_folder(config)
    return security.allowed_folder(config)
