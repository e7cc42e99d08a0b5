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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pulse.contract import Event, Invalid, validate
from pulse.dead_letter import DeadLetter
from pulse.errors import PulseError
from pulse.partitioning import partition_for
from pulse.settings import ProducerTuning, Settings, ValidationTuning
from pulse.topics import Topics

MAX_ERRORS_KEPT = 20


class BackpressureError(PulseError, RuntimeError):
    """Kafka did not take records fast enough: the producer's bounded queue stayed full."""


class MissingTopicError(PulseError, RuntimeError):
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
    """Encoded events bound for one record of one partition."""

    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    opened_at: float = field(default_factory=time.monotonic)

    def fits(self, line: bytes, tuning: ProducerTuning) -> bool:
        if not self.lines:
            return True
        return len(self.lines) < tuning.max_events_per_record and self.size + len(line) + 1 <= tuning.max_record_bytes

    def add(self, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line) + 1

    def value(self) -> bytes:
        return b"\n".join(self.lines)


class _Confirmation:
    """Calls ``on_done(error or None)`` once every record of one ``publish_now`` call is settled."""

    def __init__(self, records: int, on_done: Callable[[str | None], None]) -> None:
        self._waiting = records
        self._error: str | None = None
        self._on_done = on_done
        if records == 0:
            on_done(None)

    def settle(self, err: KafkaError | None) -> None:
        if err is not None and self._error is None:
            self._error = err.str()
        self._waiting -= 1
        if self._waiting == 0:
            self._on_done(self._error)


class EventProducer:
    """Validates events, batches them per partition and publishes them to the events topic."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        tuning: ProducerTuning | None = None,
        *,
        max_future_skew_s: float = ValidationTuning().max_future_skew_s,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._topics = topics
        self._tuning = tuning or ProducerTuning()
        self._max_future_skew_s = max_future_skew_s
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
        partitions = self._partition_count(topics.events)
        # not a closure over self: that cycle would keep the client and its connections alive
        # after the last reference, until the garbage collector happens to run
        self._partition_of: Callable[[str], int] = lru_cache(maxsize=100_000)(
            lambda user_id: partition_for(user_id, partitions)
        )
        self._batches: dict[int, _PartitionBatch] = {}
        self.report = DeliveryReport()

    @classmethod
    def from_settings(cls, settings: Settings, config: Mapping[str, Any] | None = None) -> EventProducer:
        """A producer for the pipeline described by ``settings`` (broker, topics, tuning)."""
        return cls(
            settings.bootstrap,
            Topics.with_prefix(settings.topic_prefix),
            settings.producer,
            max_future_skew_s=settings.validation.max_future_skew_s,
            config=config,
        )

    def check(self, obj: Any) -> Event | Invalid:
        """Validate a decoded event with this producer's clock and allowed future skew."""
        return validate(obj, not_after_ms=int((time.time() + self._max_future_skew_s) * 1000))

    def send(self, event: Mapping[str, Any] | Event) -> Event | Invalid:
        """Validate one event and queue it; an invalid one goes to the dead-letter topic."""
        checked = event if isinstance(event, Event) else self.check(event)
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
            on_delivery=self._on_dead_letter_delivery,
            headers=letter.headers(),
        )

    def publish_now(
        self, events: Sequence[Event], letters: Sequence[DeadLetter], on_done: Callable[[str | None], None]
    ) -> None:
        """Produce these events (packed per partition) and dead letters at once, bypassing the batches.

        For callers that must answer only when their input is durable (the HTTP collector):
        ``on_done(error)`` is called once, from whichever thread polls this producer, when the
        broker has confirmed every record (``None``) or refused one (the error). When the
        queue is full this raises :class:`BackpressureError` immediately instead of waiting;
        records produced before that may still be delivered, so callers retry the whole call
        and rely on ``event_id`` de-duplication.
        """
        records: list[tuple[int, _PartitionBatch]] = []
        open_batches: dict[int, _PartitionBatch] = {}
        for event in events:
            partition, line = self._partition_of(event.user_id), orjson.dumps(event.to_dict())
            batch = open_batches.setdefault(partition, _PartitionBatch())
            if not batch.fits(line, self._tuning):
                records.append((partition, batch))
                batch = open_batches[partition] = _PartitionBatch()
            batch.add(line)
        records.extend(open_batches.items())
        confirmation = _Confirmation(len(records) + len(letters), on_done)
        for partition, batch in records:
            count = len(batch.lines)

            def settle_events(err: KafkaError | None, msg: Message, count: int = count) -> None:
                self._on_events_delivery(err, msg, count)
                confirmation.settle(err)

            self._produce(self._topics.events, partition, batch.value(), on_delivery=settle_events, wait=False)
        for letter in letters:

            def settle_letter(err: KafkaError | None, msg: Message) -> None:
                self._on_dead_letter_delivery(err, msg)
                confirmation.settle(err)

            self._produce(
                self._topics.dead_letters, None, letter.raw, on_delivery=settle_letter, headers=letter.headers(), wait=False
            )

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks (waiting up to ``timeout`` s for one) and send batches
        that have waited ``linger_ms``."""
        deadline = time.monotonic() - self._tuning.linger_ms / 1000
        for partition, batch in list(self._batches.items()):
            if batch.opened_at <= deadline:
                self._send_batch(partition)
        self._producer.poll(timeout)

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
        batch = self._batches.setdefault(partition, _PartitionBatch())
        if not batch.fits(line, self._tuning):
            self._send_batch(partition)
            batch = self._batches[partition] = _PartitionBatch()
        batch.add(line)
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
            batch.value(),
            on_delivery=lambda err, msg: self._on_events_delivery(err, msg, count),
        )

    def _produce(
        self,
        topic: str,
        partition: int | None,
        value: bytes,
        *,
        on_delivery: Callable[[KafkaError | None, Message], None],
        headers: list[tuple[str, bytes]] | None = None,
        wait: bool = True,
    ) -> None:
        """Hand one record to librdkafka; when its queue is full, wait for room (up to the
        back-pressure timeout) or, with ``wait=False``, give up at once."""
        kwargs: dict[str, Any] = {"value": value, "on_delivery": on_delivery, "headers": headers}
        if partition is not None:
            kwargs["partition"] = partition
        deadline = time.monotonic() + (self._tuning.backpressure_timeout_s if wait else 0.0)
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise BackpressureError(
                        "Kafka producer queue is full (broker unreachable or slower than the input)"
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
