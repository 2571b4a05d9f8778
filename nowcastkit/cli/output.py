"""How the subcommands print: plain aligned tables, local times, durations, JSON.

print(table(["WORKER", "OUTCOME"], [["sleep", "success"]]))
WORKER  OUTCOME
sleep   success
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["dump_json", "duration", "iso", "local_time", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append((indent + "  ".join([*padded, row[-1]])).rstrip())
    return "\n".join(lines)


def local_time(epoch: float | None, with_date: bool = True) -> str:
    """An epoch time as the operator's local wall-clock time; "-" for None."""
    if epoch is None:
        return "-"
    when = dt.datetime.fromtimestamp(epoch)
    return when.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 with the local offset, for JSON."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    """1.2s, 3m05s, 2h01m: short and exact enough for a glance."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def dump_json(data: Any) -> str:
    return json.dumps(data, default=str)
