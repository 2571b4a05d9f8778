"""Deadlines (issue 14) end to end: a real short deadline against a real broker and
manager, the recording webhook (and its GET for the heartbeat), and the real monitor."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from conftest import wait_for

from tests.integration import alert_servers
from tests.integration.test_cli_monitor import finish, start_monitor

webhook = alert_servers.webhook


def soon(seconds: float) -> tuple[str, str]:
    """A deadline *seconds* from now, and a zone where that is not near midnight."""
    for zone in ("UTC", "Etc/GMT-12"):
        local = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(
            hours=0 if zone == "UTC" else 12))) + dt.timedelta(seconds=seconds)  # fmt: skip
        if 1 <= local.hour <= 22:
            return local.strftime("%H:%M:%S"), zone
    raise AssertionError("unreachable: the two zones are 12 hours apart")


def with_deadline(system, webhook, seconds: float, **more) -> float:
    """A ``sleep success`` deadline *seconds* from now; the monotonic time it falls."""
    by, zone = soon(seconds)
    system.config["alerts"] = {"chat": {"webhook": webhook.url()}}
    system.config["deadlines"] = [{"name": "slept", "worker": "sleep", "type": "success",
                                   "by": by, "timezone": zone, "days": "every day"}]  # fmt: skip
    system.config.update(more)
    system.write_config()
    return time.monotonic() + seconds


def test_an_unmet_deadline_alerts_once_even_across_a_restart_and_is_noted_when_met(
    toy_system, webhook
):
    toy_system.start_broker()
    falls = with_deadline(toy_system, webhook, 4)
    toy_system.start_manager()
    monitor = start_monitor(toy_system, "--json", "--type", "missed", "--count", "1")

    (post,) = wait_for(lambda: webhook.posts, "the missed alert", timeout=15)
    assert time.monotonic() >= falls - 1.0  # not before its time (whole seconds in the config)
    text = post.body["text"]
    assert text.startswith("*[nowcast missed] ")
    assert "deadline 'slept' missed: no sleep success by " in text
    (event,) = finish(monitor)
    assert '"event": "missed"' in event and '"deadline": "slept"' in event

    toy_system.send("awaken", "success")  # a batch: the manager looks again, says nothing
    toy_system.manager.stop()
    toy_system.start_manager()
    assert toy_system.control({"command": "ping"})["ok"]  # its first look is behind it
    toy_system.send("sleep", "failure")
    assert len(webhook.posts) == 1
    assert toy_system.manager.output().count("deadline 'slept' missed") == 0

    toy_system.send("sleep", "success")
    (_, note) = wait_for(lambda: webhook.posts[1:] and webhook.posts, "the met late note")
    assert note.body["text"].startswith("*[nowcast met late] ")
    assert "deadline 'slept' met late, at " in note.body["text"]


def test_a_met_deadline_sends_no_alert_and_pings_the_heartbeat_once(toy_system, webhook):
    toy_system.start_broker()
    ping = webhook.url("/ping/0b1e5ecret")
    with_deadline(toy_system, webhook, 6, **{"heartbeat url": ping})
    toy_system.start_manager()
    assert toy_system.send("sleep", "success")["type"] == "ack"

    toy_system.manager.wait_for_line(r"deadline 'slept' met: sleep success by", timeout=15)
    wait_for(lambda: webhook.gets, "the heartbeat's GET")
    toy_system.manager.wait_for_line(r"heartbeat: the day.s ping sent \(heartbeat to ")
    toy_system.send("sleep", "success")
    assert webhook.gets == ["/ping/0b1e5ecret"] and webhook.posts == []
    assert "0b1e5ecret" not in toy_system.manager.output()


def entry(**more) -> dict:
    return {"name": "slept", "worker": "sleep", "by": "06:30", "timezone": "UTC", **more}


@pytest.mark.parametrize(("bad", "problem"), [
    (entry(by="6.30"), "deadlines[0].by: got '6.30', expected a quoted \"HH:MM\" or "
                       "\"HH:MM:SS\", 00:00 to 23:59"),
    (entry(timezone="Pacific/Vancouver"), "deadlines[0].timezone: got 'Pacific/Vancouver', "
                                          "expected an IANA time zone such as America/Vancouver "
                                          "or UTC"),
    (entry(worker="make_feeds"), "deadlines[0].worker: got 'make_feeds', expected a worker in "
                                 "message registry.workers"),
    (entry(days="workdays"), "deadlines[0].days: got 'workdays', expected every day, weekdays, "
                             "weekends, or a list of monday ... sunday"),
])  # fmt: skip
def test_a_bad_deadline_is_one_line_from_validate_and_at_start(toy_system, bad, problem):
    toy_system.config["deadlines"] = [bad]
    toy_system.write_config()
    alert_servers.assert_rejected(toy_system, problem)
