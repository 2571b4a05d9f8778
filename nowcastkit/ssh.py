"""The ssh command that runs a worker on another host: an argument list, never a shell line.

    ssh_command(config, "arbutus", ["-m", "pkg.worker", "--run-date", "2026-12-01"], env)
    # ['ssh', '-o', 'BatchMode=yes', ..., '-T', '--', 'arbutus.cloud',
    #  "exec env NOWCASTKIT_RUN_ID=4f1c… /opt/py/bin/python -m pkg.worker /opt/nowcast.yaml …"]

It runs the system's OpenSSH client, so the user's ``~/.ssh/config`` applies (ProxyJump,
certificates, agents). ssh joins what follows the host into one string that the
remote shell splits again, so that string is built here with :func:`shlex.join`:
an argument such as ``'; rm -rf ~'`` reaches the worker as itself. The options
make a launch fail rather than hang: no password prompts (``BatchMode``), a
connect timeout, and keep-alives that notice a server gone quiet.

Configured under ``run.enabled hosts.HOST``: ``python`` and ``config file`` (as in
the reference design), and optionally ``ssh host`` (what to connect to; default
HOST), ``ssh options`` (a list of extra ssh arguments, such as ``[-o,
ControlPersist=600]``) and ``envvars`` (a file the remote shell sources first).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from nowcastkit.errors import ConfigError

__all__ = ["SSH_OPTIONS", "remote_host", "ssh_command"]

#: Fail rather than hang: no prompts, a connect timeout, and a dead server noticed in 2 min.
SSH_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=30",
    "-o", "ServerAliveCountMax=4",
)  # fmt: skip


def remote_host(config: Any, host: str) -> Mapping[str, Any]:
    """The ``run.enabled hosts`` entry for *host*; ConfigError naming the key when it is bad."""
    key = f"run.enabled hosts.{host}"
    if host.startswith("-"):
        raise ConfigError(config.file, key, f"got {host!r}: a host name cannot begin with '-'")
    try:
        entry = config["run"]["enabled hosts"][host]
        python, config_file = entry["python"], entry["config file"]
    except (KeyError, TypeError):
        raise ConfigError(
            config.file, key, "missing python or config file for a remote worker host"
        ) from None
    for name, value in (("python", python), ("config file", config_file)):
        if not isinstance(value, str) or not value:
            raise ConfigError(config.file, f"{key}.{name}", f"got {value!r}, expected a path")
    ssh_host = entry.get("ssh host", host)
    if not isinstance(ssh_host, str) or not ssh_host or ssh_host.startswith("-"):
        raise ConfigError(
            config.file, f"{key}.ssh host", f"got {ssh_host!r}, expected a host not beginning '-'"
        )
    options = entry.get("ssh options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise ConfigError(config.file, f"{key}.ssh options", f"got {options!r}, expected a list")
    envvars = entry.get("envvars")
    if envvars is not None and (not isinstance(envvars, str) or not envvars):
        raise ConfigError(config.file, f"{key}.envvars", f"got {envvars!r}, expected a path")
    return entry


def ssh_command(
    config: Any, host: str, worker_args: Sequence[str], env: Mapping[str, str] | None = None
) -> list[str]:
    """The argv that runs ``python WORKER_ARGS`` on *host*, its config file first among them.

    *worker_args* are ``["-m", module, *args]``; the remote ``config file`` is put after the
    module, as a local launch puts the local one. *env* is set in the worker's environment.
    """
    entry = remote_host(config, host)
    module_part, args = list(worker_args[:2]), list(worker_args[2:])
    argv = [entry["python"], *module_part, entry["config file"], *args]
    assignments = [f"{name}={value}" for name, value in (env or {}).items()]
    remote = shlex.join(["exec", "env", *assignments, *argv] if assignments else ["exec", *argv])
    if entry.get("envvars"):
        remote = f". {shlex.quote(entry['envvars'])} && {remote}"
    return ["ssh", *SSH_OPTIONS, *entry.get("ssh options", []), "-T", "--",
            entry.get("ssh host", host), remote]  # fmt: skip
