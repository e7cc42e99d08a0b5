"""The Faust application: topics, the state table, the agent and its timers, built from :class:`Settings`.

The agent runs with ``concurrency=1``: with more, a commit can skip an in-flight message
(faust-streaming issue 606). Scale by partitions and worker processes instead.
"""

from __future__ import annotations

import time
from typing import Any

import faust

from pulse.settings import Settings
from pulse.topics import Topics
from stream_jobs import faust_fixes, heap, metrics
from stream_jobs.events_agent import EventsAgent
from stream_jobs.health import WorkerHealth
from stream_jobs.state_store import faust_store_url, in_memory

HEALTH_INTERVAL_S = 1.0
HEAP_TRIM_INTERVAL_S = 1.0  # a trim with nothing to return costs next to nothing (see stream_jobs.heap)


def create_app(settings: Settings, health: WorkerHealth) -> faust.App:
    """A Faust app wired to the settings' broker, topics and data directory, reporting to ``health``."""
    faust_fixes.apply()
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store=faust_store_url(settings.state_store),  # rocksdb:// (with the rocksdict package) keeps state on disk
        # in memory, a standby's data would be dropped on each rebalance (see stream_jobs.state_store)
        table_standby_replicas=0 if in_memory(settings.state_store) else 1,
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,  # a crashed worker's partitions move on after 10 s, not 60
        broker_heartbeat_interval=1.0,  # the other workers learn of a rebalance from a heartbeat's answer
        producer_acks=-1,
        producer_compression_type="lz4",
        producer_linger_ms=2,
        web_enabled=False,
    )
    topics = Topics.with_prefix(settings.topic_prefix)
    events = EventsAgent(app, settings, topics, health)

    def restored() -> bool:
        """The held partitions' state is read back (recovery done, no rebalance under way)."""
        return app.tables.recovery.completed.is_set() and not app.rebalancing

    def held_partitions() -> list[int]:
        """The events partitions held with their state read back; none while recovering or rebalancing."""
        if not restored():
            return []
        return [tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.events]

    @app.agent(events.source, name="events", concurrency=1)
    async def process_events(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await events.handle(event)

    @app.timer(settings.sessions.tick_interval_seconds)
    async def send_ticks() -> None:
        """Tick every partition we hold, so quiet partitions still close their sessions."""
        wall_ms = time.time_ns() // 1_000_000
        for partition in held_partitions():
            await events.send_tick(partition, wall_ms)

    @app.on_partitions_assigned.connect
    async def release_partitions(_sender: Any, assigned: set[Any], **_kwargs: Any) -> None:
        events.keep_partitions({tp.partition for tp in assigned if tp.topic == topics.events})

    @app.timer(HEALTH_INTERVAL_S)
    async def index_timers() -> None:
        """Rebuild the timers of partitions handed to us, between records."""
        await events.index_partitions(held_partitions)

    @app.timer(HEAP_TRIM_INTERVAL_S)
    async def release_memory() -> None:
        """Return the heap pages freed since the last trim to the system (see stream_jobs.heap)."""
        heap.release_freed_memory()

    @app.timer(HEALTH_INTERVAL_S)
    async def observe_health() -> None:
        """Publish readiness, commits and end offsets for the status thread."""
        consumer = app.consumer
        held = [tp for tp in consumer.assignment() if tp.topic == topics.events]
        # ready once the timers are rebuilt too, with a tick behind them in Kafka: what is due gets published
        ready = restored() and events.timers_rebuilt(held_partitions())
        committed = {tp.partition: consumer._committed_offset.get(tp) for tp in held}  # faust keeps no public view
        highwaters = {tp.partition: end for tp in held if (end := consumer.highwater(tp)) is not None}
        health.observe(time.monotonic(), ready, committed, highwaters)
        metrics.WORKER_READY.set(1 if ready else 0)

    return app
