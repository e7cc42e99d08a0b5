"""The ClickHouse sink stage: output topics -> batched, idempotent inserts -> committed offsets.

Valid events go to ``events``, session rows to ``sessions``, dead letters to ``dead_letters``.

Order of operations per batch: insert every table's rows (retrying until durable), then
commit the Kafka offsets synchronously. A sink killed between the two re-reads the batch
on restart and re-inserts it with the same deduplication tokens when the batch boundaries
match, and in any case into ``ReplacingMergeTree`` tables keyed so a replay adds nothing.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pulse.dead_letter import DeadLetter
from pulse.lag import observe_lag
from pulse.settings import Settings
from pulse.topics import Topics
from sinks import metrics
from sinks.batch import Batch
from sinks.rows import DEAD_LETTERS, EVENTS, SESSIONS, add_dead_letter, add_sessions, add_valid_events
from sinks.writer import BatchWriter

log = logging.getLogger(__name__)

CONSUME_MAX_RECORDS = 500
CONSUME_TIMEOUT_S = 0.2


class ClickHouseSink:
    """Consumes the valid-events and dead-letter topics and writes ClickHouse."""

    def __init__(self, settings: Settings, writer: BatchWriter, stop: threading.Event) -> None:
        self._settings = settings
        self._topics = Topics.with_prefix(settings.topic_prefix)
        self._writer = writer
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
            }
        )

    def run(self) -> None:
        """Consume until ``stop`` is set, then flush what is buffered and leave the group."""
        self._consumer.subscribe(list(self._topics.sink_inputs()), on_revoke=self._on_revoke)
        tuning = self._settings.sink
        try:
            while not self._stop.is_set():
                for message in self._consumer.consume(CONSUME_MAX_RECORDS, CONSUME_TIMEOUT_S):
                    self._add(message)
                    if self._batch.rows >= tuning.batch_rows:
                        self._flush()
                if self._batch.is_due(tuning.batch_rows, tuning.batch_seconds):
                    self._flush()
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
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        self._batch.track(topic, partition, offset)
        letters = self._batch.tables[DEAD_LETTERS]
        position = f"{topic}/{partition}@{offset}"
        if topic == self._topics.dead_letters:
            letter = DeadLetter.from_record(message.value(), message.headers(), position)
            add_dead_letter(topic, partition, offset, letter, letters)
            return
        try:
            if topic == self._topics.sessions:
                add_sessions(message.value() or b"", self._batch.tables[SESSIONS])
            else:
                self._batch.event_times.extend(add_valid_events(message.value() or b"", self._batch.tables[EVENTS]))
        except (ValueError, KeyError, TypeError) as exc:
            metrics.UNREADABLE_RECORDS.inc()
            letter = DeadLetter.failed(message.value() or b"", "sink_unreadable", repr(exc), position, position)
            add_dead_letter(topic, partition, offset, letter, letters)

    def _flush(self) -> None:
        batch, self._batch = self._batch, Batch()
        if not batch.ranges:
            return
        for table, columns in batch.tables.items():
            if len(columns):
                self._writer.write(table, columns, batch.dedup_token(table))
        observe_lag("sink", batch.event_times)
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.commit_offsets().items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # e.g. the group rebalanced: the rows are in ClickHouse, the records will be
            # re-read by whoever owns the partitions now, and the replay adds no row.
            log.warning("offset commit failed after insert (%s); records will be re-read", exc)

    def _on_revoke(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        """Write and commit what we hold before the partitions move to another sink."""
        self._flush()
