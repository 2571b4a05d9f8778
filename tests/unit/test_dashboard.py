"""The dashboard's settings, page queries and colours: values in, values out."""

from __future__ import annotations

import datetime as dt

import pytest

from nowcastkit.config import Config
from nowcastkit.dashboard import pages, views
from nowcastkit.dashboard.settings import (
    DEFAULT_PORT,
    Settings,
    dashboard_link,
    is_loopback,
    run_link,
    settings,
)
from nowcastkit.errors import ConfigError

pytestmark = pytest.mark.timeout(60)


def config(section) -> Config:
    return Config({"dashboard": section}, file="nowcast.yaml")


def test_the_default_is_loopback_on_the_default_port():
    assert settings(Config({}, file="nowcast.yaml")) == Settings("127.0.0.1", DEFAULT_PORT)
    assert settings(config({"host": "localhost", "port": 0})).port == 0
    assert settings(config({"host": "::1"})).host == "::1"


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ({"host": "0.0.0.0"}, "nowcast.yaml: dashboard.host: got '0.0.0.0', expected a loopback "
         "address: the dashboard has no authentication yet, so serving beyond loopback needs "
         "dashboard.insecure: true"),
        ({"host": "*"}, "nowcast.yaml: dashboard.host: got '*', expected an address or host name"),
        ({"port": 70000}, "nowcast.yaml: dashboard.port: got 70000, expected 0 to 65535"),
        ({"port": "80"}, "nowcast.yaml: dashboard.port: got '80', expected 0 to 65535"),
        ({"insecure": "yes"}, "nowcast.yaml: dashboard.insecure: got 'yes', expected true or"),
        ({"refresh": 0}, "nowcast.yaml: dashboard.refresh: got 0, expected seconds above 0"),
        ({"hots": "x"}, "nowcast.yaml: dashboard.hots: got 'x', expected no such key"),
        ("on", "nowcast.yaml: dashboard: got 'on', expected a mapping"),
        ({"url": "ops.example.org"}, "nowcast.yaml: dashboard.url: got 'ops.example.org', "
         "expected an http:// or https:// address"),
    ],
)  # fmt: skip
def test_a_bad_setting_is_one_line_naming_the_key_and_value(section, line):
    with pytest.raises(ConfigError) as raised:
        settings(config(section))
    assert str(raised.value).startswith(line)
    assert "\n" not in str(raised.value)


def test_beyond_loopback_only_when_insecure_is_said():
    assert settings(config({"host": "0.0.0.0", "insecure": True})).host == "0.0.0.0"
    assert [is_loopback(h) for h in ("127.0.0.2", "[::1]", "localhost", "10.0.0.1", "example")] \
        == [True, True, True, False, False]  # fmt: skip


@pytest.mark.parametrize(
    ("section", "link"),
    [
        ({}, "http://127.0.0.1:4347/runs/r17"),
        ({"host": "localhost", "port": 8080}, "http://localhost:8080/runs/r17"),
        ({"host": "::1", "port": 8080}, "http://[::1]:8080/runs/r17"),
        # every interface: the manager's host name is the one to follow
        ({"host": "0.0.0.0", "insecure": True}, "http://arbutus:4347/runs/r17"),
        ({"port": 0}, ""),  # picked at start: no link can be known
        ({"port": 0, "url": "https://ops.example.org/nowcast/"},
         "https://ops.example.org/nowcast/runs/r17"),
    ],
)  # fmt: skip
def test_an_alert_links_to_the_runs_page_where_operators_reach_it(section, link):
    assert run_link(settings(config(section)), "r17", "arbutus") == link
    assert dashboard_link(config(section), "r17", "arbutus") == link


def test_no_dashboard_section_or_a_bad_one_is_no_link():
    assert dashboard_link(Config({}, file="nowcast.yaml"), "r17", "arbutus") == ""
    assert dashboard_link(config({"port": "80"}), "r17", "arbutus") == ""


def test_the_runs_page_query_takes_empty_fields_as_no_filter():
    assert views.run_query({"worker": "", "outcome": "", "date": "", "page": ""}) == (
        views.RunQuery()
    )
    query = views.run_query({"worker": "sleep", "outcome": "crash", "date": "2026-11-23",
                             "page": "3"})  # fmt: skip
    assert query == views.RunQuery("sleep", "crash", dt.date(2026, 11, 23), 3)


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"outcome": "sucess"}, "outcome: got 'sucess', expected one of success, failure, crash"),
        ({"date": "23/11/2026"}, "date: got '23/11/2026', expected YYYY-MM-DD"),
        ({"page": "0"}, "page: got '0', expected a page number from 1"),
        ({"page": "-1"}, "page: got '-1', expected a page number from 1"),
    ],
)
def test_a_bad_runs_query_names_the_parameter(params, text):
    with pytest.raises(views.BadQuery) as raised:
        views.run_query(params)
    assert str(raised.value).startswith(text)


def test_outcomes_are_coloured_as_the_timeline_colours_them():
    words = ["success", "success (late)", "failure", "crash", "exited 3", "launch failed",
             "running", "clear checklist", None]  # fmt: skip
    assert [pages.kind(w) for w in words] == [
        "success",
        "success",
        "failure",
        "crash",
        "crash",
        "crash",
        "running",
        "other",
        "none",
    ]


def test_what_a_page_shows_is_escaped():
    view = {"circus": None, "manager": {"ok": False, "error": "<b>down</b>"}, "running": [],
            "last outcomes": [], "next fires": []}  # fmt: skip
    html = pages.today_page(view, [])
    assert "&lt;b&gt;down&lt;/b&gt;" in html and "<b>down" not in html
