"""The flow: after_<worker> results, race-condition groups over them, next_workers reloading."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from nowcastkit import Message, NextWorker, race
from nowcastkit.errors import FlowError
from nowcastkit.flow import Flow

# Race groups: after_a launches b and c at once and holds what their after_ functions
# return until both have reported; d does the same for f alone.
RACE_FLOW = """\
from nowcastkit import NextWorker


def after_a(msg, config, checklist):
    return [NextWorker("b", args=[msg.type]), NextWorker("c")], {"b", "c"}


def after_b(msg, config, checklist):
    return [NextWorker("from_b", args=[msg.type])]


def after_c(msg, config, checklist):
    return [NextWorker("from_c")]


def after_d(msg, config, checklist):
    return [NextWorker("f")], {"f"}


def after_f(msg, config, checklist):
    return [NextWorker("from_f")]


def after_e(msg, config, checklist):
    return [NextWorker("from_e")], set()
"""


def make_flow(folder: Path, text: str, name: str = "next_workers") -> Flow:
    (folder / f"{name}.py").write_text(text)
    flow = Flow(name, folder)
    flow.refresh()
    return flow


def names(workers: list[NextWorker]) -> list[str]:
    return [worker.module for worker in workers]


def report(flow: Flow, source: str, msg_type: str = "success") -> list[str]:
    """The workers after_<source> returns."""
    return names(flow.after(Message(source, msg_type), {}, {})[0])


class Chain:
    """A flow and its race groups, carried from report to report as the manager's ledger does."""

    def __init__(self, flow: Flow) -> None:
        self.flow, self.groups = flow, ()

    def report(self, source: str, msg_type: str = "success") -> list[str]:
        """The workers to launch now that *source* reported."""
        workers, must_finish = self.flow.after(Message(source, msg_type), {}, {})
        before = self.groups
        settled = race.settle(before, source, workers, must_finish)
        assert self.groups is before  # a value: nothing changed in place
        self.groups = settled.groups
        return names(settled.launch)


def test_after_worker_gets_message_config_and_checklist(tmp_path):
    flow = make_flow(
        tmp_path,
        textwrap.dedent("""\
        from nowcastkit import NextWorker

        def after_sleep(msg, config, checklist):
            return [NextWorker("workers.awaken", args=[msg.type, config["k"], checklist["c"]])]
        """),
    )
    workers, must_finish = flow.after(Message("sleep", "success"), {"k": "v"}, {"c": "x"})
    assert workers == [NextWorker("workers.awaken", args=["success", "v", "x"])]
    assert must_finish == set()


def test_racers_launch_at_once_and_what_follows_waits_for_all_of_them(tmp_path):
    chain = Chain(make_flow(tmp_path, RACE_FLOW))
    assert chain.report("a") == ["b", "c"]
    assert chain.report("c") == []  # from_c waits for b
    assert chain.report("b") == ["from_c", "from_b"]
    assert chain.groups == ()


def test_racers_may_report_in_any_order(tmp_path):
    chain = Chain(make_flow(tmp_path, RACE_FLOW))
    chain.report("a")
    assert chain.report("b") == []
    assert chain.report("c") == ["from_b", "from_c"]


def test_a_failing_racer_still_counts_as_finished(tmp_path):
    chain = Chain(make_flow(tmp_path, RACE_FLOW))
    chain.report("a")
    assert chain.report("b", "failure") == []
    assert chain.report("c") == ["from_b", "from_c"]


def test_two_groups_at_once_release_independently(tmp_path):
    chain = Chain(make_flow(tmp_path, RACE_FLOW))
    assert chain.report("a") == ["b", "c"]
    assert chain.report("d") == ["f"]
    assert len(chain.groups) == 2
    assert chain.report("f") == ["from_f"]  # d's group is complete; a's still waits
    assert chain.report("b") == []
    assert chain.report("c") == ["from_b", "from_c"]
    assert chain.groups == ()


def test_empty_set_launches_its_workers_instead_of_dropping_them(tmp_path):
    chain = Chain(make_flow(tmp_path, RACE_FLOW))
    assert chain.report("e") == ["from_e"]
    assert chain.groups == ()


def test_a_report_no_group_waits_for_leaves_the_groups_as_they_are():
    groups = (race.RaceGroup(frozenset({"b"}), (NextWorker("x"),)),)
    settled = race.settle(groups, "z", [NextWorker("y")], set())
    assert (settled.groups, names(settled.launch), settled.changed) == (groups, ["y"], False)
    settled = race.settle(groups, "b", [], set())
    assert (settled.groups, names(settled.launch), settled.changed) == ((), ["x"], True)
    assert [race.from_record(*race.record(group)) for group in groups] == list(groups)


def test_missing_after_function(tmp_path):
    flow = make_flow(tmp_path, RACE_FLOW)
    with pytest.raises(FlowError) as caught:
        report(flow, "zzz")
    assert caught.value.reply_type == "no after_worker function"
    assert "after_zzz" in str(caught.value)


def test_exception_in_after_function_is_a_flow_error(tmp_path):
    flow = make_flow(tmp_path, "def after_sleep(msg, config, checklist):\n    return {}['x']\n")
    with pytest.raises(FlowError) as caught:
        report(flow, "sleep")
    assert caught.value.reply_type == "after_worker error"
    assert str(caught.value) == "after_sleep raised KeyError: 'x'"


@pytest.mark.parametrize(
    "result", ["'workers.awaken'", "None", "['workers.awaken']", "([], 'not a set')"]
)
def test_wrong_return_value_is_a_flow_error(tmp_path, result):
    flow = make_flow(tmp_path, f"def after_sleep(msg, config, checklist):\n    return {result}\n")
    with pytest.raises(FlowError, match="after_sleep returned") as caught:
        report(flow, "sleep")
    assert caught.value.reply_type == "after_worker error"


def test_syntax_error_is_reported_then_recovered_from(tmp_path):
    flow = make_flow(tmp_path, RACE_FLOW)
    source = tmp_path / "next_workers.py"
    source.write_text("def after_a(msg, config, checklist)\n    return []\n")
    with pytest.raises(FlowError, match="failed to load: SyntaxError") as caught:
        report(flow, "a")
    assert caught.value.reply_type == "after_worker error"
    source.write_text("def after_a(msg, config, checklist):\n    return []\n")
    assert report(flow, "a") == []


def test_edit_takes_effect_on_next_call(tmp_path):
    flow = make_flow(tmp_path, "def after_sleep(msg, config, checklist):\n    return []\n")
    assert report(flow, "sleep") == []
    (tmp_path / "next_workers.py").write_text(
        "from nowcastkit import NextWorker\n\n"
        "def after_sleep(msg, config, checklist):\n"
        "    return [NextWorker('workers.awaken')]\n"
    )
    assert report(flow, "sleep") == ["workers.awaken"]


def test_a_batch_checks_the_file_once_and_the_next_batch_sees_an_edit(tmp_path):
    flow = make_flow(tmp_path, "def after_sleep(msg, config, checklist):\n    return []\n")
    with flow.checked_once():
        assert report(flow, "sleep") == []
        (tmp_path / "next_workers.py").write_text(
            "from nowcastkit import NextWorker\n\n"
            "def after_sleep(msg, config, checklist):\n"
            "    return [NextWorker('workers.awaken')]\n"
        )
        assert report(flow, "sleep") == []  # messages of the same batch: one module
    with flow.checked_once():
        assert report(flow, "sleep") == ["workers.awaken"]


def test_unchanged_file_is_not_recompiled(tmp_path):
    flow = make_flow(tmp_path, RACE_FLOW)
    module = flow.module
    report(flow, "c")
    assert flow.module is module


def test_each_flow_loads_its_own_folders_module(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    make_flow(one, "def after_sleep(msg, config, checklist):\n    return []\n")
    flow = make_flow(two, "def after_sleep(msg, config, checklist):\n    return 'two'\n")
    assert flow.module.__file__ == str(two / "next_workers.py")


def test_module_that_goes_missing_then_returns_is_loaded_again(tmp_path):
    # Some editors save by deleting the file and writing a new one.
    flow = make_flow(tmp_path, RACE_FLOW)
    source = tmp_path / "next_workers.py"
    os.unlink(source)
    with pytest.raises(FlowError, match="not found"):
        report(flow, "a")
    source.write_text(RACE_FLOW.replace("args=[msg.type]", 'args=["again"]'))
    assert flow.after(Message("a", "success"), {}, {})[0][0].args == ("again",)


def test_dotted_module_name_in_a_package(tmp_path):
    package = tmp_path / "my_system"
    package.mkdir()
    (package / "__init__.py").write_text("")
    flow = make_flow(package, RACE_FLOW, name="flow_module")
    flow = Flow("my_system.flow_module", tmp_path)
    flow.refresh()
    assert report(flow, "e") == ["from_e"]
