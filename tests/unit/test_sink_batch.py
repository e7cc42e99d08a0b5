"""The sink's pure parts: rows from records, offsets to commit, deduplication tokens."""

from __future__ import annotations

import orjson
import pytest

from pulse.dead_letter import DeadLetter
from sinks.batch import Batch
from sinks.rows import EVENTS, add_dead_letter, add_valid_events


def test_rows_offsets_and_tokens() -> None:
    batch = Batch()
    value = b"\n".join(
        orjson.dumps({"event_id": f"e{i}", "type": "login", "user_id": "u", "ts": i, "props": {}, "context": {}})
        for i in range(3)
    )
    assert add_valid_events(value, batch.tables[EVENTS]) == [0, 1, 2]
    batch.track("valid", 0, 10)
    batch.track("valid", 0, 11)
    letter = DeadLetter("events/0@3#0", b"\xff", "bad_json", ("not JSON",), "events/0@3", 5)
    add_dead_letter("dlq", 1, 4, letter, batch.tables["dead_letters"])
    batch.track("dlq", 1, 4)
    assert batch.rows == 4
    assert batch.tables[EVENTS].data[0] == ["e0", "e1", "e2"]
    assert batch.commit_offsets() == {("valid", 0): 12, ("dlq", 1): 5}
    same = Batch(ranges=dict(batch.ranges))
    assert same.dedup_token(EVENTS) == batch.dedup_token(EVENTS) != batch.dedup_token("dead_letters")
    assert batch.is_due(max_rows=4, max_seconds=60) and not batch.is_due(max_rows=5, max_seconds=60)


def test_unreadable_record_raises_for_the_caller() -> None:
    with pytest.raises(ValueError):
        add_valid_events(b"{broken", Batch().tables[EVENTS])


def test_dead_letter_headers_round_trip() -> None:
    letter = DeadLetter("f.jsonl:3", b"raw", "bad_prop", ("props.amount: must be a number",), "f.jsonl:3", 1234)
    assert DeadLetter.from_record(letter.raw, letter.headers(), "dlq/0@9") == letter
    foreign = DeadLetter.from_record(b"x", None, "dlq/0@9")
    assert (foreign.letter_id, foreign.reason, foreign.raw) == ("dlq/0@9", "unknown", b"x")
