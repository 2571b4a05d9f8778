"""The manager's event feed publishes what monitors subscribe to, and nothing else."""

from __future__ import annotations

import json

import pytest
import zmq

from nowcastkit.config import Config
from nowcastkit.control import HELLO_PREFIX
from nowcastkit.manager.events import Events
from tests.conftest import wait_for


@pytest.fixture
def feed():
    context = zmq.Context()
    events = Events()
    events.bind(context, Config({"zmq": {"host": "localhost", "ports": {"manager": 0}}}))
    yield events, context
    events.close()
    context.term()


def _subscribe(events: Events, context: zmq.Context, topic: str) -> zmq.Socket:
    """A SUB socket on *topic*, returned once the feed has answered its hello."""
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(events.socket.getsockopt_string(zmq.LAST_ENDPOINT))
    sub.setsockopt_string(zmq.SUBSCRIBE, topic)
    sub.setsockopt_string(zmq.SUBSCRIBE, f"{HELLO_PREFIX}t")

    def hello() -> bool:
        events.answer_subscriptions()
        return bool(sub.poll(10)) and sub.recv_multipart()[0] == f"{HELLO_PREFIX}t".encode()

    wait_for(hello, "hello from the feed")
    return sub


def test_a_monitor_gets_the_events_it_subscribed_to(feed):
    events, context = feed
    sub = _subscribe(events, context, "sleep/")
    events.publish("received", "awaken", type="success")
    events.publish("received", "sleep", type="success")
    topic, body = sub.recv_multipart()
    assert topic == b"sleep/received"
    assert json.loads(body)["type"] == "success"
    assert not sub.poll(50)
    sub.close()


def test_with_no_monitor_left_nothing_is_published(feed):
    events, context = feed
    sub = _subscribe(events, context, "")
    assert events.topics == {""}
    sub.close()

    def unsubscribed() -> bool:
        events.answer_subscriptions()
        return not events.topics

    wait_for(unsubscribed, "the unsubscription")
