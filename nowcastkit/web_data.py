"""Download a URL to a file or to memory, waiting out a server that is down or not ready yet.

    import requests
    from nowcastkit.worker import get_web_data

    with requests.Session() as session:
        get_web_data(url, NAME, filepath=Path("forcing.grib2"), session=session)
        text = get_web_data(index_url, NAME, session=session).decode()

The reference design's ``worker.get_web_data``, with its arguments: the first retry comes
``wait_exponential_multiplier`` seconds after a failure, each next one that many times
later (at most ``wait_retry_max``), until the waits would pass ``wait_exponential_max``
seconds in all; then :class:`~nowcastkit.errors.WorkerError`, one line naming the URL.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from nowcastkit import atomic_file
from nowcastkit.errors import WorkerError

__all__ = ["get_web_data", "retry_waits"]

#: Worth waiting for: a server error, a file not published yet, a timeout, a rate limit.
_AGAIN = frozenset((404, 408, 429))
_FAILURES = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class _Again(Exception):
    """One failed attempt that a later one may get past."""


def retry_waits(first: float, multiplier: float, cap: float, limit: float) -> Iterator[float]:
    """The seconds before each retry: first, first*multiplier, ..., each at most *cap*,
    while their sum stays within *limit*."""
    wait, total = first, 0.0
    while total + min(wait, cap) <= limit:
        total += min(wait, cap)
        yield min(wait, cap)
        wait *= multiplier


def get_web_data(
    file_url: str,
    logger_name: str,
    filepath: str | os.PathLike[str] | None = None,
    session: requests.Session | None = None,
    chunk_size: int = 100 * 1024,
    wait_exponential_multiplier: float = 2,
    wait_retry_max: float = 256,
    wait_exponential_max: float = 60 * 60,
    *,
    first_wait: float | None = None,
    timeout: float | tuple[float, float] = (10, 120),
) -> bytes | None:
    """The body of *file_url*, or None once it is in *filepath* (streamed to a temporary
    file beside it, then renamed, so a reader never sees half of it).

    ``first_wait`` (default ``wait_exponential_multiplier``) sets the first retry's wait
    apart from the growth; ``timeout`` is requests' (connect, read) seconds per attempt.
    """
    _check_waits(wait_exponential_multiplier, wait_retry_max, first_wait)
    log = logging.getLogger(logger_name)
    first = wait_exponential_multiplier if first_wait is None else first_wait
    waits = retry_waits(first, wait_exponential_multiplier, wait_retry_max, wait_exponential_max)
    own_session = session is None
    session = requests.Session() if session is None else session
    started, attempts = time.monotonic(), 0
    try:
        while True:
            attempts += 1
            try:
                return _attempt(session, file_url, filepath, chunk_size, timeout)
            except _Again as again:
                wait = next(waits, None)
                if wait is None:
                    raise WorkerError(
                        f"download from {file_url} failed {attempts} times over "
                        f"{time.monotonic() - started:.1f}s; last: {again}"
                    ) from None
                log.debug("%s: %s; retry %d in %gs", file_url, again, attempts, wait)
                time.sleep(wait)
    finally:
        if own_session:
            session.close()


def _check_waits(multiplier: float, cap: float, first: float | None) -> None:
    # A multiplier below 1 shrinks the waits towards 0, so their sum never reaches the limit.
    if multiplier < 1:
        raise WorkerError(
            f"get_web_data: wait_exponential_multiplier: got {multiplier!r}, expected >= 1"
        )
    for name, value in (("wait_retry_max", cap), ("first_wait", first)):
        if value is not None and value <= 0:
            raise WorkerError(f"get_web_data: {name}: got {value!r}, expected seconds > 0")


def _attempt(
    session: requests.Session,
    url: str,
    filepath: str | os.PathLike[str] | None,
    chunk_size: int,
    timeout: float | tuple[float, float],
) -> bytes | None:
    try:
        with session.get(url, stream=True, timeout=timeout) as response:
            _check_status(url, response)
            if filepath is None:
                return response.content
            # a reader of filepath never sees half of it; a failure leaves it as it was
            atomic_file.replace(Path(filepath), response.iter_content(chunk_size=chunk_size))
            return None
    except _FAILURES as err:
        raise _Again(f"{type(err).__name__}: {err}") from err


def _check_status(url: str, response: requests.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    said = f"HTTP {status} {response.reason}"
    if status >= 500 or status in _AGAIN:
        raise _Again(said)
    # 401, 403, 410...: no wait makes the server say yes
    raise WorkerError(f"download from {url} refused: {said}")
