"""Bare pyzmq + PyYAML baselines: the limit of this message path in Python.

    python bench/raw.py relay           # ROUTER <-> DEALER on free ports; prints them
    python bench/raw.py echo PORT       # REP that answers every request with its body
    python bench/raw.py durable-echo PORT DB  # the same, each batch committed first
    python bench/raw.py chain PORT N OUT  # REP that replies, then starts the next worker
                                        # (OUT.launch.json: how, e.g. over ssh or sbatch)
    python bench/raw.py worker CONFIG   # read the config, send one message, wait, exit

None of this imports nowcastkit: it is what the same job costs with nothing but
the two libraries nowcastkit is built on.
"""

from __future__ import annotations

import subprocess
import sys
import time

import zmq


def relay() -> None:
    """The broker's shape (ROUTER for workers, DEALER for the manager), nothing more."""
    context = zmq.Context()
    workers, manager = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    worker_port = workers.bind_to_random_port("tcp://127.0.0.1")
    manager_port = manager.bind_to_random_port("tcp://127.0.0.1")
    print(f"ports {worker_port} {manager_port}", flush=True)
    poller = zmq.Poller()
    poller.register(workers, zmq.POLLIN)
    poller.register(manager, zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if workers in ready:
            manager.send_multipart(workers.recv_multipart())
        if manager in ready:
            workers.send_multipart(manager.recv_multipart())


def echo(port: int) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.connect(f"tcp://127.0.0.1:{port}")
    while True:
        sock.send(sock.recv())


def durable_echo(port: int, db: str) -> None:
    """The echo with the one step a manager cannot skip: what it answers is on disk first.

    Every request waiting is written to SQLite (WAL, ``synchronous=FULL``) in one
    transaction, then all are answered: the manager's group commit, with no handling.
    """
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS seen (body BLOB NOT NULL)")
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{port}")
    while True:
        batch = [sock.recv_multipart()]
        while len(batch) < 64:
            try:
                batch.append(sock.recv_multipart(flags=zmq.NOBLOCK))
            except zmq.Again:
                break
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO seen (body) VALUES (?)", [(f[-1],) for f in batch])
        conn.execute("COMMIT")
        for frames in batch:
            sock.send_multipart(frames)


def chain(port: int, steps: int, out: str) -> None:
    """Answer each worker's message, then start the next worker: the raw chain hop.

    A worker is ``python raw.py worker CONFIG`` here, or the argv in ``OUT.launch.json``
    when there is one: the same worker started over ssh, or submitted with sbatch.
    """
    import json
    import os

    import yaml

    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.connect(f"tcp://127.0.0.1:{port}")
    config, stamps, children = out + ".config.yaml", [], []
    argv = [sys.executable, __file__, "worker", config]
    if os.path.exists(out + ".launch.json"):
        with open(out + ".launch.json") as f:
            argv = json.load(f)
    children.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))
    while len(stamps) < steps:
        msg = yaml.load(sock.recv(), Loader=yaml.CSafeLoader)
        stamps.append(time.time())
        sock.send(yaml.dump({"source": "manager", "type": "ack", "payload": None},
                            Dumper=yaml.CSafeDumper).encode())  # fmt: skip
        if len(stamps) < steps and msg["type"] == "success":
            children.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))
        for child in children:
            child.poll()
    for child in children:  # an ssh client ends with its worker; sbatch at once
        child.wait()
    with open(out, "w") as f:
        f.write("\n".join(map(repr, stamps)))


def worker(config_path: str) -> None:
    import yaml

    with open(config_path) as f:
        config = yaml.load(f, Loader=yaml.CSafeLoader)
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{config['port']}")
    body = {"source": "raw", "type": "success", "payload": 1}
    sock.send(yaml.dump(body, Dumper=yaml.CSafeDumper).encode())
    yaml.load(sock.recv(), Loader=yaml.CSafeLoader)
    sock.close()
    context.term()


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "relay":
        relay()
    elif mode == "echo":
        echo(int(rest[0]))
    elif mode == "durable-echo":
        durable_echo(int(rest[0]), rest[1])
    elif mode == "chain":
        chain(int(rest[0]), int(rest[1]), rest[2])
    else:
        worker(rest[0])
