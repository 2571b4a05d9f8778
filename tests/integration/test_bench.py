"""The benchmark runs and reports every figure (how fast is for bench/, not for tests)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, child_env, left_running

FIGURES = {
    "chain": {"hop_ms", "raw_hop_ms", "python_pass_ms"},
    "curve": {"hop_ms", "plain_hop_ms"},
    "imports": {"beyond_ms", "wall_ms", "base_wall_ms"},
    "startup": {"broker_ms", "manager_ms"},
    "scheduler": {"median_ms", "max_ms", "worker_start_median_ms"},
    "crash": {"median_ms", "max_ms"},
    "memory": {"before_mib", "after_mib"},
}
#: Measured where an sshd and a Slurm are installed (bin/system-packages); else skipped.
REMOTE = {
    "ssh": {"hop_ms", "raw_hop_ms"},
    "slurm": {"hop_ms", "raw_hop_ms", "sbatch_start_ms"},
    "poll": {"queries_per_interval"},
}


@pytest.fixture
def short_tmp():
    """A short temp folder for the bench's own folders (munged's socket path has a limit)."""
    folder = Path(tempfile.mkdtemp(prefix="nkb-"))
    folder.chmod(0o755)  # as /tmp is to others: munged refuses a socket under a private folder
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(180)
def test_quick_bench_emits_every_figure(tmp_path, short_tmp):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=REPO, env={**child_env(), "TMPDIR": str(short_tmp)},
        capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert left_running(short_tmp) == []
    figures = json.loads(out.read_text())
    throughput = figures["throughput"]
    keys = [f"manager/{k}/{n}" for k in (0, 1000, 5000) for n in (1, 8)]
    for key in ["echo/1", "echo/8", "durable-echo/1", "durable-echo/8", "manager-yaml/0/8", *keys]:
        assert set(throughput[key]) >= {"msgs_per_s", "p50_ms", "p99_ms"}, key
        assert throughput[key]["msgs_per_s"] > 0, key
    for section, names in FIGURES.items():
        for name in names:
            value = figures[section][name]
            assert isinstance(value, float) and not math.isnan(value), (section, name, value)
    for section, names in REMOTE.items():
        if "skipped" in figures[section]:  # only for want of sshd or Slurm, never a failure
            assert not figures[section]["skipped"].startswith("failed"), figures[section]
            assert "skipped: " in done.stdout
            continue
        for name in names:
            value = figures[section][name]
            assert isinstance(value, float) and not math.isnan(value), (section, name, value)
    assert "targets:" in done.stdout


def test_the_dashboard_bench_times_every_page_against_a_bare_query(tmp_path, short_tmp):
    out = tmp_path / "dashboard.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.dashboard", "--runs", "2000", "--repeat", "3",
         "--json", str(out)],
        cwd=REPO, env={**child_env(), "TMPDIR": str(short_tmp)},
        capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert left_running(short_tmp) == []  # the dashboard it started once outlived it
    figures = json.loads(out.read_text())
    assert figures["runs"] == 2000
    assert {"today", "runs, page 1", "one run", "timeline of one day", "checklist"} <= set(
        figures["pages"]
    )
    for name, page in figures["pages"].items():
        assert page["p95_ms"] > 0 and page["query_p95_ms"] > 0, name
    assert "dashboard pages with 2,000 runs in the store" in done.stdout
