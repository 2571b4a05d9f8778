"""Where the system's sockets are: tcp ports, or ipc paths in one private folder.

    broker_endpoint(config, "workers")             # tcp://localhost:4344
    aggregator_endpoint(config)                    # tcp://localhost:4348 (the log aggregator)
    manager_endpoint(config, "control", 2)         # tcp://127.0.0.1:4345
    # zmq.transport: ipc
    broker_endpoint(config, "workers")             # ipc:///srv/nowcast/sockets/workers.sock
    private_folder(config)                         # made 0700, or refused if anyone else may enter

With ``zmq.transport: ipc`` every socket of the system is a Unix socket in
``zmq.ipc folder`` (default ``sockets/`` beside the checklist file): the folder is
mode 0700 and the system's user owns it, so no other user can connect to any of
them. Ports are not used then; workers must run on this host.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nowcastkit.config import Config
from nowcastkit.errors import ConfigError

__all__ = [
    "aggregator_endpoint",
    "aggregator_port",
    "broker_endpoint",
    "ipc_folder",
    "is_ipc",
    "manager_endpoint",
    "private_folder",
]


def is_ipc(config: Config) -> bool:
    return config["zmq"].get("transport") == "ipc"


def ipc_folder(config: Config) -> Path:
    """``zmq.ipc folder``, by default ``sockets/`` beside the checklist file."""
    folder = config["zmq"].get("ipc folder")
    if not folder:
        return Path(config["checklist file"]).parent / "sockets"
    path = Path(folder).expanduser()
    return path if path.is_absolute() else Path(config.file).parent / path


def broker_endpoint(config: Config, role: str, *, bind: bool = False) -> str:
    """The broker's *role* (``workers``, ``manager``) socket, to connect to or (*bind*) bind."""
    if is_ipc(config):
        return f"ipc://{ipc_folder(config)}/{role}.sock"
    return _tcp(config, config["zmq"]["ports"][role], bind)


#: The log aggregator's default port: the manager's + 5, past control, monitor and dashboard.
AGGREGATOR_OFFSET = 5


def aggregator_port(config: Config) -> int:
    """``zmq.ports.logging.aggregator``; by default the manager port + 5 (0 for a manager's 0)."""
    ports = config["zmq"]["ports"]
    port = (ports.get("logging") or {}).get("aggregator")
    if port is not None:
        return port
    return ports["manager"] + AGGREGATOR_OFFSET if ports["manager"] else 0


def aggregator_endpoint(config: Config, *, bind: bool = False) -> str:
    """The log aggregator's one socket, which every publisher connects to, or (*bind*) binds.

    It is the broker's host and interface, under the broker's rules (docs/security.md).
    """
    if is_ipc(config):
        return f"ipc://{ipc_folder(config)}/logging.sock"
    return _tcp(config, aggregator_port(config), bind)


def _tcp(config: Config, port: int, bind: bool) -> str:
    """The broker host's *port*: ``zmq.bind`` (else ``zmq.host``) to bind, ``zmq.host`` to reach."""
    zmq_config = config["zmq"]
    if bind:
        return f"tcp://{zmq_config.get('bind') or zmq_config['host']}:{port or '*'}"
    return f"tcp://{zmq_config['host']}:{port}"


def manager_endpoint(config: Config, name: str, offset: int) -> str:
    """The manager's *name* socket: on loopback at its port (default manager port + *offset*)."""
    if is_ipc(config):
        return f"ipc://{ipc_folder(config)}/{name}.sock"
    ports = config["zmq"]["ports"]
    port = ports.get(name, ports["manager"] + offset if ports["manager"] else 0)
    return f"tcp://127.0.0.1:{port}"


def private_folder(config: Config) -> Path:
    """Make the ipc folder (mode 0700) or tighten it; refuse one that is not this user's."""
    folder = ipc_folder(config)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
        if info.st_uid != os.getuid():
            raise ConfigError(config.file, "zmq.ipc folder",
                              f"{folder}: owned by uid {info.st_uid}, not this user")  # fmt: skip
        if stat.S_IMODE(info.st_mode) != 0o700:
            folder.chmod(0o700)
    except OSError as err:
        raise ConfigError(config.file, "zmq.ipc folder", f"{folder}: {err.strerror}") from None
    return folder
