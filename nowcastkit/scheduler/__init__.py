"""The scheduler: has the manager launch workers at set times, for one nowcast system.

    python -m nowcastkit.scheduler nowcast.yaml

    scheduler:
      timezone: UTC              # optional; default the host's zone
      manager timeout: 15        # optional; seconds to keep asking a manager that is down
    scheduled workers:
      - workers.sleep: {every: day, at: "05:15", cmd line opts: "--sleep-time 3"}
      - workers.awaken: {every: 10 minutes, timezone: UTC, catch up: once}

In code, with an in-memory launcher (any callable returning a run id)::

    from nowcastkit.config import load_config
    from nowcastkit.scheduler import start, step

    timer = start(load_config("nowcast.yaml"), now, lambda config, worker: "run-1")
    step(timer, later)                    # fires whatever is due at ``later``

The schedule library supplies the vocabulary and the job list: its builder
parses and checks each ``at`` for its unit (as NEMO_Nowcast relied on), and an
owned ``schedule.Scheduler`` holds the jobs, tagged by entry, ordered by next
run. nowcastkit adds the clock: fire times are aware UTC instants from pure
functions of an injected ``now`` using stdlib zoneinfo (no pytz), anchored to
the calendar so a restart computes the same times (catch-up needs that), right
on DST days, and the loop sleeps until the next one. schedule's run_pending and
idle_seconds are not used: they compare naive local times, which fire early or
repeatedly in the hour the clocks go back. Each launch is a request to the
manager's control socket, so the manager records, reaps and watches every
worker. Last fires persist beside the checklist in ``scheduler_state.yaml``.

Modules: :mod:`~nowcastkit.scheduler.entries` (the config section),
:mod:`~nowcastkit.scheduler.fires` (fire-time maths), :mod:`~nowcastkit.scheduler.request`
(launch requests), :mod:`~nowcastkit.scheduler.timer` (jobs, state file, the loop).
"""

from nowcastkit.scheduler.entries import Entry, entry_problems, load_entries, manager_timeout
from nowcastkit.scheduler.fires import missed_run, next_fire, previous_fire
from nowcastkit.scheduler.request import ManagerLauncher
from nowcastkit.scheduler.timer import Launcher, Timer, build_jobs, fire, main, reload, start, step

__all__ = [
    "Entry",
    "Launcher",
    "ManagerLauncher",
    "Timer",
    "build_jobs",
    "entry_problems",
    "fire",
    "load_entries",
    "main",
    "manager_timeout",
    "missed_run",
    "next_fire",
    "previous_fire",
    "reload",
    "start",
    "step",
]
