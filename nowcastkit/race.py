"""Race-condition groups: workers held until every worker of a group has reported.

    groups, now = settle((), "download", [NextWorker("a"), NextWorker("b")], {"a", "b"})
    groups, now = settle(groups, "a", [NextWorker("plot")], set())     # held: b still runs
    groups, now = settle(groups, "b", [], set())                        # now == (plot,)

``after_<worker>`` may return ``(workers, {names})``: the workers launch at once,
and what the named workers' own ``after_`` functions return is held until every
one of them has reported, then launched together. Groups are values: *settle*
returns new ones and changes nothing, so a message that is rolled back leaves
no trace in them.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from nowcastkit.next_worker import NextWorker

__all__ = ["RaceGroup", "Settled", "from_record", "record", "settle"]


@attrs.frozen
class RaceGroup:
    """Workers held until every worker named in ``waiting`` has reported."""

    waiting: frozenset[str]
    held: tuple[NextWorker, ...] = ()


@attrs.frozen
class Settled:
    """What one report does to the groups: the groups after it and the workers to launch."""

    groups: tuple[RaceGroup, ...]
    launch: tuple[NextWorker, ...]
    opened: tuple[RaceGroup, ...] = ()
    released: tuple[RaceGroup, ...] = ()
    #: Whether the groups differ from before, so that they must be stored again.
    changed: bool = False


def settle(
    groups: tuple[RaceGroup, ...],
    source: str,
    workers: Iterable[NextWorker],
    must_finish: Iterable[str],
) -> Settled:
    """*source* reported and its ``after_`` returned *workers* and *must_finish*.

    The first group waiting for *source* holds *workers* (unless *must_finish* opens a
    group of its own, whose workers launch at once); every group stops waiting for it,
    and the groups left waiting for no one release what they hold.
    """
    workers, must_finish = tuple(workers), frozenset(must_finish)
    if not groups and not must_finish:  # most reports: no group is open
        return Settled((), workers)
    launch: list[NextWorker] = []
    joined = next((i for i, group in enumerate(groups) if source in group.waiting), None)
    touched = joined is not None
    after = []
    for i, group in enumerate(groups):
        held = group.held + workers if i == joined and not must_finish else group.held
        after.append(RaceGroup(group.waiting - {source}, held) if touched else group)
    opened: tuple[RaceGroup, ...] = ()
    if must_finish:
        opened = (RaceGroup(must_finish),)
        after.extend(opened)
    if must_finish or joined is None:
        launch.extend(workers)
    released = tuple(group for group in after if not group.waiting)
    for group in released:
        launch.extend(group.held)
    kept = tuple(group for group in after if group.waiting)
    return Settled(kept, tuple(launch), opened, released, touched or bool(opened))


def record(group: RaceGroup) -> tuple[set[str], list[dict]]:
    """The group as the store keeps it: names still waiting, held workers as mappings."""
    held = [{"module": w.module, "args": list(w.args), "host": w.host} for w in group.held]
    return set(group.waiting), held


def from_record(waiting: Iterable[str], held: Iterable[dict]) -> RaceGroup:
    return RaceGroup(frozenset(waiting), tuple(NextWorker(**worker) for worker in held))
