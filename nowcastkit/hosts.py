"""A worker host other than this one, as ``run.enabled hosts.HOST`` configures it.

    host = remote_host(config, "arbutus")   # ConfigError naming the key when it is bad
    host.launcher, host.ssh_host, host.run_dir, host.poll_interval

The reference design's keys (``python``, ``config file``, ``envvars``) keep their
meaning; the rest say how runs get there and how they are watched:

- ``launcher``: ``ssh`` (default) or ``slurm``;
- ``ssh host``: what ssh connects to (default: HOST; a ``~/.ssh/config`` alias works);
  for ``launcher: slurm``, omit it when the manager runs on the login node itself;
- ``ssh options``: a list of extra ssh arguments, such as ``[-o, ControlPersist=60]``;
- ``detached``: run the worker under ``setsid`` so it outlives the ssh session
  (default true; false keeps the session open for the whole run);
- ``run dir``: where the remote side keeps each run's pid, status and log (default
  ``.nowcastkit/runs``, under the remote home);
- ``poll interval``: seconds between the safety-net looks at the host's runs;
- ``sbatch options``, ``pending timeout``: for ``launcher: slurm``;
- ``report``: ``broker`` (default), or ``file`` for Slurm compute nodes that cannot reach
  the broker: the worker writes its final message to ``<run dir>/<run>.msg``.
"""

from __future__ import annotations

from typing import Any

import attrs

from nowcastkit.errors import ConfigError

__all__ = ["LAUNCHERS", "Host", "remote_host"]

LAUNCHERS = ("ssh", "slurm")
#: Seconds between safety-net polls: ssh is cheap over a shared connection; Slurm sites
#: ask for no more than one query every two minutes.
DEFAULT_POLL = {"ssh": 60.0, "slurm": 120.0}
DEFAULT_RUN_DIR = ".nowcastkit/runs"
#: Seconds a Slurm job may stay pending before it is cancelled (a day).
DEFAULT_PENDING_TIMEOUT = 86400.0


@attrs.frozen
class Host:
    """One ``run.enabled hosts`` entry, checked."""

    name: str
    python: str
    config_file: str
    #: None: a Slurm host whose commands are run here, on its login node.
    ssh_host: str | None
    ssh_options: tuple[str, ...] = ()
    envvars: str | None = None
    launcher: str = "ssh"
    detached: bool = True
    run_dir: str = DEFAULT_RUN_DIR
    poll_interval: float = 60.0
    sbatch_options: tuple[str, ...] = ()
    pending_timeout: float = DEFAULT_PENDING_TIMEOUT
    report: str = "broker"


def remote_host(config: Any, name: str) -> Host:
    """The ``run.enabled hosts`` entry for *name*; ConfigError naming the key when it is bad."""
    key = f"run.enabled hosts.{name}"
    if name.startswith("-"):
        raise ConfigError(config.file, key, f"got {name!r}: a host name cannot begin with '-'")
    try:
        entry = config["run"]["enabled hosts"][name]
        python, config_file = entry["python"], entry["config file"]
    except (KeyError, TypeError):
        raise ConfigError(
            config.file, key, "missing python or config file for a remote worker host"
        ) from None

    def bad(field: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(config.file, f"{key}.{field}", f"got {value!r}, expected {expected}")

    def path(field: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise bad(field, value, "a path")
        return value

    def strings(field: str) -> tuple[str, ...]:
        value = entry.get(field, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise bad(field, value, "a list of strings")
        return tuple(value)

    def seconds(field: str, default: float) -> float:
        value = entry.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise bad(field, value, "a number of seconds above 0")
        return float(value)

    launcher = entry.get("launcher", "ssh")
    if launcher not in LAUNCHERS:
        raise bad("launcher", launcher, " or ".join(LAUNCHERS))
    ssh_host = entry.get("ssh host", None if launcher == "slurm" else name)
    if ssh_host is not None and (
        not isinstance(ssh_host, str) or not ssh_host or ssh_host.startswith("-")
    ):
        raise bad("ssh host", ssh_host, "a host not beginning '-'")
    detached = entry.get("detached", True)
    if not isinstance(detached, bool):
        raise bad("detached", detached, "true or false")
    envvars = entry.get("envvars")
    report = entry.get("report", "broker")
    if report not in ("broker", "file") or (report == "file" and launcher != "slurm"):
        raise bad("report", report, "broker, or file with launcher: slurm")
    return Host(
        name=name,
        python=path("python", python),
        config_file=path("config file", config_file),
        ssh_host=ssh_host,
        ssh_options=strings("ssh options"),
        envvars=None if envvars is None else path("envvars", envvars),
        launcher=launcher,
        detached=detached,
        run_dir=path("run dir", entry.get("run dir", DEFAULT_RUN_DIR)),
        poll_interval=seconds("poll interval", DEFAULT_POLL[launcher]),
        sbatch_options=strings("sbatch options"),
        pending_timeout=seconds("pending timeout", DEFAULT_PENDING_TIMEOUT),
        report=report,
    )
