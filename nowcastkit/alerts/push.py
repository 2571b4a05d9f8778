"""The apprise channel: one alert to any of the 100+ services apprise speaks to.

    alerts:
      ops-push: {apprise: ["$(NOWCAST.ENV.NTFY_URL)", "$(NOWCAST.ENV.TEAMS_URL)"]}

Needs the ``notify`` extra (``pip install nowcastkit[notify]``); the channel is
checked for it, and each URL checked by apprise, when the config is read. An
apprise URL often carries its secret in the host part (a bot token, a webhook
id), so a channel is only ever shown by its URLs' schemes (``apprise to json, ntfy``).
"""

from __future__ import annotations

import importlib
import importlib.util
from urllib.parse import urlsplit

import attrs

from nowcastkit.alerts.alert import Alert, email_subject, email_text
from nowcastkit.errors import AlertError

__all__ = ["AppriseUrls", "is_installed", "unusable"]

#: apprise's notification types (a service's colour or icon) for each kind of alert.
_TYPES = {"crash": "failure", "missed": "failure", "not launched": "failure",
          "recovered": "warning", "met late": "warning"}  # fmt: skip


def is_installed() -> bool:
    return importlib.util.find_spec("apprise") is not None


def unusable(url: str) -> bool:
    """Whether apprise has no service for *url* (an unknown scheme, a malformed URL)."""
    return _apprise().Apprise.instantiate(url) is None


@attrs.frozen
class AppriseUrls:
    """The apprise URLs an alert goes to, all at once: title the subject, body the e-mail's."""

    urls: tuple[str, ...] = attrs.field(repr=False)

    @property
    def where(self) -> str:
        return "apprise to " + ", ".join(dict.fromkeys(urlsplit(u).scheme for u in self.urls))

    def send(self, alert: Alert, timeout: float) -> None:
        apprise = _apprise()
        notifier = apprise.Apprise()
        for url in self.urls:
            service = apprise.Apprise.instantiate(url)
            if service is None:
                raise AlertError(f"{self.where}: a URL apprise cannot use")
            # Each service's own network waits: apprise's defaults are 4 s to connect, 4 to read.
            service.socket_connect_timeout = service.socket_read_timeout = timeout
            notifier.add(service)
        kind = _TYPES.get(alert.kind, "info")
        if not notifier.notify(body=email_text(alert), title=email_subject(alert),
                               notify_type=apprise.NotifyType(kind)):  # fmt: skip
            # apprise logs which service failed and why, under its own logger.
            raise AlertError(f"{self.where}: not delivered to every URL", True)


def _apprise():
    # Imported when used: the notify extra is optional, and importing apprise loads its
    # plugins, which only a process with an apprise channel should pay for.
    return importlib.import_module("apprise")
