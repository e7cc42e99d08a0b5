"""The corrections of :mod:`stream_jobs.faust_fixes` that need no broker: the fetch's partitions, the commit rule, the livelock check.

Corrections 1 and 2 (the order of the post-recovery seek) are only visible with a broker:
``tests/integration/test_recovery_race.py``. Correction 3 is seen end to end in
``tests/integration/test_scale_out.py`` and the benchmark's rebalance; here, what it
guarantees: the set the fetcher filters by cannot change or empty under a pending fetch, and
a batch Faust would drop is read again, unless a seek has moved its partition since.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

from aiokafka.consumer.fetcher import OffsetResetStrategy
from aiokafka.consumer.subscription_state import TopicPartitionState
from faust.types import TP
from intervaltree import IntervalTree

from stream_jobs import faust_fixes
from stream_jobs.faust_fixes import getmany_from_fixed_partitions, new_offset_without_holes, upstream_new_offset

STREAM = TP("events", 1)
CHANGELOG = TP("state-changelog", 1)


class Record(NamedTuple):
    offset: int


class PartitionState:
    """aiokafka's position of one partition."""

    def __init__(self, position: int) -> None:
        self.position = position
        self.has_valid_position = True


class AiokafkaConsumer:
    """The few parts of aiokafka's consumer the rewind reads and calls: positions and ``seek``."""

    def __init__(self, positions: dict[TP, int]) -> None:
        self.states = {tp: PartitionState(position) for tp, position in positions.items()}
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=SimpleNamespace(
            state_value=self.states.get)))  # fmt: skip
        self.seeks: list[tuple[TP, int]] = []

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.states[tp].position = offset


class FetcherThread:
    """Faust's consumer thread: a fetch that waits until released, and calls run on it."""

    def __init__(self, batches: dict[TP, list[int]]) -> None:
        self.batches = batches
        self.given: Any = "not called"
        self.release = asyncio.Event()
        self.consumer = AiokafkaConsumer({tp: offsets[-1] + 1 for tp, offsets in batches.items()})

    async def getmany(self, partitions: Any, timeout: float) -> dict[TP, list[Record]]:
        self.given = partitions
        await self.release.wait()
        return {tp: [Record(o) for o in offsets] for tp, offsets in self.batches.items() if tp in (partitions or ())}

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        return await fun(*args)

    def _ensure_consumer(self) -> AiokafkaConsumer:
        return self.consumer


def fetch_while(thread: FetcherThread, active: set[TP], meanwhile: Callable[[SimpleNamespace], None] = lambda _: None,
                ) -> dict[TP, list[Record]]:  # fmt: skip
    """One fetch by Faust's consumer over ``active``; ``meanwhile`` runs while it is pending."""

    async def scenario() -> dict[TP, list[Record]]:
        consumer = SimpleNamespace(_thread=thread, flow_active=True, _get_active_partitions=lambda: active)
        fetch = asyncio.ensure_future(getmany_from_fixed_partitions(consumer, active, 1.0))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        meanwhile(consumer)
        thread.release.set()
        return await fetch

    return asyncio.run(scenario())


def test_a_fetch_returns_what_is_still_active_untouched() -> None:
    thread = FetcherThread({STREAM: [5, 6], CHANGELOG: [40]})
    assert fetch_while(thread, {STREAM, CHANGELOG}) == {STREAM: [Record(5), Record(6)], CHANGELOG: [Record(40)]}
    assert thread.consumer.seeks == []


def test_a_pending_fetch_keeps_the_partitions_it_started_with() -> None:
    """Recovery pausing the changelogs mid-fetch must not widen the fetch to the paused stream partitions."""
    thread = FetcherThread({STREAM: [5], CHANGELOG: [40, 41]})
    records = fetch_while(thread, {CHANGELOG}, meanwhile=lambda consumer: consumer._get_active_partitions().clear())
    assert thread.given == frozenset({CHANGELOG})  # not the emptied live set: aiokafka reads empty as "all"
    assert records == {}  # the changelog was paused meanwhile: Faust would drop its batch ...
    assert thread.consumer.seeks == [(CHANGELOG, 40)]  # ... so it is read again, not skipped


def test_a_batch_returned_after_the_flow_stopped_is_read_again_unless_a_seek_moved_it() -> None:
    thread = FetcherThread({STREAM: [5, 6], CHANGELOG: [0, 1, 2]})

    def rebalance(consumer: SimpleNamespace) -> None:
        consumer.flow_active = False
        thread.consumer.states[STREAM].position = 3  # the rebalance sought the stream partition to its commit

    assert fetch_while(thread, {STREAM, CHANGELOG}, meanwhile=rebalance) == {}
    assert thread.consumer.seeks == [(CHANGELOG, 0)]
    assert thread.consumer.states[STREAM].position == 3


def test_no_fetch_when_nothing_is_active_and_every_partition_for_a_client() -> None:
    async def fetch(active: set[TP] | None) -> tuple[Any, Any]:
        thread = FetcherThread({STREAM: [5]})
        thread.release.set()
        consumer = SimpleNamespace(_thread=thread, flow_active=True, _get_active_partitions=lambda: active)
        result = await getmany_from_fixed_partitions(consumer, active, 1.0)  # type: ignore[arg-type]
        return thread.given, result

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


def test_the_livelock_check_skips_a_partition_waiting_for_its_position(monkeypatch: Any) -> None:
    """Correction 5: after a seek to the beginning aiokafka holds no position, and reading it asserts."""
    checked: list[TP] = []
    monkeypatch.setattr(faust_fixes, "upstream_verify_event_path", lambda _thread, _now, tp: checked.append(tp))
    waiting, consuming = TP("events", 0), TP("events", 1)

    async def states() -> dict[TP, TopicPartitionState]:  # aiokafka's states make futures: inside a loop
        made = {tp: TopicPartitionState(assignment=None) for tp in (waiting, consuming)}
        made[waiting].highwater = 40  # fetched before the reset, as in the crash
        made[waiting].await_reset(OffsetResetStrategy.EARLIEST)
        made[consuming].seek(7)
        return made

    consumer = AiokafkaConsumer({})
    consumer.states = asyncio.run(states())
    consumer._subscription.subscription.assignment.state_value = consumer.states.get
    thread = SimpleNamespace(_ensure_consumer=lambda: consumer)
    for tp in (waiting, consuming, TP("events", 2)):  # the last one is not assigned (any more)
        faust_fixes.verify_event_path_once_positioned(thread, 0.0, tp)  # type: ignore[arg-type]
    assert checked == [consuming]


def test_the_worker_consumer_fetches_are_held_briefly(monkeypatch: Any) -> None:
    """Upstream's 1.5 s long poll made each request of a rebalance wait behind it (correction 6)."""
    created = SimpleNamespace(_fetch_max_wait_ms=1500)
    monkeypatch.setattr(faust_fixes, "upstream_create_worker_consumer", lambda thread, transport: created)
    consumer = faust_fixes.worker_consumer_with_short_fetches(SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]
    assert consumer is created and consumer._fetch_max_wait_ms == faust_fixes.FETCH_MAX_WAIT_MS <= 500
