"""Load generator: N concurrent REQ clients, each sending as soon as its reply arrives.

Each request is a valid ``success`` message from the registered ``load`` worker
with its own id, so the manager handles (and commits) every one of them.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid

import yaml
import zmq

_BODY = {
    "source": "load",
    "type": "success",
    "id": "ID",
    "pid": 1,
    "host": "bench",
    "payload": {"files": ["a.nc", "b.nc"], "n": 0},
}
#: What a nowcastkit worker sends (JSON, which YAML readers read too), and the block
#: YAML a reference-design worker sends; ``ID`` is replaced by each message's id.
TEMPLATES = {
    "worker": json.dumps(_BODY),
    "yaml": yaml.dump(_BODY, Dumper=yaml.CSafeDumper, default_flow_style=False),
    # One entry of a checklist key that holds many: ``ENTRY`` is the entry's number.
    "entry": json.dumps({**_BODY, "payload": {"entry ENTRY": {"done": True, "n": 0}}}),
}
#: Entries the ``entry`` style cycles through; the bench pre-fills the key with as many.
ENTRIES = 5000


def message(serial: str, style: str = "worker", n: int = 0) -> bytes:
    text = TEMPLATES[style].replace("ID", serial)
    if style == "entry":
        text = text.replace("ENTRY", f"{n % ENTRIES:05d}")
    return text.encode()


def drive(
    port: int, clients: int, seconds: float = 0.0, count: int = 0, style: str = "worker"
) -> dict[str, float]:
    """Send for *seconds* (or until *count* replies); return messages/s and latency (ms).

    *style* is the messages' text: ``worker`` as a nowcastkit worker writes it,
    ``yaml`` as a reference-design worker does (block YAML).
    """
    context = zmq.Context.instance()
    prefix = uuid.uuid4().hex[:8]
    socks, sent_at = [], {}
    poller = zmq.Poller()
    for _ in range(clients):
        sock = context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        poller.register(sock, zmq.POLLIN)
        socks.append(sock)
    serial, latencies = 0, []
    start = time.perf_counter()
    end = start + seconds if seconds else float("inf")
    for sock in socks:
        sock.send(message(f"{prefix}-{serial}", style, serial))
        sent_at[sock], serial = time.perf_counter(), serial + 1
    done = 0
    while sent_at:
        ready = poller.poll(30_000)
        if not ready:
            raise RuntimeError(f"no reply for 30s ({done} answered)")
        now = time.perf_counter()
        for sock, _event in ready:
            sock.recv()
            latencies.append(now - sent_at.pop(sock))
            done += 1
            if now < end and (not count or serial < count):
                sock.send(message(f"{prefix}-{serial}", style, serial))
                sent_at[sock], serial = time.perf_counter(), serial + 1
    elapsed = time.perf_counter() - start
    for sock in socks:
        sock.close()
    latencies.sort()
    return {
        "msgs_per_s": done / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "messages": done,
    }
