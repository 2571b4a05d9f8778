"""The web dashboard in a real headless Chromium, against real broker, manager and dashboard.

Chromium is Debian's (bin/system-packages installs it), driven by Playwright; one browser
for the module, a fresh page for each test. Set DASHBOARD_SCREENSHOTS to a folder to keep
the screenshots the last test takes (docs/img is made so).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import attrs
import pytest
import yaml

from nowcastkit import keys
from nowcastkit.control import ask
from tests.conftest import System, child_env, wait_for
from tests.integration.operator_tools import CHAIN, history
from tests.integration.test_circus import _kill_leftovers, _wait_ready, start_circus

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
ROTATE_LOGS = """

def after_rotate_logs(msg, config, checklist):
    return []
"""
#: Milliseconds Playwright waits for what a test expects on a page.
WAIT = 10_000


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium, with a fresh profile, for the whole module."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: bin/system-packages installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="nk-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )  # fmt: skip
        context.set_default_timeout(WAIT)
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.close()


@attrs.frozen
class Dashboard:
    """A running system and its dashboard's base URL; the system's methods are its own."""

    system: System
    url: str

    def __getattr__(self, name: str):
        return getattr(self.system, name)


@pytest.fixture
def dashboard(running_system):
    """The running system with its dashboard on a free loopback port."""
    running_system.config["dashboard"] = {"port": 0, "refresh": 1}
    running_system.write_config()
    process = running_system.spawn("dashboard", "-m", "nowcastkit.dashboard")
    port = process.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)/")[1]
    return Dashboard(running_system, f"http://127.0.0.1:{port}")


def launch(system, *args: str) -> str:
    reply = system.control({"command": "launch", "worker": "workers.sleep", "args": list(args)})
    assert reply["ok"], reply
    return reply["run"]


def open_live(page, url: str) -> None:
    """Open the Today page and wait until its stream is live; mark the document."""
    page.goto(url + "/")
    page.wait_for_selector("#live.on")
    page.evaluate("window.notReloaded = true")


def test_a_run_appears_live_and_its_outcome_changes_when_it_ends(dashboard, page):
    open_live(page, dashboard.url)
    assert "no workers running" in page.inner_text("#running")
    run_id = launch(dashboard, "--sleep-time", "2")
    running = page.locator("#running tr", has_text=run_id[:8])
    running.wait_for()
    assert "sleep" in running.inner_text() and "--sleep-time 2" in running.inner_text()
    sleep = page.locator("#outcomes tr", has_text="sleep")
    assert "running" in sleep.inner_text()
    page.locator("#outcomes tr", has_text=run_id[:8]).locator(".badge.success").wait_for()
    page.locator("#running", has_text="no workers running").wait_for()
    assert page.evaluate("window.notReloaded") is True
    assert "received" in page.inner_text("#events")


def test_a_crash_is_shown_in_the_crash_colour_and_links_to_its_log(dashboard, page):
    open_live(page, dashboard.url)
    run_id = launch(dashboard, "--sleep-time", "x")  # exits at its command line: a crash
    badge = page.locator("#outcomes tr", has_text=run_id[:8]).locator(".badge")
    badge.filter(has_text="crash").wait_for()
    colour = badge.evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour == "rgb(239, 108, 0)"  # the timeline's crash orange, #ef6c00
    page.locator("#outcomes tr", has_text=run_id[:8]).locator("a.log").click()
    page.wait_for_url(f"**/runs/{run_id}#log")
    assert "crash" in page.inner_text("#outcome")
    assert "--sleep-time" in page.inner_text("#log-text")  # argparse's complaint


def test_a_live_runs_log_is_followed_until_it_ends(dashboard, page):
    run_id = launch(dashboard, "--sleep-time", "2")
    wait_for(lambda: history(dashboard)[0]["pid"], "the run's pid")
    page.goto(f"{dashboard.url}/runs/{run_id}")
    assert "running" in page.inner_text("#outcome")
    page.locator("#log-text", has_text="slept for 2 seconds").wait_for()
    page.locator("#outcome .badge.success").wait_for()
    assert "has ended: success" in page.inner_text("#following")


def test_a_manager_restart_does_not_break_the_live_stream(dashboard, page):
    open_live(page, dashboard.url)
    dashboard.manager.stop()
    manager = page.locator("#processes tr", has_text="manager")
    manager.locator(".badge.crash", has_text="not answering").wait_for()
    dashboard.start_manager()
    manager.locator(".badge.success", has_text="answering").wait_for()
    run_id = launch(dashboard, "--sleep-time", "0")
    page.locator("#outcomes tr", has_text=run_id[:8]).locator(".badge.success").wait_for()
    assert page.evaluate("window.notReloaded") is True


def request(url: str, method: str) -> tuple[int, bytes]:
    data = b"x=1" if method in ("POST", "PUT", "PATCH") else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, method=method)) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_only_get_and_head_are_answered_and_every_page_has_its_json(dashboard):
    url = dashboard.url
    for path in ("/", "/runs", "/timeline", "/checklist", "/events", "/no/such/page"):
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            assert request(url + path, method)[0] == 405, (method, path)
    assert request(url + "/runs", "HEAD") == (200, b"")
    assert request(url + "/no/such/page", "GET")[0] == 404
    status, body = request(url + "/runs?outcome=sucess", "GET")
    assert status == 400 and b"outcome: got &#x27;sucess&#x27;, expected one of" in body
    today = json.loads(request(url + "/?format=json", "GET")[1])
    assert today["manager"]["ok"] and today["running"] == []
    assert json.loads(request(url + "/runs?format=json", "GET")[1])["total"] == 0
    assert json.loads(request(url + "/timeline?format=json", "GET")[1])["runs"] == 0
    assert json.loads(request(url + "/checklist?format=json", "GET")[1])["source"] == "manager"


def test_under_curve_it_reaches_the_manager_with_the_cli_key_and_its_feed_is_live(toy_system):
    """The control and monitor sockets are CURVE servers: the dashboard asks and listens with
    the cli role's key pair, as nowcastkit status and monitor do."""
    folder = toy_system.folder / "keys"
    clients = {"manager": "manager", "scheduler": "scheduler", "cli": "ops", "workers": "host1"}
    for name in ("broker", *clients.values()):
        keys.generate(folder, name)
    for name in clients.values():
        keys.allow(folder / "allowed", folder / f"{name}.key")
    toy_system.config["zmq"]["curve"] = {"keys": "keys", "broker": "broker", "clients": clients}
    toy_system.config["dashboard"] = {"port": 0, "refresh": 1}
    toy_system.write_config()
    toy_system.start_broker()
    toy_system.start_manager()
    process = toy_system.spawn("dashboard", "-m", "nowcastkit.dashboard")
    url = "http://127.0.0.1:" + process.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)/")[1]
    process.wait_for_line(r"manager's event feed is live")
    wait_for(lambda: json.loads(request(url + "/?format=json", "GET")[1])["manager"]["ok"],
             "the manager's answer on the Today page")  # fmt: skip
    run = launch(toy_system, "--sleep-time", "0")

    def seen() -> bool:
        events = json.loads(request(url + "/?format=json", "GET")[1])["events"]
        return any(run in event.get("what", "") for event in events)

    wait_for(seen, "the run's events on the Today page")


def test_sigterm_stops_it_at_once_with_pages_open(dashboard):
    process = dashboard.processes[-1]
    stream = urllib.request.urlopen(dashboard.url + "/events", timeout=10)
    assert stream.readline() == b"event: today\n"
    started = time.monotonic()
    assert process.stop(timeout=5) == 0
    assert time.monotonic() - started < 3
    stream.close()
    assert "INFO [dashboard] stopped" in process.output()


def test_a_bad_address_is_refused_in_one_line_naming_the_key(running_system):
    running_system.config["dashboard"] = {"host": "0.0.0.0"}
    running_system.write_config()
    done = subprocess.run(
        [sys.executable, "-m", "nowcastkit.dashboard", str(running_system.config_path)],
        capture_output=True, text=True, timeout=30, env=child_env(),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        f"dashboard: {running_system.config_path}: dashboard.host: got '0.0.0.0', expected a "
        "loopback address: the dashboard has no authentication yet, so serving beyond "
        "loopback needs dashboard.insecure: true\n"
    )


def test_runs_filter_and_timeline_bars_open_their_runs(dashboard, page):
    dashboard.write_next_workers(CHAIN)
    sleep_run = launch(dashboard, "--sleep-time", "0")
    # One after the other: bars that overlap on the timeline would hide one another.
    wait_for(lambda: len(runs := history(dashboard)) == 2 and all(r["finished"] for r in runs),
             "the chain's two finished runs")  # fmt: skip
    launch(dashboard, "--sleep-time", "x")
    wait_for(lambda: len(runs := history(dashboard)) == 3 and all(r["finished"] for r in runs),
             "three finished runs")  # fmt: skip
    page.goto(f"{dashboard.url}/runs")
    assert page.locator("tbody tr").count() == 3
    page.select_option("select[name=outcome]", "crash")
    page.click("button[type=submit]")
    page.wait_for_url("**/runs?*outcome=crash*")
    assert page.locator("tbody tr").count() == 1
    assert "crash" in page.inner_text("tbody")
    page.goto(f"{dashboard.url}/timeline")
    bar = page.locator(f'rect.run[data-run="{sleep_run}"]')
    bar.hover()
    assert re.search(rf"sleep run {sleep_run}: success", page.inner_text("#tip"))
    bar.click()
    page.wait_for_url(f"**/runs/{sleep_run}")
    assert "awaken" not in page.inner_text("main h2")


def test_the_checklist_is_folded_by_key(dashboard, page):
    dashboard.run_worker("workers.sleep", "--sleep-time", "0")
    page.goto(f"{dashboard.url}/checklist")
    key = page.locator('details[data-key="sleepyhead"]')
    assert not key.locator("pre").is_visible()
    key.locator("summary").click()
    assert "sleep time: 0" in key.locator("pre").inner_text()
    assert "live, from the manager" in page.inner_text("main")


def test_screenshots_of_each_page_of_the_toy_system_under_circus(page, tmp_path):
    """The toy system under circusd, the dashboard its fourth watcher: each page photographed
    after a small day's runs (docs/dashboard.md shows them)."""
    folder = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(exist_ok=True)
    sleep = {"every": "day", "at": "05:15", "cmd line opts": "--sleep-time 3"}
    rotate = {"every": "monday", "at": "00:00"}
    (tmp_path / "toy").mkdir()
    system = start_circus(
        tmp_path / "toy", [{"workers.sleep": sleep}, {"workers.rotate_logs": rotate}]
    )
    try:
        _wait_ready(system)
        wait_for(lambda: system.count(r"\[dashboard\] listening on"), "dashboard listening")
        (system.folder / "next_workers.py").write_text(CHAIN + ROTATE_LOGS)
        raw = yaml.safe_load((system.folder / "nowcast.yaml").read_text())
        url = f"http://127.0.0.1:{raw['dashboard']['port']}"
        control = f"tcp://127.0.0.1:{raw['zmq']['ports']['control']}"

        def launch_toy(module: str, *args: str) -> str:
            request = {"command": "launch", "worker": module, "args": list(args)}
            return ask(control, request, 5)["run"]

        def finished() -> bool:
            runs = json.loads(request(url + "/runs?format=json", "GET")[1])["runs"]
            return len(runs) == 4 and all(r["finished"] for r in runs)

        crashed = launch_toy("workers.sleep", "--sleep-time", "x")
        wait_for(lambda: "crash" in request(f"{url}/runs/{crashed}?format=json", "GET")[1].decode(),
                 "the crash")  # fmt: skip
        launch_toy("workers.sleep", "--sleep-time", "1")
        launch_toy("workers.rotate_logs")
        wait_for(finished, "four finished runs", 20)
        running = launch_toy("workers.sleep", "--sleep-time", "20")
        open_live(page, url)
        page.locator("#running tr", has_text=running[:8]).wait_for()
        page.locator("#processes", has_text="dashboard").wait_for()
        shots = {"today": "/", "runs": "/runs", "timeline": "/timeline", "run": f"/runs/{crashed}",
                 "checklist": "/checklist"}  # fmt: skip
        for name, path in shots.items():
            if path != "/":
                page.goto(url + path)
            if name == "checklist":
                page.locator("details summary").first.click()
            page.screenshot(path=folder / f"dashboard-{name}.png", full_page=True)
            assert (folder / f"dashboard-{name}.png").stat().st_size > 10_000
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        page.goto(url + "/")
        page.wait_for_selector("#live.on")
        page.screenshot(path=folder / "dashboard-today-phone.png", full_page=True)
        assert ask(control, {"command": "cancel", "run": running, "by": "test"}, 5)["ok"]
        still = url + "/runs?outcome=running&format=json"
        wait_for(lambda: json.loads(request(still, "GET")[1])["total"] == 0, "the run's end")
        system.quit()
    finally:
        _kill_leftovers(system)
