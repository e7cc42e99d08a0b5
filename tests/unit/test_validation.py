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
