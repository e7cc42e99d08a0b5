"""Read partitions of a state changelog into a dict, fast: the restore of a partition handed to a worker.

Faust restores a table through its own recovery: every changelog record becomes a Faust
event, goes through an asyncio queue, and is checked against every partition's remaining
count, about 5,000 records a second here; a partition of 500,000 users paused its events
for a minute and a half. librdkafka fetches and decompresses in threads of its own and
hands over records in batches, so the only Python left per record is a dict write.

Run it in a thread (:func:`asyncio.to_thread`): the event loop keeps heartbeating the group
meanwhile.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger(__name__)

BATCH = 10_000  # records per consume call
PROGRESS_EVERY_S = 2.0
WATERMARK_TIMEOUT_S = 10.0


@dataclass
class Restored:
    """What :func:`catch_up` found: partitions kept as held, and for the rest, values by key and last offsets."""

    kept: set[int] = field(default_factory=set)
    values: dict[bytes, bytes] = field(default_factory=dict)
    offsets: dict[int, int | None] = field(default_factory=dict)  # None: the partition holds no record
    records: int = 0
    seconds: float = 0.0


def catch_up(bootstrap: str, topic: str, partitions: Iterable[int], held: Mapping[int, int | None]) -> Restored:
    """Read back ``partitions`` of the changelog ``topic``, but for those the caller holds as they are.

    ``held``: the partitions whose state the caller has, each with the offset of the last
    changelog record it reflects (None: the partition had none). One whose changelog still
    ends there is kept; every other is read from its start to the end it has now, every key
    to its newest value (absent after a tombstone). Raises :class:`KafkaException` if the
    broker cannot say where a partition ends.
    """
    started = time.monotonic()
    restored = Restored()
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"pulse-restore-{uuid.uuid4().hex}",  # never joined nor committed: partitions are assigned
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,  # the end of a partition whose last offset holds no record (a control record)
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
    })  # fmt: skip
    try:
        ends: dict[int, int] = {}  # partition to read -> offset of its last record
        starts = []
        expected = 0  # records to read, for the progress log
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=WATERMARK_TIMEOUT_S)
            end = high - 1 if high > low else None
            if partition in held and held[partition] == end:
                restored.kept.add(partition)
                continue
            restored.offsets[partition] = None
            if end is not None:
                ends[partition] = end
                starts.append(TopicPartition(topic, partition, low))
                expected += end + 1 - low
        if starts:
            consumer.assign(starts)
            _read_until(consumer, ends, restored, expected)
    finally:
        consumer.close()
    restored.seconds = time.monotonic() - started
    return restored


def _read_until(consumer: Consumer, ends: dict[int, int], restored: Restored, expected: int) -> None:
    """Consume until every partition of ``ends`` has reached its end (librdkafka reports it, ``enable.partition.eof``).

    Nobody writes to the partitions meanwhile: their previous holder flushed before giving them
    up. Per record, only what a dict write needs: tombstones are kept as None until the end.
    """
    remaining = set(ends)
    values: dict[bytes, bytes | None] = {}
    last_report = time.monotonic()
    while remaining:
        batch = consumer.consume(BATCH, timeout=1.0)
        ends_reached = 0
        for message in batch:
            if message.error() is None:
                values[message.key()] = message.value()
                continue
            if message.error().code() != KafkaError._PARTITION_EOF:
                raise KafkaException(message.error())
            remaining.discard(message.partition())
            ends_reached += 1
        restored.records += len(batch) - ends_reached
        if time.monotonic() - last_report >= PROGRESS_EVERY_S:
            last_report = time.monotonic()
            log.info("restoring state: %s of %s changelog records read", f"{restored.records:,}", f"{expected:,}")
    restored.values = {key: value for key, value in values.items() if value is not None}
    restored.offsets.update(ends)
