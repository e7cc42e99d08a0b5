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
    seen, fresh, dups = drop_seen(SeenIds.empty(), [event("a", 1), event("b", 2), event("a", 1)], 10, HOUR, 100)
    assert ids(fresh) == ["a", "b"] and ids(dups) == ["a"]
    restored = SeenIds.from_bytes(seen.to_bytes())
    assert restored == seen and len(seen.to_bytes()) == 2 * 24
    _, fresh, dups = drop_seen(restored, [event("b", 2), event("c", 3)], 11, HOUR, 100)
    assert ids(fresh) == ["c"] and ids(dups) == ["b"]


def test_replaying_the_same_record_emits_it_again() -> None:
    """After a crash the record at offset 10 is re-read with its ids already in the state."""
    record = [event("a", 1), event("b", 2), event("a", 1)]
    seen, _, _ = drop_seen(SeenIds.empty(), record, 10, HOUR, 100)
    again, fresh, dups = drop_seen(seen, record, 10, HOUR, 100)
    assert ids(fresh) == ["a", "b"] and ids(dups) == ["a"] and again == seen


def test_retention_and_cap_forget_old_ids() -> None:
    seen, _, _ = drop_seen(SeenIds.empty(), [event("old", 0), event("new", 2 * HOUR)], 1, HOUR, 100)
    assert len(seen.ids) == 1
    _, fresh, _ = drop_seen(seen, [event("old", 0)], 2, HOUR, 100)
    assert ids(fresh) == ["old"]
    capped, _, _ = drop_seen(SeenIds.empty(), [event(str(i), i) for i in range(10)], 1, HOUR, 4)
    assert sorted(ts for ts, _ in capped.ids.values()) == [6, 7, 8, 9]
