"""Our partitioner must agree with Kafka's default (murmur2) as aiokafka implements it."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from pulse.partitioning import partition_for


def test_matches_kafka_default_partitioner() -> None:
    partitioner = DefaultPartitioner()
    partitions = list(range(12))
    for i in range(2_000):
        key = f"user-{i}-{'x' * (i % 7)}"
        assert partition_for(key, 12) == partitioner(key.encode(), partitions, partitions)
