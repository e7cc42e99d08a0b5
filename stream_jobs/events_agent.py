"""The Faust wiring of :class:`JobRunner`: one agent over the events topic.

For every record: compute the output from the state (no writes yet), hand the output to
the producer (:mod:`stream_jobs.output_producer`), then write the state into the table's
store and have the producer hold its changelog records for the commit (Faust's table writes
would send each through aiokafka, at once). Faust's commit of the input offset waits until
every output is acknowledged, then the held changelog records too. So a changelog record is
never durable before the outputs of the records it reflects, and a worker killed at any
point re-reads every record whose output or state is not durable.

Wall-clock ticks (see :mod:`stream_jobs.watermark`) travel in the events topic itself, as
empty records with a ``pulse.tick`` header, so they are processed in stream iteration, in
order with the partition's events, and no second input topic is needed. So do the steps of
identity stitching (:mod:`stream_jobs.identity`): events forwarded to the person an id merged
into, merge requests and their answers, each sent to the partition of the id it is keyed by;
and erasures (``pulse forget``), keyed by the id to forget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

import faust
from faust.types import TP, RecordMetadata

from pulse.dead_letter import DeadLetter
from pulse.lag import observe_lag
from pulse.outputs import CHURN_ALERTS, FUNNEL_STEPS, PERSON_IDS, SESSIONS
from pulse.partitioning import partition_for
from pulse.settings import Settings
from pulse.topics import Topics
from stream_jobs import metrics
from stream_jobs.churn_job import CHURN_SLICE
from stream_jobs.churn_scoring import TIERS
from stream_jobs.health import WorkerHealth
from stream_jobs.output_producer import OutputProducer, attach_to_commits
from stream_jobs.publishing import output_records
from stream_jobs.runner import JobRunner, Output
from stream_jobs.sessions_job import SESSIONS_SLICE
from stream_jobs.state_store import MemoryStore

log = logging.getLogger(__name__)

TICK_HEADER = "pulse.tick"


class EventsAgent:
    """Handles records of the events topic and wall-clock ticks, in stream iteration."""

    def __init__(self, app: faust.App, settings: Settings, topics: Topics, health: WorkerHealth) -> None:
        self.source = app.topic(topics.events, partitions=settings.partitions, key_type=bytes, value_type=bytes,
                                key_serializer="raw", value_serializer="raw")  # raw bytes: nothing can fail to decode here  # fmt: skip
        self.state = app.Table("pulse-user-state", partitions=settings.partitions, key_type=bytes, value_type=bytes)
        self.runner = JobRunner(settings, self.state.data)
        self._outputs = {spec: topics.output(spec) for spec in self.runner.outputs}
        self._dead = topics.dead_letters
        self._events = topics.events
        self._partitions = settings.partitions
        self._changelog = self.state.changelog_topic.get_topic_name()
        # the store keeps the changelog offset it holds, so a rebalance or restart reads only what came after
        self._producer = OutputProducer(settings.bootstrap, track_offsets_of=self._changelog)
        attach_to_commits(app, self._confirm)
        self._health = health
        self._indexing = False  # a timer rebuild, or the tick after it, is under way
        # counted by the runner as state changes, read at scrape time: nothing per record
        metrics.OPEN_SESSIONS.set_function(partial(self.runner.live, SESSIONS_SLICE))
        for rank, tier in enumerate(TIERS, start=1):
            metrics.CHURN_USERS.labels(tier).set_function(partial(self.runner.users_with, CHURN_SLICE, rank))

    async def handle(self, event: faust.EventT) -> None:
        message = event.message
        headers = dict(message.headers or ())
        tick = headers.get(TICK_HEADER)
        if tick is not None:
            out = self.runner.tick(message.partition, int(tick))
        else:
            out = self._process(event, headers)
        await self._producer.make_room()
        self._publish(out, message)
        self._write_state(out, message.partition)
        self._count(out)
        self._health.processed(message.partition, message.offset, time.monotonic())
        if message.timestamp is not None:  # ticks too: an idle partition stays current
            metrics.NEWEST_PROCESSED.labels(message.partition).set(message.timestamp)

    async def _confirm(self) -> None:
        """Make the outputs durable, then the state, before Faust commits the input offsets.

        Then note the changelog offsets the store holds, as Faust's table writes did for every
        changelog record.
        """
        for partition, offset in (await self._producer.confirm()).items():
            self.state.data.set_persisted_offset(TP(self._changelog, partition), offset)

    def keep_partitions(self, assigned: set[int]) -> None:
        """After a rebalance: the runner keeps what it derived from the partitions the store kept as they were.

        Faust's own stores (``rocksdb://``) may have read any partition's changelog anew: nothing is kept.
        """
        store = self.state.data
        self.runner.keep_only(assigned & store.kept if isinstance(store, MemoryStore) else ())

    async def send_tick(self, partition: int, wall_ms: int) -> Awaitable[RecordMetadata]:
        """Queue a tick behind the partition's events; what it returns resolves once Kafka holds it."""
        return await self.source.send(value=b"", headers=[(TICK_HEADER, str(wall_ms).encode())], partition=partition)

    async def index_partitions(self, held: Callable[[], list[int]]) -> None:
        """Rebuild the timers of newly ``held()`` partitions, a step at a time, with half the time left to records.

        After each, a tick fires the deadlines that passed before the scan reached their
        users (those of records replayed after a restart, say): without it they would wait
        for the partition's next event, or for its clock to follow the wall clock. ``held``
        is asked again after every partition, since a rebalance may take some away meanwhile.
        """
        self._indexing = True
        try:
            while unindexed := self.runner.unindexed(held()):
                partition = unindexed[0]
                started = step_started = time.perf_counter()
                for _ in self.runner.index_partition(partition):
                    # as long again for records: Faust's agent takes one per turn of the event loop, and
                    # a rebuild that only yielded a turn would hold records back for as long as it runs
                    await asyncio.sleep(time.perf_counter() - step_started)
                    step_started = time.perf_counter()
                metrics.TIMER_INDEX_SECONDS.observe(time.perf_counter() - started)
                await (await self.send_tick(partition, time.time_ns() // 1_000_000))  # readiness waits for it
        finally:
            self._indexing = False

    def timers_rebuilt(self, held: Iterable[int]) -> bool:
        """Whether the ``held`` partitions' timers are rebuilt, each with its tick in Kafka."""
        return not self._indexing and not self.runner.unindexed(held)

    def _process(self, event: faust.EventT, headers: dict[str, bytes]) -> Output:
        message = event.message
        metrics.RECORDS_IN.inc()
        try:
            return self.runner.handle(event.value, message.topic, message.partition, message.offset, message.key, headers)
        except Exception as exc:  # a bug must not lose the record: keep it whole for a replay
            log.exception("failed to process %s/%s@%s", message.topic, message.partition, message.offset)
            metrics.PROCESSING_ERRORS.inc()
            source = f"{message.topic}/{message.partition}@{message.offset}"
            return Output(dead_letters=[DeadLetter.failed(event.value or b"", "processing_error", repr(exc), source, source)])

    def _publish(self, out: Output, message: faust.types.Message) -> None:
        """Hand every output row and dead letter to the producer; a row Kafka refuses for good becomes a dead letter."""
        source = f"{message.topic}/{message.partition}@{message.offset}"
        for index, (spec, value) in enumerate(output_records(out.rows)):
            refused = self._producer.send(self._outputs[spec], value, partition=message.partition)
            if refused is not None:
                metrics.PUBLISH_REJECTED.inc()
                letter_id = f"publish_rejected:{source}#{index}"  # the same on a replay of the record
                out.dead_letters.append(DeadLetter.failed(value, "publish_rejected", f"{spec.name}: {refused}", source, letter_id))
        for reroute in out.reroutes:  # into the events topic, keyed (and partitioned) by the id it is for
            key = reroute.user_id.encode()
            partition = partition_for(reroute.user_id, self._partitions)
            refused = self._producer.send(self._events, reroute.value, key=key, partition=partition, headers=reroute.headers)
            if refused is not None:
                metrics.OUTPUT_DROPPED.inc()
                log.error("identity record for %s refused for good and dropped: %s", reroute.user_id, refused)
        for letter in out.dead_letters:
            refused = self._producer.send(self._dead, letter.raw, headers=letter.headers())
            if refused is not None:
                metrics.OUTPUT_DROPPED.inc()
                log.error("dead letter %s (%s) refused for good and dropped: %s", letter.letter_id, letter.reason, refused)

    def _write_state(self, out: Output, partition: int) -> None:
        """Write the state into the table's store, its changelog records held for the next commit.

        A user whose slices are all empty is deleted (a tombstone, also when a write of it is still held).
        """
        store, producer = self.state.data, self._producer
        for key, value in out.writes.items():
            if value is not None:
                store[key] = value
            elif key in store:
                del store[key]
            elif not producer.holds(self._changelog, key):
                continue
            producer.hold(self._changelog, key, value, partition)

    def _count(self, out: Output) -> None:
        merged = sum(row["merged"] for row in out.rows.get(PERSON_IDS, []))  # type: ignore[index]
        for counter, count in ((metrics.EVENTS_IN, out.events_in), (metrics.EVENTS_VALID, len(out.valid_times)),
                               (metrics.EVENTS_DUPLICATE, out.duplicates), (metrics.LATE_EVENTS, out.too_late),
                               (metrics.IDS_MERGED, merged), (metrics.EVENTS_SUPPRESSED, out.suppressed),
                               (metrics.IDS_FORGOTTEN, out.forgotten)):  # fmt: skip
            if count:  # most are 0 for most records, and each increment takes a lock
                counter.inc(count)
        for reason, count in out.merge_refusals.items():
            metrics.MERGES_REFUSED.labels(reason).inc(count)
        for letter in out.dead_letters:
            if letter.reason not in ("too_late", "publish_rejected"):
                metrics.EVENTS_INVALID.labels(letter.reason).inc()
        for row in out.rows.get(SESSIONS, []):
            if row.get("closed") and not row["deleted"]:  # type: ignore[union-attr]  # job rows are dicts
                metrics.SESSIONS_CLOSED.inc()
                metrics.SESSION_DURATION.observe(row["duration_ms"] / 1000)
        for row in out.rows.get(FUNNEL_STEPS, []):
            metrics.FUNNEL_STEPS.labels(row["funnel"], row["step_name"]).inc()  # type: ignore[index]
        for row in out.rows.get(CHURN_ALERTS, []):
            metrics.CHURN_ALERTS.labels(row["new_tier"]).inc()  # type: ignore[index]
        observe_lag("worker", out.valid_times)
