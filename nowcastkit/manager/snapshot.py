"""The checklist file: the human-readable copy of the checklist that the store holds.

Rewriting all of it per message made each message cost in proportion to the
checklist, so changes are coalesced: the first change after a quiet spell is
written at once, later ones at most every ``checklist write delay`` seconds. A
write dumps again only the keys changed since the last (``Manager.dump_cache``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from nowcastkit import checklist as checklist_file

if TYPE_CHECKING:
    from nowcastkit.manager.dispatch import Manager

__all__ = ["checklist_changed", "flush_snapshot", "save_snapshot"]

log = logging.getLogger("manager")


def checklist_changed(manager: Manager) -> None:
    """Write the checklist file now, or at most ``checklist write delay`` after the last write.

    The store is the truth and is committed before each reply; the file is the
    human-readable copy. Rewriting all of it per message made each message cost
    in proportion to the checklist, so a burst of messages is coalesced into
    one write, which the loop makes when ``snapshot_due`` comes.
    """
    if manager.snapshot_due is not None:
        return
    due = manager.last_snapshot + manager.checklist_write_delay
    if time.monotonic() >= due:
        save_snapshot(manager)
    else:
        manager.snapshot_due = due


def flush_snapshot(manager: Manager, now: float) -> None:
    """Write a pending checklist file whose time has come."""
    if manager.snapshot_due is not None and now >= manager.snapshot_due:
        save_snapshot(manager)


def save_snapshot(manager: Manager, text: str | None = None) -> None:
    """Write *text*, or the checklist the manager holds, to the checklist file.

    The store already holds the truth; an unwritable file is logged, not raised.
    """
    manager.snapshot_due, manager.last_snapshot = None, time.monotonic()
    try:
        if text is None:
            text = checklist_file.dump_cached(manager.checklist, manager.dump_cache)
        checklist_file.write_text(manager.checklist_path, text)
    except OSError as err:
        log.error("checklist file write failed (the store still has it): %s", err)
