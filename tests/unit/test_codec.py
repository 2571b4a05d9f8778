"""Plain data as text: JSON only where any YAML reader reads the same value back."""

from __future__ import annotations

import datetime
import json

import pytest
import yaml
from hypothesis import given

from nowcastkit import Message, MessageError, codec
from tests.unit.plain_data import values


@given(values)
def test_every_reader_gets_the_value_back(value):
    text = codec.encode(value)
    assert codec.decode(text) == value
    # The reference design reads messages with PyYAML's pure-Python safe loader.
    assert yaml.safe_load(text) == value
    assert yaml.load(text, Loader=yaml.CSafeLoader) == value


def test_plain_data_is_written_as_json():
    value = {"files": ["a.nc", "b.nc"], "n": 3, "ratio": 0.25, "ok": True, "note": None}
    assert json.loads(codec.encode(value)) == value
    assert codec.encode({"name": "Bjørn 日本"}) == '{"name": "Bj\\u00f8rn \\u65e5\\u672c"}'


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        {"scale": 1e-05},  # YAML 1.1 reads 1e-05 as a string
        {"big": 1e16},
        {"inf": float("inf")},
        {"emoji": "\U0001f600"},  # escaped as a surrogate pair, which YAML readers do not join
        {"del": "a\x7fb"},
        {"k" * 200: 1},  # PyYAML refuses keys over 1024 characters as written
        {1: "int key"},
        {"day": datetime.date(2026, 11, 23)},
        _nested(201),
    ],
)
def test_what_json_would_change_is_written_as_yaml(value):
    assert not codec.fits_json(value)
    text = codec.encode(value)
    assert text == codec.yaml_text(value)
    assert yaml.safe_load(text) == value == codec.decode(text)


def test_json_numbers_and_constants_read_as_yaml_reads_them():
    assert codec.decode('{"a": 1e5, "b": 1.0e5, "c": 1.5e-7, "d": 2.5, "e": 7}') == {
        "a": "1e5", "b": "1.0e5", "c": 1.5e-07, "d": 2.5, "e": 7,
    }  # fmt: skip
    assert codec.decode('{"a": NaN}') == {"a": "NaN"}


def test_yaml_text_is_read_as_yaml():
    assert codec.decode("a: 1\nb: [x, y]\n") == {"a": 1, "b": ["x", "y"]}
    assert codec.decode("{a: 1}") == {"a": 1}
    assert codec.decode("5\n...\n") == 5


def test_a_plain_message_is_json_a_reference_worker_can_read():
    msg = Message("sleep", "success", {"slept": 5}, id="a1", host="h", pid=7)
    text = msg.serialize()
    assert text.startswith("{")
    assert yaml.safe_load(text) == {
        "source": "sleep", "type": "success", "payload": {"slept": 5},
        "id": "a1", "host": "h", "pid": 7,
    }  # fmt: skip


def test_a_json_message_nested_too_deep_is_refused():
    deep = "[" * 300 + "]" * 300
    with pytest.raises(MessageError, match="nested deeper than 200"):
        Message.deserialize(f'{{"source": "s", "type": "t", "payload": {deep}}}')
    very_deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(MessageError, match="nested deeper than 200"):
        Message.deserialize(f'{{"source": "s", "type": "t", "payload": {very_deep}}}')


def test_a_flow_mapping_that_is_not_json_is_read_as_yaml():
    assert Message.deserialize("{source: sleep, type: success, payload: null}") == Message(
        "sleep", "success"
    )
