"""Dead letters: input the pipeline could not use, kept with the reason it was refused.

A dead letter travels as a Kafka record whose value is the offending input *byte for
byte* (it may not even be UTF-8) and whose headers carry the reason, the problems, where it
came from and when it failed, the convention Kafka Connect's dead-letter queues use. The
ClickHouse sink stores it in the ``dead_letters`` table.

Each dead letter has an id that is stable where its origin is: the record offset and
line for what a stream job refused, the file and line for ``pulse produce``. A replay
after a crash refuses the same input again under the same id, and the table folds it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from pulse.contract import Invalid

HEADER_ID = "pulse.id"
HEADER_REASON = "pulse.reason"
HEADER_ERRORS = "pulse.errors"
HEADER_SOURCE = "pulse.source"
HEADER_FAILED_AT = "pulse.failed_at"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Refused input with its id, reason (a bounded code), problems, origin and time (epoch ms)."""

    letter_id: str
    raw: bytes
    reason: str
    errors: tuple[str, ...]
    source: str
    failed_at: int

    @classmethod
    def refused(cls, raw: bytes, invalid: Invalid, source: str, letter_id: str | None = None) -> DeadLetter:
        """A dead letter for an event that failed validation (``letter_id`` defaults to a random one)."""
        problems = tuple(str(p) for p in invalid.problems)
        return cls(letter_id or uuid.uuid4().hex, raw, invalid.reason, problems, source, now_ms())

    @classmethod
    def failed(cls, raw: bytes, reason: str, error: str, source: str, letter_id: str | None = None) -> DeadLetter:
        """A dead letter for input refused before or after validation (bad JSON, too late, ...)."""
        return cls(letter_id or uuid.uuid4().hex, raw, reason, (error,), source, now_ms())

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_ID, self.letter_id.encode()),
            (HEADER_REASON, self.reason.encode()),
            (HEADER_ERRORS, orjson.dumps(self.errors)),
            (HEADER_SOURCE, self.source.encode()),
            (HEADER_FAILED_AT, str(self.failed_at).encode()),
        ]

    @classmethod
    def from_record(
        cls, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None, position: str
    ) -> DeadLetter:
        """Rebuild a dead letter from the Kafka record at ``position``; one without our headers is kept too."""
        found = {name: data or b"" for name, data in headers or ()}
        try:
            errors = tuple(str(e) for e in orjson.loads(found.get(HEADER_ERRORS, b"[]")))
            failed_at = int(found.get(HEADER_FAILED_AT) or now_ms())
        except (orjson.JSONDecodeError, TypeError, ValueError):
            errors, failed_at = ("dead-letter headers unreadable",), now_ms()
        return cls(
            letter_id=found.get(HEADER_ID, position.encode()).decode(errors="replace"),
            raw=value or b"",
            reason=found.get(HEADER_REASON, b"unknown").decode(errors="replace"),
            errors=errors,
            source=found.get(HEADER_SOURCE, b"").decode(errors="replace"),
            failed_at=failed_at,
        )


def now_ms() -> int:
    return time.time_ns() // 1_000_000
