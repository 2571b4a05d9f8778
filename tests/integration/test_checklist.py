"""The checklist file survives its writer being killed at any instant."""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import child_env, wait_for

from nowcastkit import checklist

pytestmark = pytest.mark.timeout(120)

# Writes ever-changing large checklists in a loop; each one can be checked for completeness.
WRITER = """\
import sys
from pathlib import Path

from nowcastkit import checklist

path, serial = Path(sys.argv[1]), int(sys.argv[2])
while True:
    serial += 1
    checklist.write(path, {
        "serial": serial,
        "sections": {
            f"worker {i}": {"files": [f"/results/{serial}/{i}/{j}.nc" for j in range(40)]}
            for i in range(100)
        },
    })
"""


def is_complete(loaded) -> bool:
    serial = loaded["serial"]
    return loaded["sections"] == {
        f"worker {i}": {"files": [f"/results/{serial}/{i}/{j}.nc" for j in range(40)]}
        for i in range(100)
    }


def is_replaced(path, inode: int | None) -> bool:
    return path.exists() and path.stat().st_ino != inode


def read(path) -> dict:
    loaded = yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    assert isinstance(loaded, dict), f"checklist file holds {loaded!r}"
    assert is_complete(loaded), f"checklist {loaded['serial']} is incomplete"
    return loaded


def test_sigkill_at_random_moments_never_leaves_a_partial_file(tmp_path):
    rng = random.Random(20240229)
    path = tmp_path / "nowcast_checklist.yaml"
    serial, killed_mid_write = 0, 0
    for round_number in range(12):
        before = path.stat().st_ino if path.exists() else None
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(serial)], env=child_env()
        )
        try:
            # Let it replace the file at least once, then kill it: at a random instant in
            # even rounds, as soon as a temp file is seen (mid-write) in odd ones.
            wait_for(functools.partial(is_replaced, path, before), "a new checklist")
            if round_number % 2:
                wait_for(lambda: list(tmp_path.glob(".*.tmp")), "a write in progress")
            else:
                time.sleep(rng.uniform(0, 0.2))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
        serial = read(path)["serial"]
        leftovers = list(tmp_path.glob(f".{path.name}.*.tmp"))
        killed_mid_write += bool(leftovers)
        assert checklist.load(path)["serial"] == serial
        assert not any(leftover.exists() for leftover in leftovers)
    assert killed_mid_write, "no kill landed during a write; the test proved nothing"


def test_checklist_file_writes_are_coalesced_and_flushed_on_stop_issue_6(toy_system):
    toy_system.config["checklist write delay"] = 30
    toy_system.write_config()
    toy_system.start_broker()
    toy_system.start_manager()
    for n in range(3):
        reply = toy_system.send("sleep", "success", {"sleep time": n})
        assert reply["type"] == "ack"

    # The first change after a quiet spell is written at once; the rest wait.
    assert toy_system.checklist() == {"sleepyhead": {"sleep time": 0}}
    assert toy_system.manager.stop() == 0
    assert toy_system.checklist() == {"sleepyhead": {"sleep time": 2}}
