"""The Faust application: topics, the state table and the agent, built from :class:`Settings`.

The agent runs with ``concurrency=1``: with more, a commit can skip an in-flight message
(faust-streaming issue 606). Scale by partitions and worker processes instead.
"""

from __future__ import annotations

import time
from typing import Any

import faust

from pulse.settings import Settings
from pulse.topics import Topics
from stream_jobs import metrics
from stream_jobs.events_agent import EventsAgent


def create_app(settings: Settings) -> faust.App:
    """A Faust app wired to the settings' broker, topics and data directory."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store=settings.state_store,  # rocksdb:// (with the rocksdict package) keeps state on disk
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,  # a crashed worker's partitions move on after 10 s, not 60
        broker_heartbeat_interval=3.0,
        producer_acks=-1,
        producer_compression_type="lz4",
        producer_linger_ms=2,
        web_enabled=False,
    )
    topics = Topics.with_prefix(settings.topic_prefix)
    events = EventsAgent(app, settings, topics)

    @app.agent(events.source, name="events", concurrency=1)
    async def process_events(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await events.handle(event)

    @app.timer(settings.sessions.tick_interval_seconds)
    async def send_ticks() -> None:
        """Tick every partition we hold, so quiet partitions still close their sessions."""
        wall_ms = time.time_ns() // 1_000_000
        for tp in app.assignor.assigned_actives():
            if tp.topic == topics.events:
                await events.send_tick(tp.partition, wall_ms)

    @app.on_partitions_assigned.connect
    async def forget_partitions(_sender: Any, *_args: Any, **_kwargs: Any) -> None:
        events.processor.forget()

    @app.task
    async def mark_started() -> None:
        metrics.WORKER_STARTED.set(1)

    return app
