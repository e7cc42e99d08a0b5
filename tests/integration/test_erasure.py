"""``pulse forget`` end to end: a person's state, rows and dead letters gone, and kept gone when their events return.

Through a real broker, worker and sink: the person browses anonymously, identifies and signs
up; a call of theirs is refused (a dead letter naming them); a bystander does the same. After
``forget`` of the anonymous id, no ClickHouse table and no worker state holds either id, the
audit row names neither, and their events stay out when the client sends them again and when
the worker replays the whole events topic.
"""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from devstack.processes import terminate
from devstack.stack import running_pid, up
from ops.consumer_lag import wait_pipeline_caught_up
from ops.forget import forget
from ops.reader import run_query
from pulse.settings import Settings
from pulse.topics import Topics
from tests.integration.test_identity_stitching import flushed

pytestmark = pytest.mark.integration

PERSON = ("anon-hana", "hana")
TABLES = ("events", "sessions", "funnel_steps", "churn_scores", "churn_alerts", "clv_predictions")


def calls(base: datetime) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Hana's visit, identify, signup and a refused call (no event name); Ivan's signup."""
    pricing = {"url": "https://acme.test/pricing", "path": "/pricing"}
    return [
        ("page", (None, None, "Pricing", pricing), {"anonymous_id": "anon-hana", "timestamp": base}),
        ("identify", ("hana", {"plan": "pro"}), {"anonymous_id": "anon-hana", "timestamp": base + timedelta(minutes=1)}),
        ("track", ("hana", "Signed Up", {}), {"anonymous_id": "anon-hana", "timestamp": base + timedelta(minutes=2)}),
        ("track", ("hana", "", {}), {"timestamp": base + timedelta(minutes=3)}),  # refused: a dead letter naming her
        ("track", ("ivan", "Signed Up", {}), {"timestamp": base + timedelta(minutes=4)}),
    ]  # fmt: skip


def person_rows(settings: Settings) -> dict[str, int]:
    """Rows naming the person, by table (dead letters by their raw line)."""
    ids = "('anon-hana', 'hana')"
    counts = {table: run_query(settings, f"SELECT count() FROM {table} WHERE user_id IN {ids}").scalar() for table in TABLES}
    # FINAL: whether anon-hana also has its own row (id, id) depends on whether its page view or the merge came first
    counts["person_ids"] = run_query(settings, f"SELECT count() FROM person_ids FINAL WHERE id IN {ids} OR person_id IN {ids}").scalar()
    counts["dead_letters"] = run_query(settings, "SELECT count() FROM dead_letters WHERE raw LIKE '%\"hana\"%'").scalar()
    return counts


def state_keys(settings: Settings) -> dict[bytes, bytes | None]:
    """The worker's state as its changelog holds it: the latest value of every key (None: deleted)."""
    topic = f"{settings.app_id}-pulse-user-state-changelog"
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "erasure-check", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
        latest: dict[bytes, bytes | None] = {}
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            latest[message.key()] = message.value()
            if message.offset() >= ends[message.partition()] - 1:
                remaining.discard(message.partition())
        assert not remaining, f"changelog partitions not read to their end: {remaining}"
        return latest
    finally:
        consumer.close()


def test_forget_erases_a_person_everywhere_and_a_replay_leaves_it_so(pipeline: Settings) -> None:
    settings = pipeline
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    flushed(settings, calls(base))
    before = person_rows(settings)
    assert before["events"] == 3 and before["sessions"] >= 1 and before["person_ids"] == 2
    assert before["dead_letters"] == 1
    assert any(b"hana" in key and value for key, value in state_keys(settings).items())

    erasure = forget(settings, "anon-hana", reference="GDPR-1", timeout=120, log=lambda line: None)
    assert erasure["ids"] == 2 and erasure["reference"] == "GDPR-1"
    assert erasure["rows_removed"]["events"] == 3 and erasure["rows_removed"]["dead_letters"] == 1
    assert all(count == 0 for count in person_rows(settings).values()), person_rows(settings)
    assert not any(b"hana" in key and value for key, value in state_keys(settings).items())
    audit = run_query(settings, "SELECT * FROM erasures").rows
    assert len(audit) == 1 and b"hana" not in orjson.dumps(audit, default=str)
    assert run_query(settings, "SELECT count() FROM events WHERE user_id = 'ivan'").scalar() == 1  # the bystander stays

    # the client sends the accepted calls again (the refused one never reached the events topic)
    flushed(settings, [call for call in calls(base) if call[1][1] != ""])
    assert person_rows(settings) == dict.fromkeys((*TABLES, "person_ids", "dead_letters"), 0)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", timeout=5).read()
    assert b"pulse_identity_ids_forgotten_total 2.0" in metrics
    assert b"pulse_events_suppressed_total 3.0" in metrics

    # the whole events topic replayed: the worker restarted with its group's offsets at the beginning, so it
    # reads her events again, and the merge, handoff and forget records of the first pass
    ivan = "SELECT count() FROM events FINAL WHERE user_id = 'ivan'"
    assert run_query(settings, ivan).scalar() == 2  # his call, and the same call sent again (a new messageId)
    replay_events_topic(settings)
    assert person_rows(settings) == dict.fromkeys((*TABLES, "person_ids", "dead_letters"), 0)
    assert not any(b"hana" in key and value for key, value in state_keys(settings).items())
    assert run_query(settings, ivan).scalar() == 2  # the replay counts nothing twice


def replay_events_topic(settings: Settings) -> None:
    """Stop the worker, move its group's offsets on the events topic to the start, start it and wait for it."""
    pid = running_pid(settings, "worker")
    assert pid is not None and terminate(pid, 30.0)
    topic = Topics.with_prefix(settings.topic_prefix).events
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    start = [TopicPartition(topic, partition, 0) for partition in range(settings.partitions)]
    deadline = time.monotonic() + 60
    while True:  # the group may take a moment to notice its member left
        try:
            admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(settings.worker_group, start)])[
                settings.worker_group].result(timeout=10)  # fmt: skip
            break
        except KafkaException:
            assert time.monotonic() < deadline, "the worker's group did not become empty"
            time.sleep(1)
    up(settings, log=lambda line: None)
    wait_pipeline_caught_up(settings, 120.0)
