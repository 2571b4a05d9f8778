"""A size cap on frames: refused at the broker's socket, and at the worker with one line."""

import yaml
import zmq

BIG_WORKER = """\
from nowcastkit import NowcastWorker

worker = NowcastWorker("sleep")
worker.init_cli()
worker.run(lambda *a: {"data": "x" * 5000}, lambda a: "success", lambda a: "failure")
"""


def test_oversize_frame_is_refused_and_the_broker_keeps_serving(toy_system):
    toy_system.config["zmq"]["max message size"] = 2000
    toy_system.write_config()
    toy_system.start_broker()
    toy_system.start_manager()
    big = toy_system.context.socket(zmq.REQ)
    big.setsockopt(zmq.LINGER, 0)
    big.connect(toy_system.workers_endpoint)
    body = {"source": "sleep", "type": "success", "payload": "x" * 5000}
    big.send(yaml.safe_dump(body).encode())
    assert not big.poll(1000), "an oversize frame reached the manager"
    big.close()
    assert toy_system.send("sleep", "success", {"sleep time": 1})["type"] == "ack"
    assert toy_system.broker.popen.poll() is None
    handled = toy_system.manager.output().count("received message from sleep: (success)")
    assert handled == 1, "the oversize message was handled"


def test_worker_refuses_to_send_an_oversize_message_and_reports_a_crash(toy_system):
    toy_system.config["zmq"]["max message size"] = 2000
    toy_system.write_config()
    toy_system.start_broker()
    toy_system.start_manager()
    (toy_system.folder / "big.py").write_text(BIG_WORKER)
    result = toy_system.run_worker("big")
    critical = [line for line in result.stdout.splitlines() if "CRITICAL" in line]
    assert len(critical) == 1
    assert "zmq.max message size: a 'success' message of" in critical[0]
    assert "over the 2000 bytes the broker accepts" in critical[0]
    assert "received message from manager: (ack)" in result.stdout
    toy_system.manager.wait_for_line(r"received message from sleep: \(crash\)")
