"""The Faust wiring of :class:`JobRunner`: one agent over the events topic.

For every record: compute the output from the state (no writes yet), hand the output to
the producer, then write the state. Faust flushes the producer before it commits the
input offset, so a worker killed at any point re-reads every record whose output is not
confirmed. The output is handed over before the state's changelog records, so on one
broker a changelog record is never durable without the output produced before it; on a
cluster the two may part by the few milliseconds of one produce request.

Wall-clock ticks (see :mod:`stream_jobs.watermark`) travel in the events topic itself, as
empty records with a ``pulse.tick`` header, so they are processed in stream iteration, in
order with the partition's events, and no second input topic is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import faust

from pulse.dead_letter import DeadLetter
from pulse.lag import observe_lag
from pulse.outputs import SESSIONS, VALID_EVENTS
from pulse.settings import Settings
from pulse.topics import Topics
from stream_jobs import metrics
from stream_jobs.health import WorkerHealth
from stream_jobs.publishing import is_permanent, output_records
from stream_jobs.runner import JobRunner, Output

log = logging.getLogger(__name__)

TICK_HEADER = "pulse.tick"
RETRY_MAX_S = 30.0


class EventsAgent:
    """Handles records of the events topic and wall-clock ticks, in stream iteration."""

    def __init__(self, app: faust.App, settings: Settings, topics: Topics, health: WorkerHealth) -> None:
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}

        def topic(name: str) -> faust.TopicT:
            return app.topic(name, partitions=settings.partitions, **raw)

        self.source = topic(topics.events)  # raw bytes: nothing can fail to decode here
        self.state = app.Table("pulse-user-state", partitions=settings.partitions, key_type=bytes, value_type=bytes)
        self.runner = JobRunner(settings, self.state)
        self._outputs = {spec: topic(topics.output(spec)) for spec in self.runner.outputs}
        self._dead = topic(topics.dead_letters)
        self._changelog_buffer = app.producer.buffer
        self._health = health

    async def handle(self, event: faust.EventT) -> None:
        message = event.message
        tick = dict(message.headers or ()).get(TICK_HEADER)
        if tick is not None:
            out = self.runner.tick(message.partition, int(tick))
        else:
            out = self._process(event)
        await self._publish(out, message)
        for key, value in out.writes.items():
            if value is not None:
                self.state[key] = value
            elif key in self.state:
                del self.state[key]  # every slice empty: the user leaves the table (a changelog tombstone)
        await self._hand_over_changelog()
        self._count(out)
        self._health.processed(message.partition, message.offset, time.monotonic())

    async def send_tick(self, partition: int, wall_ms: int) -> None:
        """Queue a tick behind the partition's events."""
        await self.source.send(value=b"", headers=[(TICK_HEADER, str(wall_ms).encode())], partition=partition)

    async def index_partitions(self) -> None:
        """Rebuild the timers of newly held partitions, a step at a time, between records."""
        for partition in self.runner.unindexed():
            started = time.perf_counter()
            for _ in self.runner.index_partition(partition):
                await asyncio.sleep(0)
            metrics.TIMER_INDEX_SECONDS.observe(time.perf_counter() - started)

    def _process(self, event: faust.EventT) -> Output:
        message = event.message
        metrics.RECORDS_IN.inc()
        try:
            return self.runner.process(event.value, message.topic, message.partition, message.offset)
        except Exception as exc:  # a bug must not lose the record: keep it whole for a replay
            log.exception("failed to process %s/%s@%s", message.topic, message.partition, message.offset)
            metrics.PROCESSING_ERRORS.inc()
            source = f"{message.topic}/{message.partition}@{message.offset}"
            return Output(dead_letters=[DeadLetter.failed(event.value or b"", "processing_error", repr(exc), source, source)])

    async def _publish(self, out: Output, message: faust.types.Message) -> None:
        """Hand everything to the producer now (not at commit time); see :mod:`stream_jobs.publishing`."""
        source = f"{message.topic}/{message.partition}@{message.offset}"
        for index, (spec, value) in enumerate(output_records(out.rows)):
            target = self._outputs[spec]
            refused = await self._send(lambda: target.send(value=value, partition=message.partition, force=True))
            if refused is not None:
                metrics.PUBLISH_REJECTED.inc()
                letter_id = f"publish_rejected:{source}#{index}"  # the same on a replay of the record
                out.dead_letters.append(DeadLetter.failed(value, "publish_rejected", f"{spec.name}: {refused}", source, letter_id))
        for letter in out.dead_letters:
            refused = await self._send(lambda: self._dead.send(value=letter.raw, headers=letter.headers(), force=True))
            if refused is not None:
                metrics.OUTPUT_DROPPED.inc()
                log.error("dead letter %s (%s) refused for good and dropped: %s", letter.letter_id, letter.reason, refused)

    async def _send(self, send: Callable[[], Awaitable[object]]) -> str | None:
        """Send, retrying transient failures with back-off; the reason if Kafka refuses for good."""
        delay = 0.5
        while True:
            try:
                await send()
                return None
            except Exception as exc:
                if is_permanent(exc):
                    return f"{type(exc).__name__}: {exc}"
                metrics.PUBLISH_FAILURES.inc()  # Kafka unavailable: hold the partition, never drop output
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
        valid = out.rows.get(VALID_EVENTS, [])
        metrics.EVENTS_IN.inc(out.events_in)
        metrics.EVENTS_VALID.inc(len(valid))
        metrics.EVENTS_DUPLICATE.inc(out.duplicates)
        metrics.LATE_EVENTS.inc(out.too_late)
        for letter in out.dead_letters:
            if letter.reason not in ("too_late", "publish_rejected"):
                metrics.EVENTS_INVALID.labels(letter.reason).inc()
        for row in out.rows.get(SESSIONS, []):
            if row.get("closed") and not row["deleted"]:
                metrics.SESSIONS_CLOSED.inc()
                metrics.SESSION_DURATION.observe(row["duration_ms"] / 1000)
        metrics.OPEN_SESSIONS.set(self.runner.live("sessions"))
        observe_lag("worker", (row["ts"] for row in valid))
