"""Corrections to faust-streaming 0.15.3 where it loses, skips or stalls on input records, applied on import.

Each was found by a test of this project losing events; each is checked by a test that fails
without it (``tests/integration/test_recovery_race.py``, ``test_scale_out.py``, and
``tests/unit/test_faust_fixes.py``).

**1. Seek the stream partitions before resuming them after recovery.**
``Recovery.on_recovery_completed`` (``faust/tables/recovery.py``) ends a rebalance that had
state to restore like this: resume the stream partitions, *then* seek them to their
committed offsets (an await: the fetcher started for the changelogs keeps running), then
``flow_control.resume()``, which empties every agent's queue. Records the fetcher delivered
between the resume and the end of the seek are thrown away unprocessed, but the consumer
already noted them as read: their re-fetched copies are dropped as duplicates
(``_drain_messages``), or never re-fetched when the partition had no committed offset. The
ack bookkeeping then waits forever on the hole (the partition never commits again), or,
with no committed offset yet, commits past it (records skipped). Upstream issue 596.

**2. Seek partitions without a committed offset too.** ``perform_seek`` (aiokafka's
``seek_to_committed``) does not seek a partition without a committed offset. While the
changelogs were restored, aiokafka's prefetch may have moved such a partition's position
anywhere, up to its end; the worker then started there, acked the first record it saw and
committed past everything before it. Seen after a SIGKILL before the first commit.

The corrected order for 1 and 2: seek while the stream partitions are still paused (those
without a committed offset to their beginning, as ``auto_offset_reset="earliest"`` says),
drop whatever the agents' queues hold, and only then resume them.

**3. Never let aiokafka consume what Faust then drops.** Faust's fetch runs in a thread of
its own; what it returns is dropped, unseen, when the flow was stopped or the partition
paused meanwhile, yet aiokafka's position has moved past it. Two cases lost records:

- the consumer handed the thread its *live* set of active partitions, and aiokafka's
  ``fetched_records(partitions)`` returns every assigned partition when that set is empty.
  When recovery paused the changelog partitions while a fetch was pending, the set emptied
  under it: records of the still paused stream partitions came back and were dropped. After
  the seek of 1 that lost the next record for good, seen as one whole record missing when a
  worker joined or left a running group;
- a fetch pending across a rebalance returned records read *after* recovery's seek of a
  changelog partition (a standby becoming active, read from 0) while the flow was still
  stopped: all of them dropped, and recovery waited forever for offsets already consumed
  ("Still fetching changelog topics ... remaining" forever, seen in the benchmark's rebalance).

The thread now gets a copy of the set, taken when the fetch starts; and whatever Faust would
drop is withheld and the partition put back where the batch began, unless a seek moved it
since (that seek wins).

**4. Never commit past a record that was not acknowledged.** ``Consumer._new_offset``
commits the acknowledged offsets when the lowest is at most *one* above the committed
offset, which is the next offset to read: one record that never reached an agent was
committed over silently (what turned 3 into a loss), two or more held the commit. Here any
hole holds it (without transactions or compaction there are no legitimate ones), so a
missing record shows as a stalled partition, which ``/healthz`` reports, never as a loss.

**5. Never crash on a partition that has no position yet.** Faust's livelock detector
(``Consumer._commit_livelock_detector``, every 2.5 commit intervals once no rebalance is under
way) reads each assigned partition's position from aiokafka, which *asserts* that one is set.
Correction 2's seek to the beginning leaves a partition without one until the fetcher has
asked Kafka where the beginning is; a detector run in that window crashed the worker (seen with
three workers joining a group). The check now skips such a partition: it has nothing to verify
until it has a position, and the next run looks again.

**6. Never queue a rebalance's requests behind an idle fetch.** Upstream creates the worker's
aiokafka consumer with ``fetch_max_wait_ms=1500``, hard-coded. Kafka answers the requests of
one connection in order, so every request recovery makes after a rebalance (end offsets,
earliest offsets, the committed offsets of the seek) waited behind a fetch the broker held
for lack of data: 1.5 s each, 4.5 s of every rebalance with traffic paused (seen in the
benchmark's rebalance). The broker now holds a fetch for at most ``FETCH_MAX_WAIT_MS``; an
idle worker sends a few more empty fetches, which cost nothing worth counting.

Only the version these were written against is patched: any other refuses to run until
this module has been checked against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import faust
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, ensure_aiokafka_TP
from faust.types import TP

from pulse.errors import PulseError

PINNED_FAUST = "0.15.3"

upstream_on_recovery_completed = Recovery.on_recovery_completed
upstream_new_offset = Consumer._new_offset
upstream_verify_event_path = AIOKafkaConsumerThread.verify_event_path
upstream_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer
FETCH_MAX_WAIT_MS = 100


class UnsupportedFaustError(PulseError):
    """The installed faust-streaming is not the version the recovery fix was written for."""


async def on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:
    """Upstream's method with the seek moved before the resume (see the module docstring)."""
    app = cast(Any, self.app)
    consumer = app.consumer
    self.log.info("Restore complete!")
    await app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [
        asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table]))
        for table in self.tables.values()
    ]
    if callbacks:
        await asyncio.wait(callbacks)
    assignment = consumer.assignment()
    if app.consumer_generation_id != generation_id:
        self.log.warning(f"Recovery rebalancing again app id {app.consumer_generation_id} param {generation_id}")
        return
    streams = {tp for tp in assignment if not self._is_changelog_tp(tp)}
    if assignment:
        self.log.info("Seek stream partitions to committed offsets (still paused).")
        await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        uncommitted = [tp for tp in streams if not consumer._committed_offset.get(tp)]
        if uncommitted and app.conf.consumer_auto_offset_reset == "earliest":
            # perform_seek skips them, and the fetcher may have read past their start during the restore
            partitions = [ensure_aiokafka_TP(tp) for tp in uncommitted]
            await self._wait(consumer._thread.seek_to_beginning(*partitions), timeout=app.conf.broker_request_timeout)
    app.flow_control.clear()  # nothing fetched before the seek may reach an agent
    consumer.resume_partitions(streams)
    self.completed.set()
    app.flow_control.resume()
    consumer.resume_flow()
    await app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")


async def getmany_from_fixed_partitions(self: ThreadDelegateConsumer, active_partitions: set[TP] | None,
                                        timeout: float) -> Any:  # fmt: skip
    """Upstream's ``_getmany`` with a copy of the active partitions, giving back what Faust would drop (correction 3)."""
    if active_partitions is None:  # a client-only app: every partition, as upstream
        return await self._thread.getmany(None, timeout)
    fixed = frozenset(active_partitions)
    if not fixed:  # an empty set would mean every assigned partition to aiokafka
        return {}
    records = await self._thread.getmany(fixed, timeout)  # type: ignore[arg-type]
    live = self._get_active_partitions()
    dropped = {tp: (batch[0].offset, batch[-1].offset + 1) for tp, batch in records.items()
               if batch and (not self.flow_active or tp not in live)}  # fmt: skip
    if not dropped:
        return records
    await self._thread.call_thread(rewind_unless_moved, self._thread, dropped)
    return {tp: batch for tp, batch in records.items() if tp not in dropped}


async def rewind_unless_moved(thread: Any, spans: Mapping[Any, tuple[int, int]]) -> None:
    """In the consumer thread: put each partition back at ``first`` if it still stands at ``after``.

    ``after`` is where taking the withheld batch left the partition; anywhere else, a seek
    came in between (a rebalance's), and that seek wins.
    """
    consumer = thread._ensure_consumer()
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    for tp, (first, after) in spans.items():
        state = assignment.state_value(tp) if assignment is not None else None
        if state is not None and state.has_valid_position and state.position == after:
            consumer.seek(tp, first)


def new_offset_without_holes(self: Consumer, tp: TP) -> int | None:
    """Upstream's ``_new_offset``, but any unacknowledged record holds the commit (correction 4)."""
    acked, committed = self._acked[tp], self._committed_offset[tp]
    if acked and committed is not None and not self._gap[tp] and min(acked) > committed:
        return None  # the record at `committed` never reached an agent: hold, do not skip it
    return upstream_new_offset(self, tp)


def verify_event_path_once_positioned(self: AIOKafkaConsumerThread, now: float, tp: TP) -> None:
    """Upstream's livelock check of a partition, skipped while it has no position (correction 5)."""
    subscription = self._ensure_consumer()._subscription.subscription
    state = subscription.assignment.state_value(ensure_aiokafka_TP(tp)) if subscription is not None else None
    if state is None or not state.has_valid_position:
        return None
    return upstream_verify_event_path(self, now, tp)


def worker_consumer_with_short_fetches(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    """Upstream's aiokafka consumer, its fetches held by the broker for ``FETCH_MAX_WAIT_MS`` at most (correction 6)."""
    consumer = upstream_create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when it starts its fetcher
    return consumer


def apply() -> None:
    """Install the corrected method; refuse any faust-streaming but the pinned one."""
    if faust.__version__ != PINNED_FAUST:
        raise UnsupportedFaustError(
            f"faust-streaming {faust.__version__} is installed; the worker's recovery fix was written for "
            f"{PINNED_FAUST} (see stream_jobs/faust_fixes.py): check that version's Recovery.on_recovery_completed "
            "before changing the pin"
        )
    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]
    ThreadDelegateConsumer._getmany = getmany_from_fixed_partitions  # type: ignore[method-assign]
    Consumer._new_offset = new_offset_without_holes  # type: ignore[method-assign]
    AIOKafkaConsumerThread.verify_event_path = verify_event_path_once_positioned  # type: ignore[method-assign]
    AIOKafkaConsumerThread._create_worker_consumer = worker_consumer_with_short_fetches  # type: ignore[method-assign]


apply()
