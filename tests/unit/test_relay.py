"""The broker's relay: each request resent until answered, each answered once to its worker."""

from __future__ import annotations

import pytest

from nowcastkit.message_broker import Relay

pytestmark = pytest.mark.timeout(10)


def test_a_request_answered_twice_reaches_its_worker_once():
    relay = Relay()
    relay.accept([b"worker-1", b"", b"body"])
    tagged = relay.backlog.popleft()  # as forward() does once the manager takes it
    assert relay.requeue() == 1  # a manager went away or came: the request goes again
    relay.backlog.clear()
    reply = [*tagged[:-1], b"reply"]
    assert relay.answer(reply) == [b"worker-1", b"", b"reply"]
    assert relay.answer(reply) is None
    assert relay.requeue() == 0
