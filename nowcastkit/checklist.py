"""The checklist file: the human-readable YAML snapshot of the system's state.

Written atomically (temp file in the same folder, fsync, rename), so a kill at
any instant leaves the old file or the new one. An empty or corrupt file found
at start is moved aside, never silently overwritten.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import yaml

from nowcastkit import atomic_file, codec
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
# The start of each line that is not empty: an entry's block is indented under its key.
_LINE_START = re.compile(r"^(?=.)", re.MULTILINE)
_NOTHING: frozenset[int] = frozenset()


def dump(checklist: dict) -> str:
    """The checklist as the file holds it: block YAML, keys sorted."""
    return codec.yaml_text(checklist)


@attrs.define(eq=False)
class _Entries:
    """A str-keyed mapping's YAML kept entry by entry: its key's line, each entry's block.

    Entries that share an object would be written once with an anchor by a whole dump, so
    the objects each entry holds are counted; while any is shared the key is dumped whole.
    """

    #: id() of the mapping the entries are of.
    value_id: int
    #: The key's line (``key:``), or None when the key is not written on one line.
    header: str | None
    #: Each entry's block, indented, with the id() of the value it was dumped from.
    blocks: dict[str, tuple[int, str]] = attrs.field(factory=dict)
    #: The ids of the objects each entry holds that YAML anchors when it meets them twice.
    holds: dict[str, frozenset[int]] = attrs.field(factory=dict)
    #: How many entries hold each such object; the mapping itself counts as one.
    holders: Counter[int] = attrs.field(factory=Counter)
    #: How many objects more than one entry holds.
    shared: int = 0

    def __attrs_post_init__(self) -> None:
        self.holders[self.value_id] = 1  # an entry holding the mapping itself is shared

    def add(self, entry: str, value: Any) -> tuple[int, str]:
        """Dump *entry* again and count what it holds."""
        self.drop(entry)
        block = self.blocks[entry] = (id(value), _dump_entry(entry, value))
        self.holds[entry] = held = _anchorable(value)
        for obj in held:
            self.holders[obj] += 1
            self.shared += self.holders[obj] == 2
        return block

    def drop(self, entry: str) -> None:
        """Forget *entry*, whose value changed or went."""
        self.blocks.pop(entry, None)
        for obj in self.holds.pop(entry, _NOTHING):
            self.holders[obj] -= 1
            self.shared -= self.holders[obj] == 1
            if not self.holders[obj]:
                del self.holders[obj]


@attrs.define(eq=False)
class DumpCache:
    """Each top-level key's YAML block, with the id() of the value it was dumped from.

    A key holding a str-keyed mapping is kept entry by entry instead, so that changing one
    entry of a large mapping dumps that entry alone. Whoever changes a key's value must
    forget that key, or the entries of it that changed: a mapping updated in place keeps
    its id(), which is checked only as a safeguard against a value replaced unannounced.
    """

    blocks: dict[Any, tuple[int, str]] = attrs.field(factory=dict)
    entries: dict[Any, _Entries] = attrs.field(factory=dict)

    def forget(self, key: Any, entries: Iterable[str] | None = None) -> None:
        """Drop the block of *key*, or of only these *entries* of it, changed or gone."""
        self.blocks.pop(key, None)
        if entries is None:
            self.entries.pop(key, None)
        elif (kept := self.entries.get(key)) is not None:
            for entry in entries:
                kept.drop(entry)

    def forget_all(self) -> None:
        """Drop every block, for a checklist cleared, restored or loaded."""
        self.blocks.clear()
        self.entries.clear()


def dump_cached(checklist: dict, cache: DumpCache) -> str:
    """``dump(checklist)``, dumping again only the keys and entries *cache* does not hold.

    Blocks are joined in the order ``dump`` gives the keys: sorted, or as inserted when they
    do not sort. Each block numbers its anchors from id001, so when two blocks have anchors
    the checklist is dumped whole; values shared between keys are written out in each.
    """
    try:
        keys = sorted(checklist)
    except TypeError:
        keys = list(checklist)
    text = "".join([_key_block(cache, key, checklist[key]) for key in keys])
    if not text or text.count(" &id001") > 1:
        return dump(checklist)
    return text


def _key_block(cache: DumpCache, key: Any, value: Any) -> str:
    """The YAML of ``{key: value}``: by entry from *cache* when it can be, else whole."""
    if isinstance(value, dict) and value and all(isinstance(entry, str) for entry in value):
        text = _entries_block(cache, key, value)
        if text is not None:
            cache.blocks.pop(key, None)
            return text
    else:
        cache.entries.pop(key, None)
    cached = cache.blocks.get(key)
    if cached is None or cached[0] != id(value):
        cached = cache.blocks[key] = (id(value), dump({key: value}))
    return cached[1]


def _entries_block(cache: DumpCache, key: Any, value: dict[str, Any]) -> str | None:
    """The YAML of ``{key: value}`` joined from its entries' blocks; None if it cannot be."""
    kept = cache.entries.get(key)
    if kept is None or kept.value_id != id(value):
        kept = cache.entries[key] = _Entries(id(value), _header(key))
    if kept.header is None:
        return None
    if len(kept.blocks) > len(value):  # entries deleted without being forgotten
        for entry in [entry for entry in kept.blocks if entry not in value]:
            kept.drop(entry)
    parts = [kept.header]
    for entry in sorted(value):
        item = value[entry]
        block = kept.blocks.get(entry)
        if block is None or block[0] != id(item):
            block = kept.add(entry, item)
        parts.append(block[1])
    return None if kept.shared else "".join(parts)


def _header(key: Any) -> str | None:
    """The line ``dump`` writes *key* on above its mapping's entries, or None if not one."""
    text = codec.yaml_text({key: {"x": 0}})
    header, found, rest = text.rpartition("\n  x: 0\n")
    if not found or rest or "\n" in header or header.startswith("? "):
        return None  # a complex key (``? ...``), too long or many lines for a simple one
    return header + "\n"


def _dump_entry(entry: str, value: Any) -> str:
    """The block of one entry, indented two spaces as it is within its key's mapping.

    Dumped 2 narrower than ``dump``'s 80 columns, so long strings wrap where they would.
    """
    text = yaml.dump({entry: value}, Dumper=yaml.CSafeDumper, default_flow_style=False, width=78)
    return _LINE_START.sub("  ", text)


def _anchorable(value: Any) -> frozenset[int]:
    """The ids of the objects in *value* that YAML would anchor when it meets them twice.

    Those are all but None, str, bytes, bool, int and float (SafeRepresenter.ignore_aliases).
    """
    found: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if item is None or isinstance(item, str | bytes | bool | int | float) or id(item) in found:
            continue
        found.add(id(item))
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return frozenset(found) if found else _NOTHING


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
    atomic_file.replace(path, [text.encode()])


def merge(checklist: dict, key: str, payload: Any) -> None:
    """Put a worker's payload under its checklist key: mappings update, anything else replaces."""
    current = checklist.get(key)
    if isinstance(current, dict) and isinstance(payload, dict):
        current.update(payload)
    else:
        checklist[key] = payload
