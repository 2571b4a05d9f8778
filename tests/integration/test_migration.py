"""A system written for the reference design moves over: ``nowcastkit validate`` says what to
change, the documented rewrite of its import lines makes its own tests pass, and the manager
runs nowcastkit's built-ins for the reference design's own workers."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from conftest import NEXT_WORKERS, REPO, child_env, wait_for

from tests.integration.test_circus import _free_ports

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


def validate(folder: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", "validate", *options, "nowcast.yaml"],
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
        for line, worker in ((31, "clear_checklist"), (54, "rotate_logs"))
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


@pytest.mark.parametrize(
    ("module", "said"),
    [
        ("nemo_nowcast.workers.awaken",
         "launching workers.awaken, nowcastkit's built-in, for nemo_nowcast.workers.awaken"),
        ("nowcastkit.workers.awaken",  # the same string after the documented rewrite
         "launching workers.awaken, nowcastkit's built-in, for nowcastkit.workers.awaken"),
    ],
)  # fmt: skip
def test_the_manager_runs_the_built_in_for_the_reference_designs_own_worker(
    toy_system, module, said
):
    toy_system.write_next_workers(NEXT_WORKERS.replace(
        'def after_sleep(msg, config, checklist):\n    return []',
        'def after_sleep(msg, config, checklist):\n'
        f'    return [NextWorker("{module}")]',
    ))  # fmt: skip
    toy_system.start_broker()
    manager = toy_system.start_manager()
    for _ in range(2):
        assert toy_system.send("sleep", "success")["type"] == "ack"
    launched = "launching workers.awaken worker on localhost"
    wait_for(lambda: manager.output().count(launched) == 2, "two awaken launches")
    assert manager.output().count(said) == 1
    wait_for(lambda: manager.output().count("received message from awaken: (success)") == 2,
             "both awaken runs reporting success")  # fmt: skip


@pytest.mark.slow
def test_the_migrated_system_runs_its_day_under_circus_logging_through_the_aggregator(system):
    """Broker, manager and log aggregator under circusd; the forcing server fails once; the
    day's chain ends with rotate_logs, and every worker's lines are in the rotated files."""
    rewrite_imports(system)
    add_missing_failure(system)
    logs = system / "logs"
    logs.mkdir()
    config = yaml.safe_load((system / "nowcast.yaml").read_text())
    names = ("manager", "workers", "control", "monitor", "aggregator")
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    config["zmq"]["ports"].update({k: v for k, v in ports.items() if k != "aggregator"})
    config["zmq"]["ports"]["logging"]["aggregator"] = ports["aggregator"]
    with forcing_server() as url:
        config["forcing"]["url"] = url + "/forcing/{date}.nc"
        (system / "nowcast.yaml").write_text(yaml.safe_dump(config))
        ini = system / "circus.ini"
        ini.write_text(CIRCUS_INI.format(folder=system, python=sys.executable))
        environ = env(system) | {"PYTHONPATH": f"{system}{os.pathsep}{REPO}"}
        circusd = subprocess.Popen(
            [str(Path(sys.executable).with_name("circusd")), str(ini)], cwd=system,
            stdout=(system / "circusd.log").open("wb"), stderr=subprocess.STDOUT,
            env=environ, start_new_session=True,
        )  # fmt: skip
        try:
            ready = "[manager] listening..."
            wait_for(lambda: ready in _text(logs / "nowcast.debug.log"), "the manager", 30)
            launch = subprocess.run(
                [sys.executable, "-m", "nowcastkit.cli", "launch", "nowcast.yaml",
                 "nowcast.workers.download_forcing", "--run-date", "2026-12-01"],
                cwd=system, capture_output=True, text=True, timeout=30, env=environ,
            )  # fmt: skip
            assert launch.returncode == 0, launch.stdout + launch.stderr
            rotated = logs / "nowcast.debug.log.1"
            wait_for(lambda: "[rotate_logs] log file rotated" in _text(logs / "nowcast.log"),
                     "the chain's end: rotate_logs", 60)  # fmt: skip
        finally:
            subprocess.run([str(Path(sys.executable).with_name("circusctl")), "--endpoint",
                            f"ipc://{system}/circus.sock", "quit"],
                           timeout=30, capture_output=True, env=environ)  # fmt: skip
            circusd.wait(30)
    day = _text(rotated)
    for line in ("; retry 1 in 2s", "[download_forcing] 2026-12-01 forcing "
                 "downloaded", "[make_plots] forcing plots for 2026-12-01 made",
                 "[make_feeds] feed for 2026-12-01 made", "[clear_checklist]",
                 "[manager] launching workers.clear_checklist worker",
                 "launching workers.rotate_logs, nowcastkit's built-in, for nowcastkit.workers."
                 "rotate_logs"):  # fmt: skip
        assert line in day, line
    assert (logs / "forcing" / "forcing_20261201.nc").read_bytes() == b"CDF\x01forcing"
    assert (logs / "figures" / "forcing_20261201.svg").exists()


CIRCUS_INI = """\
[circus]
endpoint = ipc://{folder}/circus.sock
pubsub_endpoint = ipc://{folder}/circus-pubsub.sock
check_delay = 0.2

[watcher:log_aggregator]
cmd = {python}
args = -m nowcastkit.log_aggregator nowcast.yaml
copy_env = True
singleton = True
send_hup = True
priority = 4

[watcher:message_broker]
cmd = {python}
args = -m nowcastkit.message_broker nowcast.yaml
copy_env = True
singleton = True
priority = 3

[watcher:manager]
cmd = {python}
args = -m nowcastkit.manager nowcast.yaml
copy_env = True
singleton = True
priority = 2
"""


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def forcing_server():
    """A forcing server on loopback that answers 503 once, then every file."""
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            if len(asked) == 1:
                self.send_error(503)
                return
            body = b"CDF\x01forcing"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


SMALL_FLOW = """\
from nemo_nowcast import NextWorker


def after_download(msg, config, checklist):
    actions = {
        "crash": None,
        "success": [NextWorker("nowcast.workers.plot")],
    }
    return actions[msg.type]


def after_plot(msg, config, checklist):
    actions = {
        "crash": None,
        "failure": [],
        "success": [NextWorker("nemo_nowcast.workers.clear_checklist")],
    }
    return actions[msg.type]
"""
SMALL_WORKER = """\
import nemo_nowcast.worker
from nemo_nowcast import NowcastWorker
"""


def small_system(folder: Path, flow: str = SMALL_FLOW, built_in: dict | None = None) -> None:
    """A reference-design system in a few lines: *flow* as its next workers module, one
    worker module of its own, per-process logging ports, and *built_in* as the registry's
    clear_checklist entry (none by default)."""
    (folder / "nowcast" / "workers").mkdir(parents=True)
    for package in ("nowcast", "nowcast/workers"):
        (folder / package / "__init__.py").write_text("")
    (folder / "nowcast" / "next_workers.py").write_text(flow)
    (folder / "nowcast" / "workers" / "plot.py").write_text(SMALL_WORKER)
    types = {"success": "done", "failure": "failed", "crash": "crashed"}
    ports = {"manager": 0, "workers": 0, "logging": {"manager": 4345, "workers": [4350, 4351]}}
    workers = {name: dict(types) for name in ("download", "plot", "publish")}
    if built_in is not None:
        workers["clear_checklist"] = built_in
    config = {
        "checklist file": str(folder / "nowcast_checklist.yaml"),
        "python": sys.executable,
        "logging": {"version": 1},
        "zmq": {"host": "localhost", "ports": ports},
        "message registry": {
            "next workers module": "nowcast.next_workers",
            "manager": {"ack": "ok"},
            "workers": workers,
        },
    }
    (folder / "nowcast.yaml").write_text(yaml.safe_dump(config))


def test_validate_names_each_change_a_line_each_in_a_small_unmigrated_system(tmp_path):
    small_system(tmp_path)
    result = validate(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    flow, yml = tmp_path / "nowcast" / "next_workers.py", tmp_path / "nowcast.yaml"
    worker = tmp_path / "nowcast" / "workers" / "plot.py"
    assert result.stdout.splitlines() == [
        f"{flow}: line 1: imports nemo_nowcast: import it from nowcastkit",
        f"{worker}: line 1: imports nemo_nowcast.worker: import it from nowcastkit",
        f"{worker}: line 2: imports nemo_nowcast: import it from nowcastkit",
        f"{yml}: message registry.workers.publish: no after_publish function in {flow}",
        f'{flow}: line 16: NextWorker("nemo_nowcast.workers.clear_checklist"): worker '
        "'clear_checklist' is not in message registry.workers",
        f"{flow}: line 5: after_download: actions[msg.type] has no 'failure': a KeyError in "
        "the manager for a registered message type",
        f"note: {yml}: zmq.ports.logging.manager: not used: the log aggregator binds one port "
        "(zmq.ports.logging.aggregator) that every process connects to; remove it when you like",
        f"note: {yml}: zmq.ports.logging.workers: not used: the log aggregator binds one port "
        "(zmq.ports.logging.aggregator) that every process connects to; remove it when you like",
        f'note: {flow}: line 16: NextWorker("nemo_nowcast.workers.clear_checklist"): runs as '
        "workers.clear_checklist, nowcastkit's built-in",
        "nowcast.yaml: 6 problems",
    ]


def test_validate_exits_0_when_only_notes_remain(tmp_path):
    gap = '"crash": None,\n        "success"'
    fixed = SMALL_FLOW.replace(gap, gap.replace('"success"', '"failure": [],\n        "success"'))
    for name in ("publish", "clear_checklist"):
        fixed += f"\n\ndef after_{name}(msg, config, checklist):\n    return []\n"
    built_in = {"success": "cleared", "failure": "not cleared", "crash": "crashed",
                "clear checklist": "clear it"}  # fmt: skip
    small_system(tmp_path, fixed.replace("from nemo_nowcast", "from nowcastkit"), built_in)
    (tmp_path / "nowcast/workers/plot.py").write_text("from nowcastkit import NowcastWorker\n")
    result = validate(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "nowcast.yaml: valid"
    assert len(lines) == 4 and all(line.startswith("note: ") for line in lines[:-1]), lines
    report = json.loads(validate(tmp_path, "--json").stdout)
    assert (report["valid"], report["problems"], len(report["notes"])) == (True, [], 3)
    assert report["notes"][-1] == {
        "file": str(tmp_path / "nowcast" / "next_workers.py"),
        "key": 'line 17: NextWorker("nemo_nowcast.workers.clear_checklist")',
        "note": "runs as workers.clear_checklist, nowcastkit's built-in",
    }
    dry_run = validate(tmp_path, "--dry-run", "plot", "success")
    assert dry_run.stdout == (
        f"would launch: {sys.executable} -m workers.clear_checklist {tmp_path / 'nowcast.yaml'}\n"
    ), dry_run.stdout + dry_run.stderr


def test_a_built_in_the_flow_runs_needs_the_message_types_it_sends(tmp_path):
    """The clear_checklist worker asks with a 'clear checklist' message, the reference
    design's as nowcastkit's: without it in the registry, it crashes every run."""
    small_system(tmp_path, built_in={"success": "cleared", "failure": "no", "crash": "crashed"})
    result = validate(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"{tmp_path / 'nowcast.yaml'}: message registry.workers.clear_checklist: no 'clear "
        "checklist' message type, which the built-in clear_checklist worker sends"
    ) in result.stdout.splitlines()


def test_a_scheduled_worker_module_beyond_the_systems_package_is_checked_once(tmp_path):
    small_system(tmp_path)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "__init__.py").write_text("")
    (tmp_path / "shared" / "fetch.py").write_text("from nemo_nowcast import NowcastWorker\n")
    config = yaml.safe_load((tmp_path / "nowcast.yaml").read_text())
    config["message registry"]["workers"]["fetch"] = {"success": "ok", "crash": "crashed"}
    config["scheduled workers"] = [
        {"shared.fetch": {"every": "day", "at": "05:00"}},
        {"shared.fetch": {"every": "day", "at": "17:00"}},
    ]
    (tmp_path / "nowcast.yaml").write_text(yaml.safe_dump(config))
    result = validate(tmp_path)
    fetch = tmp_path / "shared" / "fetch.py"
    line = f"{fetch}: line 1: imports nemo_nowcast: import it from nowcastkit"
    assert result.stdout.splitlines().count(line) == 1, result.stdout
