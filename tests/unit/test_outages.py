"""A dependency that is down is told once, then counted per interval, then its recovery; the gauge follows."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from pulse.kafka_outages import LIBRDKAFKA_LOG
from pulse.outages import Dependency, Divert, OutageLog
from stream_jobs.aiokafka_outages import is_unreachable


def test_the_first_error_is_told_then_one_line_per_interval_then_the_recovery() -> None:
    outages = OutageLog("kafka", interval_s=10, quiet_s=0)
    lines = [outages.failed(f"refused #{i}", now=100 + i * 0.001) for i in range(4_000)]  # 4,000 in 4 s
    assert lines[0] == "kafka unavailable: refused #0"
    assert lines[1:] == [None] * 3_999
    assert not outages.up
    assert outages.failed("refused late", now=110.5) == (
        "kafka still unavailable after 10 s: 4000 more errors in the last 10 s, latest: refused late"
    )
    assert outages.failed("refused later", now=115) is None
    assert outages.failed("refused again", now=121) == (
        "kafka still unavailable after 21 s: 2 more errors in the last 10 s, latest: refused again"
    )
    assert outages.reachable(now=125.25) == "kafka available again after 25.2 s (4003 errors)"
    assert outages.up


def test_a_positive_signal_without_an_outage_says_nothing() -> None:
    outages = OutageLog("clickhouse")
    assert outages.reachable(now=1) is None
    assert outages.up


def test_the_outage_ends_only_once_errors_stopped_for_quiet_s() -> None:
    """One client reconnected while another still fails: not yet a recovery."""
    outages = OutageLog("kafka", quiet_s=1)
    outages.failed("refused", now=10)
    outages.failed("not ready", now=19.5)
    assert outages.reachable(now=20) is None
    assert not outages.up
    assert outages.reachable(now=20.5) == "kafka available again after 10.5 s (2 errors)"


def test_a_new_outage_starts_a_new_count() -> None:
    outages = OutageLog("kafka")
    outages.failed("refused", now=0)
    outages.failed("refused", now=1)
    outages.reachable(now=2)
    assert outages.failed("reset", now=50) == "kafka unavailable: reset"
    assert outages.reachable(now=53) == "kafka available again after 3.0 s (1 error)"


def gauge(process: str, name: str) -> float | None:
    return REGISTRY.get_sample_value("pulse_dependency_up", {"process": process, "dependency": name})


def test_the_gauge_and_the_log_follow_the_dependency(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    dependency = Dependency("unit-test", "kafka", interval_s=10, clock=lambda: now[0])
    assert gauge("unit-test", "kafka") == 1
    with caplog.at_level(logging.INFO, logger="pulse.outages"):
        for _ in range(1_000):
            dependency.failed("Connect to ipv4#127.0.0.1:9092 failed: Connection refused")
        assert gauge("unit-test", "kafka") == 0
        now[0] = 12.0
        dependency.reachable()
    assert gauge("unit-test", "kafka") == 1
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "kafka unavailable: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"),
        ("INFO", "kafka available again after 12.0 s (1000 errors)"),
    ]


def test_divert_takes_what_it_recognises_out_of_the_log(caplog: pytest.LogCaptureFixture) -> None:
    dependency = Dependency("unit-test", "divert")
    logger = logging.getLogger("unit-test.divert")
    logger.addFilter(Divert(dependency, lambda record: "refused" in record.getMessage()))
    with caplog.at_level(logging.DEBUG):
        logger.error("connect refused %d", 1)
        logger.error("connect refused %d", 2)
        logger.info("connect refused, below WARNING")
        logger.warning("something else")
    assert not dependency.up
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("pulse.outages", "divert unavailable: connect refused 1"),
        ("unit-test.divert", "connect refused, below WARNING"),
        ("unit-test.divert", "something else"),
    ]


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, args, None)


def test_aiokafka_s_connection_failures_are_recognised() -> None:
    from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, NotLeaderForPartitionError

    refused = OSError(111, "Connect call failed ('127.0.0.1', 9092)")
    assert is_unreachable(record("Unable connect to node with id %s: %s", 1, refused))
    assert is_unreachable(record("Unable to update metadata from %s", [1]))
    assert is_unreachable(record("Failed fetch messages from %s: %s", 1, NodeNotReadyError("not ready")))
    assert is_unreachable(record("Unable to request metadata from node with id %s: %r", 1, KafkaConnectionError()))
    assert not is_unreachable(
        record("Got error produce response on %s, retrying. Error: %s", "tp", NotLeaderForPartitionError)
    )
    assert not is_unreachable(record("Heartbeat failed for group %s because it is rebalancing", "g"))


def test_librdkafka_s_connection_failure_lines_are_dropped_and_others_kept(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="librdkafka"):
        LIBRDKAFKA_LOG.error("%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect to ipv4#127.0.0.1:9092 failed")
        LIBRDKAFKA_LOG.info("%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "an info line")
        LIBRDKAFKA_LOG.warning("%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "a configuration warning")
    assert [r.args[0] for r in caplog.records] == ["CONFWARN"]  # type: ignore[index]
