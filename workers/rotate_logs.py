"""Rotate logs worker: roll over the system's rotating log files and report which.

Every rotating file handler of the logging config (the root logger's and the
``checklist`` logger's) rolls over; each new file gets the permission bits of
the file it replaced. Long-running processes follow the rotation by
themselves (see :mod:`nowcastkit.logs`).

With ``logging.aggregator`` in the config, the aggregator's rotating files are rolled
over too, by name: the log aggregator holds them open, and, as every long-running
process does, reopens a file it writes once it has been renamed, so its next record
starts the new file.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat

from nowcastkit import NowcastWorker, WorkerError
from nowcastkit.logs import file_handlers

NAME = "rotate_logs"
logger = logging.getLogger(NAME)


def main() -> None:
    worker = NowcastWorker(NAME, description=__doc__)
    worker.init_cli()
    worker.run(rotate_logs, success, failure)


def success(parsed_args) -> str:
    logger.info("log files rotated")
    return "success"


def failure(parsed_args) -> str:
    logger.critical("failed to rotate log files")
    return "failure"


def rotate_logs(parsed_args, config, tell_manager) -> list[str]:
    """Roll over each rotating handler once; return the rotated files' paths."""
    logger.info("rotating log files")
    own = [h for _l, h in file_handlers() if isinstance(h, logging.handlers.BaseRotatingHandler)]
    paths = {handler.baseFilename for handler in own}
    named = [h for h in aggregator_files(config) if h.baseFilename not in paths]
    rotated: list[str] = []
    try:
        for handler in own + named:
            _rotate(handler, rotated)
    finally:
        for handler in named:
            handler.close()
    if not rotated:
        logger.warning("no rotating log file handlers configured")
    for path in rotated:
        logger.info("log file rotated: %s", path)
    return rotated


def aggregator_files(config) -> list[logging.handlers.BaseRotatingHandler]:
    """The aggregator schema's rotating files, as handlers that have not opened them."""
    schema = (config.get("logging") or {}).get("aggregator") or {}
    found = []
    for entry in (schema.get("handlers") or {}).values():
        kind = _ROTATING.get(entry.get("class")) if isinstance(entry, dict) else None
        if kind is None or "filename" not in entry:
            continue
        options = {k: entry[k] for k in _OPTIONS[kind] if k in entry}
        found.append(kind(entry["filename"], delay=True, **options))
    return found


_ROTATING = {
    "logging.handlers.RotatingFileHandler": logging.handlers.RotatingFileHandler,
    "logging.handlers.TimedRotatingFileHandler": logging.handlers.TimedRotatingFileHandler,
}
_OPTIONS = {
    logging.handlers.RotatingFileHandler: ("backupCount", "encoding"),
    logging.handlers.TimedRotatingFileHandler: (
        "when",
        "interval",
        "backupCount",
        "encoding",
        "utc",
    ),
}


def _rotate(handler: logging.handlers.BaseRotatingHandler, rotated: list[str]) -> None:
    """Roll *handler*'s file over, unless it is empty or keeps no backups; note it in *rotated*."""
    if isinstance(handler, logging.handlers.RotatingFileHandler) and not handler.backupCount:
        logger.warning("%s: not rotated: its handler has backupCount 0", handler.baseFilename)
        return
    if _is_empty(handler.baseFilename):
        logger.info("%s: not rotated: empty", handler.baseFilename)
        return
    try:
        _roll_over(handler)
    except OSError as err:
        raise WorkerError(f"{handler.baseFilename}: rotation failed: {err}") from None
    rotated.append(handler.baseFilename)


def _is_empty(path: str) -> bool:
    try:
        return os.stat(path).st_size == 0
    except FileNotFoundError:
        return True


def _roll_over(handler: logging.handlers.BaseRotatingHandler) -> None:
    """Roll over, then give the new file the old one's mode (umask would decide otherwise)."""
    path = handler.baseFilename
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    handler.acquire()
    try:
        handler.flush()
        handler.doRollover()
    finally:
        handler.release()
    if mode is not None:
        # A delayed handler opens its file on first use; create it now to set its mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode))
        os.chmod(path, mode)


if __name__ == "__main__":
    main()
