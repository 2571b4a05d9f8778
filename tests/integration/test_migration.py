"""A system written for the reference design moves over: ``nowcastkit validate`` says what to
change, the documented rewrite of its import lines makes its own tests pass, and the manager
runs nowcastkit's built-ins for the reference design's own workers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NEXT_WORKERS, REPO, child_env, wait_for

pytestmark = pytest.mark.timeout(120)

REFERENCE_SYSTEM = REPO / "tests" / "reference_system"


@pytest.fixture
def system(tmp_path: Path) -> Path:
    """A copy of the reference-design system, as it is before migrating."""
    folder = tmp_path / "system"
    shutil.copytree(REFERENCE_SYSTEM, folder)
    return folder


def env(folder: Path) -> dict[str, str]:
    environ = child_env()
    environ.update(NOWCAST_LOGS=str(folder / "logs"), NOWCAST_ENV=str(Path(sys.prefix)))
    return environ


def validate(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", "validate", "nowcast.yaml"],
        cwd=folder, capture_output=True, text=True, timeout=60, env=env(folder),
    )  # fmt: skip


def rewrite_imports(folder: Path) -> None:
    """docs/migrating.md's step 2, as given there."""
    files = subprocess.run(
        ["grep", "-rl", "--include=*.py", "nemo_nowcast", "."],
        cwd=folder, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    subprocess.run(["sed", "-i", "s/nemo_nowcast/nowcastkit/g", *files], cwd=folder, check=True)


def add_missing_failure(folder: Path) -> None:
    """docs/migrating.md's step 3: the dispatch dict validate named gets its missing type."""
    path = folder / "nowcast" / "next_workers.py"
    old = '"crash": [],\n        "success": [NextWorker("nowcastkit.workers.clear_checklist")],'
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, '"crash": [],\n        "failure": [],' + old[12:]))


def notes(folder: Path, package: str, moved: int = 0) -> list[str]:
    """What validate notes of the system: the unused port pools, the built-ins it runs (the
    lines *moved* down by an added line above them)."""
    pools = [
        f"note: {folder}/nowcast.yaml: zmq.ports.logging.{key}: not used: the log aggregator "
        "binds one port (zmq.ports.logging.aggregator) that every process connects to; "
        "remove it when you like"
        for key in ("message_broker", "manager", "workers", "download_forcing")
    ]
    built_ins = [
        f'note: {folder}/nowcast/next_workers.py: line {line + moved}: NextWorker("{package}.'
        f"workers.{worker}\"): runs as workers.{worker}, nowcastkit's built-in"
        for line, worker in ((31, "clear_checklist"), (41, "clear_checklist"), (51, "rotate_logs"))
    ]
    return pools + built_ins


def test_validate_lists_every_change_an_unmodified_system_needs(system):
    result = validate(system)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == ""
    imports = [
        ("lib.py", 4, "nemo_nowcast.fileutils"),
        ("next_workers.py", 6, "nemo_nowcast"),
        ("workers/download_forcing.py", 10, "nemo_nowcast"),
        ("workers/download_forcing.py", 11, "nemo_nowcast.worker"),
        ("workers/make_feeds.py", 7, "nemo_nowcast"),
        ("workers/make_plots.py", 7, "nemo_nowcast"),
    ]
    expected = [
        f"{system}/nowcast/{file}: line {line}: imports {name}: import it from nowcastkit"
        for file, line, name in imports
    ] + [
        f"{system}/nowcast/next_workers.py: line 29: after_make_plots: next_workers[msg.type] "
        "has no 'failure': a KeyError in the manager for a registered message type"
    ] + notes(system, "nemo_nowcast") + ["nowcast.yaml: 7 problems"]  # fmt: skip
    assert result.stdout.splitlines() == expected


def test_after_the_documented_rewrite_only_notes_remain_and_its_own_tests_pass(system):
    rewrite_imports(system)
    add_missing_failure(system)
    result = validate(system)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = [*notes(system, "nowcastkit", moved=1), "nowcast.yaml: valid"]
    assert result.stdout.splitlines() == expected
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=system, capture_output=True, text=True, timeout=90, env=env(system),
    )  # fmt: skip
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert "10 passed" in suite.stdout


def test_the_manager_runs_the_built_in_for_the_reference_designs_own_worker(toy_system):
    toy_system.write_next_workers(NEXT_WORKERS.replace(
        'def after_sleep(msg, config, checklist):\n    return []',
        'def after_sleep(msg, config, checklist):\n'
        '    return [NextWorker("nemo_nowcast.workers.awaken")]',
    ))  # fmt: skip
    toy_system.start_broker()
    manager = toy_system.start_manager()
    for _ in range(2):
        assert toy_system.send("sleep", "success")["type"] == "ack"
    launched = "launching workers.awaken worker on localhost"
    wait_for(lambda: manager.output().count(launched) == 2, "two awaken launches")
    said = "nemo_nowcast is not installed: launching workers.awaken for nemo_nowcast.workers.awaken"
    assert manager.output().count(said) == 1
    wait_for(lambda: manager.output().count("received message from awaken: (success)") == 2,
             "both awaken runs reporting success")  # fmt: skip
