"""Alerts (issue 14) against real servers on loopback: a webhook that records, one that
never answers, and an SMTP server with STARTTLS and login."""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import child_env, wait_for

from nowcastkit.alerts import Notifier, channels, crash_alert, problems
from nowcastkit.config import Config
from tests.integration import alert_servers
from tests.integration.alert_servers import SMTP_PASSWORD, SMTP_USER

# The servers' fixtures, for this module's tests.
webhook, silent, smtp = alert_servers.webhook, alert_servers.silent, alert_servers.smtp
smtps = alert_servers.smtps
refused_port = alert_servers.refused_port

SECRET_PATH = "/services/T000/B000/XXXXsecretXXXX"


def mail_channel(smtp_server, password="$(NOWCAST.ENV.TEST_SMTP_PASSWORD)") -> dict:
    return {"email": {
        "host": "127.0.0.1", "port": smtp_server.port, "starttls": True,
        "ca file": str(smtp_server.ca_file), "user": SMTP_USER, "password": password,
        "from": "nowcast@example.org", "to": ["ops@example.org", "oncall@example.org"],
    }}  # fmt: skip


def with_alerts(system, monkeypatch, **channels_) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    system.config["alerts"] = channels_
    system.write_config()


def crash_sleep(system) -> str:
    """Launch a sleep worker that exits 2 without reporting (a bad --sleep-time)."""
    reply = system.control({"command": "launch", "worker": "workers.sleep",
                            "args": ["--sleep-time", "x"]})  # fmt: skip
    return reply["run"]


def manager_log(system) -> str:
    return "".join(p.output() for p in system.processes if p.name == "manager")


def cli(system, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", "alert", str(system.config_path), *args],
        capture_output=True, text=True, timeout=60, cwd=system.folder, env=env or child_env(),
    )  # fmt: skip


def test_a_crash_reaches_the_webhook_and_the_mailbox_and_no_secret_reaches_the_log(
    toy_system, webhook, smtp, monkeypatch
):
    monkeypatch.setenv("TEST_WEBHOOK", webhook.url(SECRET_PATH))
    with_alerts(toy_system, monkeypatch, **{
        "ops-chat": {"webhook": "$(NOWCAST.ENV.TEST_WEBHOOK)", "events": ["crash"]},
        "ops-mail": {**mail_channel(smtp), "workers": ["sleep"]},
    })  # fmt: skip
    toy_system.start_broker()
    toy_system.start_manager()
    run = crash_sleep(toy_system)

    (post,) = wait_for(lambda: webhook.posts, "a webhook POST")
    assert post.path == SECRET_PATH and post.headers["Content-Type"] == "application/json"
    text = post.body["text"]
    assert text.startswith("*[nowcast crash] ") and f"• run: {run}" in text
    assert "sleep worker crashed: exited without reporting to the manager (exit status 2)" in text
    assert "invalid int value: 'x'" in text  # the log's last lines, in a code block

    (envelope,) = wait_for(smtp.messages, "an e-mail")
    assert envelope.rcpt_tos == ["ops@example.org", "oncall@example.org"]
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert "sleep worker crashed" in mail["Subject"] and mail["From"] == "nowcast@example.org"
    body = mail.get_content()
    assert f"run:         {run}" in body and "exit status: 2" in body
    assert f"sleep-{run}.log" in body and "invalid int value: 'x'" in body

    toy_system.manager.wait_for_line(r"ops-mail: crash alert for sleep run \S+ sent")
    toy_system.manager.wait_for_line(r"ops-chat: crash alert for sleep run \S+ sent")
    toy_system.manager.stop()
    log = manager_log(toy_system)
    assert f"webhook to http://127.0.0.1:{webhook.server_address[1]}/…" in log
    assert "XXXXsecretXXXX" not in log and SMTP_PASSWORD not in log


def test_a_silent_webhook_never_slows_the_manager(toy_system, silent, monkeypatch):
    with_alerts(toy_system, monkeypatch, stuck={"webhook": silent.url})
    toy_system.start_broker()
    toy_system.start_manager()
    crash_sleep(toy_system)
    stuck_at = wait_for(lambda: silent.accepted, "the notifier's connection")[0][0]

    for _ in range(200):
        assert toy_system.send("sleep", "success")["type"] == "ack"
    answered_in = time.monotonic() - stuck_at
    # All 200 answered while the notifier still waited out its first 5 s timeout.
    assert answered_in < 5.0, f"200 messages took {answered_in:.1f}s with the notifier stuck"
    assert "not sent" not in toy_system.manager.output()

    # ... and it does time out, tries again, and says so with no secret.
    line = toy_system.manager.wait_for_line(r"stuck: crash alert .* attempt 1 of 3 "
                                            r"failed, trying again in 1 s: (.*)")  # fmt: skip
    assert line[1] == f"webhook to http://127.0.0.1:{silent.sock.getsockname()[1]}/…: timed out"
    assert "silent-secret" not in toy_system.manager.output()


def test_a_manager_restart_that_recovers_runs_alerts(toy_system, webhook, monkeypatch):
    with_alerts(toy_system, monkeypatch, chat={"webhook": webhook.url(), "events": ["recovered"]})
    toy_system.start_broker()
    toy_system.start_manager()
    run = toy_system.control({"command": "launch", "worker": "workers.sleep",
                              "args": ["--sleep-time", "3"]})["run"]  # fmt: skip
    toy_system.manager.popen.kill()
    toy_system.manager.popen.wait(5)
    toy_system.start_manager()

    (post,) = wait_for(lambda: webhook.posts, "the recovered alert")
    text = post.body["text"]
    assert "manager restarted with 1 unfinished run" in text and f"sleep run {run}" in text


def test_alert_test_says_sent_for_each_channel(toy_system, webhook, smtp, monkeypatch):
    with_alerts(toy_system, monkeypatch, chat={"webhook": webhook.url()}, mail=mail_channel(smtp))
    result = cli(toy_system, "test")
    assert result.returncode == 0, result.stdout + result.stderr
    port = webhook.server_address[1]
    assert result.stdout.splitlines() == [
        f"chat: sent (webhook to http://127.0.0.1:{port}/…)",
        f"mail: sent (email via 127.0.0.1:{smtp.port})",
    ]
    assert "test alert for channel chat" in webhook.posts[0].body["text"]
    assert len(smtp.messages()) == 1

    only = cli(toy_system, "test", "mail")
    assert only.returncode == 0 and only.stdout.splitlines() == [
        f"mail: sent (email via 127.0.0.1:{smtp.port})"
    ]
    assert len(webhook.posts) == 1 and len(smtp.messages()) == 2


def test_alert_test_says_exactly_what_went_wrong(toy_system, smtp, refused_port, monkeypatch):
    with_alerts(toy_system, monkeypatch, **{
        "down": {"webhook": f"http://127.0.0.1:{refused_port}/hooks/abc"},
        "wrong-password": mail_channel(smtp, password="not it"),
        "no-mail": {"email": {"host": "127.0.0.1", "port": refused_port,
                              "from": "a@example.org", "to": "b@example.org"}},
    })  # fmt: skip
    result = cli(toy_system, "test")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [  # in the file's order, which safe_dump sorted
        f"down: failed: webhook to http://127.0.0.1:{refused_port}/…: "
        "[Errno 111] Connection refused",
        f"no-mail: failed: email via 127.0.0.1:{refused_port}: connect: "
        "[Errno 111] Connection refused",
        f"wrong-password: failed: email via 127.0.0.1:{smtp.port}: login as nowcast: refused: "
        "535 5.7.8 Authentication credentials invalid",
    ]

    unknown = cli(toy_system, "test", "pager")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr == (
        f"nowcastkit alert: {toy_system.config_path}: alerts: has "
        "no channel 'pager'; it has down, no-mail, wrong-password\n"
    )


def test_a_certificate_the_client_cannot_trust_is_named(toy_system, smtp, monkeypatch):
    channel = mail_channel(smtp)
    del channel["email"]["ca file"]
    with_alerts(toy_system, monkeypatch, mail=channel)
    result = cli(toy_system, "test")
    assert result.returncode == 1
    assert result.stdout == (f"mail: failed: email via 127.0.0.1:{smtp.port}: STARTTLS: "
                             "self-signed certificate\n")  # fmt: skip


@pytest.mark.parametrize(("entry", "problem"), [
    ({"pager": {"number": 1}}, "alerts.ops: unknown channel kind 'pager'; expected one of "
                               "webhook, email, apprise (and optionally events, workers)"),
    ({"email": {"host": "h", "port": 99999, "from": "a@b", "to": ["c@d"]}},
     "alerts.ops.email.port: got 99999, expected a port, 1 to 65535"),
    ({"email": {"host": "h", "from": "a@b"}}, "alerts.ops.email.to: missing required key"),
    ({"webhook": "http://h/x", "events": ["crash", "fire"]},
     "alerts.ops.events: unknown event 'fire'; expected one of crash, failure, recovered, "
     "missed, met late, not launched"),
])  # fmt: skip
def test_a_bad_alerts_section_is_one_line_from_validate_and_at_start(toy_system, entry, problem):
    toy_system.config["alerts"] = {"ops": entry}
    toy_system.write_config()
    alert_servers.assert_rejected(toy_system, problem)


def test_a_failing_webhook_is_tried_again_and_a_refusal_is_not(webhook, tmp_path):
    webhook.statuses = [503]
    config = Config({"alerts": {"chat": {"webhook": webhook.url()}}}, tmp_path / "nowcast.yaml")
    notifier = Notifier(channels(config), pause=0.0)
    alert = crash_alert("sleep", "r1", {"reason": "timeout", "signal": "SIGTERM"}, "here")
    ((_, error),) = notifier.deliver(alert)
    assert error is None and len(webhook.posts) == 2  # 503, then 200
    webhook.statuses = [404]
    ((_, error),) = notifier.deliver(alert)
    assert str(error).endswith(": HTTP 404 Not Found") and len(webhook.posts) == 3  # once


# aiosmtpd counts only STARTTLS as TLS for AUTH, and warns; here the whole session is TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_mail_over_implicit_tls_is_sent_and_an_untrusted_certificate_is_named(smtps, tmp_path):
    entry = {"host": "127.0.0.1", "port": smtps.port, "tls": True, "ca file": str(smtps.ca_file),
             "user": SMTP_USER, "password": SMTP_PASSWORD, "from": "nowcast@example.org",
             "to": "ops@example.org"}  # fmt: skip
    config = Config({"alerts": {"mail": {"email": entry}}}, tmp_path / "nowcast.yaml")
    notifier = Notifier(channels(config), pause=0.0)
    alert = crash_alert("sleep", "r1", {"reason": "timeout", "signal": "SIGTERM"}, "here")
    ((_, error),) = notifier.deliver(alert)
    assert error is None
    (envelope,) = smtps.messages()
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert mail["Subject"] == "[nowcast crash] here: sleep worker crashed: timeout (SIGTERM)"

    del entry["ca file"]
    ((_, error),) = Notifier(channels(config), attempts=1).deliver(alert)
    assert str(error) == (f"email via 127.0.0.1:{smtps.port}: TLS connect: self-signed "
                          "certificate")  # fmt: skip


def test_an_apprise_channel_reaches_the_webhook_through_apprises_json_service(webhook, tmp_path):
    pytest.importorskip("apprise", reason="the notify extra (bin/install puts it in .venv)")
    urls = [webhook.url("/apprise/sekrit").replace("http://", "json://")]
    config = Config({"alerts": {"push": {"apprise": urls}}}, tmp_path / "nowcast.yaml")
    (channel,) = channels(config)
    assert channel.where == "apprise to json"
    alert = crash_alert("sleep", "r1", {"reason": "timeout", "signal": "SIGTERM"}, "here")
    ((_, error),) = Notifier((channel,), pause=0.0).deliver(alert)
    assert error is None
    (post,) = webhook.posts
    assert post.path == "/apprise/sekrit"
    assert post.body["title"] == "[nowcast crash] here: sleep worker crashed: timeout (SIGTERM)"
    assert post.body["type"] == "failure"
    assert "run:    r1" in post.body["message"] and "signal: SIGTERM" in post.body["message"]

    webhook.statuses = [503]
    ((_, error),) = Notifier((channel,), attempts=1).deliver(alert)
    assert str(error) == "apprise to json: not delivered to every URL" and error.again


def test_an_apprise_url_apprise_cannot_use_is_one_line_without_the_url(tmp_path):
    pytest.importorskip("apprise", reason="the notify extra (bin/install puts it in .venv)")
    config = Config({"alerts": {"push": {"apprise": ["json://127.0.0.1/ok", "nope://tok3n"]}}},
                    tmp_path / "nowcast.yaml")  # fmt: skip
    (problem,) = problems(config)
    assert str(problem) == (f"{tmp_path}/nowcast.yaml: alerts.push.apprise[1]: apprise has no "
                            "service for this nope:// URL, or it is malformed")  # fmt: skip


def test_a_final_crash_alert_links_to_the_runs_page_on_the_dashboard(
    toy_system, webhook, smtp, monkeypatch
):
    from sshd_server import free_port

    port = free_port()
    toy_system.config["dashboard"] = {"host": "127.0.0.1", "port": port}
    with_alerts(toy_system, monkeypatch, chat={"webhook": webhook.url()}, mail=mail_channel(smtp))
    toy_system.start_broker()
    toy_system.start_manager()
    toy_system.spawn("dashboard", "-m", "nowcastkit.dashboard").wait_for_line(
        rf"listening on http://127\.0\.0\.1:{port}/"
    )
    run = crash_sleep(toy_system)
    link = f"http://127.0.0.1:{port}/runs/{run}"

    (post,) = wait_for(lambda: webhook.posts, "a webhook POST")
    assert f"• dashboard: {link}\n" in post.body["text"]
    (envelope,) = wait_for(smtp.messages, "an e-mail")
    body = email.message_from_bytes(envelope.content, policy=email.policy.default).get_content()
    assert re.search(rf"^dashboard: +{re.escape(link)}\r?$", body, re.MULTILINE), body
    # the link is the run's own page on the running dashboard
    with urllib.request.urlopen(f"{link}?format=json", timeout=5) as answer:
        assert answer.status == 200 and run in answer.read().decode()
