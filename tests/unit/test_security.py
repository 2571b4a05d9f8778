"""Fail closed: which addresses count as loopback, and when a broker may not start."""

from __future__ import annotations

from pathlib import Path

import pytest

from nowcastkit.config import Config
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
