"""The one logging set-up, called once by each entry point from the YAML ``logging`` section.

    configure(config, long_running=True, process="manager")   # lifecycle.run_process
    configure(config, process="sleep", run=run_id)              # NowcastWorker.run

``logging`` is one ``logging.config.dictConfig`` schema, or the reference design's two:
``logging.publisher`` for every process and worker, whose records go to the one log
aggregator (:mod:`nowcastkit.log_publisher`), and ``logging.aggregator`` for the
``log_aggregator`` process, which writes them all (:mod:`nowcastkit.log_aggregator`).

A long-running process never rotates a log file itself: its rotating handlers
are replaced by watched handlers that reopen the file when the ``rotate_logs``
worker has rolled it over, so it keeps writing to the new file.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from nowcastkit.errors import ConfigError

__all__ = [
    "AGGREGATOR",
    "PUBHANDLER",
    "configure",
    "configure_console",
    "file_handlers",
    "log_lines",
    "name_run",
    "schema_for",
]

_CONSOLE_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
#: The process that writes the aggregator schema's files.
AGGREGATOR = "log_aggregator"
#: pyzmq's handler, named in the reference design's publisher schemas; it binds a port.
PUBHANDLER = "zmq.log.handlers.PUBHandler"
_PUBLISHER = "nowcastkit.log_publisher.Publisher"


def schema_for(section: Mapping, process: str) -> tuple[str, dict | None]:
    """Which schema of the ``logging`` *section* *process* uses, by key, and that schema.

    The aggregator takes ``aggregator``; any other process ``publisher`` when there is one;
    else the section itself when it is a schema; else none (console logging).
    """
    if process == AGGREGATOR and isinstance(section.get("aggregator"), Mapping):
        return "logging.aggregator", dict(section["aggregator"])
    if process != AGGREGATOR and isinstance(section.get("publisher"), Mapping):
        return "logging.publisher", dict(section["publisher"])
    if "version" in section:
        return "logging", dict(section)
    return "logging", None


def with_publisher(schema: dict) -> tuple[dict, list[str]]:
    """*schema* with each PUBHandler entry made a :class:`~.log_publisher.Publisher`, and
    the names of those replaced: a PUBHandler binds a port, a Publisher connects."""
    handlers = dict(schema.get("handlers") or {})
    replaced = []
    for name, entry in handlers.items():
        if isinstance(entry, dict) and entry.get("class") == PUBHANDLER:
            handlers[name] = {**entry, "class": _PUBLISHER}
            replaced.append(name)
    return {**schema, "handlers": handlers} if replaced else schema, replaced


def configure(
    config: Mapping, *, long_running: bool = False, process: str = "", run: str | None = None
) -> None:
    """Apply *process*'s schema of the config's ``logging`` section (console logging when
    there is none); under the publisher schema, connect its handlers to the aggregator."""
    key, schema = schema_for(config.get("logging") or {}, process)
    if schema is None:
        configure_console()
        return
    import logging.config  # with logging.handlers: not needed for --help or --debug

    replaced: list[str] = []
    if key == "logging.publisher":
        schema, replaced = with_publisher(schema)
    try:
        logging.config.dictConfig(schema)
    except (ValueError, TypeError, AttributeError, ImportError) as err:
        cause = f"{err}: {err.__cause__}" if err.__cause__ else str(err)
        raise ConfigError(getattr(config, "file", ""), key, cause) from None
    publishers = _publishers()
    for handler in publishers:
        handler.start(config, process, run)
    if key == "logging.publisher":
        _keep_console()
    for name in replaced:
        logging.getLogger(process or __name__).info(
            "logging.publisher: handler %s: %s replaced by nowcastkit's publisher, which "
            "connects to the log aggregator", name, PUBHANDLER,
        )  # fmt: skip
    if long_running:
        _watch_rotating_files()
        if not publishers:  # the aggregator's formats may show any field
            _skip_unused_record_fields()


def name_run(run: str | None) -> None:
    """Have the publisher handlers name *run* in the records from now on."""
    for handler in _publishers():
        handler.name_run(run)


def _publishers() -> list[Any]:
    module = sys.modules.get("nowcastkit.log_publisher")
    if module is None:
        return []
    return [h for _logger, h in _all_handlers() if isinstance(h, module.Publisher)]


def _keep_console() -> None:
    """Under the publisher schema, still log to stdout, which is a run's own log file."""
    root = logging.getLogger()
    if not any(type(h) is logging.StreamHandler for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(_CONSOLE_FORMAT))
        root.addHandler(handler)


def configure_console(level: int = logging.DEBUG) -> None:
    """Log everything to stdout, for ``--debug`` runs and configs without a logging section."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(_CONSOLE_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)


def _all_handlers() -> Iterator[tuple[logging.Logger, logging.Handler]]:
    """Every handler attached to a configured logger, once, with its logger."""
    loggers = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    seen: set[int] = set()
    for logger in loggers:
        for handler in logger.handlers:
            if id(handler) not in seen:
                seen.add(id(handler))
                yield logger, handler


def file_handlers() -> Iterator[tuple[logging.Logger, logging.Handler]]:
    """Every file handler attached to a configured logger, with its logger."""
    for logger, handler in _all_handlers():
        if isinstance(handler, logging.FileHandler):
            yield logger, handler


# What each optional LogRecord field costs to fill in, and the format fields that show it.
# Finding the caller is half the cost of a log line (the logging HOWTO's "Optimization").
_OPTIONAL_FIELDS = {
    "_srcfile": ("pathname", "filename", "module", "funcName", "lineno"),
    "logThreads": ("thread", "threadName"),
    "logProcesses": ("process",),
    "logMultiprocessing": ("processName",),
}


def _skip_unused_record_fields() -> None:
    """Have log records skip the fields that no configured format shows.

    A long-running process logs a line per message, so this is worth its while; it is
    done only when every handler has a plain Formatter whose format string can be read.
    """
    formats = []
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", ()):
            formatter = handler.formatter
            if formatter is None:
                formats.append("%(message)s")
            elif type(formatter) is logging.Formatter and handler.filters == []:
                formats.append(formatter._fmt or "")
            else:
                return
    shown = " ".join(formats)
    for setting, fields in _OPTIONAL_FIELDS.items():
        if not any(field in shown for field in fields):
            setattr(logging, setting, None if setting == "_srcfile" else False)


def _watch_rotating_files() -> None:
    import logging.handlers

    replaced: dict[int, logging.Handler] = {}
    for logger, handler in list(file_handlers()):
        if not isinstance(handler, logging.handlers.BaseRotatingHandler):
            continue
        if id(handler) not in replaced:
            watched = logging.handlers.WatchedFileHandler(
                handler.baseFilename, mode="a", encoding=handler.encoding
            )
            watched.setLevel(handler.level)
            watched.setFormatter(handler.formatter)
            for log_filter in handler.filters:
                watched.addFilter(log_filter)
            replaced[id(handler)] = watched
            handler.close()
        logger.removeHandler(handler)
        logger.addHandler(replaced[id(handler)])


def log_lines(logger: logging.Logger, lines: Iterable[tuple[int, str, tuple]]) -> None:
    """Log each ``(level, format, args)`` as ``logger.log`` would, writing each stream once.

    The records and the lines are those of one ``logger.log`` call each, in order. When
    every handler they reach writes a stream (a plain StreamHandler, FileHandler or
    WatchedFileHandler without filters), each handler formats its lines and writes them
    with one write and one flush, not one of each per line: the manager logs a line or two
    per message and announces a batch of messages at once. Any other set-up (filters, other
    handlers, none at all) has each record go through ``logger.handle``.
    """
    lines = [line for line in lines if logger.isEnabledFor(line[0])]
    if not lines:
        return
    caller = "(unknown file)", 0, "(unknown function)"
    if logging._srcfile:  # the format shows the caller: the one who logs the lines
        caller = logger.findCaller(False, 2)[:3]
    fn, lno, func = caller
    records = [
        logger.makeRecord(logger.name, level, fn, lno, text, args, None, func)
        for level, text, args in lines
    ]
    handlers = _stream_handlers(logger)
    if handlers is None:
        for record in records:
            logger.handle(record)
        return
    for handler in handlers:
        _emit_all(handler, [record for record in records if record.levelno >= handler.level])


def _stream_handlers(logger: logging.Logger) -> list[logging.Handler] | None:
    """The handlers a record of *logger* reaches, in order, if all of them write a stream."""
    if logger.disabled or logger.filters:
        return None
    watched = getattr(sys.modules.get("logging.handlers"), "WatchedFileHandler", None)
    plain = (logging.StreamHandler, logging.FileHandler, watched)
    handlers, current = [], logger
    while current is not None:
        for handler in current.handlers:
            if type(handler) not in plain or handler.filters:
                return None
            if isinstance(handler, logging.FileHandler) and handler.stream is None:
                return None  # opened on its first record (delay=True): FileHandler.emit does it
            handlers.append(handler)
        current = current.parent if current.propagate else None
    return handlers or None  # none: logging.lastResort, as logger.handle knows


def _emit_all(handler: logging.Handler, records: list[logging.LogRecord]) -> None:
    """StreamHandler.emit for each record, with one write and one flush for them all."""
    if not records:
        return
    handler.acquire()
    try:
        texts = []
        for record in records:
            try:
                texts.append(handler.format(record) + handler.terminator)
            except RecursionError:  # as emit does
                raise
            except Exception:
                handler.handleError(record)
        if hasattr(handler, "reopenIfNeeded"):  # WatchedFileHandler: the file was rotated
            handler.reopenIfNeeded()
        try:
            handler.stream.write("".join(texts))
            handler.flush()
        except RecursionError:
            raise
        except Exception:
            handler.handleError(records[-1])
    finally:
        handler.release()
