"""Turning a record's output into Kafka records.

Rows of one output are packed as NDJSON into records of at most ``MAX_OUTPUT_RECORD_BYTES``
(the consumer side of the wire format in :mod:`pulse.wire`), well under the producer's
message size limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from pulse.outputs import OutputSpec

MAX_OUTPUT_RECORD_BYTES = 512 * 1024


def output_records(rows: Mapping[OutputSpec, Sequence[dict[str, Any] | bytes]]) -> Iterator[tuple[OutputSpec, bytes]]:
    """Each output's rows as NDJSON record values, in output order; a row already encoded is taken as it is."""
    for spec, spec_rows in rows.items():
        lines = [row if type(row) is bytes else orjson.dumps(row) for row in spec_rows]
        for group in chunks(lines, MAX_OUTPUT_RECORD_BYTES):
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
