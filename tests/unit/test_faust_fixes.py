"""The corrections of :mod:`stream_jobs.faust_fixes` that need no broker: the fetch's partitions and the commit rule.

Corrections 1 and 2 (the order of the post-recovery seek) are only visible with a broker:
``tests/integration/test_recovery_race.py``. Correction 3 is seen end to end in
``tests/integration/test_scale_out.py``; here, what it guarantees: the set the fetcher
filters by cannot change or empty under a pending fetch.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from intervaltree import IntervalTree

from stream_jobs.faust_fixes import getmany_from_fixed_partitions, new_offset_without_holes, upstream_new_offset

STREAM = TP("events", 1)
CHANGELOG = TP("state-changelog", 1)


class PendingFetch:
    """A fetcher thread whose fetch waits until released, keeping the partitions it was given."""

    def __init__(self) -> None:
        self.given: Any = "not called"
        self.release = asyncio.Event()

    async def getmany(self, partitions: Any, timeout: float) -> dict[TP, list[int]]:
        self.given = partitions
        await self.release.wait()
        return {tp: [0] for tp in partitions or ()}


def test_a_pending_fetch_keeps_the_partitions_it_started_with() -> None:
    """Recovery pausing the changelogs mid-fetch must not widen the fetch to the paused stream partitions."""

    async def scenario() -> tuple[Any, dict[TP, list[int]]]:
        fetcher = PendingFetch()
        consumer = SimpleNamespace(_thread=fetcher)
        active = {CHANGELOG}  # the consumer's live set: the stream partition is paused
        fetch = asyncio.ensure_future(getmany_from_fixed_partitions(consumer, active, 1.0))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        active.clear()  # "Done reading from changelog topics": the changelogs are paused too
        fetcher.release.set()
        return fetcher.given, await fetch

    given, records = asyncio.run(scenario())
    assert given == frozenset({CHANGELOG})
    assert list(records) == [CHANGELOG]


def test_no_fetch_when_nothing_is_active_and_every_partition_for_a_client() -> None:
    async def fetch(active: set[TP] | None) -> tuple[Any, Any]:
        fetcher = PendingFetch()
        fetcher.release.set()
        result = await getmany_from_fixed_partitions(SimpleNamespace(_thread=fetcher), active, 1.0)  # type: ignore[arg-type]
        return fetcher.given, result

    assert asyncio.run(fetch(set())) == ("not called", {})  # aiokafka would read an empty set as "all"
    assert asyncio.run(fetch(None)) == (None, {})  # a client-only app: upstream's meaning, every partition


def consumer_with(committed: int | None, acked: list[int]) -> SimpleNamespace:
    """The ack bookkeeping of a Faust consumer for one partition."""
    state = SimpleNamespace(
        _acked=defaultdict(list), _acked_index=defaultdict(set), _committed_offset=defaultdict(lambda: None),
        _gap=defaultdict(IntervalTree),
    )  # fmt: skip
    state._acked[STREAM] = list(acked)
    state._acked_index[STREAM] = set(acked)
    state._committed_offset[STREAM] = committed
    return state


def test_one_unacknowledged_record_holds_the_commit_where_upstream_skipped_it() -> None:
    # committed 5 means the next record to read is 5; it never reached an agent, 6 and 7 did
    assert upstream_new_offset(consumer_with(5, [6, 7]), STREAM) == 8  # type: ignore[arg-type]
    assert new_offset_without_holes(consumer_with(5, [6, 7]), STREAM) is None  # type: ignore[arg-type]
    assert new_offset_without_holes(consumer_with(5, [7, 8]), STREAM) is None  # type: ignore[arg-type]


def test_contiguous_acknowledgements_commit_as_upstream() -> None:
    assert new_offset_without_holes(consumer_with(5, [5, 6, 7]), STREAM) == 8  # type: ignore[arg-type]
    assert new_offset_without_holes(consumer_with(5, [5, 6, 9]), STREAM) == 7  # type: ignore[arg-type]
    assert new_offset_without_holes(consumer_with(None, [3, 4]), STREAM) == 5  # type: ignore[arg-type]
    assert new_offset_without_holes(consumer_with(5, []), STREAM) is None  # type: ignore[arg-type]
