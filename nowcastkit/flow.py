"""The system's flow: the user's ``next_workers`` module and its ``after_<worker>`` calls.

The module is found once on the import path (with the config file's folder
first on it) and compiled from its source whenever the file changes (the
manager looks once per batch of messages), so an edit takes effect on the next
message without a manager restart and without stale bytecode.
``after_<worker>(msg, config, checklist)`` returns the workers to launch. It may
return ``(workers, {names})`` instead, which opens a race-condition group
(:mod:`nowcastkit.race`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import traceback
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from nowcastkit.errors import FlowError
from nowcastkit.message import Message
from nowcastkit.next_worker import NextWorker

__all__ = ["Flow"]

log = logging.getLogger("manager")


@attrs.define
class Flow:
    module_name: str
    search_path: Path
    module: types.ModuleType | None = None
    _source: Path | None = None
    _stamp: tuple | None = None
    _error: FlowError | None = None
    _checked: bool = False

    @property
    def error(self) -> FlowError | None:
        """Why the module cannot be used now, or None."""
        return self._error

    @property
    def source(self) -> Path | None:
        return self._source

    @contextlib.contextmanager
    def checked_once(self) -> Iterator[None]:
        """Check the file once now, not on every call within: for a batch of messages."""
        self.refresh()
        self._checked = True
        try:
            yield
        finally:
            self._checked = False

    def refresh(self, force: bool = False) -> None:
        """Recompile the module if its file changed; remember a failure to report it."""
        if self._checked and not force:
            return
        try:
            source = self._source or _find_source(self.module_name, self.search_path)
            stat = os.stat(source)
        except (OSError, ImportError, ValueError) as err:
            self._source, self._stamp = None, None
            self._fail(f"next workers module {self.module_name} not found: {err}")
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp and not force:
            return
        self._source, self._stamp = source, stamp
        try:
            self.module = _compile_module(self.module_name, source)
        except Exception as err:  # a user's module can raise anything at import
            self._fail(f"next workers module {source} failed to load: {_one_line(err)}")
            return
        was_failing, self._error = self._error is not None, None
        log.info("next workers module %sloaded from %s", "re" if was_failing else "", source)

    def after(
        self, msg: Message, config: Any, checklist: Mapping
    ) -> tuple[list[NextWorker], set[str]]:
        """Call ``after_<source>``: the workers it returns, and the names they must wait for.

        Raises FlowError, with the reply type to send, when the module or the call fails.
        """
        self.refresh()
        if self._error is not None:
            raise self._error
        after = getattr(self.module, f"after_{msg.source}", None)
        if after is None:
            raise FlowError(
                "no after_worker function",
                f"no after_{msg.source} function in next workers module {self._source}",
            )
        try:
            result = after(msg, config, checklist)
        except Exception as err:
            log.error("after_%s raised:\n%s", msg.source, traceback.format_exc().rstrip())
            raise FlowError(
                "after_worker error", f"after_{msg.source} raised {_one_line(err)}"
            ) from None
        return _split_result(msg.source, result)

    def _fail(self, text: str) -> None:
        self._error = FlowError("after_worker error", text)
        log.error("%s", text)


def _find_source(module_name: str, search_path: Path) -> Path:
    folder = str(search_path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    # Search the path afresh: a module compiled earlier sits in sys.modules without a
    # spec, and find_spec would trip on it instead of finding the file again.
    sys.modules.pop(module_name, None)
    importlib.invalidate_caches()
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.has_location:
        raise ImportError(f"no module named {module_name!r} on the import path")
    return Path(spec.origin)


def _compile_module(module_name: str, source: Path) -> types.ModuleType:
    code = compile(source.read_bytes(), str(source), "exec", dont_inherit=True)
    module = types.ModuleType(module_name)
    module.__file__ = str(source)
    module.__package__ = module_name.rpartition(".")[0]
    exec(code, module.__dict__)
    sys.modules[module_name] = module
    return module


def _split_result(source: str, result: Any) -> tuple[list, set]:
    must_finish: Any = set()
    if isinstance(result, tuple) and len(result) == 2:
        result, must_finish = result
    if type(result) is not list and (not isinstance(result, Sequence) or isinstance(result, str)):
        raise FlowError(
            "after_worker error",
            f"after_{source} returned {result!r}, expected a list of NextWorker",
        )
    bad = [worker for worker in result if not isinstance(worker, NextWorker)]
    if bad or not isinstance(must_finish, set | frozenset | list | tuple):
        raise FlowError(
            "after_worker error",
            f"after_{source} returned {bad[0] if bad else must_finish!r}, "
            "expected NextWorker items and a set of worker names",
        )
    return list(result), set(must_finish)


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".splitlines()
    return text[0] if text else type(err).__name__
