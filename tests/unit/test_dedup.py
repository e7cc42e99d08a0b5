"""Duplicate detection per user: exact, compact, bounded, and safe to replay."""

from __future__ import annotations

from pulse.contract import Event
from stream_jobs.dedup import SeenIds, drop_seen

HOUR = 3_600_000


def event(event_id: str, ts: int) -> Event:
    return Event(event_id, "login", "u1", ts, {}, {})


def ids(events: list[Event]) -> list[str]:
    return [e.event_id for e in events]


def test_duplicates_within_and_across_records() -> None:
    first = drop_seen(SeenIds.empty(), [event("a", 1), event("b", 2), event("a", 1)], 10, HOUR, 100)
    assert ids(first.new) == ["a", "b"] and ids(first.duplicates) == ["a"] and first.replayed == []
    restored = SeenIds.from_bytes(first.seen.to_bytes())
    assert restored == first.seen and len(first.seen.to_bytes()) == 2 * 24
    second = drop_seen(restored, [event("b", 2), event("c", 3)], 11, HOUR, 100)
    assert ids(second.new) == ["c"] and ids(second.duplicates) == ["b"]


def test_replaying_the_same_record_emits_it_again() -> None:
    """After a crash the record at offset 10 is re-read with its ids already in the state."""
    record = [event("a", 1), event("b", 2), event("a", 1)]
    first = drop_seen(SeenIds.empty(), record, 10, HOUR, 100)
    again = drop_seen(first.seen, record, 10, HOUR, 100)
    assert again.new == [] and ids(again.replayed) == ["a", "b"] and ids(again.duplicates) == ["a"]
    assert again.seen == first.seen


def test_retention_and_cap_forget_old_ids() -> None:
    kept = drop_seen(SeenIds.empty(), [event("old", 0), event("new", 2 * HOUR)], 1, HOUR, 100).seen
    assert len(kept.ids) == 1
    assert ids(drop_seen(kept, [event("old", 0)], 2, HOUR, 100).new) == ["old"]
    capped = drop_seen(SeenIds.empty(), [event(str(i), i) for i in range(10)], 1, HOUR, 4).seen
    assert sorted(ts for ts, _ in capped.ids.values()) == [6, 7, 8, 9]
