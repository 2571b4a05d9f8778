"""A read-only web dashboard: the day's system at a glance, live, from the durable store.

    python -m nowcastkit.dashboard nowcast.yaml      # or: nowcastkit dashboard
    # then open http://127.0.0.1:4347/

    dashboard:
      host: 127.0.0.1      # loopback by default; another address needs insecure: true
      port: 4347

Pages: Today (processes, workers running now, last outcomes, next fires; live through
one EventSource stream fed by the manager's event feed), Runs (history, filtered and
paged, each run with its log), Timeline (the day's runs as the timeline SVG) and
Checklist. Each page's data is JSON too, with ``?format=json``. Answers GET and HEAD
only. See docs/dashboard.md.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the dashboard process; returns its exit status."""
    from nowcastkit.dashboard.server import serve
    from nowcastkit.dashboard.settings import settings
    from nowcastkit.lifecycle import run_process

    description = "Serve the read-only web dashboard of one nowcast system."
    needs = ("checklist file", "zmq")  # the store beside the checklist, the manager's sockets
    return run_process("dashboard", description, serve, argv, check=settings, needs=needs)
