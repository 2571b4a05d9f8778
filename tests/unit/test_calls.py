"""When a launcher looks at its host: every poll interval, and soon after runs report."""

from __future__ import annotations

import pytest

from nowcastkit.manager.calls import Pace

pytestmark = pytest.mark.timeout(10)


def test_runs_reporting_close_together_share_one_set_of_looks():
    pace = Pace(next_look=60.0)
    pace.look_soon(0.0, (2.0, 8.0), shared=True)
    for at in (0.3, 0.6, 1.5):  # a chain of quick runs on one host, each reporting
        pace.look_soon(at, (2.0, 8.0), shared=True)
    assert pace.soon == [2.0, 8.0]
    assert pace.tick(2.0)
    pace.looked(2.0, 60.0)
    # A report after that look gets one of its own; the look at 8 still serves its second.
    pace.look_soon(2.1, (2.0, 8.0), shared=True)
    assert pace.soon == [8.0, pytest.approx(4.1)]


def test_looks_not_shared_are_all_kept():
    """After a signal, each look is wanted: the first may come before the run has died."""
    pace = Pace(next_look=60.0)
    pace.look_soon(0.0, (2.0, 8.0), shared=True)
    pace.look_soon(0.5, (1.0, 3.0))
    assert sorted(pace.soon) == [1.5, 2.0, 3.5, 8.0]


def test_the_next_poll_serves_for_a_first_look_but_not_for_the_one_after():
    pace = Pace(next_look=1.0)
    pace.look_soon(0.0, (2.0, 8.0), shared=True)
    assert pace.soon == [8.0]
    assert not pace.tick(0.5) and pace.tick(1.0)
