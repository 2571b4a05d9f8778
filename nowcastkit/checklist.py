"""The checklist file: the human-readable YAML snapshot of the system's state.

Written atomically (temp file in the same folder, fsync, rename), so a kill at
any instant leaves the old file or the new one. An empty or corrupt file found
at start is moved aside, never silently overwritten.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

import attrs
import yaml

from nowcastkit import codec
from nowcastkit.errors import NowcastkitError

__all__ = [
    "DumpCache",
    "dump",
    "dump_cached",
    "load",
    "merge",
    "read",
    "set_aside",
    "write",
    "write_text",
]

# Logged under the manager's name: this is the manager's state.
log = logging.getLogger("manager")
_tmp_serial = itertools.count()


def dump(checklist: dict) -> str:
    """The checklist as the file holds it: block YAML, keys sorted."""
    return codec.yaml_text(checklist)


@attrs.define(eq=False)
class DumpCache:
    """Each top-level key's YAML block, with the id() of the value it was dumped from.

    Whoever changes a key's value must forget that key: a mapping updated in place keeps
    its id(), which is checked only as a safeguard against a value replaced unannounced.
    """

    blocks: dict[Any, tuple[int, str]] = attrs.field(factory=dict)

    def forget(self, key: Any) -> None:
        """Drop the block of *key*, whose value changed or went."""
        self.blocks.pop(key, None)

    def forget_all(self) -> None:
        """Drop every block, for a checklist cleared, restored or loaded."""
        self.blocks.clear()


def dump_cached(checklist: dict, cache: DumpCache) -> str:
    """``dump(checklist)``, dumping again only the keys whose block *cache* does not hold.

    Blocks are joined in the order ``dump`` gives the keys: sorted, or as inserted when they
    do not sort. Each block numbers its anchors from id001, so when two blocks have anchors
    the checklist is dumped whole; values shared between keys are written out in each.
    """
    try:
        keys = sorted(checklist)
    except TypeError:
        keys = list(checklist)
    blocks = cache.blocks
    parts = []
    for key in keys:
        value = checklist[key]
        cached = blocks.get(key)
        if cached is None or cached[0] != id(value):
            cached = blocks[key] = (id(value), dump({key: value}))
        parts.append(cached[1])
    text = "".join(parts)
    if not text or text.count(" &id001") > 1:
        return dump(checklist)
    return text


def read(path: Path) -> dict:
    """The checklist in *path*, for a tool that only reads it; ``{}`` when there is none.

    Raises NowcastkitError, naming the file, when it cannot be read or is not a mapping.
    """
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise NowcastkitError(f"{path}: cannot read the checklist file: {err}") from None
    try:
        checklist = yaml.load(text, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError) as err:
        raise NowcastkitError(
            f"{path}: the checklist file is not valid YAML ({type(err).__name__})"
        ) from None
    if checklist is None:
        return {}
    if not isinstance(checklist, dict):
        raise NowcastkitError(f"{path}: got {type(checklist).__name__}, expected a mapping")
    return checklist


def load(path: Path, quiet: bool = False) -> dict:
    """Return the checklist in *path*; an unreadable, empty or corrupt file gives ``{}``.

    A corrupt file is always moved aside with a warning; *quiet* drops the
    warnings about a missing file and an empty checklist.
    """
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
    try:
        text = path.read_bytes()
    except OSError as err:
        if not quiet:
            log.warning("checklist load failed: %s", err)
            log.warning("running with empty checklist")
        return {}
    try:
        checklist = yaml.load(text, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError) as err:
        checklist, problem = None, f"is not valid YAML ({type(err).__name__})"
    else:
        problem = "is empty" if checklist is None else "is not a mapping"
    if not isinstance(checklist, dict):
        backup = set_aside(path, "corrupt")
        log.warning("checklist file %s %s; moved it aside to %s", path, problem, backup)
        if not quiet:
            log.warning("running with empty checklist")
        return {}
    if not quiet:
        log.info("checklist loaded from %s", path)
    return checklist


def set_aside(path: Path, reason: str) -> Path:
    """Rename *path* to ``<name>.<reason>-<time>``, never over an earlier one; return it."""
    stem = f"{path.name}.{reason}-{time.strftime('%Y%m%dT%H%M%S')}"
    target, n = path.with_name(stem), 1
    while True:
        try:
            os.link(path, target)  # unlike a rename, fails if the target exists
        except FileExistsError:
            n += 1
            target = path.with_name(f"{stem}-{n}")
            continue
        os.unlink(path)
        return target


def write(path: Path, checklist: dict) -> None:
    """Replace *path* with the checklist atomically; raises OSError when it cannot."""
    write_text(path, dump(checklist))


def write_text(path: Path, text: str) -> None:
    """Replace *path* with *text* atomically; raises OSError when it cannot."""
    data = text.encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_tmp_serial)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def merge(checklist: dict, key: str, payload: Any) -> None:
    """Put a worker's payload under its checklist key: mappings update, anything else replaces."""
    current = checklist.get(key)
    if isinstance(current, dict) and isinstance(payload, dict):
        current.update(payload)
    else:
        checklist[key] = payload
