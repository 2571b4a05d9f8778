"""Alerts (issue 14): channels read from the config, the notifier's queue, attempts and
de-duplication (with an injected clock and an in-memory channel), and how alerts read."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import attrs
import pytest

from nowcastkit.alerts import (
    Alert,
    Channel,
    Email,
    Notifier,
    Webhook,
    channels,
    crash_alert,
    email_text,
    problems,
    recovered_alert,
    webhook_body,
)
from nowcastkit.config import Config
from nowcastkit.errors import AlertError, ConfigError

FILE = Path("/srv/nowcast.yaml")
REGISTRY = {"workers": {"sleep": {}, "make_feeds": {}}}
SECRET_URL = "https://hooks.example.org/services/T0/B0/sekrit?token=also-sekrit"


def config(alerts) -> Config:
    return Config({"alerts": alerts, "message registry": REGISTRY}, FILE)


@attrs.define
class FakeSink:
    """An in-memory channel end: fails with each error in *errors* in turn, then takes."""

    errors: list = attrs.field(factory=list)
    got: list = attrs.field(factory=list)
    where: str = "fake"
    sent: threading.Event = attrs.field(factory=threading.Event)

    def send(self, alert: Alert, timeout: float) -> None:
        self.got.append(alert)
        self.sent.set()
        if self.errors:
            raise self.errors.pop(0)


def alert(summary="sleep worker crashed: timeout (SIGKILL)", worker="sleep", run="r1", **kw):
    return Alert("crash", summary, "arbutus", worker, run, **kw)


def test_channels_are_read_with_their_filters_and_defaults():
    webhook, mail = channels(config({
        "chat": {"webhook": SECRET_URL, "events": ["crash"], "workers": ["make_feeds"]},
        "mail": {"email": {"host": "smtp.example.org", "starttls": True, "user": "nk",
                           "password": "pw", "from": "nk@example.org", "to": "ops@example.org"}},
    }))  # fmt: skip
    assert webhook == Channel("chat", Webhook(SECRET_URL), frozenset({"crash"}),
                              frozenset({"make_feeds"}))  # fmt: skip
    assert mail.sink == Email("smtp.example.org", 587, "nk@example.org", ("ops@example.org",),
                              starttls=True, user="nk", password="pw")  # fmt: skip
    assert mail.events is None and mail.workers is None
    (smtps,) = channels(config({"mail": {"email": {
        "host": "smtp.example.org", "tls": True, "from": "a@b", "to": "c@d"}}}))  # fmt: skip
    assert (smtps.sink.port, smtps.sink.tls, smtps.sink.starttls) == (465, True, False)
    assert webhook.where == "webhook to https://hooks.example.org/…"
    assert "sekrit" not in repr(webhook) and "pw" not in repr(mail).replace("password", "")
    assert channels(Config({"message registry": REGISTRY}, FILE)) == ()


@pytest.mark.parametrize(("entry", "problem"), [
    ({"sms": "+1"}, "alerts.ops: unknown channel kind 'sms'; expected one of webhook, email, "
                    "apprise (and optionally events, workers)"),
    ({"events": ["crash"]}, "alerts.ops: no channel kind; expected one of webhook, email, "
                            "apprise (and optionally events, workers)"),
    ({"webhook": "http://h/x", "email": {}}, "alerts.ops: two channel kinds, webhook and "
     "email; expected one of webhook, email, apprise (and optionally events, workers)"),
    ({"webhook": "ftp://h/x"}, "alerts.ops.webhook: expected an http or https URL with a host"),
    ({"webhook": 7}, "alerts.ops.webhook: got a int, expected an http or https URL"),
    ({"webhook": "http://h/x", "events": "crash"},
     "alerts.ops.events: got 'crash', expected a list of names"),
    ({"webhook": "http://h/x", "workers": ["slep"]},
     "alerts.ops.workers: worker 'slep' is not in message registry.workers"),
    ({"email": {"host": "h", "port": "25", "from": "a@b", "to": "c@d"}},
     "alerts.ops.email.port: got '25', expected a port, 1 to 65535"),
    ({"email": {"host": "h", "port": 0, "from": "a@b", "to": "c@d"}},
     "alerts.ops.email.port: got 0, expected a port, 1 to 65535"),
    ({"email": {"host": "h", "from": "a@b"}}, "alerts.ops.email.to: missing required key"),
    ({"email": {"host": "h", "from": "a@b", "to": []}},
     "alerts.ops.email.to: got [], expected an address or a list of them"),
    ({"email": {"from": "a@b", "to": "c@d"}}, "alerts.ops.email.host: missing required key"),
    ({"email": {"host": "h", "from": "a@b", "to": "c@d", "tsl": True}},
     "alerts.ops.email.tsl: unknown key; expected host, port, starttls, tls, ca file, user, "
     "password, from, to"),
    ({"email": {"host": "h", "from": "a@b", "to": "c@d", "tls": True, "starttls": True}},
     "alerts.ops.email: starttls and tls are two ways to the same end: choose one"),
    ({"email": {"host": "h", "from": "a@b", "to": "c@d", "user": "u"}},
     "alerts.ops.email: user and password go together: give both, or neither"),
    ({"email": {"host": "h", "from": "a@b", "to": "c@d", "user": "u", "password": "p"}},
     "alerts.ops.email.user: login needs starttls: true or tls: true; the password would cross "
     "the network in clear"),
    ({"email": {"host": "h", "from": "a@b", "to": "c@d", "starttls": "yes"}},
     "alerts.ops.email.starttls: got 'yes', expected true or false"),
])  # fmt: skip
def test_a_bad_channel_is_one_line_naming_the_file_and_key(entry, problem):
    with pytest.raises(ConfigError) as raised:
        channels(config({"ops": entry}))
    assert str(raised.value) == f"{FILE}: {problem}"


def test_every_problem_is_found_and_no_secret_is_quoted():
    found = problems(config({
        "a": {"webhook": "https://hooks.example.org:x/services/sekrit"},
        "b": {"email": {"host": "h", "from": "a@b", "to": "c@d", "password": ["sekrit"]}},
        "c": {"webhook": "http://h/x", "events": ["crash", "late"]},
    }))  # fmt: skip
    assert [p.key for p in found] == ["alerts.a.webhook", "alerts.b.email.password",
                                      "alerts.b.email", "alerts.c.events"]  # fmt: skip
    assert not any("sekrit" in str(p) for p in found)
    assert [str(p) for p in problems(config("nope"))] == [
        f"{FILE}: alerts: got 'nope', expected a mapping of channel names"
    ]


def test_filters_choose_by_event_kind_and_worker():
    only = Channel("c", FakeSink(), frozenset({"crash"}), frozenset({"make_feeds"}))
    assert only.wants(alert(worker="make_feeds"))
    assert not only.wants(alert(worker="sleep"))
    assert not only.wants(recovered_alert("arbutus", ["sleep run r1"], 0))
    everything = Channel("c", FakeSink())
    assert everything.wants(alert()) and everything.wants(recovered_alert("a", [], 0))
    # An alert about no worker is about the whole system: the workers filter lets it by.
    assert Channel("c", FakeSink(), workers=frozenset({"sleep"})).wants(
        recovered_alert("a", ["sleep run r1"], 0)
    )


def test_identical_alerts_are_held_back_for_the_window_then_counted():
    notifier = Notifier((), window=600.0)
    assert notifier.submit(alert(run="r1"), now=1000.0)
    assert not notifier.submit(alert(run="r2"), now=1100.0)  # same trouble, another run
    assert not notifier.submit(alert(run="r3"), now=1599.0)
    assert notifier.submit(alert(summary="sleep worker crashed: timeout", run="r4"), now=1200.0)
    assert notifier.submit(alert(run="r5"), now=1600.0)
    queued = list(notifier._queue)
    assert [(a.run, a.repeats) for a in queued] == [("r1", 0), ("r4", 0), ("r5", 2)]
    assert notifier.held == 2
    assert "held back: 2 identical alerts since the last one sent" in email_text(queued[-1])


def test_a_full_queue_drops_the_oldest_and_counts_it(caplog):
    notifier = Notifier((), capacity=2)
    with caplog.at_level(logging.WARNING, "alerts"):
        for n in range(4):
            assert notifier.submit(alert(summary=f"crash {n}"), now=float(n))
    assert [a.summary for a in notifier._queue] == ["crash 2", "crash 3"]
    assert notifier.dropped == 2
    assert caplog.messages[-1] == ("alert queue full (2); dropped the oldest, crash alert: "
                                   "crash 1 (2 dropped so far)")  # fmt: skip


def test_a_failure_worth_retrying_is_tried_up_to_the_attempts_and_a_refusal_once():
    flaky = FakeSink([AlertError("timed out", True), AlertError("HTTP 502", True)])
    refused = FakeSink([AlertError("HTTP 404 Not Found")])
    dead = FakeSink([AlertError("timed out", True)] * 5)
    notifier = Notifier((Channel("flaky", flaky), Channel("refused", refused),
                         Channel("dead", dead)), pause=0.0)  # fmt: skip
    results = notifier.deliver(alert())
    assert [(c.name, str(e) if e else None) for c, e in results] == [
        ("flaky", None), ("refused", "HTTP 404 Not Found"), ("dead", "timed out")]  # fmt: skip
    assert (len(flaky.got), len(refused.got), len(dead.got)) == (3, 1, 3)


def test_the_thread_sends_what_is_submitted_and_stops(tmp_path):
    log_path = tmp_path / "sleep-r1.log"
    log_path.write_text("".join(f"line {n}\n" for n in range(30)))
    sink = FakeSink()
    notifier = Notifier((Channel("c", sink),))
    notifier.start()
    notifier.submit(alert(log_path=str(log_path)))
    assert sink.sent.wait(5.0)
    notifier.stop()
    assert not notifier._thread.is_alive()
    (got,) = sink.got  # the log's last 20 lines, read on the notifier's thread
    assert got.log_lines == tuple(f"line {n}" for n in range(10, 30))


def test_a_crash_reads_the_same_in_mail_and_chat():
    crash = crash_alert("sleep", "r7", {
        "run id": "r7", "pid": 4242, "reason": "exited without reporting to the manager",
        "exit status": 2, "log": "/srv/runs/sleep-r7.log", "last output": ["usage: <x> & y"],
    }, "arbutus")  # fmt: skip
    assert crash.summary == "sleep worker crashed: exited without reporting to the manager " \
        "(exit status 2)"  # fmt: skip
    assert crash.identity == ("crash", "sleep", crash.summary)
    text = email_text(crash)
    assert text.splitlines()[0] == f"[nowcast crash] arbutus: {crash.summary}"
    assert "run:         r7\n" in text and "exit status: 2\n" in text
    assert "log:         /srv/runs/sleep-r7.log\n" in text
    assert text.endswith("last 1 lines of the log:\n\n    usage: <x> & y\n")
    chat = webhook_body(crash)["text"]
    assert chat.startswith(f"*[nowcast crash] arbutus: {crash.summary}*\n")
    assert "• pid: 4242" in chat and chat.endswith("```\nusage: &lt;x&gt; &amp; y\n```")
    signalled = crash_alert("sleep", "r8", {"reason": "timeout", "signal": "SIGKILL"}, "a")
    assert signalled.summary == "sleep worker crashed: timeout (SIGKILL)"
    reported = crash_alert("sleep", "r9", None, "a", "/srv/runs/sleep-r9.log")
    assert reported.summary == "sleep worker crashed: reported a crash"
    assert reported.log_path == "/srv/runs/sleep-r9.log" and reported.log_lines == ()
