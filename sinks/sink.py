"""The ClickHouse sink stage: output topics -> batched, idempotent inserts -> committed offsets.

The sink knows no table by name: each output of :data:`pulse.outputs.OUTPUTS` goes to its
spec's table, dead letters to ``dead_letters``. A row ClickHouse refuses for good becomes a
``sink_rejected`` dead letter and the batch moves on (see :mod:`sinks.writer`).

Order of operations per batch: insert every table's rows (retrying until durable), then
commit the Kafka offsets synchronously. A sink killed between the two re-reads the batch on
restart and re-inserts it with the same deduplication tokens when the batch boundaries
match, and in any case into ``ReplacingMergeTree`` tables keyed so a replay adds nothing.

It also feeds :class:`sinks.liveness.Liveness`: a record consumed or rows inserted is
progress, and after each poll it counts the records of its partitions not yet durable.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pulse.dead_letter import DeadLetter
from pulse.kafka_outages import librdkafka_config
from pulse.lag import observe_lag
from pulse.outputs import OUTPUTS
from pulse.settings import Settings
from pulse.topics import Topics
from sinks import metrics
from sinks.batch import Batch
from sinks.liveness import Liveness
from sinks.rows import Position
from sinks.writer import BatchWriter

log = logging.getLogger(__name__)

CONSUME_MAX_RECORDS = 500
CONSUME_TIMEOUT_S = 0.2
UNREADABLE = "sink_unreadable"  # the dead-letter reason of an output record that does not decode


class ClickHouseSink:
    """Consumes every output topic and the dead letters, and writes ClickHouse."""

    def __init__(self, settings: Settings, writer: BatchWriter, liveness: Liveness, stop: threading.Event) -> None:
        self._settings = settings
        topics = Topics.with_prefix(settings.topic_prefix)
        self._inputs = topics.sink_inputs()
        self._outputs = {topics.output(spec): spec for spec in OUTPUTS}
        self._writer = writer
        self._liveness = liveness
        self._stop = stop
        self._batch = Batch()
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap,
                "group.id": settings.sink_group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # a long ClickHouse outage holds one batch in retries; stay in the group meanwhile
                "max.poll.interval.ms": 3_600_000,
                "session.timeout.ms": 10_000,  # a crashed sink's partitions move on after 10 s
                "fetch.max.bytes": 64 * 1024 * 1024,
                # the broker answers a fetch once 1 MiB is there or 100 ms passed, not at the first record:
                # with small live records that was a fetch per few records, and the broker's time went to them
                "fetch.min.bytes": 1024 * 1024,
                "fetch.wait.max.ms": 100,
                **librdkafka_config(metrics.KAFKA),
            }
        )

    def run(self) -> None:
        """Consume until ``stop`` is set, then flush what is buffered and leave the group."""
        self._consumer.subscribe(list(self._inputs), on_revoke=self._on_revoke)
        tuning = self._settings.sink
        try:
            while not self._stop.is_set():
                messages = self._consumer.consume(CONSUME_MAX_RECORDS, CONSUME_TIMEOUT_S)
                if messages:
                    self._liveness.progressed(time.monotonic())
                for message in messages:
                    self._add(message)
                    if self._batch.rows >= tuning.batch_rows:
                        self._flush()
                if self._batch.is_due(tuning.batch_rows, tuning.batch_seconds):
                    self._flush()
                self._record_lag()
            self._flush()
        finally:
            self._consumer.close()

    def _add(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            log.warning("consumer error: %s", error)
            return
        position = Position(message.topic(), message.partition(), message.offset())
        self._batch.track(position)
        value = message.value() or b""
        spec = self._outputs.get(position.topic)
        if spec is None:  # the dead-letter topic
            self._batch.add_letter(DeadLetter.from_record(value, message.headers(), str(position)), position)
            return
        try:
            self._batch.add_output(spec, value, position)
        except (ValueError, KeyError, TypeError) as exc:
            metrics.UNREADABLE_RECORDS.inc()
            where = str(position)
            self._batch.add_letter(DeadLetter.failed(value, UNREADABLE, repr(exc), where, where), position)

    def _flush(self) -> None:
        if not self._batch.ranges:
            return
        self._record_lag()  # the batch's records count as lag until they are durable
        batch, self._batch = self._batch, Batch()
        self._writer.write_batch(batch)
        observe_lag("sink", batch.event_times)
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.commit_offsets().items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # e.g. the group rebalanced: the rows are in ClickHouse, the records will be
            # re-read by whoever owns the partitions now, and the replay adds no row.
            log.warning("offset commit failed after insert (%s); records will be re-read", exc)
        self._liveness.progressed(time.monotonic())

    def _record_lag(self) -> None:
        """Tell the liveness rule how many records of the assigned partitions are not yet durable.

        Per partition: the high watermark (as of the last fetch, no broker round trip) minus
        the first offset the batch holds, or minus the consumer's position when it holds none.
        A partition the consumer has no position or watermark for yet counts as no lag: nothing
        says otherwise without asking the broker.
        """
        held = self._batch.first_offsets()
        lag = 0
        for tp in self._consumer.position(self._consumer.assignment()):
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:  # not fetched from yet
                continue
            start = held.get((tp.topic, tp.partition), tp.offset)
            if start >= 0 and high >= 0:
                lag += max(high - start, 0)
        self._liveness.record_lag(lag, time.monotonic())

    def _on_revoke(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        """Write and commit what we hold before the partitions move to another sink."""
        self._flush()
