"""The Faust wiring of :class:`EventProcessor`: one agent over the events topic.

For every record: compute the output from the state (no writes yet), hand the output to
the producer, then write the state. Faust flushes the producer before it commits the
input offset, so a worker killed at any point re-reads every record whose output is not
confirmed. The output is handed over before the state's changelog records, so on one
broker a changelog record is never durable without the output produced before it; on a
cluster the two may part by the few milliseconds of one produce request.

(Awaiting each record's delivery before writing the state would close even that gap, but
with faust-streaming 0.15.3 it stalled the agent for good in about one restart in four,
so it is not done.)

Wall-clock ticks (see :mod:`stream_jobs.watermark`) travel in the events topic itself, as
empty records with a ``pulse.tick`` header, so they are processed in stream iteration, in
order with the partition's events, and no second input topic is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import faust
import orjson

from pulse.dead_letter import DeadLetter
from pulse.lag import observe_lag
from pulse.settings import Settings
from pulse.topics import Topics
from stream_jobs import metrics
from stream_jobs.processor import EventProcessor, Output, chunks

log = logging.getLogger(__name__)

MAX_OUTPUT_RECORD_BYTES = 512 * 1024
TICK_HEADER = "pulse.tick"
RETRY_MAX_S = 30.0


class EventsAgent:
    """Handles records of the events topic and wall-clock ticks, in stream iteration."""

    def __init__(self, app: faust.App, settings: Settings, topics: Topics) -> None:
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}

        def topic(name: str) -> faust.TopicT:
            return app.topic(name, partitions=settings.partitions, **raw)

        self.source = topic(topics.events)  # raw bytes: nothing can fail to decode here
        self._valid = topic(topics.valid_events)
        self._sessions = topic(topics.sessions)
        self._dead = topic(topics.dead_letters)
        self.state = app.Table("pulse-user-state", partitions=settings.partitions, key_type=bytes, value_type=bytes)
        self.processor = EventProcessor(settings, self.state)
        self._changelog_buffer = app.producer.buffer

    async def handle(self, event: faust.EventT) -> None:
        message = event.message
        tick = dict(message.headers or ()).get(TICK_HEADER)
        if tick is not None:
            out = self.processor.tick(message.partition, int(tick))
        else:
            out = self._process(event)
        await self._publish(out, message.partition)
        for key, value in out.writes.items():
            self.state[key] = value
        await self._hand_over_changelog()
        self._count(out)

    async def send_tick(self, partition: int, wall_ms: int) -> None:
        """Queue a tick behind the partition's events."""
        await self.source.send(value=b"", headers=[(TICK_HEADER, str(wall_ms).encode())], partition=partition)

    def _process(self, event: faust.EventT) -> Output:
        message = event.message
        metrics.RECORDS_IN.inc()
        try:
            return self.processor.process(event.value, message.topic, message.partition, message.offset)
        except Exception as exc:  # a bug must not lose the record: keep it whole for a replay
            log.exception("failed to process %s/%s@%s", message.topic, message.partition, message.offset)
            metrics.PROCESSING_ERRORS.inc()
            source = f"{message.topic}/{message.partition}@{message.offset}"
            return Output(dead_letters=[DeadLetter.failed(event.value or b"", "processing_error", repr(exc), source, source)])

    async def _publish(self, out: Output, partition: int) -> None:
        """Hand everything to the producer now (not at commit time), retrying while it refuses."""
        records = [
            (topic, b"\n".join(group), partition)
            for topic, rows in ((self._valid, out.events), (self._sessions, out.sessions))
            for group in chunks([orjson.dumps(row) for row in rows], MAX_OUTPUT_RECORD_BYTES)
        ]
        delay = 0.5
        while True:
            try:
                for topic, value, target in records:
                    await topic.send(value=value, partition=target, force=True)
                for letter in out.dead_letters:
                    await self._dead.send(value=letter.raw, headers=letter.headers(), force=True)
                return
            except Exception as exc:  # Kafka unavailable: hold the partition, never drop output
                metrics.PUBLISH_FAILURES.inc()
                log.warning("publishing output failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _hand_over_changelog(self) -> None:
        """Wait until Faust has handed this record's changelog records to the Kafka producer.

        Table writes queue their changelog records in Faust's producer buffer, and Faust's
        commit flushes that buffer with ``flush_atmost``, which returns as soon as 0.1 s pass
        without a send (faust-streaming 0.15.3). Under load the commit then ran ahead of the
        state: a worker killed here lost the state of records whose offsets were committed,
        seen in the SIGKILL test. Emptying the buffer before the record is acknowledged puts
        every changelog record in the producer, which the commit does flush completely.
        """
        buffer = self._changelog_buffer
        while buffer.size:
            buffer.message_sent.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(buffer.message_sent.wait(), timeout=1.0)

    def _count(self, out: Output) -> None:
        metrics.EVENTS_IN.inc(out.events_in)
        metrics.EVENTS_VALID.inc(len(out.events))
        metrics.EVENTS_DUPLICATE.inc(out.duplicates)
        metrics.LATE_EVENTS.inc(out.too_late)
        for letter in out.dead_letters:
            if letter.reason != "too_late":
                metrics.EVENTS_INVALID.labels(letter.reason).inc()
        metrics.SESSIONS_CLOSED.inc(len(out.closed_durations_ms))
        for duration_ms in out.closed_durations_ms:
            metrics.SESSION_DURATION.observe(duration_ms / 1000)
        metrics.OPEN_SESSIONS.set(self.processor.open_sessions())
        observe_lag("worker", (row["ts"] for row in out.events))
