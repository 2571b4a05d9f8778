"""Messages between workers and the manager, and their YAML wire format.

    msg = Message(source="sleep", type="success", payload={"slept": 5})
    text = msg.serialize()              # one YAML mapping: source, type, payload
    Message.deserialize(text) == msg    # True

The wire format is the reference design's: one frame holding a YAML mapping
with exactly ``source``, ``type`` and ``payload``. Only plain YAML (str,
numbers, bool, None, dates, lists, mappings) is written or read, so no frame
can carry a Python object in either direction. A message is written as a JSON
object when that reads back the same to a YAML reader (:mod:`nowcastkit.codec`):
it is still a YAML flow mapping, and the manager reads it with ``json`` in a
few microseconds instead of PyYAML's tens; block YAML, as the reference design
writes, is read as YAML.
"""

from __future__ import annotations

from typing import Any

import yaml

from nowcastkit import codec
from nowcastkit.errors import MessageError

__all__ = ["MAX_MESSAGE_SIZE", "Message", "max_message_size"]

#: Frames larger than this (``zmq.max message size``) are refused by the broker.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024

_KEYS = frozenset(("source", "type", "payload"))
# Delivery details a nowcastkit worker adds; a reference-design worker's
# message has none of them and is accepted as it is.
_EXTRA_KEYS = {"id": str, "host": str, "pid": int, "run": str}
# libyaml's composer recurses in C: a frame nested tens of thousands deep overflows
# the stack and kills the receiving process, so depth is checked on the events first.
_MAX_DEPTH = 200
# Every collection a YAML text opens is marked by one of these characters (flow
# brackets, a block sequence's dash, a mapping key's colon or question mark), so a
# text with no more of them than _MAX_DEPTH cannot nest deeper, and the event walk,
# which costs as much as the load itself, is only needed for the rare text with more.
_COLLECTION_MARKS = "[{-:?"
_TOO_DEEP = f"message is nested deeper than {_MAX_DEPTH} levels"
# Since PyYAML 6.0.4, libyaml stops at a nesting depth of its own (1,000), and its
# scanner, reading ahead of the events, can reach that limit before the event walk
# reaches ours: both mean the one thing, so both get the one error.
_LIBYAML_TOO_DEEP = "maximum nesting depth"


class Message:
    """One message: who sent it, its registered type, and any payload.

    Frozen, and equal by source, type and payload; ``id``, ``host``, ``pid`` and
    ``run`` describe the delivery and do not take part in equality. A plain class
    rather than attrs, because every worker imports it and attrs would more than
    double nowcastkit's share of a worker's start-up.
    """

    __slots__ = ("host", "id", "payload", "pid", "run", "source", "type")

    source: str
    type: str
    payload: Any
    #: Unique per message (resends keep it), so the manager handles it once.
    id: str | None
    host: str | None
    pid: int | None
    #: The run id the manager gave the worker when it launched it.
    run: str | None

    def __init__(
        self,
        source: str,
        type: str,
        payload: Any = None,
        *,
        id: str | None = None,
        host: str | None = None,
        pid: int | None = None,
        run: str | None = None,
    ) -> None:
        for name, value in (("source", source), ("type", type)):
            if not isinstance(value, str):
                raise MessageError(f"message {name}: got {value!r}, expected a string")
        # One set per slot, written out: the manager makes a Message of every request.
        put = object.__setattr__
        put(self, "source", source)
        put(self, "type", type)
        put(self, "payload", payload)
        put(self, "id", id)
        put(self, "host", host)
        put(self, "pid", pid)
        put(self, "run", run)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Message cannot be changed: {name}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.source, self.type, self.payload) == (other.source, other.type, other.payload)

    def __hash__(self) -> int:
        return hash((self.source, self.type, self.payload))

    def __repr__(self) -> str:
        extras = "".join(
            f", {key}={getattr(self, key)!r}"
            for key in _EXTRA_KEYS
            if getattr(self, key) is not None
        )
        return (
            f"Message(source={self.source!r}, type={self.type!r}, payload={self.payload!r}{extras})"
        )

    def serialize(self) -> str:
        """Return the wire text; raise MessageError for a payload YAML cannot carry safely."""
        body = {"source": self.source, "type": self.type, "payload": self.payload}
        for key in _EXTRA_KEYS:
            if (value := getattr(self, key)) is not None:
                body[key] = value
        try:
            return codec.encode(body)
        except yaml.YAMLError as err:
            raise MessageError(
                f"{self.source}: payload of {self.type!r} message cannot be sent: {err}; "
                "use str, int, float, bool, None, dates, lists and mappings (str(path) for paths)"
            ) from None

    @classmethod
    def deserialize(cls, text: str | bytes) -> Message:
        """Decode wire text; raise MessageError naming what is wrong with it."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise MessageError("message is not UTF-8 text") from None
        try:
            body = _read(text)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or type(err).__name__
            if _LIBYAML_TOO_DEEP in problem:
                raise MessageError(_TOO_DEEP) from None
            raise MessageError(f"message is not valid YAML: {problem}") from None
        except ValueError as err:  # e.g. a NUL byte in the frame
            raise MessageError(f"message is not valid YAML: {err}") from None
        if not isinstance(body, dict):
            raise MessageError(f"message is not a mapping: got {type(body).__name__}")
        others = body.keys() - _KEYS
        if len(body) - len(others) != len(_KEYS) or not others <= _EXTRA_KEYS.keys():
            got = ", ".join(sorted(map(str, body))) or "nothing"
            raise MessageError(
                f"message keys: got {got}, expected payload, source, type "
                "(and optionally host, id, pid, run)"
            )
        extras = {}
        for key in others:
            kind, value = _EXTRA_KEYS[key], body[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise MessageError(f"message {key}: got {value!r}, expected {kind.__name__}")
            extras[key] = value
        return cls(body["source"], body["type"], body["payload"], **extras)


def _read(text: str) -> Any:
    """The frame's value: a JSON object as JSON, anything else (or a failed JSON read) as YAML."""
    if text[:1] == "{":
        try:
            body = codec.decode_json(text)
        except RecursionError:
            raise MessageError(_TOO_DEEP) from None
        except ValueError:
            pass
        else:
            if text.count("[") + text.count("{") > _MAX_DEPTH and _depth(body) > _MAX_DEPTH:
                raise MessageError(_TOO_DEEP)
            return body
    _check_depth(text)
    return yaml.load(text, Loader=yaml.CSafeLoader)


def _depth(value: Any) -> int:
    """How deep lists and mappings nest in *value* (a scalar is 0)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in item)
    return deepest


def _check_depth(text: str) -> None:
    if sum(map(text.count, _COLLECTION_MARKS)) <= _MAX_DEPTH:
        return
    depth = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                raise MessageError(_TOO_DEEP)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def max_message_size(config: Any) -> int:
    """The largest frame the system carries, from ``zmq.max message size``."""
    return config["zmq"].get("max message size", MAX_MESSAGE_SIZE)
