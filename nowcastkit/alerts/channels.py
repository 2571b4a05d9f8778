"""The channels an alert goes out on, read and checked from the config's ``alerts:``.

    for channel in channels(config):           # ConfigError, one line, on the first problem
        channel.send(alert, timeout=5.0)       # AlertError, one line, when it did not go

A channel is a webhook (a Slack-compatible JSON POST) or an e-mail (SMTP, with
STARTTLS, or TLS from the start on port 465, and login when configured), and
optional filters: ``events`` and ``workers``, all when absent. Secrets come in
through ``$(NOWCAST.ENV.X)``, expanded when the config is read; nothing here
writes a webhook URL's path or query, or a password, into an error or a log
line: :attr:`Channel.where` is the channel as it may be shown.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from nowcastkit.alerts import push
from nowcastkit.alerts.alert import EVENTS, Alert, email_subject, email_text, webhook_body
from nowcastkit.alerts.push import AppriseUrls
from nowcastkit.config import Config
from nowcastkit.errors import AlertError, ConfigError

__all__ = ["Channel", "Email", "Heartbeat", "Webhook", "channels", "problems"]

_FILTERS = ("events", "workers")
_KINDS = ("webhook", "email", "apprise")
_EMAIL_KEYS = ("host", "port", "starttls", "tls", "ca file", "user", "password", "from", "to")


@attrs.frozen
class Webhook:
    """A Slack-compatible incoming webhook: the alert is POSTed as ``{"text": ...}``."""

    url: str = attrs.field(repr=False)

    @property
    def where(self) -> str:
        return f"webhook to {_shown(self.url)}"

    def send(self, alert: Alert, timeout: float) -> None:
        body = json.dumps(webhook_body(alert)).encode()
        _request(self.url, self.where, timeout, body, {"Content-Type": "application/json"})


@attrs.frozen
class Heartbeat:
    """A dead-man's switch (a healthchecks-style URL): a GET says the day's deadlines are met."""

    url: str = attrs.field(repr=False)

    @property
    def where(self) -> str:
        return f"heartbeat to {_shown(self.url)}"

    def send(self, alert: Alert, timeout: float) -> None:
        _request(self.url, self.where, timeout)


def _shown(url: str) -> str:
    """*url* without its path and query, which are the secret part of a webhook's or a ping's."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


def _request(url: str, where: str, timeout: float, body: bytes | None = None,
             headers: dict | None = None) -> None:  # fmt: skip
    """POST *body* to *url* (GET without one); AlertError, naming only *where*, if it fails."""
    request = urllib.request.Request(
        url, body, method="POST" if body is not None else "GET",
        headers={**(headers or {}), "User-Agent": "nowcastkit"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as err:
        # Worth another try only when the far end says it is its trouble, or busy.
        again = err.code >= 500 or err.code == 429
        raise AlertError(f"{where}: HTTP {err.code} {err.reason}", again) from None
    except urllib.error.URLError as err:
        raise AlertError(f"{where}: {_reason(err.reason)}", True) from None
    except (OSError, HTTPException) as err:  # a timeout or a reset while reading
        raise AlertError(f"{where}: {_reason(err)}", True) from None


@attrs.frozen
class Email:
    """An SMTP server and who gets the alert; STARTTLS or implicit TLS, and login, when
    configured."""

    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    starttls: bool = False
    ca_file: str | None = None
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    #: TLS from the first byte (SMTPS, port 465), rather than STARTTLS after the greeting.
    tls: bool = False

    @property
    def where(self) -> str:
        return f"email via {self.host}:{self.port}"

    def send(self, alert: Alert, timeout: float) -> None:
        message = EmailMessage()
        message["Subject"] = email_subject(alert)
        message["From"], message["To"] = self.sender, ", ".join(self.to)
        message["Date"] = formatdate(alert.at, localtime=True)
        message["Message-ID"] = make_msgid("nowcastkit")
        message.set_content(email_text(alert))
        step = "TLS connect" if self.tls else "connect"
        context = ssl.create_default_context(cafile=self.ca_file)
        try:
            with _smtp(self, timeout, context) as smtp:
                if self.starttls:
                    step = "STARTTLS"
                    smtp.starttls(context=context)
                if self.user is not None:
                    step = f"login as {self.user}"
                    smtp.login(self.user, self.password or "")
                step = "send"
                smtp.send_message(message)
        except smtplib.SMTPResponseException as err:
            said = err.smtp_error.decode(errors="replace") if isinstance(
                err.smtp_error, bytes) else str(err.smtp_error)  # fmt: skip
            # 4xx is the server's "try again later"; 5xx will be said again.
            raise AlertError(f"{self.where}: {step}: refused: {err.smtp_code} {said}",
                             400 <= err.smtp_code < 500) from None  # fmt: skip
        except smtplib.SMTPRecipientsRefused as err:
            refused = ", ".join(sorted(err.recipients))
            raise AlertError(f"{self.where}: {step}: recipients refused: {refused}") from None
        except smtplib.SMTPNotSupportedError as err:
            raise AlertError(f"{self.where}: {step}: {err}") from None
        except ssl.SSLCertVerificationError as err:
            raise AlertError(f"{self.where}: {step}: {err.verify_message}") from None
        except (OSError, smtplib.SMTPException) as err:
            raise AlertError(f"{self.where}: {step}: {_reason(err)}", True) from None


def _smtp(email: Email, timeout: float, context: ssl.SSLContext) -> smtplib.SMTP:
    if email.tls:
        return smtplib.SMTP_SSL(email.host, email.port, timeout=timeout, context=context)
    return smtplib.SMTP(email.host, email.port, timeout=timeout)


def _reason(err: object) -> str:
    text = str(err) or type(err).__name__
    return "timed out" if isinstance(err, TimeoutError) and text == "timed out" else text


@attrs.frozen
class Channel:
    """A named way out, and the alerts it takes (every kind, every worker when None)."""

    name: str
    sink: Webhook | Email | AppriseUrls | Heartbeat
    events: frozenset[str] | None = None
    workers: frozenset[str] | None = None

    @property
    def where(self) -> str:
        return self.sink.where

    def wants(self, alert: Alert) -> bool:
        """Whether this channel takes *alert*; one about no worker passes ``workers``."""
        if self.events is not None and alert.kind not in self.events:
            return False
        return self.workers is None or alert.worker is None or alert.worker in self.workers

    def send(self, alert: Alert, timeout: float) -> None:
        self.sink.send(alert, timeout)


def channels(config: Config) -> tuple[Channel, ...]:
    """The channels of *config*'s ``alerts:``, none when absent; the first problem raised."""
    found, errors = _read(config)
    if errors:
        raise errors[0]
    return found


def problems(config: Config) -> list[ConfigError]:
    """Every problem with *config*'s ``alerts:``, for ``nowcastkit validate``."""
    return _read(config)[1]


@attrs.define
class _Reader:
    path: Path | None
    problems: list[ConfigError] = attrs.field(factory=list)

    def problem(self, key: str, text: str) -> None:
        self.problems.append(ConfigError(self.path, key, text))

    def string(self, data: Mapping, key: str, where: str, required: bool = True) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            text = "missing required key" if key not in data else f"got {value!r}, expected text"
            self.problem(f"{where}.{key}", text)
            return None
        return value

    def names(self, value: Any, key: str) -> frozenset[str] | None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, f"got {value!r}, expected a list of names")
            return None
        return frozenset(value)


def _read(config: Config) -> tuple[tuple[Channel, ...], list[ConfigError]]:
    reader = _Reader(config.file)
    section = config.get("alerts")
    if section is None:
        return (), []
    if not isinstance(section, dict) or not section:
        reader.problem("alerts", f"got {section!r}, expected a mapping of channel names")
        return (), reader.problems
    registry = config.get("message registry")
    workers = registry.get("workers") if isinstance(registry, dict) else None
    found = [_channel(str(name), entry, reader, workers) for name, entry in section.items()]
    return tuple(c for c in found if c is not None), reader.problems


def _channel(name: str, entry: Any, reader: _Reader, workers: Any) -> Channel | None:
    where = f"alerts.{name}"
    if not isinstance(entry, dict):
        reader.problem(where, f"got {entry!r}, expected a mapping such as {{webhook: URL}}")
        return None
    kinds = [key for key in entry if key not in _FILTERS]
    if len(kinds) != 1 or kinds[0] not in _KINDS:
        unknown = [k for k in kinds if k not in _KINDS]
        what = (
            f"unknown channel kind {unknown[0]!r}"
            if unknown
            else (
                "no channel kind" if not kinds else f"two channel kinds, {kinds[0]} and {kinds[1]}"
            )
        )
        reader.problem(where, f"{what}; expected one of {', '.join(_KINDS)} (and optionally "
                       "events, workers)")  # fmt: skip
        return None
    before = len(reader.problems)
    read_sink = {"webhook": _webhook, "email": _email, "apprise": _apprise}[kinds[0]]
    sink = read_sink(entry[kinds[0]], reader, f"{where}.{kinds[0]}")
    events = entry.get("events")
    if events is not None and (events := reader.names(events, f"{where}.events")) is not None:
        for unknown in sorted(events - set(EVENTS)):
            reader.problem(f"{where}.events", f"unknown event {unknown!r}; expected one of "
                           f"{', '.join(EVENTS)}")  # fmt: skip
    chosen = entry.get("workers")
    if chosen is not None and (chosen := reader.names(chosen, f"{where}.workers")) is not None:
        for unknown in sorted(chosen - set(workers if isinstance(workers, dict) else chosen)):
            reader.problem(f"{where}.workers",
                           f"worker {unknown!r} is not in message registry.workers")  # fmt: skip
    if sink is None or len(reader.problems) > before:
        return None
    return Channel(name, sink, events, chosen)


def _webhook(url: Any, reader: _Reader, key: str) -> Webhook | None:
    # Never quote the URL back: its path is the webhook's secret.
    if not isinstance(url, str):
        reader.problem(key, f"got a {type(url).__name__}, expected an http or https URL")
        return None
    if "$(NOWCAST.ENV." in url:  # its variable is unset; config's check has said which
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as err:
        reader.problem(key, f"not a usable URL ({err})")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        reader.problem(key, "expected an http or https URL with a host")
        return None
    return Webhook(url)


def _apprise(value: Any, reader: _Reader, key: str) -> AppriseUrls | None:
    urls = [value] if isinstance(value, str) else value
    # Never quote a URL back: an apprise URL's host is often its token.
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        reader.problem(key, "expected an apprise URL or a list of them")
        return None
    if any("$(NOWCAST.ENV." in url for url in urls):  # unset; config's check has said which
        return None
    if not push.is_installed():
        reader.problem(key, "apprise is not installed: pip install 'nowcastkit[notify]'")
        return None
    for index, url in enumerate(urls):
        if push.unusable(url):
            where = key if isinstance(value, str) else f"{key}[{index}]"
            reader.problem(where, f"apprise has no service for this {urlsplit(url).scheme}:// "
                           "URL, or it is malformed")  # fmt: skip
    return AppriseUrls(tuple(urls))


def _email(entry: Any, reader: _Reader, where: str) -> Email | None:
    if not isinstance(entry, dict):
        reader.problem(where, f"got {entry!r}, expected a mapping with host, from and to")
        return None
    before = len(reader.problems)
    for key in entry:
        if key not in _EMAIL_KEYS:
            reader.problem(f"{where}.{key}", f"unknown key; expected {', '.join(_EMAIL_KEYS)}")
    host = reader.string(entry, "host", where)
    sender = reader.string(entry, "from", where)
    starttls, tls = entry.get("starttls", False), entry.get("tls", False)
    for key, value in (("starttls", starttls), ("tls", tls)):
        if not isinstance(value, bool):
            reader.problem(f"{where}.{key}", f"got {value!r}, expected true or false")
    if starttls is True and tls is True:
        reader.problem(where, "starttls and tls are two ways to the same end: choose one")
    port = entry.get("port", 465 if tls is True else 587 if starttls is True else 25)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        reader.problem(f"{where}.port", f"got {port!r}, expected a port, 1 to 65535")
    to = entry.get("to")
    to = [to] if isinstance(to, str) else to
    if not isinstance(to, list) or not to or not all(isinstance(a, str) and a for a in to):
        reader.problem(f"{where}.to", "missing required key" if "to" not in entry else
                       f"got {to!r}, expected an address or a list of them")  # fmt: skip
    user = reader.string(entry, "user", where, required=False)
    password = entry.get("password")
    if password is not None and not isinstance(password, str):
        reader.problem(f"{where}.password", "expected text")  # never the value
    if (user is None) != (password is None):
        reader.problem(where, "user and password go together: give both, or neither")
    elif user is not None and starttls is not True and tls is not True:
        reader.problem(f"{where}.user", "login needs starttls: true or tls: true; the password "
                       "would cross the network in clear")  # fmt: skip
    ca_file = reader.string(entry, "ca file", where, required=False)
    if ca_file is not None and not Path(ca_file).expanduser().is_file():
        reader.problem(f"{where}.ca file", f"got {ca_file!r}, expected a file of CA certificates")
    if len(reader.problems) > before:
        return None
    return Email(host, port, sender, tuple(to), starttls,
                 ca_file and str(Path(ca_file).expanduser()), user, password, tls)  # fmt: skip
