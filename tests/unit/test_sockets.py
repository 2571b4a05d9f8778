"""Multipart messages sent with plain int flags arrive as send_multipart sends them."""

from __future__ import annotations

import pytest
import zmq

from nowcastkit.sockets import NOBLOCK, send_frames

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair():
    context = zmq.Context()
    a, b = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    a.bind("inproc://frames")
    b.connect("inproc://frames")
    yield a, b
    a.close(linger=0)
    b.close(linger=0)
    context.term()


def test_frames_arrive_as_one_message_in_order(pair):
    a, b = pair
    frames = [b"worker-id", b"", b"tag:1", b'{"source": "load"}']
    send_frames(a, frames, NOBLOCK)
    send_frames(a, [b"one"])
    send_frames(a, [b"not", bytearray(b"bytes")])  # left to send_multipart
    assert b.recv_multipart() == frames
    assert b.recv_multipart() == [b"one"]
    assert b.recv_multipart() == [b"not", b"bytes"]


def test_a_frame_that_is_not_a_buffer_sends_nothing(pair):
    a, b = pair
    with pytest.raises(TypeError):
        send_frames(a, [b"first", "text"])
    send_frames(a, [b"next"])
    assert b.recv_multipart() == [b"next"]


def test_nowhere_to_send_raises_again_without_blocking():
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    try:
        with pytest.raises(zmq.Again):
            send_frames(dealer, [b"", b"tag", b"body"], NOBLOCK)
    finally:
        dealer.close(linger=0)
        context.term()
