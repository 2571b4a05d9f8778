"""The ledger: owns the manager's committed state, in the store and in memory.

    ledger = Ledger.open(config)                  # the store, the checklist, the race groups
    outcomes = ledger.commit(requests, decide_one)  # one transaction for the whole batch
    ledger.announce(time.monotonic())               # the checklist file follows

It holds the checklist, the race groups, the runs not yet reported and the
retries waiting out their back-off (:meth:`Ledger.due_retries`), and is
the only writer of the store. ``commit`` decides each request against the
state the ones before it left, writes the outcome in a savepoint of the
batch's one transaction, and applies it to memory only once that savepoint is
released: a request whose writes fail changes nothing, in the store or in
memory, and gets ``manager error``. If the commit itself fails, memory is
reloaded from the store, which holds what was last committed. Nothing is
announced (the checklist file, its log line) before the commit.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from nowcastkit import checklist as checklist_io
from nowcastkit import store as st
from nowcastkit.config import Config
from nowcastkit.manager.checklist_file import ChecklistFile
from nowcastkit.manager.decide import CLEARED, Launch, Outcome, View
from nowcastkit.message import Message
from nowcastkit.race import RaceGroup, from_record, record

__all__ = ["DEFAULT_KEEP_DAYS", "Ledger", "failed"]

log = logging.getLogger("manager")

DEFAULT_KEEP_DAYS = 60
_CHANGED = object()
_ERROR = "source: manager\ntype: manager error\npayload: null\n"


def failed() -> Outcome:
    """The outcome of a request the manager failed to handle: ``manager error``, no change."""
    return Outcome(Message("manager", "manager error"), _ERROR)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


@attrs.define(eq=False)
class Ledger:
    """The committed state; nothing else writes the store or changes the checklist."""

    store: st.Store
    file: ChecklistFile
    checklist: dict = attrs.field(factory=dict)
    groups: tuple[RaceGroup, ...] = ()
    #: Runs launched that have not reported, oldest first: run id -> worker name.
    waiting: dict[str, str] = attrs.field(factory=dict)
    #: The keys the store holds one row per entry (see ``store.stored_by_entry``).
    _by_entry: set[str] = attrs.field(factory=set)
    #: What the batch now committing does to the checklist file: ``_CHANGED``, or the text
    #: of a checklist cleared.
    _pending: list[str | object] = attrs.field(factory=list)
    #: Retries waiting for their time, by the run they follow; stored, so a restart keeps them.
    retries: dict[str, st.PendingRetry] = attrs.field(factory=dict)
    #: The back-offs' jitter: the one source of randomness a decision reads.
    _random: random.Random = attrs.field(factory=random.Random)

    @classmethod
    def open(cls, config: Config, ignore_checklist: bool = False) -> Ledger:
        """The state the last manager left: the checklist from the store (or the file, once)."""
        path, _logs = st.state_paths(config)
        ledger = cls(st.open_store(path), ChecklistFile.from_config(config))
        ledger._recover_checklist(ignore_checklist)
        ledger._load_rest()
        for group in ledger.groups:
            log.info("race condition group still waiting for %s", sorted(group.waiting))
        for retry in ledger.retries.values():
            log.info("%s worker: attempt %d/%d, after run %s, still pending (due %s)",
                     retry.worker, retry.attempt, retry.attempts, retry.parent,
                     time.strftime("%H:%M:%S", time.localtime(retry.due)))  # fmt: skip
        return ledger

    def view(self, config: Config, flow: Any, host: str) -> View:
        """The committed state as :func:`~.decide.decide` reads it."""
        return View(config, flow, self.checklist, self.groups, self.waiting, self.replied,
                    self.ended_as, new_run_id, host, self.run, time.time(),
                    self._random.random)  # fmt: skip

    def run(self, run_id: str) -> st.Run | None:
        found = st.runs_named(self.store, run_id, 1)
        return found[0] if found and found[0].run_id == run_id else None

    def due_retries(self, now: float) -> list[st.PendingRetry]:
        """The retries due by *now* (epoch seconds), soonest first."""
        return sorted((r for r in self.retries.values() if r.due <= now), key=lambda r: r.due)

    def replied(self, key: str) -> str | None:
        return st.handled_reply(self.store, key)

    def ended_as(self, run_id: str) -> str | None:
        return None if run_id in self.waiting else st.ended_as(self.store, run_id)

    def commit(
        self, items: Iterable[Any], decide_one: Callable[[Any], Outcome]
    ) -> list[Outcome] | None:
        """Decide and write each item in one transaction; None if the commit failed.

        *decide_one* sees the state left by the items before it. An item whose decision or
        writes raise is logged, answered with ``manager error`` and changes nothing.
        """
        outcomes = []
        conn = self.store.conn
        try:
            with st.transaction(self.store):
                for item in items:
                    try:
                        outcome = decide_one(item)
                        conn.execute("SAVEPOINT outcome")
                        try:
                            self._write(outcome)
                        except BaseException:
                            if conn.in_transaction:  # SQLite may have rolled it all back
                                conn.execute("ROLLBACK TO outcome")
                                conn.execute("RELEASE outcome")
                            raise
                        conn.execute("RELEASE outcome")
                    except Exception:  # the loop's edge: this item's savepoint is rolled back
                        log.error("manager error:\n%s", traceback.format_exc().rstrip())
                        outcome = failed()
                    else:
                        self._apply(outcome)
                    if not self.store.conn.in_transaction:
                        # SQLite gave up the whole transaction (disk full, I/O error): none of
                        # the batch is stored, so none of it may be acknowledged.
                        raise RuntimeError("the store rolled back the batch's transaction")
                    outcomes.append(outcome)
        except Exception:
            log.error("manager error: batch not committed:\n%s", traceback.format_exc().rstrip())
            self.reload()
            return None
        return outcomes

    def _write(self, outcome: Outcome) -> None:
        store = self.store
        if outcome.repeat:
            return
        if outcome.by_hand is not None:
            st.add_run(store, outcome.by_hand)
        change = outcome.change
        if change is CLEARED:
            st.put_checklist(store, {})
        elif change is not None:
            key = change.key
            if change.merge and key in self._by_entry and st.stored_by_entry(change.value):
                st.merge_checklist_entries(store, key, change.value)
            else:
                value = {**self.checklist[key], **change.value} if change.merge else change.value
                st.put_checklist(store, {key: value}, [key])
        for launch in outcome.launches:
            st.add_run(store, _run_record(launch))
        exited = outcome.exited
        status = exited.status if exited is not None else None
        if outcome.finished:
            st.finish_run(store, outcome.finished, outcome.received, status, outcome.client)
        if exited is not None and exited.run_id != outcome.finished:
            st.finish_run(store, exited.run_id, None, exit_status=status)
        if outcome.groups is not None:
            st.save_groups(store, [record(group) for group in outcome.groups])
        if outcome.retry is not None:
            st.add_pending_retry(store, outcome.retry)
        if outcome.retried is not None:
            st.take_pending_retry(store, outcome.retried)
        if outcome.key:
            st.record_message(
                store, outcome.key, outcome.source, outcome.received, outcome.text, outcome.client
            )

    def _apply(self, outcome: Outcome) -> None:
        """Memory follows a released savepoint."""
        if outcome.repeat:
            return
        change = outcome.change
        if change is CLEARED:
            self._pending.append(self.file.text(self.checklist))
            self.checklist.clear()
            self._by_entry.clear()
            self.file.forget()
        elif change is not None:
            key = change.key
            if change.merge:
                if not st.stored_by_entry(change.value):
                    self._by_entry.discard(key)
                self.checklist[key].update(change.value)
                self.file.forget(key, list(change.value))
            else:
                self._by_entry.discard(key)
                if st.stored_by_entry(change.value):
                    self._by_entry.add(key)
                self.checklist[key] = change.value
                self.file.forget(key)
            if not self._pending or self._pending[-1] is not _CHANGED:
                self._pending.append(_CHANGED)
        if outcome.finished:
            self.waiting.pop(outcome.finished, None)
        if outcome.exited is not None:
            self.waiting.pop(outcome.exited.run_id, None)
        if outcome.by_hand is not None:
            self.waiting[outcome.by_hand.run_id] = outcome.by_hand.worker
        for launch in outcome.launches:
            self.waiting[launch.run_id] = launch.worker.name
        if outcome.groups is not None:
            self.groups = outcome.groups
        if outcome.retry is not None:
            self.retries[outcome.retry.parent] = outcome.retry
        if outcome.retried is not None:
            self.retries.pop(outcome.retried, None)

    def announce(self, now: float) -> None:
        """After a commit: the checklist file shows what it changed; a clear logs what went."""
        pending, self._pending = self._pending, []
        for step in pending:
            if step is _CHANGED:
                self.file.changed(self.checklist, now)
            else:
                logging.getLogger("checklist").info("checklist:\n%s", step)
                self.file.cleared(step, now)

    def flush(self, now: float) -> None:
        """Write the checklist file if a change awaits it and its time has come."""
        self.file.flush(self.checklist, now)

    def wake_at(self) -> float | None:
        """The monotonic time the checklist file is next due to be written, or a retry to
        be launched, whichever comes first; None when neither is."""
        times = [self.file.due] if self.file.due is not None else []
        if self.retries:
            soonest = min(retry.due for retry in self.retries.values())
            times.append(time.monotonic() + max(0.0, soonest - time.time()))
        return min(times, default=None)

    def reload(self) -> None:
        """Memory as the store holds it, after a commit that failed."""
        self._pending.clear()
        self.checklist = st.load_checklist(self.store)
        self.file.forget()
        self._load_rest()

    def _load_rest(self) -> None:
        self._by_entry = {key for key, value in self.checklist.items() if st.stored_by_entry(value)}
        self.groups = tuple(from_record(*group) for group in st.load_groups(self.store))
        self.waiting = {run.run_id: run.worker for run in st.unfinished_runs(self.store)}
        self.retries = {retry.parent: retry for retry in st.pending_retries(self.store)}

    def record_started(
        self, started: dict[str, int | None], failed_ids: Iterable[str],
        handles: dict[str, dict] | None = None,
    ) -> None:  # fmt: skip
        """Runs now started (their pids, their launchers' handles) and runs that could not be."""
        failed_ids, handles = list(failed_ids), handles or {}
        if not started and not failed_ids and not handles:
            return
        with st.transaction(self.store):
            for run_id in {**started, **handles}:
                st.set_run_pid(self.store, run_id, started.get(run_id), handles.get(run_id))
            for run_id in failed_ids:
                st.finish_run(self.store, run_id, "launch failed")
        for run_id in failed_ids:
            self.waiting.pop(run_id, None)

    def first_message(self, source: str, msg_type: str, since: float, until: float):
        """When *source* first sent a *msg_type* message handled in [*since*, *until*)."""
        return st.first_message(self.store, source, msg_type, since, until)

    def deadline_states(self, since_day: str) -> dict[tuple[str, str], str]:
        return st.deadline_states(self.store, since_day)

    def record_deadlines(self, rows: Iterable[tuple[str, str, str, float]]) -> None:
        """Deadlines' new states, ``(name, day, state, at)``, in one transaction."""
        with st.transaction(self.store):
            for row in rows:
                st.record_deadline(self.store, *row)

    def unfinished(self) -> list[st.Run]:
        return st.unfinished_runs(self.store)

    def prune(self, config: Config) -> None:
        """Forget handled message ids and finished runs older than ``keep history days``."""
        days = config.get("keep history days") or DEFAULT_KEEP_DAYS
        with st.transaction(self.store):
            messages, runs = st.prune(self.store, time.time() - days * 86400)
        if messages or runs:
            log.info("pruned %d message ids and %d runs older than %d days", messages, runs, days)

    def close(self) -> None:
        """Write the checklist file as it stands, and close the store."""
        self.file.write(self.checklist, time.monotonic())
        self.store.conn.close()

    def _recover_checklist(self, ignore_checklist: bool) -> None:
        store, path = self.store, self.file.path
        if ignore_checklist:
            log.info("ignoring the saved checklist; starting with an empty one")
            self.checklist = {}
        elif st.get_meta(store, "checklist") is None:
            self.checklist = checklist_io.load(path)
        else:
            on_file = checklist_io.load(path, quiet=True)
            self.checklist = st.load_checklist(store)
            if path.exists() and on_file != self.checklist:
                aside = checklist_io.set_aside(path, "differs")
                log.warning(
                    "checklist file %s differs from the manager's store; kept it as %s "
                    "and rewrote it from the store", path, aside,
                )  # fmt: skip
            log.info("checklist loaded from %s (%d keys)", store.path, len(self.checklist))
        with st.transaction(store):
            st.put_checklist(store, self.checklist)
            st.set_meta(store, "checklist", "in store")
        self.file.forget()
        self.file.write(self.checklist, time.monotonic())
        # The start-up write must not hold back the first message's: that one is written at once.
        self.file.unpaced()


def _run_record(item: Launch) -> st.Run:
    worker = item.worker
    return st.Run(
        item.run_id,
        worker.name,
        worker.module,
        worker.args,
        worker.host,
        parent=item.parent,
        attempt=item.attempt,
    )
