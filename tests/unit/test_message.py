"""The YAML wire codec: round trips, refusals at the sender, and malformed frames."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from nowcastkit import Message, MessageError
from tests.unit.plain_data import texts
from tests.unit.plain_data import values as payloads


@given(source=texts, msg_type=texts, payload=payloads)
def test_round_trip(source, msg_type, payload):
    msg = Message(source, msg_type, payload)
    text = msg.serialize()
    assert Message.deserialize(text) == msg
    assert Message.deserialize(text.encode()) == msg


@given(payload=payloads)
def test_wire_text_is_plain_yaml_with_exactly_three_keys(payload):
    body = yaml.safe_load(Message("sleep", "success", payload).serialize())
    assert body == {"source": "sleep", "type": "success", "payload": payload}


def test_messages_compare_by_value():
    assert Message("sleep", "success", {"a": 1}) == Message("sleep", "success", {"a": 1})
    assert Message("sleep", "success") != Message("sleep", "failure")
    assert Message("sleep", "success").payload is None


def test_reads_a_message_written_by_a_reference_system_worker():
    # A NEMO_Nowcast worker sends yaml.dump(dict) of its message.
    text = yaml.dump({"source": "sleep", "type": "success", "payload": {"sleep time": 5}})
    assert Message.deserialize(text) == Message("sleep", "success", {"sleep time": 5})


@pytest.mark.parametrize(
    "payload",
    [Path("/results/file.nc"), {"files": [Path("a")]}, object(), {"nested": {"x": {1, object()}}}],
)
def test_non_plain_payload_refused_at_serialize(payload):
    with pytest.raises(MessageError) as caught:
        Message("sleep", "success", payload).serialize()
    text = str(caught.value)
    assert "\n" not in text
    assert "sleep: payload of 'success' message cannot be sent" in text
    assert "str(path)" in text


@pytest.mark.parametrize(("field", "value"), [("source", 1), ("type", None), ("source", b"x")])
def test_source_and_type_must_be_strings(field, value):
    kwargs = {"source": "sleep", "type": "success", field: value}
    with pytest.raises(MessageError, match=f"message {field}: got"):
        Message(**kwargs)


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"source: [sleep\ntype: success", "not valid YAML"),
        (b"\xff\xfe\x00binary junk\x80", "not UTF-8"),
        (b"a: 1\x00", "not valid YAML"),
        (b"source: sleep\x07\n", "not valid YAML"),
        (b"just a string", "not a mapping: got str"),
        (b"- source\n- type\n", "not a mapping: got list"),
        (b"", "not a mapping: got NoneType"),
        (b"source: sleep\ntype: success\n", "keys: got source, type"),
        (b"source: sleep\ntype: success\npayload: 1\nextra: 2\n", "keys: got extra"),
        (b"source: 5\ntype: success\npayload: null\n", "message source: got 5"),
        (b"source: sleep\ntype: [a]\npayload: null\n", "message type: got ['a']"),
        (b"source: !!python/name:os.system\ntype: x\npayload: null\n", "not valid YAML"),
        (b"a: 1\n---\nb: 2\n", "not valid YAML"),
    ],
)
def test_malformed_frames_raise_message_error(frame, problem):
    with pytest.raises(MessageError) as caught:
        Message.deserialize(frame)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_message_error(frame):
    try:
        msg = Message.deserialize(frame)
    except MessageError:
        return
    assert isinstance(msg.source, str)
    assert isinstance(msg.type, str)


def _nested(kind: str, depth: int) -> bytes:
    if kind == "flow":
        return b"[" * depth + b"]" * depth
    if kind == "block sequence":
        return b"- " * depth + b"x"
    if kind == "block mapping":
        return b"".join(b" " * level + b"a:\n" for level in range(depth))
    return b"{a: " * depth  # unclosed flow mappings


_KINDS = ["flow", "block sequence", "block mapping", "open flow"]
_DEPTHS = [201, 999, 1_001, 5_000, 100_000]


@pytest.mark.parametrize(
    ("kind", "depth"),
    # An indented mapping 100,000 deep would be a 5 GB frame, far over any frame cap.
    [(k, d) for k in _KINDS for d in _DEPTHS if (k, d) != ("block mapping", 100_000)],
)
def test_deeply_nested_frame_is_refused_not_fatal(kind, depth):
    # Depths on both sides of libyaml's own limit (1,000 since PyYAML 6.0.4; none
    # before): whichever layer notices, the sender is told the one limit.
    # Before any depth check, libyaml's composer overflowed the C stack on these.
    with pytest.raises(MessageError, match=r"^message is nested deeper than 200 levels$"):
        Message.deserialize(_nested(kind, depth))


def test_reasonably_nested_payload_round_trips():
    payload: list = []
    for _ in range(150):
        payload = [payload]
    msg = Message("sleep", "success", {"deep": payload})
    assert Message.deserialize(msg.serialize()) == msg
