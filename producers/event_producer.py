"""``EventProducer``: validated events into Kafka, several per record, keyed by user.

Why batch: the stream jobs pay a fixed cost per Kafka record (about 270 µs in Faust), so
events are packed into one NDJSON record per partition (see :mod:`pulse.wire` and
:mod:`producers.packing`). The partition is chosen here with Kafka's default partitioner
on ``user_id``, so a user's events always land together whichever client sent them.

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

from producers.packing import OpenRecords, PackedRecord
from pulse.contract import Event, Invalid, validate
from pulse.dead_letter import DeadLetter
from pulse.errors import PulseError
from pulse.kafka_outages import kafka_dependency, librdkafka_config
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
        process: str = "producer",
    ) -> None:
        """``process`` names the process in ``pulse_dependency_up`` and the log's outage lines."""
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
                **librdkafka_config(kafka_dependency(process)),
                **(config or {}),
            }
        )
        partitions = self._partition_count(topics.events)
        # not a closure over self: that cycle would keep the client and its connections alive
        # after the last reference, until the garbage collector happens to run
        self._partition_of: Callable[[str], int] = lru_cache(maxsize=100_000)(
            lambda user_id: partition_for(user_id, partitions)
        )
        self._open = OpenRecords(self._tuning, self._tuning.linger_ms / 1000)
        self.report = DeliveryReport()

    @classmethod
    def from_settings(
        cls, settings: Settings, config: Mapping[str, Any] | None = None, process: str = "producer"
    ) -> EventProducer:
        """A producer for the pipeline described by ``settings`` (broker, topics, tuning)."""
        return cls(
            settings.bootstrap,
            Topics.with_prefix(settings.topic_prefix),
            settings.producer,
            max_future_skew_s=settings.validation.max_future_skew_s,
            config=config,
            process=process,
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
        for record in self._open.add(*self.encode(checked), time.monotonic()).closed:
            self._send_record(record)
        return checked

    def encode(self, event: Event) -> tuple[int, bytes]:
        """The partition of the event's user and the event as one NDJSON line."""
        return self._partition_of(event.user_id), orjson.dumps(event.to_dict())

    def send_dead_letter(self, letter: DeadLetter) -> None:
        """Publish refused input with its reason; it is counted like any other record."""
        self._produce(
            self._topics.dead_letters,
            None,
            letter.raw,
            on_delivery=self._on_dead_letter_delivery,
            headers=letter.headers(),
        )

    def produce_now(self, record: PackedRecord, on_done: Callable[[str | None], None]) -> None:
        """Produce one packed record of events at once, for callers that answer only when their
        input is durable (the HTTP collector, which packs the records itself).

        ``on_done(error)`` is called exactly once: with ``None`` when the broker confirmed the
        record, or with the error when it refused it, from whichever thread polls this producer;
        or before this returns when librdkafka refuses the record outright (its queue is full:
        back-pressure, never a wait; or the record is too large).
        """
        count = len(record.lines)

        def settle(err: KafkaError | None, msg: Message) -> None:
            self._on_events_delivery(err, msg, count)
            on_done(None if err is None else err.str())

        self._produce_now(self._topics.events, record.partition, record.value(), None, settle, on_done)

    def dead_letter_now(self, letter: DeadLetter, on_done: Callable[[str | None], None]) -> None:
        """Produce one dead letter at once; ``on_done`` is called as by :meth:`produce_now`."""

        def settle(err: KafkaError | None, msg: Message) -> None:
            self._on_dead_letter_delivery(err, msg)
            on_done(None if err is None else err.str())

        self._produce_now(self._topics.dead_letters, None, letter.raw, letter.headers(), settle, on_done)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks (waiting up to ``timeout`` s for one) and send batches
        that have waited ``linger_ms``."""
        for record in self._open.due(time.monotonic()):
            self._send_record(record)
        self._producer.poll(timeout)

    def flush(self, timeout: float = 60.0) -> DeliveryReport:
        """Send every open batch and wait until the broker confirmed or refused all records."""
        for record in self._open.drain():
            self._send_record(record)
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

    def _send_record(self, record: PackedRecord) -> None:
        count = len(record.lines)
        self._produce(
            self._topics.events,
            record.partition,
            record.value(),
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

    def _produce_now(
        self,
        topic: str,
        partition: int | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None,
        on_delivery: Callable[[KafkaError | None, Message], None],
        on_done: Callable[[str | None], None],
    ) -> None:
        """Hand one record to librdkafka without waiting; a refusal there goes to ``on_done`` at once."""
        try:
            self._produce(topic, partition, value, on_delivery=on_delivery, headers=headers, wait=False)
        except BackpressureError as exc:
            on_done(str(exc))
        except KafkaException as exc:
            on_done(exc.args[0].str())

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
