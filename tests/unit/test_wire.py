"""The record format: NDJSON, a single (even pretty-printed) event, arrays, broken lines."""

from __future__ import annotations

import orjson

from pulse.wire import Undecodable, decode_record, encode_events


def test_round_trip_of_several_events() -> None:
    events = [{"a": 1}, {"b": [2, 3]}, {"c": "x\ny"}]
    assert [item for _, item in decode_record(encode_events(events))] == events


def test_single_pretty_printed_event() -> None:
    value = orjson.dumps({"event_id": "e", "nested": {"k": 1}}, option=orjson.OPT_INDENT_2)
    assert list(decode_record(value)) == [(value, {"event_id": "e", "nested": {"k": 1}})]


def test_broken_line_is_kept_byte_for_byte_and_others_survive() -> None:
    decoded = list(decode_record(b'{"a":1}\n{"b":\xff\n\n{"c":3}\n'))
    assert decoded[0] == (b'{"a":1}', {"a": 1})
    raw, item = decoded[1]
    assert raw == b'{"b":\xff' and isinstance(item, Undecodable)
    assert decoded[2] == (b'{"c":3}', {"c": 3})
    assert len(decoded) == 3


def test_array_record_yields_each_element() -> None:
    assert [item for _, item in decode_record(b'[{"a":1},{"b":2}]')] == [{"a": 1}, {"b": 2}]
