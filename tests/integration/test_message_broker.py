"""The broker: where it binds, what it logs, and that bad frames and signals don't kill it."""

from __future__ import annotations

import fcntl
import signal
import socket
import struct
from pathlib import Path

import pytest
import zmq
from conftest import System

pytestmark = pytest.mark.timeout(60)

_SIOCGIFADDR = 0x8915
_TCP_LISTEN = "0A"


def ipv4_addresses() -> list[str]:
    """This machine's IPv4 interface addresses."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
            except OSError:  # no IPv4 address on this interface
                continue
            found.append(socket.inet_ntoa(reply[20:24]))
    return found


def listening_addresses(port: int) -> set[str]:
    """The local IPv4 addresses with a TCP socket listening on *port* (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == _TCP_LISTEN and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found


def can_connect(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return False
    return True


def broker_ports(system: System) -> tuple[int, int]:
    ports = system.config["zmq"]["ports"]
    return ports["workers"], ports["manager"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_binds_loopback_only_by_default(toy_system, host):
    toy_system.config["zmq"]["host"] = host
    toy_system.write_config()
    broker = toy_system.start_broker()
    for port in broker_ports(toy_system):
        assert listening_addresses(port) == {"127.0.0.1"}
        assert can_connect("127.0.0.1", port)
    workers_port, manager_port = broker_ports(toy_system)
    assert f"INFO [message_broker] worker socket bound to port {workers_port}" in broker.output()
    assert f"INFO [message_broker] manager socket bound to port {manager_port}" in broker.output()


def test_non_loopback_address_refused_by_default(toy_system):
    others = [address for address in ipv4_addresses() if not address.startswith("127.")]
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address")
    toy_system.start_broker()
    workers_port, _ = broker_ports(toy_system)
    assert not can_connect(others[0], workers_port)


def test_binds_all_interfaces_when_config_says_so(toy_system):
    toy_system.config["zmq"]["bind"] = "*"
    toy_system.config["zmq"]["insecure"] = True
    toy_system.write_config()
    broker = toy_system.start_broker()
    assert "WARNING [message_broker] zmq.insecure: true: bound to '*' without CURVE" in (
        broker.output()
    )
    for port in broker_ports(toy_system):
        assert listening_addresses(port) == {"0.0.0.0"}
        for address in ipv4_addresses():
            assert can_connect(address, port), f"{address}:{port} refused a connection"


@pytest.mark.parametrize("key", ["bind", "host"])
def test_bound_beyond_loopback_without_curve_refuses_to_start_issue_15(toy_system, key):
    """Fail closed: one line naming the key, exit 2, nothing bound."""
    others = [address for address in ipv4_addresses() if not address.startswith("127.")]
    address = "*" if key == "bind" else (others or ["0.0.0.0"])[0]
    toy_system.config["zmq"][key] = address
    toy_system.write_config()
    broker = toy_system.spawn("message_broker", "-m", "nowcastkit.message_broker")
    assert broker.popen.wait(10) == 2
    (line,) = broker.output().splitlines()
    assert line == (
        f"message_broker: {toy_system.config_path}: zmq.{key}: got {address!r}: the broker "
        "would accept anyone who can reach it; set zmq.curve (docs/security.md), or "
        "zmq.insecure: true to run unauthenticated"
    )


def test_survives_frames_without_an_envelope_then_relays(running_system):
    """Peers send frames no REQ socket would; a real worker still gets through after them."""
    for kind in (zmq.DEALER, zmq.ROUTER, zmq.PUSH):
        rogue = running_system.context.socket(kind)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(running_system.workers_endpoint)
        if kind == zmq.ROUTER:
            rogue.send_multipart([b"no-such-peer", b"junk"])
        else:
            rogue.send_multipart([b"\xff\x00junk", b"", b"more"])
        rogue.close()
    manager_port = running_system.config["zmq"]["ports"]["manager"]
    with socket.create_connection(("127.0.0.1", manager_port), timeout=2) as raw:
        raw.sendall(b"\x00" * 64 + b"not a zmtp greeting")
    result = running_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert running_system.broker.popen.poll() is None
    assert running_system.checklist() == {"sleepyhead": {"sleep time": 0}}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_zero(running_system, signum):
    running_system.broker.popen.send_signal(signum)
    assert running_system.broker.popen.wait(10) == 0
    assert "INFO [message_broker] shutting down" in running_system.broker.output()


def test_sighup_reloads_config(running_system):
    running_system.broker.popen.send_signal(signal.SIGHUP)
    running_system.broker.wait_for_line(r"INFO \[message_broker\] reloaded config from")
    result = running_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stdout + result.stderr


def test_port_in_use_is_a_one_line_error(toy_system):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        toy_system.config["zmq"]["ports"]["workers"] = taken.getsockname()[1]
        toy_system.write_config()
        broker = toy_system.spawn("message_broker", "-m", "nowcastkit.message_broker")
        assert broker.popen.wait(10) == 1
    assert "CRITICAL [message_broker]" in broker.output()
    assert "zmq.ports.workers: cannot bind" in broker.output()
