"""Checklist merge, dump, atomic write, and loading of missing, empty and corrupt files."""

from __future__ import annotations

import datetime
import logging
import re

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from nowcastkit import checklist
from nowcastkit.errors import NowcastkitError
from tests.unit.plain_data import scalars as hostile_scalars
from tests.unit.plain_data import texts as hostile_texts

pytestmark = pytest.mark.timeout(60)


def test_mapping_payload_updates_the_section():
    state = {"sleepyhead": {"sleep time": 5, "kept": True}}
    checklist.merge(state, "sleepyhead", {"sleep time": 0, "new": [1, 2]})
    assert state == {"sleepyhead": {"sleep time": 0, "kept": True, "new": [1, 2]}}


@pytest.mark.parametrize(
    ("current", "payload"),
    [(None, {"a": 1}), ({"a": 1}, ["x"]), ("old", "new"), ([1], None), ({"a": 1}, None)],
)
def test_non_mapping_payload_replaces_the_section(current, payload):
    state = {"other": 1} if current is None else {"key": current, "other": 1}
    checklist.merge(state, "key", payload)
    assert state == {"key": payload, "other": 1}


def test_write_then_load_round_trip(tmp_path, caplog):
    path = tmp_path / "nowcast_checklist.yaml"
    state = {"sleepyhead": {"sleep time": 0}, "awake": {"awoke at": "2024-01-01 00:00:00"}}
    checklist.write(path, state)
    assert yaml.safe_load(path.read_text()) == state
    with caplog.at_level(logging.INFO, logger="manager"):
        assert checklist.load(path) == state
    assert f"checklist loaded from {path}" in caplog.text


def test_write_replaces_the_file_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "nowcast_checklist.yaml"
    path.write_text("old: 1\n")
    inode = path.stat().st_ino
    checklist.write(path, {"new": 2})
    assert yaml.safe_load(path.read_text()) == {"new": 2}
    assert path.stat().st_ino != inode  # renamed into place, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_write_into_missing_folder_raises_and_keeps_nothing(tmp_path):
    with pytest.raises(OSError):
        checklist.write(tmp_path / "gone" / "nowcast_checklist.yaml", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_load_removes_temp_files_left_by_a_killed_writer(tmp_path):
    path = tmp_path / "nowcast_checklist.yaml"
    checklist.write(path, {"a": 1})
    leftover = tmp_path / f".{path.name}.1234.0.tmp"
    leftover.write_text("a: [half writ")
    assert checklist.load(path) == {"a": 1}
    assert not leftover.exists()


def test_missing_file_gives_empty_checklist_with_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="manager"):
        assert checklist.load(tmp_path / "nowcast_checklist.yaml") == {}
    assert "checklist load failed" in caplog.text
    assert "running with empty checklist" in caplog.text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"", "is empty"),
        (b"sleepyhead: {sleep time: [5\n", "is not valid YAML"),
        (b"- a list\n", "is not a mapping"),
        (b"\x00\xff\xfe", "is not valid YAML"),
    ],
)
def test_empty_or_corrupt_file_is_moved_aside(tmp_path, caplog, text, problem):
    path = tmp_path / "nowcast_checklist.yaml"
    path.write_bytes(text)
    with caplog.at_level(logging.WARNING, logger="manager"):
        assert checklist.load(path) == {}
    assert not path.exists()
    (backup,) = tmp_path.iterdir()
    assert backup.read_bytes() == text
    assert f"checklist file {path} {problem}" in caplog.text
    assert f"; moved it aside to {backup}" in caplog.text


def test_a_file_set_aside_never_replaces_an_earlier_one(tmp_path):
    path = tmp_path / "nowcast_checklist.yaml"
    for n in range(3):  # within the same second, as in a crash loop
        path.write_text(f"- corrupt {n}\n")
        assert checklist.load(path, quiet=True) == {}
    kept = sorted(p.read_text() for p in tmp_path.iterdir())
    assert kept == ["- corrupt 0\n", "- corrupt 1\n", "- corrupt 2\n"]


keys = st.text("ab z:-é", max_size=3)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.dates()
    | st.text(max_size=90),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
changes = st.lists(st.tuples(st.sampled_from(["set", "merge", "delete"]), keys, values))


@given(changes)
def test_cached_dump_equals_dump_after_every_change(steps):
    state, cache = {}, checklist.DumpCache()
    for action, key, value in steps:
        if action == "delete":
            state.pop(key, None)
        elif action == "merge":
            checklist.merge(state, key, value)  # updates a mapping in place
        else:
            state[key] = value
        cache.forget(key)
        assert checklist.dump_cached(state, cache) == checklist.dump(state)


@pytest.mark.parametrize(
    "state",
    [{}, {"b": 1, 2: "x", "a": [1]}, {"b": [datetime.date(2024, 1, 1)], "a": {"c": None}}],
    ids=["empty", "keys that do not sort", "sorted keys"],
)
def test_cached_dump_equals_dump(state):
    cache = checklist.DumpCache()
    assert checklist.dump_cached(state, cache) == checklist.dump(state)
    assert checklist.dump_cached(state, cache) == checklist.dump(state)


def test_cached_dump_numbers_anchors_as_one_dump_does():
    shared, other = [1, 2], {"x": 1}
    state, cache = {"b": {"p": shared, "q": shared}, "a": {"n": 1}}, checklist.DumpCache()
    assert checklist.dump_cached(state, cache) == checklist.dump(state)
    state["c"] = {"r": other, "s": other}
    cache.forget("c")
    text = checklist.dump_cached(state, cache)
    assert text == checklist.dump(state)
    assert yaml.load(text, Loader=yaml.CSafeLoader) == state


def test_cached_dump_redumps_a_value_replaced_without_forget():
    state, cache = {"a": {"n": 1}, "b": 2}, checklist.DumpCache()
    checklist.dump_cached(state, cache)
    replaced, state["a"] = state["a"], {"n": 2}
    assert checklist.dump_cached(state, cache) == "a:\n  n: 2\nb: 2\n"
    assert replaced == {"n": 1}


entry_steps = st.lists(
    st.tuples(st.sampled_from(["merge", "merge", "drop entry", "set", "delete"]), keys, values)
)


def _step(state: dict, cache: checklist.DumpCache, action: str, key: str, value) -> None:
    """One change to *state* under "big" (a mapping from the start), forgotten as it was made."""
    big = state.get("big")
    if action == "merge" and isinstance(big, dict):
        payload = value if isinstance(value, dict) else {key: value}
        big.update(payload)
        cache.forget("big", payload)
    elif action == "drop entry" and isinstance(big, dict) and big:
        entry = key if key in big else next(iter(big))
        del big[entry]
        cache.forget("big", [entry])
    elif action == "delete":
        state.pop(key, None)
        cache.forget(key)
    else:
        state[key if action == "set" else "big"] = value
        cache.forget(key if action == "set" else "big")


@given(entry_steps)
def test_cached_dump_equals_dump_after_entry_level_changes(steps):
    state = {"big": {f"e{i}": [i, {"x": "y"}] for i in range(5)}, "a": 1}
    cache = checklist.DumpCache()
    assert checklist.dump_cached(state, cache) == checklist.dump(state)
    for step in steps:
        _step(state, cache, *step)
        assert checklist.dump_cached(state, cache) == checklist.dump(state)


long_texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
hostile_keys = hostile_texts | long_texts
hostile = st.recursive(
    hostile_scalars | long_texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_keys, inner, max_size=4),
    max_leaves=15,
)


@given(hostile_keys, st.dictionaries(hostile_keys, hostile, min_size=1, max_size=6), hostile)
def test_cached_dump_of_hostile_entries_loads_as_the_checklist(key, mapping, update):
    state, cache = {key: mapping, "other": [1]}, checklist.DumpCache()
    for _ in range(2):
        text = checklist.dump_cached(state, cache)
        assert yaml.load(text, Loader=yaml.CSafeLoader) == state
        entry = next(iter(mapping))
        mapping[entry] = update
        cache.forget(key, [entry])


@pytest.mark.parametrize(
    "state",
    [
        {"k" * 200: {"a": 1}, "short": {"e" * 200: "long entry", "b": "x " * 100}},
        {"yes": {"no": "~", "": None, "multi\nline": "a\n\nb  c\n"}, "2": {"e": {}}},
        {"k": {"e": "word " * 50, "f": ["item " * 30, {"g": "z " * 60}]}},
    ],
    ids=["complex keys", "quoted keys and multi-line strings", "long strings wrapped"],
)
def test_cached_dump_by_entry_equals_dump(state):
    cache = checklist.DumpCache()
    assert checklist.dump_cached(state, cache) == checklist.dump(state)
    for key, value in state.items():
        entry = sorted(value)[-1]
        value[entry] = [value[entry]]
        cache.forget(key, [entry])
    assert checklist.dump_cached(state, cache) == checklist.dump(state)


def test_entries_sharing_a_value_are_dumped_with_its_anchor_until_they_no_longer_do():
    shared, day = [1, 2], datetime.date(2026, 11, 23)
    state, cache = {"k": {"a": shared, "b": 1, "c": day}, "z": 1}, checklist.DumpCache()
    assert checklist.dump_cached(state, cache) == checklist.dump(state)
    for entry, value in [("b", {"again": shared}), ("b", day), ("b", 2), ("a", [1, 2])]:
        state["k"][entry] = value
        cache.forget("k", [entry])
        text = checklist.dump_cached(state, cache)
        assert text == checklist.dump(state)
        assert ("&id001" in text) == (entry == "b" and value != 2)
    state["k"]["self"] = state["k"]  # an entry holding its own mapping: dumped whole
    cache.forget("k", ["self"])
    assert checklist.dump_cached(state, cache) == checklist.dump(state)


def test_forgetting_one_entry_dumps_that_entry_again_only(monkeypatch):
    state = {"big": {f"e{i:04d}": {"done": True, "n": i} for i in range(1000)}, "list": [1]}
    cache = checklist.DumpCache()
    checklist.dump_cached(state, cache)
    dump, dump_entry = checklist.dump, checklist._dump_entry
    dumped = []

    def counting_dump(data: dict) -> str:
        dumped.append(list(data))
        return dump(data)

    def counting_dump_entry(entry: str, value) -> str:
        dumped.append(entry)
        return dump_entry(entry, value)

    monkeypatch.setattr(checklist, "dump", counting_dump)
    monkeypatch.setattr(checklist, "_dump_entry", counting_dump_entry)
    state["big"]["e0042"]["done"] = False
    state["big"].update({"new": 1})
    cache.forget("big", ["e0042", "new"])
    assert checklist.dump_cached(state, cache) == dump(state)
    assert dumped == ["e0042", "new"]
    del state["big"]["e0001"]
    cache.forget("big", ["e0001"])
    assert checklist.dump_cached(state, cache) == dump(state)
    assert dumped == ["e0042", "new"]  # a deleted entry is only left out


def test_read_gives_the_tools_the_file_or_one_line_naming_it(tmp_path):
    path = tmp_path / "nowcast_checklist.yaml"
    assert checklist.read(path) == {}
    path.write_text("")
    assert checklist.read(path) == {}
    path.write_text("sleepyhead: {sleep time: 5}\n")
    assert checklist.read(path) == {"sleepyhead": {"sleep time": 5}}
    path.write_text("- a\n- b\n")
    with pytest.raises(NowcastkitError, match=rf"^{re.escape(str(path))}: got list, expected a"):
        checklist.read(path)
    path.write_text("sleepyhead: [\n")
    with pytest.raises(NowcastkitError, match="the checklist file is not valid YAML"):
        checklist.read(path)
    assert path.exists()  # a reader never moves the file aside
