"""Fixtures for tests on real parts: one Kafka broker per test session, fresh topics per test.

The broker is the project's own (``devstack.kafka_broker``), started here on free ports; set
``KAFKA_BOOTSTRAP`` to run the suite against another broker instead. Every test gets its
own topic prefix, consumer groups, data directory and embedded ClickHouse.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.kafka_broker import BrokerConfig, LocalKafka
from devstack.ports import free_ports
from devstack.stack import down, up
from ops.topics import ensure_topics
from pulse.settings import Settings, load_settings


def jar_cache_dir() -> Path:
    return Path(os.environ.get("PULSE_CACHE_DIR", Path.home() / ".cache" / "customer-pulse")) / "kafka-3.9.1"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real broker for the whole session."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    port, controller_port = free_ports(2)
    broker = LocalKafka(
        BrokerConfig(
            data_dir=tmp_path_factory.mktemp("kafka"),
            jar_cache_dir=jar_cache_dir(),
            port=port,
            controller_port=controller_port,
        )
    )
    broker.start(log=lambda line: print(f"[kafka] {line}"))
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings isolated to this test: own topics, groups, ports and ClickHouse directory."""
    run = uuid.uuid4().hex[:10]
    worker_port, sink_port, collector_port = free_ports(3)
    return load_settings(
        {
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "PULSE_DATA_DIR": str(tmp_path / "pulse"),
            "PULSE_CACHE_DIR": str(jar_cache_dir().parent),
            "PULSE_TOPIC_PREFIX": f"t{run}.",
            "PULSE_APP_ID": f"test-{run}",
            "PULSE_WORKER_METRICS_PORT": str(worker_port),
            "PULSE_SINK_PORT": str(sink_port),
            "PULSE_COLLECTOR_PORT": str(collector_port),
            # the worker's table store: PULSE_STATE_STORE=rocksdb:// runs the suite on disk state (needs rocksdict)
            "PULSE_STATE_STORE": os.environ.get("PULSE_STATE_STORE", "memory://"),
        }
    )


@pytest.fixture
def topics_ready(settings: Settings) -> Settings:
    """The settings, with the topics created."""
    ensure_topics(settings)
    return settings


@pytest.fixture
def pipeline(settings: Settings) -> Iterator[Settings]:
    """Sink and worker running as background processes, stopped after the test (or after a failed start)."""
    try:
        up(settings, log=lambda line: print(f"[stack] {line}"))
        yield settings
    finally:
        down(settings, log=lambda line: print(f"[stack] {line}"))
