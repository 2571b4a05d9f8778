"""Retries (issue 14) against a real broker and manager: runs, after_<worker>, alerts, restarts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import child_env, start_refused, wait_for

from nowcastkit import store as st
from tests.integration import alert_servers

pytestmark = pytest.mark.timeout(60)

webhook = alert_servers.webhook
SVG = "{http://www.w3.org/2000/svg}"

# Fails (a WorkerError, so a `failure` message) its first N runs, N its argument; a count
# of its runs is kept beside the config file.
FLAKY_WORKER = """\
from pathlib import Path

from nowcastkit import NowcastWorker, WorkerError


def work(parsed_args, config, tell_manager):
    count = Path(config.file).with_name("flaky.count")
    runs = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(runs))
    if runs <= parsed_args.fails:
        raise WorkerError(f"run {runs} fails on purpose")
    return {"runs": runs}


worker = NowcastWorker("flaky", description="fails its first runs")
worker.init_cli()
worker.cli.add_argument("fails", type=int)
worker.run(work, lambda args: "success", lambda args: "failure")
"""

# Exits 3 without reporting: a crash each time, its last line of output in its log.
CRASHY_WORKER = """\
import sys

print("crashy: giving up", flush=True)
sys.exit(3)
"""

NEXT_WORKERS = """\
from pathlib import Path


def after_flaky(msg, config, checklist):
    with Path(config.file).with_name("after_flaky.calls").open("a") as f:
        f.write(f"{msg.type}\\n")
    return []


def after_crashy(msg, config, checklist):
    with Path(config.file).with_name("after_crashy.calls").open("a") as f:
        f.write(f"{msg.type}\\n")
    return []


def after_sleep(msg, config, checklist):
    return []


def after_awaken(msg, config, checklist):
    return []
"""


def with_retrying_workers(system, backoff: float = 0.2) -> None:
    retry = {"attempts": 3, "backoff": backoff, "max": backoff * 2, "on": ["crash", "failure"]}
    workers = system.config["message registry"]["workers"]
    for name in ("flaky", "crashy"):
        workers[name] = {"checklist key": name, "success": "worked", "failure": "failed",
                         "crash": "crashed", "retry": retry}  # fmt: skip
    system.write_config()
    system.write_next_workers(NEXT_WORKERS)
    (system.folder / "flaky.py").write_text(FLAKY_WORKER)
    (system.folder / "crashy.py").write_text(CRASHY_WORKER)


def runs_of(system, worker: str) -> list[st.Run]:
    """The worker's runs as the store has them, oldest first."""
    store = st.open_read_only(st.state_paths(system.config)[0])
    try:
        return sorted(st.history(store, worker=worker), key=lambda run: run.launched)
    finally:
        store.conn.close()


def finished_runs(system, worker: str, count: int) -> list[st.Run]:
    def done():
        runs = runs_of(system, worker)
        return runs if len(runs) >= count and all(r.finished for r in runs) else None

    return wait_for(done, f"{count} finished {worker} runs", timeout=20)


def pending(system) -> list[st.PendingRetry]:
    store = st.open_read_only(st.state_paths(system.config)[0])
    try:
        return st.pending_retries(store)
    finally:
        store.conn.close()


def launch(system, worker: str, *args: str) -> str:
    return system.control({"command": "launch", "worker": worker, "args": list(args)})["run"]


def calls(system, worker: str) -> str:
    path = system.folder / f"after_{worker}.calls"
    return path.read_text() if path.exists() else ""


def test_a_worker_that_fails_twice_then_succeeds_runs_3_times_and_after_worker_sees_success(
    toy_system, webhook
):
    with_retrying_workers(toy_system)
    toy_system.config["alerts"] = {"chat": {"webhook": webhook.url()}}
    toy_system.write_config()
    toy_system.start_broker()
    toy_system.start_manager()
    first = launch(toy_system, "flaky", "2")

    runs = finished_runs(toy_system, "flaky", 3)
    wait_for(lambda: calls(toy_system, "flaky"), "an after_flaky call")
    assert [(r.attempt, r.outcome) for r in runs] == [
        (1, "failure"), (2, "failure"), (3, "success"),
    ]  # fmt: skip
    # Each retry is a new run whose parent is the one that failed, same module and args.
    assert [r.parent for r in runs] == [None, first, runs[1].run_id]
    assert {(r.module, r.args, r.host) for r in runs} == {("flaky", ("2",), "localhost")}
    assert calls(toy_system, "flaky") == "success\n"
    wait_for(lambda: toy_system.checklist().get("flaky") == {"runs": 3}, "the checklist's flaky")
    assert pending(toy_system) == []
    output = toy_system.manager.wait_for_line(
        rf"retrying flaky worker after run {runs[1].run_id}'s failure: attempt 3/3 is run "
        rf"{runs[2].run_id}"
    )
    assert output and "alert for" not in toy_system.manager.output()
    assert webhook.posts == []


def test_a_worker_that_always_crashes_runs_3_times_and_alerts_once(toy_system, webhook):
    with_retrying_workers(toy_system)
    toy_system.config["alerts"] = {"chat": {"webhook": webhook.url()}}
    toy_system.write_config()
    toy_system.start_broker()
    toy_system.start_manager()
    launch(toy_system, "crashy")

    runs = finished_runs(toy_system, "crashy", 3)
    (post,) = wait_for(lambda: webhook.posts, "the crash alert")
    assert [(r.attempt, r.outcome, r.exit_status) for r in runs] == [
        (1, "crash", 3), (2, "crash", 3), (3, "crash", 3),
    ]  # fmt: skip
    text = post.body["text"]
    assert "crashy worker crashed: exited without reporting to the manager (exit status 3)" in text
    assert f"• run: {runs[2].run_id}" in text and "• attempt: 3 of 3" in text
    assert f"crashy-{runs[2].run_id}.log" in text and "crashy: giving up" in text
    toy_system.manager.wait_for_line(r"chat: crash alert for crashy run \S+ sent")
    assert len(webhook.posts) == 1 and calls(toy_system, "crashy") == "crash\n"
    assert toy_system.manager.output().count("handling it as a crash") == 3


# With dashboard.url, the final alert links to the run's page there (issue 14).
@pytest.mark.parametrize("dashboard", [None, {"port": 0, "url": "https://ops.example.org/nk/"}])
def test_a_final_failure_alerts_and_without_retry_a_failure_is_final_at_once(
    toy_system, webhook, dashboard
):
    with_retrying_workers(toy_system)
    del toy_system.config["message registry"]["workers"]["flaky"]["retry"]
    toy_system.config["alerts"] = {"chat": {"webhook": webhook.url(), "events": ["failure"]}}
    if dashboard is not None:
        toy_system.config["dashboard"] = dashboard
    toy_system.write_config()
    toy_system.start_broker()
    toy_system.start_manager()
    run = launch(toy_system, "flaky", "5")

    (post,) = wait_for(lambda: webhook.posts, "the failure alert")
    assert "*[nowcast failure] " in post.body["text"] and "flaky worker failed" in post.body["text"]
    assert f"• run: {run}" in post.body["text"] and "attempt" not in post.body["text"]
    link = f"• dashboard: https://ops.example.org/nk/runs/{run}\n"
    assert (link in post.body["text"], "dashboard" in post.body["text"]) == (
        (dashboard is not None,) * 2)  # fmt: skip
    assert "run 1 fails on purpose" in post.body["text"]  # the log's last lines
    assert [(r.attempt, r.outcome) for r in finished_runs(toy_system, "flaky", 1)] == [
        (1, "failure")
    ]
    assert calls(toy_system, "flaky") == "failure\n"


def test_a_retry_pending_when_the_manager_is_killed_still_happens_once(toy_system):
    with_retrying_workers(toy_system, backoff=3)
    toy_system.start_broker()
    toy_system.start_manager()
    first = launch(toy_system, "flaky", "1")
    (waiting,) = wait_for(lambda: pending(toy_system), "a pending retry")
    assert (waiting.parent, waiting.attempt, waiting.attempts) == (first, 2, 3)

    toy_system.manager.popen.kill()
    toy_system.manager.popen.wait(5)
    restarted = toy_system.start_manager()
    restarted.wait_for_line(rf"flaky worker: attempt 2/3, after run {first}, still pending")

    runs = finished_runs(toy_system, "flaky", 2)
    wait_for(lambda: calls(toy_system, "flaky"), "an after_flaky call")
    assert [(r.attempt, r.outcome, r.parent) for r in runs] == [
        (1, "failure", None), (2, "success", first),
    ]  # fmt: skip
    assert pending(toy_system) == [] and calls(toy_system, "flaky") == "success\n"
    assert restarted.output().count("retrying flaky worker") == 1


def test_history_status_and_timeline_show_attempts_and_a_pending_retry_with_when_it_is_due(
    toy_system,
):
    with_retrying_workers(toy_system, backoff=30)
    toy_system.start_broker()
    toy_system.start_manager()
    first = launch(toy_system, "flaky", "1")
    wait_for(lambda: pending(toy_system), "a pending retry")

    history = cli(toy_system, "history")
    assert history.returncode == 0, history.stderr
    header, row = history.stdout.splitlines()
    assert "ATTEMPT" in header and first in row and " 1/3 " in row
    assert "failure, retry 2/3 due " in row
    (entry,) = json.loads(cli(toy_system, "history", "--json").stdout)
    assert (entry["attempt"], entry["attempts"]) == (1, 3) and entry["retry due"]

    status = cli(toy_system, "status", "--no-circus")
    assert (f"retry pending: flaky worker: attempt 2/3 after run {first}'s failure, due "
            in status.stdout)  # fmt: skip
    assert re.search(rf"flaky +failure, retry 2/3 due \S+ .* {first}", status.stdout)

    picture = toy_system.folder / "day.svg"
    assert cli(toy_system, "timeline", "-o", str(picture)).returncode == 0
    rects = list(ET.parse(picture).getroot().iter(f"{SVG}rect"))
    (bar,) = [rect for rect in rects if rect.get("class") == "run"]
    assert (bar.get("data-run"), bar.get("data-attempt")) == (first, "1/3")
    assert "(attempt 1/3): failure, retry 2/3 due " in bar.find(f"{SVG}title").text
    (retry,) = [rect for rect in rects if rect.get("class") == "retry"]
    assert retry.get("data-parent") == first


def test_cancel_drops_a_pending_retry_and_history_and_status_show_none_due(toy_system, webhook):
    with_retrying_workers(toy_system, backoff=30)
    toy_system.config["alerts"] = {"chat": {"webhook": webhook.url()}}
    toy_system.write_config()
    toy_system.start_broker()
    toy_system.start_manager()
    first = launch(toy_system, "flaky", "1")
    wait_for(lambda: pending(toy_system), "a pending retry")
    assert "retry 2/3 due" in cli(toy_system, "history").stdout

    cancel = cli(toy_system, "cancel", first[:6])
    assert (cancel.returncode, cancel.stderr) == (0, "")
    assert cancel.stdout == (
        f"manager dropped flaky worker's retry 2/3 after run {first}'s failure: no retry is due\n"
    )
    assert pending(toy_system) == []  # committed before the answer
    toy_system.manager.wait_for_line(
        rf"flaky worker: retry 2/3 after run {first}'s failure cancelled, as nowcastkit cancel "
        r"asked"
    )
    _header, row = cli(toy_system, "history").stdout.splitlines()
    assert first in row and "failure" in row and "retry" not in row
    status = cli(toy_system, "status", "--no-circus").stdout
    assert "retry pending" not in status and "retry 2/3" not in status
    assert toy_system.control({"command": "status"})["retries"] == []
    again = cli(toy_system, "cancel", first)
    assert (again.returncode, again.stderr) == (
        1, f"nowcastkit cancel: no run going now or retry pending matches {first!r}\n")  # fmt: skip

    # Gone from the store, not only from memory: a restarted manager has no retry to make.
    toy_system.manager.stop()
    restarted = toy_system.start_manager()
    assert "still pending" not in restarted.output()
    assert toy_system.control({"command": "status"})["retries"] == []
    assert [(r.attempt, r.outcome) for r in runs_of(toy_system, "flaky")] == [(1, "failure")]
    assert calls(toy_system, "flaky") == "" and webhook.posts == []


def cli(system, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nowcastkit.cli", args[0], str(system.config_path), *args[1:]],
        capture_output=True, text=True, timeout=30, cwd=system.folder, env=child_env(),
    )  # fmt: skip


@pytest.mark.parametrize(("retry", "problem"), [
    ({"attempts": 0}, "retry.attempts: got 0, expected a whole number >= 1 "
                      "(every run counts, the first included)"),
    ({"attempts": 3, "backoff": -1}, "retry.backoff: got -1, expected seconds >= 0"),
    ({"attempts": 3, "on": ["crash", "timeout"]},
     "retry.on: unknown kind 'timeout'; expected a list of crash, failure"),
    ({"attempts": 3, "tries": 2}, "retry.tries: unknown key; expected attempts, backoff, max, on"),
    ({"backoff": 5}, "retry.attempts: missing required key"),
    (3, "retry: got 3, expected a mapping of attempts, backoff, max, on"),
])  # fmt: skip
def test_a_bad_retry_is_one_line_from_validate_and_at_start(toy_system, retry, problem):
    toy_system.config["message registry"]["workers"]["sleep"]["retry"] = retry
    toy_system.write_config()
    line = f"{toy_system.config_path}: message registry.workers.sleep.{problem}"
    validate = cli(toy_system, "validate")
    assert validate.returncode == 1
    assert validate.stdout.splitlines() == [line, f"{toy_system.config_path}: 1 problem"]
    manager = start_refused(toy_system.config_path)
    assert manager.returncode == 2
    assert manager.stderr == f"manager: {line}\n"
