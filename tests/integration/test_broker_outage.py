"""Kafka stopped mid-stream and restarted: the exact answer, every event confirmed, and a quiet log.

The broker is this test's own (the session's broker is shared by other tests), restarted on
the same data directory and port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from devstack.ground_truth import differences, expected_outcome, read_outcome
from devstack.kafka_broker import BrokerConfig, LocalKafka
from devstack.ports import free_ports
from producers import EventProducer, publish_lines
from producers.pacing import paced
from producers.simulator import SimulationConfig, simulate
from pulse.settings import Settings
from tests.integration.conftest import jar_cache_dir
from tests.integration.outage_watch import dependency_up, lines_after, watch_dependencies
from tests.integration.test_pipeline_e2e import wait_for_pipeline

pytestmark = pytest.mark.integration

PUBLISH_RATE = 2_500  # lines a second: the simulation takes about 6 s to publish
STOP_AFTER_S = 2.0  # into the publication
OUTAGE_S = 12.0
MAX_OUTAGE_LOG_LINES = 40  # what the worker may log from the stop until it caught up


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    port, controller_port = free_ports(2)
    config = BrokerConfig(tmp_path_factory.mktemp("own-kafka"), jar_cache_dir(), port, controller_port)
    broker = LocalKafka(config)
    broker.start(log=lambda line: print(f"[kafka] {line}"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_bootstrap(broker: LocalKafka) -> str:
    """This module's pipelines run on the broker the test stops."""
    return broker.bootstrap


def test_a_broker_restart_mid_stream_stays_exact_and_logs_little(pipeline: Settings, broker: LocalKafka) -> None:
    settings = pipeline
    simulation = simulate(SimulationConfig(customers=1_500, days=7, seed=21))
    worker_log = settings.log_dir / "worker.log"
    worker_metrics = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
    sink_metrics = f"{settings.sink_url}/metrics"
    outage: dict[str, float] = {}

    def restart_broker() -> None:
        time.sleep(STOP_AFTER_S)
        outage["log_offset"] = worker_log.stat().st_size
        outage["stopped"] = time.monotonic()
        broker.stop()
        time.sleep(OUTAGE_S)
        broker.start(log=lambda line: print(f"[kafka] {line}"))
        outage["restarted"] = time.monotonic()

    with watch_dependencies(worker_metrics, sink_metrics) as seen:
        restarter = threading.Thread(target=restart_broker)
        restarter.start()
        with EventProducer.from_settings(settings) as producer:
            published = publish_lines(paced(simulation.lines(), PUBLISH_RATE), "simulation", producer)
        restarter.join()
        wait_for_pipeline(settings)
        caught_up = time.monotonic()

    assert published.lines == simulation.truth.totals["lines"]
    assert published.delivery.ok, published.delivery.errors
    assert published.delivery.events_delivered == published.valid
    assert published.delivery.dead_letters_delivered == published.invalid
    assert differences(read_outcome(settings), expected_outcome(simulation.truth)) == []

    assert seen[("worker", "kafka")][:2] == [1, 0] and seen[("worker", "kafka")][-1] == 1, seen
    assert seen[("sink", "kafka")][:2] == [1, 0] and seen[("sink", "kafka")][-1] == 1, seen
    assert dependency_up(worker_metrics)[("worker", "kafka")] == 1
    lines = lines_after(worker_log, int(outage["log_offset"]))
    print(f"worker log, {caught_up - outage['stopped']:.0f} s from the stop until caught up:", *lines, sep="\n  ")
    assert len(lines) <= MAX_OUTAGE_LOG_LINES
    assert sum("kafka unavailable: " in line for line in lines) == 1
    assert sum("kafka available again after " in line for line in lines) == 1
