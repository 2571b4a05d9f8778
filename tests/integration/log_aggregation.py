"""A toy system that logs as the reference design's systems do: publishers and one aggregator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import Process, System, child_env, wait_for

#: Every line names its logger, the host and the run, as the tests look for them.
FORMAT = "%(asctime)s %(levelname)s [%(logger_name)s] [%(host)s %(run)s] %(message)s"


def rotating(path: Path, level: str) -> dict:
    return {"class": "logging.handlers.RotatingFileHandler", "level": level,
            "formatter": "simple", "filename": str(path), "backupCount": 7}  # fmt: skip


def logging_section(folder: Path) -> dict:
    """The reference design's two schemas: the aggregator's files, a PUBHandler publisher."""
    aggregator = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"simple": {"format": FORMAT}},
        "handlers": {
            "info_text": rotating(folder / "nowcast.log", "INFO"),
            "debug_text": rotating(folder / "nowcast.debug.log", "DEBUG"),
            "checklist": rotating(folder / "checklist.log", "INFO"),
        },
        # The manager's checklist logger, as in the reference design's aggregator schema.
        "loggers": {"checklist": {"level": "INFO", "propagate": False, "handlers": ["checklist"]}},
        "root": {"level": "DEBUG", "handlers": ["info_text", "debug_text"]},
    }
    publisher = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"simple": {"format": "%(asctime)s %(levelname)s [%(name)s] %(message)s"}},
        "handlers": {
            "zmq_pub": {
                "class": "zmq.log.handlers.PUBHandler",
                "level": "DEBUG",
                "formatter": "simple",
            },
        },
        "root": {"level": "DEBUG", "handlers": ["zmq_pub"]},
    }
    return {"aggregator": aggregator, "publisher": publisher}


def use_aggregator(system: System, port: int = 0) -> None:
    """Give *system* the two schemas, and the reference design's pools, which go unused."""
    system.config["logging"] = logging_section(system.folder)
    system.config["zmq"]["ports"]["logging"] = {
        "aggregator": port, "message_broker": 4347, "manager": 4347, "workers": [4357, 4358],
    }  # fmt: skip
    system.write_config()


def debug_log(system: System) -> str:
    path = system.folder / "nowcast.debug.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_in_log(system: System, pattern: str, timeout: float = 10.0) -> re.Match:
    regex = re.compile(pattern, re.MULTILINE)
    return wait_for(lambda: regex.search(debug_log(system)), f"{pattern!r} in nowcast.debug.log",
                    timeout)  # fmt: skip


def start_aggregator(system: System) -> Process:
    """Start the aggregator; a port of 0 becomes the one it bound, written to the config."""
    aggregator = system.spawn("log_aggregator", "-m", "nowcastkit.log_aggregator")
    ports = system.config["zmq"]["ports"]["logging"]
    if not ports["aggregator"] and system.config["zmq"].get("transport") != "ipc":
        bound = wait_in_log(system, r"aggregator socket bound to port (\d+)")
        ports["aggregator"] = int(bound[1])
        system.write_config()
    return aggregator


#: A process that logs a line every 5 ms for the seconds it is given, through the publisher.
CHATTY = """\
import logging, sys, time
from nowcastkit import logs
from nowcastkit.config import load_config
logs.configure(load_config(sys.argv[1]), process="chatty", run="run-chatty")
log = logging.getLogger("chatty")
end, n = time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < end:
    log.info("line %d", n)
    n += 1
    time.sleep(0.005)
log.info("last line %d", n)
"""


def chatty(system: System, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHATTY, str(system.config_path), str(seconds)], cwd=system.folder,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
