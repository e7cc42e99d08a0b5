"""Kafka records of the output topics -> rows of ClickHouse tables (pure, no I/O).

Rows are gathered column by column, the form clickhouse-connect inserts fastest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pulse.dead_letter import DeadLetter

EVENTS = "events"
SESSIONS = "sessions"
DEAD_LETTERS = "dead_letters"
EVENT_COLUMNS = ("event_id", "type", "user_id", "ts", "server_received_at", "props", "context")
SESSION_COLUMNS = (
    "session_id", "user_id", "start", "end", "duration_ms", "events", "page_views", "bounce", "entry_path",
    "exit_path", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "referrer", "device",
    "first_touch_source", "first_touch_medium", "first_touch_campaign", "first_touch_referrer", "is_first",
    "closed", "deleted", "version",
)  # fmt: skip
SESSION_DEFAULTS = {"start": 0, "end": 0, "duration_ms": 0, "events": 0, "page_views": 0, "bounce": False,
                    "is_first": False, "closed": False}  # fmt: skip
DEAD_LETTER_COLUMNS = ("letter_id", "dlq_topic", "dlq_partition", "dlq_offset", "failed_at", "reason", "errors", "source", "raw")


@dataclass
class Columns:
    """Rows for one table, stored as one list per column."""

    names: tuple[str, ...]
    data: list[list[Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.data = [[] for _ in self.names]

    def __len__(self) -> int:
        return len(self.data[0])

    def append(self, row: Sequence[Any]) -> None:
        for column, value in zip(self.data, row, strict=True):
            column.append(value)


def add_valid_events(value: bytes, events: Columns) -> list[int]:
    """Append the events of a valid-events record; returns their event times (epoch ms).

    Raises ``ValueError`` (``orjson.JSONDecodeError`` is one) or ``KeyError`` if a line is
    not a normalised event; the caller keeps the record as a dead letter.
    """
    decoded = [orjson.loads(line) for line in value.split(b"\n") if line]
    times = []
    for event in decoded:
        events.append(
            (
                event["event_id"],
                event["type"],
                event["user_id"],
                event["ts"],
                event.get("server_received_at"),
                orjson.dumps(event["props"]).decode(),
                orjson.dumps(event["context"]).decode(),
            )
        )
        times.append(event["ts"])
    return times


def add_sessions(value: bytes, sessions: Columns) -> None:
    """Append the session rows of a sessions record (a retraction carries only id, user and version).

    Raises like :func:`add_valid_events` on a line that is not a session row.
    """
    for line in value.split(b"\n"):
        if line:
            row = {**SESSION_DEFAULTS, **orjson.loads(line)}
            sessions.append([row.get(name) for name in SESSION_COLUMNS])


def add_dead_letter(topic: str, partition: int, offset: int, letter: DeadLetter, letters: Columns) -> None:
    letters.append(
        (letter.letter_id, topic, partition, offset, letter.failed_at, letter.reason, list(letter.errors), letter.source, letter.raw)
    )
