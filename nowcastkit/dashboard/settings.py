"""The ``dashboard`` section of nowcast.yaml, checked.

dashboard:
  host: 127.0.0.1     # default; another interface needs insecure: true
  port: 4347          # default; 0 picks a free port (logged)
  insecure: false     # true: allow an address beyond loopback with no protection
  refresh: 5          # seconds between looks at circus and the manager with no event
"""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs

from nowcastkit.errors import ConfigError

__all__ = ["DEFAULT_PORT", "Settings", "is_loopback", "settings"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4347
DEFAULT_REFRESH = 5.0


@attrs.frozen
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    insecure: bool = False
    refresh: float = DEFAULT_REFRESH


def is_loopback(host: str) -> bool:
    """Whether *host* is a loopback address (or ``localhost``); names are not resolved."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def settings(config: Any) -> Settings:
    """The dashboard's settings; ConfigError naming the key when one is bad."""
    section = config.get("dashboard") or {}
    if not isinstance(section, dict):
        raise _bad(config, "", section, "a mapping of host, port, insecure, refresh")
    unknown = sorted(set(section) - {"host", "port", "insecure", "refresh"})
    if unknown:
        raise _bad(config, unknown[0], section[unknown[0]], "no such key (host, port, "
                   "insecure, refresh)")  # fmt: skip
    host = section.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host or host == "*":
        raise _bad(config, "host", host, "an address or host name (use 0.0.0.0 for every "
                   "interface)")  # fmt: skip
    port = section.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise _bad(config, "port", port, "0 to 65535")
    insecure = section.get("insecure", False)
    if not isinstance(insecure, bool):
        raise _bad(config, "insecure", insecure, "true or false")
    refresh = section.get("refresh", DEFAULT_REFRESH)
    if isinstance(refresh, bool) or not isinstance(refresh, int | float) or refresh <= 0:
        raise _bad(config, "refresh", refresh, "seconds above 0")
    if not is_loopback(host) and not insecure:
        raise _bad(config, "host", host, "a loopback address: the dashboard has no "
                   "authentication yet, so serving beyond loopback needs dashboard.insecure: "
                   "true")  # fmt: skip
    return Settings(host, port, insecure, float(refresh))


def _bad(config: Any, key: str, value: object, expected: str) -> ConfigError:
    where = f"dashboard.{key}" if key else "dashboard"
    return ConfigError(getattr(config, "file", ""), where, f"got {value!r}, expected {expected}")
