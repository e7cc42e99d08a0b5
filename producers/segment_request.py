"""The request around Segment calls: its write key, its size, its body. Pure, no HTTP server.

A Segment SDK posts ``/v1/batch`` (``{"batch": [calls], "sentAt", "context", "writeKey"}``); the
other routes take one call each, its ``type`` given by the route. The write key comes as the
HTTP Basic user name (password empty) or as ``writeKey`` in the body. Segment's limits: 500 KB
for a batch request, 32 KB for one call, 2,500 calls per batch; all measured on the JSON as
sent, after a gzip ``Content-Encoding`` was undone (the HTTP server does that).

What is wrong with the request as a whole is a :class:`Refused` with the HTTP status to answer;
what is wrong with one call of a batch is that call's business (``producers/segment.py``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import orjson

from producers.segment import CALLS, MAX_MESSAGE_BYTES

MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_CALLS = 2_500
ROUTES = ("batch", *CALLS)  # POST /v1/<route>


@dataclass(frozen=True)
class Envelope:
    """A readable request: its calls as sent, and what the batch gives them all."""

    calls: list[Any]
    write_key: str | None = None  # from the body
    sent_at: Any = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """A request refused whole: the status to answer and Segment's ``code`` and ``message``."""

    status: int
    code: str
    message: str


def read_body(route: str, body: bytes) -> Envelope | Refused:
    """The calls of a ``/v1/<route>`` request body (already decompressed), or why it is refused."""
    limit = MAX_BATCH_BYTES if route == "batch" else MAX_MESSAGE_BYTES
    if len(body) > limit:
        return Refused(413, "too_large", f"body of {len(body)} bytes; /v1/{route} takes at most {limit // 1024} KB")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Refused(400, "bad_json", f"the body is not JSON: {exc}")
    if not isinstance(document, dict):
        return Refused(400, "not_an_object", "the body must be a JSON object")
    write_key = document.get("writeKey") if isinstance(document.get("writeKey"), str) else None
    if route != "batch":  # the key is no part of the call (nor of its dead letter)
        call = {name: value for name, value in document.items() if name != "writeKey"}
        return Envelope([{**call, "type": route}], write_key)
    calls = document.get("batch")
    if not isinstance(calls, list):
        return Refused(400, "missing_field", "a batch request needs batch, an array of calls")
    if len(calls) > MAX_BATCH_CALLS:
        return Refused(413, "too_large", f"{len(calls)} calls; a batch takes at most {MAX_BATCH_CALLS}")
    context = document.get("context")
    return Envelope(calls, write_key, document.get("sentAt"), context if isinstance(context, dict) else {})


def basic_auth_user(authorization: str) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header (Segment's write key), else None.

    Segment asks for ``base64("<key>:")`` and still takes the key encoded without the colon.
    """
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.partition(":")[0]
    return user or None
