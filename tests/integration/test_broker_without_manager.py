"""The broker keeps working while no manager is connected."""

import signal
import subprocess
import sys

import zmq
from conftest import child_env


def test_request_waits_in_broker_until_a_manager_connects(toy_system):
    toy_system.config["zmq"]["reply timeout"] = 20
    toy_system.start_broker()
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers.sleep", str(toy_system.config_path), "--sleep-time", "0"],
        cwd=toy_system.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=child_env(),
    )  # fmt: skip
    try:
        toy_system.start_manager()
        out, _ = worker.communicate(timeout=20)
    finally:
        worker.kill()
    assert worker.returncode == 0, out
    assert "(ack) message acknowledged" in out
    assert "attempt" not in out  # answered on the first send, not by a resend
    assert toy_system.checklist() == {"sleepyhead": {"sleep time": 0}}


def test_broker_stops_on_sigterm_while_holding_requests(toy_system):
    broker = toy_system.start_broker()
    request = toy_system.context.socket(zmq.REQ)
    request.setsockopt(zmq.LINGER, 0)
    request.connect(toy_system.workers_endpoint)
    request.send(b"source: sleep\ntype: success\npayload: null\n")
    broker.wait_for_line("manager socket bound")
    broker.popen.send_signal(signal.SIGTERM)
    assert broker.popen.wait(5) == 0
    request.close()
