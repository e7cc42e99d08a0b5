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


def test_blank_lines_are_skipped_and_an_array_line_is_spread_among_the_others() -> None:
    value = b'{"a":1}\n\n[{"b":2}, {"c":3}]\n  \n{"d":4}\n'
    assert decode_record(value) == [
        (b'{"a":1}', {"a": 1}),
        (b'{"b":2}', {"b": 2}),
        (b'{"c":3}', {"c": 3}),
        (b'{"d":4}', {"d": 4}),
    ]


def test_a_pretty_printed_array_is_one_document() -> None:
    value = orjson.dumps([{"a": 1}, {"b": 2}], option=orjson.OPT_INDENT_2)
    assert decode_record(value) == [(b'{"a":1}', {"a": 1}), (b'{"b":2}', {"b": 2})]


def test_each_line_of_a_record_is_its_own_event_even_when_it_is_not_an_object() -> None:
    decoded = decode_record(b'{"a":1}\n"x"\n3\nnull')
    assert decoded == [(b'{"a":1}', {"a": 1}), (b'"x"', "x"), (b"3", 3), (b"null", None)]


def test_a_broken_first_line_makes_the_whole_value_a_candidate_only_if_it_parses() -> None:
    assert [raw for raw, _ in decode_record(b'{"a":\n{"b":2}')] == [b'{"a":', b'{"b":2}']
    assert decode_record(b'{"a":\n2}\n') == [(b'{"a":\n2}\n', {"a": 2})]
