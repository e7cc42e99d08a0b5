"""Packing events into per-partition records, and which requests a record's outcome settles."""

from __future__ import annotations

import pytest

from producers.packing import OpenRecords, PackedRecord, RequestPacker, Settled
from pulse.settings import ProducerTuning

TUNING = ProducerTuning(max_events_per_record=3, max_record_bytes=20)
LINGER_S = 0.25  # times below are multiples of 1/16 s: exact in binary, so due times compare exactly


def values(records: list[PackedRecord]) -> list[tuple[int, bytes]]:
    return [(record.partition, record.value()) for record in records]


# --- OpenRecords -------------------------------------------------------------------------


def test_one_open_record_per_partition_due_a_linger_after_its_first_line() -> None:
    records = OpenRecords(TUNING, LINGER_S)
    assert records.add(0, b"a", now=10.0).closed == []
    assert records.add(1, b"b", now=10.125).closed == []
    assert records.add(0, b"c", now=10.1875).closed == []
    assert records.next_due() == 10.25
    assert records.due(10.1875) == []
    assert values(records.due(10.25)) == [(0, b"a\nc")]
    assert records.next_due() == 10.375
    assert values(records.due(10.375)) == [(1, b"b")]
    assert records.next_due() is None and records.due(99.0) == []


def test_a_record_is_closed_when_full_and_the_line_that_does_not_fit_opens_the_next() -> None:
    records = OpenRecords(TUNING, LINGER_S)
    assert records.add(0, b"1", now=0.0).closed == []
    assert records.add(0, b"2", now=0.0).closed == []
    third = records.add(0, b"3", now=0.0)  # the third line fills it: closed at once
    assert values(third.closed) == [(0, b"1\n2\n3")] and third.record is third.closed[0]
    assert records.next_due() is None
    # bytes: "aaaaaaaaa\n" + "bbbbbbbbb\n" is 20, the cap; a third line of any size no longer fits
    assert records.add(0, b"a" * 9, now=1.0).closed == []
    assert records.add(0, b"b" * 9, now=1.0).closed == []
    placed = records.add(0, b"c", now=2.0)
    assert values(placed.closed) == [(0, b"a" * 9 + b"\n" + b"b" * 9)]
    assert values([placed.record]) == [(0, b"c")] and placed.record.opened_at == 2.0
    assert records.next_due() == 2.25


def test_a_line_over_the_byte_cap_gets_a_record_of_its_own() -> None:
    records = OpenRecords(TUNING, LINGER_S)
    records.add(0, b"x", now=0.0)
    placed = records.add(0, b"y" * 50, now=0.0)
    assert values(placed.closed) == [(0, b"x")]
    assert values(records.add(0, b"z", now=0.0).closed) == [(0, b"y" * 50)]
    assert values(records.drain()) == [(0, b"z")]


def test_drain_closes_every_open_record() -> None:
    records = OpenRecords(TUNING, LINGER_S)
    records.add(2, b"a", now=0.0)
    records.add(0, b"b", now=0.0)
    assert values(records.drain()) == [(2, b"a"), (0, b"b")]
    assert records.drain() == [] and records.next_due() is None


def test_no_linger_makes_every_record_due_at_once() -> None:
    records = OpenRecords(TUNING, 0.0)
    records.add(0, b"a", now=3.0)
    assert values(records.due(3.0)) == [(0, b"a")]


# --- RequestPacker -----------------------------------------------------------------------


def test_concurrent_requests_share_records_and_each_settles_when_all_of_its_records_are_confirmed() -> None:
    packer = RequestPacker(TUNING, LINGER_S)
    first, full = packer.pack([(0, b"a1"), (1, b"a2")], letters=0, now=0.0)
    assert (first, full) == (1, [])
    second, full = packer.pack([(1, b"b1"), (2, b"b2")], letters=0, now=0.0625)
    assert (second, full) == (2, [])
    p0, p1, p2 = packer.due(0.3125)
    assert values([p0, p1, p2]) == [(0, b"a1"), (1, b"a2\nb1"), (2, b"b2")]
    assert packer.record_settled(p1, None) == []  # both still wait for another record
    assert packer.record_settled(p2, None) == [Settled(2, None)]
    assert packer.record_settled(p0, None) == [Settled(1, None)]


def test_one_record_settles_every_request_it_carries() -> None:
    packer = RequestPacker(TUNING, LINGER_S)
    requests = [packer.pack([(0, f"e{i}".encode())], letters=0, now=0.0)[0] for i in range(2)]
    (record,) = packer.due(0.25)
    assert record.value() == b"e0\ne1"
    assert packer.record_settled(record, None) == [Settled(requests[0], None), Settled(requests[1], None)]


def test_a_request_spanning_several_records_of_one_partition_waits_for_each() -> None:
    packer = RequestPacker(TUNING, LINGER_S)
    lines = [(0, f"{i}".encode()) for i in range(7)]
    request, full = packer.pack(lines, letters=0, now=0.0)
    assert values(full) == [(0, b"0\n1\n2"), (0, b"3\n4\n5")]
    (rest,) = packer.drain()
    assert rest.value() == b"6"
    assert packer.record_settled(full[0], None) == []
    assert packer.record_settled(rest, None) == []
    assert packer.record_settled(full[1], None) == [Settled(request, None)]


def test_a_refused_record_settles_its_requests_with_the_error_at_once_and_only_once() -> None:
    packer = RequestPacker(TUNING, LINGER_S)
    first, _ = packer.pack([(0, b"a1"), (1, b"a2")], letters=0, now=0.0)
    second, _ = packer.pack([(1, b"b1")], letters=0, now=0.0)
    third, _ = packer.pack([(0, b"c1")], letters=0, now=0.0)
    p0, p1 = packer.due(0.25)
    assert packer.record_settled(p1, "Broker: Not enough in-sync replicas") == [
        Settled(first, "Broker: Not enough in-sync replicas"),
        Settled(second, "Broker: Not enough in-sync replicas"),
    ]
    # the first request was answered already: its other record settles only the third
    assert packer.record_settled(p0, None) == [Settled(third, None)]
    assert packer.record_settled(p0, None) == []  # a record settles once


def test_dead_letters_count_like_records() -> None:
    packer = RequestPacker(TUNING, LINGER_S)
    mixed, _ = packer.pack([(0, b"a")], letters=2, now=0.0)
    letters_only, full = packer.pack([], letters=1, now=0.0)
    assert full == []
    assert packer.letter_settled(letters_only, None) == [Settled(letters_only, None)]
    (record,) = packer.due(0.25)
    assert packer.record_settled(record, None) == []
    assert packer.letter_settled(mixed, None) == []
    assert packer.letter_settled(mixed, None) == [Settled(mixed, None)]


def test_a_refused_dead_letter_settles_its_request_with_the_error() -> None:
    packer = RequestPacker(TUNING, LINGER_S)
    request, _ = packer.pack([(0, b"a")], letters=2, now=0.0)
    assert packer.letter_settled(request, "queue full") == [Settled(request, "queue full")]
    assert packer.letter_settled(request, None) == []
    (record,) = packer.due(0.25)
    assert packer.record_settled(record, None) == []


def test_a_request_with_nothing_to_wait_for_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing to wait for"):
        RequestPacker(TUNING, LINGER_S).pack([], letters=0, now=0.0)
