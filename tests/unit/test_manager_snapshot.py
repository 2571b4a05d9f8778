"""The checklist file the manager writes: always the dump of its checklist, made key by key."""

from __future__ import annotations

import logging
import uuid

import pytest
import yaml
from conftest import base_config

from nowcastkit import Message, checklist
from nowcastkit import store as state
from nowcastkit.config import load_config
from nowcastkit.manager import ManagerProcess
from nowcastkit.manager.checklist_file import ChecklistFile

pytestmark = pytest.mark.timeout(60)

NEXT_WORKERS = """\
def after_a(msg, config, checklist):
    return []


def after_b(msg, config, checklist):
    return []


def after_c(msg, config, checklist):
    if msg.payload == "replace a":  # the checklist is read-only: a TypeError
        checklist["a"] = {"replaced by": "after_c"}
    return []
"""


def make_manager(folder, prefilled: dict | None = None):
    config = base_config(folder)
    for name in "abc":
        config["message registry"]["workers"][name] = {
            "checklist key": name, "success": "done", "clear checklist": "clear it",
        }  # fmt: skip
    (folder / "nowcast.yaml").write_text(yaml.safe_dump(config))
    (folder / "next_workers.py").write_text(NEXT_WORKERS)
    if prefilled:
        (folder / "nowcast_checklist.yaml").write_text(checklist.dump(prefilled))
    manager = ManagerProcess.start(load_config(folder / "nowcast.yaml"))
    return manager


@pytest.fixture
def manager(tmp_path):
    manager = make_manager(tmp_path)
    yield manager
    manager.ledger.store.conn.close()


def request(source: str, payload=None, msg_id: str | None = None, msg_type="success"):
    msg_id = msg_id or uuid.uuid4().hex
    body = Message(source, msg_type, payload, id=msg_id).serialize().encode()
    return [f"tag-{msg_id}".encode(), body]


def on_file(manager) -> str:
    return manager.ledger.file.path.read_text()


def test_the_file_is_the_dump_of_the_checklist_after_each_message(manager):
    steps = [
        [request("a", {"n": 1}), request("b", ["x"])],
        [request("a", {"m": 2})],  # updates a's mapping in place
        [request("b", None), request("c", "text")],
        [request("a", ["replaced"]), request("b", {"n": 3})],
        [request("c", "replace a")],  # after_c fails to replace a; c is still updated
    ]
    for batch in steps:
        manager.answer(batch)
        assert on_file(manager) == checklist.dump(manager.ledger.checklist)
    assert manager.ledger.checklist == {
        "a": ["replaced"], "b": {"n": 3}, "c": "replace a",
    }  # fmt: skip


def test_the_file_shows_rolled_back_changes_undone(manager):
    manager.answer([request("a", {"n": 1}), request("b", [1])])
    manager.ledger.store.conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.id = 'doomed'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    manager.answer([request("a", {"n": 2}, "doomed"), request("c", {"n": 3}, "c1")])
    assert manager.ledger.checklist == {"a": {"n": 1}, "b": [1], "c": {"n": 3}}
    assert on_file(manager) == checklist.dump(manager.ledger.checklist)

    # A failed commit undoes the whole batch, a clear among it included.
    manager.ledger.store.conn.execute("DROP TRIGGER refuse")
    manager.ledger.store.conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    manager.ledger.store.conn.execute(
        "CREATE TABLE child (ref INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    manager.ledger.store.conn.execute("PRAGMA foreign_keys = ON")
    manager.ledger.store.conn.execute(
        "CREATE TRIGGER late AFTER INSERT ON messages WHEN NEW.id = 'late'"
        " BEGIN INSERT INTO child VALUES (42); END"
    )
    batch = [
        request("a", {"n": 4}, "a4"),
        request("a", None, "clear", "clear checklist"),
        request("b", [5], "late"),
    ]
    manager.answer(batch)
    manager.answer([request("c", {"n": 6}, "c6")])
    assert manager.ledger.checklist == {"a": {"n": 1}, "b": [1], "c": {"n": 6}}
    assert on_file(manager) == checklist.dump(manager.ledger.checklist)
    assert state.load_checklist(manager.ledger.store) == manager.ledger.checklist


def test_the_file_after_a_clear_and_after_a_clear_undone(manager, caplog):
    manager.answer([request("a", {"n": 1}), request("b", [1]), request("c", "c")])
    before = checklist.dump(manager.ledger.checklist)
    with caplog.at_level(logging.INFO, logger="checklist"):
        manager.answer([request("a", None, "clear", "clear checklist"), request("b", [2])])
    assert f"checklist:\n{before}" in caplog.text
    assert manager.ledger.checklist == {"b": [2]}
    assert on_file(manager) == checklist.dump(manager.ledger.checklist)

    manager.answer([request("a", {"n": 3}), request("c", "c")])
    manager.ledger.store.conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.type = 'clear checklist'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    manager.answer([request("a", None, "again", "clear checklist"), request("a", {"m": 4})])
    assert manager.ledger.checklist == {"a": {"n": 3, "m": 4}, "b": [2], "c": "c"}
    assert on_file(manager) == checklist.dump(manager.ledger.checklist)


def test_a_write_dumps_only_the_keys_changed_since_the_last(tmp_path, monkeypatch):
    prefilled = {f"key {i:05d}": {"done": True, "files": [f"f{i}.nc"], "n": i} for i in range(5000)}
    manager = make_manager(tmp_path, prefilled)
    dump, dump_entry = checklist.dump, checklist._dump_entry
    dumped = []

    def counting_dump(data: dict) -> str:
        dumped.append(list(data))
        return dump(data)

    def counting_dump_entry(entry: str, value) -> str:  # an entry of a mapping, such as a's
        dumped.append(entry)
        return dump_entry(entry, value)

    monkeypatch.setattr(checklist, "dump", counting_dump)
    monkeypatch.setattr(checklist, "_dump_entry", counting_dump_entry)
    try:
        manager.answer([request("a", {"n": 1})])
        manager.answer([request("a", {"m": 2}), request("b", [1])])
        manager.ledger.file.write(manager.ledger.checklist, 0.0)
        assert dumped == ["n", "m", ["b"]]  # a's entries one by one, then b; none of the 5,000
        assert on_file(manager) == dump(manager.ledger.checklist)
        assert manager.ledger.checklist == {**prefilled, "a": {"n": 1, "m": 2}, "b": [1]}
    finally:
        manager.ledger.store.conn.close()


def test_a_file_edited_while_the_manager_was_down_is_kept_and_rewritten(tmp_path, caplog):
    manager = make_manager(tmp_path, prefilled={"a": {"n": 1}})
    manager.ledger.store.conn.close()
    path = tmp_path / "nowcast_checklist.yaml"
    for n in (2, 3):  # two restarts within the same second: both edits are kept
        path.write_text(f"a: {{n: {n}}}\n")
        with caplog.at_level(logging.WARNING, logger="manager"):
            manager = make_manager(tmp_path)
        manager.ledger.store.conn.close()
        assert yaml.safe_load(path.read_text()) == {"a": {"n": 1}}
    kept = sorted(p.read_text() for p in tmp_path.glob("nowcast_checklist.yaml.differs-*"))
    assert kept == ["a: {n: 2}\n", "a: {n: 3}\n"]
    assert "differs from the manager's store" in caplog.text


def test_changes_are_written_at_once_after_a_quiet_spell_then_at_most_every_delay(tmp_path):
    file = ChecklistFile(tmp_path / "checklist.yaml", delay=1.0)
    state = {"a": {"n": 1}}
    file.changed(state, now=100.0)
    assert yaml.safe_load(file.path.read_text()) == {"a": {"n": 1}}
    state["a"] = {"n": 2}
    file.forget("a")
    file.changed(state, now=100.2)
    file.flush(state, now=100.9)
    assert (file.due, yaml.safe_load(file.path.read_text())) == (101.0, {"a": {"n": 1}})
    file.flush(state, now=101.0)
    assert (file.due, yaml.safe_load(file.path.read_text())) == (None, {"a": {"n": 2}})


def test_forgetting_entries_of_a_key_writes_them_anew(tmp_path):
    file = ChecklistFile(tmp_path / "checklist.yaml", delay=0.0)
    state = {"a": {"n": 1, "m": 2}, "b": [1]}
    file.write(state, now=0.0)
    state["a"].update({"n": 10, "new": 3})
    file.forget("a", ["n", "new"])
    file.write(state, now=1.0)
    assert file.path.read_text() == checklist.dump(state)


def test_an_unwritable_file_is_logged_not_raised(tmp_path, caplog):
    file = ChecklistFile(tmp_path / "missing folder" / "checklist.yaml")
    with caplog.at_level(logging.ERROR, "manager"):
        file.write({"a": 1}, now=0.0)
    assert "checklist file write failed (the store still has it)" in caplog.text
