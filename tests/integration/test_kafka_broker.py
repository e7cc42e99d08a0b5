"""End-to-end check of devstack/kafka_broker.py against a real Kafka 3.9.1 broker.

Slow on a fresh machine (Maven resolves ~60 jars once); later runs reuse the jar cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from devstack.kafka_broker import BrokerConfig, LocalKafka
from devstack.ports import free_ports
from tests.integration.conftest import jar_cache_dir

MESSAGES = 100


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalKafka]:
    port, controller_port = free_ports(2)
    kafka = LocalKafka(BrokerConfig(data_dir=tmp_path / "kafka", jar_cache_dir=jar_cache_dir(),
                                    port=port, controller_port=controller_port, heap="512m"))
    yield kafka
    kafka.stop()


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
        future.result(timeout=30)


def _produce(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value in values:
        producer.produce(topic, value=value.encode())
    assert producer.flush(30) == 0


def _consume(bootstrap: str, topic: str, expected: int) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    received: list[str] = []
    try:
        for _ in range(600):
            if len(received) >= expected:
                break
            message = consumer.poll(0.1)
            if message is None:
                continue
            assert message.error() is None, message.error()
            value = message.value()
            assert value is not None
            received.append(value.decode())
    finally:
        consumer.close()
    return received


@pytest.mark.integration
def test_broker_round_trip_and_lifecycle(broker: LocalKafka) -> None:
    broker.start(timeout=180)

    status = broker.status()
    assert status.answering
    assert status.pid is not None
    assert status.bootstrap == broker.bootstrap

    topic = "pulse-test"
    values = [f"event-{i}" for i in range(MESSAGES)]
    _create_topic(broker.bootstrap, topic)
    _produce(broker.bootstrap, topic, values)
    assert sorted(_consume(broker.bootstrap, topic, MESSAGES)) == sorted(values)

    broker.start()
    assert broker.status().pid == status.pid

    assert broker.stop() is True
    after = broker.status()
    assert after.pid is None
    assert not after.answering
    assert broker.stop() is False
