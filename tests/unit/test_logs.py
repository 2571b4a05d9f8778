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


LINES = [
    (logging.DEBUG, "received message from %s: (%s) %s", ("load", "success", "ok")),
    (logging.INFO, "checklist updated with [%s] items from %s worker", ("load", "load")),
    (logging.WARNING, "%s: message %s was handled before", ("load", "a1")),
    (logging.INFO, "one %(n)s mapping", ({"n": 1},)),
]


def log_both_ways(tmp_path, fmt: str, handler_level: str = "NOTSET") -> tuple[str, str]:
    """The same lines through logger.log and through log_lines, each into a file."""
    texts, folder = [], tmp_path / handler_level
    folder.mkdir()
    for name, way in (("one", "log"), ("all", "lines")):
        section = {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"f": {"format": fmt}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "f",
                    "filename": str(folder / f"{name}.log"),
                    "level": handler_level,
                }
            },
            "root": {"level": "INFO", "handlers": ["file"]},
        }
        logs.configure({"logging": section}, long_running=True)
        logger = logging.getLogger("manager")
        logger.info("first")  # the file is open, as in a running manager
        if way == "log":
            for level, text, args in LINES:
                logger.log(level, text, *args)
        else:
            logs.log_lines(logger, LINES)
        for handler in logging.getLogger().handlers:
            handler.close()
        texts.append((folder / f"{name}.log").read_text())
    return texts[0], texts[1]


def test_lines_logged_together_are_the_lines_logged_one_by_one(tmp_path, restored):
    one_by_one, together = log_both_ways(tmp_path, "%(levelname)s [%(name)s] %(message)s")
    assert together == one_by_one
    assert together.splitlines()[1:] == [
        "INFO [manager] checklist updated with [load] items from load worker",
        "WARNING [manager] load: message a1 was handled before",
        "INFO [manager] one 1 mapping",
    ]
    one_by_one, together = log_both_ways(tmp_path, "%(levelname)s %(message)s", "WARNING")
    assert together == one_by_one == "WARNING load: message a1 was handled before\n"


def test_lines_logged_together_are_written_at_once(tmp_path, restored):
    log_both_ways(tmp_path, "%(message)s")  # configured, with the file open
    handler = logging.getLogger().handlers[0]
    handler.stream = open(tmp_path / "counted.log", "a")  # noqa: SIM115
    writes = []
    write = handler.stream.write
    handler.stream.write = lambda text: writes.append(text) or write(text)
    logs.log_lines(logging.getLogger("manager"), LINES)
    assert writes == [
        "checklist updated with [load] items from load worker\n"
        "load: message a1 was handled before\none 1 mapping\n"
    ]


def test_a_logger_with_a_filter_has_each_line_handled_on_its_own(tmp_path, restored):
    log_both_ways(tmp_path, "%(message)s")
    logger = logging.getLogger("manager")
    logger.addFilter(lambda record: "handled before" not in record.getMessage())
    try:
        logs.log_lines(logger, LINES)
    finally:
        logger.filters.clear()
    logging.getLogger().handlers[0].flush()
    assert (tmp_path / "NOTSET" / "all.log").read_text().splitlines()[-2:] == [
        "checklist updated with [load] items from load worker",
        "one 1 mapping",
    ]
