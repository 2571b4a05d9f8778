"""A scheduled fire the manager did not launch alerts (issue 14): a real scheduler process,
a manager that is down or refuses, and the recording webhook."""

from __future__ import annotations

import pytest
from conftest import wait_for

from tests.integration import alert_servers
from tests.integration.test_scheduler import setup, start_scheduler, start_system, stop

pytestmark = pytest.mark.timeout(40)
webhook = alert_servers.webhook


def test_a_fire_the_manager_is_down_for_alerts_and_identical_ones_are_held_back(
    toy_system, webhook
):
    setup(toy_system, [{"stamp": {"every": "second", "cmd line opts": "--label s"}}],
          scheduler={"timezone": "UTC", "manager timeout": 0.5},
          alerts={"chat": {"webhook": webhook.url(), "events": ["not launched"]}})  # fmt: skip
    start_system(toy_system)
    assert stop(toy_system.manager) == 0
    port = toy_system.config["zmq"]["ports"]["control"]
    scheduler = start_scheduler(toy_system)

    (post,) = wait_for(lambda: webhook.posts, "the not launched alert")
    text = post.body["text"]
    assert text.startswith("*[nowcast not launched] ")
    assert (f"scheduled stamp not launched: manager at tcp://127.0.0.1:{port} did not answer "
            "within 0.5s") in text  # fmt: skip
    assert "• entry: stamp every second (UTC) --label s" in text
    # Every second fails the same way: held back within the window, not one alert a second.
    scheduler.wait_for_line(r"not launched alert held back, the same as one sent")
    assert len(webhook.posts) == 1
    assert stop(scheduler) == 0


def test_a_fire_the_manager_refuses_alerts(toy_system, webhook):
    setup(toy_system, [{"workers.unregistered": {"every": "second"}}],
          scheduler={"timezone": "UTC"}, alerts={"chat": {"webhook": webhook.url()}})  # fmt: skip
    start_system(toy_system)
    scheduler = start_scheduler(toy_system)

    (post, *_) = wait_for(lambda: webhook.posts, "the not launched alert")
    assert "scheduled unregistered not launched: " in post.body["text"]
    error = scheduler.wait_for_line(r"ERROR \[scheduler\] .* not launched \(due [^)]+\): (.*)")
    assert error[1] in post.body["text"]
    assert stop(scheduler) == 0
