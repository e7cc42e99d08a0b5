"""The Faust application: topics, tables and agents, built from :class:`Settings`.

Each agent runs with ``concurrency=1``: with more, a commit can skip an in-flight message
(faust-streaming issue 606). Scale by partitions and worker processes instead.
"""

from __future__ import annotations

import faust

from pulse.settings import Settings
from pulse.topics import Topics
from stream_jobs import metrics
from stream_jobs.validator_agent import Validator


def create_app(settings: Settings) -> faust.App:
    """A Faust app wired to the settings' broker, topics and data directory."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_compression_type="lz4",
        producer_linger_ms=5,
        web_enabled=False,
    )
    topics = Topics.with_prefix(settings.topic_prefix)

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
            partitions=settings.partitions,
        )  # fmt: skip

    events = raw_topic(topics.events)
    validator = Validator(
        valid_topic=raw_topic(topics.valid_events),
        dead_letter_topic=raw_topic(topics.dead_letters),
        seen_ids=app.Table(
            "seen-event-ids",
            partitions=settings.partitions,
            key_type=bytes,  # bytes keys and values use Faust's raw codec: we pack them ourselves
            value_type=bytes,
        ),
        settings=settings,
    )

    @app.agent(events, name="validate-events", concurrency=1)
    async def validate_events(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await validator.handle(event)

    @app.task
    async def mark_started() -> None:
        metrics.WORKER_STARTED.set(1)

    return app
