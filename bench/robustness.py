"""Kill the manager and the broker at random instants during chains of workers; count damage.

    python bench/robustness.py              # 34 chains of 10 steps, 3 kills each (102 kills)
    python bench/robustness.py --chains 5 --seed 7

Each chain runs in a fresh folder with a real broker and manager on free loopback
ports. While it runs, the manager (two kills in three) or the broker is killed
with SIGKILL at a random instant and started again, as circus would. Afterwards
it counts chains completed, steps lost, steps run twice and files that no longer
load. Everything but the first must be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.system import REPO
from bench.system import config_for as bench_config

NEXT_WORKERS = """\
from pathlib import Path
from nowcastkit import NextWorker

def after_step(msg, config, checklist):
    n = msg.payload["n"]
    if msg.type == "success" and n < {total}:
        return [NextWorker("step", args=[str(n + 1)])]
    Path(config.file).with_name("done").write_text(str(n))
    return []
"""

STEP_WORKER = """\
import os, random, time
from pathlib import Path
from nowcastkit import NowcastWorker

def work(args, config, tell_manager):
    time.sleep(random.uniform(0, 0.05))
    with open(Path(config.file).with_name("steps.log"), "a") as f:
        f.write(f"{args.n}\\n")
    return {"n": args.n}

worker = NowcastWorker("step")
worker.init_cli()
worker.cli.add_argument("n", type=int)
worker.run(work, lambda a: "success", lambda a: "failure")
"""


def config_for(folder: Path) -> dict:
    """The bench's config with a short reply timeout, so resends after a broker kill come soon."""
    config = bench_config(folder)
    config["zmq"]["reply timeout"] = 1
    return config


class System:
    """A broker and a manager in *folder*, restartable on the same ports."""

    def __init__(self, folder: Path, total: int) -> None:
        self.folder = folder
        folder.mkdir(parents=True)
        self.config = config_for(folder)
        self.path = folder / "nowcast.yaml"
        (folder / "next_workers.py").write_text(NEXT_WORKERS.replace("{total}", str(total)))
        (folder / "step.py").write_text(STEP_WORKER)
        self.write()
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts = 0
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.config))

    def start(self, name: str, ready: str) -> re.Match:
        self.starts += 1
        log = self.folder / f"{name}-{self.starts}.log"
        with open(log, "wb") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", f"nowcastkit.{name}", str(self.path)], cwd=self.folder,
                stdout=out, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while not (match := re.search(ready, log.read_text(), re.S)):
            if time.monotonic() > deadline or self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} did not start:\n{log.read_text()}")
            time.sleep(0.01)
        return match

    def start_broker(self) -> None:
        match = self.start(
            "message_broker",
            r"worker socket bound to port (\d+).*manager socket bound to port (\d+)",
        )
        ports = self.config["zmq"]["ports"]
        if not ports["workers"]:
            ports["workers"], ports["manager"] = int(match[1]), int(match[2])
            self.write()

    def start_manager(self) -> None:
        match = self.start(
            "manager",
            r"control socket bound to port (\d+)[\s\S]*monitor socket bound to port (\d+)",
        )
        if not self.config["zmq"]["ports"]["control"]:
            self.config["zmq"]["ports"].update(control=int(match[1]), monitor=int(match[2]))
            self.write()

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def launch_first_step(self) -> None:
        import zmq

        with zmq.Context() as context, context.socket(zmq.REQ) as sock:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"tcp://127.0.0.1:{self.config['zmq']['ports']['control']}")
            sock.send(
                yaml.safe_dump({"command": "launch", "worker": "step", "args": ["1"]}).encode()
            )
            if not sock.poll(10_000):
                raise RuntimeError("no answer to the launch request")
            sock.recv()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def run_chain(folder: Path, rng: random.Random, steps: int, kills: int) -> dict:
    system = System(folder, steps)
    killed = {"manager": 0, "message_broker": 0}
    try:
        system.start_broker()
        system.start_manager()
        system.launch_first_step()
        for _ in range(kills):
            time.sleep(rng.uniform(0.0, 0.6))
            name = "manager" if rng.random() < 2 / 3 else "message_broker"
            system.kill(name)
            killed[name] += 1
            system.start_manager() if name == "manager" else system.start_broker()
        deadline = time.monotonic() + 90
        while not (folder / "done").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let a duplicate, were there one, land in steps.log too
    finally:
        system.stop()
    ran = (
        [int(n) for n in (folder / "steps.log").read_text().split()]
        if (folder / "steps.log").exists()
        else []
    )
    return {
        "completed": (folder / "done").exists(),
        "lost": len(set(range(1, steps + 1)) - set(ran)),
        "duplicated": len(ran) - len(set(ran)),
        "corrupt": _corrupt_files(folder),
        "kills": killed,
    }


def _corrupt_files(folder: Path) -> int:
    corrupt = 0
    try:
        if not isinstance(yaml.safe_load((folder / "nowcast_checklist.yaml").read_text()), dict):
            corrupt += 1
    except (OSError, yaml.YAMLError):
        corrupt += 1
    try:
        with sqlite3.connect(folder / "nowcast_state.sqlite") as db:
            corrupt += db.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
    except sqlite3.Error:
        corrupt += 1
    return corrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=34)
    parser.add_argument("--steps", type=int, default=10, help="workers in each chain")
    parser.add_argument("--kills", type=int, default=3, help="kills during each chain")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep each chain's folder")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    totals = {"chains": 0, "chains completed": 0, "steps lost": 0, "steps duplicated": 0,
              "corrupt files": 0, "manager kills": 0, "broker kills": 0}  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="nowcastkit-robustness-"))
    started = time.monotonic()
    for i in range(args.chains):
        result = run_chain(root / f"chain-{i}", rng, args.steps, args.kills)
        totals["chains"] += 1
        totals["chains completed"] += result["completed"]
        totals["steps lost"] += result["lost"]
        totals["steps duplicated"] += result["duplicated"]
        totals["corrupt files"] += result["corrupt"]
        totals["manager kills"] += result["kills"]["manager"]
        totals["broker kills"] += result["kills"]["message_broker"]
        if not result["completed"] or result["lost"] or result["duplicated"] or result["corrupt"]:
            print(f"chain {i}: {result} (folder kept: {root / f'chain-{i}'})", file=sys.stderr)
            args.keep = True
    totals["seconds"] = round(time.monotonic() - started, 1)
    for key, value in totals.items():
        print(f"{key:>18}: {value}")
    print(json.dumps(totals))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    bad = totals["steps lost"] or totals["steps duplicated"] or totals["corrupt files"]
    return 1 if bad or totals["chains completed"] != totals["chains"] else 0


if __name__ == "__main__":
    sys.exit(main())
