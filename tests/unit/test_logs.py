"""The logging set-up of a long-running process: the YAML's handlers, and cheap records."""

from __future__ import annotations

import logging
import os

import pytest

from nowcastkit import logs

pytestmark = pytest.mark.timeout(30)

SETTINGS = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


@pytest.fixture
def restored():
    """Logging's process-wide settings and the root handlers, as they were before the test."""
    saved = {name: getattr(logging, name) for name in SETTINGS}
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for name, value in saved.items():
        setattr(logging, name, value)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def configure(tmp_path, fmt: str) -> logging.LogRecord:
    section = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"f": {"format": fmt}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "f",
                "filename": str(tmp_path / "m.log"),
            }
        },
        "root": {"level": "INFO", "handlers": ["file"]},
    }
    logs.configure({"logging": section}, long_running=True)
    logging.getLogger("manager").info("checklist updated with [%s] items", "load")
    for handler in logging.getLogger().handlers:
        handler.flush()
    return (tmp_path / "m.log").read_text()


def test_a_format_without_caller_or_thread_fields_skips_finding_them(tmp_path, restored):
    line = configure(tmp_path, "%(asctime)s %(levelname)s [%(name)s] %(message)s")
    assert line.endswith("INFO [manager] checklist updated with [load] items\n")
    assert (logging._srcfile, logging.logThreads, logging.logProcesses) == (None, False, False)


def test_a_format_that_shows_the_caller_and_pid_still_gets_them(tmp_path, restored):
    line = configure(tmp_path, "%(process)d %(filename)s:%(lineno)d %(message)s")
    pid, where, _text = line.split(" ", 2)
    assert int(pid) == os.getpid()
    assert where.startswith("test_logs.py:")  # the caller, found as before
    assert logging._srcfile is not None and logging.logProcesses is True
    assert logging.logThreads is False
