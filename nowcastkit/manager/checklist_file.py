"""The checklist file's owner: its path, when it is next written, and each key's YAML block.

    file = ChecklistFile.from_config(config)
    file.forget("sleepyhead")              # that key's value changed
    file.forget("sleepyhead", ["slept"])   # only that entry of its mapping changed
    file.changed(checklist, now)           # written now, or at most `checklist write delay` on
    file.flush(checklist, now)             # the loop: write it if its time has come

The store is the truth and is committed before each reply; the file is its
human-readable copy. Rewriting all of it per message made each message cost in
proportion to the checklist, so changes are coalesced: the first change after a
quiet spell is written at once, later ones at most every ``checklist write
delay`` seconds, and a write dumps again only the keys (or the entries of a mapping
key) changed since the last.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from nowcastkit import checklist as checklist_io
from nowcastkit.config import Config

__all__ = ["DEFAULT_WRITE_DELAY", "ChecklistFile"]

log = logging.getLogger("manager")

#: Seconds between checklist file writes while messages keep changing it.
DEFAULT_WRITE_DELAY = 1.0


@attrs.define(eq=False)
class ChecklistFile:
    """When and what to write to the checklist file; nothing else writes it."""

    path: Path
    delay: float = DEFAULT_WRITE_DELAY
    #: Monotonic time the file is next written at, while a change awaits it.
    due: float | None = None
    last_write: float = -float("inf")
    #: Each key's YAML block since it last changed, or each entry's for a mapping key.
    #: Whoever changes a key forgets it, or the entries of it that changed (the ledger).
    blocks: checklist_io.DumpCache = attrs.field(factory=checklist_io.DumpCache)

    @classmethod
    def from_config(cls, config: Config) -> ChecklistFile:
        delay = config.get("checklist write delay")
        return cls(
            Path(config["checklist file"]), DEFAULT_WRITE_DELAY if delay is None else float(delay)
        )

    def forget(self, key: Any = None, entries: Iterable[str] | None = None) -> None:
        """Drop the block of *key*, or of only these *entries* of its mapping, changed or gone.

        Every block when *key* is None.
        """
        if key is None:
            self.blocks.forget_all()
        else:
            self.blocks.forget(key, entries)

    def text(self, checklist: dict) -> str:
        """The file's text for *checklist*, dumping only the keys forgotten since."""
        return checklist_io.dump_cached(checklist, self.blocks)

    def changed(self, checklist: dict, now: float) -> None:
        """A committed change: write now, or once ``delay`` has passed since the last write."""
        if self.due is not None:
            return
        due = self.last_write + self.delay
        if now >= due:
            self.write(checklist, now)
        else:
            self.due = due

    def flush(self, checklist: dict, now: float) -> None:
        """Write a pending change whose time has come."""
        if self.due is not None and now >= self.due:
            self.write(checklist, now)

    def write(self, checklist: dict, now: float, text: str | None = None) -> None:
        """Write *text*, or *checklist*, now; an unwritable file is logged, not raised."""
        self.due, self.last_write = None, now
        try:
            checklist_io.write_text(self.path, self.text(checklist) if text is None else text)
        except OSError as err:
            log.error("checklist file write failed (the store still has it): %s", err)

    def cleared(self, before: str, now: float) -> None:
        """The checklist was cleared: a write still pending shows *before*, what was cleared."""
        if self.due is not None:
            self.write({}, now, before)
        self.forget()
        self.write({}, now)

    def unpaced(self) -> None:
        """Let the next change be written at once (after the start-up write)."""
        self.last_write = -float("inf")
