"""Load and validate ``nowcast.yaml``.

    config = Config()
    config.load("nowcast.yaml")
    config["zmq"]["ports"]["workers"]      # 4344
    config.file                            # Path("nowcast.yaml")

``$(NOWCAST.ENV.NAME)`` is replaced by the environment variable NAME in every
string value of the file. Every problem is a one-line :class:`ConfigError`
naming the file, the key path and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nowcastkit.errors import ConfigError

__all__ = ["Config", "load_config"]

_ENV_VAR = re.compile(r"\$\(NOWCAST\.ENV\.([A-Za-z_][A-Za-z0-9_]*)\)")
_MISSING = object()


class Config(Mapping):
    """The system's configuration: a read-only mapping loaded from a YAML file."""

    def __init__(self) -> None:
        self._dict: dict[str, Any] = {}
        self.file: Path | None = None

    def load(self, config_file: str | os.PathLike) -> None:
        """Read, substitute and validate *config_file*; on error keep the old contents."""
        path = Path(config_file).expanduser().absolute()
        data = _read_yaml(path)
        data = _substitute(data, path, "")
        _validate(data, path)
        self._dict, self.file = data, path

    def __getitem__(self, key: str) -> Any:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __repr__(self) -> str:
        return f"Config(file={str(self.file)!r})"


def load_config(config_file: str | os.PathLike) -> Config:
    """Return a loaded :class:`Config`."""
    config = Config()
    config.load(config_file)
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


def _substitute(value: Any, path: Path, key: str) -> Any:
    if isinstance(value, str):
        return _ENV_VAR.sub(lambda m: _env(m.group(1), path, key), value)
    if isinstance(value, dict):
        return {k: _substitute(v, path, _join(key, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, path, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _env(name: str, path: Path, key: str) -> str:
    try:
        return os.environ[name]
    except KeyError:
        raise ConfigError(path, key, f"environment variable {name} is not set") from None


def _join(key: str, child: object) -> str:
    return f"{key}.{child}" if key else str(child)


def _require(data: Mapping, key: str, kind: type | tuple, path: Path, where: str, default=_MISSING):
    value = data.get(key, default) if isinstance(data, Mapping) else default
    if value is _MISSING:
        raise ConfigError(path, _join(where, key), "missing required key")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ConfigError(path, _join(where, key), f"got {value!r}, expected {names}")
    return value


def _validate(data: dict, path: Path) -> None:
    _require(data, "checklist file", str, path, "")
    _require(data, "python", str, path, "", default="")
    _require(data, "logging", dict, path, "", default={})
    zmq = _require(data, "zmq", dict, path, "")
    _require(zmq, "host", str, path, "zmq")
    _require(zmq, "bind", str, path, "zmq", default="")
    ports = _require(zmq, "ports", dict, path, "zmq")
    for name in ("manager", "workers"):
        port = _require(ports, name, int, path, "zmq.ports")
        if not 0 <= port <= 65535:
            raise ConfigError(path, f"zmq.ports.{name}", f"got {port!r}, expected 0 to 65535")
    for name, kind in (("reply timeout", (int, float)), ("reply attempts", int)):
        value = _require(zmq, name, kind, path, "zmq", default=1)
        if value <= 0:
            raise ConfigError(path, f"zmq.{name}", f"got {value!r}, expected a positive number")
    registry = _require(data, "message registry", dict, path, "")
    _require(registry, "next workers module", str, path, "message registry")
    manager = _require(registry, "manager", dict, path, "message registry", default={})
    _require_words(manager, path, "message registry.manager")
    workers = _require(registry, "workers", dict, path, "message registry")
    for name, entry in workers.items():
        where = f"message registry.workers.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(path, where, f"got {entry!r}, expected a mapping of message types")
        _require(entry, "checklist key", str, path, where, default="")
        timeout = _require(entry, "timeout", (int, float), path, where, default=1)
        if timeout <= 0:
            raise ConfigError(path, f"{where}.timeout", f"got {timeout!r}, expected seconds > 0")
        _require_words({k: v for k, v in entry.items() if k != "timeout"}, path, where)


def _require_words(types: Mapping, path: Path, where: str) -> None:
    for msg_type, words in types.items():
        if not isinstance(words, str):
            raise ConfigError(
                path, _join(where, msg_type), f"got {words!r}, expected a description string"
            )
