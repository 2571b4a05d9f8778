"""The ``dashboard`` section of nowcast.yaml, checked.

dashboard:
  host: 127.0.0.1     # default; another interface needs insecure: true
  port: 4347          # default; 0 picks a free port (logged)
  insecure: false     # true: allow an address beyond loopback with no protection
  refresh: 5          # seconds between looks at circus and the manager with no event
  url: https://ops.example.org/nowcast   # optional: its address as operators reach it
                                         # (a proxy, a tunnel); alerts link to runs there
"""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs

from nowcastkit.errors import ConfigError

__all__ = ["DEFAULT_PORT", "Settings", "dashboard_link", "is_loopback", "run_link", "settings"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4347
DEFAULT_REFRESH = 5.0
_KEYS = ("host", "port", "insecure", "refresh", "url")


@attrs.frozen
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    insecure: bool = False
    refresh: float = DEFAULT_REFRESH
    #: The base of the links alerts carry; empty: http://host:port.
    url: str = ""


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
        raise _bad(config, "", section, f"a mapping of {', '.join(_KEYS)}")
    unknown = sorted(set(section) - set(_KEYS))
    if unknown:
        raise _bad(config, unknown[0], section[unknown[0]], f"no such key ({', '.join(_KEYS)})")
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
    url = section.get("url", "")
    if not isinstance(url, str) or (url and not url.startswith(("http://", "https://"))):
        raise _bad(config, "url", url, "an http:// or https:// address")
    return Settings(host, port, insecure, float(refresh), url.rstrip("/"))


def dashboard_link(config: Any, run: str, host: str) -> str:
    """*run*'s page when *config* has a ``dashboard:`` section; empty without one, or with a
    bad one (the dashboard itself says what is wrong with it, at start)."""
    if config.get("dashboard") is None:
        return ""
    try:
        return run_link(settings(config), run, host)
    except ConfigError:
        return ""


def run_link(dashboard: Settings, run: str, host: str) -> str:
    """The address of *run*'s page, for an alert; *host* (the manager's) stands in for an
    every-interface bind. Empty when the port is picked at start, so none can be known."""
    if dashboard.url:
        return f"{dashboard.url}/runs/{run}"
    if dashboard.port == 0:
        return ""
    name = host if dashboard.host in ("0.0.0.0", "::", "[::]") else dashboard.host
    name = f"[{name}]" if ":" in name and not name.startswith("[") else name
    return f"http://{name}:{dashboard.port}/runs/{run}"


def _bad(config: Any, key: str, value: object, expected: str) -> ConfigError:
    where = f"dashboard.{key}" if key else "dashboard"
    return ConfigError(getattr(config, "file", ""), where, f"got {value!r}, expected {expected}")
