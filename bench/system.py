"""Real processes for the benchmark: a nowcastkit system, and the bare baselines.

Every process runs from a fresh folder with a generated config, on free
loopback ports, and writes its log there; ``created`` timestamps in the log
format let the scenarios read exact times from the outside.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RAW = Path(__file__).with_name("raw.py")
#: Every log line starts with its epoch time, so lines can be timed from outside.
LOG_FORMAT = "%(created).6f %(levelname)s [%(name)s] %(message)s"

NEXT_WORKERS = """\
import time
from pathlib import Path
from nowcastkit import NextWorker

HERE = Path(__file__).parent


def after_load(msg, config, checklist):
    return []


def after_step(msg, config, checklist):
    with open(HERE / "hops.log", "a") as f:
        f.write(f"{time.time()!r} {msg.type} {msg.payload}\\n")
    n = msg.payload["n"] if isinstance(msg.payload, dict) else 0
    if msg.type == "success" and n < config["bench"]["steps"]:
        host = config["bench"].get("host", "localhost")
        return [NextWorker("step", args=[str(n + 1)], host=host)]
    return []


def after_victim(msg, config, checklist):
    with open(HERE / "crashes.log", "a") as f:
        f.write(f"{time.time()!r} {msg.type}\\n")
    return []


def after_tick(msg, config, checklist):
    return []
"""

STEP_WORKER = """\
from nowcastkit import NowcastWorker


def work(args, config, tell_manager):
    return {"n": args.n}


worker = NowcastWorker("step")
worker.init_cli()
worker.cli.add_argument("n", type=int)
worker.run(work, lambda a: "success", lambda a: "failure")
"""

VICTIM_WORKER = """\
import os, sys, time
from pathlib import Path
Path(sys.argv[2]).write_text(str(os.getpid()))
time.sleep(60)
"""

TICK_WORKER = """\
import time
STARTED = time.time()
import sys
from pathlib import Path
with open(Path(sys.argv[1]).with_name("ticks.log"), "a") as f:
    f.write(f"{STARTED!r}\\n")
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def config_for(folder: Path, level: str = "INFO") -> dict[str, Any]:
    registered = {"checklist key": "", "success": "ok", "failure": "bad", "crash": "crashed"}
    return {
        "checklist file": str(folder / "nowcast_checklist.yaml"),
        "python": sys.executable,
        "logging": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"f": {"format": LOG_FORMAT}},
            "handlers": {
                "h": {
                    "class": "logging.StreamHandler",
                    "formatter": "f",
                    "stream": "ext://sys.stdout",
                }
            },
            "root": {"level": level, "handlers": ["h"]},
        },
        "zmq": {
            "host": "127.0.0.1",
            "ports": {"manager": 0, "workers": 0, "control": 0, "monitor": 0},
            "reply timeout": 10,
            "resend for": 60,
        },
        "message registry": {
            "next workers module": "next_workers",
            "workers": {
                "load": {**registered, "checklist key": "load"},
                "step": {**registered, "checklist key": "step"},
                "victim": {**registered, "checklist key": "victim"},
                "tick": {**registered, "checklist key": "tick"},
            },
        },
        "bench": {"steps": 20},
    }


def spawn(argv: list[str], folder: Path, log_name: str) -> subprocess.Popen:
    with open(folder / log_name, "ab") as out:
        return subprocess.Popen(
            argv,
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        )


def wait_for_line(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 30):
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern, re.M)
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if match := regex.search(text):
            return match
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no {pattern!r} in {path}:\n{text[-3000:]}")
        time.sleep(0.002)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class NowcastSystem:
    """A real broker and manager (and optionally scheduler) in *folder*."""

    def __init__(
        self, folder: Path, checklist_keys: int = 0, entries: int = 0, **extra: Any
    ) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.config = config_for(folder)
        self.config.update(extra)
        self.path = folder / "nowcast.yaml"
        (folder / "next_workers.py").write_text(NEXT_WORKERS)
        (folder / "step.py").write_text(STEP_WORKER)
        (folder / "victim.py").write_text(VICTIM_WORKER)
        (folder / "tick.py").write_text(TICK_WORKER)
        if checklist_keys or entries:
            checklist = {
                f"key {i:05d}": {"done": True, "files": [f"f{i}.nc"], "n": i}
                for i in range(checklist_keys)
            }
            if entries:  # one key holding many entries, as a worker's key grows run by run
                checklist["load"] = {
                    f"entry {i:05d}": {"done": True, "n": i} for i in range(entries)
                }
            text = yaml.dump(checklist, Dumper=yaml.CSafeDumper, default_flow_style=False)
            Path(self.config["checklist file"]).write_text(text)
        self.write()
        self.procs: dict[str, subprocess.Popen] = {}
        self.spawn_seconds: dict[str, float] = {}

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.config))

    def _start(self, name: str, ready: str) -> re.Match:
        log = self.folder / f"{name}.log"
        started = time.monotonic()
        proc = spawn(
            [sys.executable, "-m", f"nowcastkit.{name}", str(self.path)], self.folder, log.name
        )
        self.procs[name] = proc
        match = wait_for_line(log, ready, proc)
        self.spawn_seconds[name] = time.monotonic() - started
        return match

    def start(self) -> NowcastSystem:
        match = self._start(
            "message_broker",
            r"worker socket bound to port (\d+)[\s\S]*manager socket bound "
            r"to port (\d+)",
        )
        self.config["zmq"]["ports"].update(workers=int(match[1]), manager=int(match[2]))
        self.write()
        # Ready once every socket is bound: a bind that fails after the first one stops it.
        match = self._start(
            "manager",
            r"control socket bound to port (\d+)[\s\S]*monitor socket bound to port (\d+)",
        )
        self.config["zmq"]["ports"].update(control=int(match[1]), monitor=int(match[2]))
        self.write()
        return self

    def start_scheduler(self) -> None:
        self._start("scheduler", r"next run at")

    @property
    def workers_port(self) -> int:
        return self.config["zmq"]["ports"]["workers"]

    def control(self, request: dict) -> dict:
        """Ask the manager, with the CLI's key pair when CURVE is on."""
        from nowcastkit.config import Config
        from nowcastkit.control import ask, control_endpoint

        return ask(control_endpoint(Config(self.config, self.path)), request, timeout=10)

    def rss_kib(self, name: str = "manager") -> int:
        status = Path(f"/proc/{self.procs[name].pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status)[1])

    def stop(self) -> None:
        """Stop every process started here, the broker last so the others can still talk."""
        last = ("scheduler", "manager", "message_broker")
        for name in [n for n in self.procs if n not in last] + list(last):
            if name in self.procs:
                stop(self.procs[name])


class RawSystem:
    """The bare baseline: a pyzmq relay and a REP behind it (echo or chain)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.procs: list[subprocess.Popen] = []
        relay = spawn([sys.executable, str(RAW), "relay"], folder, "relay.log")
        self.procs.append(relay)
        match = wait_for_line(folder / "relay.log", r"ports (\d+) (\d+)", relay)
        self.workers_port, self.manager_port = int(match[1]), int(match[2])

    def start_echo(self, durable: bool = False) -> None:
        """The echo behind the relay; *durable*: each batch committed to SQLite first."""
        if durable:
            db = self.folder / "durable-echo.sqlite"
            argv = [sys.executable, str(RAW), "durable-echo", str(self.manager_port), str(db)]
        else:
            argv = [sys.executable, str(RAW), "echo", str(self.manager_port)]
        self.procs.append(spawn(argv, self.folder, "echo.log"))

    def run_chain(
        self, steps: int, timeout: float = 120, launch: list[str] | None = None
    ) -> list[float]:
        """The raw chain's stamps; *launch*: the argv that starts each worker (default: here)."""
        out = self.folder / "raw-hops.txt"
        Path(f"{out}.config.yaml").write_text(yaml.safe_dump({"port": self.workers_port}))
        if launch is not None:
            Path(f"{out}.launch.json").write_text(json.dumps(launch))
        argv = [sys.executable, str(RAW), "chain", str(self.manager_port), str(steps), str(out)]
        proc = spawn(argv, self.folder, "chain.log")
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"raw chain not done within {timeout:.0f} s") from None
        return [float(line) for line in out.read_text().split()]

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
