"""Duplicate detection per user: exact, compact, bounded, expiring against the partition's watermark."""

from __future__ import annotations

from stream_jobs.dedup import DedupSlice, SeenIds, id_hash

HOUR = 3_600_000


def test_an_id_is_admitted_once_and_remembers_its_first_offset() -> None:
    seen = SeenIds()
    assert seen.admit(id_hash("a"), 1, offset=10)
    assert not seen.admit(id_hash("a"), 1, offset=10)  # a repeat inside the record
    assert not seen.admit(id_hash("a"), 1, offset=11)  # a resend in a later record
    assert seen.first_offset(id_hash("a")) == 10 and seen.first_offset(id_hash("b")) is None
    restored = SeenIds.from_bytes(seen.to_bytes())
    assert restored == seen and len(seen.to_bytes()) == 24


def test_ids_expire_against_the_watermark_not_the_users_newest_event() -> None:
    dedup = DedupSlice(retention_ms=HOUR, max_ids=100)
    seen = dedup.empty()
    seen.admit(id_hash("old"), 0, 1)
    seen.admit(id_hash("new"), 2 * HOUR, 2)  # the user's own newer event does not expire "old"
    dedup.on_events("u1", seen, [])
    slack = HOUR // 24  # ids are looked at in batches, a twenty-fourth of the retention after they are due
    assert len(seen.ids) == 2 and dedup.deadline(seen) == HOUR + slack
    dedup.on_watermark("u1", seen, HOUR + slack + 1)  # the partition's watermark does
    assert seen.first_offset(id_hash("old")) is None and dedup.deadline(seen) == 3 * HOUR + slack
    dedup.on_watermark("u1", seen, 3 * HOUR + 1)
    assert dedup.is_empty(seen)


def test_ids_due_within_the_slack_expire_in_one_batch() -> None:
    dedup = DedupSlice(retention_ms=24 * HOUR, max_ids=100)
    seen = dedup.empty()
    for minute in range(0, 60, 5):
        seen.admit(id_hash(f"e{minute}"), minute * 60_000, minute)
    watermark = dedup.deadline(seen) + 1
    assert watermark == 25 * HOUR + 1  # the first id is due an hour late, when all twelve are
    dedup.on_watermark("u1", seen, watermark)
    assert dedup.is_empty(seen)


def test_the_cap_keeps_the_newest_ids() -> None:
    dedup = DedupSlice(retention_ms=HOUR, max_ids=4)
    seen = dedup.empty()
    for i in range(10):
        seen.admit(id_hash(str(i)), i, 1)
    dedup.on_events("u1", seen, [])
    assert sorted(ts for ts, _ in seen.ids.values()) == [6, 7, 8, 9]


def test_the_id_hash_is_stable_across_versions() -> None:
    # stored in every user's state: a changed hash would let every remembered event in once more
    assert [id_hash(event_id) for event_id in ("a", "e1", "42-347045")] == [
        3405396810240292928,
        292540415853092123,
        -2308174188869738967,
    ]
