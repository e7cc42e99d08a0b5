"""The first stream job: validate, de-duplicate and normalise every event.

Reads the events topic, dead-letters what fails the contract, drops events whose id the
user already sent, and publishes the rest (normalised NDJSON, same partition) to the
valid-events topic that the later jobs and the sink read.

Durability: outputs are sent with Faust's attachments (the default for ``topic.send``
inside stream iteration), which Faust publishes and waits for *before* it commits the
input offset, so a killed worker re-reads rather than loses. The duplicate table is
written once per user per record, not once per event.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from pulse.dead_letter import DeadLetter
from pulse.lag import observe_lag
from pulse.settings import Settings
from pulse.wire import encode_events
from stream_jobs import metrics
from stream_jobs.dedup import SeenIds, drop_seen
from stream_jobs.validation import CheckedRecord, check_record

log = logging.getLogger(__name__)


class Validator:
    """Handles one record of the events topic inside a Faust agent's iteration."""

    def __init__(
        self,
        valid_topic: faust.TopicT,
        dead_letter_topic: faust.TopicT,
        seen_ids: faust.types.TableT,
        settings: Settings,
    ) -> None:
        self._valid = valid_topic
        self._dead = dead_letter_topic
        self._seen = seen_ids
        self._settings = settings
        self._retention_ms = int(settings.dedup.retention_hours * 3_600_000)
        self._max_ids = settings.dedup.max_ids_per_user

    async def handle(self, event: faust.EventT) -> None:
        """Process one record; bad input and unexpected errors are dead-lettered, never raised."""
        message = event.message
        source = f"{message.topic}/{message.partition}@{message.offset}"
        metrics.RECORDS_IN.inc()
        try:
            checked = check_record(event.value, source, self._settings.not_after_ms())
            fresh = self._drop_duplicates(checked, message.offset)
        except Exception as exc:  # a bug must not lose the record: keep it whole for a replay
            log.exception("failed to process %s", source)
            metrics.PROCESSING_ERRORS.inc()
            metrics.EVENTS_INVALID.labels("processing_error").inc()
            await self._publish_dead(DeadLetter.failed(event.value or b"", "processing_error", repr(exc), source, source))
            return
        metrics.EVENTS_IN.inc(checked.events_in)
        for letter in checked.dead_letters:
            metrics.EVENTS_INVALID.labels(letter.reason).inc()
            await self._publish_dead(letter)
        if fresh:
            metrics.EVENTS_VALID.inc(len(fresh))
            observe_lag("validator", (item["ts"] for item in fresh))
            await self._valid.send(value=encode_events(fresh), partition=message.partition)

    def _drop_duplicates(self, checked: CheckedRecord, offset: int) -> list[dict[str, Any]]:
        fresh_events: list[dict[str, Any]] = []
        for user_id, events in checked.by_user.items():
            key = user_id.encode()
            seen, fresh, duplicates = drop_seen(
                SeenIds.from_bytes(self._seen.get(key)), events, offset, self._retention_ms, self._max_ids
            )
            if fresh:
                self._seen[key] = seen.to_bytes()
            metrics.EVENTS_DUPLICATE.inc(len(duplicates))
            fresh_events.extend(e.to_dict() for e in fresh)
        return fresh_events

    async def _publish_dead(self, letter: DeadLetter) -> None:
        await self._dead.send(value=letter.raw, headers=letter.headers())
