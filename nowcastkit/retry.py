"""A worker's retry policy, from its registry entry, and the wait before each retry.

    message registry:
      workers:
        download_forcing:
          retry: {attempts: 3, backoff: 60, max: 900, on: [crash, failure]}

    policy = Retry(attempts=3, backoff=60, max=900)
    policy.retries("failure", attempt=1)     # True: attempt 2 of 3 comes
    wait(policy, attempt=1, jitter=0.3)      # seconds before it: 51.0
    pending_after(policy, run, "failure", time.time(), 0.3)   # the retry to store, or None
    worker_retry(config, "download_forcing")                  # the policy, or None

``attempts`` counts every run, the first included; ``backoff`` and ``max`` are
seconds. The retry after attempt n waits ``backoff * 2**(n-1)``, capped at
``max``, less a random part of up to half of it (*jitter*, from 0 to 1), so that
workers that failed together do not all come back at once.
"""

from __future__ import annotations

from typing import Any

import attrs

from nowcastkit import store as st

__all__ = [
    "KINDS", "Retry", "from_value", "kind_of", "pending_after", "problems", "wait", "worker_retry",
]  # fmt: skip

#: The outcomes a retry can follow.
KINDS = ("crash", "failure")
_KEYS = ("attempts", "backoff", "max", "on")
_DEFAULTS = {"backoff": 60.0, "max": 900.0}


def _positive_int(instance: Any, attribute: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name}: got {value!r}, expected a whole number >= 1")


@attrs.frozen
class Retry:
    """How often a worker is run before its failure or crash is final, and how far apart."""

    attempts: int = attrs.field(validator=_positive_int)
    backoff: float = _DEFAULTS["backoff"]
    max: float = _DEFAULTS["max"]
    on: frozenset[str] = attrs.field(default=frozenset(KINDS), converter=frozenset)

    def retries(self, kind: str, attempt: int) -> bool:
        """Whether a *kind* outcome of attempt number *attempt* is followed by another."""
        return kind in self.on and attempt < self.attempts


def wait(policy: Retry, attempt: int, jitter: float) -> float:
    """Seconds between attempt *attempt*'s end and the next attempt; *jitter* in [0, 1]."""
    doubled = policy.backoff * 2.0 ** min(attempt - 1, 64)
    return min(policy.max, doubled) * (1.0 - 0.5 * jitter)


def kind_of(msg_type: str) -> str | None:
    """The retry kind of an outcome: ``crash``; ``failure`` for ``failure`` and
    ``failure <anything>`` (NEMO-style systems register ``failure nowcast``...); else None."""
    if msg_type == "crash":
        return "crash"
    return "failure" if msg_type.split(" ", 1)[0] == "failure" else None


def pending_after(
    policy: Retry, run: st.Run, msg_type: str, now: float, jitter: float
) -> st.PendingRetry | None:
    """The retry that follows *run* ending as *msg_type* at *now* (epoch), or None if final."""
    kind = kind_of(msg_type)
    if kind is None or run.module == st.BY_HAND or not policy.retries(kind, run.attempt):
        return None
    due = now + wait(policy, run.attempt, jitter)
    return st.PendingRetry(run.run_id, run.worker, run.module, run.args, run.host,
                           run.attempt + 1, policy.attempts, due, msg_type)  # fmt: skip


def from_value(value: dict) -> Retry:
    """The policy a ``retry:`` mapping that :func:`problems` passed describes."""
    return Retry(
        value["attempts"],
        float(value.get("backoff", _DEFAULTS["backoff"])),
        float(value.get("max", _DEFAULTS["max"])),
        value.get("on", KINDS),
    )


def problems(value: Any) -> list[tuple[str, str]]:
    """What is wrong with a ``retry:`` value: (key under ``retry``, problem), in key order."""
    if not isinstance(value, dict):
        return [("retry", f"got {value!r}, expected a mapping of {', '.join(_KEYS)}")]
    found = [
        (f"retry.{key}", f"unknown key; expected {', '.join(_KEYS)}")
        for key in value
        if key not in _KEYS
    ]
    attempts = value.get("attempts")
    if "attempts" not in value:
        found.append(("retry.attempts", "missing required key"))
    elif isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        found.append(("retry.attempts", f"got {attempts!r}, expected a whole number >= 1 "
                      "(every run counts, the first included)"))  # fmt: skip
    seconds = {}
    for key in ("backoff", "max"):
        number = value.get(key, _DEFAULTS[key])
        if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
            found.append((f"retry.{key}", f"got {number!r}, expected seconds >= 0"))
        else:
            seconds[key] = number
    if len(seconds) == 2 and seconds["max"] < seconds["backoff"]:
        found.append(("retry.max", f"got {seconds['max']!r}, expected seconds >= backoff "
                      f"({seconds['backoff']!r})"))  # fmt: skip
    found += _kind_problems(value.get("on", list(KINDS)))
    return found


def _kind_problems(kinds: Any) -> list[tuple[str, str]]:
    expected = f"expected a list of {', '.join(KINDS)}"
    if not isinstance(kinds, list) or not kinds:
        return [("retry.on", f"got {kinds!r}, {expected}")]
    return [
        ("retry.on", f"unknown kind {kind!r}; {expected}") for kind in kinds if kind not in KINDS
    ]


def worker_retry(config: Any, name: str) -> Retry | None:
    """Worker *name*'s registry ``retry`` policy, or None when it has none (one attempt)."""
    entry = config["message registry"]["workers"].get(name)
    value = entry.get("retry") if isinstance(entry, dict) else None
    return from_value(value) if value is not None else None
