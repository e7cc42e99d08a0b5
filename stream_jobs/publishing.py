"""Turning a record's output into Kafka records, and telling a failed send worth retrying from one that never will be.

Rows of one output are packed as NDJSON into records of at most ``MAX_OUTPUT_RECORD_BYTES``
(the consumer side of the wire format in :mod:`pulse.wire`). A send that fails for a
reason time can cure (broker unreachable, leader moving, timeout) is retried until it
succeeds: the partition waits, nothing is dropped. A send the broker or client refuses for
good (too large, invalid, not authorised) would block the partition forever if retried, so
the record goes to the dead letters instead, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
from aiokafka import errors

from pulse.outputs import OutputSpec

MAX_OUTPUT_RECORD_BYTES = 512 * 1024

PERMANENT_SEND_ERRORS: tuple[type[Exception], ...] = (
    errors.MessageSizeTooLargeError,
    errors.RecordTooLargeError,
    errors.RecordListTooLargeError,
    errors.InvalidMessageError,
    errors.InvalidTimestampError,
    errors.InvalidTopicError,
    errors.TopicAuthorizationFailedError,
    errors.ClusterAuthorizationFailedError,
    TypeError,  # a value the client cannot serialise
)


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the same send can never succeed."""
    return isinstance(exc, PERMANENT_SEND_ERRORS)


def output_records(rows: Mapping[OutputSpec, Sequence[dict[str, Any]]]) -> Iterator[tuple[OutputSpec, bytes]]:
    """Each output's rows as NDJSON record values, in output order."""
    for spec, spec_rows in rows.items():
        for group in chunks([orjson.dumps(row) for row in spec_rows], MAX_OUTPUT_RECORD_BYTES):
            yield spec, b"\n".join(group)


def chunks(lines: list[bytes], max_bytes: int) -> Iterator[list[bytes]]:
    """Split encoded lines into groups of at most ``max_bytes`` (a single longer line stands alone)."""
    group: list[bytes] = []
    size = 0
    for line in lines:
        if group and size + len(line) + 1 > max_bytes:
            yield group
            group, size = [], 0
        group.append(line)
        size += len(line) + 1
    if group:
        yield group
