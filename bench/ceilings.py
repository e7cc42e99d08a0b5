"""The ceilings: what the bare clients do with the same data, without the pipeline around them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from confluent_kafka import Producer


def raw_confluent_producer(bootstrap: str, topic: str, records: Sequence[tuple[int, bytes]]) -> float:
    """Seconds for a bare confluent-kafka producer (acks=all, lz4) to deliver the same records."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": "lz4", "linger.ms": 20,
                         "enable.idempotence": True})  # fmt: skip
    started = time.perf_counter()
    for partition, value in records:
        while True:
            try:
                producer.produce(topic, value=value, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0
    return time.perf_counter() - started


def raw_aiokafka_consumer(bootstrap: str, topic: str, partitions: int, expected_events: int) -> float:
    """Seconds for a bare aiokafka consumer to read the topic and orjson-decode every event."""

    async def consume() -> float:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
        await consumer.start()
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        decoded = 0
        started = time.perf_counter()
        try:
            while decoded < expected_events:
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for messages in batches.values():
                    for message in messages:
                        decoded += sum(1 for line in message.value.split(b"\n") if orjson.loads(line))
            return time.perf_counter() - started
        finally:
            await consumer.stop()

    return asyncio.run(consume())


_INSERT = """
import sys, time, orjson, clickhouse_connect
from pulse.outputs import VALID_EVENTS
from sinks.rows import Columns, Position, decode_record
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
client.command("CREATE TABLE IF NOT EXISTS events (event_id String, type LowCardinality(String), user_id String, "
               "ts DateTime64(3, 'UTC'), server_received_at Nullable(DateTime64(3, 'UTC')), props String, "
               "context String) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (user_id, ts, event_id)")
columns = Columns.of(VALID_EVENTS)
for offset, record in enumerate(sys.stdin.buffer.read().split(b"\\n\\n")):
    if record:
        columns.extend(decode_record(VALID_EVENTS, record).rows, Position("bench", 0, offset))
started = time.perf_counter()
for start in range(0, len(columns), 50_000):
    client.insert("events", [c[start:start + 50_000] for c in columns.data], column_names=list(columns.names),
                  column_oriented=True)
print(time.perf_counter() - started)
"""


def bare_clickhouse_insert(directory: str, normalised_records: Sequence[bytes]) -> float:
    """Seconds for clickhouse-connect to insert the rows column-wise (in a process of its own:
    one process may open one embedded engine)."""
    result = subprocess.run(
        [sys.executable, "-c", _INSERT, directory],
        input=b"\n\n".join(normalised_records), capture_output=True, check=True,
    )  # fmt: skip
    return float(result.stdout.decode().split()[-1])
