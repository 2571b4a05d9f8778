"""Property-based: whatever frames arrive, the manager replies and its state stays loadable."""

from __future__ import annotations

import yaml
from conftest import base_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nowcastkit import Message
from nowcastkit import store as state
from nowcastkit.config import load_config
from nowcastkit.manager import MANAGER_REPLIES, ManagerProcess

NEXT_WORKERS = """\
from nowcastkit import NextWorker


def after_sleep(msg, config, checklist):
    return []


def after_awaken(msg, config, checklist):
    if msg.payload == "boom":
        raise RuntimeError("boom")
    if msg.payload == "bad":
        return "not a list"
    return [], {"sleep"}
"""

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
bodies = st.fixed_dictionaries(
    {
        "source": st.sampled_from(["sleep", "awaken", "ghost"]) | texts,
        "type": st.sampled_from(
            ["success", "failure", "crash", "need", "clear checklist", "hello", "checklist key"]
        )
        | texts,
        "payload": plain | st.sampled_from(["boom", "bad", "sleepyhead"]),
    },
    optional={
        "id": st.sampled_from(["a", "b", "c"]) | texts,
        "pid": st.integers(1, 2**22),
        "host": texts,
        "run": texts,
        "extra": plain,
    },
)
well_formed = bodies.map(lambda body: [yaml.safe_dump(body).encode()])
raw = st.lists(st.binary(max_size=40), min_size=1, max_size=3)
requests = st.lists(
    st.tuples(st.sampled_from([b"", b"tag-1", b"tag-2"]), well_formed | raw), max_size=15
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests)
def test_every_frame_gets_a_reply_and_state_stays_loadable(tmp_path, batch):
    config_path = tmp_path / "nowcast.yaml"
    if not config_path.exists():
        config = base_config(tmp_path)
        config["message registry"]["workers"]["sleep"]["need"] = "needs"
        config["message registry"]["workers"]["sleep"]["clear checklist"] = "clear it"
        config_path.write_text(yaml.safe_dump(config))
        (tmp_path / "next_workers.py").write_text(NEXT_WORKERS)
    manager = ManagerProcess.start(load_config(config_path))
    try:
        for tag, frames in batch:
            [reply_frames], _launches = manager.answer([[tag, *frames] if tag else frames])
            reply = Message.deserialize(reply_frames[-1])
            assert reply.source == "manager"
            assert reply.type in MANAGER_REPLIES
            if tag:
                assert reply_frames[0] == tag
        assert state.load_checklist(manager.ledger.store) == manager.ledger.checklist
        on_file = yaml.safe_load((tmp_path / "nowcast_checklist.yaml").read_text())
        assert on_file == manager.ledger.checklist
        assert manager.ledger.store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        manager.ledger.store.conn.close()


def test_a_resent_id_gets_its_first_reply_and_changes_nothing(tmp_path):
    config_path = tmp_path / "nowcast.yaml"
    config_path.write_text(yaml.safe_dump(base_config(tmp_path)))
    (tmp_path / "next_workers.py").write_text(NEXT_WORKERS)
    manager = ManagerProcess.start(load_config(config_path))
    first = Message("sleep", "success", {"n": 1}, id="same").serialize().encode()
    again = Message("sleep", "success", {"n": 2}, id="same").serialize().encode()
    replies, _launches = manager.answer([[b"t1", first]])
    assert manager.answer([[b"t2", again]])[0][0][1] == replies[0][1]
    assert manager.ledger.checklist == {"sleepyhead": {"n": 1}}
    manager.ledger.store.conn.close()
