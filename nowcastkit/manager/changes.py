"""A message's changes to the manager's memory, kept in step with its store transaction.

    with atomic(manager.store, manager.changes):
        manager.changes.undo(lambda: checklist.pop("sleepyhead", None))
        checklist["sleepyhead"] = payload
        st.put_checklist(manager.store, checklist, ["sleepyhead"])
        manager.changes.after_commit(lambda: log.info("checklist updated"))

Inside an open transaction (a batch of requests) ``atomic`` is a savepoint: an
error rolls back that message's rows and runs its undo steps, newest first, and
leaves the batch's other messages alone. Events and log lines that announce a
change wait until the outermost transaction commits; if that commit fails,
every message's undo steps run and nothing is announced.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable, Iterator

import attrs

from nowcastkit import store as st

__all__ = ["Changes", "atomic"]

log = logging.getLogger("manager")

Step = Callable[[], object]


@attrs.define(eq=False)
class Changes:
    """Undo steps and after-commit steps of the transaction now open."""

    undo_steps: list[Step] = attrs.field(factory=list)
    commit_steps: list[Step] = attrs.field(factory=list)

    def undo(self, step: Step) -> None:
        """Run *step* if the change it reverses is rolled back."""
        self.undo_steps.append(step)

    def after_commit(self, step: Step) -> None:
        """Run *step* once the change is committed."""
        self.commit_steps.append(step)


@contextlib.contextmanager
def atomic(store: st.Store, changes: Changes, *, join: bool = False) -> Iterator[None]:
    """A transaction (a savepoint when one is open) with memory undone alongside it.

    With *join*, an open transaction is simply joined, without a savepoint of its
    own, for a caller whose errors always undo the enclosing ``atomic`` too.
    """
    outermost = not store.conn.in_transaction
    if join and not outermost:
        yield
        return
    undo_mark, commit_mark = len(changes.undo_steps), len(changes.commit_steps)
    try:
        with st.transaction(store):
            yield
    except BaseException:
        for step in reversed(changes.undo_steps[undo_mark:]):
            step()
        del changes.undo_steps[undo_mark:]
        del changes.commit_steps[commit_mark:]
        raise
    if outermost:
        steps = changes.commit_steps[:]
        changes.undo_steps.clear()
        changes.commit_steps.clear()
        for step in steps:
            try:
                step()
            except Exception:  # an announcement must not cost the other replies
                log.error("manager error after commit:\n%s", traceback.format_exc().rstrip())
