"""Load and validate ``nowcast.yaml``.

    config = Config()
    config.load("nowcast.yaml")
    config["zmq"]["ports"]["workers"]      # 4344
    config.file                            # Path("nowcast.yaml")
    config["extra"] = {"key": "value"}     # a plain, mutable mapping (tests set items)

``$(NOWCAST.ENV.NAME)`` is replaced by the environment variable NAME in every
string value of the file. Every problem is a one-line :class:`ConfigError`
naming the file, the key path and what was expected.

``Config.load`` checks what the file has; the sections a running system needs
(:data:`SECTIONS`) are required by the process that needs them, through
``needs``: ``load_config`` needs them all, the broker only ``zmq``. A file with
only ``checklist file``, ``python`` and ``logging`` loads, as a test's does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml

from nowcastkit.errors import ConfigError

__all__ = [
    "CLIENT_ROLES",
    "SECTIONS",
    "Config",
    "check",
    "load_config",
    "worker_timeout",
]

_ENV_VAR = re.compile(r"\$\(NOWCAST\.ENV\.([A-Za-z_][A-Za-z0-9_]*)\)")
_MISSING = object()
#: The processes that connect to the broker or the control socket, each with its own key pair.
CLIENT_ROLES = ("manager", "scheduler", "cli", "workers")
#: The top-level sections a running system needs: each process names those it needs.
SECTIONS = ("checklist file", "zmq", "message registry")


class Config(MutableMapping):
    """The system's configuration: a plain mapping of plain dicts and lists, from a YAML file."""

    def __init__(self, data: dict | None = None, file: Path | None = None) -> None:
        self._dict: dict[str, Any] = data or {}
        self.file: Path | None = file
        #: The sections required at every load, reloads included (see :data:`SECTIONS`).
        self.needs: tuple[str, ...] = ()

    def load(self, config_file: str | os.PathLike, needs: Iterable[str] | None = None) -> None:
        """Read, substitute and validate *config_file*, with the sections in *needs* required
        (by default those the last load needed); on error keep the old contents."""
        path = Path(config_file).expanduser().absolute()
        needs = self.needs if needs is None else tuple(needs)
        data, problems = check(path, needs)
        if problems:
            raise problems[0]
        self._dict, self.file, self.needs = data, path, needs

    def __getitem__(self, key: str) -> Any:
        return self._dict[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._dict[key] = value

    def __delitem__(self, key: str) -> None:
        del self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __repr__(self) -> str:
        return f"Config(file={str(self.file)!r})"


def worker_timeout(config: Config, name: str) -> float | None:
    """Worker *name*'s registry ``timeout`` in seconds, or None when it has none."""
    entry = config["message registry"]["workers"].get(name)
    timeout = entry.get("timeout") if isinstance(entry, dict) else None
    return timeout or None


def load_config(config_file: str | os.PathLike, needs: Iterable[str] = SECTIONS) -> Config:
    """Return a loaded :class:`Config` that has the sections in *needs* (all, by default)."""
    config = Config()
    config.load(config_file, needs)
    return config


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(path, "", f"cannot read config file: {err.strerror}") from None
    try:
        data = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(path, "", f"not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"expected a mapping of keys, got {type(data).__name__}")
    return data


def check(path: Path, needs: Iterable[str] = SECTIONS) -> tuple[dict, list[ConfigError]]:
    """The substituted contents of *path* and every problem found in it, in file order; the
    sections in *needs* must be there, whole."""
    data = _read_yaml(path)
    checker = _Checker(path)
    data = _substitute(data, checker, "")
    _validate(data, checker, frozenset(needs))
    return data, checker.problems


class _Checker:
    """Collects every problem found in one config file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[ConfigError] = []
        #: Inside a section no process asked for: a missing key is no problem, a wrong one is.
        self.lenient = False

    def problem(self, key: str, text: str) -> None:
        self.problems.append(ConfigError(self.path, key, text))

    def require(self, data: Any, key: str, kind: type | tuple, where: str, default=_MISSING):
        """The value at *key*, or None (with a problem recorded) if missing or mistyped."""
        if not isinstance(data, Mapping):
            return None
        value = data.get(key, default)
        if value is _MISSING:
            if not self.lenient:
                self.problem(_join(where, key), "missing required key")
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            names = " or ".join(k.__name__ for k in kinds)
            self.problem(_join(where, key), f"got {value!r}, expected {names}")
            return None
        return value

    def positive(
        self, data: Any, key: str, kind: type | tuple, where: str, expected="a positive number"
    ) -> None:
        value = self.require(data, key, kind, where, default=1)
        if value is not None and value <= 0:
            self.problem(_join(where, key), f"got {value!r}, expected {expected}")


def _substitute(value: Any, checker: _Checker, key: str) -> Any:
    if isinstance(value, str):
        return _ENV_VAR.sub(lambda m: _env(m.group(1), checker, key, m.group(0)), value)
    if isinstance(value, dict):
        return {k: _substitute(v, checker, _join(key, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, checker, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _env(name: str, checker: _Checker, key: str, original: str) -> str:
    if name not in os.environ:
        checker.problem(key, f"environment variable {name} is not set")
        return original
    return os.environ[name]


def _join(key: str, child: object) -> str:
    return f"{key}.{child}" if key else str(child)


def _validate(data: dict, check: _Checker, needs: frozenset[str]) -> None:
    check.lenient = "checklist file" not in needs
    check.require(data, "checklist file", str, "")
    check.lenient = False
    check.require(data, "python", str, "", default="")
    logging_section = check.require(data, "logging", dict, "", default={})
    for schema in ("aggregator", "publisher"):
        check.require(logging_section, schema, dict, "logging", default={})
    check.require(data, "state file", str, "", default="")
    check.require(data, "run logs", str, "", default="")
    check.positive(data, "keep history days", (int, float), "")
    delay = check.require(data, "checklist write delay", (int, float), "", default=0)
    if delay is not None and delay < 0:
        check.problem("checklist write delay", f"got {delay!r}, expected seconds >= 0")
    check.lenient = "zmq" not in needs
    zmq = check.require(data, "zmq", dict, "")
    check.require(zmq, "host", str, "zmq")
    check.require(zmq, "bind", str, "zmq", default="")
    ports = check.require(zmq, "ports", dict, "zmq")
    for name in ("manager", "workers", "control", "monitor"):
        default = 0 if name in ("control", "monitor") else _MISSING
        port = check.require(ports, name, int, "zmq.ports", default=default)
        if port is not None and not 0 <= port <= 65535:
            check.problem(f"zmq.ports.{name}", f"got {port!r}, expected 0 to 65535")
    _validate_logging_ports(ports, check)
    check.positive(zmq, "reply timeout", (int, float), "zmq")
    check.positive(zmq, "reply attempts", int, "zmq")
    check.positive(zmq, "resend for", (int, float), "zmq")
    check.positive(zmq, "max message size", int, "zmq")
    _validate_security(zmq, check)
    check.lenient = "message registry" not in needs
    registry = check.require(data, "message registry", dict, "")
    check.require(registry, "next workers module", str, "message registry")
    manager = check.require(registry, "manager", dict, "message registry", default={})
    _check_words(manager or {}, check, "message registry.manager")
    workers = check.require(registry, "workers", dict, "message registry") or {}
    for name, entry in workers.items():
        where = f"message registry.workers.{name}"
        if not isinstance(entry, dict):
            check.problem(where, f"got {entry!r}, expected a mapping of message types")
            continue
        check.require(entry, "checklist key", str, where, default="")
        check.positive(entry, "timeout", (int, float), where, "seconds > 0")
        if "retry" in entry:
            # Here, not at the top: retry needs attrs and the store, which a worker
            # without a retry policy would otherwise load at every start (about 30 ms).
            from nowcastkit import retry

            for key, problem in retry.problems(entry["retry"]):
                check.problem(f"{where}.{key}", problem)
        types = {k: v for k, v in entry.items() if k not in ("checklist key", "timeout", "retry")}
        _check_words(types, check, where)
    check.lenient = False


def _validate_logging_ports(ports: Any, check: _Checker) -> None:
    """``zmq.ports.logging``: the aggregator's port, and the reference design's pools, unused.

    Those pools (``{manager: 4347, workers: [4357, 4358]}``) are ports each publisher bound
    there; here every publisher connects to the aggregator, so they are only checked for shape.
    """
    section = check.require(ports, "logging", dict, "zmq.ports", default={})
    for name, value in (section or {}).items():
        key = f"zmq.ports.logging.{name}"
        values = value if isinstance(value, list) and name != "aggregator" else [value]
        for item in values:
            if not _is_port(item) and (name == "aggregator" or not _is_host_port(item)):
                expected = "0 to 65535" if name == "aggregator" else "ports or host:port strings"
                check.problem(key, f"got {value!r}, expected {expected}")
                break


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535


def _is_host_port(value: Any) -> bool:
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    return bool(host and sep) and port.isdigit() and _is_port(int(port))


def _validate_security(zmq: Any, check: _Checker) -> None:
    """The shape of ``zmq.insecure``, ``zmq.transport``, ``zmq.ipc folder`` and ``zmq.curve``."""
    check.require(zmq, "insecure", bool, "zmq", default=False)
    transport = check.require(zmq, "transport", str, "zmq", default="tcp")
    if transport not in (None, "tcp", "ipc"):
        check.problem("zmq.transport", f"got {transport!r}, expected tcp or ipc")
    check.require(zmq, "ipc folder", str, "zmq", default="")
    curve = check.require(zmq, "curve", dict, "zmq", default={})
    if not curve:
        return
    check.require(curve, "keys", str, "zmq.curve")
    check.require(curve, "broker", str, "zmq.curve")
    check.require(curve, "allowed", str, "zmq.curve", default="")
    clients = check.require(curve, "clients", dict, "zmq.curve", default={}) or {}
    for role, name in clients.items():
        if role not in CLIENT_ROLES:
            check.problem(f"zmq.curve.clients.{role}", f"expected one of {', '.join(CLIENT_ROLES)}")
        elif not isinstance(name, str) or not name:
            check.problem(f"zmq.curve.clients.{role}", f"got {name!r}, expected a key pair's name")


def _check_words(types: Mapping, check: _Checker, where: str) -> None:
    for msg_type, words in types.items():
        if not isinstance(words, str):
            check.problem(_join(where, msg_type), f"got {words!r}, expected a description string")
