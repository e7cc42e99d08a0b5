"""aiokafka's reports of an unreachable broker, counted as errors of the worker's Kafka dependency.

aiokafka (under Faust) logs every failed attempt of its reconnect loop: with the broker
stopped for 25 s, about 4,000 error lines a second ("Unable connect to node with id 1",
"Unable to update metadata from [1]", fetch and coordinator requests to a node not ready).
:func:`divert_aiokafka` takes those records out of its loggers and reports them to a
:class:`~pulse.outages.Dependency`, which logs the first, a count per interval and the
recovery. aiokafka's other records (a rebalance, a produce retried on a new leader) pass.
"""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError

from pulse.outages import Dependency, Divert

# the aiokafka modules that log failed requests; aiokafka.client logs as "aiokafka"
AIOKAFKA_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)
# OSError: refused or reset connections, and TimeoutError (asyncio's since Python 3.11)
CONNECTION_ERRORS = (OSError, KafkaConnectionError, NodeNotReadyError, KafkaTimeoutError, RequestTimedOutError)
NO_BROKER_ANSWERED = "Unable to update metadata from %s"  # aiokafka.client, after every known broker failed


def divert_aiokafka(kafka: Dependency) -> None:
    """Report aiokafka's "cannot reach the broker" records to ``kafka`` instead of logging each."""
    divert = Divert(kafka, is_unreachable)
    for name in AIOKAFKA_LOGGERS:
        logging.getLogger(name).addFilter(divert)


def is_unreachable(record: logging.LogRecord) -> bool:
    """Whether an aiokafka record says a broker could not be reached: a connection error among its arguments."""
    if record.msg == NO_BROKER_ANSWERED:
        return True
    args = record.args if isinstance(record.args, tuple) else ()
    return any(isinstance(arg, CONNECTION_ERRORS) for arg in args)
