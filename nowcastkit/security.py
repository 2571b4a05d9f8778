"""Who may reach the system's sockets: loopback only, CURVE keys, or an explicit ``insecure``.

    exposure(config)                     # a ConfigError when bound beyond loopback, unguarded
    curve_server(sock, config)           # the broker's sockets: CURVE server, ZAP enforced
    curve_client(sock, config, "workers")  # this role's key pair, the broker's public key

With ``zmq.curve`` set, the broker's two sockets are CURVE servers with the key pair
``zmq.curve.broker`` from the ``zmq.curve.keys`` folder, and admit only the client keys
in ``zmq.curve.allowed`` (:mod:`nowcastkit.gate`); each client (the manager, the
scheduler, the ``nowcastkit`` command, the workers) has its own pair, named under
``zmq.curve.clients``. The manager's control socket is a CURVE server too, with the
manager's key pair. CURVE changes the transport only: the messages are the same.

Both ``zap_domain`` and ``zap_enforce_domain`` are always set on a server: without a
ZAP handler, or with only one of them, libzmq 4.3 lets a client with any key in.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

from nowcastkit.config import Config
from nowcastkit.errors import ConfigError
from nowcastkit.keys import KeyFileError, read_key_file

__all__ = [
    "ZAP_DOMAIN",
    "allowed_folder",
    "client_key_name",
    "curve_client",
    "curve_problems",
    "curve_server",
    "exposure",
    "is_curve",
    "is_loopback",
    "key_file",
    "keys_folder",
]

#: The ZAP domain of every CURVE server of the system.
ZAP_DOMAIN = "nowcastkit"


def is_curve(config: Config) -> bool:
    """Whether the config turns CURVE on (``zmq.curve`` set)."""
    return bool(config["zmq"].get("curve"))


def is_loopback(address: str) -> bool:
    """Whether binding *address* reaches this host only; a name that does not resolve does not."""
    if address in ("*", "", "0.0.0.0", "::"):
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(address, None)
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in found)


def exposure(config: Config) -> ConfigError | None:
    """The refusal of a broker bound beyond loopback without CURVE, unless ``zmq.insecure``."""
    zmq_config = config["zmq"]
    key = "zmq.bind" if zmq_config.get("bind") else "zmq.host"
    address = zmq_config.get("bind") or zmq_config["host"]
    if is_curve(config) or zmq_config.get("transport") == "ipc" or is_loopback(address):
        return None
    if zmq_config.get("insecure") is True:
        return None
    return ConfigError(
        config.file, key, f"got {address!r}: the broker would accept anyone who can reach it; "
        "set zmq.curve (docs/security.md), or zmq.insecure: true to run unauthenticated",
    )  # fmt: skip


def keys_folder(config: Config) -> Path:
    """The folder of key pairs, ``zmq.curve.keys`` (relative to the config file's folder)."""
    return _folder(config, "keys")


def key_file(config: Config, name: str, *, secret: bool) -> Path:
    """The path of key pair *name*'s public (or secret) file in ``zmq.curve.keys``."""
    return keys_folder(config) / f"{name}.key{'_secret' if secret else ''}"


def allowed_folder(config: Config) -> Path:
    """The allow-list folder: ``zmq.curve.allowed``, by default ``allowed/`` in the keys folder."""
    if config["zmq"]["curve"].get("allowed"):
        return _folder(config, "allowed")
    return keys_folder(config) / "allowed"


def client_key_name(config: Config, role: str) -> str:
    """The name of *role*'s key pair (``zmq.curve.clients.<role>``)."""
    name = config["zmq"]["curve"].get("clients", {}).get(role)
    if not name:
        problem = f"missing: with zmq.curve set, the {role} needs a key pair of its own"
        raise ConfigError(config.file, f"zmq.curve.clients.{role}", problem)
    return name


def curve_server(sock: Any, config: Config, name: str | None = None) -> None:
    """Make *sock* a CURVE server with key pair *name* (default the broker's), ZAP enforced."""
    import zmq

    name = name or config["zmq"]["curve"]["broker"]
    public, secret = _pair(config, name, "zmq.curve.broker" if name else "")
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def curve_client(sock: Any, config: Config, role: str, server: str | None = None) -> bytes:
    """Give *sock* *role*'s key pair and the server's public key; return the client's public key.

    *server* names the server's key pair (default the broker's); only its public file is read.
    """
    import zmq

    name = client_key_name(config, role)
    public, secret = _pair(config, name, f"zmq.curve.clients.{role}")
    server = server or config["zmq"]["curve"]["broker"]
    server_key = _read(config, key_file(config, server, secret=False), "zmq.curve.broker")[0]
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
    return public


def curve_problems(config: Config) -> list[ConfigError]:
    """Each public key file ``zmq.curve`` names that cannot be read; secrets stay on their hosts."""
    curve = config["zmq"]["curve"]
    named = [("zmq.curve.broker", curve.get("broker"))]
    clients = curve.get("clients")
    named += [(f"zmq.curve.clients.{role}", name) for role, name in (clients or {}).items()]
    found = []
    for config_key, name in named:
        if isinstance(name, str) and name:
            try:
                _read(config, key_file(config, name, secret=False), config_key)
            except ConfigError as err:
                found.append(err)
    return found


def _pair(config: Config, name: str, config_key: str) -> tuple[bytes, bytes]:
    path = key_file(config, name, secret=True)
    public, secret = _read(config, path, config_key)
    if secret is None:
        raise ConfigError(config.file, config_key, f"{path}: holds no secret-key")
    return public, secret


def _read(config: Config, path: Path, config_key: str) -> tuple[bytes, bytes | None]:
    try:
        return read_key_file(path)
    except KeyFileError as err:
        raise ConfigError(config.file, config_key, str(err)) from None


def _folder(config: Config, key: str) -> Path:
    folder = Path(config["zmq"]["curve"][key]).expanduser()
    return folder if folder.is_absolute() else Path(config.file).parent / folder
