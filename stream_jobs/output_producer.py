"""The worker's producer for everything a record yields: output rows, dead letters and state changelog records.

Faust's own producer (aiokafka, pure Python) cost a Python send, a future and a buffer hand-over
per message, and compressed in the event loop: with one changelog record per touched user, that
was about 40 % of the worker's time in the profile. librdkafka batches, compresses and sends in
threads of its own, for about a microsecond of the event loop per message.

Durability is unchanged: Faust commits an input offset only after flushing its producer, and
:func:`attach_to_commits` makes that flush wait for this producer too, so an offset is committed
only once every record produced for the records before it is acknowledged (``acks=all``,
idempotent, in order per partition). Records that must not be durable before the others
(the state's changelog) are **held** until the commit and produced once everything sent
before them is acknowledged: Kafka orders records within a partition only, so produced
together, a changelog record could be durable while an output of the same input record is
lost with a killed worker, which restored from that changelog would not publish it again.

librdkafka retries transient failures itself, for as long as it takes (``message.timeout.ms`` 0): a broker that is down holds the partition, since
:meth:`OutputProducer.make_room` waits while too much is unconfirmed. A delivery that still
fails for good (known only later, in a delivery report) makes the next flush raise
:class:`OutputLost`: the commit does not happen, Faust stops the worker, and the records are
replayed from the last commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pulse.errors import PulseError
from pulse.kafka_outages import librdkafka_config, report_error
from stream_jobs import metrics

log = logging.getLogger(__name__)

MAX_UNCONFIRMED = 50_000  # messages produced and not yet acknowledged before the next record waits
WAIT_S = 0.005  # poll interval while waiting for acknowledgements
# what each look at the unacknowledged records blocks for: librdkafka sends what lingers at once only while
# a flush is under way, and a flush(0) often returned before its broker threads woke to see it (a commit then
# waited up to linger.ms more); with 1 ms, a commit's records went out in 6-7 ms, not 10-58
FLUSH_NUDGE_S = 0.001


class OutputLost(PulseError):
    """Kafka refused a record for good after the input record that produced it was handled."""


class OutputProducer:
    """An idempotent confluent-kafka producer whose flush confirms every record produced so far."""

    def __init__(self, bootstrap: str, *, track_offsets_of: str | None = None,
                 config: dict[str, Any] | None = None) -> None:  # fmt: skip
        """``track_offsets_of``: a topic whose acknowledged offsets :meth:`confirm` reports (a changelog)."""
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": "lz4",
                # a batch per partition every 50 ms at most: at 5 ms, live traffic (a few events a record)
                # made a produce request per partition every few records, and the broker's CPU, on the
                # worker's cores, went to them (90 % of a core at 2,000 records/s; 28 % at 50 ms).
                # A commit sends at once whatever lingers, so only a row's latency grows, by 50 ms at most.
                "linger.ms": 50,
                "message.timeout.ms": 0,  # never give up on a transient failure: the partition waits instead
                # a report costs a Python call: only failures need one, unless offsets are tracked
                "delivery.report.only.error": track_offsets_of is None,
                "on_delivery": self._on_delivery,
                **librdkafka_config(metrics.KAFKA),
                "error_cb": _on_client_error,
                **(config or {}),
            }
        )
        self._tracked = track_offsets_of
        self._offsets: dict[int, int] = {}  # partition of the tracked topic -> newest acknowledged offset
        self._failures: list[str] = []
        self._held: dict[tuple[str, bytes], tuple[bytes | None, int]] = {}  # (topic, key) -> newest value, partition

    def send(self, topic: str, value: bytes | None, *, key: bytes | None = None, partition: int | None = None,
             headers: Sequence[tuple[str, bytes]] | None = None) -> str | None:  # fmt: skip
        """Queue one record; the reason if the client refuses it for good (too large, invalid), else None."""
        kwargs: dict[str, Any] = {"value": value, "key": key, "headers": headers}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return None
            except BufferError:  # queue full despite make_room (an unusually large record): wait here
                self._producer.poll(WAIT_S)
            except (KafkaException, ValueError, TypeError) as exc:
                return f"{type(exc).__name__}: {exc}"

    def hold(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        """Keep a record for :meth:`confirm` to produce after everything sent so far; only the newest per key.

        For a compacted topic (a changelog), where what a key held in between need not be sent.
        """
        self._held[(topic, key)] = (value, partition)

    def holds(self, topic: str, key: bytes) -> bool:
        """Whether a record for ``key`` is held for the next :meth:`confirm`."""
        return (topic, key) in self._held

    async def make_room(self) -> None:
        """Wait while too many records are unconfirmed (Kafka slow or down), serving delivery reports."""
        producer = self._producer
        producer.poll(0)
        while len(producer) >= MAX_UNCONFIRMED:
            await asyncio.sleep(WAIT_S)
            producer.poll(0)

    async def confirm(self) -> dict[int, int]:
        """Wait until every record sent so far is acknowledged, then produce the held ones and wait for those too.

        Raises :class:`OutputLost` if a record never will be acknowledged (a held one refused
        outright included: the state and its changelog must not part). Returns the newest
        acknowledged offset per partition of the tracked topic since the last call.
        """
        await self._acknowledged()
        held, self._held = self._held, {}
        for (topic, key), (value, partition) in held.items():
            refused = self.send(topic, value, key=key, partition=partition)
            if refused is not None:
                raise OutputLost(f"held record {key!r} for {topic} refused by Kafka: {refused}")
        if held:
            await self._acknowledged()
        offsets, self._offsets = self._offsets, {}
        return offsets

    async def _acknowledged(self) -> None:
        """Wait until the records produced so far are delivered; raise :class:`OutputLost` if one failed for good."""
        producer = self._producer
        while producer.flush(FLUSH_NUDGE_S):
            await asyncio.sleep(WAIT_S)
        if self._failures:
            failures, self._failures = self._failures, []
            raise OutputLost(f"{len(failures)} output records refused for good, first: {failures[0]}")

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            log.error("output record to %s refused for good: %s", message.topic(), error)
            self._failures.append(f"{message.topic()}: {error}")
        elif message.topic() == self._tracked:
            self._offsets[message.partition()] = message.offset()  # reports come in order per partition


def _on_client_error(error: KafkaError) -> None:
    """A client-level error (broker unreachable, ...): librdkafka retries; counted, and summarised in the log."""
    metrics.PUBLISH_FAILURES.inc()
    report_error(metrics.KAFKA, error)


def attach_to_commits(app: faust.App, confirm: Callable[[], Awaitable[object]]) -> None:
    """Make the app's producer flush, which Faust awaits before every commit, await ``confirm`` first."""
    faust_producer = app.producer
    flush_faust = faust_producer.flush

    async def flush() -> None:
        await confirm()
        await flush_faust()

    faust_producer.flush = flush  # type: ignore[method-assign]
