"""Segment's HTTP tracking API on the collector: ``POST /v1/batch``, ``/v1/track``, ``/v1/identify``,
``/v1/page``, ``/v1/screen``, ``/v1/group`` and ``/v1/alias``, for products instrumented with
Segment's SDKs (point the SDK's host at the collector).

The request is read by ``producers/segment_request.py``, each call mapped by
``producers/segment.py``, and the events published by the collector as its own: packed with
those of concurrent requests, and answered only once Kafka confirmed them. The answers are
Segment's:

- 200 ``{"success": true}`` once every event and dead letter of the request is in Kafka. As
  Segment does, a batch is answered 200 even when some of its calls are refused: those are
  dead-lettered with their reason (the SDK could not fix them by retrying anyway);
- 400 ``{"success": false, "code", "message"}`` for a body that is not a request (not JSON, no
  ``batch`` array), and on a single-call route for a refused call (dead-lettered too);
- 401 without a known write key (once any is configured), 413 over Segment's size limits, 429
  with ``Retry-After`` over the key's rate, 503 with ``Retry-After`` when Kafka is unavailable.

A request refused whole (400 unreadable, 401, 413, 429) is not kept: its sender is told, and
Segment's SDKs retry 429 and 503, not the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import Counter

from producers.segment import Arrival, to_event
from producers.segment_keys import KeyRing
from producers.segment_request import Envelope, Refused, basic_auth_user, read_body
from pulse.contract import Event, Invalid
from pulse.dead_letter import DeadLetter, now_ms

Check = Callable[[Any], Event | Invalid]  # the contract's validation, with the collector's clock
Publish = Callable[[list[Event], list[DeadLetter]], Awaitable[str | None]]  # None once in Kafka, else the error


class SegmentApi:
    """The handler of every Segment route; the collector owns the routes, the keys and Kafka."""

    def __init__(self, keys: KeyRing, check: Check, publish: Publish, retry_after_s: int, events: Counter) -> None:
        """``events`` counts calls by API (the route) and outcome, like the collector's own."""
        self._keys = keys
        self._check = check
        self._publish = publish
        self._retry_after = str(retry_after_s)
        self._events = events

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one request, checking in an order that keeps nothing from an unknown sender: a
        wrong header key before the body is read, the size before the body is parsed (a key may be
        in it), the key before the body's shape is judged, the rate before anything is published."""
        route = request.path.removeprefix("/v1/")
        received_at = now_ms()
        header_key = basic_auth_user(request.headers.get("Authorization", ""))
        if header_key is not None and self._keys.required and self._keys.find(header_key) is None:
            return _error(401, "unauthorized", "unknown write key")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            return _error(413, "too_large", exc.text or "body too large")
        except web.RequestPayloadError:
            return _error(400, "bad_encoding", f"the body does not decode as {request.headers.get('Content-Encoding')}")
        envelope = read_body(route, body)
        if isinstance(envelope, Refused) and envelope.status == 413:
            return _error(envelope.status, envelope.code, envelope.message)
        body_key = envelope.write_key if isinstance(envelope, Envelope) else None
        key = self._keys.find(header_key or body_key)
        if key is None and self._keys.required:
            return _error(401, "unauthorized", "missing or unknown write key (the Basic user name, or writeKey)")
        if isinstance(envelope, Refused):
            return _error(envelope.status, envelope.code, envelope.message)
        if key is not None and (wait := self._keys.admit(key, len(envelope.calls))):
            self._events.labels(request.path, "limited").inc(len(envelope.calls))
            return _error(429, "rate_limited", f"write key {key.name} is over its rate", {"Retry-After": str(wait)})
        source, name = (key.source, key.name) if key else (None, None)
        return await self._accept(
            request.path, envelope, Arrival(received_at, envelope.sent_at, envelope.context, source, name)
        )

    async def _accept(self, api: str, envelope: Envelope, arrival: Arrival) -> web.Response:
        """Publish the events of an admitted request and its dead letters; answer once Kafka has them."""
        events, letters = self._map(envelope, arrival)
        if events or letters:
            error = await self._publish(events, letters)
            if error is not None:
                self._events.labels(api, "retry").inc(len(envelope.calls))
                return _error(503, "unavailable", f"Kafka unavailable: {error}", {"Retry-After": self._retry_after})
        self._events.labels(api, "accepted").inc(len(events))
        self._events.labels(api, "rejected").inc(len(letters))
        if letters and api != "/v1/batch":  # the request was that one call
            return _error(400, letters[0].reason, "; ".join(letters[0].errors))
        return web.Response(body=b'{"success":true}', content_type="application/json")

    def _map(self, envelope: Envelope, arrival: Arrival) -> tuple[list[Event], list[DeadLetter]]:
        """The events of the calls, validated as any; a refused call becomes a dead letter named after
        its bytes, so the retry of a batch resends letters that fold into the first ones."""
        source = f"segment:{arrival.key_name}" if arrival.key_name else "segment"
        events: list[Event] = []
        letters: list[DeadLetter] = []
        for call in envelope.calls:
            raw, mapped = to_event(call, arrival)
            checked = mapped if isinstance(mapped, Invalid) else self._check(mapped)
            if isinstance(checked, Invalid):
                letter_id = f"segment:{hashlib.blake2b(raw, digest_size=8).hexdigest()}"
                letters.append(DeadLetter.refused(raw, checked, source, letter_id))
            else:
                events.append(checked)
        return events, letters


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Segment's error answer: its SDKs read ``code`` and ``message``."""
    body = orjson.dumps({"success": False, "code": code, "message": message})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)
