"""One Segment call (track, identify, page, screen, group, alias) as an event of our contract.

Most products are instrumented with Segment's SDKs; the collector speaks Segment's HTTP tracking
API so they can send here unchanged (``producers/segment_api.py``). This module is the mapping
alone: pure, no HTTP, no Kafka, no clock (the arrival time is passed in), so it is tested exactly.
The table of what maps to what is in ``docs/segment.md``.

The result is an event as a dict, still to be validated like any other (so the contract has one
judge), or :class:`~pulse.contract.Invalid` for what Segment itself refuses (no user, a track call
without its name, a message over 32 KB) with the contract's problem codes.

Identity stitching comes later, so nothing here may lose an id: ``user_id`` is Segment's
``userId``, else its ``anonymousId``, and each id the call carried is kept in ``context``
(``context.user_id``, ``context.anonymous_id``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from producers.segment_spec import spec_event, spec_props
from pulse.contract import EPOCH, ONE_MS, Invalid, Problem, is_placeholder

CALLS = ("track", "identify", "page", "screen", "group", "alias")
MAX_MESSAGE_BYTES = 32 * 1024  # Segment's limit per call, as JSON
SCREEN_TYPE = "custom.screen_viewed"
MAX_CUSTOM_NAME = 63  # what pulse.contract.CUSTOM_TYPE_PATTERN allows after "custom."

# Segment's context objects -> our context keys (strings only; the rest stays in context.segment)
PAGE_FIELDS = {"url": "url", "path": "path", "referrer": "referrer", "title": "title"}
CAMPAIGN_FIELDS = {
    "source": "utm_source", "medium": "utm_medium", "name": "utm_campaign", "term": "utm_term",
    "content": "utm_content",
}  # fmt: skip
DEVICE_FIELDS = {"type": "device"}
# fields a retry of the same call may change: not part of a generated event id
RESENT_FIELDS = frozenset({"sentAt", "writeKey"})


@dataclass(frozen=True)
class Arrival:
    """What comes with a call besides the call: when it arrived, its batch's ``sentAt`` and
    ``context`` (merged under each call's own), and the write key it came with."""

    received_at: int  # epoch ms, the collector's clock
    sent_at: Any = None
    context: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None  # the write key's source and name, None without write keys
    key_name: str | None = None


class Mapped(NamedTuple):
    """A call as JSON (measured against :data:`MAX_MESSAGE_BYTES`, kept in its dead letter) and its event."""

    raw: bytes
    event: dict[str, Any] | Invalid


def to_event(message: Any, arrival: Arrival) -> Mapped:
    """The event for one Segment call (its ``type`` says which), or why Segment would refuse it."""
    raw = orjson.dumps(message)
    if len(raw) > MAX_MESSAGE_BYTES:
        return Mapped(raw, _invalid("too_large", "$", f"a call may be at most {MAX_MESSAGE_BYTES // 1024} KB of JSON"))
    return Mapped(raw, _event(message, arrival))


def _event(message: Any, arrival: Arrival) -> dict[str, Any] | Invalid:
    if not isinstance(message, dict):
        return _invalid("not_an_object", "$", "a Segment call must be a JSON object")
    call = message.get("type")
    if call not in CALLS:
        return _invalid("unknown_type", "type", f"{call!r} is not one of {', '.join(CALLS)}")
    ids = _ids(message, call)
    if isinstance(ids, Invalid):
        return ids
    user_id, anonymous_id = ids
    ts = event_time(message, arrival)
    if isinstance(ts, Invalid):
        return ts
    event_id = _optional_id(message.get("messageId")) or generated_event_id(message, arrival)
    typed = _type_and_props(message, call, event_id)
    if isinstance(typed, Invalid):
        return typed
    event_type, props = typed
    return {
        "event_id": event_id,
        "type": event_type,
        "user_id": user_id or anonymous_id,
        "ts": ts,
        "props": props,
        "context": _context(message, call, arrival, user_id, anonymous_id),
        "server_received_at": arrival.received_at,
    }


# --- ids ----------------------------------------------------------------------------------


def _ids(message: dict[str, Any], call: str) -> tuple[str | None, str | None] | Invalid:
    """Segment's ``userId`` and ``anonymousId``; a call needs one of them, an alias its ``userId``."""
    user_id = _optional_id(message.get("userId"))
    anonymous_id = _optional_id(message.get("anonymousId"))
    if call == "alias" and user_id is None:
        return _invalid("missing_field", "userId", "an alias call needs userId, the id the user is known by now")
    if user_id is None and anonymous_id is None:
        return _invalid("missing_field", "userId", "a call needs userId or anonymousId")
    return user_id, anonymous_id


def _optional_id(value: Any) -> str | None:
    """An id as a string: Segment's SDKs send strings, its API takes numbers too; None when absent, empty or a
    placeholder (``"undefined"``, ``"null"``...: what a client sends for no id, which must not make one user
    of every visitor that sent it)."""
    if isinstance(value, str):
        return None if is_placeholder(value) else value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return None if value == 0 else str(value)
    return None


def generated_event_id(message: dict[str, Any], arrival: Arrival) -> str:
    """An event id for a call without ``messageId`` (Segment's SDKs always send one).

    Made from the call itself (and its write key), so a retried request, which sends the same
    calls again, gets the same ids and the pipeline drops the copies. Two identical calls without
    ``messageId`` or ``timestamp`` from one source are one event: nothing tells them apart.
    """
    kept = {name: value for name, value in message.items() if name not in RESENT_FIELDS}
    canonical = orjson.dumps(kept, option=orjson.OPT_SORT_KEYS) + b"\n" + (arrival.key_name or "").encode()
    return f"seg-{hashlib.blake2b(canonical, digest_size=16).hexdigest()}"


# --- time ---------------------------------------------------------------------------------


def event_time(message: dict[str, Any], arrival: Arrival) -> int | Invalid:
    """Epoch ms: ``timestamp`` when given; else ``originalTimestamp`` corrected for the client's
    clock skew as Segment does, ``receivedAt - (sentAt - originalTimestamp)`` (as sent when there
    is no ``sentAt``, in the call or its batch); else the arrival time."""
    timestamp = _instant(message.get("timestamp"), "timestamp")
    if timestamp is not None:
        return timestamp
    original = _instant(message.get("originalTimestamp"), "originalTimestamp")
    if original is None:
        return arrival.received_at
    sent_value = message.get("sentAt")
    sent_at = _instant(arrival.sent_at if sent_value is None else sent_value, "sentAt")
    if isinstance(original, Invalid) or sent_at is None:
        return original
    if isinstance(sent_at, Invalid):
        return sent_at
    return arrival.received_at - (sent_at - original)


def _instant(value: Any, name: str) -> int | Invalid | None:
    """Epoch ms of an ISO-8601 string (UTC when it names no offset, as Segment reads it); None when absent."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        return _invalid("bad_timestamp", name, f"{value!r} is not an ISO-8601 timestamp")
    return ((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)) - EPOCH) // ONE_MS


# --- type and props -----------------------------------------------------------------------


def _type_and_props(message: dict[str, Any], call: str, event_id: str) -> tuple[str, dict[str, Any]] | Invalid:
    if call in ("identify", "group"):
        traits = _object(message, "traits")
        if isinstance(traits, Invalid):
            return traits
        if call == "identify":
            return "identify", traits
        group_id = _optional_id(message.get("groupId"))
        if group_id is None:
            return _invalid("missing_field", "groupId", "a group call needs groupId")
        return "group", {**traits, "group_id": group_id}
    if call == "alias":
        previous_id = _optional_id(message.get("previousId"))
        if previous_id is None:
            return _invalid("missing_field", "previousId", "an alias call needs previousId")
        return "alias", {"previous_id": previous_id}
    properties = _object(message, "properties")
    if isinstance(properties, Invalid):
        return properties
    if call == "track":
        return _track(message.get("event"), properties, event_id)
    named = {name: message[name] for name in ("name", "category") if isinstance(message.get(name), str)}
    return ("page_view" if call == "page" else SCREEN_TYPE), {**properties, **named}


def _track(name: Any, properties: dict[str, Any], event_id: str) -> tuple[str, dict[str, Any]] | Invalid:
    """A spec'd name's standard type with its props mapped, else a custom type with the properties as sent."""
    if not isinstance(name, str) or not name.strip():
        return _invalid("missing_field", "event", "a track call needs the event's name")
    snake = snake_case(name)
    spec = spec_event(snake)
    if spec is not None:
        return spec.type, spec_props(spec, properties, event_id)
    event_type = custom_type(snake)
    if event_type is None:
        return _invalid("unknown_type", "event", f"{name!r} gives no type name (letters or digits needed)")
    return event_type, properties


def snake_case(name: str) -> str:
    """``Order Completed``, ``orderCompleted`` and ``order-completed`` all as ``order_completed``
    (accents dropped, other characters than ASCII letters and digits as separators)."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", plain)
    words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", words)
    return re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_")


def custom_type(snake: str) -> str | None:
    """``custom.<snake>``, fitted to the contract: ``event_`` before a leading digit, at most 63
    characters; None when nothing is left of the name."""
    if not snake:
        return None
    if snake[0].isdigit():
        snake = f"event_{snake}"
    return "custom." + snake[:MAX_CUSTOM_NAME].rstrip("_")


def _object(message: dict[str, Any], name: str) -> dict[str, Any] | Invalid:
    value = message.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        return _invalid("wrong_type", name, f"must be an object, got {type(value).__name__}")
    return value


# --- context ------------------------------------------------------------------------------


def _context(
    message: dict[str, Any], call: str, arrival: Arrival, user_id: str | None, anonymous_id: str | None
) -> dict[str, Any]:
    """Our context keys from Segment's context (the batch's merged under the call's), the page's own
    fields for a page call, both ids, the write key's source, and the rest under ``segment``."""
    own = message.get("context")
    rest = {**arrival.context, **(own if isinstance(own, dict) else {})}
    context: dict[str, Any] = {}
    for name, fields in (("page", PAGE_FIELDS), ("campaign", CAMPAIGN_FIELDS), ("device", DEVICE_FIELDS)):
        _take(rest, name, fields, context)
    if isinstance(rest.get("userAgent"), str):
        context["user_agent"] = rest.pop("userAgent")
    if call == "page":  # a page call's properties describe the page itself
        properties = message.get("properties") or {}
        context.update((ours, properties[theirs]) for theirs, ours in PAGE_FIELDS.items() if _text(properties, theirs))
    for name, value in (("user_id", user_id), ("anonymous_id", anonymous_id)):
        if value is not None:
            context[name] = value
    if arrival.source is not None:
        context["source"] = arrival.source
    if arrival.key_name is not None:
        context["key_name"] = arrival.key_name
    segment: dict[str, Any] = {"type": call}
    if call == "track":
        segment["event"] = message["event"]
    if rest:
        segment["context"] = rest
    context["segment"] = segment
    return context


def _take(rest: dict[str, Any], name: str, fields: Mapping[str, str], into: dict[str, Any]) -> None:
    """Move the string fields of ``rest[name]`` to our keys in ``into``; what is left stays in ``rest``."""
    found = rest.get(name)
    if not isinstance(found, dict):
        return
    into.update((ours, found[theirs]) for theirs, ours in fields.items() if _text(found, theirs))
    left = {key: value for key, value in found.items() if not (key in fields and _text(found, key))}
    if left:
        rest[name] = left
    else:
        del rest[name]


def _text(obj: Mapping[str, Any], name: str) -> bool:
    value = obj.get(name)
    return isinstance(value, str) and value != ""


def _invalid(code: str, field_name: str, message: str) -> Invalid:
    return Invalid((Problem(code, field_name, message),))
