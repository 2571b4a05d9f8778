"""A client written only with pyzmq and PyYAML, as a NEMO_Nowcast worker is, talks to the system."""

from __future__ import annotations

import pytest
import yaml
import zmq

pytestmark = pytest.mark.timeout(60)


def exchange(endpoint: str, message: dict) -> dict:
    """One request by hand: yaml.dump the mapping, send one frame, safe-load the reply."""
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_string(yaml.dump(message))
        assert sock.poll(5000), f"no reply to {message!r}"
        frames = sock.recv_multipart()
    finally:
        sock.close()
        context.term()
    assert len(frames) == 1
    return yaml.safe_load(frames[0].decode("utf-8"))


def test_hand_written_client_gets_the_expected_replies(running_system):
    endpoint = running_system.workers_endpoint

    def reply(source, msg_type, payload=None):
        return exchange(endpoint, {"source": source, "type": msg_type, "payload": payload})

    assert reply("sleep", "success", {"sleep time": 5}) == {
        "source": "manager",
        "type": "ack",
        "payload": None,
    }
    assert running_system.checklist() == {"sleepyhead": {"sleep time": 5}}
    assert reply("stranger", "success") == {
        "source": "manager",
        "type": "unregistered worker",
        "payload": "stranger",
    }
    assert reply("sleep", "nap") == {
        "source": "manager",
        "type": "unregistered message type",
        "payload": "nap",
    }
    malformed = exchange(endpoint, {"source": "sleep", "type": "success"})
    assert malformed["source"] == "manager"
    assert malformed["type"] == "malformed message"
    assert reply("sleep", "failure", None)["type"] == "ack"
    assert running_system.checklist() == {"sleepyhead": {"sleep time": 5}}


def test_reply_is_one_plain_yaml_mapping(running_system):
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(running_system.workers_endpoint)
    try:
        sock.send(b"source: sleep\ntype: success\npayload: {sleep time: 1}\n")
        assert sock.poll(5000)
        (frame,) = sock.recv_multipart()
    finally:
        sock.close()
        context.term()
    text = frame.decode("utf-8")
    assert "!!" not in text
    assert yaml.load(text, Loader=yaml.BaseLoader) == {
        "source": "manager",
        "type": "ack",
        "payload": "null",
    }


def test_requests_sent_together_each_get_their_own_reply(running_system):
    """The manager answers a burst under one commit; every client still gets its own reply."""
    context = zmq.Context()
    socks = []
    try:
        for _ in range(24):
            sock = context.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(running_system.workers_endpoint)
            socks.append(sock)
        for i, sock in enumerate(socks):
            if i % 3 == 2:  # a two-frame request among them: its own error reply
                sock.send_multipart([b"source: sleep\ntype: success\n", b"extra"])
            else:
                sock.send_string(yaml.dump({"source": "sleep", "type": f"nap {i}", "payload": 0}))
        for i, sock in enumerate(socks):
            assert sock.poll(5000), f"no reply for client {i}"
            (frame,) = sock.recv_multipart()
            reply = yaml.safe_load(frame)
            if i % 3 == 2:
                assert reply["type"] == "malformed message"
            else:
                assert reply == {
                    "source": "manager",
                    "type": "unregistered message type",
                    "payload": f"nap {i}",
                }
    finally:
        for sock in socks:
            sock.close()
        context.term()
    assert running_system.send("sleep", "success", {"sleep time": 2})["type"] == "ack"
