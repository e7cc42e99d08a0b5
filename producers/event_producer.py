"""``EventProducer``: validated events into Kafka, several per record, keyed by user.

Why batch: the stream jobs pay a fixed cost per Kafka record (about 270 µs in Faust), so
events are packed into one NDJSON record per partition (see :mod:`pulse.wire`). The
partition is chosen here with Kafka's default partitioner on ``user_id``, so a user's
events always land together whichever client sent them.

Durability: the underlying confluent-kafka producer is idempotent with ``acks=all``;
delivery callbacks count every record that failed, and :meth:`EventProducer.flush` says
how many events were not delivered. When librdkafka's bounded queue is full, ``send``
waits for room and, after ``backpressure_timeout_s``, raises :class:`BackpressureError`
instead of buffering without limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pulse.contract import Event, Invalid, validate
from pulse.dead_letter import DeadLetter
from pulse.partitioning import partition_for
from pulse.settings import ProducerTuning
from pulse.topics import Topics

MAX_ERRORS_KEPT = 20


class BackpressureError(RuntimeError):
    """Kafka did not take records fast enough: the producer's bounded queue stayed full."""


class MissingTopicError(RuntimeError):
    """The events topic does not exist (the project creates topics in ``pulse up``)."""


@dataclass
class DeliveryReport:
    """What the broker confirmed, and what it refused, since the producer was created."""

    events_delivered: int = 0
    events_failed: int = 0
    records_delivered: int = 0
    records_failed: int = 0
    dead_letters_delivered: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.events_failed == 0 and self.records_failed == 0


@dataclass
class _PartitionBatch:
    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    opened_at: float = 0.0


class EventProducer:
    """Validates events, batches them per partition and publishes them to the events topic."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        tuning: ProducerTuning | None = None,
        *,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._topics = topics
        self._tuning = tuning or ProducerTuning()
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": "lz4",
                "linger.ms": self._tuning.linger_ms,
                "queue.buffering.max.messages": self._tuning.queue_max_messages,
                "queue.buffering.max.kbytes": self._tuning.queue_max_kbytes,
                "message.max.bytes": max(1_048_576, self._tuning.max_record_bytes * 2),
                **(config or {}),
            }
        )
        self._partitions = self._partition_count(topics.events)
        self._partition_of: Callable[[str], int] = lru_cache(maxsize=100_000)(
            lambda user_id: partition_for(user_id, self._partitions)
        )
        self._batches: dict[int, _PartitionBatch] = {}
        self.report = DeliveryReport()

    def send(self, event: Mapping[str, Any] | Event) -> Event | Invalid:
        """Validate one event and queue it; an invalid one goes to the dead-letter topic."""
        checked = event if isinstance(event, Event) else validate(event)
        if isinstance(checked, Invalid):
            self.send_dead_letter(DeadLetter.refused(orjson.dumps(event), checked, source="producer"))
            return checked
        self._append(self._partition_of(checked.user_id), orjson.dumps(checked.to_dict()))
        return checked

    def send_dead_letter(self, letter: DeadLetter) -> None:
        """Publish refused input with its reason; it is counted like any other record."""
        self._produce(
            self._topics.dead_letters,
            None,
            letter.raw,
            None,
            headers=letter.headers(),
            on_delivery=self._on_dead_letter_delivery,
        )

    def poll(self) -> None:
        """Serve delivery callbacks and send batches that have waited ``linger_ms``."""
        deadline = time.monotonic() - self._tuning.linger_ms / 1000
        for partition, batch in list(self._batches.items()):
            if batch.opened_at <= deadline:
                self._send_batch(partition)
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> DeliveryReport:
        """Send every open batch and wait until the broker confirmed or refused all records."""
        for partition in list(self._batches):
            self._send_batch(partition)
        remaining = self._producer.flush(timeout)
        if remaining:
            self._note_error(f"{remaining} records still unconfirmed after {timeout:.0f}s")
        return self.report

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()

    # --- internals --------------------------------------------------------------------

    def _partition_count(self, topic: str) -> int:
        try:
            metadata = self._producer.list_topics(topic, timeout=15)
        except KafkaException as exc:
            raise MissingTopicError(f"cannot read metadata of topic {topic!r}: {exc}") from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise MissingTopicError(f"topic {topic!r} does not exist; create it with `pulse topics` or `pulse up`")
        return len(found.partitions)

    def _append(self, partition: int, line: bytes) -> None:
        batch = self._batches.get(partition)
        if batch is None:
            batch = self._batches[partition] = _PartitionBatch(opened_at=time.monotonic())
        elif batch.size + len(line) + 1 > self._tuning.max_record_bytes:
            self._send_batch(partition)
            batch = self._batches[partition] = _PartitionBatch(opened_at=time.monotonic())
        batch.lines.append(line)
        batch.size += len(line) + 1
        if len(batch.lines) >= self._tuning.max_events_per_record:
            self._send_batch(partition)

    def _send_batch(self, partition: int) -> None:
        batch = self._batches.pop(partition, None)
        if not batch or not batch.lines:
            return
        count = len(batch.lines)
        self._produce(
            self._topics.events,
            partition,
            b"\n".join(batch.lines),
            None,
            on_delivery=lambda err, msg: self._on_events_delivery(err, msg, count),
        )

    def _produce(
        self,
        topic: str,
        partition: int | None,
        value: bytes,
        key: bytes | None,
        *,
        on_delivery: Callable[[KafkaError | None, Message], None],
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"value": value, "key": key, "on_delivery": on_delivery, "headers": headers}
        if partition is not None:
            kwargs["partition"] = partition
        deadline = time.monotonic() + self._tuning.backpressure_timeout_s
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise BackpressureError(
                        f"Kafka producer queue stayed full for {self._tuning.backpressure_timeout_s:.0f}s "
                        "(broker unreachable or slower than the input)"
                    ) from None
                self._producer.poll(0.05)

    def _on_events_delivery(self, err: KafkaError | None, _msg: Message, count: int) -> None:
        if err is None:
            self.report.records_delivered += 1
            self.report.events_delivered += count
        else:
            self.report.records_failed += 1
            self.report.events_failed += count
            self._note_error(f"{count} events not delivered: {err.str()}")

    def _on_dead_letter_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.report.dead_letters_delivered += 1
        else:
            self.report.records_failed += 1
            self._note_error(f"dead letter not delivered: {err.str()}")

    def _note_error(self, message: str) -> None:
        if len(self.report.errors) < MAX_ERRORS_KEPT:
            self.report.errors.append(message)
