"""Distributed logging's pure parts: which schema, PUBHandler's stand-in, the wire, the ports."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import yaml

from nowcastkit import endpoints, logs
from nowcastkit.config import Config, check
from nowcastkit.log_aggregator import decode
from nowcastkit.log_publisher import encode

pytestmark = pytest.mark.timeout(30)

PUBLISHER = {"version": 1, "handlers": {"zmq_pub": {"class": logs.PUBHANDLER, "level": "DEBUG",
             "root_topic": "sleep"}}, "root": {"handlers": ["zmq_pub"]}}  # fmt: skip
AGGREGATOR = {"version": 1, "root": {"handlers": []}}
PLAIN = {"version": 1, "root": {"handlers": []}}


def test_the_aggregator_takes_the_aggregator_schema_and_the_rest_the_publisher_schema():
    section = {"aggregator": AGGREGATOR, "publisher": PUBLISHER}
    assert logs.schema_for(section, logs.AGGREGATOR) == ("logging.aggregator", AGGREGATOR)
    assert logs.schema_for(section, "sleep") == ("logging.publisher", PUBLISHER)
    assert logs.schema_for(section, "manager") == ("logging.publisher", PUBLISHER)


def test_a_plain_schema_is_everyones_and_none_is_console_logging():
    assert logs.schema_for(PLAIN, "sleep") == ("logging", PLAIN)
    assert logs.schema_for(PLAIN, logs.AGGREGATOR) == ("logging", PLAIN)
    assert logs.schema_for({}, "sleep") == ("logging", None)
    # The aggregator never publishes: it would send its records to itself.
    assert logs.schema_for({"publisher": PUBLISHER}, logs.AGGREGATOR) == ("logging", None)


def test_pubhandler_entries_become_publishers_and_the_schema_given_is_untouched():
    schema, replaced = logs.with_publisher(PUBLISHER)
    assert replaced == ["zmq_pub"]
    assert schema["handlers"]["zmq_pub"]["class"] == "nowcastkit.log_publisher.Publisher"
    assert schema["handlers"]["zmq_pub"]["level"] == "DEBUG"
    assert PUBLISHER["handlers"]["zmq_pub"]["class"] == logs.PUBHANDLER


def test_a_record_crosses_the_wire_with_its_message_traceback_and_origin():
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        record = logging.getLogger("sleep").makeRecord(
            "sleep", logging.ERROR, "sleep.py", 7, "slept %d s", (5,), sys.exc_info()
        )
    origin = {"host": "arbutus", "run": "4f1c", "process_name": "sleep"}
    got = decode(encode(record, origin))
    assert (got.name, got.logger_name, got.levelname, got.lineno) == ("sleep", "sleep", "ERROR", 7)
    assert (got.getMessage(), got.host, got.run) == ("slept 5 s", "arbutus", "4f1c")
    assert "ZeroDivisionError" in got.exc_text
    line = logging.Formatter("%(asctime)s [%(logger_name)s] [%(host)s %(run)s] %(message)s")
    assert line.format(got).endswith("[sleep] [arbutus 4f1c] slept 5 s\n" + got.exc_text)


def test_a_run_without_an_id_is_a_dash():
    record = logging.makeLogRecord({"name": "manager", "levelno": 20, "msg": "listening"})
    assert decode(encode(record, {"host": "h", "run": None})).run == "-"


@pytest.mark.parametrize("frame", [b"not json", b"[1]", b'{"name": 1}', b'{"name": "x"}', b"\xff"])
def test_a_frame_that_is_not_a_record_is_refused(frame):
    assert decode(frame) is None


def config_with(tmp_path: Path, ports: dict, **zmq) -> tuple[dict, list]:
    data = {"checklist file": str(tmp_path / "c.yaml"),
            "zmq": {"host": "localhost", "ports": {"manager": 4343, "workers": 4344, **ports},
                    **zmq},
            "message registry": {"next workers module": "nw", "workers": {}}}  # fmt: skip
    path = tmp_path / "nowcast.yaml"
    path.write_text(yaml.safe_dump(data))
    return check(path)


def test_the_reference_designs_pools_are_accepted_and_ignored(tmp_path):
    pools = {"message_broker": 4347, "manager": 4347, "workers": [4357, 4358],
             "run_NEMO": ["salish:4360", 4361], "aggregator": 4350}  # fmt: skip
    data, problems = config_with(tmp_path, {"logging": pools})
    assert problems == []
    assert endpoints.aggregator_endpoint(Config(data, tmp_path)) == "tcp://localhost:4350"


@pytest.mark.parametrize(
    ("logging_ports", "line"),
    [
        ("4350", "zmq.ports.logging: got '4350', expected dict"),
        ({"aggregator": "x"}, "zmq.ports.logging.aggregator: got 'x', expected 0 to 65535"),
        ({"aggregator": 70000}, "zmq.ports.logging.aggregator: got 70000, expected 0 to 65535"),
        ({"aggregator": [4350]}, "zmq.ports.logging.aggregator: got [4350], expected 0 to 65535"),
        ({"workers": [4357, True]}, "zmq.ports.logging.workers: got [4357, True], expected ports"),
        ({"manager": "host"}, "zmq.ports.logging.manager: got 'host', expected ports"),
    ],
)
def test_bad_logging_ports_are_one_line_each(tmp_path, logging_ports, line):
    _data, problems = config_with(tmp_path, {"logging": logging_ports})
    assert len(problems) == 1
    assert line in str(problems[0])


def test_the_aggregator_port_defaults_past_the_managers_other_sockets(tmp_path):
    data, _ = config_with(tmp_path, {}, bind="*")
    config = Config(data, tmp_path / "nowcast.yaml")
    assert endpoints.aggregator_port(config) == 4348  # control +2, monitor +3, dashboard 4347
    assert endpoints.aggregator_endpoint(config) == "tcp://localhost:4348"
    assert endpoints.aggregator_endpoint(config, bind=True) == "tcp://*:4348"
    data["zmq"]["ports"]["manager"] = 0
    assert endpoints.aggregator_port(config) == 0


def test_with_ipc_the_aggregator_is_a_socket_in_the_ipc_folder(tmp_path):
    data, _ = config_with(tmp_path, {}, transport="ipc", **{"ipc folder": str(tmp_path / "s")})
    config = Config(data, tmp_path / "nowcast.yaml")
    assert endpoints.aggregator_endpoint(config, bind=True) == f"ipc://{tmp_path}/s/logging.sock"
    assert endpoints.aggregator_endpoint(config) == f"ipc://{tmp_path}/s/logging.sock"


def test_a_publisher_with_no_aggregator_keeps_the_newest_records_and_counts_the_rest(
    tmp_path, capfd
):
    import socket
    import time

    from nowcastkit.log_publisher import LINGER_MS, SNDHWM, Publisher

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data, _ = config_with(tmp_path, {"logging": {"aggregator": port}}, host="127.0.0.1")
    handler = Publisher()
    handler.start(Config(data, tmp_path / "nowcast.yaml"), "sleep", "4f1c")
    started = time.monotonic()
    for n in range(SNDHWM + 500):
        handler.handle(logging.makeLogRecord({"name": "sleep", "msg": f"line {n}", "levelno": 20}))
    assert time.monotonic() - started < 2.0  # never waits for the aggregator
    assert len(handler._pending) == SNDHWM
    assert b'"line 500"' in handler._pending[0]  # the oldest went first
    handler.close()
    assert time.monotonic() - started < LINGER_MS / 1000 + 2.0
    err = capfd.readouterr().err
    assert err == f"nowcastkit: {SNDHWM + 500} log records not sent to the log aggregator at " \
        f"tcp://127.0.0.1:{port}\n"  # fmt: skip
