"""A worker for the manager to launch, as ``after_<worker>`` functions return it.

    from nowcastkit import NextWorker

    def after_download(msg, config, checklist):
        return [NextWorker("mysystem.workers.make_forcing", args=["--run-date", "2026-11-23"])]

Workers do not import this module (nor attrs), so it stays out of their start-up.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from nowcastkit.config import Config

__all__ = ["NextWorker"]


def _to_args(args: Sequence[Any]) -> tuple[str, ...]:
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise TypeError(f"NextWorker args: got {args!r}, expected a list of strings")
    return tuple(str(arg) for arg in args)


@attrs.frozen
class NextWorker:
    """A worker for the manager to launch: ``python -m MODULE CONFIG_FILE ARGS...`` on HOST."""

    module: str = attrs.field(validator=attrs.validators.instance_of(str))
    args: tuple[str, ...] = attrs.field(default=(), converter=_to_args)
    host: str = attrs.field(default="localhost", validator=attrs.validators.instance_of(str))

    @property
    def name(self) -> str:
        """The worker's registry name: the last part of its module path."""
        return self.module.rpartition(".")[2]

    def command(self, config: Config, env: Mapping[str, str] | None = None) -> list[str]:
        """The argv that runs this worker; a remote host goes through ssh.

        *env* is set in a remote worker's environment (a local one inherits the caller's).
        Raises ConfigError naming the ``run.enabled hosts`` key for a remote host it lacks.
        """
        if self.host == "localhost":
            python, config_file = config.get("python") or sys.executable, str(config.file)
            return [python, "-m", self.module, config_file, *self.args]
        from nowcastkit.ssh import ssh_command  # not at the top: workers never need it

        return ssh_command(config, self.host, ["-m", self.module, *self.args], env)

    def launch(self, config: Config, logger_name: str, timeout: float = 10.0) -> str:
        """Have the manager launch this worker, as ``after_<worker>`` would; return the run id.

        The reference design's API for a worker that starts another: here the run is
        the manager's like any other (recorded, reaped, reported if it crashes).
        Raises ManagerUnreachable when the manager does not answer, LaunchRefused
        when it refuses.
        """
        from nowcastkit import control  # not at the top: after_ functions never need it

        log = logging.getLogger(logger_name)
        log.info("asking the manager to launch %s worker on %s", self.module, self.host)
        return control.launch(
            control.control_endpoint(config, "workers"), self, logger_name, timeout
        )
