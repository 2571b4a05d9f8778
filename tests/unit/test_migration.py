"""What nowcastkit stands in for, and finds to change, in a system written for the
reference design: pure functions over module strings and syntax trees."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import pytest

import nowcastkit
from nowcastkit import migration
from nowcastkit.worker import NowcastWorker


@pytest.mark.parametrize(
    ("module", "installed", "expected"),
    [
        ("nemo_nowcast.workers.clear_checklist", False, "workers.clear_checklist"),
        ("nemo_nowcast.workers.rotate_logs", False, "workers.rotate_logs"),
        ("nemo_nowcast.workers.rotate_logs", True, None),  # the real one runs
        ("nowcastkit.workers.rotate_logs", True, "workers.rotate_logs"),  # after the sed
        ("nemo_nowcast.workers.run_model", False, None),  # not one nowcastkit has
        ("nowcast.workers.clear_checklist", False, None),  # the system's own
        ("workers.sleep", False, None),
    ],
)
def test_stand_in(module, installed, expected):
    assert migration.stand_in(module, installed) == expected


def test_reference_imports_are_found_a_line_each_and_relative_ones_left():
    tree = ast.parse(
        textwrap.dedent("""\
        import os
        import nemo_nowcast
        from nemo_nowcast import NextWorker
        from nemo_nowcast.fileutils import FilePerms
        import nemo_nowcast.cli as cli, json
        from . import nemo_nowcast_helpers
        from nemo_nowcastish import x
        """)
    )
    found = migration.reference_imports(tree)
    assert [(f.line, f.text) for f in found] == [
        (2, "imports nemo_nowcast: import it from nowcastkit"),
        (3, "imports nemo_nowcast: import it from nowcastkit"),
        (4, "imports nemo_nowcast.fileutils: import it from nowcastkit"),
        (5, "imports nemo_nowcast.cli: import it from nowcastkit"),
    ]
    assert not any(f.informational for f in found)


def test_an_import_the_rewrite_alone_would_break_is_to_change_by_hand():
    tree = ast.parse(
        textwrap.dedent("""\
        from nemo_nowcast import NextWorker, NoSuch
        from nemo_nowcast.workers import rotate_logs
        import nemo_nowcast.workers.sleep
        from nemo_nowcast.log_aggregator import main
        from nemo_nowcast.worker import NextWorker
        """)
    )
    has = {"nowcastkit.NextWorker", "nowcastkit.worker.NextWorker"}.__contains__
    found = migration.reference_imports(tree, has)
    assert [(f.line, f.text) for f in found] == [
        (1, "imports nemo_nowcast: nowcastkit has no nowcastkit.NoSuch: change it by hand"),
        (2, "imports nemo_nowcast.workers: nowcastkit's built-in workers are the workers "
            "package: import workers.rotate_logs by hand"),
        (3, "imports nemo_nowcast.workers.sleep: nowcastkit's built-in workers are the workers "
            "package: import workers.sleep by hand"),
        (4, "imports nemo_nowcast.log_aggregator: nowcastkit has no "
            "nowcastkit.log_aggregator.main: change it by hand"),
        (5, "imports nemo_nowcast.worker: import it from nowcastkit"),
    ]  # fmt: skip


def test_translated_imports_keep_their_names_bound():
    tree = ast.parse(
        textwrap.dedent("""\
        import nemo_nowcast
        from nemo_nowcast import NextWorker
        from nemo_nowcast.fileutils import FilePerms
        PERMS = FilePerms(user="rw")
        CLI = nemo_nowcast.cli.CommandLineInterface
        """)
    )
    namespace: dict = {}
    exec(compile(migration.translated(tree), "<flow>", "exec"), namespace)
    assert namespace["nemo_nowcast"] is nowcastkit
    assert namespace["NextWorker"] is nowcastkit.NextWorker
    assert int(namespace["PERMS"]) == 0o600
    assert namespace["CLI"] is nowcastkit.CommandLineInterface
    assert migration.reference_imports(tree)  # the tree given is left as it was


FLOW = """\
from nemo_nowcast import NextWorker


def after_download(msg, config, checklist):
    next_workers = {
        "crash": [],
        "success": [NextWorker("nowcast.workers.plot")],
    }
    return next_workers[msg.type]


def after_plot(message, config, checklist):
    actions = {"crash": [], "failure": [], "success": []}
    return actions[message.type]


def after_feed(msg, config, checklist):
    actions = dict(crash=[])  # not a literal dict: nothing can be said of it
    return actions[msg.type]


def after_upload(msg, config, checklist):
    keyed = {"a": []}
    return keyed[msg.payload]  # not looked up by message type


def after_run(msg, config, checklist):
    next_workers = {"crash": [], "failure": []}
    if "host" in msg.payload:
        next_workers[msg.type] = [NextWorker("nowcast.workers.watch")]  # any type, maybe
    return next_workers[msg.type]


def after_watch(msg, config, checklist):
    next_workers = {"crash": []}
    next_workers["failure"] = []
    next_workers["success"] = [NextWorker("nowcast.workers.upload")]
    return next_workers[msg.type]
"""
REGISTRY = {
    "download": {"checklist key": "forcing", "success": "ok", "failure": "bad", "crash": "x",
                 "timeout": 60},
    # Sent mid-run and answered by the manager itself: no after_plot sees them.
    "plot": {"success": "ok", "failure": "bad", "crash": "x", "need": "n", "clear checklist": "c"},
    "feed": {"success": "ok", "failure": "bad", "crash": "x"},
    "upload": {"success": "ok"},
    "run": {"success": "ok", "failure": "bad", "crash": "x"},
    "watch": {"success": "ok", "failure": "bad", "crash": "x", "need": "y"},
}  # fmt: skip


def test_dispatch_gaps_name_the_function_the_dict_and_each_missing_type():
    found = migration.dispatch_gaps(ast.parse(FLOW), REGISTRY)
    assert [(f.line, f.text) for f in found] == [
        (5, "after_download: next_workers[msg.type] has no 'failure': a KeyError in the "
            "manager for a registered message type"),
    ]  # fmt: skip


def test_built_in_gaps_are_the_types_a_built_in_sends_that_its_entry_lacks():
    modules = [
        "nemo_nowcast.workers.clear_checklist",
        "nowcastkit.workers.clear_checklist",
        "workers.rotate_logs",
        "nowcast.workers.clear_checklist",  # the system's own worker of that name
        "workers.sleep",  # not registered: a problem of its own
    ]
    workers = {
        "clear_checklist": {"success": "ok", "failure": "bad", "crash": "x"},
        "rotate_logs": {"success": "ok", "failure": "bad", "crash": "x"},
    }
    assert migration.built_in_gaps(modules, workers) == {
        "clear_checklist": "no 'clear checklist' message type, which the built-in "
        "clear_checklist worker sends",
    }
    workers["clear_checklist"]["clear checklist"] = "clear it"
    assert migration.built_in_gaps(modules[:4], workers) == {}


def test_logging_port_pools_are_every_key_but_the_aggregators():
    ports = {"message_broker": 4345, "workers": [4350, 4351], "aggregator": 4349}
    assert migration.logging_port_pools(ports) == ["message_broker", "workers"]
    assert migration.logging_port_pools(None) == []


def test_a_workers_own_options_follow_config_file_and_debug_in_its_parser():
    """The reference design's tests look options up by position in cli.parser._actions."""
    worker = NowcastWorker("download", description="Download worker.")
    worker.init_cli()
    worker.cli.add_argument("--run-type")
    dests = [action.dest for action in worker.cli.parser._actions]
    assert dests == ["help", "config_file", "debug", "run_type"]
    bare = nowcastkit.CommandLineInterface("download")
    bare.build_parser()
    assert [action.dest for action in bare.parser._actions] == ["help", "config_file"]
    assert bare.arrow_date is nowcastkit.CommandLineInterface.arrow_date


def test_the_operators_command_package_gives_the_workers_command_line_when_asked():
    """``nemo_nowcast.cli.CommandLineInterface`` becomes ``nowcastkit.cli``'s after the
    rewrite; the operator's command does not load it to start."""
    check = (
        "import sys, nowcastkit.cli\n"
        "print('nowcastkit.worker_cli' in sys.modules)\n"
        "from nowcastkit.cli import CommandLineInterface\n"
        "from nowcastkit.worker_cli import CommandLineInterface as WorkerCLI\n"
        "print(CommandLineInterface is WorkerCLI)\n"
        "print(CommandLineInterface.arrow_date('2026-12-01').format('YYYY-MM-DD'))\n"
        "print(CommandLineInterface('x').arrow_date('2026-12-02').format('YYYY-MM-DD'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.split() == ["False", "True", "2026-12-01", "2026-12-02"]
    with pytest.raises(AttributeError, match=r"nowcastkit\.cli' has no attribute 'Nothing'"):
        nowcastkit.cli.Nothing  # noqa: B018
