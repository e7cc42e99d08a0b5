"""Reading the churn alerts topic: ``pulse alerts tail``, and what every consumer of alerts shares.

The churn-risk job publishes one JSON object per alert (:data:`pulse.outputs.CHURN_ALERTS`; the
contract is ``pulse/schemas/churn_alert.schema.json``) to ``<prefix>alerts``, NDJSON like every
output: a record may hold several alerts, one a line (:func:`pulse.wire.decode_record` reads them).

:func:`tail` reads without joining a consumer group (partitions assigned, nothing committed) and
prints each alert as it arrives; :mod:`ops.webhook_forwarder` forwards them as a group of its own.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from pulse.errors import PulseError
from pulse.kafka_outages import kafka_dependency, librdkafka_config
from pulse.outputs import CHURN_ALERTS
from pulse.settings import Settings
from pulse.topics import Topics
from pulse.wire import Undecodable, decode_record

log = logging.getLogger(__name__)

EXCERPT_CHARS = 300  # of an unreadable line or a receiver's answer, as shown and kept
POLL_S = 0.5
PARTITION_REFRESH_S = 10.0  # tail: how often it looks for partitions added to the topic


def alerts_topic(settings: Settings) -> str:
    """The topic the churn job publishes alerts to."""
    return Topics.with_prefix(settings.topic_prefix).output(CHURN_ALERTS)


def describe(alert: Any) -> str:
    """One readable line for an alert: event time, user, tier change, score, reasons and id."""
    if not isinstance(alert, Mapping):
        return f"not an alert: {excerpt(repr(alert))}"
    ts = alert.get("ts")
    when = (datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            if isinstance(ts, int | float) and not isinstance(ts, bool) else "?")  # fmt: skip
    score = alert.get("score")
    shown = f"{score:.2f}" if isinstance(score, int | float) and not isinstance(score, bool) else "?"
    reasons = alert.get("reasons")
    because = ", ".join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else "-"
    return (f"{when}  {alert.get('user_id', '?')}  {alert.get('old_tier', '?')} -> {alert.get('new_tier', '?')}  "
            f"score {shown}  {because}  [{alert.get('alert_id', '?')}]")  # fmt: skip


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    """The partitions of ``topic``; a clear error when it does not exist."""
    try:
        metadata = consumer.list_topics(topic, timeout=15)
    except KafkaException as exc:
        raise PulseError(f"cannot read the metadata of topic {topic!r}: {exc}") from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise PulseError(f"topic {topic!r} does not exist; create it with `pulse topics apply` (or `pulse up`)")
    return sorted(found.partitions)



# --- tail -------------------------------------------------------------------------------------


def tail(settings: Settings, *, from_beginning: bool = False, as_json: bool = False, out: TextIO | None = None,
         err: TextIO | None = None, stop: threading.Event | None = None) -> int:  # fmt: skip
    """Print the alerts of the alerts topic as they arrive until ``stop`` (or Ctrl-C); returns how many.

    No consumer group is joined and nothing is committed: partitions are assigned directly, at
    their end (alerts from now on) or, ``from_beginning``, at the oldest alert still kept.
    ``as_json`` prints each alert's JSON line as published; else one :func:`describe` line.
    """
    stop = stop or threading.Event()
    out, err = out or sys.stdout, err or sys.stderr
    topic = alerts_topic(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap,
            # required by the client, never joined: assign() without subscribe() and no commits
            "group.id": f"{settings.app_id}-alerts-tail-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            **librdkafka_config(kafka_dependency("alerts-tail")),
        }
    )
    printed = 0
    try:
        known = set(partitions_of(consumer, topic))
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in sorted(known)])
        checked = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - checked > PARTITION_REFRESH_S:  # partitions added since: all their alerts are new
                checked = time.monotonic()
                added = set(partitions_of(consumer, topic)) - known
                if added:
                    consumer.incremental_assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(added)])
                    known |= added
            message = consumer.poll(POLL_S)
            if message is None:
                continue
            if message.error() is not None:
                consumer_error(message.error())
                continue
            for raw, item in decode_record(message.value() or b""):
                if isinstance(item, Undecodable):
                    where = f"{message.topic()}/{message.partition()}@{message.offset()}"
                    err.write(f"unreadable line at {where}: {item.error}: {excerpt(raw.decode(errors='replace'))}\n")
                    err.flush()
                    continue
                out.write((raw.decode(errors="replace") if as_json else describe(item)) + "\n")
                out.flush()
                printed += 1
    except BrokenPipeError:  # the reader of a pipe went away (| head): as good as Ctrl-C
        pass
    finally:
        consumer.close()
    return printed


def consumer_error(error: KafkaError) -> None:
    """A fatal consumer error is raised; any other is logged (the client retries it)."""
    if error.fatal():
        raise KafkaException(error)
    log.warning("consumer error: %s", error.str())
