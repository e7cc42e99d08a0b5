"""The Kafka record format: one record value holds one event or several, as NDJSON.

Faust spends about 270 µs of its own on every Kafka record while decoding an event costs a
few µs, so producers pack many events into one record and the stream jobs loop over them.
Any Kafka client may still send a single JSON event per record, pretty-printed or not, or
a JSON array of events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A line of a record that is not JSON: kept byte for byte for the dead-letter place."""

    raw: bytes
    error: str


def encode_events(events: Iterable[dict[str, Any]]) -> bytes:
    """One record value: the events as newline-delimited JSON."""
    return b"\n".join(orjson.dumps(event) for event in events)


def decode_record(value: bytes) -> list[tuple[bytes, Any | Undecodable]]:
    """``(raw bytes, decoded JSON or Undecodable)`` for each event in a record value (see :func:`iter_record`)."""
    return list(iter_record(value))


def iter_record(value: bytes) -> Iterator[tuple[bytes, Any | Undecodable]]:
    """``(raw bytes, decoded JSON or Undecodable)`` for each event in a record value, one at a time.

    If the first line fails to parse, the whole value is tried as one JSON document, so a
    pretty-printed single event is not mistaken for several broken lines. Only a broken first
    line can mean that: a line that parses is a whole JSON value, and a document holds one.

    One at a time, so the worker drops each decoded event before it reads the next: a record's
    dicts never pile up, and the garbage collector, which runs as they accumulate, runs less.
    """
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    first = True
    for line in value.split(b"\n"):
        if not line or line.isspace():
            continue
        try:
            item = loads(line)
        except decode_error as exc:
            if first:
                try:
                    whole = loads(value)
                except decode_error:
                    pass
                else:
                    yield from _events(value, whole)
                    return
            item = Undecodable(line, str(exc))
        first = False
        if type(item) is list:  # a JSON array of events in one line
            yield from _events(line, item)
        else:
            yield line, item


def _events(raw: bytes, item: Any) -> Iterator[tuple[bytes, Any]]:
    """The event ``raw`` holds, or each element of a JSON array of events, encoded again as its raw bytes."""
    if type(item) is list:
        for element in item:
            yield orjson.dumps(element), element
    else:
        yield raw, item
