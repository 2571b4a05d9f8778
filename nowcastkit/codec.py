"""Plain data as text: JSON where every YAML reader reads it the same, YAML otherwise.

    text = encode({"source": "sleep", "type": "success", "payload": {"slept": 5}})
    decode(text) == {"source": "sleep", "type": "success", "payload": {"slept": 5}}

JSON text is a YAML flow collection, so what :func:`encode` writes is still
YAML to any reader (a reference-design manager or worker reads it with
``yaml.safe_load``), and reading it costs microseconds instead of PyYAML's tens.
JSON is written only where a YAML 1.1 reader gets exactly the same value back:
plain str, int, float, bool, None, lists and str-keyed mappings, floats with a
decimal point, no characters a YAML reader refuses. Anything else (dates,
``1e+16``, emoji, long keys) is written as block YAML, as before.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

import yaml

__all__ = ["decode", "encode", "fits_json", "yaml_text"]

#: Deeper data is written as YAML; the message reader refuses frames deeper than 200.
_MAX_DEPTH = 200
# PyYAML refuses a mapping key longer than 1024 characters as written (escapes count).
_MAX_KEY = 160
_ASTRAL = "\U00010000"


def yaml_text(value: Any) -> str:
    """Block-style YAML with libyaml's emitter; raises yaml.YAMLError for non-plain data."""
    return yaml.dump(value, Dumper=yaml.CSafeDumper, default_flow_style=False)


def encode(value: Any) -> str:
    """*value* as text: JSON when :func:`fits_json`, else block YAML."""
    kind = type(value)  # the commonest entries first, as json.dumps writes them
    if kind is int:
        return repr(value)
    if kind is str and _fits_str(value):
        return encode_basestring_ascii(value)
    if fits_json(value):
        return json.dumps(value)
    return yaml_text(value)


def fits_json(value: Any, depth: int = 0) -> bool:
    """Whether JSON text of *value* reads back the same through JSON and through YAML."""
    kind = type(value)
    if kind is str:
        return _fits_str(value)
    if kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return "." in repr(value)  # YAML 1.1 reads 1e-05, inf and nan as strings
    if depth >= _MAX_DEPTH:
        return False
    if kind is list:
        return all(fits_json(item, depth + 1) for item in value)
    if kind is dict:
        return all(
            type(key) is str
            and len(key) <= _MAX_KEY
            and _fits_str(key)
            and fits_json(item, depth + 1)
            for key, item in value.items()
        )
    return False


def _fits_str(text: str) -> bool:
    # Escaped as \\uXXXX, an astral character becomes a surrogate pair, which YAML
    # readers do not join; DEL goes out raw, and strict YAML readers refuse it.
    return (not text or max(text) < _ASTRAL) and "\x7f" not in text


def decode(text: str | bytes) -> Any:
    """The value of JSON or YAML *text*, read as a YAML 1.1 reader reads it.

    JSON is tried first; text that is not JSON is read as YAML (raising
    yaml.YAMLError or ValueError as ``yaml.load`` does).
    """
    try:
        return decode_json(text)
    except ValueError:
        return yaml.load(text, Loader=yaml.CSafeLoader)


def decode_json(text: str | bytes) -> Any:
    """JSON *text* as YAML reads it: ``1e5`` and ``NaN`` stay strings; raises ValueError."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if text[:1] in _JSON_SPACE:  # JSONDecoder.decode, which also takes leading whitespace
        return _READER.decode(text)
    value, end = _READER.raw_decode(text)  # what decode does, without its two regex matches
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return _READER.decode(text)  # raises "Extra data", as decode does
    return value


def _yaml_float(literal: str) -> float | str:
    """A JSON number with a fraction or exponent, as YAML 1.1 reads it."""
    if "." not in literal:
        return literal
    exponent = literal.lower().partition("e")[2]
    return float(literal) if not exponent or exponent[0] in "+-" else literal


def _not_yaml(constant: str) -> Any:
    raise ValueError(f"{constant} is not a YAML value")


_JSON_SPACE = " \t\n\r"
# One reader for every call: json.loads builds a new one each time it is given hooks.
_READER = json.JSONDecoder(parse_float=_yaml_float, parse_constant=_not_yaml)
