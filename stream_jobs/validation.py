"""What the validator job does with one Kafka record, as a pure function.

A record value holds one or several events (:mod:`pulse.wire`). Each is decoded and
checked against the contract; refused input becomes a :class:`DeadLetter` naming the
record it came from, so an operator can find it again in Kafka; its id is that record
and the event's index in it, so a replay of the record refuses it under the same id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pulse.contract import Event, Invalid, validate
from pulse.dead_letter import DeadLetter
from pulse.wire import Undecodable, iter_record

WIRE_FIELDS = Event._fields  # the keys of Event.to_dict, in its order (the last only when stamped)


@dataclass
class CheckedRecord:
    """The events of one record that passed, in record order, each with its wire line, and the dead letters."""

    events: list[Event] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)  # per event: the JSON line the valid-events topic carries
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events_in: int = 0


def check_record(value: bytes | None, source: str, not_after_ms: int | None = None) -> CheckedRecord:
    """Decode and validate every event of a record value; never raises on bad input.

    ``not_after_ms``: events later than this are refused as ``future_timestamp``.
    """
    checked = CheckedRecord()
    if not value:
        checked.events_in = 1
        checked.dead_letters.append(DeadLetter.failed(b"", "empty_record", "record has no value", source, source))
        return checked
    add_event, add_line, add_letter = checked.events.append, checked.lines.append, checked.dead_letters.append
    for index, (raw, item) in enumerate(iter_record(value)):  # each decoded event dropped before the next
        if type(item) is Undecodable:
            add_letter(DeadLetter.failed(raw, "bad_json", f"not JSON: {item.error}", source, f"{source}#{index}"))
            continue
        result = validate(item, not_after_ms)
        if type(result) is Invalid:
            add_letter(DeadLetter.refused(raw, result, source, f"{source}#{index}"))
        else:
            add_event(result)
            add_line(wire_line(raw, item, result))
    checked.events_in = len(checked.events) + len(checked.dead_letters)  # each event is one or the other
    return checked


# The keys of an event already in normalised form, in Event.to_dict's order.
NORMAL_KEYS = frozenset({WIRE_FIELDS[:6], WIRE_FIELDS})  # server_received_at is last, when stamped


def wire_line(raw: bytes, obj: dict[str, Any], event: Event) -> bytes:
    """The event as one JSON line in its normalised form: the input line itself when it already is that.

    Producers of this project send events in exactly that form, so the worker publishes the
    bytes it read instead of encoding every event again (a JSON parser reads both the same).
    """
    if (b"\n" not in raw and tuple(obj) in NORMAL_KEYS and type(obj["ts"]) is int
            and obj["context"] is event.context and obj.get("server_received_at", 0) is not None):  # fmt: skip
        return raw
    return orjson.dumps(event.to_dict())
