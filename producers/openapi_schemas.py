"""JSON Schemas of what the collector takes: an event of the contract, and a Segment call.

Derived from the contract's own tables (``pulse.contract``: the standard and identity types and
the props each requires, the id and timestamp limits, the context fields) and from Segment's
mapping (``producers.segment``), so the OpenAPI document (:mod:`producers.openapi`) cannot drift
from what the collector enforces. They are precise enough for a fuzzer to generate events the
collector accepts as well as ones it refuses; what JSON Schema cannot say (an id that is only a
placeholder such as ``"null"``, a time more than the allowed skew ahead, a survey score outside
its own ``scale_min``/``scale_max``) is in the descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from producers.segment import MAX_MESSAGE_BYTES
from pulse.contract import (
    AMOUNT,
    CONTEXT_STRING_FIELDS,
    CUSTOM_TYPE_PATTERN,
    IDENTITY_TYPES,
    MAX_ID_LENGTH,
    MAX_TS_MS,
    MIN_TS_MS,
    PIPELINE_FIELDS,
    PLACEHOLDER_IDS,
    STANDARD_TYPES,
    STRING,
    SURVEY_SCALES,
    PropCheck,
)

Schema = dict[str, Any]

REQUIRED_FIELDS = ("event_id", "type", "user_id", "ts")  # the contract's; props and context are optional
# the schema of each kind of prop check in the contract's type tables
PROP_SCHEMAS: Mapping[PropCheck, Schema] = {
    STRING: {"type": "string", "minLength": 1},
    AMOUNT: {"type": "number", "minimum": 0},
}
ID: Schema = {
    "type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": r"\S",
    "description": "not blank",
}  # fmt: skip
# RFC 3339 in the contract's years (2000 to 2099; February 29 left out for brevity); a pattern, as
# the date-time format would have a generator pick years 1 to 9999, nearly all of them refused
_DAY = r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))"
_DATE_TIME = rf"20[0-9]{{2}}-{_DAY}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
_OFFSET = r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
TIMESTAMP: Schema = {
    "oneOf": [
        {"type": "integer", "minimum": MIN_TS_MS, "exclusiveMaximum": MAX_TS_MS, "description": "epoch milliseconds"},
        {"type": "string", "pattern": f"^{_DATE_TIME}{_OFFSET}$", "description": "RFC 3339 with an offset"},
    ]
}
NONEMPTY: Schema = {"type": "string", "minLength": 1}
OBJECT_OR_NULL: Schema = {"type": ["object", "null"]}


def event_schema(max_future_skew_s: float) -> Schema:
    """One event of the contract (v1): one variant per standard type, and the custom types."""
    variants = [_event(name, _props(name, rules)) for name, rules in {**STANDARD_TYPES, **IDENTITY_TYPES}.items()]
    custom = {"type": "string", "pattern": f"^{CUSTOM_TYPE_PATTERN.pattern}$", "description": "custom.<snake_case>"}
    variants.append(_event("custom", OBJECT_OR_NULL, custom))
    return {
        "oneOf": variants,
        "description": (
            f"An event (README: the event contract). `ts` may be at most {max_future_skew_s:.0f} s ahead of the "
            "collector's clock (`future_timestamp`); an id that clients send for no id is still an id here."
        ),
    }


def _event(name: str, props: Schema, event_type: Schema | None = None) -> Schema:
    context = _page_context() if name == "page_view" else {**OBJECT_OR_NULL, "properties": _context_fields()}
    properties: Schema = {
        "event_id": ID,
        "type": event_type or {"const": name},
        "user_id": ID,
        "ts": TIMESTAMP,
        "props": props,
        "context": context,
    }
    properties.update({field: {"description": "stamped by the collector: what is sent is replaced"}
                       for field in PIPELINE_FIELDS})  # fmt: skip
    required = [*REQUIRED_FIELDS, "context"] if name == "page_view" else list(REQUIRED_FIELDS)
    return {
        "title": f"{name} event",
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def _props(name: str, rules: Mapping[str, PropCheck]) -> Schema:
    """The props of a standard type: the contract's required props, any others besides."""
    if name == "survey_response":
        return _survey_props()
    if not rules:
        return OBJECT_OR_NULL
    return {
        "type": "object",
        "required": list(rules),
        "properties": {prop: PROP_SCHEMAS[rules[prop]] for prop in rules},
    }


def _survey_props() -> Schema:
    """A survey answer: ``kind`` and a ``score`` on the kind's scale."""
    kinds = []
    for kind, (low, high) in SURVEY_SCALES.items():
        score: Schema = {"type": "integer" if kind == "nps" else "number", "minimum": low, "maximum": high}
        kinds.append({"properties": {"kind": {"const": kind}, "score": score}})
    return {
        "type": "object",
        "required": ["kind", "score"],
        "properties": {
            "kind": {"enum": list(SURVEY_SCALES)},
            "score": {"type": "number"},
            "scale_min": {"type": "number", "minimum": 0},
            "scale_max": {"type": "number", "minimum": 0},
        },
        "oneOf": kinds,
        "description": "CSAT and CES scores may be on another scale, given as scale_min < scale_max",
    }


def _context_fields() -> Schema:
    return {name: {"type": ["string", "null"]} for name in CONTEXT_STRING_FIELDS}


def _page_context() -> Schema:
    """A page view names its page: ``context.path``, or ``context.url`` (the path is derived from it)."""
    return {
        "type": "object",
        "properties": _context_fields(),
        "anyOf": [{"required": [name], "properties": {name: NONEMPTY}} for name in ("path", "url")],
    }


# --- Segment ------------------------------------------------------------------------------

SEGMENT_ID: Schema = {
    "oneOf": [
        {"type": "string", "pattern": r"\S", "not": {"enum": sorted(PLACEHOLDER_IDS)}},
        {"type": "number", "not": {"const": 0}},
    ],
    "description": "a blank id, 0 and placeholders ('null', 'undefined'... in any case, see pulse.contract) count as none",
}
ISO_TIME: Schema = {
    "type": "string",
    "pattern": f"^{_DATE_TIME}{_OFFSET}?$",
    "description": "ISO-8601; without an offset, UTC",
}
SEGMENT_COMMON: Schema = {
    "messageId": {
        **SEGMENT_ID,
        "description": "the event id; without it, one is made from the call and the key's name",
    },
    "userId": SEGMENT_ID,
    "anonymousId": SEGMENT_ID,
    "timestamp": ISO_TIME,
    "originalTimestamp": {**ISO_TIME, "description": "the device's time, corrected by sentAt for its clock skew"},
    "sentAt": ISO_TIME,
    "context": {"type": "object"},
    "integrations": {"type": "object", "description": "ignored"},
}
# what each call needs besides a user: required fields and their schemas
SEGMENT_CALLS: Mapping[str, tuple[tuple[str, ...], Schema]] = {
    "track": (
        ("event",),
        {"event": {"type": "string", "pattern": "[A-Za-z0-9]", "description": "the event's name"},
         "properties": OBJECT_OR_NULL},
    ),
    "identify": ((), {"traits": OBJECT_OR_NULL}),
    "page": ((), {"properties": OBJECT_OR_NULL, "name": {"type": "string"}, "category": {"type": "string"}}),
    "screen": ((), {"properties": OBJECT_OR_NULL, "name": {"type": "string"}, "category": {"type": "string"}}),
    "group": (("groupId",), {"groupId": SEGMENT_ID, "traits": OBJECT_OR_NULL}),
    "alias": (("userId", "previousId"), {"previousId": SEGMENT_ID}),
}  # fmt: skip


def segment_call_schema(call: str, *, in_batch: bool) -> Schema:
    """One Segment call of type ``call``: in a batch it names its ``type``; a route of its own gives it."""
    required, own = SEGMENT_CALLS[call]
    properties: Schema = {**SEGMENT_COMMON, **own}
    schema: Schema = {
        "title": f"{call} call",
        "type": "object",
        "properties": properties,
        "required": list(required),
        "description": f"at most {MAX_MESSAGE_BYTES // 1024} KB of JSON",
    }
    if in_batch:
        properties["type"] = {"const": call}
        schema["required"] = ["type", *required]
    if "userId" not in required:
        schema["anyOf"] = [{"required": [name]} for name in ("userId", "anonymousId")]
    if call == "page":
        schema["allOf"] = [{"anyOf": _page_sources()}]
    return schema


def _page_sources() -> list[Schema]:
    """Where a page call names its page: ``properties.url`` or ``path``, else the context's ``page``."""
    return [
        *({"required": ["properties"], "properties": {"properties": {"required": [name], "properties": {name: NONEMPTY}}}}
          for name in ("url", "path")),
        *({"required": ["context"], "properties": {"context": {"required": ["page"], "properties": {
            "page": {"type": "object", "required": [name], "properties": {name: NONEMPTY}}}}}}
          for name in ("url", "path")),
    ]  # fmt: skip
