"""Kafka as a dependency, and librdkafka's reports of an unreachable broker routed to it.

librdkafka (confluent-kafka: ``EventProducer``, the worker's ``OutputProducer``, the sink's
consumer) retries an unreachable broker by itself, reports each failure to ``error_cb``, and
prints its own log lines to stderr unless given a Python ``logger``. :func:`librdkafka_config`
supplies both, plus ``stats_cb``: the statistics say when a broker connection is up again, the
positive signal an outage ends on. With a ``logger``, librdkafka's lines are only emitted when
the client is polled, so a client left idle never prints behind the user's back (``pulse demo``
stopping the broker). aiokafka, under Faust in the worker, is :mod:`stream_jobs.aiokafka_outages`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from confluent_kafka import KafkaError

from pulse.outages import Dependency

log = logging.getLogger(__name__)

# librdkafka's reconnect back-off doubles up to this: 1 s instead of its default 10 s, so a
# client is back within a second of the broker (one connection attempt a second costs nothing)
RECONNECT_BACKOFF_MAX_MS = 1_000
STATISTICS_INTERVAL_MS = 1_000
# two clients of one process (the worker's aiokafka and librdkafka) may fail for a moment after the
# first reconnects: the outage ends once both stopped failing
QUIET_S = 1.0

LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
LIBRDKAFKA_LOG.setLevel(logging.WARNING)  # its info lines (disconnects of idle connections...) are not news


def kafka_dependency(process: str) -> Dependency:
    """Kafka as a dependency of ``process`` (``pulse_dependency_up{process=..., dependency="kafka"}``)."""
    return Dependency(process, "kafka", quiet_s=QUIET_S)


def librdkafka_config(kafka: Dependency) -> dict[str, Any]:
    """Entries of a confluent-kafka client's config that report to ``kafka`` and keep librdkafka off stderr.

    The callbacks capture ``kafka`` only, never the client, so no reference cycle keeps a
    client and its connections alive after its last use.
    """

    def on_error(error: KafkaError) -> None:
        report_error(kafka, error)

    def on_stats(stats: str) -> None:
        brokers = orjson.loads(stats).get("brokers", {})
        if any(broker.get("state") == "UP" for broker in brokers.values()):
            kafka.reachable()

    return {
        "error_cb": on_error,
        "stats_cb": on_stats,
        "statistics.interval.ms": STATISTICS_INTERVAL_MS,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "logger": LIBRDKAFKA_LOG,
    }


def report_error(kafka: Dependency, error: KafkaError) -> None:
    """An ``error_cb`` report: a fatal error is logged as such (no retry fixes it), any other counts as an outage."""
    if error.fatal():
        log.error("fatal Kafka client error: %s", error.str())
    else:
        kafka.failed(error.str())


class _DropConnectionFailures(logging.Filter):
    """librdkafka's FAIL lines repeat what ``error_cb`` reported (and summarised) already."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and record.args[:1] == ("FAIL",))


LIBRDKAFKA_LOG.addFilter(_DropConnectionFailures())
