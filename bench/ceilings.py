"""The ceilings: what the bare clients do with the same data, without the pipeline around them.

And what the worker's own logic does without the clients: every job run in process on the
same records, no Kafka or Faust around it.
"""

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


_JOBS = """
import sys, time
from pulse.settings import load_settings
from stream_jobs.runner import JobRunner
from stream_jobs.worker import settle_garbage_collector
records = [chunk.split(b" ", 1) for chunk in sys.stdin.buffer.read().split(b"\\n\\n") if chunk]
store, offsets = {}, {}
runner = JobRunner(load_settings(), store)
settle_garbage_collector()
started = time.perf_counter()
for partition, value in records:
    offset = offsets[partition] = offsets.get(partition, -1) + 1
    runner.process(value, "events", int(partition), offset).apply_writes(store)
print(time.perf_counter() - started)
"""


def jobs_in_process(records: Sequence[tuple[int, bytes]]) -> float:
    """Seconds for the worker's runner, every job on, to handle the records in process (a dict for its store).

    In a process of its own, with the worker's garbage-collector settings, so it pays what the
    worker pays for the logic alone: the rest of the worker's time is Kafka, Faust and publishing.
    """
    result = subprocess.run(
        [sys.executable, "-c", _JOBS],
        input=b"\n\n".join(b"%d %s" % (partition, value) for partition, value in records),
        capture_output=True, check=True,
    )  # fmt: skip
    return float(result.stdout.decode().split()[-1])
