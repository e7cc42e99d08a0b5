"""The collector's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Built by code rather than written by hand: the limits are the collector's settings
(``collector.max_events``, ``max_body_bytes``, ``retry_after_s``) and Segment's constants, and the
request bodies come from the contract's tables (:mod:`producers.openapi_schemas`), so the
document says what the running collector enforces. It documents every answer the collector can
give, status and body, because tests/integration/test_collector_fuzz.py generates requests from
it and fails on any answer outside it.
"""

from __future__ import annotations

from typing import Any

from producers.openapi_schemas import ISO_TIME, Schema, event_schema, segment_call_schema
from producers.segment import CALLS, MAX_MESSAGE_BYTES
from producers.segment_request import MAX_BATCH_BYTES, MAX_BATCH_CALLS, ROUTES
from pulse.settings import CollectorTuning, Settings

NDJSON = "application/x-ndjson"
CONTENT_ENCODING = {
    "name": "Content-Encoding",
    "in": "header",
    "required": False,
    "description": "gzip: the body is gzip-compressed (the limits apply to it unzipped)",
    "schema": {"enum": ["gzip"]},
}
RETRY_AFTER = {
    "description": "whole seconds to wait before retrying the same request",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of a collector running with ``settings``."""
    tuning = settings.collector
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Customer Pulse collector",
            "version": "1",
            "description": (
                "Events into the pipeline: the native API (`POST /v1/events`) and Segment's HTTP tracking API. "
                "Every answer but a 5xx means the outcome is durable in Kafka."
            ),
        },
        "paths": {
            "/v1/events": {"post": _events_operation(tuning)},
            **{f"/v1/{route}": {"post": _segment_operation(route, tuning.retry_after_s)} for route in ROUTES},
            "/healthz": {"get": _get("The collector is up", "application/json", _HEALTH)},
            "/metrics": {"get": _get("Prometheus metrics", "text/plain", {"type": "string"})},
            "/openapi.json": {"get": _get("This document", "application/json", {"type": "object"})},
        },
        "components": {
            "schemas": {
                "Event": event_schema(settings.validation.max_future_skew_s),
                "EventsError": _EVENTS_ERROR,
                "SegmentError": _SEGMENT_ERROR,
            },
            "securitySchemes": {
                "bearerWriteKey": {"type": "http", "scheme": "bearer", "description": "a write key, on /v1/events"},
                "segmentWriteKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "a write key as the user name, password empty (or writeKey in the body)",
                },
            },
        },
    }


# --- /v1/events ---------------------------------------------------------------------------

_EVENT_REF = {"$ref": "#/components/schemas/Event"}
_EVENTS_ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": False,
}
_REFUSED_EVENT: Schema = {
    "type": "object",
    "required": ["index", "reason", "problems"],
    "properties": {
        "index": {"type": "integer", "minimum": 0, "description": "the event's place in the body"},
        "reason": {"type": "string", "description": "the first problem's code (README: the event contract)"},
        "problems": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "additionalProperties": False,
}


def _events_operation(tuning: CollectorTuning) -> dict[str, Any]:
    events = {"type": "array", "items": _EVENT_REF, "minItems": 1, "maxItems": tuning.max_events}
    error = {"$ref": "#/components/schemas/EventsError"}
    return {
        "summary": "Publish events",
        "description": (
            f"One event, a JSON array or NDJSON: at most {tuning.max_events} events and {tuning.max_body_bytes} bytes "
            "(gzip bodies with Content-Encoding: gzip). Answered once the outcome is in Kafka."
        ),
        "security": [{}, {"bearerWriteKey": []}],
        "parameters": [CONTENT_ENCODING],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [_EVENT_REF, events]}},
                NDJSON: {"schema": {**events, "description": "one event per line"}},
            },
        },
        "responses": {
            "202": _json("Every event is in Kafka", _ACCEPTED),
            "400": _bad_request(
                "Some events were refused (the valid ones are in Kafka all the same, the others dead-lettered), "
                "or the body holds no events or does not unzip",
                {"oneOf": [_PARTLY_REFUSED, error]},
            ),
            "401": _json("Write keys are configured and none, or an unknown one, came", error),
            "413": _json(f"Over {tuning.max_body_bytes} bytes or {tuning.max_events} events", error),
            "429": _json("The write key is over its rate", error, retry_after=True),
            "503": _json(
                "Kafka is unavailable or the producer's queue full: retry the whole body", error, retry_after=True
            ),
        },
    }


_ACCEPTED: Schema = {
    "type": "object",
    "required": ["accepted"],
    "properties": {"accepted": {"type": "integer", "minimum": 1}},
    "additionalProperties": False,
}
_PARTLY_REFUSED: Schema = {
    "type": "object",
    "required": ["accepted", "rejected", "errors"],
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "rejected": {"type": "integer", "minimum": 1},
        "errors": {"type": "array", "items": _REFUSED_EVENT, "minItems": 1},
    },
    "additionalProperties": False,
}

# --- Segment ------------------------------------------------------------------------------

_SEGMENT_ERROR: Schema = {
    "type": "object",
    "required": ["success", "code", "message"],
    "properties": {"success": {"const": False}, "code": {"type": "string"}, "message": {"type": "string"}},
    "additionalProperties": False,
}
_SUCCESS: Schema = {
    "type": "object",
    "required": ["success"],
    "properties": {"success": {"const": True}},
    "additionalProperties": False,
}
_ENVELOPE: Schema = {
    "writeKey": {"type": "string", "description": "the write key, when not in the Authorization header"},
}


def _segment_operation(route: str, retry_after_s: int) -> dict[str, Any]:
    if route == "batch":
        body = {
            "type": "object",
            "required": ["batch"],
            "properties": {
                "batch": {
                    "type": "array",
                    "maxItems": MAX_BATCH_CALLS,
                    "items": {"oneOf": [segment_call_schema(call, in_batch=True) for call in CALLS]},
                },
                "sentAt": {**ISO_TIME, "description": "when the batch was sent; corrects each originalTimestamp"},
                "context": {"type": "object", "description": "merged under each call's own"},
                **_ENVELOPE,
            },
        }
        limit, refused = MAX_BATCH_BYTES, "A call of the batch refused by the contract is dead-lettered, not answered"
    else:
        call = segment_call_schema(route, in_batch=False)
        body = {**call, "properties": {**call["properties"], **_ENVELOPE}}
        limit, refused = MAX_MESSAGE_BYTES, "The call was refused (code: the reason; it is dead-lettered)"
    return {
        "summary": f"Segment's {route}",
        "description": (
            f"At most {limit // 1024} KB of JSON after unzipping (Content-Encoding: gzip); a batch at most "
            f"{MAX_BATCH_CALLS} calls. The write key is the Basic user name or writeKey."
        ),
        "security": [{}, {"segmentWriteKey": []}],
        "parameters": [CONTENT_ENCODING],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": _json("Every event and dead letter of the request is in Kafka", _SUCCESS),
            "400": _bad_request(
                f"The body is not a request (not JSON, no batch array, does not unzip). {refused}", _error()
            ),
            "401": _json("Write keys are configured and none, or an unknown one, came", _error("unauthorized")),
            "413": _json("Over Segment's size limits", _error("too_large")),
            "429": _json("The write key is over its rate", _error("rate_limited"), retry_after=True),
            "503": _json(
                f"Kafka is unavailable: retry after Retry-After ({retry_after_s} s)",
                _error("unavailable"),
                retry_after=True,
            ),
        },
    }


def _error(code: str | None = None) -> Schema:
    """Segment's error answer, with its ``code`` when there is only one."""
    if code is None:
        return {"$ref": "#/components/schemas/SegmentError"}
    return {"allOf": [{"$ref": "#/components/schemas/SegmentError"}, {"properties": {"code": {"const": code}}}]}


# --- common -------------------------------------------------------------------------------

_HEALTH: Schema = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "ok"}},
    "additionalProperties": False,
}


def _json(description: str, schema: Schema, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if retry_after:
        response["headers"] = {"Retry-After": RETRY_AFTER}
    return response


def _bad_request(description: str, schema: Schema) -> dict[str, Any]:
    """A 400: the collector's JSON, or the HTTP server's plain text for a request it cannot read at all
    (aiohttp answers a Content-Encoding it has no decoder for, such as br without Brotli, itself)."""
    response = _json(f"{description}; in plain text, a Content-Encoding the server cannot decode", schema)
    response["content"]["text/plain"] = {"schema": {"type": "string"}}
    return response


def _get(description: str, media_type: str, schema: Schema) -> dict[str, Any]:
    return {
        "summary": description,
        "responses": {"200": {"description": description, "content": {media_type: {"schema": schema}}}},
    }
