"""The benchmark's measurements; each returns plain figures (seconds, ms, counts)."""

from __future__ import annotations

import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import load
from bench.system import REPO, NowcastSystem, RawSystem, child_env, wait_for_line
from nowcastkit import keys


def throughput(root: Path, sizes: list[int], clients: list[int], seconds: float) -> dict:
    """Manager messages/s and latency per checklist size and client count, and the echo.

    Messages are written as a nowcastkit worker writes them; ``manager-yaml/0/8``
    is 8 clients sending block YAML, as reference-design workers do. The committing
    echo (``durable-echo/N``) commits each batch before answering it, as the manager
    must: the limit of any manager that keeps that promise on this machine.
    ``manager-entries/5000/8`` has one checklist key holding 5,000 entries, each
    message updating one of them.
    """
    figures: dict = {}
    for kind, durable in (("echo", False), ("durable-echo", True)):
        raw = RawSystem(root / kind)
        try:
            raw.start_echo(durable)
            load.drive(raw.workers_port, 1, count=200)  # warm-up
            for n in clients:
                figures[f"{kind}/{n}"] = load.drive(raw.workers_port, n, seconds=seconds)
        finally:
            raw.stop()
    for size in sizes:
        system = NowcastSystem(root / f"throughput-{size}", checklist_keys=size).start()
        try:
            load.drive(system.workers_port, 1, seconds=min(seconds, 1.0))  # warm-up
            for n in clients:
                figures[f"manager/{size}/{n}"] = load.drive(system.workers_port, n, seconds=seconds)
            if size == 0:  # what a reference-design worker sends: block YAML
                figures["manager-yaml/0/8"] = load.drive(
                    system.workers_port, 8, seconds=seconds, style="yaml"
                )
        finally:
            system.stop()
    system = NowcastSystem(root / "throughput-entries", entries=load.ENTRIES).start()
    try:
        load.drive(system.workers_port, 1, seconds=min(seconds, 1.0), style="entry")
        figures[f"manager-entries/{load.ENTRIES}/8"] = load.drive(
            system.workers_port, 8, seconds=seconds, style="entry"
        )
    finally:
        system.stop()
    return figures


def chain_hop(root: Path, steps: int) -> dict:
    """ms per hop in a chain of *steps* workers, the raw worker's hop, and `python -c pass`."""
    stamps = _chain_stamps(NowcastSystem(root / "chain", bench={"steps": steps}), steps)
    raw = RawSystem(root / "raw-chain")
    try:
        raw_stamps = raw.run_chain(steps)
    finally:
        raw.stop()
    passes = []
    for _ in range(max(5, steps // 2)):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        passes.append(time.perf_counter() - started)
    return {
        "hop_ms": 1000 * _median_gap(stamps),
        "raw_hop_ms": 1000 * _median_gap(raw_stamps),
        "python_pass_ms": 1000 * statistics.median(passes),
        "hops": len(stamps) - 1,
    }


def curve_chain_hop(root: Path, steps: int) -> dict:
    """ms per hop in the same chain with CURVE on, and the plain chain's, measured alternately.

    Every step worker makes a fresh CURVE connection (its key pair, the broker's key,
    the broker's ZAP check), as a worker on another host does.
    """
    hops: dict[str, list[float]] = {"plain": [], "curve": []}
    for turn in range(2):
        for kind in ("plain", "curve"):
            hops[kind].append(_one_chain(root / f"{kind}-chain-{turn}", steps, kind == "curve"))
    return {"hop_ms": 1000 * statistics.median(hops["curve"]),
            "plain_hop_ms": 1000 * statistics.median(hops["plain"]), "chains": 2}  # fmt: skip


def _one_chain(folder: Path, steps: int, curve: bool) -> float:
    """The median hop of one chain of *steps* workers, with CURVE on or off."""
    system = NowcastSystem(folder, bench={"steps": steps})
    if curve:
        for name in ("broker", "manager", "ops", "host1"):
            keys.generate(folder / "keys", name)
        for name in ("manager", "ops", "host1"):
            keys.allow(folder / "keys" / "allowed", folder / "keys" / f"{name}.key")
        clients = {"manager": "manager", "cli": "ops", "workers": "host1"}
        system.config["zmq"]["curve"] = {"keys": "keys", "broker": "broker", "clients": clients}
        system.write()
    return _median_gap(_chain_stamps(system, steps))


def _chain_stamps(system: NowcastSystem, steps: int) -> list[float]:
    """Start *system*, launch step 1, and return when each of its *steps* workers reported."""
    system.start()
    try:
        system.control({"command": "launch", "worker": "step", "args": ["1"]})
        hops = system.folder / "hops.log"
        deadline = time.monotonic() + 30 + steps * 2
        while len(_lines(hops)) < steps:
            if time.monotonic() > deadline:
                raise RuntimeError(f"chain stalled after {len(_lines(hops))} hops")
            time.sleep(0.02)
        return [float(line.split()[0]) for line in _lines(hops)]
    finally:
        system.stop()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _median_gap(stamps: list[float]) -> float:
    return statistics.median(b - a for a, b in itertools.pairwise(stamps))


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _import_times(argv: list[str]) -> dict[str, int]:
    """Self time (us) of each module imported by *argv* under ``-X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO,
    )
    return {m[4]: int(m[1]) for m in map(_IMPORT_LINE.match, done.stderr.splitlines()) if m}


def import_cost(runs: int) -> dict:
    """nowcastkit's own import cost in a worker: modules beyond a pyzmq+yaml baseline."""
    extra, worst, walls, base_walls = [], {}, [], []
    for _ in range(runs):
        base = _import_times(["-c", "import zmq, yaml"])
        worker = _import_times(["-m", "workers.sleep", "--help"])
        beyond = {name: t for name, t in worker.items() if name not in base}
        extra.append(sum(beyond.values()) / 1000)
        for name, t in beyond.items():
            worst[name] = worst.get(name, 0) + t / runs / 1000
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import zmq, yaml"], env=child_env(), check=True)
        base_walls.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "workers.sleep", "--help"],
            env=child_env(),
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        walls.append(time.perf_counter() - started)
    top = sorted(worst.items(), key=lambda item: -item[1])[:8]
    return {
        "beyond_ms": statistics.median(extra),
        "wall_ms": 1000 * statistics.median(walls),
        "base_wall_ms": 1000 * statistics.median(base_walls),
        "top_modules_ms": {name: round(ms, 2) for name, ms in top},
    }


def startup(root: Path, runs: int) -> dict:
    """Seconds from spawn to listening, broker and manager."""
    broker, manager = [], []
    for i in range(runs):
        system = NowcastSystem(root / f"startup-{i}").start()
        system.stop()
        broker.append(system.spawn_seconds["message_broker"])
        manager.append(system.spawn_seconds["manager"])
    return {
        "broker_ms": 1000 * statistics.median(broker),
        "manager_ms": 1000 * statistics.median(manager),
    }


def scheduler_lateness(root: Path, seconds: float, every: int = 2) -> dict:
    """Fire delay of an entry due every *every* seconds, read from the scheduler's log."""
    system = NowcastSystem(
        root / "scheduler", **{"scheduled workers": [{"tick": {"every": f"{every} seconds"}}]}
    ).start()
    try:
        system.start_scheduler()
        time.sleep(seconds)
    finally:
        system.stop()
    log = (system.folder / "scheduler.log").read_text()
    fired = [float(m[1]) for m in re.finditer(r"^(\d+\.\d+) \S+ \[\S+\] .*tick.*launch", log, re.M)]
    if not fired:  # a scheduler that logs launches differently: the manager's log says
        manager_log = (system.folder / "manager.log").read_text()
        fired = [
            float(m[1])
            for m in re.finditer(
                r"^(\d+\.\d+) \S+ \[\S+\] launch(?:ing)? (?:of )?tick", manager_log, re.M
            )
        ]
    delays = [t - (t // every) * every for t in fired]
    started = [float(line) for line in _lines(system.folder / "ticks.log")]
    worker_delays = [t - (t // every) * every for t in started]
    return {
        "fires": len(delays),
        "median_ms": 1000 * statistics.median(delays) if delays else float("nan"),
        "max_ms": 1000 * max(delays) if delays else float("nan"),
        "worker_start_median_ms": 1000 * statistics.median(worker_delays)
        if worker_delays
        else float("nan"),
    }


def crash_detection(root: Path, kills: int) -> dict:
    """Seconds from a worker's SIGKILL to its synthesized crash reaching after_victim."""
    system = NowcastSystem(root / "crash").start()
    delays = []
    try:
        for i in range(kills):
            pid_file = system.folder / f"victim-{i}.pid"
            system.control({"command": "launch", "worker": "victim", "args": [str(pid_file)]})
            wait_for_line(pid_file, r"^\d+$", system.procs["manager"], timeout=30)
            crashes = system.folder / "crashes.log"
            seen = len(_lines(crashes))
            killed = time.time()
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            deadline = time.monotonic() + 10
            while len(_lines(crashes)) == seen:
                if time.monotonic() > deadline:
                    raise RuntimeError("no crash reached after_victim within 10s")
                time.sleep(0.001)
            delays.append(float(_lines(crashes)[-1].split()[0]) - killed)
    finally:
        system.stop()
    return {"median_ms": 1000 * statistics.median(delays), "max_ms": 1000 * max(delays)}


def memory(root: Path, messages: int, clients: int = 8) -> dict:
    """Manager RSS after a warm-up, then after *messages* more messages."""
    system = NowcastSystem(root / "memory", checklist_keys=1000).start()
    try:
        load.drive(system.workers_port, clients, count=1000)
        before = system.rss_kib()
        load.drive(system.workers_port, clients, count=messages)
        after = system.rss_kib()
    finally:
        system.stop()
    return {"before_mib": before / 1024, "after_mib": after / 1024, "messages": messages}
