"""One record through the validator's pure logic."""

from __future__ import annotations

import orjson

from stream_jobs.validation import check_record

GOOD = {"event_id": "e1", "type": "login", "user_id": "u1", "ts": 1_763_856_000_000}


def test_record_with_good_bad_and_broken_lines() -> None:
    value = b"\n".join(
        [
            orjson.dumps(GOOD),
            orjson.dumps({**GOOD, "event_id": "e2", "user_id": "u2"}),
            orjson.dumps({**GOOD, "ts": "soon"}),
            b"{nope",
        ]
    )
    checked = check_record(value, "events/0@7")
    assert checked.events_in == 4
    assert [(e.user_id, e.event_id) for e in checked.events] == [("u1", "e1"), ("u2", "e2")]
    assert [(d.letter_id, d.reason, d.source) for d in checked.dead_letters] == [
        ("events/0@7#2", "bad_timestamp", "events/0@7"),
        ("events/0@7#3", "bad_json", "events/0@7"),
    ]
    assert checked.dead_letters[1].raw == b"{nope"


def test_empty_record_is_a_dead_letter() -> None:
    checked = check_record(b"", "events/1@0")
    assert [d.reason for d in checked.dead_letters] == ["empty_record"]


def test_an_event_already_in_normalised_form_is_published_as_it_came() -> None:
    normal = {"event_id": "e1", "type": "page_view", "user_id": "u1", "ts": 1_763_856_000_000, "props": {},
              "context": {"path": "/pricing"}}  # fmt: skip
    stamped = {**normal, "event_id": "e2", "server_received_at": 1_763_856_000_500}
    spaced = b'{"event_id": "e3", "type": "login", "user_id": "u1", "ts": 1763856000000, "props": {}, "context": {}}'
    again = [
        {**normal, "event_id": "f1", "ts": "2025-11-23T00:00:00Z"},  # a string time becomes epoch ms
        {**normal, "event_id": "f2", "ts": 1_763_856_000_000.0},  # so does a float
        {**normal, "event_id": "f3", "context": {"url": "https://x.io/pricing?a=1"}},  # the path is derived
        {"event_id": "f4", "type": "login", "user_id": "u1", "ts": 1_763_856_000_000},  # props and context added
        {**normal, "event_id": "f5", "server_received_at": None},  # a null stamp is left out
    ]
    value = b"\n".join([orjson.dumps(normal), orjson.dumps(stamped), spaced, *(orjson.dumps(e) for e in again)])
    checked = check_record(value, "events/0@1")
    assert checked.lines[:3] == value.split(b"\n")[:3]
    assert checked.lines[3:] == [orjson.dumps(event.to_dict()) for event in checked.events[3:]]
    assert [orjson.loads(line)["event_id"] for line in checked.lines] == ["e1", "e2", "e3", "f1", "f2", "f3", "f4", "f5"]


def test_a_pretty_printed_event_is_published_on_one_line() -> None:
    checked = check_record(orjson.dumps(GOOD, option=orjson.OPT_INDENT_2), "events/0@2")
    assert checked.lines == [orjson.dumps(checked.events[0].to_dict())]


def test_a_record_with_blank_lines_and_an_array_counts_every_event() -> None:
    bad = {**GOOD, "event_id": "e3", "type": "video_played"}
    value = b"\n".join([orjson.dumps(GOOD), b"", orjson.dumps([{**GOOD, "event_id": "e2"}, bad]), b""])
    checked = check_record(value, "events/0@3")
    assert checked.events_in == 3
    assert [e.event_id for e in checked.events] == ["e1", "e2"]
    assert [(d.letter_id, d.reason, d.raw) for d in checked.dead_letters] == [
        ("events/0@3#2", "unknown_type", orjson.dumps(bad))
    ]
