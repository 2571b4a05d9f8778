"""Alerts: the operator hears about a crash by e-mail or chat, not from the log.

    alerts:
      ops-chat: {webhook: "$(NOWCAST.ENV.OPS_WEBHOOK)", events: [crash]}
      ops-mail:
        email: {host: smtp.example.org, port: 587, starttls: true, user: nowcast,
                password: "$(NOWCAST.ENV.SMTP_PASSWORD)", from: nowcast@example.org,
                to: [ops@example.org]}
        workers: [make_feeds]

    from nowcastkit.alerts import Notifier, channels, crash_alert
    notifier = Notifier(channels(config))         # ConfigError for a bad alerts: section
    notifier.start()
    notifier.submit(crash_alert("sleep", "r17", payload, host))   # never blocks
    notifier.stop()

The manager makes one :class:`Notifier` when the config has ``alerts:``
(:mod:`.notifier`: its queue, thread, attempts and de-duplication); the
channels are read and checked in :mod:`.channels`; an :class:`Alert` and how it
reads are in :mod:`.alert`. See docs/alerts.md.
"""

from nowcastkit.alerts.alert import (
    EVENTS,
    Alert,
    crash_alert,
    deadline_alert,
    email_text,
    failure_alert,
    probe_alert,
    recovered_alert,
    unlaunched_alert,
    webhook_body,
    with_attempts,
    with_link,
)
from nowcastkit.alerts.channels import Channel, Email, Heartbeat, Webhook, channels, problems
from nowcastkit.alerts.notifier import Notifier, reload_channels

__all__ = [
    "EVENTS",
    "Alert",
    "Channel",
    "Email",
    "Heartbeat",
    "Notifier",
    "Webhook",
    "channels",
    "crash_alert",
    "deadline_alert",
    "email_text",
    "failure_alert",
    "probe_alert",
    "problems",
    "recovered_alert",
    "reload_channels",
    "unlaunched_alert",
    "webhook_body",
    "with_attempts",
    "with_link",
]
