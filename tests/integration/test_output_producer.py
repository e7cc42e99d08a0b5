"""The worker's output producer against the real broker: what its confirm reports."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from stream_jobs.output_producer import OutputProducer

pytestmark = pytest.mark.integration


def _topic(bootstrap: str, partitions: int) -> str:
    name = f"output-producer-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the topic exists
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def test_confirm_reports_the_newest_offsets_of_the_tracked_topic_only(kafka_bootstrap: str) -> None:
    changelog, other = _topic(kafka_bootstrap, 2), _topic(kafka_bootstrap, 1)
    producer = OutputProducer(kafka_bootstrap, track_offsets_of=changelog)
    for i in range(5):
        assert producer.send(changelog, b"v", key=f"k{i}".encode(), partition=i % 2) is None
    assert producer.send(other, b"row", partition=0) is None
    assert asyncio.run(producer.confirm()) == {0: 2, 1: 1}  # offsets 0..2 on partition 0, 0..1 on 1
    assert producer.send(changelog, None, key=b"k0", partition=1) is None  # a tombstone counts too
    assert asyncio.run(producer.confirm()) == {1: 2}
    assert asyncio.run(producer.confirm()) == {}


def test_a_record_too_large_for_the_client_is_refused_with_the_reason(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap, 1)
    producer = OutputProducer(kafka_bootstrap)
    refused = producer.send(topic, b"x" * 2_000_000, partition=0)
    assert refused is not None and "MSG_SIZE_TOO_LARGE" in refused
    assert asyncio.run(producer.confirm()) == {}


def test_held_records_go_out_at_the_confirm_the_newest_per_key(kafka_bootstrap: str) -> None:
    changelog, rows = _topic(kafka_bootstrap, 1), _topic(kafka_bootstrap, 1)
    producer = OutputProducer(kafka_bootstrap, track_offsets_of=changelog)
    producer.hold(changelog, b"k", b"first", 0)
    assert producer.send(rows, b"row", partition=0) is None
    producer.hold(changelog, b"k", b"newest", 0)
    producer.hold(changelog, b"gone", None, 0)
    assert producer.holds(changelog, b"k") and not producer.holds(rows, b"k")
    assert asyncio.run(producer.confirm()) == {0: 1}  # two held records, offsets 0 and 1
    assert not producer.holds(changelog, b"k")
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([changelog])
    found: list[tuple[bytes, bytes | None]] = []
    while len(found) < 2:
        message = consumer.poll(10)
        assert message is not None, f"held records missing, found {found}"
        found.append((message.key(), message.value()))
    consumer.close()
    assert found == [(b"k", b"newest"), (b"gone", None)]
