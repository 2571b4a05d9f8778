"""Fail closed: which addresses count as loopback, and when a broker may not start."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from nowcastkit.config import Config
from nowcastkit.gate import RateLimit
from nowcastkit.handshake import MISMATCH, RECONNECTED, REJECTED, WRONG_SERVER_KEY, Handshakes
from nowcastkit.security import exposure, is_loopback


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"])
def test_loopback_addresses(address):
    assert is_loopback(address)


@pytest.mark.parametrize("address", ["*", "0.0.0.0", "::", "10.0.0.1", "192.0.2.7", "eth0.invalid"])
def test_everything_else_is_beyond_loopback(address):
    """A name that does not resolve is not loopback: the broker fails closed."""
    assert not is_loopback(address)


def config(**zmq) -> Config:
    return Config({"zmq": {"host": "localhost", **zmq}}, Path("/srv/nowcast.yaml"))


def test_loopback_needs_nothing():
    assert exposure(config()) is None


def test_all_interfaces_without_curve_is_refused_naming_the_key():
    refusal = exposure(config(bind="*"))
    assert str(refusal).startswith("/srv/nowcast.yaml: zmq.bind: got '*': the broker would")


def test_a_non_loopback_host_is_refused_naming_zmq_host():
    assert exposure(config(host="192.0.2.7")).key == "zmq.host"


@pytest.mark.parametrize(
    "guard", [{"insecure": True}, {"curve": {"keys": "k", "broker": "b"}}, {"transport": "ipc"}]
)
def test_curve_ipc_or_an_explicit_insecure_lets_it_start(guard):
    assert exposure(config(bind="*", **guard)) is None


def test_insecure_must_be_true_itself():
    assert exposure(config(bind="*", insecure="yes")) is not None


def test_a_rejected_key_is_a_verdict_at_once():
    assert Handshakes().see(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400) == REJECTED


def test_the_server_key_is_blamed_after_three_silent_drops_in_a_row():
    handshakes = Handshakes()
    silent = [handshakes.see(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32) for _ in range(3)]
    assert silent == [None, None, WRONG_SERVER_KEY]


def test_only_a_handshake_after_a_disconnection_is_a_reconnect():
    handshakes = Handshakes()
    assert handshakes.see(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0) is None
    assert handshakes.see(zmq.EVENT_DISCONNECTED, 22) is None
    assert handshakes.see(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0) == RECONNECTED
    assert handshakes.see(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0) is None


def test_a_mechanism_mismatch_is_told_apart_from_other_protocol_errors():
    assert Handshakes().see(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0x11000002) == MISMATCH
    assert Handshakes().see(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0x11000001) is None


def test_rate_limit_holds_back_repeats_and_counts_them():
    limit = RateLimit(every=60.0)
    assert limit.admit(("127.0.0.1", "k"), now=0.0) == 0
    assert limit.admit(("127.0.0.1", "k"), now=1.0) is None
    assert limit.admit(("127.0.0.1", "k"), now=2.0) is None
    assert limit.admit(("127.0.0.2", "k"), now=2.0) == 0  # another peer is another line
    assert limit.admit(("127.0.0.1", "k"), now=61.0) == 2
